//! The store on the lab's real PostgreSQL: TLS with certificate and host name checked, clear
//! errors that never show the database password, and a server stopped, started and restarted
//! in the middle of a backlog. (The ingestion, follow-up, quarantine, outbox and crash suites run on PostgreSQL
//! too: scripts/test runs them with MAIL2TICKET_TEST_STORE=postgres.)

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab, TestConfig, TestStore};
use mail2ticket::secret::Secret;
use mail2ticket::store::Store;

/// The tests here that connect hold this for reading; the one that stops the server holds it for
/// writing, so no other test of this suite meets the server while it is down.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The lab's URL for a fresh database, with `(from, to)` replaced in it.
async fn url_with(lab: &Lab, from: &str, to: &str) -> String {
    let url = common::fresh_pg_database(lab).await;
    assert!(url.contains(from), "{url} has no {from}");
    url.replace(from, to)
}

#[tokio::test]
async fn connects_with_verify_full_and_the_lab_ca_over_tls() {
    let _server = SERVER.read().await;
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
    let _server = SERVER.read().await;
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
    let _server = SERVER.read().await;
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

/// `scripts/mail-lab COMMAND` (pg-stop, pg-start, pg-restart) on the lab's server.
fn lab_postgres(lab: &Lab, command: &str) {
    let out = std::process::Command::new(common::repo_root().join("scripts/mail-lab"))
        .arg(command)
        .env("MAIL_LAB_DIR", lab.var("MAIL_LAB_DIR"))
        .env("MAIL_LAB_PG_PORT", lab.var("MAIL_LAB_PG_PORT"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}", common::stderr(&out));
}

/// The lab's server stopped until this is dropped, so a failing test never leaves it down.
struct ServerStopped<'a>(&'a Lab);

impl<'a> ServerStopped<'a> {
    fn stop(lab: &'a Lab) -> Self {
        lab_postgres(lab, "pg-stop");
        ServerStopped(lab)
    }
}

impl Drop for ServerStopped<'_> {
    fn drop(&mut self) {
        lab_postgres(self.0, "pg-start");
    }
}

fn signal(daemon: &common::Daemon, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_mid_backlog_loses_and_doubles_nothing() {
    let _server = SERVER.write().await;
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
    // The outage must fall inside the backlog however fast this machine is: the daemon is
    // frozen as soon as its first batch is stored, the server stopped under it, and only then
    // does the daemon run on, into a server that is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while cfg.ticket_count().await == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&daemon, "STOP");
    let before = cfg.ticket_count().await;
    assert!(
        before > 0 && before < total as i64,
        "the outage must start inside the backlog ({before} of {total} tickets stored)"
    );
    let stopped = ServerStopped::stop(lab);
    signal(&daemon, "CONT");
    let noticed_by = tokio::time::Instant::now() + Duration::from_secs(60);
    let noticed = loop {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        if log.contains("database server unreachable") {
            break true;
        }
        if tokio::time::Instant::now() > noticed_by {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(stopped);
    eprintln!("PostgreSQL stopped and started again with {before} of {total} tickets stored");
    assert!(
        noticed,
        "the daemon ran on into the stopped server without saying so:\n{}",
        std::fs::read_to_string(&daemon.log).unwrap_or_default()
    );
    // And a plain restart while it works through the rest.
    lab_postgres(lab, "pg-restart");
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
    // The daemon said the server was gone (above), not that a lock was held, and blamed no mail.
    assert!(
        !log.contains("locked past the busy timeout"),
        "a stopped server was called a lock:\n{log}"
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
