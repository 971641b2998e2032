//! Finding articles by Message-ID through `message_id_hashes` (migration 0013): a 64-bit hash
//! of each article's Message-ID, so that the index every new mail is inserted into is a quarter
//! of the size of one on the text, and more of a batch's inserts share a page of it (a store
//! of 100,000 articles: a sixth fewer pages added to a backlog's writes; BENCHMARKS.md).
//!
//! SQLite has no hash function of its own, so mail2ticket computes the hash, here and nowhere
//! else. A hash can collide: every lookup also compares `articles.message_id`.
//!
//! Stores written before migration 0013 are filled when they are opened ([`Store::migrated`]
//! calls [`fill`]): in batches of one short transaction each, read from the old index in
//! Message-ID order. Interrupted, the next open starts over and skips the rows already there;
//! the old index `articles_message_id` is dropped only once every article has its row, so
//! its presence is what says the fill is not complete.

use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Transaction};

use super::{Backend, SqlBuilder, Store, StoreError};

/// The key of `message_id_hashes.hash`: the first 8 bytes of the SHA-256 of the Message-ID as
/// stored (without angle brackets), big-endian, as a signed integer (both stores' integers are
/// signed 64-bit). On PostgreSQL the same value is
/// `('x' || left(encode(sha256(convert_to(message_id, 'UTF8')), 'hex'), 16))::bit(64)::bigint`.
pub(crate) fn message_id_hash(message_id: &str) -> i64 {
    let digest = Sha256::digest(message_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Two bound values a row: 10,000 rows stay under SQLite's 32,766 bound values.
const INSERT_CHUNK: usize = 10_000;

/// Records the Message-ID of each `(article id, Message-ID)`; articles without one get no row.
/// A row already there is left alone (the fill may meet articles a writer just recorded).
pub(super) async fn insert_message_id_hashes(
    tx: &mut Transaction<'_, Any>,
    articles: impl IntoIterator<Item = (i64, &str)>,
) -> Result<(), StoreError> {
    let mut rows: Vec<(i64, i64)> = articles
        .into_iter()
        .filter(|(_, message_id)| !message_id.is_empty())
        .map(|(article_id, message_id)| (message_id_hash(message_id), article_id))
        .collect();
    // In key order, each page of the index is visited once per statement.
    rows.sort_unstable();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO message_id_hashes (hash, article_id) ",
        );
        q.push_values(chunk, |b, (hash, article_id)| {
            b.push_bind(*hash).push_bind(*article_id);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Articles read per transaction while filling: a few hundred kilobytes of Message-IDs, and the
/// write lock held for about 0.1 s on SQLite and 0.4 s on PostgreSQL (a store of a million
/// articles converted in 12 s and 41 s, BENCHMARKS.md), so a daemon beside the fill hardly waits.
const FILL_BATCH: i64 = 10_000;

/// Articles between two progress lines of a long fill (about 6 s on SQLite).
const PROGRESS_EVERY: u64 = 500_000;

/// Gives every stored article its `message_id_hashes` row, then drops the old index. Once that
/// is done, costs one catalogue query.
pub(super) async fn fill(store: &Store) -> Result<u64, StoreError> {
    fill_in_batches(store, FILL_BATCH).await
}

async fn fill_in_batches(store: &Store, batch_size: i64) -> Result<u64, StoreError> {
    // Without a lock first: a store already converted opens without waiting for a writer.
    if !old_index_exists(&mut *store.pool.acquire().await?).await? {
        return Ok(0);
    }
    let mut filled = 0u64;
    let mut after = String::new();
    loop {
        // Maintenance: its statements are not cut by the daemon's statement timeout.
        let mut tx = store.maintenance_tx().await?;
        // Asked in every batch: another process opening the store at the same time may have
        // finished the fill, and without the old index the next read would scan every article.
        if !old_index_exists(&mut tx).await? {
            return Ok(filled);
        }
        let mut batch: Vec<(String, i64)> = sqlx::query_as(
            "SELECT message_id, id FROM articles WHERE message_id > $1 ORDER BY message_id LIMIT $2",
        )
        .bind(&after)
        .bind(batch_size)
        .fetch_all(&mut *tx)
        .await?;
        let last = match batch.last() {
            Some((message_id, _)) => message_id.clone(),
            None => {
                sqlx::query("DROP INDEX IF EXISTS articles_message_id")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                if filled > 0 {
                    tracing::info!(store = %store.shown(), articles = filled, "Message-ID lookup table filled");
                }
                return Ok(filled);
            }
        };
        if filled == 0 {
            tracing::info!(
                store = %store.shown(),
                "filling the Message-ID lookup table for the articles already stored \
                 (migration 0013, once; an interrupted fill starts over at the next start)"
            );
        }
        if batch.len() as i64 == batch_size {
            // The next batch starts after `last`: all of its articles belong to this one.
            batch.retain(|(message_id, _)| *message_id != last);
            let rest: Vec<(String, i64)> =
                sqlx::query_as("SELECT message_id, id FROM articles WHERE message_id = $1")
                    .bind(&last)
                    .fetch_all(&mut *tx)
                    .await?;
            batch.extend(rest);
        }
        insert_message_id_hashes(&mut tx, batch.iter().map(|(m, id)| (*id, m.as_str()))).await?;
        tx.commit().await?;
        let before = filled;
        filled += batch.len() as u64;
        if before / PROGRESS_EVERY != filled / PROGRESS_EVERY {
            // A store of years takes minutes: say that it is moving.
            tracing::info!(store = %store.shown(), articles = filled, "still filling the Message-ID lookup table");
        }
        after = last;
    }
}

async fn old_index_exists(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    let sql = match Backend::of(conn) {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'articles_message_id'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname = 'articles_message_id'"
        }
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(conn).await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FindQuery, Incoming, Outcome, TicketRules};

    fn mail(n: u32, from: &str, message_id: &str, in_reply_to: Option<&str>) -> Incoming {
        let reply = in_reply_to
            .map(|id| format!("In-Reply-To: <{id}>\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "From: {from}\r\nSubject: Frage {n}\r\nMessage-ID: <{message_id}>\r\n{reply}\r\nText {n}\r\n"
        );
        Incoming {
            source_key: format!("imap:INBOX:1:{n}").parse().unwrap(),
            parsed: crate::ingest::parse::parse(raw.as_bytes()),
            raw: raw.into_bytes(),
            received_at: chrono::Utc::now(),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        }
    }

    fn rules() -> TicketRules {
        TicketRules::without_replies("support")
    }

    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    /// What a reply to `message_id` becomes, on an account without automatic replies and on one
    /// with them (the lookup is the same; the decision differs in the reply only).
    async fn joined_by_reply(store: &Store, n: u32, message_id: &str) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (i, rules) in [rules(), TicketRules::with_test_replies("support")]
            .iter()
            .enumerate()
        {
            let n = n + i as u32;
            let reply = mail(n, "k@c.test", &format!("r{n}@c.test"), Some(message_id));
            out.extend(store.store_batch(rules, &[reply]).await.unwrap());
        }
        out
    }

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_the_sha256_big_endian() {
        // SHA-256("abc") begins ba7816bf8f01cfea.
        assert_eq!(message_id_hash("abc"), 0xba78_16bf_8f01_cfea_u64 as i64);
    }

    #[tokio::test]
    async fn a_store_written_before_the_hashes_is_filled_across_batches_and_loses_the_old_index() {
        let store = Store::open_in_memory().await.unwrap();
        // Three senders share one Message-ID: three articles, which a batch of 2 must not split.
        let mails: Vec<Incoming> = (1..=7)
            .map(|n| {
                let (from, id) = match n {
                    1..=3 => (format!("k{n}@c.test"), "shared@c.test".to_string()),
                    _ => ("k@c.test".to_string(), format!("m{n}@c.test")),
                };
                mail(n, &from, &id, None)
            })
            .collect();
        store.store_batch(&rules(), &mails).await.unwrap();
        // As a store written before migration 0013 is: the old index, no hashes.
        sqlx::query("DELETE FROM message_id_hashes")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("CREATE INDEX articles_message_id ON articles (message_id)")
            .execute(store.pool())
            .await
            .unwrap();
        // An interrupted fill left one row behind.
        let mut tx = store.write_tx().await.unwrap();
        insert_message_id_hashes(&mut tx, [(4, "m4@c.test")])
            .await
            .unwrap();
        tx.commit().await.unwrap();

        assert_eq!(fill_in_batches(&store, 2).await.unwrap(), 7);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM message_id_hashes").await,
            7
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'articles_message_id'"
            )
            .await,
            0
        );
        assert_eq!(fill_in_batches(&store, 2).await.unwrap(), 0, "done once");

        let shared = FindQuery {
            message_id: Some("<shared@c.test>".into()),
            ..FindQuery::default()
        };
        assert_eq!(store.find_articles(&shared).await.unwrap().len(), 3);
        let m5 = Outcome::FollowUp {
            number: "10005".into(),
        };
        assert_eq!(
            joined_by_reply(&store, 20, "m5@c.test").await,
            [m5.clone(), m5]
        );
    }

    #[tokio::test]
    async fn a_hash_collision_never_joins_a_reply_to_another_ticket() {
        let store = Store::open_in_memory().await.unwrap();
        store
            .store_batch(&rules(), &[mail(1, "k@c.test", "stored@c.test", None)])
            .await
            .unwrap();
        // Pretend that "other@c.test" hashes like the stored article's Message-ID.
        let mut tx = store.write_tx().await.unwrap();
        insert_message_id_hashes(&mut tx, [(1, "other@c.test")])
            .await
            .unwrap();
        tx.commit().await.unwrap();

        for outcome in joined_by_reply(&store, 10, "other@c.test").await {
            assert!(matches!(outcome, Outcome::NewTicket { .. }), "{outcome:?}");
        }
        let other = FindQuery {
            message_id: Some("other@c.test".into()),
            ..FindQuery::default()
        };
        assert!(store.find_articles(&other).await.unwrap().is_empty());
    }
}
