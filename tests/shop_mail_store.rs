//! The store's side of a shop's everyday mail, on a real SQLite file (or the lab's PostgreSQL,
//! see `common::TestStore`): one message in several
//! accounts is one ticket (also when two pollers store their copies at the same moment), a
//! reused Message-ID from another sender is another message, bounces of our replies join their
//! ticket, and stores written before these rules keep working.

mod common;

use std::path::Path;

use chrono::Utc;
use mail2ticket::config::CustomerSource;
use mail2ticket::ingest::parse::parse;
use mail2ticket::source::SourceKey;
use mail2ticket::store::{Incoming, Outcome, Recorded, Store, TicketRules};

fn rules(account: &str) -> TicketRules {
    TicketRules::without_replies(account)
}

/// A source key in its text form, or a bare name as a POP3 UIDL.
fn key(text: &str) -> SourceKey {
    text.parse()
        .unwrap_or(SourceKey::Pop3 { uidl: text.into() })
}

/// A copy of a mail as the mailbox `to` holds it: the delivery header differs per mailbox.
fn copy(to: &str, source_key: &str, from: &str, id: &str) -> Incoming {
    let raw = format!(
        "Delivered-To: {to}\r\nFrom: Kunde <{from}>\r\nTo: support@shop.test\r\nCc: returns@shop.test\r\n\
         Subject: Rücksendung\r\nMessage-ID: <{id}>\r\n\r\nHallo\r\n"
    )
    .into_bytes();
    Incoming {
        source_key: key(source_key),
        parsed: parse(&raw),
        raw,
        received_at: Utc::now(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    }
}

/// A new store: a SQLite file in `dir`, or a fresh database of the lab's PostgreSQL when the
/// suite runs on it (see `common::TestStore`).
async fn open(dir: &Path) -> Store {
    match common::TestStore::current() {
        common::TestStore::Sqlite => Store::open(&dir.join("tickets.db")).await.unwrap(),
        common::TestStore::Postgres => {
            let url = common::fresh_pg_database(common::Lab::get()).await;
            Store::open_url(&mail2ticket::secret::Secret::new(url))
                .await
                .unwrap()
        }
    }
}

#[tokio::test]
async fn a_message_in_two_accounts_is_one_ticket_received_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let first = store
        .store_batch(
            &rules("support"),
            &[copy(
                "support@shop.test",
                "imap:INBOX:1:1",
                "k@customer.test",
                "one@customer.test",
            )],
        )
        .await
        .unwrap();
    let second = store
        .store_batch(
            &rules("returns"),
            &[copy(
                "returns@shop.test",
                "pop3:u1",
                "k@customer.test",
                "one@customer.test",
            )],
        )
        .await
        .unwrap();
    let Outcome::NewTicket { number } = &first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(
        second,
        vec![Outcome::Duplicate {
            number: number.clone()
        }]
    );
    assert_eq!(store.count_tickets().await.unwrap(), 1);
    let t = store.show_ticket(number).await.unwrap().unwrap();
    assert_eq!(t.account, "support");
    assert_eq!(t.articles.len(), 1);
    assert_eq!(t.articles[0].received_by, vec!["support", "returns"]);
    // The copy's source key is processed: its mailbox disposes of it like any stored mail.
    let processed = store.processed("returns", "pop3:").await.unwrap();
    let u1 = SourceKey::Pop3 { uidl: "u1".into() };
    assert_eq!(processed[&u1].outcome, Recorded::Stored);
    // The same copy fetched again (a crash before disposal) is recognised as processed.
    let again = store
        .store_batch(
            &rules("returns"),
            &[copy(
                "returns@shop.test",
                "pop3:u1",
                "k@customer.test",
                "one@customer.test",
            )],
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Outcome::AlreadyProcessed]);
}

