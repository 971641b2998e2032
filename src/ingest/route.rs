//! What a mail becomes, decided in one place.
//!
//! [`route`] is a pure function: a mail, the account's [`TicketRules`] and what the store
//! [`Known`] about the batch in, a [`Decision`] out. It reads no database, writes nothing and
//! needs no clock of its own (the batch's time is part of [`Known`]); the only thing it draws
//! that is not in its arguments is the random part of a reply's Message-ID. The store looks up
//! everything a batch needs in one go (`store::lookup`), routes each mail in order, and carries
//! the decisions out through one write path (`store::write`), for one mail or for many.
//!
//! A batch is routed mail by mail: [`Known::remember`] adds what each decision creates (its
//! ticket, its Message-ID, its queued reply, its source key), so a later mail of the same batch
//! sees an earlier one exactly as if that one had been stored by a batch before. That is what
//! makes one batch of many mails and many batches of one mail give the same store (see the
//! property test in `store/batch_equivalence.rs`).
//!
//! The order of the questions is the order of the rules in docs/replies.md:
//! 1. a source key handled before → nothing (it is disposed of again, if it is still there);
//!    a source key whose mail is stored by its header alone ([`Known::held`]) and that now
//!    comes whole → an article of the same ticket that completes the header's article, with no
//!    reply (or, if another account stored the whole message meanwhile, a copy of that);
//! 2. a genuine test-fetch mail → no ticket (a mail too large to fetch is never one);
//! 3. the same bytes stored before for this account (a mail without a message key, see
//!    `same_message`) → nothing new;
//! 4. another copy of a stored message (same sender, Message-ID and content) → a copy record;
//! 5. a delivery report of one of our replies → an article of that reply's ticket, no reply;
//! 6. a mail that refers to a stored Message-ID (ours first), or tags a known ticket number in its
//!    subject → a follow-up, no reply;
//! 7. anything else → a new ticket, with the reply the account's policy allows. The first
//!    `[[account.rule]]` that matches sets its status, type or `auto_reply`; a mail older than
//!    `old_mail_age` gets `old_mail_status` (unless a rule set one) and no reply. Rules never
//!    change whether a mail is kept.
//!
//! A mail too large to fetch ([`Extent::HeaderOnly`]) comes with its header alone and takes the
//! same questions: it opens a ticket with the usual reply, joins the ticket it answers, or is
//! another copy of a stored header. Which of these it was, its source key is recorded as held by
//! its header (see `Decision::outcome`), so its mail stays on the server until it is fetched whole.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use super::extent::Extent;
use super::incoming::Incoming;
use super::outcome::Outcome;
use super::parse::ParsedMail;
use super::same_message::MessageKey;
use super::source_key::SourceKey;
use super::thread::ticket_number_in_subject;
use super::ticket_rules::TicketRules;
use crate::ingest::reply::rules::{self as reply_rules, Suppression};
use crate::ingest::reply::{compose, ReplyPolicy};

/// The number of the ticket with row id `ticket_id`: the id offset by 10000, so numbers look like
/// ticket numbers rather than row counts. The only place this rule is written down.
pub fn ticket_number(ticket_id: i64) -> String {
    (ticket_id + 10000).to_string()
}

/// A mail as [`route`] sees it: the fetched mail and what the pass computed for it off the lock
/// (see `store::Prepared`).
#[derive(Debug, Clone, Copy)]
pub struct Mail<'a> {
    pub incoming: &'a Incoming,
    /// SHA-256 of the raw bytes, hex.
    pub sha: &'a str,
    /// What tells copies of one message apart (see `same_message`); `None`: the mail is found
    /// again by its bytes only.
    pub msg_key: Option<&'a MessageKey>,
}

/// A stored ticket: its row id and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    pub id: i64,
    pub number: String,
}

/// Where a message is stored: the article of its first copy and that article's ticket number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub article_id: i64,
    pub number: String,
    /// The article holds only the header of a mail too large to fetch.
    pub header_only: bool,
}

/// A mail stored by its header alone, by its source key: the ticket and the article that hold
/// its header (its own, or the one whose copy it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub ticket: TicketRef,
    pub article_id: i64,
}

/// One of our automatic replies, found by its Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    pub ticket: TicketRef,
    /// The article the reply answered.
    pub article_id: i64,
    /// The account that sent it (a delivery report may arrive at another one).
    pub account: String,
    pub recipient: String,
    /// A delivery report for it is stored already.
    pub bounced: bool,
}

/// What the store knows that decides what the mails of a batch become: looked up for the whole
/// batch in one go (`store::lookup`), and kept up to date with the batch's own decisions by
/// [`Known::remember`]. Every map holds only what the batch's mails can ask about.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The batch's time: the rows' times, the age rule and rate limit of replies, a reply's Date.
    pub now: DateTime<Utc>,
    /// Source keys of the account that are handled already.
    pub processed: HashSet<SourceKey>,
    /// Source keys of the account whose mails are stored by their header alone (too large to
    /// fetch), with where the header is. Not in `processed`: the whole mail is still to come.
    pub held: HashMap<SourceKey, Held>,
    /// SHA-256 → where the account's stored mails that have no message key are.
    pub same_bytes: HashMap<String, StoredMessage>,
    /// Message key → where that message is stored.
    pub messages: HashMap<String, StoredMessage>,
    /// Message-ID → our reply with that Message-ID.
    pub replies: HashMap<String, SentReply>,
    /// The Message-IDs among the batch's mails that are our own alerts.
    pub own_alerts: HashSet<String>,
    /// Message-ID → the ticket of the oldest stored article with that Message-ID.
    pub articles: HashMap<String, TicketRef>,
    /// Ticket number → ticket row id, for the numbers tagged in the batch's subjects.
    pub numbers: HashMap<String, i64>,
    /// Recipient (lower case) → replies queued to them within `reply::RATE_WINDOW`.
    pub recent_replies: HashMap<String, u32>,
    /// The row id the next new ticket gets.
    pub next_ticket_id: i64,
    /// The row id the next new article gets.
    pub next_article_id: i64,
}

