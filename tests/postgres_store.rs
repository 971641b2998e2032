//! The store on the lab's real PostgreSQL: TLS with certificate and host name checked, clear
//! errors that never show the database password, and a server restarted in the middle of a
//! backlog. (The ingestion, follow-up, quarantine, outbox and crash suites run on PostgreSQL
//! too: scripts/test runs them with MAIL2TICKET_TEST_STORE=postgres.)

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab, TestConfig, TestStore};
use mail2ticket::secret::Secret;
use mail2ticket::store::Store;

/// The lab's URL for a fresh database, with `(from, to)` replaced in it.
async fn url_with(lab: &Lab, from: &str, to: &str) -> String {
    let url = common::fresh_pg_database(lab).await;
    assert!(url.contains(from), "{url} has no {from}");
    url.replace(from, to)
}

#[tokio::test]
async fn connects_with_verify_full_and_the_lab_ca_over_tls() {
    let lab = Lab::get();
    let url = common::fresh_pg_database(lab).await;
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let store = Store::open_url(&Secret::new(url)).await.unwrap();
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(tls, "the store's connection is not encrypted");
    store.close().await;
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused_without_showing_the_password() {
    let lab = Lab::get();
    let url = url_with(lab, lab.ca(), lab.var("MAIL_LAB_OTHER_CA")).await;
    let err = Store::open_url(&Secret::new(url))
        .await
        .unwrap_err()
        .to_string();
    let password = lab.var("MAIL_LAB_PG_PASSWORD");
    assert!(!err.contains(password), "{err}");
    assert!(err.contains("cannot connect to the ticket store"), "{err}");
    assert!(err.contains("sslrootcert"), "says what to check: {err}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_showing_it() {
    let lab = Lab::get();
    let password = lab.var("MAIL_LAB_PG_PASSWORD");
    let url = url_with(lab, password, "Wrong-Secret-77").await;
    let err = Store::open_url(&Secret::new(url))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("Wrong-Secret-77"), "{err}");
    assert!(err.contains("mail2ticket:***@localhost"), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
}

/// `check-config` on a config file of `text`.
fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    common::mail2ticket_cmd(&config)
        .arg("check-config")
        .output()
        .unwrap()
}

#[test]
fn path_and_url_together_are_refused_with_key_and_line() {
    let out = check_config(
        "[store]\npath = \"/tmp/t.db\"\nurl = \"postgres://m2t:Inline-Secret-9@db/tickets\"\n",
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains(":3:") && err.contains("store.url"), "{err}");
    assert!(err.contains("exactly one of path"), "{err}");
    assert!(!err.contains("Inline-Secret-9"), "{err}");
}

#[test]
fn a_password_written_in_the_config_is_warned_about_and_never_printed() {
    let out = check_config("[store]\nurl = \"postgres://m2t:Inline-Secret-9@db/tickets\"\n");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert!(
        all.contains("store.url") && all.contains("PGPASSFILE"),
        "{all}"
    );
    assert!(!all.contains("Inline-Secret-9"), "{all}");
}

#[test]
fn a_url_that_is_not_postgres_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("store.url");
    std::fs::write(&url_file, "mysql://m2t:Other-Secret-3@db/tickets\n").unwrap();
    let out = check_config(&format!("[store]\nurl_file = \"{}\"\n", url_file.display()));
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("store.url_file") && err.contains("postgres://"),
        "{err}"
    );
    assert!(!err.contains("Other-Secret-3"), "{err}");
}

/// `pg_ctl restart -m fast` on the lab's server: every connection is cut, the server is away
/// for a moment, then back.
fn restart_postgres(lab: &Lab) {
    let out = std::process::Command::new(common::repo_root().join("scripts/mail-lab"))
        .arg("pg-restart")
        .env("MAIL_LAB_DIR", lab.var("MAIL_LAB_DIR"))
        .env("MAIL_LAB_PG_PORT", lab.var("MAIL_LAB_PG_PORT"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pg-restart: {}", common::stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_mid_backlog_loses_and_doubles_nothing() {
    let lab = Lab::get();
    let user = lab.fresh_user("pgrestart");
    let total: usize = 1500;
    let set: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            mails::simple(
                &user,
                &format!("Backlog {i}"),
                &format!("pgrestart-{i}@customer.example.test"),
                "",
            )
        })
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new_on(
        TestStore::Postgres,
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        "",
    );
    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    // Restart twice once the backlog is under way, the second time while it still runs.
    for at_least in [100, 600] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while cfg.ticket_count().await < at_least as i64 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = cfg.ticket_count().await;
        assert!(
            before < total as i64,
            "the backlog ended before the restart ({before} tickets)"
        );
        restart_postgres(lab);
        eprintln!("PostgreSQL restarted with {before} of {total} tickets stored");
    }
    let left = lab
        .wait_for_count(&user, "Archive", total as u32, Duration::from_secs(300))
        .await;
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert_eq!(
        left, total as u32,
        "every mail moved once; daemon log:\n{log}"
    );
    daemon.kill();
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(
        cfg.ticket_count().await,
        total as i64,
        "one ticket per mail"
    );
    let store = cfg.open_store().await;
    let subjects: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT subject FROM articles")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(subjects.len(), total, "no mail stored twice");
    // The daemon noticed the server was gone and said so, without blaming a mail.
    assert!(
        log.contains("database server unreachable"),
        "the restart left no trace in the log:\n{log}"
    );
    assert!(
        !log.contains("storing a mail failed"),
        "a mail was blamed:\n{log}"
    );
    assert!(
        !log.contains(lab.var("MAIL_LAB_PG_PASSWORD")),
        "the database password reached the log"
    );
}

#[test]
fn an_oauth_account_on_a_postgres_store_must_name_its_token_file() {
    let out = check_config(
        "[store]\nurl = \"postgres://m2t@db/tickets\"\n\n[[account]]\nname = \"x\"\n\
         email = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
         ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\nauth = \"oauth2\"\n\n\
         [account.oauth2]\nprovider = \"google\"\ngrant = \"refresh_token\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\n",
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("oauth2.token_file") && err.contains("[store] url"),
        "{err}"
    );
}
