//! The SQL of account leases (see `crate::lease` for the design) and the fence check every
//! write transaction of a lease holder runs.
//!
//! Times are the store's clock: on SQLite, one file on one machine, that is the local clock of
//! whichever instance writes, and all of them share it. Times are RFC 3339 UTC with
//! milliseconds and compare as text.

use std::time::Duration;

use chrono::Utc;
use sqlx::{Sqlite, Transaction};

use super::outbox::rfc3339;
use super::{Store, StoreError};

/// Who may write for an account: the instance and the fence of its current lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub account: String,
    pub owner: String,
    pub fence: i64,
}

/// The row of an account's lease, as another instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub fence: i64,
    pub expires_at: String,
}

fn until(ttl: Duration) -> String {
    rfc3339(Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default())
}

impl Store {
    /// Takes the account's lease for `owner` when nobody holds it, it expired, or `owner`
    /// holds it already; the fence goes up by one every time. `None`: another instance holds it.
    pub async fn acquire_lease(
        &self,
        account: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let fence: Option<i64> = sqlx::query_scalar(
            "INSERT INTO account_leases (account, owner, fence, expires_at, acquired_at) \
             VALUES (?1, ?2, 1, ?3, ?4) \
             ON CONFLICT (account) DO UPDATE SET owner = excluded.owner, \
             fence = account_leases.fence + 1, expires_at = excluded.expires_at, \
             acquired_at = excluded.acquired_at \
             WHERE account_leases.expires_at <= ?4 OR account_leases.owner = excluded.owner \
             RETURNING fence",
        )
        .bind(account)
        .bind(owner)
        .bind(until(ttl))
        .bind(super::now_rfc3339())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fence)
    }

    /// Extends the lease `fence` holds by `ttl` from now; `false` when it is no longer ours.
    pub async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE account_leases SET expires_at = ?1 WHERE account = ?2 AND owner = ?3 AND fence = ?4",
        )
        .bind(until(ttl))
        .bind(&fence.account)
        .bind(&fence.owner)
        .bind(fence.fence)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends the lease at once (shutdown), so another instance takes over at its next try.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE account_leases SET expires_at = ?1 WHERE account = ?2 AND owner = ?3 AND fence = ?4",
        )
        .bind(super::now_rfc3339())
        .bind(&fence.account)
        .bind(&fence.owner)
        .bind(fence.fence)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Who holds (or last held) the account's lease.
    pub async fn lease_holder(&self, account: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let row: Option<(String, i64, String)> =
            sqlx::query_as("SELECT owner, fence, expires_at FROM account_leases WHERE account = ?")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(owner, fence, expires_at)| LeaseHolder {
            owner,
            fence,
            expires_at,
        }))
    }
}

impl Store {
    /// Leases in force (not expired), by account: instances running with
    /// `instances = "several"` on this store right now.
    pub async fn live_leases(&self) -> Result<Vec<(String, LeaseHolder)>, StoreError> {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT account, owner, fence, expires_at FROM account_leases WHERE expires_at > ? ORDER BY account",
        )
        .bind(super::now_rfc3339())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(account, owner, fence, expires_at)| {
                (
                    account,
                    LeaseHolder {
                        owner,
                        fence,
                        expires_at,
                    },
                )
            })
            .collect())
    }
}

