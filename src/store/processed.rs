//! The bookkeeping of source keys: which mails of an account are handled (`processed`), which
//! left the server, which are skipped on purpose, and each IMAP folder's UIDVALIDITY. The rows
//! of a batch's mails are written with the batch (see `ingest`); everything else is here.
//!
//! Keys come and go as [`SourceKey`]s; the table holds their text form, so they are turned into
//! text when bound and parsed when read, here and nowhere else.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Transaction};

use super::sql::IN_CHUNK;
use super::{now_rfc3339, Backend, SqlBuilder, Store, StoreError};
use crate::ingest::outcome::{Recorded, Skipped};
use crate::ingest::route::{Held, TicketRef};
use crate::ingest::SourceKey;

/// A processed source key and whether its mail was already disposed on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedState {
    pub disposed: bool,
    pub outcome: Recorded,
}

impl Store {
    /// Source keys already handled for this account whose text form starts with `prefix`.
    ///
    /// Fails closed: a stored key this version cannot read (written by a newer mail2ticket, or
    /// damaged) is an error, so the pass ends before any mail of the account moves, rather than
    /// taking that row's mail for one never seen.
    pub async fn processed(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = self
            .bounded(
                sqlx::query_as(
                    "SELECT source_key, disposed_at, outcome FROM processed WHERE account = $1 AND substr(source_key, 1, length($2)) = $2",
                )
                .bind(account)
                .bind(prefix)
                .fetch_all(&self.pool),
            )
            .await?;
        rows.into_iter()
            .map(|(k, d, outcome)| {
                let key = k.parse().map_err(|_| StoreError::UnreadableSourceKey {
                    account: account.to_string(),
                    key: k.clone(),
                })?;
                let state = ProcessedState {
                    disposed: d.is_some(),
                    outcome: Recorded::from_label(&outcome),
                };
                Ok((key, state))
            })
            .collect()
    }

