//! Write side of ingestion: one transaction per batch of mails stores tickets, articles,
//! attachments and the processed source keys together, so "source key recorded" always means
//! "ticket durable".

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use super::{now_rfc3339, SqlBuilder, Store, StoreError};
use crate::config::CustomerSource;
use crate::ingest::customer::customer;
pub use crate::ingest::outcome::Outcome;
use crate::ingest::parse::ParsedMail;
use crate::ingest::same_message::message_key;

/// A fetched mail on its way into the store.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Unique per account: `imap:<folder>:<uidvalidity>:<uid>` or `pop3:<uidl>`.
    pub source_key: String,
    pub raw: Vec<u8>,
    pub parsed: ParsedMail,
    pub received_at: DateTime<Utc>,
}

/// How the account's mails become tickets.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRules {
    pub account: String,
    pub ticket_type: String,
    pub ticket_status: String,
    pub subject_tag: String,
    /// Who the customer is when a mail has a Reply-To.
    pub customer: CustomerSource,
    /// Automatic replies to new tickets; `None` when the account does not auto-reply.
    pub reply: Option<crate::reply::ReplyPolicy>,
    /// Verifies the signed marker of `test-fetch` mails (see ingest::testmail): the account's
    /// address and password. `None`: no mail is ever treated as a test mail.
    pub test_mail_key: Option<(String, crate::secret::Secret)>,
}

impl TicketRules {
    /// The rules of an account configured with nothing but its name: type "question", status
    /// "open", the default subject tag, the customer from Reply-To, no automatic replies and no
    /// test mails. What generated stores, fuzzing and tests start from.
    pub fn without_replies(account: &str) -> TicketRules {
        TicketRules {
            account: account.into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            subject_tag: crate::config::default_subject_tag(),
            customer: crate::config::CustomerSource::ReplyTo,
            reply: None,
            test_mail_key: None,
        }
    }

    /// A genuine test-fetch mail of this account: disposed of without a ticket.
    pub fn is_test_mail(&self, parsed: &ParsedMail) -> bool {
        match (&parsed.automation.test_marker, &self.test_mail_key) {
            (Some(marker), Some((email, key))) => {
                crate::ingest::testmail::is_genuine(marker, key, email)
            }
            _ => false,
        }
    }
}

/// The result of [`Store::store_alone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAlone {
    Stored(Outcome),
    Failed { attempts: u32 },
}

/// Failed storage attempts after which a mail is quarantined (skipped, left on the server).
pub const QUARANTINE_AFTER: u32 = 3;

