//! A store of years, generated directly (not through IMAP) for the benchmarks and tests of
//! `tickets list` and `tickets find`: German and English support mails with realistic
//! subjects, bodies, senders (a few large mail providers, many company domains), accounts,
//! statuses and dates, about one in five a follow-up to a recent ticket. Every article has a
//! real raw mail whose SHA-256 is stored, so `tickets show --raw` works on it.
//!
//! Rows are written with multi-row INSERTs, a transaction per `COMMIT_EVERY` articles (the
//! WAL of one transaction over a million mails would grow to gigabytes). The full-text index is
//! filled by the same triggers as at ingestion. No `processed` rows are written: nothing here
//! was fetched from a server.
//!
//! Only the tests and examples compile this (the `synthetic` feature, see Cargo.toml): it
//! writes through the store's private insert helpers, so it lives in the crate, not beside the
//! tests.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Any, Connection};

use super::article_text::{index_words, pack};
use super::message_ids::insert_message_id_hashes;
use super::processed::insert_processed;
use super::raw_codec::RawCodec;
use super::word_vector::words_column;
use super::write::{insert_messages, insert_raw_mails};
use super::{sha256_hex, Backend, SqlBuilder, Store, StoreError};
use crate::ingest::same_message::key_of;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub articles: u64,
    /// Account names; tickets are spread over them unevenly (the first gets the most).
    pub accounts: Vec<String>,
    /// The newest article's time; the oldest is `days` earlier.
    pub end: DateTime<Utc>,
    pub days: u32,
    /// Same seed, same store.
    pub seed: u64,
}

impl Synthetic {
    pub fn new(articles: u64) -> Synthetic {
        Synthetic {
            articles,
            accounts: ["support", "returns", "billing", "sales"]
                .map(String::from)
                .to_vec(),
            end: DateTime::parse_from_rfc3339("2026-11-28T18:00:00Z")
                .expect("fixed date")
                .with_timezone(&Utc),
            days: 5 * 365,
            seed: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    pub tickets: u64,
    pub articles: u64,
}

const COMMIT_EVERY: u64 = 20_000;
/// Rows per multi-row INSERT (articles bind 21 values a row; SQLite allows 32,766).
const ROWS: usize = 200;

const FIRST: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Julia", "Lukas",
    "Marie", "Max", "Mia", "Noah", "Paul", "Sophie", "Tim", "Lena", "Jan", "Olivia", "James",
    "Sarah", "Michael", "Laura", "Thomas", "Sabine", "Jürgen", "Zoë", "Çağla",
];
const LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Martin",
    "Dubois",
    "Rossi",
    "Nowak",
    "Yılmaz",
];
/// Big providers carry most private mail; the rest goes to company domains `firmaN.example`.
const PROVIDERS: &[&str] = &[
    "gmail.example",
    "gmx.example",
    "web.example",
    "t-online.example",
    "outlook.example",
    "yahoo.example",
];
const SUBJECTS: &[&str] = &[
    "Wo bleibt meine Bestellung {order}?",
    "Order {order} not delivered",
    "Rechnung {invoice} fehlerhaft",
    "Rücksendung Artikel aus Bestellung {order}",
    "Question about invoice {invoice}",
    "Passwort zurücksetzen funktioniert nicht",
    "Lieferadresse ändern für Bestellung {order}",
    "Damaged item in order {order}",
    "Kündigung meines Kundenkontos",
    "Gutschein {code} wird nicht akzeptiert",
    "Falsche Größe geliefert ({order})",
    "Refund for order {order}",
    "Zahlung per Rechnung möglich?",
    "Login problem since the update",
    "Reklamation: Gerät defekt nach {days} Tagen",
    "Can I change my delivery date?",
    "Doppelte Abbuchung bei Bestellung {order}",
    "Tracking number {tracking} shows no progress",
];
const SENTENCES: &[&str] = &[
    "ich habe am {date} die Bestellung {order} aufgegeben und bisher nichts erhalten.",
    "Die Sendungsverfolgung zeigt seit Tagen keinen neuen Status an.",
    "Leider ist die Ware beschädigt angekommen, der Karton war eingedrückt.",
    "Bitte schicken Sie mir ein Rücksendeetikett für den Artikel.",
    "Auf der Rechnung {invoice} ist der Rabatt nicht berücksichtigt worden.",
    "Ich wurde zweimal belastet, bitte erstatten Sie den doppelten Betrag.",
    "Die Schuhe sind eine Nummer zu groß, ich hätte gern Größe 42.",
    "Mein Gutschein {code} wird an der Kasse als ungültig angezeigt.",
    "Können Sie die Lieferung an meine Büroadresse umleiten?",
    "Ich bitte um eine Gutschrift auf mein Kundenkonto.",
    "I ordered on {date} and the parcel {tracking} has not moved since.",
    "The item arrived broken and I would like a replacement or a refund.",
    "Could you please send me a corrected invoice with my company's VAT number?",
    "I cannot log in to my account, the password reset mail never arrives.",
    "The colour is different from the pictures on your website.",
    "Please cancel the order {order} if it has not shipped yet.",
    "My bank shows the payment twice, please check this.",
    "I have been a customer for years and this is the first problem I have had.",
    "Anbei finden Sie ein Foto des Schadens.",
    "Vielen Dank im Voraus für Ihre schnelle Hilfe.",
    "Das Gerät schaltet sich nach wenigen Minuten einfach ab.",
    "Ich habe bereits zweimal angerufen, aber niemand konnte mir helfen.",
    "Is there a way to combine two orders into one shipment?",
    "Bitte bestätigen Sie mir kurz den Eingang dieser Nachricht.",
];
const TYPES: &[&str] = &["question", "complaint", "return", "invoice"];

