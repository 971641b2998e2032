//! Everything a batch's decisions depend on, read in one go: one statement per kind of fact
//! (and per chunk of `IN_CHUNK`), not one per mail. Each statement is a round trip to SQLite's
//! worker thread or to the PostgreSQL server, and per-mail round trips were most of a backlog's
//! time. Read inside the batch's write transaction, which holds the store's write lock
//! (`Store::write_tx`): nobody else stores a mail, queues a reply or takes a row id between this
//! lookup and the batch's writes, so "the first account to store a message opens it" is exact.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};

use super::message_ids::message_id_hash;
use super::processed::processed_among;
use super::sql::IN_CHUNK;
use super::{Backend, SqlBuilder, StoreError, TicketRules};
use crate::ingest::reply::RATE_WINDOW;
use crate::ingest::route::{referenced_ids, Known, Mail, SentReply, StoredMessage, TicketRef};
use crate::ingest::same_message::{content_fingerprint, MessageKey};
use crate::ingest::thread::ticket_number_in_subject;
use crate::ingest::SourceKey;

/// What the store knows about these mails, at `now`.
pub(super) async fn known(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    mails: &[Mail<'_>],
    now: DateTime<Utc>,
) -> Result<Known, StoreError> {
    let account = rules.account.as_str();
    let keys: Vec<&SourceKey> = mails.iter().map(|m| &m.incoming.source_key).collect();
    // Mails with a message key are found again by it; only the others by their bytes (see
    // migration 0011).
    let keyless: Vec<&str> = mails
        .iter()
        .filter(|m| m.msg_key.is_none())
        .map(|m| m.sha)
        .collect();
    let referenced: HashSet<&str> = mails
        .iter()
        .flat_map(|m| referenced_ids(&m.incoming.parsed))
        .map(String::as_str)
        .collect();
    // Ours among the mails' own Message-IDs, references and returned Message-IDs: what threads
    // them, what makes a mail one of our own, what a delivery report returns.
    let reply_ids: HashSet<&str> = mails
        .iter()
        .flat_map(|m| {
            let p = &m.incoming.parsed;
            std::iter::once(&p.message_id)
                .chain(&p.in_reply_to)
                .chain(&p.references)
                .chain(&p.automation.returned_message_id)
        })
        .map(String::as_str)
        .filter(|id| !id.is_empty())
        .collect();
    let numbers: HashSet<&str> = mails
        .iter()
        .filter_map(|m| ticket_number_in_subject(&m.incoming.parsed.subject, &rules.subject_tag))
        .collect();
    let (next_ticket_id, next_article_id) = next_ids(tx).await?;
    let recorded = processed_among(tx, account, &keys).await?;
    let mut known = Known {
        now,
        processed: recorded.processed,
        held: recorded.held,
        same_bytes: same_bytes(tx, account, &keyless).await?,
        messages: stored_messages(tx, account, mails.iter().filter_map(|m| m.msg_key)).await?,
        replies: sent_replies(tx, &reply_ids).await?,
        own_alerts: own_alerts(tx, mails).await?,
        articles: article_threads(tx, &referenced).await?,
        numbers: tickets_by_number(tx, &numbers).await?,
        recent_replies: HashMap::new(),
        next_ticket_id,
        next_article_id,
    };
    if rules.reply.is_some() {
        let recipients: HashSet<String> = mails
            .iter()
            .map(|m| crate::ingest::reply::rules::recipient(&m.incoming.parsed).to_lowercase())
            .filter(|r| !r.is_empty())
            .collect();
        known.recent_replies = recent_replies(tx, &recipients, now).await?;
    }
    Ok(known)
}

/// The row ids the next ticket and article get: the next after the highest. Rows are never
/// deleted, so this is the id SQLite's AUTOINCREMENT would give, and explicit ids keep
/// `sqlite_sequence` in step; PostgreSQL's tickets and articles have no sequence. Taken under the
/// write lock, so nobody else takes one.
async fn next_ids(tx: &mut Transaction<'_, Any>) -> Result<(i64, i64), StoreError> {
    let (t, a): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM tickets), (SELECT COALESCE(MAX(id), 0) FROM articles)",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok((t + 1, a + 1))
}

