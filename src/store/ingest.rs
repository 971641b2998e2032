//! Write side of ingestion: one transaction per batch of mails stores tickets, articles,
//! attachments and the processed source keys together, so "source key recorded" always means
//! "ticket durable".

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use super::message_ids::{insert_message_id_hashes, message_id_hash};
use super::processed::{insert_processed, processed_among, record_disposed};
use super::raw_codec::RawCodec;
use super::sql::IN_CHUNK;
use super::{now_rfc3339, Backend, Prepared, SqlBuilder, Store, StoreError, STORE_ANSWER_WITHIN};
use crate::config::CustomerSource;
use crate::ingest::customer::customer;
pub use crate::ingest::outcome::{Outcome, Recorded, Skipped};
use crate::ingest::parse::ParsedMail;
use crate::ingest::same_message::{content_fingerprint, MessageKey};

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

#[cfg(test)]
impl TicketRules {
    /// [`TicketRules::without_replies`] with automatic replies, as a shop at `shop.test`
    /// configures them: at most 2 per recipient and hour, none to mails older than a day.
    pub(crate) fn with_test_replies(account: &str) -> TicketRules {
        TicketRules {
            reply: Some(crate::reply::ReplyPolicy {
                account_email: format!("{account}@shop.test"),
                sender_name: Some("Shop".into()),
                reply_to: None,
                subject_template: crate::reply::compose::DEFAULT_SUBJECT.into(),
                body_template: crate::reply::compose::DEFAULT_BODY.into(),
                subject_tag: "Ticket#".into(),
                ticket_type: "question".into(),
                ticket_status: "open".into(),
                limit: 2,
                max_age: std::time::Duration::from_secs(24 * 3600),
                message_id_domain: "tickets.shop.test".into(),
                own_addresses: vec![format!("{account}@shop.test")],
            }),
            ..TicketRules::without_replies(account)
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
    /// The lookups that are the same for every mail (already processed? same bytes stored
    /// before? which tickets do its references belong to?) and the `processed` rows are one
    /// statement per chunk of the batch, and so are the tickets and articles of mails with
    /// nothing else to look up (see `bulk_route`); only the rest is written one by one. Each
    /// statement is a round trip to SQLite's worker thread, and these round trips were most of
    /// a backlog's time.
    ///
    /// A panic while handling a mail (a bug in parsing, threading, reply rules or building the
    /// rows) is caught here and returned as [`StoreError::Panicked`]: the transaction rolls back
    /// and the caller retries mail by mail, where it counts as that mail's failure.
    pub async fn store_batch(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
    ) -> Result<Vec<Outcome>, StoreError> {
        self.store_prepared(rules, mails, &Prepared::of(mails), &[])
            .await
    }

    /// [`store_batch`](Self::store_batch) with the lock-free part already done (see
    /// [`Prepared`]): `prepared` must be `Prepared::of(mails)`.
    ///
    /// `disposed`: source keys of the account's mails that have left the server since the last
    /// write, recorded in the same transaction as [`mark_disposed`](Self::mark_disposed)
    /// records them. A pass disposes of one batch while it stores the next, so this saves a
    /// commit, and with it an fsync, per batch. If the batch rolls back, so do these records:
    /// the caller records them on their own then.
    pub async fn store_prepared(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
        prepared: &Prepared,
        disposed: &[String],
    ) -> Result<Vec<Outcome>, StoreError> {
        let work =
            std::panic::AssertUnwindSafe(self.store_batch_tx(rules, mails, prepared, disposed));
        // Bounded like every call of the daemon's loops (see `bound`): a batch whose commit
        // got no answer may or may not have been committed, which the next pass finds out from
        // the processed keys, as after a crash.
        let caught = futures::FutureExt::catch_unwind(work);
        match self.answer_within(STORE_ANSWER_WITHIN, caught).await? {
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
        prepared: &Prepared,
        disposed: &[String],
    ) -> Result<Vec<Outcome>, StoreError> {
        assert_eq!(prepared.len(), mails.len(), "prepared for another batch");
        let Prepared {
            shas,
            packed,
            msg_keys,
        } = prepared;
        let mut tx = self.write_tx().await?;
        let keys: Vec<&str> = mails.iter().map(|m| m.source_key.as_str()).collect();
        let mut seen = processed_among(&mut tx, &rules.account, &keys).await?;
        // Mails with a message key are found again by it (in `owners`, below); only the others
        // by their bytes (see migration 0011).
        let keyless: Vec<&str> = shas
            .iter()
            .zip(msg_keys)
            .filter(|(_, key)| key.is_none())
            .map(|(sha, _)| sha.as_str())
            .collect();
        let mut stored = stored_numbers(&mut tx, &rules.account, &keyless).await?;
        // Read inside this write transaction (it holds the write lock): no other poller can store a copy
        // between this lookup and our insert, so "the first account to store it opens it" is exact.
        let mut owners = message_owners(&mut tx, &rules.account, msg_keys).await?;
        let mut threads = if rules.reply.is_none() {
            known_threads(&mut tx, mails).await?
        } else {
            HashMap::new()
        };
        let mut bounced = Vec::new();
        let mut outcomes = Vec::with_capacity(mails.len());
        let mut rows = Vec::with_capacity(mails.len());
        let mut suppressed = Vec::new();
        // New tickets and follow-ups with nothing left to look up (see `bulk_route`) are
        // collected and written with multi-row INSERTs; anything else first flushes them, so it
        // sees every earlier mail of the batch exactly as if all had been written one by one.
        let mut bulk = BulkArticles::default();
        for (((mail, sha), msg_key), packed) in mails.iter().zip(shas).zip(msg_keys).zip(packed) {
            // A key listed twice in one batch counts once, as a key stored by an earlier batch.
            if !seen.insert(mail.source_key.clone()) {
                outcomes.push(Outcome::AlreadyProcessed);
                continue;
            }
            crate::ingest::panic_hook::check(&mail.parsed.subject);
            let now = now_rfc3339();
            let owned = msg_key
                .as_ref()
                .is_some_and(|k| owners.contains_key(&k.key));
            let route = if stored.contains_key(sha) || owned {
                None
            } else {
                bulk_route(rules, &mail.parsed, &threads)
            };
            if let Some(route) = route {
                let (ticket_id, number, opens_ticket) = match route {
                    BulkRoute::NewTicket => {
                        let ticket_id = bulk.next_ticket_id(&mut tx).await?;
                        // The number rule of `create_ticket`: row id + 10000.
                        (ticket_id, (ticket_id + 10000).to_string(), true)
                    }
                    BulkRoute::FollowUp(thread) => (thread.ticket_id, thread.number, false),
                };
                let article_id = bulk.next_article_id(&mut tx).await?;
                match msg_key {
                    Some(key) => {
                        owners.insert(
                            key.key.clone(),
                            Owner {
                                article_id,
                                number: number.clone(),
                            },
                        );
                    }
                    None => {
                        stored.insert(sha.clone(), number.clone());
                    }
                }
                remember_thread(&mut threads, &mail.parsed, ticket_id, &number);
                let outcome = if opens_ticket {
                    Outcome::NewTicket {
                        number: number.clone(),
                    }
                } else {
                    Outcome::FollowUp {
                        number: number.clone(),
                    }
                };
                rows.push((
                    mail.source_key.as_str(),
                    outcome.label(),
                    Some(article_id),
                    now.clone(),
                ));
                bulk.pending.push(BulkArticle {
                    mail,
                    sha,
                    packed,
                    msg_key: msg_key.as_ref().map(|k| k.key.as_str()),
                    ticket_id,
                    article_id,
                    number,
                    opens_ticket,
                    now,
                });
                if bulk.pending.len() >= BULK_CHUNK {
                    bulk.flush(&mut tx, rules).await?;
                }
                outcomes.push(outcome);
                continue;
            }
            bulk.flush(&mut tx, rules).await?;
            bulk.ids_known = false;
            let mut batch = BatchState {
                stored: &mut stored,
                owners: &mut owners,
                suppressed: &mut suppressed,
                bounced: &mut bounced,
            };
            let (outcome, article) = store_one(
                &mut tx,
                rules,
                StoreOne {
                    mail,
                    sha,
                    packed,
                    msg_key: msg_key.as_ref().map(|k| k.key.as_str()),
                },
                &mut batch,
                &now,
            )
            .await?;
            if let (Some(article), Outcome::NewTicket { number } | Outcome::FollowUp { number }) =
                (article, &outcome)
            {
                remember_thread(&mut threads, &mail.parsed, article.ticket_id, number);
            }
            rows.push((
                mail.source_key.as_str(),
                outcome.label(),
                article.map(|a| a.article_id),
                now,
            ));
            outcomes.push(outcome);
        }
        bulk.flush(&mut tx, rules).await?;
        insert_processed(&mut tx, &rules.account, &rows).await?;
        record_disposed(&mut tx, &rules.account, disposed).await?;
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

/// A mail on its way through [`store_one`], with what the batch computed for it.
struct StoreOne<'m> {
    mail: &'m Incoming,
    sha: &'m str,
    /// The raw bytes as stored (see `RawCodec`).
    packed: &'m [u8],
    msg_key: Option<&'m str>,
}

/// Where [`store_one`] wrote a mail's article.
#[derive(Debug, Clone, Copy)]
struct StoredArticle {
    ticket_id: i64,
    article_id: i64,
}

/// Stores one mail that is not processed yet.
async fn store_one(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    one: StoreOne<'_>,
    batch: &mut BatchState<'_>,
    now: &str,
) -> Result<(Outcome, Option<StoredArticle>), StoreError> {
    let StoreOne {
        mail,
        sha,
        packed,
        msg_key,
    } = one;
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
    let row = ArticleRow {
        id: next_article_id(tx).await?,
        ticket_id,
        mail,
        sha,
        packed,
        followup,
        now,
    };
    insert_articles(tx, rules, std::slice::from_ref(&row)).await?;
    let article_id = row.id;
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
    match msg_key {
        Some(key) => {
            insert_messages(tx, &rules.account, &[(key, ticket_id, article_id)], now).await?;
            batch.owners.insert(
                key.to_string(),
                Owner {
                    article_id,
                    number: number.clone(),
                },
            );
        }
        None => {
            batch
                .stored
                .entry(sha.to_string())
                .or_insert_with(|| number.clone());
        }
    }
    let outcome = if followup {
        Outcome::FollowUp { number }
    } else {
        Outcome::NewTicket { number }
    };
    Ok((
        outcome,
        Some(StoredArticle {
            ticket_id,
            article_id,
        }),
    ))
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
        "INSERT INTO message_copies (article_id, account, source_key, received_at, created_at, \
         content_compared) VALUES ($1, $2, $3, $4, $5, 1)",
    )
    .bind(article_id)
    .bind(&rules.account)
    .bind(&mail.source_key)
    .bind(
        mail.received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which of these messages are stored already, and where: by their key, or, for a message a
/// store recorded before migration 0014 (without its content), by that earlier key when the
/// stored mail has the same content (see `ingest::same_message`).
async fn message_owners(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    keys: &[Option<MessageKey>],
) -> Result<HashMap<String, Owner>, StoreError> {
    let keys: Vec<&MessageKey> = keys.iter().flatten().collect();
    let mut out = owners_by_key(tx, keys.iter().map(|k| k.key.as_str())).await?;
    let unknown: Vec<&MessageKey> = keys
        .into_iter()
        .filter(|k| !out.contains_key(&k.key))
        .collect();
    let earlier = owners_by_key(tx, unknown.iter().map(|k| k.without_content.as_str())).await?;
    for key in unknown {
        let Some(owner) = earlier.get(&key.without_content) else {
            continue;
        };
        match super::raw::verified_raw(&mut **tx, owner.article_id, &owner.number, 0).await {
            Ok(raw) if content_fingerprint(&raw) == key.content => {
                out.insert(key.key.clone(), owner.clone());
            }
            Ok(_) => tracing::info!(
                account,
                ticket = %owner.number,
                message = %key.without_content,
                "a mail reuses the sender and Message-ID of a mail stored earlier, with other \
                 content: it is a mail of its own, not a copy"
            ),
            Err(super::ExportError::Store(e)) => return Err(e),
            // Damaged or unreadable: not known to be the same mail, so it is kept as its own.
            Err(e) => tracing::warn!(
                account,
                ticket = %owner.number,
                error = %e,
                "could not compare a mail with the stored mail of the same sender and \
                 Message-ID: it is stored as a mail of its own"
            ),
        }
    }
    Ok(out)
}

/// The owners of these message keys, by key.
async fn owners_by_key<'k>(
    tx: &mut Transaction<'_, Any>,
    keys: impl Iterator<Item = &'k str>,
) -> Result<HashMap<String, Owner>, StoreError> {
    let keys: Vec<&str> = keys.collect();
    let mut out = HashMap::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
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
pub(super) async fn insert_messages(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, i64, i64)],
    now: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(IN_CHUNK / 5) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
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

/// A ticket a Message-ID belongs to (see [`find_thread`]).
#[derive(Debug, Clone)]
struct Thread {
    ticket_id: i64,
    number: String,
}

/// How a mail with nothing left to look up is written in bulk.
enum BulkRoute {
    NewTicket,
    FollowUp(Thread),
}

/// Whether a mail (not stored before, not a copy of a stored message) can be written in bulk,
/// and how. Not: test markers, returned mail (a bounce), a ticket tag in the subject without a
/// known reference (each looks something up or writes elsewhere), and any mail of an account with
/// automatic replies (planning a reply reads and writes per mail). `threads` holds every
/// Message-ID this batch's mails refer to that is stored, and the batch's own mails so far.
fn bulk_route(
    rules: &TicketRules,
    parsed: &ParsedMail,
    threads: &HashMap<String, Thread>,
) -> Option<BulkRoute> {
    if rules.reply.is_some()
        || parsed.automation.test_marker.is_some()
        || parsed.automation.returned_message_id.is_some()
    {
        return None;
    }
    // The order of `find_thread`: references first, the subject tag only when none is known.
    if let Some(thread) = referenced_ids(parsed).find_map(|id| threads.get(id)) {
        return Some(BulkRoute::FollowUp(thread.clone()));
    }
    crate::ingest::thread::ticket_number_in_subject(&parsed.subject, &rules.subject_tag)
        .is_none()
        .then_some(BulkRoute::NewTicket)
}

/// The Message-IDs a mail refers to, most recent first: In-Reply-To, then References from the end.
fn referenced_ids(parsed: &ParsedMail) -> impl Iterator<Item = &String> {
    parsed
        .in_reply_to
        .iter()
        .chain(parsed.references.iter().rev())
}

/// The stored tickets of every Message-ID these mails refer to: one query per chunk instead of
/// one per reference. Our replies win over articles, and the oldest article over later ones, as
/// in [`find_thread`].
async fn known_threads(
    tx: &mut Transaction<'_, Any>,
    mails: &[Incoming],
) -> Result<HashMap<String, Thread>, StoreError> {
    let wanted: HashSet<&str> = mails
        .iter()
        .flat_map(|m| referenced_ids(&m.parsed))
        .map(String::as_str)
        .collect();
    let ids: Vec<&str> = wanted.iter().copied().collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "SELECT o.message_id, t.id, t.number FROM outbox o JOIN tickets t ON t.id = o.ticket_id \
             WHERE o.message_id IN (",
        );
        q.push_list(chunk.iter().copied());
        q.push(") ORDER BY o.id");
        let rows: Vec<(String, i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (id, ticket_id, number) in rows {
            out.entry(id).or_insert(Thread { ticket_id, number });
        }
    }
    for chunk in ids.chunks(IN_CHUNK) {
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
        for (id, ticket_id, number) in rows {
            if wanted.contains(id.as_str()) {
                out.entry(id).or_insert(Thread { ticket_id, number });
            }
        }
    }
    Ok(out)
}

/// A mail of this batch stored as an article of `ticket_id`: later mails of the batch that
/// refer to its Message-ID join that ticket (unless an older article has the same id).
fn remember_thread(
    threads: &mut HashMap<String, Thread>,
    parsed: &ParsedMail,
    ticket_id: i64,
    number: &str,
) {
    if !parsed.message_id.is_empty() {
        threads
            .entry(parsed.message_id.clone())
            .or_insert_with(|| Thread {
                ticket_id,
                number: number.to_string(),
            });
    }
}

/// Articles per multi-row INSERT in bulk: a whole batch (`BATCH_MAILS` in source::pass) at 21
/// bound values a row, 10,500 values, under PostgreSQL's 65,535 and SQLite's 32,766. One
/// statement per batch also means one new segment of SQLite's full-text index per batch (FTS5
/// writes one at every statement that opens a savepoint), so less of the index's merging: with
/// 100 rows a statement the 10,000-mail backlog took 3.6-3.9 s, with 500 3.3-3.5 s, and into a
/// store of 100,000 articles 5.8-6.2 s against 5.0 s.
const BULK_CHUNK: usize = 500;

struct BulkArticle<'a> {
    mail: &'a Incoming,
    sha: &'a str,
    packed: &'a [u8],
    msg_key: Option<&'a str>,
    ticket_id: i64,
    article_id: i64,
    number: String,
    /// True: the mail opens its ticket (the ticket row is written with it); false: a follow-up.
    opens_ticket: bool,
    now: String,
}

/// Articles waiting for their multi-row INSERT. Their row ids are assigned here: the batch's
/// transaction holds the store's write lock (`Store::write_tx`), so nobody else takes
/// an id.
#[derive(Default)]
struct BulkArticles<'a> {
    pending: Vec<BulkArticle<'a>>,
    next_ticket: i64,
    next_article: i64,
    /// False after a ticket or article was written another way: read the next ids again.
    ids_known: bool,
}

impl<'a> BulkArticles<'a> {
    async fn read_ids(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), StoreError> {
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
        Ok(())
    }