#[tokio::test]
async fn a_message_id_reused_by_another_sender_opens_its_own_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store
        .store_batch(
            &rules("support"),
            &[copy("support@shop.test", "k1", "a@customer.test", "same@x")],
        )
        .await
        .unwrap();
    let other = store
        .store_batch(
            &rules("returns"),
            &[copy(
                "returns@shop.test",
                "k2",
                "b@elsewhere.test",
                "same@x",
            )],
        )
        .await
        .unwrap();
    assert!(matches!(other[0], Outcome::NewTicket { .. }), "{other:?}");
    assert_eq!(store.count_tickets().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_storing_copies_at_the_same_moment_open_one_ticket_each_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Each account stores the same 40 messages in batches of 4, both at once.
    let batches = |account: &'static str| {
        (0..10)
            .map(|b| {
                (0..4)
                    .map(|i| {
                        let n = b * 4 + i;
                        copy(
                            &format!("{account}@shop.test"),
                            &format!("imap:INBOX:1:{n}"),
                            &format!("c{n}@customer.test"),
                            &format!("m{n}@customer.test"),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let poller = |account: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for batch in batches(account) {
                outcomes.extend(store.store_batch(&rules(account), &batch).await.unwrap());
            }
            outcomes
        })
    };
    let (a, b) = tokio::join!(poller("support"), poller("returns"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(store.count_tickets().await.unwrap(), 40);
    for (x, y) in a.iter().zip(&b) {
        // Exactly one of the two copies opened the ticket; the other names the same ticket.
        match (x, y) {
            (Outcome::NewTicket { number: n }, Outcome::Duplicate { number: m })
            | (Outcome::Duplicate { number: m }, Outcome::NewTicket { number: n }) => {
                assert_eq!(n, m)
            }
            other => panic!("{other:?}"),
        }
    }
    for t in store.list_tickets(&Default::default()).await.unwrap() {
        let d = store.show_ticket(&t.number).await.unwrap().unwrap();
        assert_eq!(d.articles.len(), 1);
        let mut by = d.articles[0].received_by.clone();
        by.sort();
        assert_eq!(by, vec!["returns", "support"], "{}", t.number);
    }
}

#[tokio::test]
async fn a_bounce_nobody_can_attribute_stays_a_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let raw = include_bytes!("data/postfix_dsn_text_rfc822_headers.eml").to_vec();
    let dsn = Incoming {
        source_key: "imap:INBOX:1:1".parse().unwrap(),
        parsed: parse(&raw),
        raw,
        received_at: Utc::now(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    };
    // The returned Message-ID was never sent from this store.
    let out = store.store_batch(&rules("support"), &[dsn]).await.unwrap();
    let Outcome::NewTicket { number } = &out[0] else {
        panic!("{out:?}")
    };
    let t = store.show_ticket(number).await.unwrap().unwrap();
    assert_eq!(t.subject, "Undelivered Mail Returned to Sender");
    assert!(!t.articles[0].bounce);
}

#[tokio::test]
async fn a_store_written_before_these_rules_merges_with_its_old_mails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    // A store as the previous release left it: only the first migration, one stored mail.
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        let initial = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite/0001_initial.sql"),
        )
        .unwrap();
        sqlx::raw_sql(&initial).execute(&pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, created_at, updated_at) \
             VALUES (1, '10001', 'support', 'question', 'open', 'alt', 'k@customer.test', 'x', 'x');",
        )
        .execute(&pool)
        .await
        .unwrap();
        // Its bytes as support@ received them: a copy is one only if its content is the same.
        let stored = copy(
            "support@shop.test",
            "imap:INBOX:1:1",
            "k@customer.test",
            "old@customer.test",
        );
        sqlx::query(
            "INSERT INTO articles (id, ticket_id, account, source_key, message_id, from_email, raw, raw_sha256, received_at, created_at) \
             VALUES (1, 1, 'support', 'imap:INBOX:1:1', 'old@customer.test', 'K@customer.test', ?, ?, 'x', 'x')",
        )
        .bind(&stored.raw)
        .bind(mail2ticket::store::sha256_hex(&stored.raw))
        .execute(&pool)
        .await
        .unwrap();
        // sqlx's bookkeeping of the applied first migration, as the previous release wrote it.
        let migrator = sqlx::migrate!("./migrations/sqlite");
        let first = migrator.iter().next().unwrap();
        sqlx::raw_sql(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, 1, ?, 0)")
            .bind(first.version)
            .bind(&*first.description)
            .bind(&*first.checksum)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.list_tickets(&Default::default()).await.unwrap().len(),
        1
    );
    let out = store
        .store_batch(
            &rules("returns"),
            &[copy(
                "returns@shop.test",
                "pop3:u9",
                "k@customer.test",
                "old@customer.test",
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Duplicate {
            number: "10001".into()
        }]
    );
    let t = store.show_ticket("10001").await.unwrap().unwrap();
    assert_eq!(t.articles[0].received_by, vec!["support", "returns"]);
    // Another mail under the old message's sender and Message-ID is a mail of its own.
    let mut other = copy(
        "returns@shop.test",
        "pop3:u10",
        "k@customer.test",
        "old@customer.test",
    );
    other.raw = String::from_utf8(other.raw)
        .unwrap()
        .replace("Hallo", "Eine andere Mail")
        .into_bytes();
    other.parsed = parse(&other.raw);
    let out = store
        .store_batch(&rules("returns"), &[other])
        .await
        .unwrap();
    assert!(matches!(out[..], [Outcome::NewTicket { .. }]), "{out:?}");
}

/// A shop plug-in that writes every mail with one Message-ID: five different mails, in one
/// batch and in a later one, are five articles; the same bytes again are one.
#[tokio::test]
async fn different_mails_with_one_sender_and_message_id_are_each_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mail = |key: &str, body: &str| {
        let mut m = copy("support@shop.test", key, "shop@plugin.test", "fixed@plugin");
        m.raw = String::from_utf8(m.raw)
            .unwrap()
            .replace("Hallo", body)
            .into_bytes();
        m.parsed = parse(&m.raw);
        m
    };
    let first = store
        .store_batch(
            &rules("support"),
            &[mail("k1", "Eins"), mail("k2", "Zwei"), mail("k3", "Drei")],
        )
        .await
        .unwrap();
    let later = store
        .store_batch(
            &rules("support"),
            &[mail("k4", "Vier"), mail("k5", "Fünf"), mail("k6", "Eins")],
        )
        .await
        .unwrap();
    let opened = first
        .iter()
        .chain(&later)
        .filter(|o| matches!(o, Outcome::NewTicket { .. }))
        .count();
    assert_eq!(opened, 5, "{first:?} {later:?}");
    assert!(
        matches!(later[2], Outcome::Duplicate { .. }),
        "the same mail again is a copy: {later:?}"
    );
    assert_eq!(store.count_tickets().await.unwrap(), 5);
}

