//! `mail2ticket store copy --from FILE`: a SQLite store copied into the configured store, for a
//! shop that moves its tickets to PostgreSQL (or to a new SQLite file).
//!
//! The source is read in one read transaction (a consistent snapshot, even were a daemon still
//! writing it) and the target written in one write transaction: a copy that fails half-way
//! leaves the target as empty as it was, and a second try starts from the beginning. The
//! target must hold no tickets yet, so nothing is ever copied twice. Before the commit, every
//! table is read back from the target and compared with what was read from the source: row
//! counts and a checksum over every value of every row (raw mails included). The columns copied are
//! those of the source, which has just been migrated to the same schema version as the target;
//! a PostgreSQL target gets `articles.words`, which a SQLite store has no column for, built from
//! each article's subject and text (see `word_vector`); a SQLite target indexes the words of the
//! compressed texts, which its trigger cannot read (see `article_text`).

use std::path::Path;

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row};

use super::article_text::{self, index_words};
use super::word_vector::words_column;
use super::{Backend, SqlBuilder, Store, StoreError};

/// A store's tables in an order their rows can be inserted in (each after the tables its
/// foreign keys name), and whether the table's `id` is an identity column on PostgreSQL, whose
/// sequence must then move past the copied ids.
const TABLES: &[(&str, bool)] = &[
    ("tickets", false),
    ("articles", false),
    ("message_id_hashes", false),
    ("raw_mails", false),
    ("attachment_contents", false),
    ("attachments", true),
    ("processed", false),
    ("mailbox_state", false),
    ("failures", false),
    ("alerts", true),
    ("outbox", true),
    ("messages", false),
    ("message_copies", true),
];

/// Tables a copy leaves out: the migration history (the target keeps its own), the leases of
/// running instances, SQLite's own bookkeeping and the full-text index (each target builds its
/// index from the rows it gets).
const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "account_leases",
    "sqlite_sequence",
    "articles_fts",
    "articles_fts_data",
    "articles_fts_idx",
    "articles_fts_docsize",
    "articles_fts_config",
];

/// Rows per INSERT, and the bytes after which a batch goes out early (raw mails can be large).
const BATCH_ROWS: usize = 200;
const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// One table's rows as copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTable {
    pub table: &'static str,
    pub rows: u64,
}

/// The rows of a table as a count and an order-free checksum: the wrapping sum of each row's
/// SHA-256 (its first 16 bytes). Order-free because the two databases sort text differently,
/// so the target cannot be read back in the source's order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TableSum {
    rows: u64,
    sum: u128,
}

impl TableSum {
    fn add(&mut self, row: &[Value]) {
        let mut h = Sha256::new();
        for value in row {
            value.hash_into(&mut h);
        }
        let digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.rows += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
    }
}

/// A column value as SQLite declares it; copied as that type.
enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Value {
    /// A type tag, the length and the bytes: no two different rows hash alike by running one
    /// value into the next.
    fn hash_into(&self, h: &mut Sha256) {
        let integer;
        let (tag, bytes): (u8, Option<&[u8]>) = match self {
            Value::Integer(v) => {
                integer = v.map(i64::to_le_bytes);
                (1, integer.as_ref().map(|b| &b[..]))
            }
            Value::Text(v) => (2, v.as_deref().map(str::as_bytes)),
            Value::Blob(v) => (3, v.as_deref()),
        };
        h.update([tag]);
        match bytes {
            None => h.update(u64::MAX.to_le_bytes()),
            Some(b) => {
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }

    fn size(&self) -> usize {
        match self {
            Value::Integer(_) => 8,
            Value::Text(t) => t.as_ref().map_or(0, String::len),
            Value::Blob(b) => b.as_ref().map_or(0, Vec::len),
        }
    }
}

#[derive(Clone, Copy)]
enum Declared {
    Integer,
    Text,
    Blob,
}

impl Store {
    /// Copies every row of the SQLite store at `from` into this store, which must hold no
    /// tickets. `progress` hears of each table when it is done.
    pub async fn copy_from_sqlite(
        &self,
        from: &Path,
        mut progress: impl FnMut(&CopiedTable),
    ) -> Result<Vec<CopiedTable>, StoreError> {
        let tickets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        if tickets > 0 {
            return Err(StoreError::Copy(format!(
                "the store at {} already holds {tickets} ticket(s): copy only into an empty store \
                 (a new database or schema), so that nothing is copied twice",
                self.path
            )));
        }
        let source = Store::open(from).await?;
        check_every_table_is_known(&source).await?;
        let mut read = source.pool.begin().await?;
        // One transaction for the whole copy: its statements are not cut by the daemon's
        // statement timeout (a commit or read-back of a store of years takes minutes).
        let mut write = self.maintenance_tx().await?;
        let mut copied = Vec::new();
        for &(table, identity) in TABLES {
            let columns = declared_columns(&mut read, table).await?;
            let rows = copy_table(&mut read, &mut write, table, &columns, self.backend).await?;
            if identity && self.backend == Backend::Postgres {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))
                .execute(&mut *write)
                .await?;
            }
            let done = CopiedTable { table, rows };
            progress(&done);
            copied.push(done);
        }
        write.commit().await.map_err(|e| self.fail(e))?;
        read.rollback().await.ok();
        source.close().await;
        Ok(copied)
    }
}