/// What becomes of one mail. Every variant but [`Decision::AlreadyProcessed`] records the mail's
/// source key, so its mail may leave the server once the batch is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The source key was handled in an earlier pass, or is listed twice in this batch.
    AlreadyProcessed,
    /// A genuine test-fetch mail of this account: disposed of without a ticket.
    TestMail,
    /// One of our own alerts (`[alerts] to` is this account's address): disposed of like a
    /// test mail, never a ticket.
    OwnAlert,
    /// The same bytes are stored for this account already (e.g. the folder's UIDVALIDITY
    /// changed): nothing new is written.
    SameBytes { of: StoredMessage },
    /// Another copy of a stored message (another account got it too, or it came twice): recorded
    /// against that message's article, with no article, ticket or reply of its own.
    Copy { of: StoredMessage },
    /// A new article: of a new ticket, or a follow-up. Boxed: it is by far the largest variant.
    Article(Box<Article>),
}

/// A mail that becomes an article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// The article's row id.
    pub id: i64,
    pub ticket: TicketRef,
    /// `Some`: the mail opens `ticket`, with these attributes; `None`: a follow-up.
    pub opens: Option<NewTicket>,
    /// `Some`: a delivery report of one of our replies; it joins the reply's ticket.
    pub bounce: Option<Bounce>,
    /// The automatic reply of a new ticket on an account that auto-replies.
    pub reply: Option<ReplyPlan>,
    /// The `[[account.rule]]` that matched the mail, as `rule 2 (X-Spam-Flag contains "yes")`.
    pub rule: Option<String>,
    /// `Some(size)`: the mail is too large to fetch (`size` bytes): the article holds its header
    /// alone and the mail stays on the server.
    pub too_large: Option<u64>,
    /// `Some(id)`: the whole mail of the one whose header article `id` holds.
    pub completes: Option<i64>,
}

/// The attributes of a new ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub ticket_type: String,
    pub status: String,
}

/// A delivery report of one of our replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of our reply that came back.
    pub message_id: String,
    pub reply: SentReply,
    /// The first report for this reply: it marks the reply as bounced and notes it on the article
    /// the reply answered. A second one (e.g. from a backup MX) is only stored.
    pub first: bool,
}

/// The automatic reply to a mail that opens a ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyPlan {
    /// Queued in the outbox with the ticket.
    Queue(compose::Reply),
    /// No reply: `reason` is the short name for the `replies_suppressed` metric, `why` the words
    /// for the article's note and the log.
    Suppressed { reason: &'static str, why: String },
}

/// Decides what `mail` becomes, given what is known before it. Pure; see the module head for the
/// order of the rules.
pub fn route(rules: &TicketRules, mail: Mail<'_>, known: &Known) -> Decision {
    let parsed = &mail.incoming.parsed;
    let extent = mail.incoming.extent;
    if known.processed.contains(&mail.incoming.source_key) {
        return Decision::AlreadyProcessed;
    }
    super::panic_hook::check(&parsed.subject);
    if let Some(held) = known.held.get(&mail.incoming.source_key) {
        return match extent {
            // Its header is stored already (the pass does not fetch it so twice).
            Extent::HeaderOnly { .. } => Decision::AlreadyProcessed,
            Extent::Whole => complete(rules, mail, held, known),
        };
    }
    // A test-fetch mail is small; a large mail's header alone cannot make it disappear.
    if extent == Extent::Whole && rules.is_test_mail(parsed) {
        return Decision::TestMail;
    }
    if !parsed.message_id.is_empty() && known.own_alerts.contains(&parsed.message_id) {
        return Decision::OwnAlert;
    }
    if let Some(of) = known.same_bytes.get(mail.sha) {
        return Decision::SameBytes { of: of.clone() };
    }
    if let Some(of) = mail.msg_key.and_then(|k| known.messages.get(&k.key)) {
        return Decision::Copy { of: of.clone() };
    }
    let bounce = parsed
        .automation
        .returned_message_id
        .as_ref()
        .and_then(|id| {
            known.replies.get(id).map(|reply| Bounce {
                message_id: id.clone(),
                reply: reply.clone(),
                first: !reply.bounced,
            })
        });
    let existing = match &bounce {
        Some(b) => Some(b.reply.ticket.clone()),
        None => known.thread_of(rules, parsed),
    };
    let id = known.next_article_id;
    // The first rule that matches; recorded with every article, applied to a new ticket only.
    let rule = rules
        .mail_rules
        .iter()
        .find(|r| r.applies_to(parsed, &mail.incoming.raw));
    let too_large = match extent {
        Extent::Whole => None,
        Extent::HeaderOnly { size } => Some(size),
    };
    Decision::Article(Box::new(match existing {
        Some(ticket) => Article {
            id,
            ticket,
            opens: None,
            bounce,
            reply: None,
            rule: rule.map(ToString::to_string),
            too_large,
            completes: None,
        },
        None => {
            let ticket = TicketRef {
                id: known.next_ticket_id,
                number: ticket_number(known.next_ticket_id),
            };
            let old = rules
                .old_mail
                .as_ref()
                .filter(|old| old.is_old(parsed, mail.incoming.arrived, known.now));
            let reply = rules.reply.as_ref().map(|policy| match (rule, old) {
                (Some(rule), _) if rule.auto_reply == Some(false) => ReplyPlan::Suppressed {
                    reason: "rule",
                    why: format!("{rule} sets auto_reply = false"),
                },
                (_, Some(old)) => ReplyPlan::Suppressed {
                    reason: "old_mail",
                    why: format!(
                        "the mail is older than old_mail_age ({}): old mail gets no reply",
                        humantime::format_duration(old.age)
                    ),
                },
                _ => plan_reply(policy, parsed, &ticket.number, known),
            });
            // A rule's status before the old-mail status: a spam rule knows better.
            let status = rule
                .and_then(|r| r.status.clone())
                .or_else(|| old.map(|o| o.status.clone()))
                .unwrap_or_else(|| rules.ticket_status.clone());
            Article {
                id,
                ticket,
                opens: Some(NewTicket {
                    ticket_type: rule
                        .and_then(|r| r.ticket_type.clone())
                        .unwrap_or_else(|| rules.ticket_type.clone()),
                    status,
                }),
                bounce: None,
                reply,
                rule: rule.map(ToString::to_string),
                too_large,
                completes: None,
            }
        }
    }))
}