#[tokio::test]
async fn the_customer_is_the_reply_to_person_unless_the_account_chooses_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let form = |key: &str, id: &str, extra: &str| {
        let raw = format!(
            "From: Webshop Kontaktformular <noreply@shop.test>\r\n{extra}\
             Reply-To: =?UTF-8?Q?Erika_M=C3=BCstermann?= <erika@customer.test>\r\n\
             Subject: Kontakt\r\nMessage-ID: <{id}@shop.test>\r\n\r\nWo bleibt mein Paket?\r\n"
        )
        .into_bytes();
        Incoming {
            source_key: self::key(key),
            parsed: parse(&raw),
            raw,
            received_at: Utc::now(),
            arrived: None,
            extent: mail2ticket::ingest::Extent::Whole,
        }
    };
    // The default, once through the bulk path and once through the one-by-one path (a mail
    // with references is looked up first, so it is written on its own).
    store
        .store_batch(
            &rules("support"),
            &[
                form("a", "f1", ""),
                form("b", "f2", "In-Reply-To: <unknown@shop.test>\r\n"),
            ],
        )
        .await
        .unwrap();
    let mut from_rules = rules("forms");
    from_rules.customer = CustomerSource::From;
    store
        .store_batch(&from_rules, &[form("c", "f3", "")])
        .await
        .unwrap();
    let tickets = store.list_tickets(&Default::default()).await.unwrap();
    let by_account = |account: &str| -> Vec<(String, String)> {
        tickets
            .iter()
            .filter(|t| t.account == account && t.subject == "Kontakt")
            .map(|t| (t.customer.clone(), t.customer_name.clone()))
            .collect()
    };
    let erika = (
        "erika@customer.test".to_string(),
        "Erika Müstermann".to_string(),
    );
    assert_eq!(by_account("support"), vec![erika.clone(), erika]);
    assert_eq!(
        by_account("forms"),
        vec![(
            "noreply@shop.test".to_string(),
            "Webshop Kontaktformular".to_string()
        )]
    );
}