struct Customer {
    email: String,
    name: String,
}

fn customer(rng: &mut StdRng) -> Customer {
    // A pool of ~60,000 customers: the same people write again over the years.
    let k: u32 = rng.gen_range(0..60_000);
    let first = FIRST[k as usize % FIRST.len()];
    let last = LAST[(k as usize / FIRST.len()) % LAST.len()];
    let domain = if k % 10 < 7 {
        PROVIDERS[k as usize % PROVIDERS.len()].to_string()
    } else {
        format!("firma{}.example", k % 3000)
    };
    let local: String = format!("{first}.{last}{}", k % 97)
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'ä' => 'a',
            'ö' | 'ø' => 'o',
            'ü' => 'u',
            'ë' => 'e',
            'ç' => 'c',
            'ğ' => 'g',
            'ı' => 'i',
            c => c,
        })
        .collect();
    Customer {
        email: format!("{local}@{domain}"),
        name: format!("{first} {last}"),
    }
}

fn fill(template: &str, rng: &mut StdRng, date: DateTime<Utc>) -> String {
    let mut out = template.to_string();
    while let Some(start) = out.find('{') {
        let Some(len) = out[start..].find('}') else {
            break;
        };
        let value = match &out[start + 1..start + len] {
            "order" => rng.gen_range(100_000..999_999).to_string(),
            "invoice" => format!("RE-{}", rng.gen_range(10_000..99_999)),
            "code" => format!("SPRING{}", rng.gen_range(10..99)),
            "days" => rng.gen_range(2..60).to_string(),
            "tracking" => format!("JJD{:012}", rng.gen_range(0..1_000_000_000_000u64)),
            "date" => date.format("%d.%m.%Y").to_string(),
            other => unreachable!("no placeholder {other} in the templates"),
        };
        out.replace_range(start..=start + len, &value);
    }
    out
}

struct Row {
    ticket: Option<TicketRow>,
    ticket_id: i64,
    article_id: i64,
    account: String,
    message_id: String,
    in_reply_to: String,
    from: Customer,
    subject: String,
    body: String,
    raw: Vec<u8>,
    sha: String,
    followup: bool,
    received_at: String,
    created_at: String,
}

struct TicketRow {
    number: String,
    ticket_type: &'static str,
    status: &'static str,
}

/// A recent ticket that later mails may follow up: (id, account, subject, first Message-ID).
type Recent = (i64, String, String, String);

