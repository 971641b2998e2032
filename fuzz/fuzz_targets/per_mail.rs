//! Everything that runs per mail, end to end: parse → thread lookup → reply rules → the rows of
//! `store_batch`, committed to an in-memory SQLite store. Inputs are raw bytes or structured
//! mails with arbitrary Unicode subjects, names and Message-IDs (RFC 2047-encoded or raw UTF-8),
//! in small batches where later mails may answer earlier ones by reference or by ticket tag.
//! Any panic, and any store error (every mail must become a ticket or a follow-up), is a finding.
//! Run: `scripts/fuzz per_mail 3600`, seeded with tests/data/*.eml (each written as an
//! `Input::Raw` of one mail: the raw bytes of a mail would decode to an empty batch), or
//! `cargo +nightly fuzz run per_mail -- -max_total_time=120` from an empty corpus.
#![no_main]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mail2ticket::config::CustomerSource;
use mail2ticket::ingest::parse::parse_or_panic;
use mail2ticket::ingest::reply::ReplyPolicy;
use mail2ticket::store::{Incoming, Outcome, Store, TicketRules};

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<Vec<u8>>),
    Structured(Vec<Mail>),
}

#[derive(Arbitrary, Debug)]
struct Mail {
    subject: String,
    from_name: String,
    from_local: String,
    message_id: String,
    /// Answers the mail this many places earlier in the batch (by its Message-ID).
    answers: Option<u8>,
    /// Puts `[Ticket#<n>]` into the subject.
    tag: Option<u64>,
    extra_references: Vec<String>,
    body: String,
    encode: bool,
}

fn header_text(text: &str, encode: bool) -> String {
    // Header lines must not break: no CR/LF inside a value.
    let flat: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if encode {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(flat)
        )
    } else {
        flat
    }
}

fn raw(mail: &Mail, ids: &[String]) -> Vec<u8> {
    let mut subject = header_text(&mail.subject, mail.encode);
    if let Some(n) = mail.tag {
        subject.push_str(&format!(" [Ticket#{n}]"));
    }
    let mut out = format!(
        "From: {} <{}@customer.example>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{}>\r\n",
        header_text(&mail.from_name, mail.encode),
        header_text(&mail.from_local, false).replace(['<', '>', '@', ' '], ""),
        header_text(&mail.message_id, false),
    );
    let answered = mail
        .answers
        .and_then(|back| ids.len().checked_sub(1 + back as usize))
        .map(|i| ids[i].clone());
    if let Some(id) = &answered {
        out.push_str(&format!("In-Reply-To: <{id}>\r\n"));
    }
    if !mail.extra_references.is_empty() {
        let refs: Vec<String> = mail
            .extra_references
            .iter()
            .map(|r| format!("<{}>", header_text(r, false)))
            .collect();
        out.push_str(&format!("References: {}\r\n", refs.join(" ")));
    }
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    out.push_str(&mail.body);
    out.into_bytes()
}

fn rules() -> TicketRules {
    TicketRules {
        account: "support".into(),
        ticket_type: "question".into(),
        ticket_status: "open".into(),
        subject_tag: "Ticket#".into(),
        customer: CustomerSource::default(),
        test_mail_key: None,
        reply: Some(ReplyPolicy {
            account_email: "support@example.test".into(),
            sender_name: Some("Support".into()),
            reply_to: None,
            subject_template: "Re: {subject}".into(),
            body_template: "Hello {customer_name},\nticket {ticket_number}: {subject}\n".into(),
            subject_tag: "Ticket#".into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            limit: 3,
            max_age: Duration::from_secs(7 * 86400),
            message_id_domain: "tickets.example.test".into(),
            own_addresses: vec!["support@example.test".into()],
        }),
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    store: Mutex<(Store, u32)>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(Store::open_in_memory()).unwrap();
        World {
            runtime,
            store: Mutex::new((store, 0)),
        }
    })
}

fuzz_target!(|input: Input| {
    let raws: Vec<Vec<u8>> = match &input {
        Input::Raw(raws) => raws.iter().take(8).cloned().collect(),
        Input::Structured(mails) => {
            let mut ids = Vec::new();
            let mut out = Vec::new();
            for m in mails.iter().take(8) {
                out.push(raw(m, &ids));
                ids.push(header_text(&m.message_id, false));
            }
            out
        }
    };
    if raws.is_empty() {
        return;
    }
    static KEY: AtomicU32 = AtomicU32::new(0);
    let incoming: Vec<Incoming> = raws
        .into_iter()
        .map(|raw| Incoming {
            source_key: mail2ticket::source::SourceKey::Imap { folder: "INBOX".into(), uidvalidity: 1, uid: KEY.fetch_add(1, Ordering::Relaxed) },
            parsed: parse_or_panic(&raw),
            raw,
            received_at: chrono::Utc::now(),
            arrived: None,
            extent: mail2ticket::ingest::Extent::Whole,
        })
        .collect();
    let w = world();
    let mut guard = w.store.lock().unwrap();
    // A fresh store now and then keeps the database (and each lookup) small.
    if guard.1 >= 2000 {
        let fresh = w.runtime.block_on(Store::open_in_memory()).unwrap();
        *guard = (fresh, 0);
    }
    guard.1 += 1;
    let outcomes = w
        .runtime
        .block_on(guard.0.store_batch(&rules(), &incoming))
        .unwrap_or_else(|e| panic!("a mail could not be stored: {e}"));
    assert_eq!(outcomes.len(), incoming.len());
    for o in &outcomes {
        assert!(
            matches!(
                o,
                Outcome::NewTicket { .. } | Outcome::FollowUp { .. } | Outcome::Duplicate { .. }
            ),
            "{o:?}"
        );
    }
});
