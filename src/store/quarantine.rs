//! The store's side of quarantine. The `failures` table counts each mail's failed storage
//! attempts, with the last error, when it first failed, and what the mail looked like (sender,
//! subject, size) — the store never gets the mail itself, so this is how a quarantined mail is
//! named without asking the server.
//!
//! A mail is quarantined once it failed [`QUARANTINE_AFTER`] times and has no ticket (one stored
//! after all on a later try is not). IMAP marks it on the server too (a keyword); POP3 has
//! nothing to mark a mail with, so there the pass also records it in `processed` as
//! `quarantined`. [`Store::release_quarantined`] undoes the store's part of both.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use sqlx::Row;

use super::{now_rfc3339, SqlBuilder, Store, StoreError, QUARANTINE_AFTER};
use crate::ingest::outcome::Skipped;
use crate::ingest::{Incoming, SourceKey};

/// The longest sender or subject the store keeps of a failing mail, in characters.
const SHOWN_CHARS: usize = 200;

/// A mail in quarantine: its storage failed [`QUARANTINE_AFTER`] times and it stays on the
/// server, skipped by every pass until it is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedMail {
    pub account: String,
    #[serde(serialize_with = "as_text")]
    pub key: SourceKey,
    /// The From address (its name when it has no address) as the parser read it, on one line,
    /// at most 200 characters; empty for failures recorded before migration 0017.
    pub sender: String,
    /// The subject, kept the same way.
    pub subject: String,
    /// Bytes as fetched; 0 for failures recorded before migration 0017.
    pub size: u64,
    /// The last storage error.
    pub error: String,
    pub attempts: u32,
    /// The first failed attempt (for failures recorded before migration 0017: the last one).
    pub since: DateTime<Utc>,
}

fn as_text<S: Serializer>(key: &SourceKey, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(key)
}

impl Store {
    /// Counts one more storage failure of a mail and remembers what the mail looked like;
    /// returns the number of failures so far.
    pub async fn record_failure(
        &self,
        account: &str,
        mail: &Incoming,
        error: &str,
    ) -> Result<u32, StoreError> {
        let parsed = &mail.parsed;
        let sender = if parsed.from_email.is_empty() {
            &parsed.from_name
        } else {
            &parsed.from_email
        };
        let now = now_rfc3339();
        let attempts: i64 = self
            .bounded(
                sqlx::query_scalar(
                    "INSERT INTO failures (account, source_key, attempts, last_error, updated_at, \
                     sender, subject, size, first_failed_at) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $4) \
                     ON CONFLICT (account, source_key) DO UPDATE SET attempts = failures.attempts + 1, \
                     last_error = excluded.last_error, updated_at = excluded.updated_at, \
                     sender = excluded.sender, subject = excluded.subject, size = excluded.size, \
                     first_failed_at = COALESCE(failures.first_failed_at, excluded.first_failed_at) \
                     RETURNING attempts",
                )
                .bind(account)
                .bind(mail.source_key.to_string())
                .bind(error)
                .bind(now)
                .bind(shown(sender))
                .bind(shown(&parsed.subject))
                .bind(i64::try_from(mail.raw.len()).unwrap_or(i64::MAX))
                .fetch_one(&self.pool),
            )
            .await?;
        Ok(attempts as u32)
    }

