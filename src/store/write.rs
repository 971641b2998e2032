//! The one write path of ingestion: carries out a batch's decisions (see `ingest::route`) in the
//! batch's transaction. It decides nothing; every row it writes, and every id and number in them,
//! comes from a [`Decision`]. A batch of one mail and a batch of five hundred go through the
//! same statements; a bigger batch only puts more rows in each.
//!
//! Rows go in with multi-row INSERTs, in an order that keeps every reference valid: tickets,
//! articles (with their raw mail, attachments and Message-ID hashes), then what refers to
//! articles (message keys, copies, replies, delivery reports), then the source keys.

use sqlx::{Any, Transaction};

use super::article_text::index_words;
use super::message_ids::insert_message_id_hashes;
use super::processed::{give_way, insert_processed, record_disposed};
use super::raw_codec::RawCodec;
use super::sql::IN_CHUNK;
use super::{sha256_hex, Backend, SqlBuilder, StoreError, TicketRules};
use crate::ingest::customer::customer;
use crate::ingest::route::{Article, Decision, Mail, ReplyPlan};

/// Articles per multi-row INSERT: a whole batch (`BATCH_MAILS` in source::pass) at 28 bound
/// values a row, 14,000 values, under PostgreSQL's 65,535 and SQLite's 32,766. One statement per
/// batch into SQLite's full-text index (`article_text::index_words`) also means one new segment
/// of it per batch (FTS5 writes one at every statement that opens a savepoint), so less of the
/// index's merging: with 100 rows a statement the 10,000-mail backlog took 3.6-3.9 s, with 500
/// 3.3-3.5 s, and into a store of 100,000 articles 5.8-6.2 s against 5.0 s.
const ARTICLE_CHUNK: usize = 500;
/// Bytes of attachment contents per INSERT (one larger content goes alone).
const CONTENT_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// What the `raw` and `data` columns of rows written since migration 0009 hold: the bytes are in
/// `raw_mails` and `attachment_contents`.
const NO_BYTES: &[u8] = &[];

/// One mail of the batch with its decision.
pub(super) struct Planned<'a> {
    pub mail: Mail<'a>,
    /// The raw bytes as stored (see `RawCodec`).
    pub packed: &'a [u8],
    /// The text as stored (`articles.text_zstd`, see `article_text`).
    pub text: &'a [u8],
    /// `articles.words` on PostgreSQL (see `word_vector`); `None` on SQLite.
    pub words: Option<&'a str>,
    pub decision: &'a Decision,
}

impl<'a> Planned<'a> {
    fn article(&self) -> Option<&'a Article> {
        match self.decision {
            Decision::Article(article) => Some(article),
            _ => None,
        }
    }
}

