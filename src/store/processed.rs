//! The bookkeeping of source keys: which mails of an account are handled (`processed`), which
//! left the server, which are skipped on purpose, and each IMAP folder's UIDVALIDITY. The rows
//! of a batch's mails are written with the batch (see `ingest`); everything else is here.
//!
//! Keys come and go as [`SourceKey`]s; the table holds their text form, so they are turned into
//! text when bound and parsed when read, here and nowhere else.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use sqlx::{Any, Transaction};

use super::sql::IN_CHUNK;
use super::{now_rfc3339, Backend, SqlBuilder, Store, StoreError};
use crate::ingest::outcome::{Recorded, Skipped};
use crate::ingest::route::{Held, TicketRef};
use crate::ingest::SourceKey;

/// Which keys under a prefix this version reads for certain, by their shape alone, so that
/// [`Store::check_keys_readable`] need not parse them. Decided by parsing the prefix with a
/// sample ending, so it follows `SourceKey`'s parser rather than restating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadableShape {
    /// An IMAP folder's prefix (`imap:<folder>:<uidvalidity>:`): any ending of 1 to 9 ASCII
    /// digits is a UID that fits a u32.
    Digits,
    /// POP3's or Graph's prefix: any ending but the empty one.
    NotEmpty,
    /// Anything else: every key is parsed.
    Unknown,
}

impl ReadableShape {
    fn of(prefix: &str) -> ReadableShape {
        let reads = |ending: &str| format!("{prefix}{ending}").parse::<SourceKey>();
        match (reads("1"), reads("999999999"), reads("")) {
            (
                Ok(SourceKey::Imap { uid: 1, .. }),
                Ok(SourceKey::Imap { uid: 999999999, .. }),
                Err(_),
            ) => ReadableShape::Digits,
            (Ok(SourceKey::Pop3 { .. }), _, Err(_)) if prefix == SourceKey::POP3_PREFIX => {
                ReadableShape::NotEmpty
            }
            (Ok(SourceKey::Graph { .. }), _, Err(_)) if prefix == SourceKey::GRAPH_PREFIX => {
                ReadableShape::NotEmpty
            }
            _ => ReadableShape::Unknown,
        }
    }
}

/// The smallest text above every text that starts with `prefix`, by bytes: the prefix with its
/// last character one higher, where that is an ASCII character short of DEL.
fn just_above(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    (last.is_ascii() && last < 0x7E).then(|| {
        let mut above = prefix[..prefix.len() - 1].to_string();
        above.push(char::from(last + 1));
        above
    })
}

/// Which of the account's rows under a prefix [`Store::states_under`] reads.
#[derive(Debug, Clone, Copy)]
enum Rows {
    All,
    /// Held by their header and not gone: the partial index of migration 0023 answers.
    HeldByHeader,
}

/// A `processed` row as read: source key (text), `disposed_at`, outcome (label).
type StateRow = (String, Option<String>, String);

fn state(disposed_at: Option<String>, outcome: &str) -> ProcessedState {
    ProcessedState {
        disposed: disposed_at.is_some(),
        outcome: Recorded::from_label(outcome),
    }
}

/// Rows whose keys are parsed back; one this version cannot read fails the whole read.
fn parsed_states(
    account: &str,
    rows: Vec<StateRow>,
) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
    rows.into_iter()
        .map(|(k, disposed_at, outcome)| {
            let key = k.parse().map_err(|_| StoreError::UnreadableSourceKey {
                account: account.to_string(),
                key: k.clone(),
            })?;
            Ok((key, state(disposed_at, &outcome)))
        })
        .collect()
}

/// A processed source key and whether its mail was already disposed on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedState {
    pub disposed: bool,
    pub outcome: Recorded,
}

impl Store {
    /// Every source key handled for this account whose text form starts with `prefix`: the
    /// account's whole history under it, for tests and inspection. A pass reads only what it
    /// needs ([`Store::check_keys_readable`], [`Store::processed_listed`],
    /// [`Store::held_by_header`]).
    ///
    /// Fails on a stored key this version cannot read, as [`Store::check_keys_readable`].
    pub async fn processed(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
        self.states_under(account, prefix, Rows::All).await
    }