/// A processed source key and whether its mail was already disposed on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedState {
    pub disposed: bool,
    pub outcome: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Store {
    /// Stores a batch in one durable transaction; returns one outcome per mail, in order.
    ///
    /// Per mail only the ticket and article rows are written one by one; the lookups that are
    /// the same for every mail (already processed? same bytes stored before?) and the
    /// `processed` rows are one statement per chunk of the batch. Each statement is a round trip
    /// to SQLite's worker thread, and these round trips were most of a backlog's time.
    ///
    /// A panic while handling a mail (a bug in parsing, threading, reply rules or building the
    /// rows) is caught here and returned as [`StoreError::Panicked`]: the transaction rolls back
    /// and the caller retries mail by mail, where it counts as that mail's failure.
    pub async fn store_batch(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
    ) -> Result<Vec<Outcome>, StoreError> {
        let work = std::panic::AssertUnwindSafe(self.store_batch_tx(rules, mails));
        match futures::FutureExt::catch_unwind(work).await {
            Ok(Ok(outcomes)) => {
                self.health.worked();
                Ok(outcomes)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                tracing::error!(account = %rules.account, mails = mails.len(), panic = %what,
                    "handling a batch panicked; storing its mails one by one");
                crate::metrics::error(&rules.account, "panic");
                Err(StoreError::Panicked(what))
            }
        }
    }

    async fn store_batch_tx(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = self.write_tx().await?;
        let keys: Vec<&str> = mails.iter().map(|m| m.source_key.as_str()).collect();
        let mut seen = processed_among(&mut tx, &rules.account, &keys).await?;
        let shas: Vec<String> = mails.iter().map(|m| sha256_hex(&m.raw)).collect();
        let mut stored = stored_numbers(&mut tx, &rules.account, &shas).await?;
        let msg_keys: Vec<Option<String>> = mails.iter().map(|m| message_key(&m.parsed)).collect();
        // Read inside this write transaction (it holds the write lock): no other poller can store a copy
        // between this lookup and our insert, so "the first account to store it opens it" is exact.
        let mut owners = message_owners(&mut tx, &msg_keys).await?;
        let mut bounced = Vec::new();
        let mut outcomes = Vec::with_capacity(mails.len());
        let mut rows = Vec::with_capacity(mails.len());
        let mut suppressed = Vec::new();
        // Plain new tickets (see `opens_plain_ticket`) are collected and written with multi-row
        // INSERTs; anything else first flushes them, so it sees every earlier mail of the batch
        // exactly as if all had been written one by one.
        let mut plain = PlainTickets::default();
        for ((mail, sha), msg_key) in mails.iter().zip(&shas).zip(&msg_keys) {
            // A key listed twice in one batch counts once, as a key stored by an earlier batch.
            if !seen.insert(mail.source_key.clone()) {
                outcomes.push(Outcome::AlreadyProcessed);
                continue;
            }
            crate::ingest::panic_hook::check(&mail.parsed.subject);
            let now = now_rfc3339();
            let owned = msg_key.as_ref().is_some_and(|k| owners.contains_key(k));
            if !stored.contains_key(sha) && !owned && opens_plain_ticket(rules, &mail.parsed) {
                let (ticket_id, article_id) = plain.next_ids(&mut tx).await?;
                // The number rule of `create_ticket`: row id + 10000.
                let number = (ticket_id + 10000).to_string();
                stored.insert(sha.clone(), number.clone());
                if let Some(key) = msg_key {
                    owners.insert(
                        key.clone(),
                        Owner {
                            article_id,
                            number: number.clone(),
                        },
                    );
                }
                rows.push((
                    mail.source_key.as_str(),
                    "ticket",
                    Some(article_id),
                    now.clone(),
                ));
                plain.pending.push(PlainTicket {
                    mail,
                    sha,
                    msg_key: msg_key.as_deref(),
                    ticket_id,
                    article_id,
                    number: number.clone(),
                    now,
                });
                if plain.pending.len() >= PLAIN_CHUNK {
                    plain.flush(&mut tx, rules).await?;
                }
                outcomes.push(Outcome::NewTicket { number });
                continue;
            }
            plain.flush(&mut tx, rules).await?;
            plain.ids_known = false;
            let mut batch = BatchState {
                stored: &mut stored,
                owners: &mut owners,
                suppressed: &mut suppressed,
                bounced: &mut bounced,
            };
            let (outcome, article_id) = store_one(
                &mut tx,
                rules,
                mail,
                sha,
                msg_key.as_deref(),
                &mut batch,
                &now,
            )
            .await?;
            rows.push((mail.source_key.as_str(), outcome.label(), article_id, now));
            outcomes.push(outcome);
        }
        plain.flush(&mut tx, rules).await?;
        insert_processed(&mut tx, &rules.account, &rows).await?;
        tx.commit().await?;
        // Counted after the commit: a batch that rolls back (and is retried mail by mail) does
        // not count its decisions twice.
        for reason in suppressed {
            crate::metrics::reply_suppressed(&rules.account, reason);
        }
        for sender in bounced {
            crate::metrics::reply_bounced(&sender);
        }
        Ok(outcomes)
    }

    /// Stores one mail on its own (after its batch failed), so one bad mail cannot block the
    /// rest. A failure is counted per source key; the caller quarantines the mail after
    /// `QUARANTINE_AFTER` failures in the protocol's own way.
    pub async fn store_alone(
        &self,
        rules: &TicketRules,
        mail: &Incoming,
    ) -> Result<StoredAlone, StoreError> {
        match self.store_batch(rules, std::slice::from_ref(mail)).await {
            Ok(mut outcomes) => Ok(StoredAlone::Stored(
                outcomes.pop().unwrap_or(Outcome::AlreadyProcessed),
            )),
            // The disk, not the mail: stop the pass without blaming the mail.
            Err(e) if e.is_environmental() => Err(e),
            Err(e) => {
                let attempts = self
                    .record_failure(&rules.account, &mail.source_key, &e.to_string())
                    .await?;
                tracing::error!(account = %rules.account, source = %mail.source_key, attempts, error = %e, "storing a mail failed");
                Ok(StoredAlone::Failed { attempts })
            }
        }
    }

    /// Source keys already handled for this account whose key starts with `prefix`.
    pub async fn processed(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<HashMap<String, ProcessedState>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT source_key, disposed_at, outcome FROM processed WHERE account = $1 AND substr(source_key, 1, length($2)) = $2",
        )
        .bind(account)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(rows
            .into_iter()
            .map(|(k, d, outcome)| {
                (
                    k,
                    ProcessedState {
                        disposed: d.is_some(),
                        outcome,
                    },
                )
            })
            .collect())
    }

    /// Records a mail that is deliberately not fetched (too large), so it is counted once.
    pub async fn record_skipped(
        &self,
        account: &str,
        source_key: &str,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO processed (account, source_key, outcome, created_at, disposed_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(account)
        .bind(source_key)
        .bind(outcome)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_disposed(&self, account: &str, keys: &[String]) -> Result<(), StoreError> {
        self.mark_disposed_tx(account, keys)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn mark_disposed_tx(&self, account: &str, keys: &[String]) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut tx = self.write_tx().await?;
        for chunk in keys.chunks(IN_CHUNK) {
            let mut q = SqlBuilder::new("UPDATE processed SET disposed_at = ");
            q.push_bind(&now)
                .push(" WHERE account = ")
                .push_bind(account)
                .push(" AND source_key IN (");
            q.push_list(chunk.iter().map(String::as_str));
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets processed keys (POP3 keep mode prunes UIDLs that left the server).
    pub async fn forget_processed(&self, account: &str, keys: &[String]) -> Result<(), StoreError> {
        self.forget_processed_tx(account, keys)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn forget_processed_tx(&self, account: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for key in keys {
            sqlx::query("DELETE FROM processed WHERE account = $1 AND source_key = $2")
                .bind(account)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn uidvalidity(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<u32>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT uidvalidity FROM mailbox_state WHERE account = $1 AND folder = $2",
        )
        .bind(account)
        .bind(folder)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(v.map(|v| v as u32))
    }

    pub async fn set_uidvalidity(
        &self,
        account: &str,
        folder: &str,
        value: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mailbox_state (account, folder, uidvalidity, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(folder)
        .bind(value as i64)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Counts one more storage failure of a mail; returns the number of failures so far.
    pub async fn record_failure(
        &self,
        account: &str,
        source_key: &str,
        error: &str,
    ) -> Result<u32, StoreError> {
        let attempts: i64 = sqlx::query_scalar(
            "INSERT INTO failures (account, source_key, attempts, last_error, updated_at) VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (account, source_key) DO UPDATE SET attempts = failures.attempts + 1, \
             last_error = excluded.last_error, updated_at = excluded.updated_at RETURNING attempts",
        )
        .bind(account)
        .bind(source_key)
        .bind(error)
        .bind(now_rfc3339())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(attempts as u32)
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What a batch knows about the mails stored before (in the store or earlier in the batch), and
/// what it collects for the metrics after the commit.
struct BatchState<'s> {
    /// SHA-256 of the account's stored mails → ticket number.
    stored: &'s mut HashMap<String, String>,
    /// Message key (see `ingest::same_message`) → where the message is stored.
    owners: &'s mut HashMap<String, Owner>,
    /// Reasons of suppressed replies.
    suppressed: &'s mut Vec<&'static str>,
    /// Accounts whose reply bounced.
    bounced: &'s mut Vec<String>,
}

/// Where a message is stored: the article of its first copy, and that article's ticket number.
#[derive(Debug, Clone)]
struct Owner {
    article_id: i64,
    number: String,
}

/// Stores one mail that is not processed yet.
async fn store_one(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    mail: &Incoming,
    sha: &str,
    msg_key: Option<&str>,
    batch: &mut BatchState<'_>,
    now: &str,
) -> Result<(Outcome, Option<i64>), StoreError> {
    let parsed = &mail.parsed;
    if rules.is_test_mail(parsed) {
        return Ok((Outcome::TestMail, None));
    }
    if let Some(number) = batch.stored.get(sha) {
        return Ok((
            Outcome::Duplicate {
                number: number.clone(),
            },
            None,
        ));
    }
    if let Some(owner) = msg_key.and_then(|k| batch.owners.get(k)) {
        // Another copy of a stored message: no article, no ticket, no reply; only which
        // account received it. The caller records the source key, so it is disposed of.
        record_copy(tx, rules, mail, owner.article_id, now).await?;
        return Ok((
            Outcome::Duplicate {
                number: owner.number.clone(),
            },
            None,
        ));
    }
    // A delivery report of one of our replies joins the reply's ticket.
    let bounce = match &parsed.automation.returned_message_id {
        Some(id) => super::outbox::mark_bounced(tx, id, &mail.source_key).await?,
        None => None,
    };
    let thread = match &bounce {
        Some(b) => Some((b.ticket_id, b.number.clone())),
        None => find_thread(tx, rules, parsed).await?,
    };
    let (ticket_id, number, followup) = match thread {
        Some((id, number)) => {
            sqlx::query("UPDATE tickets SET updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            (id, number, true)
        }
        None => {
            let (id, number) = create_ticket(tx, rules, parsed, now).await?;
            (id, number, false)
        }
    };
    let article_id = insert_article(tx, rules, mail, ticket_id, sha, followup, now).await?;
    if let Some(b) = bounce {
        let note = format!(
            "no auto-reply: delivery report of our automatic reply to {} (a bounce)",
            b.recipient
        );
        sqlx::query("UPDATE articles SET is_bounce = 1, reply_note = $1 WHERE id = $2")
            .bind(&note)
            .bind(article_id)
            .execute(&mut **tx)
            .await?;
        tracing::info!(account = %rules.account, ticket = %number, source = %mail.source_key, "{note}");
        if b.first {
            batch.bounced.push(b.account);
        }
    } else if !followup {
        // Queued (or its suppression noted) in this transaction: no ticket without its reply.
        let planned =
            super::outbox::plan_reply(tx, rules, mail, ticket_id, article_id, &number).await?;
        batch.suppressed.extend(planned);
    }
    if let Some(key) = msg_key {
        insert_messages(tx, &rules.account, &[(key, ticket_id, article_id)], now).await?;
        batch.owners.insert(
            key.to_string(),
            Owner {
                article_id,
                number: number.clone(),
            },
        );
    }
    batch
        .stored
        .entry(sha.to_string())
        .or_insert_with(|| number.clone());
    let outcome = if followup {
        Outcome::FollowUp { number }
    } else {
        Outcome::NewTicket { number }
    };
    Ok((outcome, Some(article_id)))
}

/// Records that `rules.account` received another copy of the message stored as `article_id`.
async fn record_copy(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    mail: &Incoming,
    article_id: i64,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO message_copies (article_id, account, source_key, received_at, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(article_id)
    .bind(&rules.account)
    .bind(&mail.source_key)
    .bind(mail.received_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which of these message keys are stored already, and where.
async fn message_owners(
    tx: &mut Transaction<'_, Any>,
    keys: &[Option<String>],
) -> Result<HashMap<String, Owner>, StoreError> {
    let keys: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
    let mut out = HashMap::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            "SELECT m.message_key, m.article_id, t.number FROM messages m \
             JOIN tickets t ON t.id = m.ticket_id WHERE m.message_key IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(")");
        let rows: Vec<(String, i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (key, article_id, number) in rows {
            out.insert(key, Owner { article_id, number });
        }
    }
    Ok(out)
}

/// Remembers where messages are stored: (message key, ticket id, article id). The primary key
/// refuses a second owner, so a bug here fails the batch instead of opening a second ticket.
async fn insert_messages(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, i64, i64)],
    now: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(IN_CHUNK / 5) {
        let mut q = SqlBuilder::new(
            "INSERT INTO messages (message_key, ticket_id, article_id, account, created_at) ",
        );
        q.push_values(chunk, |b, (key, ticket_id, article_id)| {
            b.push_bind(*key)
                .push_bind(*ticket_id)
                .push_bind(*article_id)
                .push_bind(account)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A mail that opens a ticket with nothing to look up: no references to thread by, no ticket
/// tag in the subject, no test marker, no returned mail (a bounce), and an account without automatic replies (planning a
/// reply reads and writes per mail). These are written in bulk.
fn opens_plain_ticket(rules: &TicketRules, parsed: &ParsedMail) -> bool {
    rules.reply.is_none()
        && parsed.in_reply_to.is_empty()
        && parsed.references.is_empty()
        && parsed.automation.test_marker.is_none()
        && parsed.automation.returned_message_id.is_none()
        && crate::ingest::thread::ticket_number_in_subject(&parsed.subject, &rules.subject_tag)
            .is_none()
}

/// Rows per multi-row INSERT of plain tickets (articles bind 20 values a row).
const PLAIN_CHUNK: usize = 100;

struct PlainTicket<'a> {
    mail: &'a Incoming,
    sha: &'a str,
    msg_key: Option<&'a str>,
    ticket_id: i64,
    article_id: i64,
    number: String,
    now: String,
}

/// Plain new tickets waiting for their multi-row INSERT. Their row ids are assigned here: the
/// batch's transaction holds the store's write lock (`Store::write_tx`), so nobody else takes
/// an id.
#[derive(Default)]
struct PlainTickets<'a> {
    pending: Vec<PlainTicket<'a>>,
    next_ticket: i64,
    next_article: i64,
    /// False after a ticket or article was written another way: read the next ids again.
    ids_known: bool,
}

impl<'a> PlainTickets<'a> {
    async fn next_ids(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(i64, i64), StoreError> {
        if !self.ids_known {
            // The id rule of `create_ticket`: AUTOINCREMENT takes max(rowid, sqlite_sequence) + 1;
            // rows are never deleted, so MAX(id) + 1 is the id it would give, and explicit ids
            // keep sqlite_sequence in step. PostgreSQL's tickets and articles have no sequence.
            let (t, a): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM tickets), (SELECT COALESCE(MAX(id), 0) FROM articles)",
            )
            .fetch_one(&mut **tx)
            .await?;
            self.next_ticket = t + 1;
            self.next_article = a + 1;
            self.ids_known = true;
        }
        let ids = (self.next_ticket, self.next_article);
        self.next_ticket += 1;
        self.next_article += 1;
        Ok(ids)
    }

    async fn flush(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        rules: &TicketRules,
    ) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut q = SqlBuilder::new(
            "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, customer_name, created_at, updated_at) ",
        );
        q.push_values(&pending, |b, t| {
            let p = &t.mail.parsed;
            let who = customer(p, rules.customer);
            b.push_bind(t.ticket_id)
                .push_bind(t.number.as_str())
                .push_bind(rules.account.as_str())
                .push_bind(rules.ticket_type.as_str())
                .push_bind(rules.ticket_status.as_str())
                .push_bind(p.subject.as_str())
                .push_bind(who.email)
                .push_bind(who.name)
                .push_bind(t.now.as_str())
                .push_bind(t.now.as_str());
        });
        q.build().execute(&mut **tx).await?;
        let mut q = SqlBuilder::new(
            "INSERT INTO articles (id, ticket_id, account, source_key, message_id, in_reply_to, refs, from_email, from_name, \
             to_addrs, cc_addrs, subject, text_body, html_body, raw, raw_sha256, size, parse_problem, is_followup, \
             received_at, created_at) ",
        );
        q.push_values(&pending, |b, t| {
            let (mail, p) = (t.mail, &t.mail.parsed);
            b.push_bind(t.article_id)
                .push_bind(t.ticket_id)
                .push_bind(rules.account.as_str())
                .push_bind(mail.source_key.as_str())
                .push_bind(p.message_id.as_str())
                .push_bind("")
                .push_bind("")
                .push_bind(p.from_email.as_str())
                .push_bind(p.from_name.as_str())
                .push_bind(p.to.as_str())
                .push_bind(p.cc.as_str())
                .push_bind(p.subject.as_str())
                .push_bind(p.text.as_str())
                .push_bind(p.html.as_str())
                .push_bind(mail.raw.as_slice())
                .push_bind(t.sha)
                .push_bind(mail.raw.len() as i64)
                .push_bind(p.parse_problem.as_deref().unwrap_or(""))
                .push_bind(0i64)
                .push_bind(
                    mail.received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
                .push_bind(t.now.as_str());
        });
        q.build().execute(&mut **tx).await?;
        for t in &pending {
            insert_attachments(tx, t.article_id, &t.mail.parsed).await?;
        }
        let messages: Vec<(&str, i64, i64)> = pending
            .iter()
            .filter_map(|t| t.msg_key.map(|k| (k, t.ticket_id, t.article_id)))
            .collect();
        if let Some(first) = pending.first() {
            insert_messages(tx, &rules.account, &messages, &first.now).await?;
        }
        Ok(())
    }
}

/// Bound parameters per `IN (...)` list or multi-row insert, well below SQLite's limit.
const IN_CHUNK: usize = 500;

/// Which of `keys` are already in `processed` for the account.
async fn processed_among(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new("SELECT source_key FROM processed WHERE account = ");
        q.push_bind(account).push(" AND source_key IN (");
        q.push_list(chunk.iter().copied());
        q.push(")");
        let rows: Vec<(String,)> = q.build_query_as().fetch_all(&mut **tx).await?;
        out.extend(rows.into_iter().map(|(k,)| k));
    }
    Ok(out)
}

/// SHA-256 → ticket number of the account's stored mails with these exact bytes (the oldest
/// article wins, as the index order of a single lookup would give).
async fn stored_numbers(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    shas: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for chunk in shas.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            "SELECT a.raw_sha256, t.number FROM articles a JOIN tickets t ON t.id = a.ticket_id \
             WHERE a.account = ",
        );
        q.push_bind(account).push(" AND a.raw_sha256 IN (");
        q.push_list(chunk.iter().map(|sha| sha.as_str()));
        q.push(") ORDER BY a.id");
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (sha, number) in rows {
            out.entry(sha).or_insert(number);
        }
    }
    Ok(out)
}

/// One `processed` row per stored mail: (source key, outcome label, article id, time).
async fn insert_processed(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, &str, Option<i64>, String)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(IN_CHUNK / 5) {
        let mut q = SqlBuilder::new(
            "INSERT INTO processed (account, source_key, outcome, article_id, created_at) ",
        );
        q.push_values(chunk, |b, (key, outcome, article_id, now)| {
            b.push_bind(account)
                .push_bind(*key)
                .push_bind(*outcome)
                .push_bind(*article_id)
                .push_bind(now.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A follow-up names a stored Message-ID (ours or a customer's) in In-Reply-To/References, or
/// carries `[<subject_tag><number>]` of an existing ticket in its subject.
async fn find_thread(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    parsed: &ParsedMail,
) -> Result<Option<(i64, String)>, StoreError> {
    // Most recent reference first: In-Reply-To, then References from the end.
    let ids = parsed
        .in_reply_to
        .iter()
        .chain(parsed.references.iter().rev());
    for id in ids {
        let hit: Option<(i64, String)> = sqlx::query_as(
            // Our replies first: a Message-ID we sent belongs to its reply's ticket, even if a
            // stripped echo of that reply was stored as an article of another one.
            "SELECT t.id, t.number FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = $1 \
             UNION ALL \
             SELECT t.id, t.number FROM articles a JOIN tickets t ON t.id = a.ticket_id WHERE a.message_id = $2 \
             LIMIT 1",
        )
        .bind(id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        if hit.is_some() {
            return Ok(hit);
        }
    }
    if let Some(number) =
        crate::ingest::thread::ticket_number_in_subject(&parsed.subject, &rules.subject_tag)
    {
        let hit: Option<(i64, String)> =
            sqlx::query_as("SELECT id, number FROM tickets WHERE number = $1")
                .bind(number)
                .fetch_optional(&mut **tx)
                .await?;
        return Ok(hit);
    }
    Ok(None)
}

async fn create_ticket(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    parsed: &ParsedMail,
    now: &str,
) -> Result<(i64, String), StoreError> {
    let who = customer(parsed, rules.customer);
    // Numbers follow the row id, offset so they look like ticket numbers rather than row
    // counts. The id is the next after the highest (rows are never deleted, so this is the id
    // SQLite's AUTOINCREMENT would give), taken under the store's write lock (see
    // `Store::write_tx`): explicit, so one statement serves both backends.
    let row: (i64, String) = sqlx::query_as(
        "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, customer_name, created_at, updated_at) \
         SELECT n.id, CAST(n.id + 10000 AS TEXT), $1, $2, $3, $4, $5, $6, $7, $8 \
         FROM (SELECT COALESCE(MAX(id), 0) + 1 AS id FROM tickets) n \
         RETURNING id, number",
    )
    .bind(&rules.account)
    .bind(&rules.ticket_type)
    .bind(&rules.ticket_status)
    .bind(&parsed.subject)
    .bind(who.email)
    .bind(who.name)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

async fn insert_article(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    mail: &Incoming,
    ticket_id: i64,
    sha: &str,
    followup: bool,
    now: &str,
) -> Result<i64, StoreError> {
    let p = &mail.parsed;
    let id: i64 = sqlx::query_scalar(
        // The id rule of `create_ticket`.
        "INSERT INTO articles (id, ticket_id, account, source_key, message_id, in_reply_to, refs, from_email, from_name, \
         to_addrs, cc_addrs, subject, text_body, html_body, raw, raw_sha256, size, parse_problem, is_followup, \
         received_at, created_at) SELECT n.id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20 \
         FROM (SELECT COALESCE(MAX(id), 0) + 1 AS id FROM articles) n RETURNING id",
    )
    .bind(ticket_id)
    .bind(&rules.account)
    .bind(&mail.source_key)
    .bind(&p.message_id)
    .bind(p.in_reply_to.join(" "))
    .bind(p.references.join(" "))
    .bind(&p.from_email)
    .bind(&p.from_name)
    .bind(&p.to)
    .bind(&p.cc)
    .bind(&p.subject)
    .bind(&p.text)
    .bind(&p.html)
    .bind(&mail.raw)
    .bind(sha)
    .bind(mail.raw.len() as i64)
    .bind(p.parse_problem.as_deref().unwrap_or(""))
    .bind(followup as i64)
    .bind(mail.received_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    insert_attachments(tx, id, p).await?;
    Ok(id)
}

async fn insert_attachments(
    tx: &mut Transaction<'_, Any>,
    article_id: i64,
    parsed: &ParsedMail,
) -> Result<(), StoreError> {
    for att in &parsed.attachments {
        sqlx::query(
            "INSERT INTO attachments (article_id, filename, content_type, size, data) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(article_id)
        .bind(&att.filename)
        .bind(&att.content_type)
        .bind(att.data.len() as i64)
        .bind(&att.data)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
