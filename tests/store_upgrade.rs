//! A store written before the compressed store (migration 0009) keeps working: opened by today's
//! code it shows the same tickets, raw mails and attachments, before and after
//! `mail2ticket store compact` converts it, and the conversion can stop and resume at any batch.
//!
//! On PostgreSQL (`MAIL2TICKET_TEST_STORE=postgres`) the same rows are copied into a schema
//! migrated up to the step before the compressed store, as a store written by that version
//! holds them.

mod common;

use std::path::Path;

use common::{repo_root, stderr, TestConfig};
use mail2ticket::store::StoreLocation;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

const WRITTEN_BY_MAIN: &str = "tests/data/stores/main-2026-11-30.sqlite";

/// The migration that moved raw mail and attachment contents into tables of their own.
const COMPRESSED_STORE: i64 = 9;

/// The fixture's tables in an order their references allow (account_leases is newer).
const TABLES: [&str; 9] = [
    "tickets",
    "articles",
    "attachments",
    "outbox",
    "messages",
    "message_copies",
    "processed",
    "mailbox_state",
    "failures",
];

/// A config whose store holds what the earlier version wrote.
async fn upgraded_store() -> TestConfig {
    let cfg = TestConfig::new(
        &[
            "name = \"known\"\nemail = \"known@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\n\
           user = \"u\"\npassword = \"p\"\nticket_type = \"q\"\nticket_status = \"o\"\n\
           action = \"delete\"\n"
                .into(),
        ],
        "",
    );
    let written = repo_root().join(WRITTEN_BY_MAIN);
    match &cfg.location {
        StoreLocation::Sqlite(path) => {
            std::fs::copy(written, path).unwrap();
        }
        StoreLocation::Postgres(url) => copy_into_postgres(&written, url.expose()).await,
    }
    cfg
}

/// Migrates a fresh PostgreSQL schema up to the step before the compressed store and copies
/// every row of the SQLite store `from` into it, column by column (PostgreSQL computes its
/// generated columns itself).
async fn copy_into_postgres(from: &Path, url: &str) {
    let mut pg = PgConnection::connect(url).await.unwrap();
    common::migrate_postgres_before(&mut pg, COMPRESSED_STORE).await;
    let mut lite = SqliteConnectOptions::new()
        .filename(from)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    for table in TABLES {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' \
             ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut pg)
        .await
        .unwrap();
        assert!(!columns.is_empty(), "{table} exists on PostgreSQL");
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let names = names.join(", ");
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({names}) VALUES ({})",
            marks.join(", ")
        );
        let rows = sqlx::query(&format!("SELECT {names} FROM {table}"))
            .fetch_all(&mut lite)
            .await
            .unwrap();
        for row in &rows {
            let mut q = sqlx::query(&insert);
            for (i, (_, ty)) in columns.iter().enumerate() {
                q = match ty.as_str() {
                    "bigint" => q.bind(row.get::<Option<i64>, _>(i)),
                    "bytea" => q.bind(row.get::<Option<Vec<u8>>, _>(i)),
                    "text" => q.bind(row.get::<Option<String>, _>(i)),
                    other => panic!("{table}: no copy rule for PostgreSQL type {other}"),
                };
            }
            q.execute(&mut pg).await.unwrap();
        }
        if columns.iter().any(|(n, _)| n == "id") {
            // Identity columns go on after the copied ids, as they would have.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table}"
            ))
            .fetch_all(&mut pg)
            .await
            .unwrap();
        }
    }
    lite.close().await.unwrap();
    pg.close().await.unwrap();
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

/// For the first word of five letters or more in each ticket's first text, the tickets
/// `tickets find` finds by it.
fn found_by_their_words(
    cfg: &TestConfig,
    shown: &[(serde_json::Value, Vec<Vec<u8>>)],
) -> Vec<(String, Vec<String>)> {
    let words: Vec<String> = shown
        .iter()
        .filter_map(|(ticket, _)| {
            let text = ticket["articles"][0]["text"].as_str()?;
            let word = text
                .split(|c: char| !c.is_alphanumeric())
                .find(|w| w.chars().count() >= 5)?;
            Some(word.to_string())
        })
        .collect();
    assert!(words.len() > 20, "words of {} tickets", words.len());
    words
        .into_iter()
        .map(|word| {
            let out = exported(cfg, &["tickets", "find", "--json", &word]);
            let hits: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let mut numbers: Vec<String> = hits
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["number"].as_str().unwrap().to_string())
                .collect();
            numbers.sort();
            assert!(!numbers.is_empty(), "{word} finds its own ticket");
            (word, numbers)
        })
        .collect()
}

/// One number from the store, either backend.
async fn sql_i64(cfg: &TestConfig, sql: &str) -> i64 {
    let store = cfg.open_store().await;
    let n = sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    n
}

#[tokio::test]
async fn a_store_written_before_compression_shows_the_same_before_and_after_compacting() {
    let cfg = upgraded_store().await;
    // The raw mails exactly as the earlier version stored them, in its own column.
    let old_raw = sql_i64(&cfg, "SELECT SUM(length(raw)) FROM articles").await;
    assert!(old_raw > 0);

    let before = everything_shown(&cfg);
    assert_eq!(before.len(), 44, "the fixture's 44 tickets");
    let found_before = found_by_their_words(&cfg, &before);
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
    assert!(said.contains("56 article texts compressed"), "{said}");

    assert_eq!(everything_shown(&cfg), before);
    assert_eq!(
        sql_i64(
            &cfg,
            "SELECT COUNT(*) FROM articles WHERE text_zstd IS NULL OR text_body <> ''"
        )
        .await,
        0,
        "every text compressed, none left readable in the old column"
    );
    assert_eq!(
        found_by_their_words(&cfg, &before),
        found_before,
        "the word search finds the same tickets"
    );
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
    let cfg = upgraded_store().await;
    let before = everything_shown(&cfg);
    // One batch of 5, then the process "stops": a new run starts with a fresh cursor.
    let store = Store::open_at(&cfg.location).await.unwrap();
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