    /// Fails closed: a stored key under `prefix` that this version cannot read (written by a
    /// newer mail2ticket, or damaged) could be any mail's, so the pass ends before any mail of
    /// the account moves, rather than taking that row's mail for one never seen
    /// (docs/operations.md). The database leaves out the keys that are readable by their shape
    /// (see [`ReadableShape`]); the others, normally none, are parsed one at a time.
    pub async fn check_keys_readable(&self, account: &str, prefix: &str) -> Result<(), StoreError> {
        let mut q = SqlBuilder::new(
            self.backend,
            "SELECT source_key FROM processed WHERE account = ",
        );
        q.push_bind(account)
            .push(" AND substr(source_key, 1, length(")
            .push_bind(prefix)
            .push(")) = ")
            .push_bind(prefix);
        // SQLite compares text byte by byte, so the prefix is also a range of the primary key
        // and the read skips the account's keys of other folders (at 1,000,000 generated
        // articles, 60 ms a pass of reading half a million of them). PostgreSQL's collation may
        // not order by bytes: there the prefix test alone decides.
        if let (Backend::Sqlite, Some(above)) = (self.backend, just_above(prefix)) {
            q.push(" AND source_key >= ")
                .push_bind(prefix)
                .push(" AND source_key < ")
                .push_bind(above);
        }
        match ReadableShape::of(prefix) {
            // Left out: an ending of 1 to 9 characters, all digits.
            ReadableShape::Digits => {
                q.push(" AND (length(source_key) - length(")
                    .push_bind(prefix)
                    .push(") NOT BETWEEN 1 AND 9 OR substr(source_key, length(")
                    .push_bind(prefix)
                    .push(match self.backend {
                        Backend::Sqlite => ") + 1) GLOB '*[^0-9]*')",
                        Backend::Postgres => ") + 1) ~ '[^0-9]')",
                    });
            }
            // Left out: any ending but the empty one.
            ReadableShape::NotEmpty => {
                q.push(" AND source_key = ").push_bind(prefix);
            }
            ReadableShape::Unknown => {}
        }
        let unreadable: Option<String> = self
            .bounded(async {
                let mut keys = q.build_query_as::<(String,)>().fetch(&self.pool);
                while let Some((key,)) = keys.try_next().await? {
                    if key.parse::<SourceKey>().is_err() {
                        return Ok::<_, sqlx::Error>(Some(key));
                    }
                }
                Ok(None)
            })
            .await?;
        match unreadable {
            None => Ok(()),
            Some(key) => Err(StoreError::UnreadableSourceKey {
                account: account.to_string(),
                key,
            }),
        }
    }

    /// What the store records for these of the account's source keys, the mails a server lists
    /// now; a key without a row is not in the map. Only these keys are looked up, so what a pass
    /// holds in memory is as large as the mailbox, not as the account's history (which it read
    /// whole into a map before, every pass).
    pub async fn processed_listed<'k>(
        &self,
        account: &str,
        keys: impl Iterator<Item = &'k SourceKey>,
    ) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
        let by_text = KeysByText::new(keys);
        let mut out = HashMap::new();
        for chunk in by_text.chunks() {
            let mut q = SqlBuilder::new(
                self.backend,
                "SELECT source_key, disposed_at, outcome FROM processed WHERE account = ",
            );
            q.push_bind(account).push(" AND source_key IN (");
            q.push_list(chunk);
            q.push(")");
            let rows: Vec<StateRow> = self
                .bounded(q.build_query_as().fetch_all(&self.pool))
                .await?;
            for (text, disposed_at, outcome) in rows {
                if let Some(key) = by_text.key(&text) {
                    out.insert(key.clone(), state(disposed_at, &outcome));
                }
            }
        }
        Ok(out)
    }

    /// The account's mails under `prefix` held by their header alone and not gone from the
    /// server (mails too large to fetch: a few), through their own index (migration 0023).
    pub async fn held_by_header(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
        self.states_under(account, prefix, Rows::HeldByHeader).await
    }

    async fn states_under(
        &self,
        account: &str,
        prefix: &str,
        rows: Rows,
    ) -> Result<HashMap<SourceKey, ProcessedState>, StoreError> {
        let held = match rows {
            Rows::All => "",
            Rows::HeldByHeader => " AND outcome = 'header-only' AND disposed_at IS NULL",
        };
        let sql = format!(
            "SELECT source_key, disposed_at, outcome FROM processed WHERE account = $1 \
             AND substr(source_key, 1, length($2)) = $2{held}"
        );
        let found: Vec<StateRow> = self
            .bounded(
                sqlx::query_as(&sql)
                    .bind(account)
                    .bind(prefix)
                    .fetch_all(&self.pool),
            )
            .await?;
        parsed_states(account, found)
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

/// Keys looked up by their text, [`IN_CHUNK`] to a statement: a row found names one of them,
/// and is matched to it without parsing its text back.
struct KeysByText<'k> {
    keys: HashMap<String, &'k SourceKey>,
    texts: Vec<String>,
}

