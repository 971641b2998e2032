//! When two fetched mails are the same message. Pure.
//!
//! A customer who writes to support@ with returns@ in CC sends one message; both mailboxes get a
//! copy, with different `Received`/`Delivered-To` lines, so the bytes differ. Such a copy must
//! not open a second ticket or send a second reply. But a Message-ID is only what the sending
//! program wrote: careless mail programs, shop plug-ins, form mailers and test tools reuse one
//! for different mails, and merging those would lose a customer's mail (only the first one's
//! bytes are stored). A wrong split costs a click; a wrong merge loses mail. So a mail is a copy
//! of another only when all of this is the same:
//! - the sender address (From, compared without case),
//! - the Message-ID,
//! - the content: every header field except those added on the way into a mailbox
//!   ([`is_delivery_field`]), in order, and the body bytes; line ends (CRLF or LF) do not count.
//!
//! A mail without a Message-ID or without a From address is never merged with anything (it is
//! found again only by its exact bytes, see migration 0011).

use sha2::{Digest, Sha256};

use crate::ingest::parse::ParsedMail;

/// How the store finds a message again (`messages.message_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageKey {
    /// `<sender lower case> <Message-ID> <content>`: the key written for every message stored
    /// since migration 0014; `<content>` is [`content_fingerprint`].
    pub key: String,
    /// `<sender lower case> <Message-ID>`: the key stores wrote before migration 0014, without
    /// the content. A message stored under it is a copy of this mail only if its raw mail has
    /// this mail's [`content`](Self::content).
    pub without_content: String,
    /// [`content_fingerprint`] of the mail.
    pub content: String,
}

/// The key under which the store remembers a message; `None` when the mail has no sender
/// address, no Message-ID, or was not parsed cleanly.
pub fn message_key(mail: &ParsedMail, raw: &[u8]) -> Option<MessageKey> {
    if mail.parse_problem.is_some() {
        return None;
    }
    key_of(&mail.from_email, &mail.message_id, raw)
}

/// The key of a message with this sender address, Message-ID and raw bytes (see
/// [`message_key`]); `None` when the sender or the Message-ID is missing.
pub fn key_of(from_email: &str, message_id: &str, raw: &[u8]) -> Option<MessageKey> {
    let from = from_email.trim();
    let id = message_id.trim();
    if from.is_empty() || id.is_empty() {
        return None;
    }
    let without_content = format!("{} {id}", from.to_lowercase());
    let content = content_fingerprint(raw);
    Some(MessageKey {
        key: format!("{without_content} {content}"),
        without_content,
        content,
    })
}

/// A hash of what the sender wrote: every header field but the delivery ones, in order and as
/// written (folding included), and the body; each line without its line end. 128 bits of
/// SHA-256 as 32 hex digits: enough that two different mails never share one, short enough
/// to keep the index of `messages` small.
pub fn content_fingerprint(raw: &[u8]) -> String {
    let mut hash = Sha256::new();
    let mut lines = raw.split(|b| *b == b'\n').map(without_cr);
    // The header: fields up to the first empty line. A field's continuation lines (starting
    // with a space or tab) belong to it, so they are kept or left out with it.
    let mut keep_field = true;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            keep_field = !is_delivery_field(field_name(line));
        }
        if keep_field {
            hash.update(line);
            hash.update(b"\n");
        }
    }
    // Header and body apart, so a header line cannot pass for a body line.
    hash.update(b"\0");
    for line in lines {
        hash.update(line);
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The name of the header field a line starts, as written (a line without a colon is all name).
fn field_name(line: &[u8]) -> &[u8] {
    let end = line.iter().position(|b| *b == b':').unwrap_or(line.len());
    line[..end].trim_ascii()
}

/// Header fields that servers add on a mail's way into one mailbox: trace fields (RFC 5321
/// 4.4), delivery and envelope notes, spam and virus verdicts, and the flags some mail stores
/// write into the mail. Two copies of one message differ in these and nothing else.
const DELIVERY_FIELDS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "x-delivered-to",
    "x-original-recipient",
    "envelope-to",
    "x-envelope-to",
    "x-envelope-from",
    "x-rcpt-to",
    "x-received",
    "authentication-results",
    "received-spf",
    "x-virus-scanned",
    "x-virus-status",
    "x-greylist",
    "x-quarantine-id",
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "content-length",
    "lines",
];

/// Prefixes of delivery fields that come in families (ARC seals, spam filters, Exchange's
/// per-recipient notes).
const DELIVERY_FIELD_PREFIXES: &[&str] = &[
    "arc-",
    "x-spam-",
    "x-amavis-",
    "x-rspamd-",
    "x-ms-exchange-organization-",
    "x-ms-exchange-crosstenant-",
    "x-ms-exchange-transport-",
    "x-forefront-antispam-",
    "x-microsoft-antispam",
];