    /// The mails in quarantine, of one account or of all, by account and then oldest first.
    ///
    /// A row whose source key this version cannot read is an error naming it, not a mail
    /// silently left out.
    pub async fn quarantined(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<QuarantinedMail>, StoreError> {
        let mut q = SqlBuilder::new(
            self.backend,
            "SELECT f.account, f.source_key, f.sender, f.subject, f.size, f.last_error, \
             f.attempts, COALESCE(f.first_failed_at, f.updated_at) AS since FROM failures f WHERE ",
        );
        quarantined_rows(&mut q);
        if let Some(account) = account {
            q.push(" AND f.account = ").push_bind(account);
        }
        q.push(" ORDER BY f.account, since, f.source_key");
        let rows = self.bounded(q.build().fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|row| {
                let account: String = row.try_get(0)?;
                let key: String = row.try_get(1)?;
                let since: String = row.try_get(7)?;
                Ok(QuarantinedMail {
                    key: key.parse().map_err(|_| StoreError::UnreadableFailureKey {
                        account: account.clone(),
                        key: key.clone(),
                    })?,
                    account,
                    sender: row.try_get(2)?,
                    subject: row.try_get(3)?,
                    size: u64::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0),
                    error: row.try_get(5)?,
                    attempts: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(u32::MAX),
                    since: DateTime::parse_from_rfc3339(&since)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Mails in quarantine per account (for the accounts page): the same mails as
    /// [`Store::quarantined`] lists.
    pub(super) async fn quarantined_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut q = SqlBuilder::new(
            self.backend,
            "SELECT f.account, COUNT(*) FROM failures f WHERE ",
        );
        quarantined_rows(&mut q);
        q.push(" GROUP BY f.account");
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.fail(e))
    }

    /// Forgets a mail's failures and, where the store kept its quarantine (POP3), that it is
    /// quarantined: the next pass tries it again. The caller has taken the server's mark off
    /// first (IMAP). True when the store held anything of it.
    pub async fn release_quarantined(
        &self,
        account: &str,
        key: &SourceKey,
    ) -> Result<bool, StoreError> {
        self.bounded(self.release_tx(account, key)).await
    }

    async fn release_tx(&self, account: &str, key: &SourceKey) -> Result<bool, StoreError> {
        let key = key.to_string();
        let mut tx = self.write_tx().await?;
        let failures = sqlx::query("DELETE FROM failures WHERE account = $1 AND source_key = $2")
            .bind(account)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        let skipped = sqlx::query(
            "DELETE FROM processed WHERE account = $1 AND source_key = $2 AND outcome = $3",
        )
        .bind(account)
        .bind(&key)
        .bind(Skipped::Quarantined.label())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(failures.rows_affected() + skipped.rows_affected() > 0)
    }
}

/// The condition on `failures f` that makes a row a mail in quarantine: failed often enough,
/// and not stored since (a `processed` row other than the quarantine's own says it was).
fn quarantined_rows(q: &mut SqlBuilder<'_>) {
    q.push("f.attempts >= ")
        .push_bind(i64::from(QUARANTINE_AFTER))
        .push(
            " AND NOT EXISTS (SELECT 1 FROM processed p WHERE p.account = f.account \
             AND p.source_key = f.source_key AND p.outcome <> ",
        )
        .push_bind(Skipped::Quarantined.label())
        .push(")");
}

/// Mail-derived text as the store keeps it for people to read: on one line (control and
/// bidirectional-override characters become spaces, so a subject cannot move a terminal's
/// cursor or reorder what is shown), trimmed, at most [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let line = line.trim();
    if line.chars().count() <= SHOWN_CHARS {
        return line.to_string();
    }
    let mut clipped: String = line.chars().take(SHOWN_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn incoming(uidl: &str, raw: &[u8]) -> Incoming {
        Incoming {
            source_key: SourceKey::Pop3 { uidl: uidl.into() },
            raw: raw.to_vec(),
            parsed: parse(raw),
            received_at: Utc::now(),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        }
    }

    #[test]
    fn mail_text_is_kept_on_one_line_without_control_characters_and_short() {
        assert_eq!(shown("  Re: Rechnung\r\n\t 4711 "), "Re: Rechnung    4711");
        assert_eq!(shown("a\u{1b}[2Jb\u{202e}c\u{0}"), "a [2Jb c");
        let long = "ä".repeat(500);
        let kept = shown(&long);
        assert_eq!(kept.chars().count(), SHOWN_CHARS);
        assert!(kept.ends_with('…'));
    }

    #[tokio::test]
    async fn a_mail_is_quarantined_after_its_third_failure_with_what_it_looked_like() {
        let store = Store::open_in_memory().await.unwrap();
        let raw = b"From: Erika <erika@example.test>\r\nSubject: Kaputt \x1b[31m\r\n\r\nHallo\r\n";
        let mail = incoming("u1", raw);
        for n in 1..=QUARANTINE_AFTER {
            assert!(store.quarantined(None).await.unwrap().is_empty());
            let attempts = store
                .record_failure("shop", &mail, &format!("failure {n}"))
                .await
                .unwrap();
            assert_eq!(attempts, n);
        }
        let listed = store.quarantined(None).await.unwrap();
        assert_eq!(listed.len(), 1);
        let q = &listed[0];
        assert_eq!(q.account, "shop");
        assert_eq!(q.key, mail.source_key);
        assert_eq!(q.sender, "erika@example.test");
        assert_eq!(q.subject, "Kaputt  [31m");
        assert_eq!(q.size, raw.len() as u64);
        assert_eq!(q.error, "failure 3");
        assert_eq!(q.attempts, QUARANTINE_AFTER);
        assert!(q.since <= Utc::now());
        assert!(store.quarantined(Some("other")).await.unwrap().is_empty());
        assert_eq!(store.quarantined(Some("shop")).await.unwrap(), listed);
        let counts = store.quarantined_counts().await.unwrap();
        assert_eq!(counts, [("shop".to_string(), 1)]);
    }

    #[tokio::test]
    async fn a_released_mail_has_neither_failures_nor_its_pop3_quarantine_and_a_stored_one_is_not_listed(
    ) {
        let store = Store::open_in_memory().await.unwrap();
        let (held, stored) = (
            incoming("held", b"Subject: a\r\n\r\n"),
            incoming("stored", b"Subject: b\r\n\r\n"),
        );
        for mail in [&held, &stored] {
            for _ in 0..QUARANTINE_AFTER {
                store.record_failure("shop", mail, "no").await.unwrap();
            }
        }
        store
            .record_skipped("shop", &held.source_key, Skipped::Quarantined)
            .await
            .unwrap();
        // Stored on a later try after all: no longer in quarantine, whatever its failures say.
        sqlx::query(
            "INSERT INTO processed (account, source_key, outcome, created_at) \
             VALUES ('shop', 'pop3:stored', 'ticket', '2026-01-01T00:00:00Z')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let listed = store.quarantined(Some("shop")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, held.source_key);

        assert!(store
            .release_quarantined("shop", &held.source_key)
            .await
            .unwrap());
        assert!(store.quarantined(None).await.unwrap().is_empty());
        let processed = store
            .processed("shop", SourceKey::POP3_PREFIX)
            .await
            .unwrap();
        assert!(
            !processed.contains_key(&held.source_key),
            "fetched again next pass"
        );
        assert!(
            processed.contains_key(&stored.source_key),
            "a ticket's row stays"
        );
        assert!(!store
            .release_quarantined("shop", &held.source_key)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_failures_row_with_a_key_this_version_cannot_read_is_named() {
        let store = Store::open_in_memory().await.unwrap();
        sqlx::query(
            "INSERT INTO failures (account, source_key, attempts, last_error, updated_at) \
             VALUES ('shop', 'smtp:1', 3, 'x', '2026-01-01T00:00:00Z')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let err = store.quarantined(None).await.unwrap_err();
        assert!(err.to_string().contains("\"smtp:1\""), "{err}");
    }
}