impl Store {
    /// Appends `spec.articles` generated articles (and their tickets) to the store.
    pub async fn generate(&self, spec: &Synthetic) -> Result<Generated, StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Unsupported(
                "generating a synthetic store needs a SQLite store".into(),
            ));
        }
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let (mut ticket_id, mut article_id): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM tickets), (SELECT COALESCE(MAX(id), 0) FROM articles)",
        )
        .fetch_one(&self.pool)
        .await?;
        let span = Duration::days(i64::from(spec.days.max(1)));
        let start = spec.end - span;
        let step = span.num_milliseconds() as f64 / spec.articles.max(1) as f64;
        let mut recent: Vec<Recent> = Vec::new();
        let mut done = Generated {
            tickets: 0,
            articles: 0,
        };
        let mut rows = Vec::with_capacity(ROWS);
        // One connection of its own: a page cache that holds a whole transaction (the default
        // 2 MB spills pages to the WAL mid-transaction), reset before it goes back to the pool.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA cache_size = -262144")
            .execute(&mut *conn)
            .await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for i in 0..spec.articles {
            let at = start + Duration::milliseconds((i as f64 * step) as i64);
            article_id += 1;
            let from = customer(&mut rng);
            let followup = !recent.is_empty() && rng.gen_bool(0.2);
            let (tid, account, subject, in_reply_to, ticket) = if followup {
                let (tid, account, subject, first_id) =
                    recent[rng.gen_range(0..recent.len())].clone();
                (tid, account, format!("Re: {subject}"), first_id, None)
            } else {
                ticket_id += 1;
                // Uneven: the first account receives about half of all mail.
                let a =
                    (rng.gen_range(0..8u32).trailing_zeros() as usize).min(spec.accounts.len() - 1);
                let account = spec.accounts[a].clone();
                let subject = fill(SUBJECTS[rng.gen_range(0..SUBJECTS.len())], &mut rng, at);
                // Older tickets are mostly closed.
                let age = (spec.end - at).num_days();
                let status = match (age, rng.gen_range(0..10)) {
                    (0..=14, 0..=5) | (15..=90, 0..=1) => "open",
                    (0..=14, _) | (15..=90, 2..=3) => "pending",
                    _ => "closed",
                };
                let ticket = TicketRow {
                    number: crate::ingest::route::ticket_number(ticket_id),
                    ticket_type: TYPES[rng.gen_range(0..TYPES.len())],
                    status,
                };
                (ticket_id, account, subject, String::new(), Some(ticket))
            };
            let message_id = message_id(&mut rng, &from.email, at);
            let mut body = "Guten Tag,\r\n\r\n".to_string();
            for _ in 0..rng.gen_range(3..8) {
                body.push_str(&fill(
                    SENTENCES[rng.gen_range(0..SENTENCES.len())],
                    &mut rng,
                    at,
                ));
                body.push_str(if rng.gen_bool(0.3) { "\r\n" } else { " " });
            }
            body.push_str(&format!(
                "\r\n\r\nMit freundlichen Grüßen\r\n{}\r\n",
                from.name
            ));
            let received_at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let mut raw = format!(
                "From: {} <{}>\r\nTo: {}@shop.example\r\nSubject: {}\r\nMessage-ID: <{message_id}>\r\n",
                from.name, from.email, account, subject
            );
            if followup {
                raw.push_str(&format!(
                    "In-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n"
                ));
            }
            raw.push_str(&format!(
                "Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n{body}",
                at.to_rfc2822()
            ));
            let raw = raw.into_bytes();
            if ticket.is_some() {
                // Follow-ups answer one of the last 500 tickets.
                if recent.len() == 500 {
                    recent.swap_remove(rng.gen_range(0..500));
                }
                recent.push((tid, account.clone(), subject.clone(), message_id.clone()));
            }
            rows.push(Row {
                ticket,
                ticket_id: tid,
                article_id,
                account,
                message_id,
                in_reply_to,
                sha: sha256_hex(&raw),
                from,
                subject,
                body,
                raw,
                followup,
                received_at,
                created_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            if rows.len() == ROWS || i + 1 == spec.articles {
                write_rows(&mut tx, &rows).await?;
                done.tickets += rows.iter().filter(|r| r.ticket.is_some()).count() as u64;
                done.articles += rows.len() as u64;
                rows.clear();
            }
            if (i + 1) % COMMIT_EVERY == 0 {
                tx.commit().await?;
                tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            }
        }
        tx.commit().await?;
        sqlx::query("PRAGMA cache_size = -2000")
            .execute(&mut *conn)
            .await?;
        Ok(done)
    }
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(_, d)| d)
}

/// A Message-ID in one of the shapes real mailers write. Most are random (Gmail, Outlook,
/// Apple Mail and Thunderbird put random or UUID parts first), so in the store's indexes on
/// Message-ID a new mail's key lands at a random place, as it does in a real store; some
/// start with the time and cluster.
fn message_id(rng: &mut StdRng, from: &str, at: DateTime<Utc>) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_";
    fn random(rng: &mut StdRng, n: usize) -> String {
        (0..n)
            .map(|_| B64[rng.gen_range(0..B64.len())] as char)
            .collect()
    }
    match rng.gen_range(0..10) {
        0..=3 => format!("CA{}@mail.gmail.com", random(rng, 42)),
        4..=5 => format!(
            "AM0PR04MB{}@AM0PR04MB{}.eurprd04.prod.outlook.com",
            random(rng, 10),
            random(rng, 4)
        ),
        6..=7 => format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}@{}",
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen::<u16>(),
            rng.gen::<u16>(),
            rng.gen::<u64>() & 0xFFFF_FFFF_FFFF,
            domain_of(from)
        ),
        _ => format!(
            "{}.{}@{}",
            at.format("%Y%m%d%H%M%S"),
            random(rng, 8),
            domain_of(from)
        ),
    }
}

