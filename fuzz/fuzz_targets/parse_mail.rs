//! Raw bytes → ticket fields, without a store: parse, the fields a ticket and its article take,
//! thread recognition by subject tag, and the automatic-reply rules plus the composed reply.
//! Run: `cargo +nightly fuzz run parse_mail -- -max_total_time=300`.
#![no_main]

use std::time::Duration;

use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use mail2ticket::ingest::parse::parse_or_panic as parse;
use mail2ticket::ingest::thread::ticket_number_in_subject;
use mail2ticket::ingest::reply::{compose, rules, ReplyPolicy};
use mail2ticket::store::sha256_hex;

fuzz_target!(|data: &[u8]| {
    let mail = parse(data);

    // Invariants of "never fails": a flagged mail keeps a subject, no field breaks an insert.
    if mail.parse_problem.is_some() {
        assert!(!mail.subject.is_empty());
    }
    for id in mail.in_reply_to.iter().chain(&mail.references) {
        assert!(!id.is_empty());
    }
    let _ = sha256_hex(data);
    let customer = mail.reply_to_email.as_deref().unwrap_or(&mail.from_email);
    let _ = (
        customer.len(),
        mail.in_reply_to.join(" "),
        mail.references.join(" "),
    );
    let _ = ticket_number_in_subject(&mail.subject, "Ticket#");

    let policy = ReplyPolicy {
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
    };
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
        .unwrap();
    if let Ok(recipient) = rules::check(&policy, &mail, now) {
        let reply = compose::compose(
            &policy,
            &mail,
            "10001",
            &recipient,
            "r1@tickets.example.test",
            now,
        );
        if let Ok(reply) = reply {
            // The reply must be a mail we can read back.
            let back = parse(&reply.message);
            assert!(back.parse_problem.is_none());
        }
    }
});
