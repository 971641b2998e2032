//! Stores written by earlier versions (tests/data/stores) keep working with today's code: the
//! migrations apply, and every source key is read as the same typed key and recognised as
//! processed, so an upgrade fetches no mail twice.

use std::path::{Path, PathBuf};

use mail2ticket::ingest::outcome::Recorded;
use mail2ticket::source::SourceKey;
use mail2ticket::store::Store;

fn earlier_store(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/stores")
        .join(name);
    let to = dir.path().join("tickets.sqlite");
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    (dir, to)
}

/// Every processed key of the store's two accounts (an empty prefix matches every key).
async fn processed_keys(store: &Store) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    for account in ["fixture-imap", "fixture-pop"] {
        let processed = store.processed(account, "").await.unwrap();
        keys.extend(processed.into_keys().map(|k| (account.to_string(), k)));
    }
    keys
}

#[tokio::test]
async fn a_store_written_by_main_on_2026_11_30_keeps_every_mail_processed() {
    let (_dir, path) = earlier_store("main-2026-11-30.sqlite");
    let store = Store::open(&path).await.expect("today's migrations apply");
    let keys = processed_keys(&store).await;
    assert_eq!(keys.len(), 56, "the README counts 56 processed keys");

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
        };
        // The pass asks exactly this: a mail with this key on the server is disposed of, not
        // fetched again.
        let processed = store.processed(account, &prefix).await.unwrap();
        let state = &processed[text];
        assert_eq!(
            Recorded::from_label(&state.outcome),
            Recorded::Stored,
            "{text}"
        );
        assert!(
            state.disposed,
            "{text} was disposed of by the run that wrote the store"
        );
    }
    assert_eq!((imap, pop3), (44, 12));
}

#[tokio::test]
async fn the_quarantined_mail_of_that_store_is_not_processed() {
    let (_dir, path) = earlier_store("main-2026-11-30.sqlite");
    let store = Store::open(&path).await.unwrap();
    let quarantined = SourceKey::Imap {
        folder: "INBOX".into(),
        uidvalidity: 1796005103,
        uid: 45,
    };
    let processed = store
        .processed("fixture-imap", &SourceKey::imap_prefix("INBOX", 1796005103))
        .await
        .unwrap();
    // Not processed: on the server it carries the quarantine keyword, so the pass skips it and
    // it stays there for the admin.
    assert_eq!(processed.len(), 44);
    assert!(!processed.contains_key(&quarantined.to_string()));
}
