//! The SQL of account leases (see `crate::lease` for the design) and the fence check every
//! write transaction of a lease holder runs.
//!
//! Every expiry is computed and compared on the store's clock, inside the statement: on
//! PostgreSQL the server's `now()`, so the instances' own clocks do not matter; on SQLite (one
//! file on one machine) the machine's clock, which all instances share. Times are RFC 3339 UTC
//! text with milliseconds, like every time in the store, and compare as text.

use std::future::Future;
use std::time::Duration;

use sqlx::{Any, Transaction};

use super::{Backend, Store, StoreError};

/// How long a lease statement waits for a database server's answer. A network path that goes
/// silent (packets dropped, the connection never closed) would otherwise hold it until the
/// kernel gives the connection up, many minutes later: a standby instance could never try
/// again, and a stopping one never exit. Shorter than the local deadline's margin (see
/// `crate::lease`), so a holder retries its renewal on a fresh connection before it gives the
/// account up. (SQLite has no network path: its statements are bounded by its busy timeout.)
pub const LEASE_ANSWER_WITHIN: Duration = Duration::from_secs(3);

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

/// The store's clock plus `$offset` seconds (a bound float), as RFC 3339 UTC text.
fn clock(backend: Backend, offset: &str) -> String {
    match backend {
        Backend::Sqlite => {
            format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || {offset} || ' seconds')")
        }
        Backend::Postgres => format!(
            "to_char((now() + {offset} * interval '1 second') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        ),
    }
}

impl Store {
    /// `statement`'s result, or on a database server [`StoreError::NoAnswer`] after
    /// [`LEASE_ANSWER_WITHIN`]; either error counted and shown on /healthz as the store's.
    async fn within_lease_bound<T>(
        &self,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.answer_within(LEASE_ANSWER_WITHIN, statement)
            .await?
            .map_err(|e| self.fail(e))
    }

    /// Takes the account's lease for `owner` when nobody holds it, it expired, or `owner`
    /// holds it already; the fence goes up by one every time. `None`: another instance holds it.
    /// One statement, atomic on both stores: of two instances trying at once, one wins.
    pub async fn acquire_lease(
        &self,
        account: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let (now, until) = (clock(self.backend, "0.0"), clock(self.backend, "$3"));
        let statement = format!(
            "INSERT INTO account_leases (account, owner, fence, expires_at, acquired_at) \
             VALUES ($1, $2, 1, {until}, {now}) \
             ON CONFLICT (account) DO UPDATE SET owner = excluded.owner, \
             fence = account_leases.fence + 1, expires_at = excluded.expires_at, \
             acquired_at = excluded.acquired_at \
             WHERE account_leases.expires_at <= {now} OR account_leases.owner = excluded.owner \
             RETURNING fence"
        );
        let fence: Option<i64> = self
            .within_lease_bound(
                sqlx::query_scalar(&statement)
                    .bind(account)
                    .bind(owner)
                    .bind(ttl.as_secs_f64())
                    .fetch_optional(&self.lease_pool),
            )
            .await?;
        // The store answers: a standby instance writes nothing else that would say so.
        self.health.worked();
        Ok(fence)
    }

    /// Extends the lease `fence` holds to `ttl` from now; `false` when it is no longer ours.
    pub async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        self.set_expiry(fence, ttl).await
    }

    /// Ends the lease at once (shutdown), so another instance takes over at its next try.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.set_expiry(fence, Duration::ZERO).await.map(drop)
    }

    async fn set_expiry(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        let until = clock(self.backend, "$1");
        let statement = format!(
            "UPDATE account_leases SET expires_at = {until} \
             WHERE account = $2 AND owner = $3 AND fence = $4"
        );
        let done = self
            .within_lease_bound(
                sqlx::query(&statement)
                    .bind(ttl.as_secs_f64())
                    .bind(&fence.account)
                    .bind(&fence.owner)
                    .bind(fence.fence)
                    .execute(&self.lease_pool),
            )
            .await?;
        self.health.worked();
        Ok(done.rows_affected() == 1)
    }

    /// Who holds (or last held) the account's lease.
    pub async fn lease_holder(&self, account: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let row: Option<(String, i64, String)> = self
            .within_lease_bound(
                sqlx::query_as(
                    "SELECT owner, fence, expires_at FROM account_leases WHERE account = $1",
                )
                .bind(account)
                .fetch_optional(&self.lease_pool),
            )
            .await?;
        Ok(row.map(|(owner, fence, expires_at)| LeaseHolder {
            owner,
            fence,
            expires_at,
        }))
    }

    /// Leases in force (not expired), by account: instances running with
    /// `instances = "several"` on this store right now.
    pub async fn live_leases(&self) -> Result<Vec<(String, LeaseHolder)>, StoreError> {
        let now = clock(self.backend, "0.0");
        let statement = format!(
            "SELECT account, owner, fence, expires_at FROM account_leases \
             WHERE expires_at > {now} ORDER BY account"
        );
        let rows: Vec<(String, String, i64, String)> = self
            .within_lease_bound(sqlx::query_as(&statement).fetch_all(&self.lease_pool))
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

/// Inside a write transaction of a fenced store, under the store's write lock: the lease is
/// still ours with our fence. A takeover may commit between this check and our commit, but the
/// new holder's own writes wait for our write lock, so they see our commit (its mails as
/// already processed) and nothing of ours lands after them.
pub(super) async fn check_fence(
    tx: &mut Transaction<'static, Any>,
    fence: &Fence,
) -> Result<(), StoreError> {
    let ours: Option<i64> = sqlx::query_scalar(
        "SELECT fence FROM account_leases WHERE account = $1 AND owner = $2 AND fence = $3",
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
        TicketRules::without_replies("support")
    }

    fn mail(n: u32) -> Incoming {
        let raw = format!(
            "From: k{n}@c.test\r\nTo: support@shop.test\r\nSubject: Frage {n}\r\nMessage-ID: <l{n}@c.test>\r\n\r\nHallo\r\n"
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
            .mark_disposed("support", &["imap:INBOX:1:1".parse().unwrap()])
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