    async fn next_ticket_id(&mut self, tx: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
        self.read_ids(tx).await?;
        self.next_ticket += 1;
        Ok(self.next_ticket - 1)
    }

    async fn next_article_id(&mut self, tx: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
        self.read_ids(tx).await?;
        self.next_article += 1;
        Ok(self.next_article - 1)
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
        let opening: Vec<&BulkArticle> = pending.iter().filter(|a| a.opens_ticket).collect();
        if !opening.is_empty() {
            let mut q = SqlBuilder::new(
                Backend::of(tx),
                "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, customer_name, created_at, updated_at) ",
            );
            q.push_values(&opening, |b, t| {
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
        }
        let rows: Vec<ArticleRow> = pending
            .iter()
            .map(|a| ArticleRow {
                id: a.article_id,
                ticket_id: a.ticket_id,
                mail: a.mail,
                sha: a.sha,
                packed: a.packed,
                followup: !a.opens_ticket,
                now: &a.now,
            })
            .collect();
        insert_articles(tx, rules, &rows).await?;
        touch_tickets(tx, &pending).await?;
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

/// A follow-up updates its ticket's `updated_at` (as the one-by-one path does): one statement
/// for every ticket followed up in this chunk, each to the time of its latest follow-up.
async fn touch_tickets(
    tx: &mut Transaction<'_, Any>,
    pending: &[BulkArticle<'_>],
) -> Result<(), StoreError> {
    let mut latest: HashMap<i64, &str> = HashMap::new();
    for a in pending.iter().filter(|a| !a.opens_ticket) {
        latest.insert(a.ticket_id, &a.now);
    }
    let latest: Vec<(i64, &str)> = latest.into_iter().collect();
    for chunk in latest.chunks(IN_CHUNK / 2) {
        // VALUES names its columns column1, column2 in SQLite and PostgreSQL alike.
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "UPDATE tickets SET updated_at = v.column2 FROM (",
        );
        q.push_values(chunk, |b, (id, at)| {
            b.push_bind(*id).push_bind(*at);
        });
        q.push(") AS v WHERE tickets.id = v.column1");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// What the `raw` and `data` columns of rows written since migration 0009 hold: the bytes are in
/// `raw_mails` and `attachment_contents`.
const NO_BYTES: &[u8] = &[];

/// SHA-256 → ticket number of the account's stored mails without a message key that have these
/// exact bytes (the oldest article wins, as the index order of a single lookup would give).
async fn stored_numbers(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    shas: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for chunk in shas.chunks(IN_CHUNK) {
        let mut q = stored_numbers_query(Backend::of(tx), account, chunk);
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (sha, number) in rows {
            out.entry(sha).or_insert(number);
        }
    }
    Ok(out)
}

fn stored_numbers_query<'a>(
    backend: Backend,
    account: &'a str,
    shas: &'a [&'a str],
) -> SqlBuilder<'a> {
    let mut q = SqlBuilder::new(
        backend,
        "SELECT a.raw_sha256, t.number FROM articles a JOIN tickets t ON t.id = a.ticket_id \
         WHERE a.account = ",
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

/// A follow-up names a stored Message-ID (ours or a customer's) in In-Reply-To/References, or
/// carries `[<subject_tag><number>]` of an existing ticket in its subject.
async fn find_thread(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    parsed: &ParsedMail,
) -> Result<Option<(i64, String)>, StoreError> {
    for id in referenced_ids(parsed) {
        let hit: Option<(i64, String)> = sqlx::query_as(
            // Our replies first: a Message-ID we sent belongs to its reply's ticket, even if a
            // stripped echo of that reply was stored as an article of another one.
            "SELECT t.id, t.number FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = $1 \
             UNION ALL \
             SELECT t.id, t.number FROM message_id_hashes h JOIN articles a ON a.id = h.article_id \
             JOIN tickets t ON t.id = a.ticket_id WHERE h.hash = $2 AND a.message_id = $3 \
             LIMIT 1",
        )
        .bind(id)
        .bind(message_id_hash(id))
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

/// The id rule of `create_ticket` for an article written on its own: the next after the
/// highest, taken under the write lock.
async fn next_article_id(tx: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM articles")
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

/// The values of one article row, however it is written.
struct ArticleRow<'a> {
    /// Assigned by the caller under the write lock (see `next_article_id`).
    id: i64,
    ticket_id: i64,
    mail: &'a Incoming,
    sha: &'a str,
    /// The raw bytes as stored (see `RawCodec`).
    packed: &'a [u8],
    followup: bool,
    now: &'a str,
}

/// Writes articles with their raw mail and attachments.
async fn insert_articles(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    rows: &[ArticleRow<'_>],
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(
        Backend::of(tx),
        "INSERT INTO articles (id, ticket_id, account, source_key, message_id, in_reply_to, refs, from_email, from_name, \
         to_addrs, cc_addrs, subject, text_body, html_body, raw, raw_sha256, size, parse_problem, is_followup, \
         received_at, created_at) ",
    );
    q.push_values(rows, |b, r| {
        let (mail, p) = (r.mail, &r.mail.parsed);
        b.push_bind(r.id)
            .push_bind(r.ticket_id)
            .push_bind(rules.account.as_str())
            .push_bind(mail.source_key.as_str())
            .push_bind(p.message_id.as_str())
            .push_bind(p.in_reply_to.join(" "))
            .push_bind(p.references.join(" "))
            .push_bind(p.from_email.as_str())
            .push_bind(p.from_name.as_str())
            .push_bind(p.to.as_str())
            .push_bind(p.cc.as_str())
            .push_bind(p.subject.as_str())
            .push_bind(p.text.as_str())
            .push_bind(p.html.as_str())
            // The bytes live in raw_mails (migration 0009); the column stays for older rows.
            .push_bind(NO_BYTES)
            .push_bind(r.sha)
            .push_bind(mail.raw.len() as i64)
            .push_bind(p.parse_problem.as_deref().unwrap_or(""))
            .push_bind(i64::from(r.followup))
            .push_bind(
                mail.received_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .push_bind(r.now);
    });
    q.build().execute(&mut **tx).await?;
    insert_message_id_hashes(
        tx,
        rows.iter()
            .map(|r| (r.id, r.mail.parsed.message_id.as_str())),
    )
    .await?;
    let packed: Vec<(i64, &[u8])> = rows.iter().map(|r| (r.id, r.packed)).collect();
    insert_raw_mails(tx, &packed).await?;
    for r in rows {
        insert_attachments(tx, r.id, &r.mail.parsed).await?;
    }
    Ok(())
}

/// The stored raw mail of new articles: (article id, bytes encoded by `RawCodec::CURRENT`).
pub(super) async fn insert_raw_mails(
    tx: &mut Transaction<'_, Any>,
    rows: &[(i64, &[u8])],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(IN_CHUNK / 3) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO raw_mails (article_id, codec, data) ",
        );
        q.push_values(chunk, |b, (article_id, data)| {
            b.push_bind(*article_id)
                .push_bind(RawCodec::CURRENT.label())
                .push_bind(*data);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Attachment rows of an article; their decoded bytes go to `attachment_contents`, once per
/// distinct SHA-256 (the same logo in every mail is stored once).
async fn insert_attachments(
    tx: &mut Transaction<'_, Any>,
    article_id: i64,
    parsed: &ParsedMail,
) -> Result<(), StoreError> {
    for att in &parsed.attachments {
        let sha = sha256_hex(&att.data);
        insert_attachment_content(tx, &sha, &att.data).await?;
        sqlx::query(
            "INSERT INTO attachments (article_id, filename, content_type, size, data, content_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(article_id)
        .bind(&att.filename)
        .bind(&att.content_type)
        .bind(att.data.len() as i64)
        .bind(NO_BYTES)
        .bind(&sha)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Stores decoded attachment bytes unless the same content is stored already.
pub(super) async fn insert_attachment_content(
    tx: &mut Transaction<'_, Any>,
    sha: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO attachment_contents (sha256, data) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha)
    .bind(data)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With any other spelling of the predicate SQLite would scan every article of the account
    /// for each batch: correct, and slower with every year of mail.
    #[tokio::test]
    async fn finding_the_same_bytes_again_reads_the_index_of_mails_without_a_message_key() {
        let store = Store::open_in_memory().await.unwrap();
        let shas = ["0".repeat(64), "f".repeat(64)];
        let shas: Vec<&str> = shas.iter().map(String::as_str).collect();
        let q = stored_numbers_query(Backend::Sqlite, "support", &shas);
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
