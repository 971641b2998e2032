//! A network path to PostgreSQL that goes silent (packets dropped, no connection closed) with
//! one instance (`instances = "one"`): no lease ends the pass in flight, so the store calls' own
//! bound (`STORE_ANSWER_WITHIN`) must. The daemon reports the store unreachable instead of
//! hanging, touches no mail while the path is silent, and finishes the backlog once it is back:
//! every mail stored and moved once, every reply sent once. And the server's end: the settings
//! that let PostgreSQL drop a vanished client are on every pooled connection, and maintenance
//! outwaits the statement timeout that ends a daemon's statement. Always on the lab's
//! PostgreSQL (TLS, verify-full), whatever store the suite runs on.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    assert_each_mail_stored_and_moved_once, assert_each_reply_sent_once, backlog, store_count,
    wait_until_inboxes_empty,
};
use common::http::{free_port, get, healthz, wait_for};
use common::proxy::stallable;
use common::smtp::SwitchProxy;
use common::{imap_account, Daemon, Lab, TestConfig, TestStore};
use mail2ticket::secret::Secret;
use mail2ticket::store::{CompactCursor, Store, StoreLocation, STORE_ANSWER_WITHIN};
use sqlx::Connection;

const MAILS: usize = 3000;
const CUSTOMERS: usize = 5;
const REPLIES_PER_CUSTOMER: usize = 3;

/// `url` with its port replaced by `port` (host and TLS parameters kept).
fn via_port(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_port(Some(port)).unwrap();
    url.to_string()
}

/// `mail2ticket_errors_total` of `account` and `kind` on the daemon's /metrics (0 before the
/// first).
fn errors(port: u16, account: &str, kind: &str) -> u64 {
    let Some((_, text)) = get(port, "/metrics") else {
        return 0;
    };
    let (account, kind) = (format!("account=\"{account}\""), format!("kind=\"{kind}\""));
    text.lines()
        .filter(|l| l.starts_with("mail2ticket_errors_total{"))
        .filter(|l| l.contains(&account) && l.contains(&kind))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_path_to_the_database_stops_the_pass_and_loses_nothing() {
    let lab = Lab::get();
    let user = lab.fresh_user("silent");
    let customers: Vec<String> = (0..CUSTOMERS)
        .map(|_| lab.fresh_user("silent-customer"))
        .collect();
    let work = tempfile::tempdir().unwrap();
    lab.seed(
        &user,
        "INBOX",
        &backlog(work.path(), &user, "s", MAILS, &customers),
    );
    // Replies queue while the SMTP server is down and go out once the path is back.
    let smtp = SwitchProxy::start(lab.port("MAIL_LAB_SMTP_PORT"), false).await;
    let http = free_port();
    let accounts = [imap_account(
        lab,
        "shop",
        &user,
        "none",
        &format!(
            "action = \"move\"\nmove_to = \"Archive\"\nauto_reply = true\n\
             auto_reply_limit = {REPLIES_PER_CUSTOMER}\n"
        ),
    )];
    let extra = format!(
        "http_listen = \"127.0.0.1:{http}\"\n\n\
         [smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"none\"\ntimeout = \"2s\"\n\
         message_id_domain = \"tickets.example.test\"\n",
        smtp.port
    );
    let cfg = TestConfig::new_on(TestStore::Postgres, &accounts, &extra);
    let store = cfg.location.clone();
    let StoreLocation::Postgres(url) = &store else {
        unreachable!("the config is on PostgreSQL")
    };
    // The daemon reaches the store through the proxy; the test reads it directly.
    let pg_port = url::Url::parse(url.expose()).unwrap().port().unwrap();
    let path = stallable(pg_port).await;
    std::fs::write(
        cfg.dir.path().join("store.url"),
        via_port(url.expose(), path.port),
    )
    .unwrap();

    let log = cfg.dir.path().join("daemon.log");
    let mut daemon = Daemon::start(&cfg.path, log.clone());
    wait_for("the daemon's /healthz", Duration::from_secs(30), || {
        healthz(http)
    });
    let articles = || store_count(&store, "SELECT COUNT(*) FROM articles");
    let started = Instant::now();
    while articles().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no batch stored within a minute"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    path.stall();
    let stalled_at = Instant::now();
    let left = lab.count(&user, "INBOX").await;
    assert!(left > 0, "stalled mid-backlog");

    // Not hung: the call in flight (or the next one) gives up within the bound, and the daemon
    // says why. A few seconds more for a pass that was between two calls at the stall.
    let health = wait_for(
        "the daemon to report its store unreachable",
        STORE_ANSWER_WITHIN + Duration::from_secs(8),
        || {
            let h = healthz(http)?;
            (h["store"]["state"] == "unreachable").then_some(h)
        },
    );
    let reported = stalled_at.elapsed();
    assert_eq!(health["status"], "unhealthy", "{health}");
    let said = health["store"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("postgres://"), "names the store: {said}");
    assert!(!said.contains(lab.var("MAIL_LAB_PG_PASSWORD")), "{said}");

    // The pass in flight ends on the store error; a batch whose commit got no answer stays on
    // the server. From then on, nothing leaves it while the path is silent, however often the
    // daemon tries again.
    wait_for(
        "the pass in flight to end on the store error",
        STORE_ANSWER_WITHIN + Duration::from_secs(8),
        || (errors(http, "shop", "store") >= 1).then_some(()),
    );
    let at_stop = (
        lab.count(&user, "INBOX").await,
        lab.count(&user, "Archive").await,
    );
    wait_for(
        "a second pass to fail while the path is silent",
        STORE_ANSWER_WITHIN * 3,
        || (errors(http, "shop", "store") >= 2).then_some(()),
    );
    let after_retry = (
        lab.count(&user, "INBOX").await,
        lab.count(&user, "Archive").await,
    );
    assert_eq!(
        after_retry, at_stop,
        "(INBOX, Archive): no mail left the server while the path was silent"
    );
    let health = healthz(http).unwrap();
    assert_eq!(health["store"]["state"], "unreachable", "{health}");
    assert_eq!(
        health["accounts"]["shop"]["last_error_kind"], "store",
        "{health}"
    );
    eprintln!(
        "silent store: unreachable reported {:.1} s after the stall ({left} mails left; \
         store error: {said})",
        reported.as_secs_f64()
    );

    path.resume();
    smtp.set_up(true);
    wait_for(
        "the daemon to reach its store again",
        Duration::from_secs(60),
        || {
            let h = healthz(http)?;
            (h["store"]["state"] == "ok").then_some(())
        },
    );
    wait_until_inboxes_empty(lab, std::slice::from_ref(&user), Duration::from_secs(180)).await;
    assert_each_reply_sent_once(lab, &store, &customers, REPLIES_PER_CUSTOMER).await;
    daemon.kill();
    assert_each_mail_stored_and_moved_once(lab, &store, &[user], MAILS).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logs.contains(lab.var("MAIL_LAB_PG_PASSWORD")),
        "the database password never reaches the log"
    );
}