/// Every table of the source is copied or deliberately left out: a table added by a later
/// migration and forgotten here would otherwise be lost silently.
async fn check_every_table_is_known(source: &Store) -> Result<(), StoreError> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&source.pool)
            .await?;
    let unknown: Vec<&String> = tables
        .iter()
        .filter(|t| !TABLES.iter().any(|(c, _)| c == t) && !NOT_COPIED.contains(&t.as_str()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Copy(format!(
            "the store has table(s) this version cannot copy: {unknown:?}"
        )))
    }
}

async fn declared_columns(
    read: &mut sqlx::Transaction<'static, Any>,
    table: &str,
) -> Result<Vec<(String, Declared)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT name, type FROM pragma_table_info('{table}')"
    ))
    .fetch_all(&mut **read)
    .await?;
    rows.into_iter()
        .map(|(name, ty)| {
            let declared = match ty.to_ascii_uppercase().as_str() {
                "INTEGER" => Declared::Integer,
                "TEXT" => Declared::Text,
                "BLOB" => Declared::Blob,
                other => {
                    return Err(StoreError::Copy(format!(
                        "{table}.{name} is declared {other:?}, which a copy does not know"
                    )))
                }
            };
            Ok((name, declared))
        })
        .collect()
}

/// Streams `table` from the source into the target in batches, then reads it back from the
/// target: both sides' [`TableSum`] must agree. Returns the rows copied.
async fn copy_table(
    read: &mut sqlx::Transaction<'static, Any>,
    write: &mut sqlx::Transaction<'static, Any>,
    table: &str,
    columns: &[(String, Declared)],
    target_backend: Backend,
) -> Result<u64, StoreError> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let article_text = match table {
        "articles" => Some(ArticleText::find(&names)?),
        _ => None,
    };
    let words = match (&article_text, target_backend) {
        (Some(_), Backend::Postgres) => ", words",
        _ => "",
    };
    let insert = format!("INSERT INTO {table} ({}{words}) ", names.join(", "));
    let mut source = TableSum::default();
    {
        let mut rows = sqlx::query(&select).fetch(&mut **read);
        let mut batch: Vec<(Vec<Value>, Option<String>)> = Vec::new();
        // (id, subject, text) of compressed texts for a SQLite target's full-text index.
        let mut unindexed: Vec<(i64, String, String)> = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.try_next().await? {
            let mut values = decode(&row, columns)?;
            if target_backend == Backend::Postgres {
                // Stores written before parsing replaced NUL (see ingest::parse) may hold one;
                // PostgreSQL's text cannot.
                for value in &mut values {
                    if let Value::Text(Some(s)) = value {
                        if s.contains('\0') {
                            *s = s.replace('\0', "\u{FFFD}");
                        }
                    }
                }
            }
            source.add(&values);
            bytes += values.iter().map(Value::size).sum::<usize>();
            let mut words = None;
            if let Some(article) = &article_text {
                match target_backend {
                    Backend::Postgres => {
                        words = Some(words_column(
                            article.subject(&values),
                            &article.text(&values)?,
                        ))
                    }
                    Backend::Sqlite if article.is_compressed(&values) => unindexed.push((
                        article.id(&values),
                        article.subject(&values).to_string(),
                        article.text(&values)?,
                    )),
                    Backend::Sqlite => {}
                }
            }
            batch.push((values, words));
            if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
                insert_batch(write, &insert, std::mem::take(&mut batch)).await?;
                index_copied_words(write, &mut unindexed).await?;
                bytes = 0;
            }
        }
        insert_batch(write, &insert, batch).await?;
        index_copied_words(write, &mut unindexed).await?;
    }
    let mut target = TableSum::default();
    let mut rows = sqlx::query(&select).fetch(&mut **write);
    while let Some(row) = rows.try_next().await? {
        target.add(&decode(&row, columns)?);
    }
    if target != source {
        return Err(StoreError::Copy(format!(
            "{table} reads back differently from the target ({} row(s) read from the source, {} \
             in the target, checksums {}); nothing was committed",
            source.rows,
            target.rows,
            if source.sum == target.sum {
                "equal"
            } else {
                "differ"
            }
        )));
    }
    Ok(source.rows)
}

fn decode(
    row: &sqlx::any::AnyRow,
    columns: &[(String, Declared)],
) -> Result<Vec<Value>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (_, declared))| {
            Ok(match declared {
                Declared::Integer => Value::Integer(row.try_get(i)?),
                Declared::Text => Value::Text(row.try_get(i)?),
                Declared::Blob => Value::Blob(row.try_get(i)?),
            })
        })
        .collect()
}

/// Where an article's id, subject and text are among the copied columns: a PostgreSQL target
/// stores the words beside them, a SQLite target indexes the words of compressed texts (see
/// `article_text`), which its trigger cannot read.
struct ArticleText {
    id: usize,
    subject: usize,
    text_body: usize,
    text_zstd: usize,
}

