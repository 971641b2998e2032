//! Stores written by earlier versions (tests/data/stores) keep working with today's code: the
//! migrations apply, every source key is read as the same typed key and recognised as
//! processed, so an upgrade fetches no mail twice, and every stored Message-ID is found again,
//! so a reply to an old mail joins its ticket.

use std::path::{Path, PathBuf};

use mail2ticket::ingest::outcome::{Outcome, Recorded};
use mail2ticket::source::SourceKey;
use mail2ticket::store::{FindQuery, Incoming, Store, TicketRules};

/// Each fixture, and the UIDVALIDITY of its IMAP account's INBOX.
const FIXTURES: [(&str, u32); 2] = [
    ("main-2026-11-30.sqlite", 1796005103),
    ("main-2026-12-01.sqlite", 1796091984),
];

fn earlier_store(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/stores")
        .join(name);
    let to = dir.path().join("tickets.sqlite");
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    (dir, to)
}

/// Every processed key of the store's two accounts, in the text form the store holds.
async fn processed_keys(store: &Store) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT account, source_key FROM processed \
         WHERE account IN ('fixture-imap', 'fixture-pop')",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_store_written_by_an_earlier_main_keeps_every_mail_processed() {
    for (fixture, _) in FIXTURES {
        every_mail_is_processed(fixture).await;
    }
}

async fn every_mail_is_processed(fixture: &str) {
    let (_dir, path) = earlier_store(fixture);
    let store = Store::open(&path).await.expect("today's migrations apply");
    let keys = processed_keys(&store).await;
    assert_eq!(keys.len(), 56, "the README counts 56 processed keys");
    for (account, count) in [("fixture-imap", 44), ("fixture-pop", 12)] {
        // An empty prefix matches every key: the store reads each one as a typed key.
        let read = store.processed(account, "").await.unwrap();
        assert_eq!(read.len(), count, "{account}");
    }

    let mut imap = 0;
    let mut pop3 = 0;
    for (account, text) in &keys {
        let key: SourceKey = text.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &key.to_string(),
            text,
            "the text form is kept byte for byte"
        );
        let prefix = match &key {
            SourceKey::Imap {
                folder,
                uidvalidity,
                ..
            } => {
                imap += 1;
                assert_eq!(
                    (account.as_str(), folder.as_str()),
                    ("fixture-imap", "INBOX")
                );
                assert_eq!(
                    store.uidvalidity(account, folder).await.unwrap(),
                    Some(*uidvalidity)
                );
                SourceKey::imap_prefix(folder, *uidvalidity)
            }
            SourceKey::Pop3 { .. } => {
                pop3 += 1;
                assert_eq!(account, "fixture-pop");
                SourceKey::POP3_PREFIX.to_string()
            }
            SourceKey::Graph { .. } => panic!("the earlier stores predate Graph: {text}"),
        };
        // The pass asks exactly this: a mail with this key on the server is disposed of, not
        // fetched again.
        let processed = store.processed(account, &prefix).await.unwrap();
        let state = &processed[&key];
        assert_eq!(state.outcome, Recorded::Stored, "{text}");
        assert!(
            state.disposed,
            "{text} was disposed of by the run that wrote the store"
        );
    }
    assert_eq!((imap, pop3), (44, 12));
}

#[tokio::test]
async fn the_quarantined_mail_of_those_stores_is_not_processed_and_is_listed_in_quarantine() {
    for (fixture, uidvalidity) in FIXTURES {
        let (_dir, path) = earlier_store(fixture);
        let store = Store::open(&path).await.unwrap();
        let quarantined = SourceKey::Imap {
            folder: "INBOX".into(),
            uidvalidity,
            uid: 45,
        };
        let processed = store
            .processed(
                "fixture-imap",
                &SourceKey::imap_prefix("INBOX", uidvalidity),
            )
            .await
            .unwrap();
        // Not processed: on the server it carries the quarantine keyword, so the pass skips it
        // and it stays there for the admin.
        assert_eq!(processed.len(), 44, "{fixture}");
        assert!(!processed.contains_key(&quarantined));

        // Recorded before the store kept what a failing mail looked like: no sender, subject
        // or size, and its last failure stands in for the first.
        let listed = store.quarantined(None).await.unwrap();
        assert_eq!(listed.len(), 1, "{fixture}");
        let mail = &listed[0];
        assert_eq!(
            (mail.account.as_str(), &mail.key),
            ("fixture-imap", &quarantined)
        );
        assert_eq!(
            (mail.sender.as_str(), mail.subject.as_str(), mail.size),
            ("", "", 0)
        );
        assert_eq!(mail.attempts, 3);
        assert!(!mail.error.is_empty(), "{fixture}");
        assert!(mail.since.timestamp() > 0, "{fixture}: {}", mail.since);
    }
}

/// Migration 0013 finds Message-IDs by a hash: opening the store fills the hashes of every
/// article already stored and drops the old index; each article is found by its Message-ID as
/// before, and a reply to it joins its ticket.
#[tokio::test]
async fn every_article_of_those_stores_is_found_by_its_message_id() {
    for (fixture, _) in FIXTURES {
        let (_dir, path) = earlier_store(fixture);
        let store = Store::open(&path).await.unwrap();
        let old_index: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'articles_message_id'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(old_index, 0, "{fixture}");
        let articles: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.message_id, t.number FROM articles a JOIN tickets t ON t.id = a.ticket_id \
             WHERE a.message_id != '' ORDER BY a.id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            articles.len(),
            56,
            "{fixture}: the README counts 56 articles"
        );
        for (message_id, _) in &articles {
            let query = FindQuery {
                message_id: Some(message_id.clone()),
                ..FindQuery::default()
            };
            let found: Vec<String> = store
                .find_articles(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|hit| hit.message_id)
                .collect();
            assert_eq!(found, std::slice::from_ref(message_id), "{fixture}");
        }

        let (message_id, number) = &articles[20];
        let raw = format!(
            "From: Kundin <fixture-customer@example.test>\r\nSubject: Re: meine Frage\r\n\
             Message-ID: <after-upgrade@example.test>\r\nIn-Reply-To: <{message_id}>\r\n\r\n\
             Danke!\r\n"
        )
        .into_bytes();
        let reply = Incoming {
            source_key: "imap:INBOX:1:9001".parse().unwrap(),
            parsed: mail2ticket::ingest::parse::parse(&raw),
            raw,
            received_at: chrono::Utc::now(),
            arrived: None,
            extent: mail2ticket::ingest::Extent::Whole,
        };
        let outcome = store
            .store_batch(&TicketRules::without_replies("fixture-imap"), &[reply])
            .await
            .unwrap();
        assert_eq!(
            outcome,
            [Outcome::FollowUp {
                number: number.clone()
            }],
            "{fixture}"
        );
    }
}

/// The daemon and a command opening a store written before migration 0013 at the same moment:
/// both bring it up to date, and every article has exactly one hash row.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_opening_that_store_at_once_convert_it_once() {
    let (_dir, path) = earlier_store("main-2026-12-01.sqlite");
    let (a, b) = tokio::join!(Store::open(&path), Store::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());
    for store in [&a, &b] {
        let (rows, articles): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM message_id_hashes), \
             (SELECT COUNT(*) FROM articles WHERE message_id != '')",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((rows, articles), (56, 56));
    }
    a.close().await;
    b.close().await;
}
