//! Converting a store written before migrations 0009 and 0022 (`mail2ticket store compact`): raw
//! mail moved out of `articles` into `raw_mails`, compressed; decoded attachments moved into
//! `attachment_contents`, once per distinct content; the articles' text compressed into
//! `text_zstd` (see `article_text`).
//!
//! The migrations themselves only add tables and columns (instant on a store of years); the
//! conversion runs
//! in batches of one short transaction each, so it can run beside the daemon, be interrupted at
//! any moment (a batch in flight rolls back, every committed one is done) and resume where it
//! stopped: what is converted is what it finds no longer in the old columns.

use super::article_text;
use super::raw_codec::RawCodec;
use super::write::{insert_attachment_contents, insert_raw_mails};
use super::{sha256_hex, SqlBuilder, Store, StoreError};

/// How far a conversion got. Row ids only grow, so a cursor is the last id looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactCursor {
    article: i64,
    attachment: i64,
    text: i64,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStep {
    /// Raw mails moved and compressed.
    pub mails: u64,
    /// Attachments moved to their content table.
    pub attachments: u64,
    /// Article texts compressed.
    pub texts: u64,
    /// Raw mails left where they are because they no longer match their SHA-256: compressing a
    /// damaged mail would hide the damage (`tickets show --raw` keeps reporting it).
    pub damaged: u64,
    /// Nothing older is left after this batch.
    pub finished: bool,
}

impl Store {
    /// Converts up to `limit` raw mails, `limit` attachments and `limit` texts after `cursor`,
    /// in one transaction, and moves the cursor past them.
    pub async fn compact_step(
        &self,
        cursor: &mut CompactCursor,
        limit: u32,
    ) -> Result<CompactStep, StoreError> {
        self.compact_step_tx(cursor, limit)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn compact_step_tx(
        &self,
        cursor: &mut CompactCursor,
        limit: u32,
    ) -> Result<CompactStep, StoreError> {
        let mut step = CompactStep::default();
        let mut next = *cursor;
        // Maintenance: its statements are not cut by the daemon's statement timeout.
        let mut tx = self.maintenance_tx().await?;
        let mails: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(
            "SELECT id, raw, raw_sha256 FROM articles WHERE id > $1 AND length(raw) > 0 ORDER BY id LIMIT $2",
        )
        .bind(cursor.article)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = Vec::with_capacity(mails.len());
        for (id, raw, sha) in &mails {
            next.article = *id;
            if sha256_hex(raw) != *sha {
                step.damaged += 1;
                continue;
            }
            moved.push((*id, RawCodec::CURRENT.encode(raw)));
        }
        let rows: Vec<(i64, &[u8])> = moved.iter().map(|(id, p)| (*id, p.as_slice())).collect();
        insert_raw_mails(&mut tx, &rows).await?;
        for chunk in moved.chunks(500) {
            let mut q = SqlBuilder::new(self.backend, "UPDATE articles SET raw = ");
            q.push_bind(Vec::<u8>::new()).push(" WHERE id IN (");
            q.push_list(chunk.iter().map(|(id, _)| *id));
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        step.mails = moved.len() as u64;
        let attachments: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, data FROM attachments WHERE id > $1 AND content_sha256 = '' ORDER BY id LIMIT $2",
        )
        .bind(cursor.attachment)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for (id, data) in &attachments {
            next.attachment = *id;
            let sha = sha256_hex(data);
            insert_attachment_contents(&mut tx, &[(sha.as_str(), data)]).await?;
            sqlx::query("UPDATE attachments SET data = $1, content_sha256 = $2 WHERE id = $3")
                .bind(Vec::<u8>::new())
                .bind(&sha)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        step.attachments = attachments.len() as u64;
        let texts = compress_texts(&mut tx, cursor.text, limit).await?;
        next.text = texts.last().copied().unwrap_or(cursor.text);
        step.texts = texts.len() as u64;
        tx.commit().await?;
        *cursor = next;
        step.finished = [mails.len(), attachments.len(), texts.len()]
            .iter()
            .all(|&n| n < limit as usize);
        Ok(step)
    }
}

/// Compresses the texts of up to `limit` articles after id `after` that still have them in
/// `text_body` (written before migration 0022); returns their ids in order. SQLite's full-text
/// index keeps the words it took from `text_body` (its update trigger leaves rows with a
/// compressed text alone), so nothing is indexed again; PostgreSQL's word column stays as it is.
async fn compress_texts(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    after: i64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let texts: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, text_body FROM articles WHERE id > $1 AND text_zstd IS NULL ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    for (id, text) in &texts {
        sqlx::query("UPDATE articles SET text_zstd = $1, text_body = '' WHERE id = $2")
            .bind(article_text::pack(text))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(texts.into_iter().map(|(id, _)| id).collect())
}