/// Each of `settings` on the connection, as the server reports it.
async fn settings_of(conn: &mut sqlx::AnyConnection, settings: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    for name in settings {
        // `current_setting` shows the TCP settings as read back from the server's socket.
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(*name)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        values.push(value);
    }
    values
}

#[tokio::test]
async fn every_store_connection_asks_the_server_to_drop_a_vanished_client() {
    let lab = Lab::get();
    let url = common::fresh_pg_database(lab).await;
    let store = Store::open_url(&Secret::new(url)).await.unwrap();
    // Several connections held at once, so each is a connection of its own.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        // The settings below are ignored on a Unix socket (they read 0): this is TCP.
        let over_tcp: bool = sqlx::query_scalar("SELECT inet_client_addr() IS NOT NULL")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert!(over_tcp, "the lab's PostgreSQL is reached over TCP");
        assert_eq!(
            settings_of(
                conn,
                &[
                    "tcp_keepalives_idle",
                    "tcp_keepalives_interval",
                    "tcp_keepalives_count",
                    "tcp_user_timeout",
                    "statement_timeout",
                    "idle_in_transaction_session_timeout",
                ]
            )
            .await,
            ["30", "10", "3", "60000", "10s", "10s"],
            "keepalive (dead client dropped after about a minute), user timeout, and the \
             daemon's statement and idle-transaction bounds"
        );
    }
    drop(held);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_outwaits_the_statement_timeout_that_ends_a_daemon_statement() {
    let lab = Lab::get();
    let url = common::fresh_pg_database(lab).await;
    let store = Store::open_url(&Secret::new(url.clone())).await.unwrap();
    // Another session holds the tables a compaction and a daemon's statement need.
    let mut blocker = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let mut blocking = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE articles, mailbox_state IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocking)
        .await
        .unwrap();
    let compacting = tokio::spawn({
        let store = store.clone();
        async move { store.compact_step(&mut CompactCursor::default(), 100).await }
    });
    let mut watch = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                   AND query LIKE 'SELECT id, raw, raw_sha256 FROM articles%'";
    let since = Instant::now();
    while sqlx::query_scalar::<_, i64>(waiting)
        .fetch_one(&mut watch)
        .await
        .unwrap()
        == 0
    {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the compaction never waited for the table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A daemon's statement waiting for the same lock is ended by the server's statement
    // timeout, an environmental error: the pass would stop and try again.
    let asked = Instant::now();
    let err = store.uidvalidity("shop", "INBOX").await.unwrap_err();
    let took = asked.elapsed();
    assert!(err.is_environmental(), "{err}");
    assert!(
        took >= Duration::from_secs(9) && took < STORE_ANSWER_WITHIN,
        "ended by the server's statement timeout (10 s), before the daemon's bound: {took:?}"
    );
    // The compaction started waiting before that statement, and still waits.
    assert_eq!(
        sqlx::query_scalar::<_, i64>(waiting)
            .fetch_one(&mut watch)
            .await
            .unwrap(),
        1,
        "maintenance is not cut by the daemon's statement timeout"
    );
    assert!(!compacting.is_finished());

    blocking.rollback().await.unwrap();
    let step = compacting.await.unwrap().unwrap();
    assert!(step.finished, "an empty store is compact at once");
    store.close().await;
}
