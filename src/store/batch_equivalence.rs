//! For any batch, storing it at once and storing its mails one by one give the same store: the
//! same tickets with the same numbers, the same articles in them, the same replies queued or
//! refused for the same reasons, the same copies and the same processed keys. This is what lets
//! the pass size its batches freely, and retry a failed batch mail by mail.

use proptest::prelude::*;

use super::{Incoming, Store, TicketRules};
use crate::ingest::parse::parse;

/// One generated mail. Small ranges on purpose, so that collisions are common: the same source
/// key twice, the same Message-ID from the same or another sender, answers to earlier mails,
/// tags of tickets that exist or not, the same recipient more often than the rate limit allows.
#[derive(Debug, Clone)]
struct Spec {
    source: u8,
    message_id: Option<u8>,
    sender: u8,
    body: u8,
    in_reply_to: Option<u8>,
    tag: Option<u8>,
    auto_submitted: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..10u8,
        proptest::option::of(0..4u8),
        0..3u8,
        0..2u8,
        proptest::option::of(0..4u8),
        proptest::option::weighted(0.2, 0..4u8),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(source, message_id, sender, body, in_reply_to, tag, auto_submitted)| Spec {
                source,
                message_id,
                sender,
                body,
                in_reply_to,
                tag,
                auto_submitted,
            },
        )
}

impl Spec {
    fn mail(&self) -> Incoming {
        let mut raw = format!(
            "From: Kunde {s} <kunde{s}@kunde.example>\r\nTo: support@shop.test\r\n",
            s = self.sender
        );
        let tag = self
            .tag
            .map(|n| format!("[Ticket#{}] ", 10001 + u32::from(n)))
            .unwrap_or_default();
        raw.push_str(&format!("Subject: {tag}Frage {}\r\n", self.body));
        if let Some(id) = self.message_id {
            raw.push_str(&format!("Message-ID: <m{id}@kunde.example>\r\n"));
        }
        if let Some(id) = self.in_reply_to {
            raw.push_str(&format!("In-Reply-To: <m{id}@kunde.example>\r\n"));
        }
        if self.auto_submitted {
            raw.push_str("Auto-Submitted: auto-generated\r\n");
        }
        raw.push_str(&format!("\r\nText {}\r\n", self.body));
        let raw = raw.into_bytes();
        Incoming {
            source_key: format!("pop3:{}", self.source).parse().unwrap(),
            parsed: parse(&raw),
            raw,
            received_at: chrono::Utc::now(),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        }
    }
}

/// Everything a batch writes, without times and with the random part of our Message-IDs blanked.
async fn dump(store: &Store) -> Vec<String> {
    let queries = [
        "SELECT id || ' ' || number || ' ' || account || ' ' || ticket_type || ' ' || status || ' ' || subject || ' ' || customer_email FROM tickets ORDER BY id",
        "SELECT id || ' ' || ticket_id || ' ' || source_key || ' ' || message_id || ' ' || is_followup || ' ' || is_bounce || ' ' || reply_note FROM articles ORDER BY id",
        "SELECT ticket_id || ' ' || article_id || ' ' || recipient || ' ' || status FROM outbox ORDER BY id",
        "SELECT message_key || ' ' || ticket_id || ' ' || article_id FROM messages ORDER BY article_id",
        "SELECT article_id || ' ' || account || ' ' || source_key FROM message_copies ORDER BY id",
        "SELECT source_key || ' ' || outcome || ' ' || COALESCE(article_id, 0) FROM processed ORDER BY source_key",
        // The words each article has in the full-text index: its token count per column.
        "SELECT id || ' ' || hex(sz) FROM articles_fts_docsize ORDER BY id",
    ];
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<(String,)> = sqlx::query_as(q).fetch_all(store.pool()).await.unwrap();
        out.extend(rows.into_iter().map(|(row,)| blank_reply_ids(&row)));
    }
    out
}

/// `m2t.<ticket>.<random>@` → `m2t.<ticket>.*@`.
fn blank_reply_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(crate::ingest::reply::compose::ID_PREFIX) {
        let (before, id) = rest.split_at(at);
        out.push_str(before);
        let end = id.find('@').unwrap_or(id.len());
        let random_from = id[..end].rfind('.').map_or(end, |dot| dot + 1);
        out.push_str(&id[..random_from]);
        out.push('*');
        rest = &id[end..];
    }
    out.push_str(rest);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn one_batch_and_one_mail_at_a_time_give_the_same_store(
        specs in proptest::collection::vec(spec(), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (at_once, one_by_one) = runtime.block_on(async {
            let rules = TicketRules::with_test_replies("support");
            let mails: Vec<Incoming> = specs.iter().map(Spec::mail).collect();
            let batch = Store::open_in_memory().await.unwrap();
            let single = Store::open_in_memory().await.unwrap();
            let outcomes = batch.store_batch(&rules, &mails).await.unwrap();
            let mut alone = Vec::new();
            for mail in &mails {
                alone.extend(single.store_batch(&rules, std::slice::from_ref(mail)).await.unwrap());
            }
            assert_eq!(outcomes, alone);
            (dump(&batch).await, dump(&single).await)
        });
        prop_assert_eq!(at_once, one_by_one);
    }
}

#[test]
fn reply_ids_are_blanked_after_the_ticket_number() {
    assert_eq!(
        blank_reply_ids("auto-reply queued to a@b (Message-ID <m2t.10001.0f3a@tickets.shop.test>)"),
        "auto-reply queued to a@b (Message-ID <m2t.10001.*@tickets.shop.test>)"
    );
}
