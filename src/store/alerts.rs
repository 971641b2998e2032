//! The books of alerting: one `alerts` row per episode, and its messages queued in the outbox in
//! the same transaction. Each step is guarded so that of several instances seeing the same
//! condition exactly one queues its messages: opening inserts under a unique index of open
//! episodes, reminding and resolving update only the row as it was read.

use chrono::{DateTime, Utc};

use super::outbox::{rfc3339, Channel};
use super::{Store, StoreError};

/// The local part prefix of an alert's Message-ID: ingestion looks up only such IDs.
pub const ALERT_ID_PREFIX: &str = "m2t-alert.";

/// An open episode as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRecord {
    pub id: i64,
    pub condition_key: String,
    pub kind: String,
    pub account: Option<String>,
    pub stage: i64,
    pub since: String,
    pub detail: String,
    pub notified_at: String,
}

/// What an episode is about, for opening it or telling it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFacts<'a> {
    pub condition_key: &'a str,
    pub kind: &'a str,
    pub account: Option<&'a str>,
    pub stage: i64,
    pub since: DateTime<Utc>,
    pub detail: &'a str,
}

/// One message of an alert, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    pub channel: Channel,
    /// The address; `webhook` for the webhook (its URL stays in the config: it is a secret).
    pub recipient: String,
    /// Unique per message; a mail's Message-ID (how ingestion recognises an alert that arrives
    /// in one of the accounts).
    pub message_id: String,
    pub message: Vec<u8>,
}

/// The oldest reply still waiting after a failed attempt, and how many wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingReplies {
    pub unsent: i64,
    pub oldest: String,
    pub last_error: String,
}

impl Store {
    /// The episodes not resolved yet.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.bounded(
            sqlx::query_as(
                "SELECT id, condition_key, kind, account, stage, since, detail, notified_at \
                     FROM alerts WHERE resolved_at IS NULL ORDER BY id",
            )
            .fetch_all(&self.pool),
        )
        .await
    }

    /// Opens an episode and queues its messages; false when one is open already (another
    /// instance was first).
    pub async fn open_alert(
        &self,
        facts: &AlertFacts<'_>,
        messages: &[AlertMessage],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = rfc3339(now);
        let mut tx = self.write_tx().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (condition_key, kind, account, stage, since, detail, opened_at, \
             notified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING \
             RETURNING id",
        )
        .bind(facts.condition_key)
        .bind(facts.kind)
        .bind(facts.account)
        .bind(facts.stage)
        .bind(rfc3339(facts.since))
        .bind(facts.detail)
        .bind(&now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        queue(&mut tx, id, facts.account, messages, &now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Tells an open episode again (a day later, or at a higher stage); false when another
    /// instance did so since `alert` was read.
    pub async fn remind_alert(
        &self,
        alert: &AlertRecord,
        facts: &AlertFacts<'_>,
        messages: &[AlertMessage],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = rfc3339(now);
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE alerts SET notified_at = $1, stage = $2, detail = $3, kind = $4 \
             WHERE id = $5 AND notified_at = $6 AND resolved_at IS NULL",
        )
        .bind(&now)
        .bind(facts.stage)
        .bind(facts.detail)
        .bind(facts.kind)
        .bind(alert.id)
        .bind(&alert.notified_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        queue(&mut tx, alert.id, facts.account, messages, &now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends an episode and queues its "resolved"; false when another instance did.
    pub async fn resolve_alert(
        &self,
        alert: &AlertRecord,
        messages: &[AlertMessage],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = rfc3339(now);
        let mut tx = self.write_tx().await?;
        let updated =
            sqlx::query("UPDATE alerts SET resolved_at = $1 WHERE id = $2 AND resolved_at IS NULL")
                .bind(&now)
                .bind(alert.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        queue(&mut tx, alert.id, alert.account.as_deref(), messages, &now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replies whose sending failed at least once and that still wait; `None` when none do.
    pub async fn waiting_replies(&self) -> Result<Option<WaitingReplies>, StoreError> {
        let row: (i64, Option<String>) = self
            .bounded(
                sqlx::query_as(
                    "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE channel = 'mail' \
                     AND status IN ('pending', 'sending') AND attempts > 0",
                )
                .fetch_one(&self.pool),
            )
            .await?;
        let (unsent, Some(oldest)) = row else {
            return Ok(None);
        };
        let last_error: Option<String> = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT last_error FROM outbox WHERE channel = 'mail' AND status IN \
                     ('pending', 'sending') AND attempts > 0 ORDER BY id DESC LIMIT 1",
                )
                .fetch_optional(&self.pool),
            )
            .await?;
        Ok(Some(WaitingReplies {
            unsent,
            oldest,
            last_error: last_error.unwrap_or_default(),
        }))
    }
}

async fn queue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    alert_id: i64,
    account: Option<&str>,
    messages: &[AlertMessage],
    now: &str,
) -> Result<(), StoreError> {
    for m in messages {
        sqlx::query(
            "INSERT INTO outbox (alert_id, channel, account, recipient, message_id, message, \
             status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
        )
        .bind(alert_id)
        .bind(m.channel.as_str())
        .bind(account.unwrap_or_default())
        .bind(&m.recipient)
        .bind(&m.message_id)
        .bind(m.message.as_slice())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    fn facts(stage: i64) -> AlertFacts<'static> {
        AlertFacts {
            condition_key: "account:support",
            kind: "login_rejected",
            account: Some("support"),
            stage,
            since: Utc::now(),
            detail: "[AUTHENTICATIONFAILED]",
        }
    }

    fn message(id: &str) -> AlertMessage {
        AlertMessage {
            channel: Channel::Mail,
            recipient: "owner@shop.example".into(),
            message_id: id.into(),
            message: b"Subject: x\r\n\r\nbody".to_vec(),
        }
    }

    #[tokio::test]
    async fn an_episode_is_opened_reminded_and_resolved_once_whoever_else_tries() {
        let (_dir, store) = store().await;
        let now = Utc::now();
        assert!(store
            .open_alert(&facts(0), &[message("a1")], now)
            .await
            .unwrap());
        assert!(
            !store
                .open_alert(&facts(0), &[message("a2")], now)
                .await
                .unwrap(),
            "a second instance opening the same condition queues nothing"
        );
        let open = store.open_alerts().await.unwrap();
        assert_eq!(open.len(), 1);
        let later = now + chrono::Duration::days(1);
        assert!(store
            .remind_alert(&open[0], &facts(0), &[message("a3")], later)
            .await
            .unwrap());
        assert!(
            !store
                .remind_alert(&open[0], &facts(0), &[message("a4")], later)
                .await
                .unwrap(),
            "a reminder decided on the old row is not queued twice"
        );
        let open = store.open_alerts().await.unwrap();
        assert!(store
            .resolve_alert(&open[0], &[message("a5")], later)
            .await
            .unwrap());
        assert!(!store
            .resolve_alert(&open[0], &[message("a6")], later)
            .await
            .unwrap());
        assert!(store.open_alerts().await.unwrap().is_empty());
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT message_id FROM outbox WHERE alert_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(ids, ["a1", "a3", "a5"]);
        assert!(
            store
                .open_alert(&facts(0), &[message("a7")], later)
                .await
                .unwrap(),
            "after resolved, the same condition opens a new episode"
        );
    }
}
