//! Mails too large to fetch that are still on the server: each is stored by its header in a
//! ticket (`ingest::outcome::Outcome::HeaderOnly`) and waits for a `max_message_size` that
//! allows it. What an alert about them reads.

use chrono::{DateTime, Utc};

use super::{SqlBuilder, Store, StoreError};
use crate::ingest::outcome::HEADER_ONLY;
use crate::ingest::SourceKey;

/// A mail larger than `max_message_size`, stored by its header alone, still on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedMail {
    /// The account whose mailbox holds it.
    pub account: String,
    /// Where it is in that mailbox (an IMAP key names the folder).
    pub key: SourceKey,
    /// The sender's address (From).
    pub sender: String,
    pub subject: String,
    /// The whole mail's size in bytes, as the server listed it.
    pub size: u64,
    /// The number of the ticket its header is in.
    pub ticket: String,
    /// When its header was stored: since then it waits on the server.
    pub since: DateTime<Utc>,
}

/// The mails held by their header that are not gone, read through the partial index
/// `processed_header_only` (migration 0018), not by reading every row of `processed`. The
/// label is written into the statement: SQLite uses a partial index only for a term it can
/// see matches the index's own.
fn oversized_query<'a>(backend: super::Backend) -> SqlBuilder<'a> {
    SqlBuilder::new(
        backend,
        format!(
            "SELECT p.account, p.source_key, a.from_email, a.subject, a.too_large, t.number, \
             p.created_at FROM processed p JOIN articles a ON a.id = p.article_id \
             JOIN tickets t ON t.id = a.ticket_id \
             WHERE p.outcome = '{HEADER_ONLY}' AND p.disposed_at IS NULL"
        ),
    )
}

