//! Read side for the CLI (`tickets list`, `tickets show`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{article_text, SqlBuilder, Store, StoreError};
use crate::ingest::outcome::{Recorded, HEADER_ONLY};
use crate::ingest::SourceKey;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TicketSummary {
    pub number: String,
    pub account: String,
    #[serde(rename = "type")]
    pub ticket_type: String,
    pub status: String,
    pub subject: String,
    pub customer: String,
    pub customer_name: String,
    pub created_at: String,
    pub articles: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub filename: String,
    pub content_type: String,
    pub size: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArticleDetail {
    pub message_id: String,
    pub from: String,
    pub from_name: String,
    pub subject: String,
    pub text: String,
    pub received_at: String,
    pub followup: bool,
    pub malformed: Option<String>,
    pub auto_reply: String,
    pub source: String,
    pub attachments: Vec<AttachmentInfo>,
    /// A delivery report (bounce) of one of our automatic replies.
    pub bounce: bool,
    /// The accounts that received this message: the one that stored it first, then those whose
    /// copies were recorded against it (see docs/replies.md, "One message, several accounts").
    pub received_by: Vec<String>,
    /// The `[[account.rule]]` that matched the mail; `None`: none did.
    pub rule: Option<String>,
    /// The mail was larger than `max_message_size`: the article holds its header alone.
    pub too_large: Option<TooLarge>,
    /// The number (within the ticket) of the article that holds only the header of the mail
    /// this article holds whole: fetched once `max_message_size` allowed it.
    pub completes: Option<usize>,
}

/// A mail too large to fetch, of which an article holds the header alone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TooLarge {
    /// The whole mail's size in bytes, as the server listed it.
    pub size: i64,
    /// Where the mail was found: the account, and (IMAP) the folder.
    pub account: String,
    pub folder: Option<String>,
    pub state: TooLargeState,
    /// The number (within the ticket) of the article that holds the whole mail, once fetched.
    pub whole_article: Option<usize>,
}

/// What became of a mail too large to fetch.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TooLargeState {
    /// Still on the server, waiting for a `max_message_size` that allows it.
    OnServer,
    /// Fetched whole since (into this ticket, or as a copy of a message stored whole).
    FetchedWhole,
    /// Gone from the server without being fetched whole (another client moved or deleted it).
    Gone,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TicketDetail {
    pub number: String,
    pub account: String,
    #[serde(rename = "type")]
    pub ticket_type: String,
    pub status: String,
    pub subject: String,
    pub customer: String,
    pub customer_name: String,
    pub created_at: String,
    pub articles: Vec<ArticleDetail>,
}

const SUMMARY_SQL: &str = "SELECT t.number, t.account, t.ticket_type, t.status, t.subject, \
     t.customer_email, t.customer_name, t.created_at, \
     (SELECT COUNT(*) FROM articles a WHERE a.ticket_id = t.id) AS articles \
     FROM tickets t";

/// Which tickets `tickets list` shows: newest first, at most `limit`, narrowed by the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFilter {
    pub account: Option<String>,
    pub status: Option<String>,
    pub ticket_type: Option<String>,
    /// Created at or after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Created before this moment.
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl Default for TicketFilter {
    fn default() -> TicketFilter {
        TicketFilter {
            account: None,
            status: None,
            ticket_type: None,
            since: None,
            until: None,
            limit: 50,
        }
    }
}

/// A bound in the form `created_at` is stored in (RFC 3339, milliseconds, `Z`), so text
/// comparison is time comparison.
fn created_bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn summary(row: &AnyRow) -> TicketSummary {
    TicketSummary {
        number: row.get(0),
        account: row.get(1),
        ticket_type: row.get(2),
        status: row.get(3),
        subject: row.get(4),
        customer: row.get(5),
        customer_name: row.get(6),
        created_at: row.get(7),
        articles: row.get(8),
    }
}