/// SHA-256 → where the account's stored mails without a message key that have these exact
/// bytes are (the oldest article wins, as the index order of a single lookup would give).
async fn same_bytes(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    shas: &[&str],
) -> Result<HashMap<String, StoredMessage>, StoreError> {
    let mut out = HashMap::new();
    for chunk in shas.chunks(IN_CHUNK) {
        let mut q = same_bytes_query(Backend::of(tx), account, chunk);
        let rows: Vec<(String, i64, String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (sha, article_id, number, too_large) in rows {
            out.entry(sha).or_insert(StoredMessage {
                article_id,
                number,
                header_only: too_large > 0,
            });
        }
    }
    Ok(out)
}

fn same_bytes_query<'a>(backend: Backend, account: &'a str, shas: &'a [&'a str]) -> SqlBuilder<'a> {
    let mut q = SqlBuilder::new(
        backend,
        "SELECT a.raw_sha256, a.id, t.number, a.too_large FROM articles a \
         JOIN tickets t ON t.id = a.ticket_id WHERE a.account = ",
    );
    // The predicate of `articles_account_sha_keyless` (migration 0011), spelt as there.
    q.push_bind(account).push(
        " AND (trim(a.message_id) = '' OR trim(a.from_email) = '' OR a.parse_problem != '') \
         AND a.raw_sha256 IN (",
    );
    q.push_list(shas.iter().copied());
    q.push(") ORDER BY a.id");
    q
}

/// Which of these messages are stored already, and where: by their key, or, for a message a
/// store recorded before migration 0014 (without its content), by that earlier key when the
/// stored mail has the same content (see `ingest::same_message`).
async fn stored_messages<'k>(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: impl Iterator<Item = &'k MessageKey>,
) -> Result<HashMap<String, StoredMessage>, StoreError> {
    let keys: Vec<&MessageKey> = keys.collect();
    let mut out = messages_by_key(tx, keys.iter().map(|k| k.key.as_str())).await?;
    let unknown: Vec<&MessageKey> = keys
        .into_iter()
        .filter(|k| !out.contains_key(&k.key))
        .collect();
    let earlier = messages_by_key(tx, unknown.iter().map(|k| k.without_content.as_str())).await?;
    for key in unknown {
        let Some(stored) = earlier.get(&key.without_content) else {
            continue;
        };
        match super::raw::verified_raw(&mut **tx, stored.article_id, &stored.number, 0).await {
            Ok(raw) if content_fingerprint(&raw) == key.content => {
                out.insert(key.key.clone(), stored.clone());
            }
            Ok(_) => tracing::info!(
                account,
                ticket = %stored.number,
                message = %key.without_content,
                "a mail reuses the sender and Message-ID of a mail stored earlier, with other \
                 content: it is a mail of its own, not a copy"
            ),
            Err(super::ExportError::Store(e)) => return Err(e),
            // Damaged or unreadable: not known to be the same mail, so it is kept as its own.
            Err(e) => tracing::warn!(
                account,
                ticket = %stored.number,
                error = %e,
                "could not compare a mail with the stored mail of the same sender and \
                 Message-ID: it is stored as a mail of its own"
            ),
        }
    }
    Ok(out)
}

/// Where the messages with these keys are stored, by key.
async fn messages_by_key<'k>(
    tx: &mut Transaction<'_, Any>,
    keys: impl Iterator<Item = &'k str>,
) -> Result<HashMap<String, StoredMessage>, StoreError> {
    let keys: Vec<&str> = keys.collect();
    let mut out = HashMap::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT m.message_key, m.article_id, t.number, a.too_large FROM messages m \
             JOIN tickets t ON t.id = m.ticket_id JOIN articles a ON a.id = m.article_id \
             WHERE m.message_key IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(")");
        let rows: Vec<(String, i64, String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (key, article_id, number, too_large) in rows {
            out.insert(
                key,
                StoredMessage {
                    article_id,
                    number,
                    header_only: too_large > 0,
                },
            );
        }
    }
    Ok(out)
}