impl Store {
    /// The mails too large to fetch that are still on the server (of `account`, or of every
    /// account), longest waiting first. A mail leaves this list when it is stored whole (after a
    /// raise of `max_message_size`) or when a pass finds it gone from the server (another client
    /// moved or deleted it). Not listed: a mail that got no ticket because its server cannot
    /// give a header alone (a POP3 server without TOP; logged when it is first seen).
    pub async fn oversized(&self, account: Option<&str>) -> Result<Vec<OversizedMail>, StoreError> {
        let mut q = oversized_query(self.backend);
        if let Some(account) = account {
            q.push(" AND p.account = ").push_bind(account);
        }
        q.push(" ORDER BY p.created_at, p.account, p.source_key");
        type Row = (String, String, String, String, i64, String, String);
        let rows: Vec<Row> = self
            .bounded(q.build_query_as::<Row>().fetch_all(&self.pool))
            .await?;
        rows.into_iter()
            .map(|(account, key, sender, subject, size, ticket, since)| {
                let key = key.parse().map_err(|_| StoreError::UnreadableSourceKey {
                    account: account.clone(),
                    key: key.clone(),
                })?;
                let since = DateTime::parse_from_rfc3339(&since)
                    .map_err(|e| {
                        sqlx::Error::Decode(format!("processed.created_at {since:?}: {e}").into())
                    })?
                    .with_timezone(&Utc);
                Ok(OversizedMail {
                    account,
                    key,
                    sender,
                    subject,
                    size: u64::try_from(size).unwrap_or(0),
                    ticket,
                    since,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::outcome::{Outcome, Recorded, Skipped};
    use crate::ingest::{Extent, Incoming, TicketRules};
    use crate::store::TooLargeState;

    const SIZE: u64 = 80_000_000;

    /// Mail `n` of the customer's, whole or as its header alone.
    fn mail(n: u32, extent: Extent) -> Incoming {
        let header = format!(
            "From: Kunde <k@customer.test>\r\nSubject: Video {n}\r\nMessage-ID: <v{n}@customer.test>\r\n\r\n"
        );
        let raw = match extent {
            Extent::Whole => format!("{header}(the video)\r\n"),
            Extent::HeaderOnly { .. } => header,
        };
        Incoming {
            source_key: format!("pop3:u{n}").parse().unwrap(),
            parsed: crate::ingest::parse::parse_fetched(raw.as_bytes(), extent),
            raw: raw.into_bytes(),
            received_at: Utc::now(),
            arrived: None,
            extent,
        }
    }

    async fn recorded(store: &Store, n: u32) -> Recorded {
        let key: SourceKey = format!("pop3:u{n}").parse().unwrap();
        store.processed("support", "pop3:").await.unwrap()[&key]
            .outcome
            .clone()
    }

    #[tokio::test]
    async fn a_header_is_listed_as_waiting_until_its_whole_mail_is_stored_in_its_ticket() {
        let store = Store::open_in_memory().await.unwrap();
        let rules = TicketRules::with_test_replies("support");
        let header = mail(1, Extent::HeaderOnly { size: SIZE });
        let stored = store.store_batch(&rules, &[header]).await.unwrap();
        assert_eq!(
            stored,
            [Outcome::HeaderOnly {
                number: "10001".into(),
                opened: true
            }]
        );
        assert_eq!(recorded(&store, 1).await, Recorded::HeaderOnly);
        let waiting = store.oversized(None).await.unwrap();
        assert_eq!(waiting.len(), 1);
        let w = &waiting[0];
        assert_eq!(
            (
                w.account.as_str(),
                w.key.to_string(),
                w.sender.as_str(),
                w.subject.as_str(),
                w.size,
                w.ticket.as_str()
            ),
            (
                "support",
                "pop3:u1".to_string(),
                "k@customer.test",
                "Video 1",
                SIZE,
                "10001"
            )
        );
        assert!(store.oversized(Some("returns")).await.unwrap().is_empty());

        let whole = store
            .store_batch(&rules, &[mail(1, Extent::Whole)])
            .await
            .unwrap();
        assert_eq!(
            whole,
            [Outcome::Completed {
                number: "10001".into()
            }]
        );
        assert_eq!(recorded(&store, 1).await, Recorded::Stored);
        assert!(store.oversized(None).await.unwrap().is_empty());
        let ticket = store.show_ticket("10001").await.unwrap().unwrap();
        assert_eq!(ticket.articles.len(), 2);
        let too_large = ticket.articles[0].too_large.as_ref().unwrap();
        assert_eq!(
            (too_large.state, too_large.whole_article, too_large.size),
            (TooLargeState::FetchedWhole, Some(2), SIZE as i64)
        );
        assert_eq!(ticket.articles[1].completes, Some(1));
        assert_eq!(ticket.articles[1].text, "(the video)\r\n");
        let replies = store.outbox_rows().await.unwrap();
        assert_eq!(replies.len(), 1, "the header's reply, and no second one");
    }

    #[tokio::test]
    async fn the_whole_mail_of_a_header_is_kept_even_when_its_body_is_empty() {
        let store = Store::open_in_memory().await.unwrap();
        let rules = TicketRules::without_replies("support");
        // All header: the header alone is the whole mail, byte for byte, and has its key.
        let raw = "From: k@customer.test\r\nSubject: Leer\r\nMessage-ID: <e@customer.test>\r\n\r\n";
        let fetched = |extent| Incoming {
            source_key: "pop3:e".parse().unwrap(),
            parsed: crate::ingest::parse::parse_fetched(raw.as_bytes(), extent),
            raw: raw.as_bytes().to_vec(),
            received_at: Utc::now(),
            arrived: None,
            extent,
        };
        store
            .store_batch(&rules, &[fetched(Extent::HeaderOnly { size: SIZE })])
            .await
            .unwrap();
        let whole = store
            .store_batch(&rules, &[fetched(Extent::Whole)])
            .await
            .unwrap();
        assert_eq!(
            whole,
            [Outcome::Completed {
                number: "10001".into()
            }]
        );
        let ticket = store.show_ticket("10001").await.unwrap().unwrap();
        assert_eq!(ticket.articles.len(), 2);
        assert_eq!(ticket.articles[1].completes, Some(1));
    }

    /// Any other spelling would read every row of `processed` (one per mail ever fetched) at
    /// each look of an alert.
    #[tokio::test]
    async fn the_waiting_mails_are_read_through_the_partial_index_of_held_keys() {
        let store = Store::open_in_memory().await.unwrap();
        let q = oversized_query(crate::store::Backend::Sqlite);
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", q.sql()))
                .fetch_all(store.pool())
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., step)| step.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX processed_header_only")),
            "{steps:?}"
        );
    }

    #[tokio::test]
    async fn a_mail_an_earlier_version_skipped_as_too_large_gets_its_ticket_now() {
        let store = Store::open_in_memory().await.unwrap();
        let rules = TicketRules::without_replies("support");
        let key: SourceKey = "pop3:u1".parse().unwrap();
        store
            .record_skipped("support", &key, Skipped::Oversized)
            .await
            .unwrap();
        let stored = store
            .store_batch(&rules, &[mail(1, Extent::HeaderOnly { size: SIZE })])
            .await
            .unwrap();
        assert!(
            matches!(&stored[..], [Outcome::HeaderOnly { opened: true, .. }]),
            "{stored:?}"
        );
        assert_eq!(recorded(&store, 1).await, Recorded::HeaderOnly);
        // A mail that fits by now is stored whole at once, as a new mail.
        let other: SourceKey = "pop3:u2".parse().unwrap();
        store
            .record_skipped("support", &other, Skipped::Oversized)
            .await
            .unwrap();
        let stored = store
            .store_batch(&rules, &[mail(2, Extent::Whole)])
            .await
            .unwrap();
        assert!(
            matches!(&stored[..], [Outcome::NewTicket { .. }]),
            "{stored:?}"
        );
        assert_eq!(recorded(&store, 2).await, Recorded::Stored);
    }

    #[tokio::test]
    async fn a_stored_mail_is_never_recorded_twice() {
        let store = Store::open_in_memory().await.unwrap();
        let rules = TicketRules::without_replies("support");
        store
            .store_batch(&rules, &[mail(1, Extent::Whole)])
            .await
            .unwrap();
        // Its header again (a listing that took it for too large): nothing is written.
        let again = store
            .store_batch(&rules, &[mail(1, Extent::HeaderOnly { size: SIZE })])
            .await
            .unwrap();
        assert_eq!(again, [Outcome::AlreadyProcessed]);
        assert_eq!(recorded(&store, 1).await, Recorded::Stored);
        assert_eq!(store.count_tickets().await.unwrap(), 1);
    }
}