/// Writes the batch's decisions; `now` is the batch's time as stored (`Known::now_text`).
/// `disposed`: source keys of mails that left the server since the last write (see
/// `Store::store_prepared`).
pub(super) async fn carry_out(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    planned: &[Planned<'_>],
    now: &str,
    disposed: &[crate::ingest::SourceKey],
) -> Result<(), StoreError> {
    let articles: Vec<(&Planned, &Article)> = planned
        .iter()
        .filter_map(|p| Some((p, p.article()?)))
        .collect();
    for chunk in articles.chunks(ARTICLE_CHUNK) {
        insert_tickets(tx, rules, chunk, now).await?;
        insert_articles(tx, rules, chunk, now).await?;
    }
    touch_tickets(tx, &articles, now).await?;
    // The whole mail of a header normally has a key of its own (its content differs); only a
    // mail with an empty body has its header's, and then the header's row stays (see `Owner`).
    let (mut messages, mut whole) = (Vec::new(), Vec::new());
    for (p, a) in &articles {
        let Some(key) = p.mail.msg_key else { continue };
        let row = (key.key.as_str(), a.ticket.id, a.id);
        match a.completes {
            Some(_) => whole.push(row),
            None => messages.push(row),
        }
    }
    insert_messages(tx, &rules.account, &messages, now).await?;
    insert_message_rows(tx, &rules.account, &whole, now, Owner::KeepsKey).await?;
    insert_copies(tx, rules, planned, now).await?;
    insert_replies(tx, rules, &articles, now).await?;
    mark_bounced(tx, &articles, now).await?;
    let recorded: Vec<(&Planned, String)> = planned
        .iter()
        .filter(|p| *p.decision != Decision::AlreadyProcessed)
        .map(|p| (p, p.mail.incoming.source_key.to_string()))
        .collect();
    let rows: Vec<(&str, &str, Option<i64>, String)> = recorded
        .iter()
        .map(|(p, key)| {
            let extent = p.mail.incoming.extent;
            (
                key.as_str(),
                p.decision.outcome(extent).label(),
                p.decision.recorded_article(extent),
                now.to_string(),
            )
        })
        .collect();
    let keys: Vec<&str> = recorded.iter().map(|(_, key)| key.as_str()).collect();
    give_way(tx, &rules.account, &keys).await?;
    insert_processed(tx, &rules.account, &rows).await?;
    record_disposed(tx, &rules.account, disposed).await
}

/// The tickets these articles open.
async fn insert_tickets(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    articles: &[(&Planned<'_>, &Article)],
    now: &str,
) -> Result<(), StoreError> {
    let opening: Vec<_> = articles
        .iter()
        .filter_map(|(p, a)| Some((&p.mail.incoming.parsed, a, a.opens.as_ref()?)))
        .collect();
    if opening.is_empty() {
        return Ok(());
    }
    let mut q = SqlBuilder::new(
        Backend::of(tx),
        "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, \
         customer_name, created_at, updated_at) ",
    );
    q.push_values(&opening, |b, (parsed, article, new)| {
        let who = customer(parsed, rules.customer);
        b.push_bind(article.ticket.id)
            .push_bind(article.ticket.number.as_str())
            .push_bind(rules.account.as_str())
            .push_bind(new.ticket_type.as_str())
            .push_bind(new.status.as_str())
            .push_bind(parsed.subject.as_str())
            .push_bind(who.email)
            .push_bind(who.name)
            .push_bind(now)
            .push_bind(now);
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Articles with their raw mail, attachments and Message-ID hashes.
async fn insert_articles(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    articles: &[(&Planned<'_>, &Article)],
    now: &str,
) -> Result<(), StoreError> {
    // PostgreSQL's word column is written with the row (see `word_vector`); SQLite's FTS5
    // index gets the words below, since it cannot read the compressed text (see
    // `article_text`).
    let backend = Backend::of(tx);
    let words = match backend {
        Backend::Postgres => ", words",
        Backend::Sqlite => "",
    };
    let mut q = SqlBuilder::new(
        backend,
        format!(
            "INSERT INTO articles (id, ticket_id, account, source_key, message_id, in_reply_to, \
             refs, from_email, from_name, to_addrs, cc_addrs, subject, text_body, text_zstd, \
             html_body, raw, raw_sha256, size, parse_problem, is_followup, is_bounce, reply_note, \
             rule, too_large, completes, received_at, created_at{words}) "
        ),
    );
    q.push_values(articles, |b, (p, a)| {
        let mail = p.mail.incoming;
        let parsed = &mail.parsed;
        let b = b
            .push_bind(a.id)
            .push_bind(a.ticket.id)
            .push_bind(rules.account.as_str())
            .push_bind(mail.source_key.to_string())
            .push_bind(parsed.message_id.as_str())
            .push_bind(parsed.in_reply_to.join(" "))
            .push_bind(parsed.references.join(" "))
            .push_bind(parsed.from_email.as_str())
            .push_bind(parsed.from_name.as_str())
            .push_bind(parsed.to.as_str())
            .push_bind(parsed.cc.as_str())
            .push_bind(parsed.subject.as_str())
            // The text is in text_zstd (see `article_text`); the column stays for older rows.
            .push_bind("")
            .push_bind(p.text)
            // The HTML is read from the raw mail (docs/schema.md); the column stays for older
            // rows.
            .push_bind("")
            // The bytes live in raw_mails (migration 0009); the column stays for older rows.
            .push_bind(NO_BYTES)
            .push_bind(p.mail.sha)
            .push_bind(mail.raw.len() as i64)
            .push_bind(parsed.parse_problem.as_deref().unwrap_or(""))
            .push_bind(i64::from(a.opens.is_none()))
            .push_bind(i64::from(a.bounce.is_some()))
            .push_bind(a.note())
            .push_bind(a.rule.as_deref().unwrap_or(""))
            .push_bind(
                a.too_large
                    .map_or(0, |size| i64::try_from(size).unwrap_or(i64::MAX)),
            )
            .push_bind(a.completes)
            .push_bind(
                mail.received_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .push_bind(now);
        if backend == Backend::Postgres {
            // Missing words would be a bug: the column's NOT NULL then fails the batch.
            b.push_bind_as(p.words, "tsvector");
        }
    });
    q.build().execute(&mut **tx).await?;
    let texts: Vec<(i64, &str, &str)> = articles
        .iter()
        .map(|(p, a)| {
            let parsed = &p.mail.incoming.parsed;
            (a.id, parsed.subject.as_str(), parsed.text.as_str())
        })
        .collect();
    index_words(tx, &texts).await?;
    insert_message_id_hashes(
        tx,
        articles
            .iter()
            .map(|(p, a)| (a.id, p.mail.incoming.parsed.message_id.as_str())),
    )
    .await?;
    let packed: Vec<(i64, &[u8])> = articles.iter().map(|(p, a)| (a.id, p.packed)).collect();
    insert_raw_mails(tx, &packed).await?;
    insert_attachments(tx, articles).await
}

/// A follow-up updates its ticket's `updated_at`: one statement for every ticket followed up.
async fn touch_tickets(
    tx: &mut Transaction<'_, Any>,
    articles: &[(&Planned<'_>, &Article)],
    now: &str,
) -> Result<(), StoreError> {
    let mut ids: Vec<i64> = articles
        .iter()
        .filter(|(_, a)| a.opens.is_none())
        .map(|(_, a)| a.ticket.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = SqlBuilder::new(Backend::of(tx), "UPDATE tickets SET updated_at = ");
        q.push_bind(now).push(" WHERE id IN (");
        q.push_list(chunk.iter().copied());
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Remembers where messages are stored: (message key, ticket id, article id). The primary key
/// refuses a second owner, so a bug here fails the batch instead of opening a second ticket.
pub(super) async fn insert_messages(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, i64, i64)],
    now: &str,
) -> Result<(), StoreError> {
    insert_message_rows(tx, account, rows, now, Owner::Refused).await
}

/// What becomes of a row for a message key already taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The INSERT fails: a second owner is a bug.
    Refused,
    /// The row that has it stays. For the whole mails of headers stored before: only the header
    /// of the same mail can own its key (a mail with an empty body, whose header is all of it),
    /// since `ingest::route` makes the whole mail a copy when a mail stored whole has it.
    KeepsKey,
}

async fn insert_message_rows(
    tx: &mut Transaction<'_, Any>,
    account: &str,
    rows: &[(&str, i64, i64)],
    now: &str,
    owner: Owner,
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
        if owner == Owner::KeepsKey {
            q.push(" ON CONFLICT (message_key) DO NOTHING");
        }
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records that the account received another copy of a stored message.
async fn insert_copies(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    planned: &[Planned<'_>],
    now: &str,
) -> Result<(), StoreError> {
    let copies: Vec<(i64, &Planned)> = planned
        .iter()
        .filter_map(|p| match p.decision {
            Decision::Copy { of } => Some((of.article_id, p)),
            _ => None,
        })
        .collect();
    for chunk in copies.chunks(IN_CHUNK / 5) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO message_copies (article_id, account, source_key, received_at, created_at, \
             content_compared) ",
        );
        q.push_values(chunk, |b, (article_id, p)| {
            let mail = p.mail.incoming;
            b.push_bind(*article_id)
                .push_bind(rules.account.as_str())
                .push_bind(mail.source_key.to_string())
                .push_bind(
                    mail.received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
                .push_bind(now)
                .push_bind(1i64);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Queues the automatic replies of new tickets, in the transaction of their tickets: no ticket
/// without its reply, no reply twice.
async fn insert_replies(
    tx: &mut Transaction<'_, Any>,
    rules: &TicketRules,
    articles: &[(&Planned<'_>, &Article)],
    now: &str,
) -> Result<(), StoreError> {
    let queued: Vec<(&Article, &crate::ingest::reply::compose::Reply)> = articles
        .iter()
        .filter_map(|(_, a)| match &a.reply {
            Some(ReplyPlan::Queue(reply)) => Some((*a, reply)),
            _ => None,
        })
        .collect();
    for chunk in queued.chunks(IN_CHUNK / 10) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO outbox (ticket_id, article_id, account, recipient, message_id, message, \
             status, attempts, next_attempt_at, created_at) ",
        );
        q.push_values(chunk, |b, (article, reply)| {
            b.push_bind(article.ticket.id)
                .push_bind(article.id)
                .push_bind(rules.account.as_str())
                .push_bind(reply.recipient.as_str())
                .push_bind(reply.message_id.as_str())
                .push_bind(reply.message.as_slice())
                .push_bind("pending")
                .push_bind(0i64)
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The first delivery report of a reply marks the reply as bounced and notes it on the article
/// the reply answered.
async fn mark_bounced(
    tx: &mut Transaction<'_, Any>,
    articles: &[(&Planned<'_>, &Article)],
    now: &str,
) -> Result<(), StoreError> {
    for (p, a) in articles {
        let Some(bounce) = a.bounce.as_ref().filter(|b| b.first) else {
            continue;
        };
        sqlx::query("UPDATE outbox SET bounced_at = $1 WHERE message_id = $2")
            .bind(now)
            .bind(&bounce.message_id)
            .execute(&mut **tx)
            .await?;
        let note = bounce.note_on_answered(now, &p.mail.incoming.source_key.to_string());
        sqlx::query("UPDATE articles SET reply_note = $1 WHERE id = $2")
            .bind(&note)
            .bind(bounce.reply.article_id)
            .execute(&mut **tx)
            .await?;
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
    articles: &[(&Planned<'_>, &Article)],
) -> Result<(), StoreError> {
    // Statements per batch, not per attachment: on PostgreSQL each statement is a round trip.
    let rows: Vec<(i64, &crate::ingest::parse::Attachment, String)> = articles
        .iter()
        .flat_map(|(p, a)| {
            p.mail
                .incoming
                .parsed
                .attachments
                .iter()
                .map(|att| (a.id, att, sha256_hex(&att.data)))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let contents: Vec<(&str, &[u8])> = rows
        .iter()
        .map(|(_, att, sha)| (sha.as_str(), att.data.as_slice()))
        .collect();
    insert_attachment_contents(tx, &contents).await?;
    for chunk in rows.chunks(IN_CHUNK / 6) {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO attachments (article_id, filename, content_type, size, data, \
             content_sha256) ",
        );
        q.push_values(chunk, |b, (article_id, att, sha)| {
            b.push_bind(*article_id)
                .push_bind(att.filename.as_str())
                .push_bind(att.content_type.as_str())
                .push_bind(att.data.len() as i64)
                .push_bind(NO_BYTES)
                .push_bind(sha.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Stores decoded attachment bytes, each content once: one already stored, or twice in
/// `contents`, is left as it is.
pub(super) async fn insert_attachment_contents(
    tx: &mut Transaction<'_, Any>,
    contents: &[(&str, &[u8])],
) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(&str, &[u8])> = contents
        .iter()
        .filter(|(sha, _)| seen.insert(*sha))
        .copied()
        .collect();
    // Bounded by bytes too: attachments can be tens of megabytes (a larger one goes alone).
    let mut rest = unique.as_slice();
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take(IN_CHUNK / 2)
            .take_while(|(_, data)| {
                bytes += data.len();
                bytes <= CONTENT_CHUNK_BYTES
            })
            .count()
            .max(1);
        let (chunk, later) = rest.split_at(n);
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO attachment_contents (sha256, data) ",
        );
        q.push_values(chunk, |b, (sha, data)| {
            b.push_bind(*sha).push_bind(*data);
        });
        q.push(" ON CONFLICT (sha256) DO NOTHING");
        q.build().execute(&mut **tx).await?;
        rest = later;
    }
    Ok(())
}