/// The whole mail of one held by its header: an article of the header's ticket that completes
/// the header's article, with no reply (the header had the ticket's). Only if another account
/// stored the whole message meanwhile is it a copy, of that one; never a copy of a header,
/// which holds less than this mail (and may hold the same header bytes).
fn complete(rules: &TicketRules, mail: Mail<'_>, held: &Held, known: &Known) -> Decision {
    let whole_elsewhere = mail
        .msg_key
        .and_then(|k| known.messages.get(&k.key))
        .filter(|of| !of.header_only);
    if let Some(of) = whole_elsewhere {
        return Decision::Copy { of: of.clone() };
    }
    let rule = rules
        .mail_rules
        .iter()
        .find(|r| r.applies_to(&mail.incoming.parsed, &mail.incoming.raw));
    Decision::Article(Box::new(Article {
        id: known.next_article_id,
        ticket: held.ticket.clone(),
        opens: None,
        bounce: None,
        reply: None,
        rule: rule.map(ToString::to_string),
        too_large: None,
        completes: Some(held.article_id),
    }))
}

/// The reply to a mail that opens ticket `number`: the header rules of `reply::rules`, then the
/// rate limit, then the message itself.
fn plan_reply(policy: &ReplyPolicy, parsed: &ParsedMail, number: &str, known: &Known) -> ReplyPlan {
    let suppressed = |s: Suppression| ReplyPlan::Suppressed {
        reason: s.reason(),
        why: s.to_string(),
    };
    let sent_by_us: Vec<String> = std::iter::once(&parsed.message_id)
        .chain(&parsed.in_reply_to)
        .chain(&parsed.references)
        .filter(|id| known.replies.contains_key(id.as_str()))
        .cloned()
        .collect();
    let recipient = match reply_rules::check(policy, parsed, known.now, &sent_by_us) {
        Ok(recipient) => recipient,
        Err(reason) => return suppressed(reason),
    };
    // Every queued reply counts, whatever became of it: a queued reply is a reply promised.
    if known.recent_replies.get(&recipient).copied().unwrap_or(0) >= policy.limit {
        return suppressed(Suppression::RateLimited {
            recipient,
            limit: policy.limit,
        });
    }
    let message_id = compose::new_message_id(number, &policy.message_id_domain);
    match compose::compose(policy, parsed, number, &recipient, &message_id, known.now) {
        Ok(reply) => ReplyPlan::Queue(reply),
        Err(why) => ReplyPlan::Suppressed {
            reason: "compose_error",
            why,
        },
    }
}

/// The Message-IDs a mail refers to, most recent first: In-Reply-To, then References from the end.
pub fn referenced_ids(parsed: &ParsedMail) -> impl Iterator<Item = &String> {
    parsed
        .in_reply_to
        .iter()
        .chain(parsed.references.iter().rev())
}

impl Known {
    /// The ticket a mail follows up: the first of its references that is known (our reply with
    /// that Message-ID before an article with it: a Message-ID we sent belongs to its reply's
    /// ticket, even if a stripped echo of the reply was stored in another one); only when none
    /// is, a ticket number tagged in its subject.
    fn thread_of(&self, rules: &TicketRules, parsed: &ParsedMail) -> Option<TicketRef> {
        for id in referenced_ids(parsed) {
            if let Some(reply) = self.replies.get(id) {
                return Some(reply.ticket.clone());
            }
            if let Some(ticket) = self.articles.get(id) {
                return Some(ticket.clone());
            }
        }
        let number = ticket_number_in_subject(&parsed.subject, &rules.subject_tag)?;
        self.numbers.get(number).map(|&id| TicketRef {
            id,
            number: number.to_string(),
        })
    }

    /// Adds what `decision` creates, so the next mail of the batch sees it as stored.
    pub fn remember(&mut self, rules: &TicketRules, mail: Mail<'_>, decision: &Decision) {
        if *decision == Decision::AlreadyProcessed {
            return;
        }
        self.processed.insert(mail.incoming.source_key.clone());
        let Decision::Article(article) = decision else {
            return;
        };
        let ticket = &article.ticket;
        self.next_article_id = self.next_article_id.max(article.id + 1);
        if article.opens.is_some() {
            self.next_ticket_id = self.next_ticket_id.max(ticket.id + 1);
            self.numbers.insert(ticket.number.clone(), ticket.id);
        }
        let stored = StoredMessage {
            article_id: article.id,
            number: ticket.number.clone(),
            header_only: article.too_large.is_some(),
        };
        match mail.msg_key {
            // As the store keeps it: the whole mail of a header never takes the header's key
            // (which it has only when its body is empty).
            Some(key) if article.completes.is_some() => {
                self.messages.entry(key.key.clone()).or_insert(stored);
            }
            Some(key) => {
                self.messages.insert(key.key.clone(), stored);
            }
            None => {
                self.same_bytes
                    .entry(mail.sha.to_string())
                    .or_insert(stored);
            }
        }
        let message_id = &mail.incoming.parsed.message_id;
        if !message_id.is_empty() {
            self.articles
                .entry(message_id.clone())
                .or_insert_with(|| ticket.clone());
        }
        if let Some(bounce) = &article.bounce {
            if let Some(reply) = self.replies.get_mut(&bounce.message_id) {
                reply.bounced = true;
            }
        }
        if let Some(ReplyPlan::Queue(reply)) = &article.reply {
            self.replies.insert(
                reply.message_id.clone(),
                SentReply {
                    ticket: ticket.clone(),
                    article_id: article.id,
                    account: rules.account.clone(),
                    recipient: reply.recipient.clone(),
                    bounced: false,
                },
            );
            *self
                .recent_replies
                .entry(reply.recipient.clone())
                .or_default() += 1;
        }
    }