impl Store {
    /// What became of the mail of article row `a` (of `show_ticket`'s query), if it holds only
    /// the header of a mail too large to fetch: fetched whole since, or still on the server
    /// (where: its own source key, or the key it has now after a UIDVALIDITY change), or gone.
    async fn too_large(
        &self,
        a: &AnyRow,
        articles: &[AnyRow],
        number_of: impl Fn(i64) -> Option<usize>,
    ) -> Result<Option<TooLarge>, StoreError> {
        let size: i64 = a.get(14);
        if size == 0 {
            return Ok(None);
        }
        let id: i64 = a.get(0);
        let (source, account): (String, String) = (a.get(10), a.get(12));
        let whole_article = articles
            .iter()
            .find(|w| w.get::<Option<i64>, _>(15) == Some(id))
            .and_then(|w| number_of(w.get(0)));
        // The keys held by this header that are still on the server, its own first. The
        // literal label lets SQLite read the partial index `processed_header_only`.
        let mut held: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT account, source_key FROM processed WHERE article_id = $1 \
             AND outcome = '{HEADER_ONLY}' AND disposed_at IS NULL ORDER BY created_at"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        held.sort_by_key(|(acc, key)| (acc, key) != (&account, &source));
        let own: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM processed WHERE account = $1 AND source_key = $2",
        )
        .bind(&account)
        .bind(&source)
        .fetch_optional(&self.pool)
        .await?;
        let (state, (account, source)) = match (whole_article, held.into_iter().next()) {
            (Some(_), _) => (TooLargeState::FetchedWhole, (account, source)),
            (None, Some(place)) => (TooLargeState::OnServer, place),
            (None, None) if own.is_some_and(|o| Recorded::from_label(&o) == Recorded::Stored) => {
                (TooLargeState::FetchedWhole, (account, source))
            }
            (None, None) => (TooLargeState::Gone, (account, source)),
        };
        let folder = match source.parse::<SourceKey>() {
            Ok(SourceKey::Imap { folder, .. }) => Some(folder),
            _ => None,
        };
        Ok(Some(TooLarge {
            size,
            account,
            folder,
            state,
            whole_article,
        }))
    }

    /// Copies recorded before migration 0014, whose content nobody compared with the mail they
    /// were taken for: some may have been mails of their own (docs/operations.md, "Mails taken
    /// for copies before migration 0014").
    pub async fn copies_not_compared(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM message_copies WHERE content_compared = 0")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    /// One page of tickets, newest first. The page is chosen through the created_at indexes
    /// (migration 0004) before articles are counted, so its cost follows `limit`, not the size
    /// of the store.
    pub async fn list_tickets(
        &self,
        filter: &TicketFilter,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        let mut q = SqlBuilder::new(
            self.backend,
            "WITH page AS (SELECT id, number, account, ticket_type, status, subject, customer_email, \
             customer_name, created_at FROM tickets WHERE 1 = 1",
        );
        if let Some(account) = &filter.account {
            q.push(" AND account = ").push_bind(account);
        }
        if let Some(status) = &filter.status {
            q.push(" AND status = ").push_bind(status);
        }
        if let Some(ticket_type) = &filter.ticket_type {
            q.push(" AND ticket_type = ").push_bind(ticket_type);
        }
        if let Some(since) = filter.since {
            q.push(" AND created_at >= ")
                .push_bind(created_bound(since));
        }
        if let Some(until) = filter.until {
            q.push(" AND created_at < ").push_bind(created_bound(until));
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit))
            .push(
                ") SELECT p.number, p.account, p.ticket_type, p.status, p.subject, p.customer_email, \
                 p.customer_name, p.created_at, \
                 (SELECT COUNT(*) FROM articles a WHERE a.ticket_id = p.id) FROM page p \
                 ORDER BY p.created_at DESC, p.id DESC",
            );
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(summary).collect())
    }

    pub async fn count_tickets(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn show_ticket(&self, number: &str) -> Result<Option<TicketDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!("{SUMMARY_SQL} WHERE t.number = $1"))
            .bind(number)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let s = summary(&row);
        let articles = sqlx::query(
            "SELECT a.id, a.message_id, a.from_email, a.from_name, a.subject, a.text_body, \
             a.received_at, a.is_followup, a.parse_problem, a.reply_note, a.source_key, a.is_bounce, a.account, a.rule, \
             a.too_large, a.completes, a.text_zstd \
             FROM articles a JOIN tickets t ON t.id = a.ticket_id WHERE t.number = $1 ORDER BY a.id",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        // Articles are numbered from 1 within the ticket, as `--raw` takes them.
        let ids: Vec<i64> = articles.iter().map(|a| a.get(0)).collect();
        let number_of = |id: i64| ids.iter().position(|&i| i == id).map(|i| i + 1);
        let mut details = Vec::with_capacity(articles.len());
        for a in &articles {
            let id: i64 = a.get(0);
            let attachments = sqlx::query(
                "SELECT filename, content_type, size FROM attachments WHERE article_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| AttachmentInfo {
                filename: r.get(0),
                content_type: r.get(1),
                size: r.get(2),
            })
            .collect();
            let problem: String = a.get(8);
            let mut received_by: Vec<String> = vec![a.get(12)];
            let copies: Vec<String> = sqlx::query_scalar(
                "SELECT account FROM message_copies WHERE article_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            for account in copies {
                if !received_by.contains(&account) {
                    received_by.push(account);
                }
            }
            details.push(ArticleDetail {
                message_id: a.get(1),
                from: a.get(2),
                from_name: a.get(3),
                subject: a.get(4),
                text: text_of(id, a.get(5), a.get(16)),
                received_at: a.get(6),
                followup: a.get::<i64, _>(7) != 0,
                malformed: Some(problem).filter(|p| !p.is_empty()),
                auto_reply: a.get(9),
                source: a.get(10),
                attachments,
                bounce: a.get::<i64, _>(11) != 0,
                received_by,
                rule: Some(a.get::<String, _>(13)).filter(|r| !r.is_empty()),
                too_large: self.too_large(a, &articles, &number_of).await?,
                completes: a.get::<Option<i64>, _>(15).and_then(number_of),
            });
        }
        Ok(Some(TicketDetail {
            number: s.number,
            account: s.account,
            ticket_type: s.ticket_type,
            status: s.status,
            subject: s.subject,
            customer: s.customer,
            customer_name: s.customer_name,
            created_at: s.created_at,
            articles: details,
        }))
    }
}

/// An article's text as `tickets show` and the page show it. A compressed text that no longer
/// decodes (the store was damaged after it was written) is named in its place: the rest of the
/// ticket stays readable, and the verified mail is one command away.
fn text_of(id: i64, text_body: String, text_zstd: Option<Vec<u8>>) -> String {
    article_text::of_row(text_body, text_zstd).unwrap_or_else(|cause| {
        tracing::error!(article = id, %cause, "an article's stored text does not decode");
        format!(
            "[The stored text of this article (id {id}) is damaged and cannot be shown ({cause}). \
             `mail2ticket tickets show NUMBER --raw N` writes its mail as received, verified.]"
        )
    })
}
