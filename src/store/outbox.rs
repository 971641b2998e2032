//! The outbox: automatic replies, queued inside the ingestion transaction, and alerts to the
//! shop owner (`alerts`), queued with their episode; both delivered by `delivery`, each channel
//! by a sender of its own (a broken SMTP server must not hold up the webhook).
//!
//! Life of a row: `pending` → (claimed) `sending` → `sent` | `pending` again (temporary failure,
//! with `next_attempt_at` pushed back) | `failed` (permanent failure, or temporary ones for
//! longer than the give-up time). A claim is a conditional UPDATE committed *before* the SMTP
//! conversation starts; it sets `next_attempt_at` to the end of a lease. If the process dies
//! while sending, the row stays `sending` and becomes claimable again when the lease ends, so the
//! reply is retried, never lost. See `delivery` for why that is the safer side.
//!
//! All times are RFC 3339 UTC with milliseconds (`now_rfc3339`), which sort as text.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Any;

use super::{Store, StoreError};

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// How an outbox row leaves: by SMTP, or as an HTTP POST to the alert webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Mail,
    Webhook,
}

impl Channel {
    /// The text of `outbox.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Mail => "mail",
            Channel::Webhook => "webhook",
        }
    }
}

/// One reply or alert claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    /// The article a reply answers; `None` for an alert.
    pub article_id: Option<i64>,
    pub account: String,
    pub recipient: String,
    pub message_id: String,
    pub message: Vec<u8>,
    /// Including the current one.
    pub attempts: u32,
    pub created_at: String,
}

type ClaimRow = (
    i64,
    Option<i64>,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    String,
);

/// One outbox row as the CLI and tests see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub recipient: String,
    pub message_id: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// When a delivery report for it arrived; `None`: none did.
    pub bounced_at: Option<String>,
}

/// Counts by status, and when the earliest unsent reply is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    /// Replies a delivery report came back for (whatever their status).
    pub bounced: i64,
    pub next_due: Option<String>,
}

impl OutboxSummary {
    pub fn unsent(&self) -> i64 {
        self.pending + self.sending
    }
}

/// Notes what became of a reply on the article it answers (an alert has none).
async fn set_note<'e, E: sqlx::Executor<'e, Database = Any>>(
    db: E,
    article_id: Option<i64>,
    note: &str,
) -> Result<(), StoreError> {
    let Some(article_id) = article_id else {
        return Ok(());
    };
    sqlx::query("UPDATE articles SET reply_note = $1 WHERE id = $2")
        .bind(note)
        .bind(article_id)
        .execute(db)
        .await?;
    Ok(())
}

impl Store {
    /// Claims up to `limit` rows of `channel` that are due at `now`; each claim is committed on its own
    /// before it is returned, with a lease until `lease_until`. A row another process claimed in
    /// between is skipped. `skip_backoff` also claims pending rows whose retry time has not come
    /// (a fresh start tries everything once); a leased `sending` row is never taken early.
    ///
    /// This and the other calls of the reply sender are bounded (see `bound`): on a silent path
    /// the sender logs the error and tries again, and a claim whose answer was lost runs out
    /// like a crashed sender's.
    pub async fn claim_due_replies(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        skip_backoff: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.bounded(self.claim_due(channel, now, lease_until, limit, skip_backoff))
            .await
    }

    async fn claim_due(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        skip_backoff: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = rfc3339(now);
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox WHERE channel = $4 AND ((status = 'pending' \
             AND (next_attempt_at <= $1 OR $2)) OR (status = 'sending' AND next_attempt_at <= $1)) \
             ORDER BY next_attempt_at, id LIMIT $3",
        )
        .bind(&now)
        .bind(skip_backoff)
        .bind(limit)
        .bind(channel.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<ClaimRow> = sqlx::query_as(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1, next_attempt_at = $1 \
                 WHERE id = $2 AND ((status = 'pending' AND (next_attempt_at <= $3 OR $4)) \
                 OR (status = 'sending' AND next_attempt_at <= $3)) \
                 RETURNING id, article_id, account, recipient, message_id, message, attempts, created_at",
            )
            .bind(rfc3339(lease_until))
            .bind(id)
            .bind(&now)
            .bind(skip_backoff)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((
                id,
                article_id,
                account,
                recipient,
                message_id,
                message,
                attempts,
                created_at,
            )) = row
            {
                claimed.push(OutboxEntry {
                    id,
                    article_id,
                    account,
                    recipient,
                    message_id,
                    message,
                    attempts: attempts.max(0) as u32,
                    created_at,
                });
            }
        }
        Ok(claimed)
    }

    pub async fn mark_reply_sent(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.bounded(self.mark_sent(entry)).await
    }

    async fn mark_sent(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let now = super::now_rfc3339();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, last_error = '' WHERE id = $2",
        )
        .bind(&now)
        .bind(entry.id)
        .execute(&mut *tx)
        .await?;
        let note = format!(
            "auto-reply sent to {} at {now} (Message-ID <{}>)",
            entry.recipient, entry.message_id
        );
        set_note(&mut *tx, entry.article_id, &note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A temporary failure: back to `pending`, due again at `next_attempt`.
    pub async fn mark_reply_retry(
        &self,
        entry: &OutboxEntry,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.bounded(self.mark_retry(entry, error, next_attempt))
            .await
    }

    async fn mark_retry(
        &self,
        entry: &OutboxEntry,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let next = rfc3339(next_attempt);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2 WHERE id = $3 AND status = 'sending'",
        )
        .bind(&next)
        .bind(error)
        .bind(entry.id)
        .execute(&mut *tx)
        .await?;
        let note = format!(
            "auto-reply to {} waiting: attempt {} failed ({error}); next attempt {next}",
            entry.recipient, entry.attempts
        );
        set_note(&mut *tx, entry.article_id, &note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives back a claimed entry that was not attempted (shutdown): `pending`, due now, and the
    /// claim's attempt is not counted.
    pub async fn release_reply(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.bounded(
            sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, next_attempt_at = $1 \
                 WHERE id = $2 AND status = 'sending'",
            )
            .bind(super::now_rfc3339())
            .bind(entry.id)
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// A permanent failure: never retried.
    pub async fn mark_reply_failed(
        &self,
        entry: &OutboxEntry,
        error: &str,
    ) -> Result<(), StoreError> {
        self.bounded(self.mark_failed(entry, error)).await
    }

    async fn mark_failed(&self, entry: &OutboxEntry, error: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE outbox SET status = 'failed', last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(entry.id)
            .execute(&mut *tx)
            .await?;
        let note = format!("auto-reply to {} failed: {error}", entry.recipient);
        set_note(&mut *tx, entry.article_id, &note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The mail channel's rows (replies and mailed alerts): what `run --once` waits for.
    pub async fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        self.bounded(self.summary()).await
    }

    async fn summary(&self) -> Result<OutboxSummary, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbox WHERE channel = 'mail' GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut s = OutboxSummary::default();
        for (status, n) in rows {
            match status.as_str() {
                "pending" => s.pending = n,
                "sending" => s.sending = n,
                "sent" => s.sent = n,
                "failed" => s.failed = n,
                _ => {}
            }
        }
        s.bounced = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE bounced_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        s.next_due = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE channel = 'mail' \
             AND status IN ('pending', 'sending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(s)
    }

    /// Every automatic reply of the outbox, oldest first (alerts are not replies).
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT recipient, message_id, status, attempts, last_error, created_at, sent_at, bounced_at \
             FROM outbox WHERE article_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