    /// [`Known::now`] as the store writes times: RFC 3339 UTC with milliseconds, which sorts as
    /// text.
    pub fn now_text(&self) -> String {
        self.now.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl Decision {
    /// What the pass and the store's `processed.outcome` make of the decision about a mail of
    /// this `extent`. Whatever became of a mail's header (a new ticket, a follow-up, a copy), the
    /// mail is held by it: [`Outcome::HeaderOnly`] keeps it on the server.
    pub fn outcome(&self, extent: Extent) -> Outcome {
        let header_only = extent.is_header_only();
        let held = |number: &str, opened: bool| Outcome::HeaderOnly {
            number: number.to_string(),
            opened,
        };
        match self {
            Decision::AlreadyProcessed => Outcome::AlreadyProcessed,
            Decision::TestMail => Outcome::TestMail,
            Decision::OwnAlert => Outcome::OwnAlert,
            Decision::SameBytes { of } | Decision::Copy { of } if header_only => {
                held(&of.number, false)
            }
            Decision::SameBytes { of } | Decision::Copy { of } => Outcome::Duplicate {
                number: of.number.clone(),
            },
            Decision::Article(article) => {
                let number = article.ticket.number.clone();
                match (&article.opens, article.completes) {
                    _ if header_only => held(&number, article.opens.is_some()),
                    (_, Some(_)) => Outcome::Completed { number },
                    (Some(_), None) => Outcome::NewTicket { number },
                    (None, None) => Outcome::FollowUp { number },
                }
            }
        }
    }

    /// The article the mail's `processed` row names: the one it was stored as; for the header of
    /// a mail too large to fetch that is a copy (of a header stored before), the one that holds
    /// that header, which its whole mail completes later.
    pub fn recorded_article(&self, extent: Extent) -> Option<i64> {
        match self {
            Decision::Article(article) => Some(article.id),
            Decision::SameBytes { of } | Decision::Copy { of } if extent.is_header_only() => {
                Some(of.article_id)
            }
            _ => None,
        }
    }
}

impl Article {
    /// The article's `reply_note`: the reply queued, why there is none, or that the mail is a
    /// delivery report; empty for a follow-up or an account without automatic replies.
    pub fn note(&self) -> String {
        if let Some(bounce) = &self.bounce {
            return format!(
                "no auto-reply: delivery report of our automatic reply to {} (a bounce)",
                bounce.reply.recipient
            );
        }
        match &self.reply {
            Some(ReplyPlan::Queue(reply)) => format!(
                "auto-reply queued to {} (Message-ID <{}>)",
                reply.recipient, reply.message_id
            ),
            Some(ReplyPlan::Suppressed { why, .. }) => format!("no auto-reply: {why}"),
            None => String::new(),
        }
    }
}

impl Bounce {
    /// The note the first report puts on the article the reply answered. `at`: the batch's time
    /// as stored; `source`: where the report came from.
    pub fn note_on_answered(&self, at: &str, source: &str) -> String {
        format!(
            "auto-reply to {} bounced: a delivery report arrived at {at} ({source}); the \
             customer did not get it (Message-ID <{}>)",
            self.reply.recipient, self.message_id
        )
    }
}

#[cfg(test)]
mod tests {
    //! The rules of docs/replies.md, one row each: raw bytes in, decision out, no database.

    use chrono::TimeZone;

    use super::*;
    use crate::ingest::parse::parse;
    use crate::ingest::same_message::message_key;
    use crate::ingest::testmail;
    use crate::secret::Secret;

    /// A mail of `account` as the pass hands it over, with what `Prepared` computes for it.
    struct Fetched {
        incoming: Incoming,
        sha: String,
        msg_key: Option<MessageKey>,
    }

    impl Fetched {
        fn new(source_key: &str, raw: &str) -> Fetched {
            let raw = raw.replace('\n', "\r\n").into_bytes();
            let parsed = parse(&raw);
            Fetched {
                sha: crate::store::sha256_hex(&raw),
                msg_key: message_key(&parsed, &raw),
                incoming: Incoming {
                    source_key: source_key.parse().unwrap(),
                    parsed,
                    raw,
                    received_at: now(),
                    arrived: None,
                    extent: Extent::Whole,
                },
            }
        }

        /// The header alone of `raw` (up to and with the empty line), as the pass fetches it
        /// from a mail of `size` bytes, too large to fetch whole.
        fn header_of(source_key: &str, raw: &str, size: u64) -> Fetched {
            let header = &raw[..raw.find("\n\n").map_or(raw.len(), |end| end + 2)];
            let mut mail = Fetched::new(source_key, header);
            mail.incoming.extent = Extent::HeaderOnly { size };
            mail
        }

        fn mail(&self) -> Mail<'_> {
            Mail {
                incoming: &self.incoming,
                sha: &self.sha,
                msg_key: self.msg_key.as_ref(),
            }
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
    }

    const DATE: &str = "Mon, 07 Dec 2026 09:30:00 +0000";

    /// A customer's mail with `extra` header lines.
    fn customer_mail(message_id: &str, extra: &str) -> String {
        format!(
            "From: Erika Muster <erika@kunde.example>\nTo: support@shop.test\nSubject: Bestellung 4711\n\
             Message-ID: <{message_id}>\nDate: {DATE}\n{extra}\nWo bleibt mein Paket?\n"
        )
    }

    /// A store with ticket 10001 (row 1), whose first article has Message-ID `first@kunde.example`
    /// and whose automatic reply `m2t.10001.ab@tickets.shop.test` went to erika@kunde.example.
    fn store_with_one_ticket() -> Known {
        let ticket = TicketRef {
            id: 1,
            number: "10001".into(),
        };
        let mut known = Known {
            now: now(),
            next_ticket_id: 2,
            next_article_id: 2,
            ..Known::default()
        };
        known
            .articles
            .insert("first@kunde.example".into(), ticket.clone());
        known.numbers.insert("10001".into(), 1);
        known.replies.insert(
            "m2t.10001.ab@tickets.shop.test".into(),
            SentReply {
                ticket,
                article_id: 1,
                account: "support".into(),
                recipient: "erika@kunde.example".into(),
                bounced: false,
            },
        );
        known.recent_replies.insert("erika@kunde.example".into(), 1);
        known
    }

    /// The decision in a few words: what the table below compares.
    fn summary(decision: &Decision) -> String {
        match decision {
            Decision::AlreadyProcessed => "already processed".into(),
            Decision::TestMail => "test mail".into(),
            Decision::OwnAlert => "own alert".into(),
            Decision::SameBytes { of } => format!("same bytes as {}", of.number),
            Decision::Copy { of } => format!("copy of article {} in {}", of.article_id, of.number),
            Decision::Article(a) => {
                let what = match (&a.opens, &a.bounce, a.completes) {
                    (_, _, Some(header)) => {
                        format!("whole mail of article {header} in {}", a.ticket.number)
                    }
                    (Some(_), _, None) => format!("new ticket {}", a.ticket.number),
                    (None, Some(b), None) => {
                        format!("bounce in {} (first: {})", a.ticket.number, b.first)
                    }
                    (None, None, None) => format!("follow-up of {}", a.ticket.number),
                };
                let what = match a.too_large {
                    Some(size) => format!("header only ({size} bytes): {what}"),
                    None => what,
                };
                match &a.reply {
                    Some(ReplyPlan::Queue(r)) => format!("{what}, reply to {}", r.recipient),
                    Some(ReplyPlan::Suppressed { reason, .. }) => {
                        format!("{what}, no reply: {reason}")
                    }
                    None => what,
                }
            }
        }
    }

    fn route_one(rules: &TicketRules, raw: &str, known: &Known) -> String {
        summary(&route(
            rules,
            Fetched::new("imap:INBOX:1:50", raw).mail(),
            known,
        ))
    }

    #[test]
    fn each_rule_of_the_reply_documentation_decides_as_written() {
        let replies = TicketRules::with_test_replies("support");
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "a customer's new mail opens a ticket with its reply",
                customer_mail("new@kunde.example", ""),
                "new ticket 10002, reply to erika@kunde.example",
            ),
            (
                "an answer to a stored mail joins its ticket, without a reply",
                customer_mail("answer@kunde.example", "In-Reply-To: <first@kunde.example>"),
                "follow-up of 10001",
            ),
            (
                "an answer to our reply joins the reply's ticket",
                customer_mail(
                    "answer@kunde.example",
                    "References: <x@y> <m2t.10001.ab@tickets.shop.test>",
                ),
                "follow-up of 10001",
            ),
            (
                "the ticket tag in the subject joins a known ticket",
                customer_mail("tagged@kunde.example", "")
                    .replace("Bestellung 4711", "[Ticket#10001] Bestellung"),
                "follow-up of 10001",
            ),
            (
                "the tag of a ticket that does not exist opens a new one",
                customer_mail("tagged@kunde.example", "")
                    .replace("Bestellung 4711", "[Ticket#99999] Bestellung"),
                "new ticket 10002, reply to erika@kunde.example",
            ),
            (
                "a reference to the shop's own order confirmation is a new request",
                customer_mail("new@kunde.example", "In-Reply-To: <order-4711@shop.test>"),
                "new ticket 10002, reply to erika@kunde.example",
            ),
            (
                "an echo carrying the Message-ID of our reply gets no reply",
                customer_mail("m2t.10001.ab@tickets.shop.test", ""),
                "new ticket 10002, no reply: own_message_id",
            ),
            (
                "a program's mail gets no reply",
                customer_mail("robot@kunde.example", "Auto-Submitted: auto-generated"),
                "new ticket 10002, no reply: auto_submitted",
            ),
            (
                "a mailing list gets no reply",
                customer_mail("list@kunde.example", "List-Id: <news.kunde.example>"),
                "new ticket 10002, no reply: mailing_list",
            ),
            (
                "a noreply sender without Reply-To gets no reply",
                customer_mail("shop@kunde.example", "")
                    .replace("erika@kunde.example", "noreply@kunde.example"),
                "new ticket 10002, no reply: robot_sender",
            ),
            (
                "a contact form's noreply sender with the customer in Reply-To is answered",
                customer_mail("form@kunde.example", "Reply-To: max@kunde.example")
                    .replace("erika@kunde.example", "noreply@kunde.example"),
                "new ticket 10002, reply to max@kunde.example",
            ),
            (
                "a mail from one of our own addresses gets no reply",
                customer_mail("own@shop.test", "")
                    .replace("erika@kunde.example", "support@shop.test"),
                "new ticket 10002, no reply: own_address",
            ),
            (
                "an old mail gets no reply",
                customer_mail("old@kunde.example", "")
                    .replace(DATE, "Mon, 02 Nov 2026 09:30:00 +0000"),
                "new ticket 10002, no reply: too_old",
            ),
        ];
        for (rule, raw, expected) in cases {
            assert_eq!(
                route_one(&replies, &raw, &store_with_one_ticket()),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn an_account_without_replies_opens_tickets_with_no_reply_decision() {
        let rules = TicketRules::without_replies("support");
        let raw = customer_mail("new@kunde.example", "");
        assert_eq!(
            route_one(&rules, &raw, &store_with_one_ticket()),
            "new ticket 10002"
        );
    }

    #[test]
    fn the_rate_limit_counts_replies_already_queued_to_the_recipient() {
        let rules = TicketRules::with_test_replies("support");
        let mut known = store_with_one_ticket();
        known.recent_replies.insert("erika@kunde.example".into(), 2);
        let raw = customer_mail("new@kunde.example", "");
        assert_eq!(
            route_one(&rules, &raw, &known),
            "new ticket 10002, no reply: rate_limited"
        );
    }

    #[test]
    fn a_delivery_report_of_our_reply_joins_its_ticket_once_marked_first() {
        let rules = TicketRules::with_test_replies("support");
        let report = "From: MAILER-DAEMON@mx.kunde.example\nTo: support@shop.test\n\
            Subject: Undelivered Mail Returned to Sender\nMessage-ID: <bounce1@mx.kunde.example>\n\
            Date: Mon, 07 Dec 2026 09:31:00 +0000\nMIME-Version: 1.0\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n\
            --b\nContent-Type: text/plain\n\nNo such user.\n\
            --b\nContent-Type: text/rfc822-headers\n\n\
            From: Shop <support@shop.test>\nMessage-ID: <m2t.10001.ab@tickets.shop.test>\n\
            Subject: [Ticket#10001] Ihre Anfrage\n\n--b--\n";
        let mut known = store_with_one_ticket();
        assert_eq!(
            route_one(&rules, report, &known),
            "bounce in 10001 (first: true)"
        );
        known
            .replies
            .get_mut("m2t.10001.ab@tickets.shop.test")
            .unwrap()
            .bounced = true;
        assert_eq!(
            route_one(&rules, report, &known),
            "bounce in 10001 (first: false)"
        );
    }

    #[test]
    fn mails_known_before_write_nothing_new() {
        let rules = TicketRules::with_test_replies("support");
        let copy = Fetched::new("imap:INBOX:1:7", &customer_mail("cc@kunde.example", ""));
        let keyless = Fetched::new(
            "imap:INBOX:1:8",
            "From: a@b.example\nSubject: x\n\nno Message-ID\n",
        );
        let mut known = store_with_one_ticket();
        known.processed.insert("imap:INBOX:1:6".parse().unwrap());
        known.messages.insert(
            copy.msg_key.as_ref().unwrap().key.clone(),
            StoredMessage {
                article_id: 1,
                number: "10001".into(),
                header_only: false,
            },
        );
        known.same_bytes.insert(
            keyless.sha.clone(),
            StoredMessage {
                article_id: 1,
                number: "10001".into(),
                header_only: false,
            },
        );
        let processed = Fetched::new("imap:INBOX:1:6", &customer_mail("x@kunde.example", ""));
        assert_eq!(
            summary(&route(&rules, processed.mail(), &known)),
            "already processed"
        );
        assert_eq!(
            summary(&route(&rules, copy.mail(), &known)),
            "copy of article 1 in 10001"
        );
        assert_eq!(
            summary(&route(&rules, keyless.mail(), &known)),
            "same bytes as 10001"
        );
    }

    #[test]
    fn a_genuine_test_mail_opens_no_ticket_and_a_forged_one_does() {
        let key = Secret::new("mailbox-password".to_string());
        let mut rules = TicketRules::with_test_replies("support");
        rules.test_mail_key = Some(("support@shop.test".into(), key.clone()));
        let genuine = testmail::marker(&key, "support@shop.test", "2026-12-07T09:30:00Z");
        let forged = testmail::marker(
            &Secret::new("guess".to_string()),
            "support@shop.test",
            "2026-12-07T09:30:00Z",
        );
        let known = store_with_one_ticket();
        let header = |m: &str| format!("{}: {m}", crate::ingest::parse::TEST_HEADER);
        assert_eq!(
            route_one(
                &rules,
                &customer_mail("t@kunde.example", &header(&genuine)),
                &known
            ),
            "test mail"
        );
        assert!(route_one(
            &rules,
            &customer_mail("t@kunde.example", &header(&forged)),
            &known
        )
        .starts_with("new ticket 10002"));
    }

    #[test]
    fn a_later_mail_of_the_batch_sees_an_earlier_one_as_stored() {
        let rules = TicketRules::with_test_replies("support");
        let mut known = Known {
            now: now(),
            next_ticket_id: 1,
            next_article_id: 1,
            ..Known::default()
        };
        let batch = [
            Fetched::new("pop3:a", &customer_mail("one@kunde.example", "")),
            Fetched::new(
                "pop3:b",
                &customer_mail("two@kunde.example", "In-Reply-To: <one@kunde.example>"),
            ),
            Fetched::new("pop3:c", &customer_mail("three@kunde.example", "")),
            Fetched::new("pop3:d", &customer_mail("four@kunde.example", "")),
            Fetched::new("pop3:a", &customer_mail("one@kunde.example", "")),
        ];
        let decided: Vec<String> = batch
            .iter()
            .map(|mail| {
                let decision = route(&rules, mail.mail(), &known);
                known.remember(&rules, mail.mail(), &decision);
                summary(&decision)
            })
            .collect();
        assert_eq!(
            decided,
            [
                "new ticket 10001, reply to erika@kunde.example",
                "follow-up of 10001",
                "new ticket 10002, reply to erika@kunde.example",
                // The third reply to erika within the hour: the test rules allow two.
                "new ticket 10003, no reply: rate_limited",
                "already processed",
            ]
        );
    }

    /// The account of a shop with a spam rule, a rule for payment notices and old mail closed.
    fn shop_rules() -> TicketRules {
        let rule = |header: &str, contains: Option<&str>, matches: Option<&str>| {
            crate::config::RuleConfig {
                header: header.into(),
                contains: contains.map(Into::into),
                matches: matches.map(Into::into),
                status: None,
                ticket_type: None,
                auto_reply: None,
            }
        };
        let spam = crate::config::RuleConfig {
            status: Some("spam".into()),
            ..rule("X-Spam-Flag", Some("yes"), None)
        };
        let payments = crate::config::RuleConfig {
            ticket_type: Some("payment".into()),
            auto_reply: Some(false),
            ..rule("from", None, Some(r"@(paypal|klarna)\.example>$"))
        };
        TicketRules {
            mail_rules: vec![
                super::super::mail_rules::MailRule::new(1, &spam).unwrap(),
                super::super::mail_rules::MailRule::new(2, &payments).unwrap(),
            ],
            old_mail: Some(super::super::mail_rules::OldMail {
                age: std::time::Duration::from_secs(14 * 24 * 3600),
                status: "closed".into(),
            }),
            ..TicketRules::with_test_replies("support")
        }
    }

    fn new_ticket(decision: &Decision) -> (NewTicket, Option<String>) {
        let Decision::Article(article) = decision else {
            panic!("not an article: {decision:?}");
        };
        (
            article.opens.clone().expect("a new ticket"),
            article.rule.clone(),
        )
    }

    #[test]
    fn the_first_matching_rule_sets_status_type_and_reply() {
        let rules = shop_rules();
        let known = store_with_one_ticket();
        let spam = customer_mail("spam@kunde.example", "X-Spam-Flag: YES");
        assert_eq!(
            route_one(&rules, &spam, &known),
            "new ticket 10002, reply to erika@kunde.example"
        );
        let decision = route(&rules, Fetched::new("pop3:s", &spam).mail(), &known);
        let (ticket, rule) = new_ticket(&decision);
        assert_eq!(
            (ticket.status.as_str(), ticket.ticket_type.as_str()),
            ("spam", "question")
        );
        assert_eq!(
            rule.as_deref(),
            Some("rule 1 (X-Spam-Flag contains \"yes\")")
        );

        let paypal = customer_mail("pay@kunde.example", "").replace(
            "Erika Muster <erika@kunde.example>",
            "PayPal <service@paypal.example>",
        );
        assert_eq!(
            route_one(&rules, &paypal, &known),
            "new ticket 10002, no reply: rule"
        );
        let (ticket, _) = new_ticket(&route(
            &rules,
            Fetched::new("pop3:p", &paypal).mail(),
            &known,
        ));
        assert_eq!(
            (ticket.status.as_str(), ticket.ticket_type.as_str()),
            ("open", "payment")
        );

        let plain = customer_mail("plain@kunde.example", "X-Spam-Flag: NO");
        let (ticket, rule) = new_ticket(&route(
            &rules,
            Fetched::new("pop3:n", &plain).mail(),
            &known,
        ));
        assert_eq!((ticket.status.as_str(), rule), ("open", None));
    }

    #[test]
    fn a_rule_that_matches_a_follow_up_is_recorded_and_changes_nothing() {
        let rules = shop_rules();
        let raw = customer_mail(
            "answer@kunde.example",
            "In-Reply-To: <first@kunde.example>\nX-Spam-Flag: YES",
        );
        let decision = route(
            &rules,
            Fetched::new("pop3:f", &raw).mail(),
            &store_with_one_ticket(),
        );
        assert_eq!(summary(&decision), "follow-up of 10001");
        let Decision::Article(article) = decision else {
            unreachable!()
        };
        assert_eq!(
            article.rule.as_deref(),
            Some("rule 1 (X-Spam-Flag contains \"yes\")")
        );
    }

    #[test]
    fn old_mail_opens_tickets_with_the_old_mail_status_and_no_reply() {
        let rules = shop_rules();
        let known = store_with_one_ticket();
        let old =
            customer_mail("old@kunde.example", "").replace(DATE, "Tue, 03 Mar 2026 08:00:00 +0100");
        assert_eq!(
            route_one(&rules, &old, &known),
            "new ticket 10002, no reply: old_mail"
        );
        let (ticket, _) = new_ticket(&route(&rules, Fetched::new("pop3:o", &old).mail(), &known));
        assert_eq!(ticket.status, "closed");
        // A spam rule's status wins over the old-mail status.
        let old_spam = customer_mail("old-spam@kunde.example", "X-Spam-Flag: YES")
            .replace(DATE, "Tue, 03 Mar 2026 08:00:00 +0100");
        let (ticket, _) = new_ticket(&route(
            &rules,
            Fetched::new("pop3:os", &old_spam).mail(),
            &known,
        ));
        assert_eq!(ticket.status, "spam");
        // A mail of this morning is not old.
        let recent = customer_mail("recent@kunde.example", "")
            .replace(DATE, "Mon, 07 Dec 2026 08:00:00 +0000");
        assert_eq!(
            route_one(&rules, &recent, &known),
            "new ticket 10002, reply to erika@kunde.example"
        );
    }

    #[test]
    fn an_absurd_date_is_judged_by_when_the_server_received_the_mail() {
        let rules = shop_rules();
        let known = store_with_one_ticket();
        for date in [
            "Thu, 01 Jan 1970 00:00:00 +0000",
            "Fri, 01 Jan 2100 00:00:00 +0000",
        ] {
            let raw = customer_mail("odd@kunde.example", "").replace(DATE, date);
            let status = |arrived: Option<DateTime<Utc>>| {
                let mut mail = Fetched::new("imap:INBOX:1:9", &raw);
                mail.incoming.arrived = arrived;
                new_ticket(&route(&rules, mail.mail(), &known)).0.status
            };
            let long_ago = Some(now() - chrono::Duration::days(400));
            assert_eq!(
                status(long_ago),
                "closed",
                "{date}, on the server for 400 days"
            );
            assert_eq!(status(Some(now())), "open", "{date}, arrived now");
            assert_eq!(
                status(None),
                "open",
                "{date}, and the protocol does not say (POP3)"
            );
        }
    }

    /// The customer's big mail: a photo of the damaged parcel, 80 MB.
    const BIG: u64 = 80_000_000;

    /// Route, outcome and the article the mail's record names, in a few words.
    fn route_held(rules: &TicketRules, mail: &Fetched, known: &Known) -> (String, Outcome) {
        let decision = route(rules, mail.mail(), known);
        (summary(&decision), decision.outcome(mail.incoming.extent))
    }

    #[test]
    fn a_mail_too_large_to_fetch_is_decided_by_its_header_as_any_new_mail() {
        let rules = TicketRules::with_test_replies("support");
        let known = store_with_one_ticket();
        let held = |opened| Outcome::HeaderOnly {
            number: if opened { "10002" } else { "10001" }.into(),
            opened,
        };
        let cases: Vec<(&str, String, &str, Outcome)> = vec![
            (
                "its header opens a ticket with the usual reply",
                customer_mail("big@kunde.example", ""),
                "header only (80000000 bytes): new ticket 10002, reply to erika@kunde.example",
                held(true),
            ),
            (
                "the reply rules apply as to any new ticket",
                customer_mail("big-robot@kunde.example", "Auto-Submitted: auto-generated"),
                "header only (80000000 bytes): new ticket 10002, no reply: auto_submitted",
                held(true),
            ),
            (
                "its header joins the ticket it answers, without a reply",
                customer_mail(
                    "big-answer@kunde.example",
                    "In-Reply-To: <first@kunde.example>",
                ),
                "header only (80000000 bytes): follow-up of 10001",
                held(false),
            ),
        ];
        for (rule, raw, expected, outcome) in cases {
            let mail = Fetched::header_of("imap:INBOX:1:60", &raw, BIG);
            assert_eq!(
                route_held(&rules, &mail, &known),
                (expected.to_string(), outcome),
                "{rule}"
            );
        }
    }

    #[test]
    fn another_copy_of_a_stored_header_is_held_by_that_header_without_a_ticket() {
        let rules = TicketRules::with_test_replies("support");
        let raw = customer_mail("big@kunde.example", "");
        let first = Fetched::header_of("imap:INBOX:1:60", &raw, BIG);
        let mut known = store_with_one_ticket();
        let decision = route(&rules, first.mail(), &known);
        known.remember(&rules, first.mail(), &decision);
        // The same mail in another folder's listing (say, after a UIDVALIDITY change).
        let again = Fetched::header_of("imap:INBOX:2:60", &raw, BIG);
        let copy = route(&rules, again.mail(), &known);
        assert_eq!(summary(&copy), "copy of article 2 in 10002");
        assert_eq!(
            copy.outcome(again.incoming.extent),
            Outcome::HeaderOnly {
                number: "10002".into(),
                opened: false
            },
            "held, so it stays on the server"
        );
        assert_eq!(copy.recorded_article(again.incoming.extent), Some(2));
        // A mail without a Message-ID is found again by its bytes, and held the same way.
        let keyless = "From: a@kunde.example\nSubject: Video\n\nsee attachment\n";
        let first = Fetched::header_of("pop3:k1", keyless, BIG);
        let decision = route(&rules, first.mail(), &known);
        known.remember(&rules, first.mail(), &decision);
        let again = Fetched::header_of("pop3:k2", keyless, BIG);
        let same = route(&rules, again.mail(), &known);
        assert_eq!(summary(&same), "same bytes as 10003");
        assert_eq!(
            (
                same.outcome(again.incoming.extent),
                same.recorded_article(again.incoming.extent)
            ),
            (
                Outcome::HeaderOnly {
                    number: "10003".into(),
                    opened: false
                },
                Some(3)
            )
        );
    }

    #[test]
    fn the_whole_mail_of_a_held_key_completes_its_header_in_the_same_ticket_without_a_reply() {
        let rules = TicketRules::with_test_replies("support");
        let raw = customer_mail("big@kunde.example", "");
        let header = Fetched::header_of("imap:INBOX:1:60", &raw, BIG);
        let mut known = store_with_one_ticket();
        let decision = route(&rules, header.mail(), &known);
        known.remember(&rules, header.mail(), &decision);
        // A later batch, after max_message_size was raised: the store holds the key by its
        // header (article 2 of ticket 10002) and no longer counts it as processed.
        known.processed.clear();
        known.held.insert(
            "imap:INBOX:1:60".parse().unwrap(),
            Held {
                ticket: TicketRef {
                    id: 2,
                    number: "10002".into(),
                },
                article_id: 2,
            },
        );
        let whole = Fetched::new("imap:INBOX:1:60", &raw);
        assert_eq!(
            route_held(&rules, &whole, &known),
            (
                "whole mail of article 2 in 10002".to_string(),
                Outcome::Completed {
                    number: "10002".into()
                }
            )
        );
        assert_eq!(
            route_held(&rules, &header, &known).0,
            "already processed",
            "its header again writes nothing"
        );
    }

    #[test]
    fn the_whole_mail_is_never_taken_for_a_copy_of_its_own_header() {
        let rules = TicketRules::with_test_replies("support");
        // A mail whose body is empty: its header alone has the very bytes of the whole mail,
        // so both have one message key.
        let raw = "From: Erika Muster <erika@kunde.example>\nSubject: Anhang\n\
                   Message-ID: <empty@kunde.example>\nDate: Mon, 07 Dec 2026 09:30:00 +0000\n\n";
        let header = Fetched::header_of("imap:INBOX:1:61", raw, BIG);
        let whole = Fetched::new("imap:INBOX:1:61", raw);
        assert_eq!(header.msg_key, whole.msg_key);
        let mut known = store_with_one_ticket();
        let decision = route(&rules, header.mail(), &known);
        known.remember(&rules, header.mail(), &decision);
        known.processed.clear();
        let held = Held {
            ticket: TicketRef {
                id: 2,
                number: "10002".into(),
            },
            article_id: 2,
        };
        known.held.insert(whole.incoming.source_key.clone(), held);
        assert_eq!(
            route_held(&rules, &whole, &known).0,
            "whole mail of article 2 in 10002"
        );
        // Another account stored the whole message meanwhile: then it is a copy of that.
        let key = whole.msg_key.as_ref().unwrap().key.clone();
        known.messages.insert(
            key,
            StoredMessage {
                article_id: 7,
                number: "10005".into(),
                header_only: false,
            },
        );
        assert_eq!(
            route_held(&rules, &whole, &known),
            (
                "copy of article 7 in 10005".to_string(),
                Outcome::Duplicate {
                    number: "10005".into()
                }
            )
        );
    }
}
