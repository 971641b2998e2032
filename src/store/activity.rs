//! What each account did today, for the accounts page: mails stored, tickets opened, and mails
//! in quarantine. Each count reads an index (tickets and articles by creation time, failures by
//! account), so the overview costs the same in a store of years.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountActivity {
    /// Articles stored (new tickets and follow-ups).
    pub mails: i64,
    pub new_tickets: i64,
    /// Mails in quarantine: they failed to store `QUARANTINE_AFTER` times and stay on the
    /// server (the mails `Store::quarantined` lists).
    pub quarantined: i64,
}

impl Store {
    /// Per account: the mails and tickets since `since`, and the mails in quarantine now.
    pub async fn account_activity(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<String, AccountActivity>, StoreError> {
        let since = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut out: BTreeMap<String, AccountActivity> = BTreeMap::new();
        let articles =
            "SELECT account, COUNT(*) FROM articles WHERE created_at >= $1 GROUP BY account";
        for (account, n) in self.count_by_account(articles, since.clone()).await? {
            out.entry(account).or_default().mails = n;
        }
        let tickets =
            "SELECT account, COUNT(*) FROM tickets WHERE created_at >= $1 GROUP BY account";
        for (account, n) in self.count_by_account(tickets, since).await? {
            out.entry(account).or_default().new_tickets = n;
        }
        for (account, n) in self.quarantined_counts().await? {
            out.entry(account).or_default().quarantined = n;
        }
        Ok(out)
    }

    async fn count_by_account<'q, T>(
        &self,
        sql: &'q str,
        value: T,
    ) -> Result<Vec<(String, i64)>, StoreError>
    where
        T: 'q + Send + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let rows = sqlx::query(sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