async fn write_rows(tx: &mut sqlx::Transaction<'_, Any>, rows: &[Row]) -> Result<(), StoreError> {
    let tickets: Vec<(&Row, &TicketRow)> = rows
        .iter()
        .filter_map(|r| r.ticket.as_ref().map(|t| (r, t)))
        .collect();
    if !tickets.is_empty() {
        let mut q = SqlBuilder::new(
            Backend::of(tx),
            "INSERT INTO tickets (id, number, account, ticket_type, status, subject, customer_email, \
             customer_name, created_at, updated_at) ",
        );
        q.push_values(&tickets, |b, (r, t)| {
            b.push_bind(r.ticket_id)
                .push_bind(t.number.as_str())
                .push_bind(r.account.as_str())
                .push_bind(t.ticket_type)
                .push_bind(t.status)
                .push_bind(r.subject.as_str())
                .push_bind(r.from.email.as_str())
                .push_bind(r.from.name.as_str())
                .push_bind(r.created_at.as_str())
                .push_bind(r.created_at.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    // As ingestion writes them: the text compressed, its words in SQLite's full-text index or
    // PostgreSQL's word column (see `article_text`, `word_vector`).
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
             html_body, raw, raw_sha256, size, parse_problem, is_followup, received_at, \
             created_at{words}) "
        ),
    );
    q.push_values(rows, |b, r| {
        let b = b
            .push_bind(r.article_id)
            .push_bind(r.ticket_id)
            .push_bind(r.account.as_str())
            .push_bind(source_key(r))
            .push_bind(r.message_id.as_str())
            .push_bind(r.in_reply_to.as_str())
            .push_bind(r.in_reply_to.as_str())
            .push_bind(r.from.email.as_str())
            .push_bind(r.from.name.as_str())
            .push_bind(format!("{}@shop.example", r.account))
            .push_bind("")
            .push_bind(r.subject.as_str())
            .push_bind("")
            .push_bind(pack(&r.body))
            .push_bind("")
            .push_bind(Vec::<u8>::new())
            .push_bind(r.sha.as_str())
            .push_bind(r.raw.len() as i64)
            .push_bind("")
            .push_bind(i64::from(r.followup))
            .push_bind(r.received_at.as_str())
            .push_bind(r.created_at.as_str());
        if backend == Backend::Postgres {
            b.push_bind_as(words_column(&r.subject, &r.body), "tsvector");
        }
    });
    q.build().execute(&mut **tx).await?;
    let texts: Vec<(i64, &str, &str)> = rows
        .iter()
        .map(|r| (r.article_id, r.subject.as_str(), r.body.as_str()))
        .collect();
    index_words(tx, &texts).await?;
    insert_message_id_hashes(
        tx,
        rows.iter().map(|r| (r.article_id, r.message_id.as_str())),
    )
    .await?;
    // As ingestion stores them: compressed, in their own table.
    let packed: Vec<(i64, Vec<u8>)> = rows
        .iter()
        .map(|r| (r.article_id, RawCodec::CURRENT.encode(&r.raw)))
        .collect();
    let packed: Vec<(i64, &[u8])> = packed.iter().map(|(id, p)| (*id, p.as_slice())).collect();
    insert_raw_mails(tx, &packed).await?;
    // As ingestion records them: the owner of each message key, and the processed source key.
    let keys: Vec<Option<String>> = rows
        .iter()
        .map(|r| key_of(&r.from.email, &r.message_id, &r.raw).map(|k| k.key))
        .collect();
    for account in accounts_of(rows) {
        let mine = || rows.iter().zip(&keys).filter(|(r, _)| r.account == account);
        let owners: Vec<(&str, i64, i64)> = mine()
            .filter_map(|(r, key)| Some((key.as_deref()?, r.ticket_id, r.article_id)))
            .collect();
        // Generated rows each have their own time; the owner rows carry the newest one.
        let newest = mine().map(|(r, _)| r.created_at.as_str()).max();
        insert_messages(tx, account, &owners, newest.unwrap_or_default()).await?;
        let source_keys: Vec<String> = mine().map(|(r, _)| source_key(r)).collect();
        let processed: Vec<(&str, &str, Option<i64>, String)> = mine()
            .zip(&source_keys)
            .map(|((r, _), key)| {
                let outcome = if r.followup { "followup" } else { "ticket" };
                (
                    key.as_str(),
                    outcome,
                    Some(r.article_id),
                    r.created_at.clone(),
                )
            })
            .collect();
        insert_processed(tx, account, &processed).await?;
    }
    Ok(())
}

fn accounts_of(rows: &[Row]) -> Vec<&str> {
    let mut accounts: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

fn source_key(r: &Row) -> String {
    format!("generated:{}", r.article_id)
}