/// Our replies with these Message-IDs (the first queued wins, should one be there twice).
async fn sent_replies(
    tx: &mut Transaction<'_, Any>,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, SentReply>, StoreError> {
    let ids: Vec<&str> = ids.iter().copied().collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT o.message_id, t.id, t.number, o.article_id, o.account, o.recipient, o.bounced_at \
             FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(") ORDER BY o.id");
        type Row = (String, i64, String, i64, String, String, Option<String>);
        let rows: Vec<Row> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (message_id, id, number, article_id, account, recipient, bounced_at) in rows {
            out.entry(message_id).or_insert(SentReply {
                ticket: TicketRef { id, number },
                article_id,
                account,
                recipient,
                bounced: bounced_at.is_some(),
            });
        }
    }
    Ok(out)
}

/// The mails' own Message-IDs that are alerts we queued (see `crate::alerts`).
async fn own_alerts(
    tx: &mut Transaction<'_, Any>,
    mails: &[Mail<'_>],
) -> Result<HashSet<String>, StoreError> {
    let ids: Vec<&str> = mails
        .iter()
        .map(|m| m.incoming.parsed.message_id.as_str())
        .filter(|id| id.starts_with(super::alerts::ALERT_ID_PREFIX))
        .collect();
    let mut out = HashSet::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT message_id FROM outbox WHERE alert_id IS NOT NULL AND message_id IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(")");
        let rows: Vec<(String,)> = q.build_query_as().fetch_all(&mut **tx).await?;
        out.extend(rows.into_iter().map(|(id,)| id));
    }
    Ok(out)
}

/// The ticket of the oldest stored article with each of these Message-IDs.
async fn article_threads(
    tx: &mut Transaction<'_, Any>,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, TicketRef>, StoreError> {
    let list: Vec<&str> = ids.iter().copied().collect();
    let mut out = HashMap::new();
    for chunk in list.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT a.message_id, t.id, t.number FROM message_id_hashes h \
             JOIN articles a ON a.id = h.article_id JOIN tickets t ON t.id = a.ticket_id \
             WHERE h.hash IN (",
        );
        q.push_list(chunk.iter().map(|id| message_id_hash(id)));
        q.push(") ORDER BY a.id");
        let rows: Vec<(String, i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        // A hash names its Message-ID only with a tiny chance of a collision: compare.
        for (message_id, id, number) in rows {
            if ids.contains(message_id.as_str()) {
                out.entry(message_id).or_insert(TicketRef { id, number });
            }
        }
    }
    Ok(out)
}

/// Ticket number → row id of the tickets with these numbers.
async fn tickets_by_number(
    tx: &mut Transaction<'_, Any>,
    numbers: &HashSet<&str>,
) -> Result<HashMap<String, i64>, StoreError> {
    let numbers: Vec<&str> = numbers.iter().copied().collect();
    let mut out = HashMap::new();
    for chunk in numbers.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT number, id FROM tickets WHERE number IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(")");
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Replies queued to each of these recipients within `RATE_WINDOW` before `now`, whatever their
/// status: a queued reply is a reply promised.
async fn recent_replies(
    tx: &mut Transaction<'_, Any>,
    recipients: &HashSet<String>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, u32>, StoreError> {
    let since =
        super::outbox::rfc3339(now - chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default());
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let mut out = HashMap::new();
    for chunk in recipients.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT recipient, COUNT(*) FROM outbox WHERE article_id IS NOT NULL AND created_at >= ",
        );
        q.push_bind(since.as_str()).push(" AND recipient IN (");
        q.push_list(chunk.iter().copied());
        q.push(") GROUP BY recipient");
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        out.extend(
            rows.into_iter()
                .map(|(r, n)| (r, u32::try_from(n).unwrap_or(u32::MAX))),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// With any other spelling of the predicate SQLite would scan every article of the account
    /// for each batch: correct, and slower with every year of mail.
    #[tokio::test]
    async fn finding_the_same_bytes_again_reads_the_index_of_mails_without_a_message_key() {
        let store = Store::open_in_memory().await.unwrap();
        let shas = ["0".repeat(64), "f".repeat(64)];
        let shas: Vec<&str> = shas.iter().map(String::as_str).collect();
        let q = same_bytes_query(Backend::Sqlite, "support", &shas);
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", q.sql()))
                .bind("support")
                .bind(shas[0])
                .bind(shas[1])
                .fetch_all(store.pool())
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., step)| step.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX articles_account_sha_keyless")),
            "{steps:?}"
        );
    }
}