/// Inside a write transaction of a fenced store: the lease is still ours with our fence. The
/// transaction holds SQLite's write lock, so no other instance can take the lease over between
/// this check and the commit.
pub(super) async fn check_fence(
    tx: &mut Transaction<'static, Sqlite>,
    fence: &Fence,
) -> Result<(), StoreError> {
    let ours: Option<i64> = sqlx::query_scalar(
        "SELECT fence FROM account_leases WHERE account = ? AND owner = ? AND fence = ?",
    )
    .bind(&fence.account)
    .bind(&fence.owner)
    .bind(fence.fence)
    .fetch_optional(&mut **tx)
    .await?;
    match ours {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            account: fence.account.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Incoming, TicketRules};

    const TTL: Duration = Duration::from_secs(15);

    fn rules() -> TicketRules {
        TicketRules {
            account: "support".into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            subject_tag: "Ticket#".into(),
            customer: crate::config::CustomerSource::ReplyTo,
            reply: None,
            test_mail_key: None,
        }
    }

    fn mail(n: u32) -> Incoming {
        let raw = format!(
            "From: k{n}@c.test\r\nTo: support@shop.test\r\nSubject: Frage {n}\r\nMessage-ID: <l{n}@c.test>\r\n\r\nHallo\r\n"
        );
        Incoming {
            source_key: format!("imap:INBOX:1:{n}"),
            parsed: crate::ingest::parse::parse(raw.as_bytes()),
            raw: raw.into_bytes(),
            received_at: Utc::now(),
        }
    }

    fn fence(owner: &str, fence: i64) -> Fence {
        Fence {
            account: "support".into(),
            owner: owner.into(),
            fence,
        }
    }

    #[tokio::test]
    async fn a_held_lease_is_refused_to_others_until_it_expires_and_each_takeover_raises_the_fence()
    {
        let store = Store::open_in_memory().await.unwrap();
        assert_eq!(
            store.acquire_lease("support", "a", TTL).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            store.acquire_lease("support", "b", TTL).await.unwrap(),
            None
        );
        assert_eq!(
            store.acquire_lease("other", "b", TTL).await.unwrap(),
            Some(1),
            "leases are per account"
        );
        assert!(store.renew_lease(&fence("a", 1), TTL).await.unwrap());
        assert!(
            !store.renew_lease(&fence("b", 1), TTL).await.unwrap(),
            "only the holder renews"
        );
        // An expired lease (a dead holder) is taken over with the next fence.
        store
            .renew_lease(&fence("a", 1), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            store.acquire_lease("support", "b", TTL).await.unwrap(),
            Some(2)
        );
        assert!(
            !store.renew_lease(&fence("a", 1), TTL).await.unwrap(),
            "the old holder finds its lease gone"
        );
        // A released lease is free at once.
        store.release_lease(&fence("b", 2)).await.unwrap();
        assert_eq!(
            store.acquire_lease("support", "a", TTL).await.unwrap(),
            Some(3)
        );
        let holder = store.lease_holder("support").await.unwrap().unwrap();
        assert_eq!((holder.owner.as_str(), holder.fence), ("a", 3));
    }

    #[tokio::test]
    async fn a_holder_whose_lease_was_taken_over_commits_nothing() {
        let store = Store::open_in_memory().await.unwrap();
        let old = store
            .acquire_lease("support", "a", TTL)
            .await
            .unwrap()
            .unwrap();
        let old_holder = store.fenced(fence("a", old));
        let stored = old_holder.store_batch(&rules(), &[mail(1)]).await.unwrap();
        assert_eq!(stored.len(), 1, "the holder stores while the lease is its");

        // The old holder stalls past its lease; another instance takes the account over.
        store
            .renew_lease(&fence("a", old), Duration::ZERO)
            .await
            .unwrap();
        let new = store
            .acquire_lease("support", "b", TTL)
            .await
            .unwrap()
            .unwrap();
        let err = old_holder
            .store_batch(&rules(), &[mail(2)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
        assert!(
            err.is_environmental(),
            "not the mail's fault: never counted toward its quarantine"
        );
        assert!(old_holder
            .mark_disposed("support", &["imap:INBOX:1:1".into()])
            .await
            .is_err());
        assert!(
            store.processed("support", "imap:").await.unwrap().len() == 1,
            "nothing of the old holder's second batch was written"
        );
        assert!(
            store.health().healthy,
            "a lost lease says nothing about the store"
        );

        let new_holder = store.fenced(fence("b", new));
        let outcomes = new_holder
            .store_batch(&rules(), &[mail(1), mail(2)])
            .await
            .unwrap();
        assert_eq!(
            outcomes[0],
            crate::store::Outcome::AlreadyProcessed,
            "the new holder sees the old holder's commit and only disposes of that mail"
        );
        assert!(matches!(
            outcomes[1],
            crate::store::Outcome::NewTicket { .. }
        ));
        assert_eq!(store.count_tickets().await.unwrap(), 2);
    }
}