#[tokio::test]
async fn a_store_written_before_the_migrations_moved_per_backend_still_opens() {
    // migrations/0001.. became migrations/sqlite/0001.. unchanged: sqlx checks each applied
    // migration's checksum, so a moved-and-edited file would refuse this store.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stores/main-2026-11-30.sqlite"),
        &path,
    )
    .unwrap();
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.count_tickets().await.unwrap(), 44);
    // Every fetched mail stays known as processed: none would be fetched twice.
    assert_eq!(
        store
            .processed("fixture-imap", "imap:")
            .await
            .unwrap()
            .len(),
        44
    );
    assert_eq!(
        store.processed("fixture-pop", "pop3:").await.unwrap().len(),
        12
    );
    store.close().await;
}

#[tokio::test]
async fn an_html_body_is_kept_once_in_the_raw_mail_and_its_text_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let raw = b"From: Kunde <k@customer.test>\r\nTo: support@shop.test\r\nSubject: Rechnung\r\n\
Message-ID: <html-1@customer.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Die Rechnung ist falsch.\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Die <b>Rechnung</b> ist falsch.</p>\r\n--b--\r\n"
        .to_vec();
    let mail = Incoming {
        source_key: key("imap:INBOX:1:7"),
        parsed: parse(&raw),
        raw: raw.clone(),
        received_at: Utc::now(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    };
    let outcome = store.store_batch(&rules("support"), &[mail]).await.unwrap();
    let Outcome::NewTicket { number } = &outcome[0] else {
        panic!("{outcome:?}")
    };
    let (text, html): (String, String) =
        sqlx::query_as("SELECT text_body, html_body FROM articles")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(text, "", "the text is stored compressed, in text_zstd");
    let shown = store.show_ticket(number).await.unwrap().unwrap();
    let shown = &shown.articles[0].text;
    assert!(shown.contains("Die Rechnung ist falsch."), "{shown:?}");
    assert_eq!(html, "", "the HTML is not copied out of the raw mail");
    let stored = store.raw_articles(number).await.unwrap();
    assert_eq!(
        stored,
        vec![raw],
        "the raw mail, with its HTML, byte for byte"
    );
}

/// A compressed text damaged after it was written (a bad disk, a hand edit) does not hide the
/// ticket: `tickets show` names the damage in the article's place and says where the mail is.
#[tokio::test]
async fn a_damaged_stored_text_is_named_and_the_ticket_still_shows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mails = [
        copy(
            "support@shop.test",
            "imap:INBOX:1:1",
            "k@customer.test",
            "a@customer.test",
        ),
        copy(
            "support@shop.test",
            "imap:INBOX:1:2",
            "k@customer.test",
            "b@customer.test",
        ),
    ];
    let outcomes = store.store_batch(&rules("support"), &mails).await.unwrap();
    let Outcome::NewTicket { number } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    sqlx::query("UPDATE articles SET text_zstd = $1 WHERE message_id = 'a@customer.test'")
        .bind(b"not a zstd frame".to_vec())
        .execute(store.pool())
        .await
        .unwrap();

    let shown = store.show_ticket(number).await.unwrap().unwrap();
    let text = &shown.articles[0].text;
    assert!(
        text.contains("is damaged") && text.contains("--raw"),
        "{text:?}"
    );
    assert_eq!(
        store.raw_articles(number).await.unwrap(),
        vec![mails[0].raw.clone()]
    );
    store.close().await;
}