    /// Records a mail that is deliberately not fetched (too large), so it is counted once.
    pub async fn record_skipped(
        &self,
        account: &str,
        source_key: &SourceKey,
        outcome: Skipped,
    ) -> Result<bool, StoreError> {
        let done = self
            .bounded(
                sqlx::query(
                    "INSERT INTO processed (account, source_key, outcome, created_at, disposed_at) \
                     VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
                )
                .bind(account)
                .bind(source_key.to_string())
                .bind(outcome.label())
                .bind(now_rfc3339())
                .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records, in a transaction of its own, that these mails left the server.
    pub async fn mark_disposed(&self, account: &str, keys: &[SourceKey]) -> Result<(), StoreError> {
        self.bounded(self.mark_disposed_tx(account, keys)).await
    }

    async fn mark_disposed_tx(&self, account: &str, keys: &[SourceKey]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        record_disposed(&mut tx, account, keys).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets processed keys (POP3 keep mode prunes UIDLs that left the server).
    pub async fn forget_processed(
        &self,
        account: &str,
        keys: &[SourceKey],
    ) -> Result<(), StoreError> {
        self.bounded(self.forget_processed_tx(account, keys)).await
    }

    async fn forget_processed_tx(
        &self,
        account: &str,
        keys: &[SourceKey],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for key in keys {
            sqlx::query("DELETE FROM processed WHERE account = $1 AND source_key = $2")
                .bind(account)
                .bind(key.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn uidvalidity(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<u32>, StoreError> {
        let v: Option<i64> = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT uidvalidity FROM mailbox_state WHERE account = $1 AND folder = $2",
                )
                .bind(account)
                .bind(folder)
                .fetch_optional(&self.pool),
            )
            .await?;
        Ok(v.map(|v| v as u32))
    }

    pub async fn set_uidvalidity(
        &self,
        account: &str,
        folder: &str,
        value: u32,
    ) -> Result<(), StoreError> {
        self.bounded(
            sqlx::query(
                "INSERT INTO mailbox_state (account, folder, uidvalidity, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at",
            )
            .bind(account)
            .bind(folder)
            .bind(value as i64)
            .bind(now_rfc3339())
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }
}

/// What `processed` says about some of the account's keys (see [`processed_among`]).
#[derive(Debug, Default)]
pub(super) struct RecordedKeys {
    /// Handled already: nothing more is written for them.
    pub processed: HashSet<SourceKey>,
    /// Held by their header alone, with where the header is: their whole mail is still to come.
    pub held: HashMap<SourceKey, Held>,
}

/// What `processed` records for these of the account's keys. A key recorded as too large
/// without a ticket (by an earlier version, or a POP3 server without TOP), or held by a header
/// whose article is not there, is in neither set: its mail is taken up as a new one, and its
/// record gives way to the new one (see [`give_way`]).
pub(super) async fn processed_among(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: &[&SourceKey],
) -> Result<RecordedKeys, StoreError> {
    // The batch's own keys by their text: a row found is one of them, nothing to parse back.
    let by_text: HashMap<String, &SourceKey> = keys.iter().map(|k| (k.to_string(), *k)).collect();
    let texts: Vec<&str> = by_text.keys().map(String::as_str).collect();
    let mut out = RecordedKeys::default();
    for chunk in texts.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT p.source_key, p.outcome, a.id, t.id, t.number FROM processed p \
             LEFT JOIN articles a ON a.id = p.article_id \
             LEFT JOIN tickets t ON t.id = a.ticket_id WHERE p.account = ",
        );
        q.push_bind(account).push(" AND p.source_key IN (");
        q.push_list(chunk.iter().copied());
        q.push(")");
        type Row = (String, String, Option<i64>, Option<i64>, Option<String>);
        let rows: Vec<Row> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (text, outcome, article_id, ticket_id, number) in rows {
            let Some(&key) = by_text.get(&text) else {
                continue;
            };
            match (
                Recorded::from_label(&outcome),
                article_id,
                ticket_id,
                number,
            ) {
                (Recorded::HeaderOnly, Some(article_id), Some(id), Some(number)) => {
                    let ticket = TicketRef { id, number };
                    out.held.insert(key.clone(), Held { ticket, article_id });
                }
                (Recorded::HeaderOnly | Recorded::Skipped(Skipped::Oversized), ..) => {}
                _ => {
                    out.processed.insert(key.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Removes the records of these keys that a new record replaces: a mail recorded as too large
/// without a ticket, or held by its header, whose header or whole mail the batch stores now.
/// Any other record of a key stays, and the batch's INSERT of the key fails on it: a batch that
/// would record a handled mail twice is a bug, and rolls back.
pub(super) async fn give_way(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: &[&str],
) -> Result<(), StoreError> {
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(Backend::of(tx), "DELETE FROM processed WHERE account = ");
        q.push_bind(account).push(" AND outcome IN (");
        q.push_list(Recorded::GIVE_WAY.iter().copied());
        q.push(") AND source_key IN (");
        q.push_list(chunk.iter().copied());
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records that these mails left the server: bookkeeping only (a mail whose record is missing
/// is found gone by the next pass), so it rides along with whatever write comes next.
pub(super) async fn record_disposed(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: &[SourceKey],
) -> Result<(), StoreError> {
    let now = now_rfc3339();
    let keys: Vec<String> = keys.iter().map(SourceKey::to_string).collect();
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(Backend::of(tx), "UPDATE processed SET disposed_at = ");
        q.push_bind(&now)
            .push(" WHERE account = ")
            .push_bind(account)
            .push(" AND source_key IN (");
        q.push_list(chunk.iter().map(String::as_str));
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// One `processed` row per stored mail: (source key, outcome label, article id, time).
pub(super) async fn insert_processed(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, &str, Option<i64>, String)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(IN_CHUNK / 5) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO processed (account, source_key, outcome, article_id, created_at) ",
        );
        q.push_values(chunk, |b, (key, outcome, article_id, now)| {
            b.push_bind(account)
                .push_bind(*key)
                .push_bind(*outcome)
                .push_bind(*article_id)
                .push_bind(now.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_key_this_version_cannot_read_is_an_error_not_a_missing_row() {
        let store = Store::open_in_memory().await.unwrap();
        let key = SourceKey::Pop3 { uidl: "u1".into() };
        assert!(store
            .record_skipped("shop", &key, Skipped::Oversized)
            .await
            .unwrap());
        let read = store
            .processed("shop", SourceKey::POP3_PREFIX)
            .await
            .unwrap();
        assert_eq!(read[&key].outcome, Recorded::Skipped(Skipped::Oversized));

        // A POP3 key without a UIDL: no version writes it, so the row is damaged.
        sqlx::query(
            "INSERT INTO processed (account, source_key, outcome, created_at) \
             VALUES ('shop', 'pop3:', 'ticket', '2026-01-01T00:00:00Z')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let err = store
            .processed("shop", SourceKey::POP3_PREFIX)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::UnreadableSourceKey { account, key }
                if account == "shop" && key == "pop3:"),
            "{err}"
        );
        assert!(!err.is_environmental(), "the row's fault, not the disk's");
        assert!(
            store.processed("shop", "imap:").await.unwrap().is_empty(),
            "keys of another prefix are not read"
        );
    }

    #[tokio::test]
    async fn forgotten_and_disposed_keys_are_found_by_their_text_form() {
        let store = Store::open_in_memory().await.unwrap();
        let keys: Vec<SourceKey> = ["a", "b", "c"]
            .map(|uidl| SourceKey::Pop3 { uidl: uidl.into() })
            .into();
        for key in &keys {
            store
                .record_skipped("shop", key, Skipped::Quarantined)
                .await
                .unwrap();
        }
        store.mark_disposed("shop", &keys[..1]).await.unwrap();
        store.forget_processed("shop", &keys[2..]).await.unwrap();
        let read = store
            .processed("shop", SourceKey::POP3_PREFIX)
            .await
            .unwrap();
        assert_eq!(read.len(), 2);
        assert!(read[&keys[0]].disposed);
        assert!(!read[&keys[1]].disposed);
        assert!(!read.contains_key(&keys[2]));
    }
}
