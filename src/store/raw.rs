//! The mail of an article exactly as it was fetched, and the attachments decoded from it
//! (`tickets show NUMBER --raw ARTICLE`, `--attachment ARTICLE N`).
//!
//! Every read of stored raw bytes goes through [`verified_raw`]: it decodes them (see
//! `RawCodec`) and checks them against the SHA-256 taken at ingestion. Attachments are checked
//! against the SHA-256 they are stored under.

use sqlx::Any;

use super::raw_codec::RawCodec;
use super::{sha256_hex, Store, StoreError};

/// An article's raw columns: old bytes, SHA-256, size, and the `raw_mails` codec and data.
type StoredRaw = (Vec<u8>, String, i64, Option<String>, Option<Vec<u8>>);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no ticket with number {0}: `mail2ticket tickets list` or `tickets find` shows them")]
    NoTicket(String),
    #[error(
        "ticket {number} has {count} article(s), so there is no article {article}: \
         `mail2ticket tickets show {number}` numbers them from 1"
    )]
    NoArticle {
        number: String,
        article: u32,
        count: i64,
    },
    #[error(
        "article {article} of ticket {number} has {count} attachment(s), so there is no \
         attachment {n}: `mail2ticket tickets show {number}` numbers them from 1"
    )]
    NoAttachment {
        number: String,
        article: u32,
        n: u32,
        count: i64,
    },
    #[error(
        "the stored mail of article {article} of ticket {number} does not match the SHA-256 taken \
         when it was fetched (stored {expected}, now {actual}): the store file is damaged; \
         restore it from a backup (nothing was written)"
    )]
    Corrupt {
        number: String,
        article: u32,
        expected: String,
        actual: String,
    },
    #[error(
        "the stored mail of article {article} of ticket {number} cannot be decoded ({reason}): \
         the store file is damaged, or was written by a newer mail2ticket; restore it from a \
         backup or use that version (nothing was written)"
    )]
    Undecodable {
        number: String,
        article: u32,
        reason: String,
    },
    #[error(
        "attachment {n} of article {article} of ticket {number} does not match the SHA-256 it \
         was stored under: the store file is damaged; restore it from a backup (nothing was written)"
    )]
    CorruptAttachment {
        number: String,
        article: u32,
        n: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ExportError {
    fn from(e: sqlx::Error) -> ExportError {
        ExportError::Store(StoreError::Sql(e))
    }
}

/// One decoded attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentData {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The raw bytes of an article, checked against its stored SHA-256. `number` and `article` only
/// name it in the error. Read through a pool, or inside a transaction that is writing.
pub(super) async fn verified_raw<'c>(
    db: impl sqlx::Executor<'c, Database = Any>,
    article_id: i64,
    number: &str,
    article: u32,
) -> Result<Vec<u8>, ExportError> {
    // Rows written before migration 0009 and not compacted yet have their bytes in articles.raw.
    let (raw, expected, size, codec, packed): StoredRaw = sqlx::query_as(
        "SELECT a.raw, a.raw_sha256, a.size, r.codec, r.data FROM articles a \
         LEFT JOIN raw_mails r ON r.article_id = a.id WHERE a.id = $1",
    )
    .bind(article_id)
    .fetch_one(db)
    .await?;
    let raw = match (codec, packed) {
        (Some(label), Some(packed)) => {
            let undecodable = |reason: String| ExportError::Undecodable {
                number: number.to_string(),
                article,
                reason,
            };
            let codec = RawCodec::from_label(&label)
                .ok_or_else(|| undecodable(format!("unknown codec {label:?}")))?;
            codec
                .decode(&packed, usize::try_from(size).unwrap_or(0))
                .map_err(|e| undecodable(format!("{} frame: {e}", codec.label())))?
        }
        _ => raw,
    };
    let actual = sha256_hex(&raw);
    if actual != expected {
        return Err(ExportError::Corrupt {
            number: number.to_string(),
            article,
            expected,
            actual,
        });
    }
    Ok(raw)
}

impl Store {
    /// The row ids of a ticket's articles, oldest first: article N of `tickets show` is the
    /// N-th of them.
    async fn article_ids(&self, number: &str) -> Result<Vec<i64>, ExportError> {
        let ticket: Option<i64> = sqlx::query_scalar("SELECT id FROM tickets WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        let Some(ticket) = ticket else {
            return Err(ExportError::NoTicket(number.to_string()));
        };
        Ok(
            sqlx::query_scalar("SELECT id FROM articles WHERE ticket_id = $1 ORDER BY id")
                .bind(ticket)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn article_id(&self, number: &str, article: u32) -> Result<i64, ExportError> {
        let ids = self.article_ids(number).await?;
        (article as usize)
            .checked_sub(1)
            .and_then(|i| ids.get(i).copied())
            .ok_or(ExportError::NoArticle {
                number: number.to_string(),
                article,
                count: ids.len() as i64,
            })
    }

    /// Article `article` (from 1) of a ticket exactly as it was fetched.
    pub async fn raw_mail(&self, number: &str, article: u32) -> Result<Vec<u8>, ExportError> {
        let id = self.article_id(number, article).await?;
        verified_raw(&self.pool, id, number, article).await
    }

    /// The raw bytes of every article of a ticket, oldest first.
    pub async fn raw_articles(&self, number: &str) -> Result<Vec<Vec<u8>>, ExportError> {
        let mut out = Vec::new();
        for (i, id) in self.article_ids(number).await?.into_iter().enumerate() {
            out.push(verified_raw(&self.pool, id, number, i as u32 + 1).await?);
        }
        Ok(out)
    }

    /// Attachment `n` (from 1, in the order `tickets show` lists them) of an article.
    pub async fn attachment(
        &self,
        number: &str,
        article: u32,
        n: u32,
    ) -> Result<AttachmentData, ExportError> {
        let id = self.article_id(number, article).await?;
        // Ids first: only the one attachment asked for is read into memory.
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM attachments WHERE article_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let Some(attachment) = (n as usize).checked_sub(1).and_then(|i| ids.get(i)) else {
            return Err(ExportError::NoAttachment {
                number: number.to_string(),
                article,
                n,
                count: ids.len() as i64,
            });
        };
        // content_sha256 '' : written before migration 0009 and not compacted yet.
        let (filename, content_type, sha, data): (String, String, String, Vec<u8>) =
            sqlx::query_as(
                "SELECT a.filename, a.content_type, a.content_sha256, COALESCE(c.data, a.data) \
                 FROM attachments a LEFT JOIN attachment_contents c ON c.sha256 = a.content_sha256 \
                 WHERE a.id = $1",
            )
            .bind(attachment)
            .fetch_one(&self.pool)
            .await?;
        if !sha.is_empty() && sha256_hex(&data) != sha {
            return Err(ExportError::CorruptAttachment {
                number: number.to_string(),
                article,
                n,
            });
        }
        Ok(AttachmentData {
            filename,
            content_type,
            data,
        })
    }
}
