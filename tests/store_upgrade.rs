//! A store written before the compressed store (migration 0005) keeps working: opened by today's
//! code it shows the same tickets, raw mails and attachments, before and after
//! `mail2ticket store compact` converts it, and the conversion can stop and resume at any batch.

mod common;

use common::{repo_root, stderr, TestConfig};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

const WRITTEN_BY_MAIN: &str = "tests/data/stores/main-2026-11-30.sqlite";

/// A config whose store is a copy of the store written by the earlier version.
fn upgraded_store() -> TestConfig {
    let cfg = TestConfig::new(
        &[
            "name = \"known\"\nemail = \"known@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\n\
           user = \"u\"\npassword = \"p\"\nticket_type = \"q\"\nticket_status = \"o\"\n\
           action = \"delete\"\n"
                .into(),
        ],
        "",
    );
    std::fs::copy(repo_root().join(WRITTEN_BY_MAIN), &cfg.store).unwrap();
    cfg
}

/// Everything a reader gets from the store: each ticket's `show --json`, and the bytes of each
/// article's `--raw` and each attachment's `--attachment`.
fn everything_shown(cfg: &TestConfig) -> Vec<(serde_json::Value, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for ticket in cfg.tickets() {
        let number = ticket["number"].as_str().unwrap().to_string();
        let shown = cfg.show(&number);
        let mut bytes = Vec::new();
        for (i, article) in shown["articles"].as_array().unwrap().iter().enumerate() {
            let a = (i + 1).to_string();
            bytes.push(exported(cfg, &["tickets", "show", &number, "--raw", &a]));
            for n in 1..=article["attachments"].as_array().unwrap().len() {
                let n = n.to_string();
                bytes.push(exported(
                    cfg,
                    &["tickets", "show", &number, "--attachment", &a, &n],
                ));
            }
        }
        out.push((shown, bytes));
    }
    out
}

fn exported(cfg: &TestConfig, args: &[&str]) -> Vec<u8> {
    let out = cfg.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out.stdout
}

async fn sql_i64(cfg: &TestConfig, sql: &str) -> i64 {
    let mut conn = SqliteConnectOptions::new()
        .filename(&cfg.store)
        .connect()
        .await
        .unwrap();
    let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    n
}

#[tokio::test]
async fn a_store_written_before_compression_shows_the_same_before_and_after_compacting() {
    let cfg = upgraded_store();
    // The raw mails exactly as the earlier version stored them, in its own column.
    let old_raw = sql_i64(&cfg, "SELECT SUM(length(raw)) FROM articles").await;
    assert!(old_raw > 0);

    let before = everything_shown(&cfg);
    assert_eq!(before.len(), 44, "the fixture's 44 tickets");
    let shown_raw: usize = before
        .iter()
        .flat_map(|(shown, bytes)| {
            let articles = shown["articles"].as_array().unwrap();
            // Only the raw mails: each article's first export, then its attachments.
            let mut at = 0;
            articles
                .iter()
                .map(|a| {
                    let len = bytes[at].len();
                    at += 1 + a["attachments"].as_array().unwrap().len();
                    len
                })
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(shown_raw as i64, old_raw, "every raw mail, byte for byte");

    let out = cfg.run(&["store", "compact", "--batch", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("56 raw mails compressed, 10 attachments"),
        "{said}"
    );

    assert_eq!(everything_shown(&cfg), before);
    assert_eq!(
        sql_i64(&cfg, "SELECT COUNT(*) FROM articles WHERE length(raw) > 0").await,
        0,
        "no raw mail left in the old column"
    );
    assert_eq!(sql_i64(&cfg, "SELECT COUNT(*) FROM raw_mails").await, 56);
    assert_eq!(
        sql_i64(
            &cfg,
            "SELECT COUNT(*) FROM attachments WHERE content_sha256 = ''"
        )
        .await,
        0
    );
    assert_eq!(
        sql_i64(&cfg, "SELECT COUNT(*) FROM attachment_contents").await,
        sql_i64(
            &cfg,
            "SELECT COUNT(DISTINCT content_sha256) FROM attachments"
        )
        .await,
        "each distinct attachment stored once"
    );

    let again = cfg.run(&["store", "compact"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("ok: 0 raw mails compressed"),
        "a second run finds nothing left: {}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[tokio::test]
async fn compacting_resumes_where_an_interrupted_run_stopped() {
    use mail2ticket::store::{CompactCursor, Store};
    let cfg = upgraded_store();
    let before = everything_shown(&cfg);
    // One batch of 5, then the process "stops": a new run starts with a fresh cursor.
    let store = Store::open(&cfg.store).await.unwrap();
    let first = store
        .compact_step(&mut CompactCursor::default(), 5)
        .await
        .unwrap();
    assert_eq!((first.mails, first.finished), (5, false));
    store.close().await;
    assert_eq!(sql_i64(&cfg, "SELECT COUNT(*) FROM raw_mails").await, 5);
    assert_eq!(
        everything_shown(&cfg),
        before,
        "half converted reads the same"
    );

    let out = cfg.run(&["store", "compact"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok: 51 raw mails compressed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(everything_shown(&cfg), before);
}