/// Whether a header field (by name, any case) is one a server adds on delivery.
pub fn is_delivery_field(name: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    DELIVERY_FIELDS.iter().any(|f| name == f.as_bytes())
        || DELIVERY_FIELD_PREFIXES
            .iter()
            .any(|p| name.starts_with(p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn key(raw: &[u8]) -> Option<String> {
        message_key(&parse(raw), raw).map(|k| k.key)
    }

    #[test]
    fn copies_in_two_mailboxes_have_one_key() {
        let to_support: &[u8] = b"Return-Path: <kunde@customer.test>\r\n\
Delivered-To: support@shop.test\r\nReceived: from mx (mx [10.0.0.1])\r\n\tby shop.test; Mon, 1 Jan 2024\r\n\
From: Kunde <Kunde@Customer.test>\r\nTo: support@shop.test\r\nCc: returns@shop.test\r\n\
Subject: Retoure\r\nMessage-ID: <abc@customer.test>\r\n\r\nHallo\r\n";
        let to_returns: &[u8] = b"X-Original-To: returns@shop.test\r\n\
Delivered-To: returns@shop.test\r\nX-Spam-Status: No, score=0.1\r\n\
From: Kunde <Kunde@Customer.test>\r\nTo: support@shop.test\r\nCc: returns@shop.test\r\n\
Subject: Retoure\r\nMessage-ID: <abc@customer.test>\r\n\r\nHallo\r\n";
        let k = message_key(&parse(to_support), to_support).unwrap();
        assert!(k.key.starts_with("kunde@customer.test abc@customer.test "));
        assert_eq!(k.without_content, "kunde@customer.test abc@customer.test");
        assert_eq!(key(to_support), key(to_returns));
    }

    #[test]
    fn line_ends_do_not_make_another_message() {
        let crlf: &[u8] = b"From: a@b.test\r\nMessage-ID: <m@x>\r\n\r\nline one\r\nline two\r\n";
        let lf: &[u8] = b"From: a@b.test\nMessage-ID: <m@x>\n\nline one\nline two\n";
        assert_eq!(key(crlf), key(lf));
    }

    #[test]
    fn a_reused_message_id_from_another_sender_is_another_message() {
        assert_ne!(
            key(b"From: a@customer.test\r\nMessage-ID: <same@x>\r\n\r\nx"),
            key(b"From: b@customer.test\r\nMessage-ID: <same@x>\r\n\r\nx")
        );
    }

    #[test]
    fn a_reused_message_id_with_other_content_is_another_message() {
        let first: &[u8] = b"From: shop@plugin.test\r\nSubject: Bestellung 1\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <fixed@plugin>\r\n\r\nBestellung 1\r\n";
        let other_body: &[u8] = b"From: shop@plugin.test\r\nSubject: Bestellung 1\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <fixed@plugin>\r\n\r\nBestellung 2\r\n";
        let other_subject: &[u8] = b"From: shop@plugin.test\r\nSubject: Bestellung 2\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <fixed@plugin>\r\n\r\nBestellung 1\r\n";
        let other_date: &[u8] = b"From: shop@plugin.test\r\nSubject: Bestellung 1\r\n\
Date: Mon, 1 Jan 2024 10:05:00 +0000\r\nMessage-ID: <fixed@plugin>\r\n\r\nBestellung 1\r\n";
        let other_structure: &[u8] = b"From: shop@plugin.test\r\nSubject: Bestellung 1\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <fixed@plugin>\r\n\
Content-Type: text/html\r\n\r\nBestellung 1\r\n";
        for other in [other_body, other_subject, other_date, other_structure] {
            assert_ne!(key(first), key(other), "{}", String::from_utf8_lossy(other));
            // The key of stores before migration 0014 cannot tell them apart.
            assert_eq!(
                message_key(&parse(first), first).unwrap().without_content,
                message_key(&parse(other), other).unwrap().without_content
            );
        }
    }

    #[test]
    fn a_delivery_field_folded_over_lines_is_left_out_whole() {
        let a: &[u8] =
            b"Received: from a\r\n\tby b\r\n\tfor <x@y>\r\nFrom: a@b.test\r\nMessage-ID: <m@x>\r\n\r\nx";
        let b: &[u8] = b"Received: from c\r\n by d\r\nFrom: a@b.test\r\nMessage-ID: <m@x>\r\n\r\nx";
        assert_eq!(key(a), key(b));
    }

    #[test]
    fn a_header_line_is_not_a_body_line() {
        assert_ne!(
            content_fingerprint(b"From: a@b.test\r\nX-A: 1\r\n\r\n"),
            content_fingerprint(b"From: a@b.test\r\n\r\nX-A: 1\r\n")
        );
    }

    #[test]
    fn mails_without_id_or_sender_are_never_merged() {
        assert_eq!(key(b"From: a@b.test\r\nSubject: x\r\n\r\nx"), None);
        assert_eq!(key(b"Message-ID: <m@x>\r\nSubject: x\r\n\r\nx"), None);
    }

    #[test]
    fn delivery_fields_are_told_by_name_in_any_case() {
        for name in [
            "Received",
            "DELIVERED-TO",
            "ARC-Seal",
            "X-Spam-Flag",
            "x-ms-exchange-organization-scl",
        ] {
            assert!(is_delivery_field(name.as_bytes()), "{name}");
        }
        for name in [
            "From",
            "Subject",
            "Date",
            "Message-ID",
            "Content-Type",
            "DKIM-Signature",
        ] {
            assert!(!is_delivery_field(name.as_bytes()), "{name}");
        }
    }
}