impl<'k> KeysByText<'k> {
    fn new(keys: impl Iterator<Item = &'k SourceKey>) -> Self {
        let keys: HashMap<String, &SourceKey> = keys.map(|k| (k.to_string(), k)).collect();
        let texts = keys.keys().cloned().collect();
        KeysByText { keys, texts }
    }

    /// The texts to bind, a statement's worth at a time.
    fn chunks(&self) -> impl Iterator<Item = impl Iterator<Item = &str>> {
        self.texts
            .chunks(IN_CHUNK)
            .map(|chunk| chunk.iter().map(String::as_str))
    }

    /// The key a row's text names.
    fn key(&self, text: &str) -> Option<&'k SourceKey> {
        self.keys.get(text).copied()
    }
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
    let by_text = KeysByText::new(keys.iter().copied());
    let mut out = RecordedKeys::default();
    for chunk in by_text.chunks() {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT p.source_key, p.outcome, a.id, t.id, t.number FROM processed p \
             LEFT JOIN articles a ON a.id = p.article_id \
             LEFT JOIN tickets t ON t.id = a.ticket_id WHERE p.account = ",
        );
        q.push_bind(account).push(" AND p.source_key IN (");
        q.push_list(chunk);
        q.push(")");
        type Row = (String, String, Option<i64>, Option<i64>, Option<String>);
        let rows: Vec<Row> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (text, outcome, article_id, ticket_id, number) in rows {
            let Some(key) = by_text.key(&text) else {
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

    async fn with_key(key: &str) -> Store {
        let store = Store::open_in_memory().await.unwrap();
        sqlx::query(
            "INSERT INTO processed (account, source_key, outcome, created_at) \
             VALUES ('shop', $1, 'ticket', '2026-01-01T00:00:00Z')",
        )
        .bind(key)
        .execute(store.pool())
        .await
        .unwrap();
        store
    }

    /// The database leaves out keys readable by their shape; whatever it leaves in is parsed.
    /// For every key, readable or not, the check agrees with the parser.
    #[tokio::test]
    async fn the_key_check_agrees_with_the_parser_for_every_shape_of_key() {
        let imap = SourceKey::imap_prefix("Erledigt/Geprüft:2026", 1_700_000_000);
        assert_eq!(ReadableShape::of(&imap), ReadableShape::Digits);
        assert_eq!(
            ReadableShape::of(SourceKey::POP3_PREFIX),
            ReadableShape::NotEmpty
        );
        assert_eq!(
            ReadableShape::of(SourceKey::GRAPH_PREFIX),
            ReadableShape::NotEmpty
        );
        assert_eq!(ReadableShape::of("imap:"), ReadableShape::Unknown);
        let endings = [
            "1",
            "42",
            "123456789",
            "4294967295",
            "4294967296",
            "+5",
            "5x",
            "x",
            "",
            "5:7",
            " 5",
            "٣",
            "0000000001",
        ];
        let mut cases: Vec<(String, String)> = endings
            .iter()
            .map(|e| (imap.clone(), format!("{imap}{e}")))
            .collect();
        for prefix in [SourceKey::POP3_PREFIX, SourceKey::GRAPH_PREFIX] {
            for ending in ["", "u1", "7"] {
                cases.push((prefix.to_string(), format!("{prefix}{ending}")));
            }
        }
        // Keys of neighbouring folders and UIDVALIDITYs, which the prefix must not take in.
        for other in [
            "imap:INBOX:50:1x",
            "imap:INBOX;:1x",
            "imap:INBOX:5",
            "imap:INBOX:4:x",
        ] {
            cases.push(("imap:INBOX:5:".to_string(), other.to_string()));
        }
        for (prefix, key) in cases {
            let store = with_key(&key).await;
            let checked = store.check_keys_readable("shop", &prefix).await;
            let parsed = key.parse::<SourceKey>();
            let expected = parsed.is_ok() || !key.starts_with(&prefix);
            assert_eq!(
                checked.is_ok(),
                expected,
                "{key:?} under {prefix:?}: {checked:?}"
            );
            if checked.is_err() {
                assert!(
                    matches!(&checked, Err(StoreError::UnreadableSourceKey { key: k, .. }) if *k == key)
                );
            }
        }
    }

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
