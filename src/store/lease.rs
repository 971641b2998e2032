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
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT owner, fence, expires_at FROM account_leases WHERE account = ?",
        )
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