impl ArticleText {
    fn find(names: &[&str]) -> Result<ArticleText, StoreError> {
        let at = |name: &str| {
            names.iter().position(|n| *n == name).ok_or_else(|| {
                StoreError::Copy(format!("the source's articles have no column {name}"))
            })
        };
        Ok(ArticleText {
            id: at("id")?,
            subject: at("subject")?,
            text_body: at("text_body")?,
            text_zstd: at("text_zstd")?,
        })
    }

    fn subject<'v>(&self, values: &'v [Value]) -> &'v str {
        match &values[self.subject] {
            Value::Text(Some(t)) => t.as_str(),
            _ => "",
        }
    }

    fn is_compressed(&self, values: &[Value]) -> bool {
        matches!(values[self.text_zstd], Value::Blob(Some(_)))
    }

    /// The article's text, decoded if compressed: a frame that does not decode stops the copy
    /// (nothing is committed) rather than copying an article whose words cannot be found.
    fn text(&self, values: &[Value]) -> Result<String, StoreError> {
        let body = match &values[self.text_body] {
            Value::Text(Some(t)) => t.clone(),
            _ => String::new(),
        };
        let frame = match &values[self.text_zstd] {
            Value::Blob(Some(frame)) => Some(frame.clone()),
            _ => None,
        };
        article_text::of_row(body, frame).map_err(|cause| {
            StoreError::Copy(format!(
                "article {}'s stored text does not decode ({cause}): the source store is \
                 damaged; nothing was committed",
                self.id(values)
            ))
        })
    }

    fn id(&self, values: &[Value]) -> i64 {
        match values[self.id] {
            Value::Integer(Some(id)) => id,
            _ => 0,
        }
    }
}

/// Indexes (and forgets) the words of the compressed texts copied so far (see [`ArticleText`]).
async fn index_copied_words(
    write: &mut sqlx::Transaction<'static, Any>,
    unindexed: &mut Vec<(i64, String, String)>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &str, &str)> = unindexed
        .iter()
        .map(|(id, subject, text)| (*id, subject.as_str(), text.as_str()))
        .collect();
    index_words(write, &rows).await?;
    unindexed.clear();
    Ok(())
}

/// A batch of rows, each with its words when the target stores them (see [`WordsOf`]).
async fn insert_batch(
    write: &mut sqlx::Transaction<'static, Any>,
    insert: &str,
    batch: Vec<(Vec<Value>, Option<String>)>,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut q = SqlBuilder::new(Backend::of(write), insert);
    q.push_values(batch, |mut row, (values, words)| {
        for value in values {
            row = match value {
                Value::Integer(v) => row.push_bind(v),
                Value::Text(v) => row.push_bind(v),
                Value::Blob(v) => row.push_bind(v),
            };
        }
        if let Some(words) = words {
            row.push_bind_as(words, "tsvector");
        }
    });
    q.build().execute(&mut **write).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Incoming, TicketRules};

    #[tokio::test]
    async fn every_table_of_todays_schema_is_copied_or_left_out_on_purpose() {
        let store = Store::open_in_memory().await.unwrap();
        check_every_table_is_known(&store).await.unwrap();
    }

    #[tokio::test]
    async fn a_copy_into_a_new_sqlite_store_holds_every_row_and_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("old.db");
        let old = Store::open(&from).await.unwrap();
        let mails: Vec<Incoming> = (0..3)
            .map(|n| {
                let raw = format!(
                    "From: k{n}@c.test\r\nSubject: Lieferung {n}\r\nMessage-ID: <m{n}@c.test>\r\n\r\nWo bleibt mein Paket?\r\n"
                );
                Incoming {
                    source_key: format!("imap:INBOX:1:{n}").parse().unwrap(),
                    parsed: crate::ingest::parse::parse(raw.as_bytes()),
                    raw: raw.into_bytes(),
                    received_at: chrono::Utc::now(),
                    arrived: None,
                    extent: crate::ingest::Extent::Whole,
                }
            })
            .collect();
        old.store_batch(&TicketRules::without_replies("support"), &mails)
            .await
            .unwrap();
        old.close().await;

        let new = Store::open(&dir.path().join("new.db")).await.unwrap();
        let mut heard = Vec::new();
        let copied = new
            .copy_from_sqlite(&from, |t| heard.push(t.table))
            .await
            .unwrap();
        assert_eq!(heard.len(), TABLES.len());
        let rows = |table: &str| copied.iter().find(|t| t.table == table).unwrap().rows;
        assert_eq!(
            (rows("tickets"), rows("articles"), rows("processed")),
            (3, 3, 3)
        );
        // The target's own full-text index was filled from the copied rows.
        let words: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM articles_fts WHERE articles_fts MATCH 'paket'",
        )
        .fetch_one(&new.pool)
        .await
        .unwrap();
        assert_eq!(words, 3);
        let again = new.copy_from_sqlite(&from, |_| {}).await.unwrap_err();
        assert!(
            again.to_string().contains("already holds 3 ticket(s)"),
            "{again}"
        );
    }
}
