//! When two fetched mails are the same message. Pure.
//!
//! A customer who writes to support@ with returns@ in CC sends one message; both mailboxes get a
//! copy, with different `Received`/`Delivered-To` lines, so the bytes differ. The same message is
//! the same Message-ID **from the same sender address** (From, compared without case): a
//! Message-ID alone is not trusted, because careless mail programs and spammers reuse them, and
//! a different sender reusing one must not join somebody else's ticket. A mail without a
//! Message-ID or without a From address is never merged with anything.

use crate::ingest::parse::ParsedMail;

/// The key under which the store remembers a message: `<sender lower case> <Message-ID>`.
pub fn message_key(mail: &ParsedMail) -> Option<String> {
    if mail.parse_problem.is_some() {
        return None;
    }
    key_of(&mail.from_email, &mail.message_id)
}

/// The key of a message with this sender address and Message-ID (see [`message_key`]); `None`
/// when either is missing.
pub fn key_of(from_email: &str, message_id: &str) -> Option<String> {
    let from = from_email.trim();
    let id = message_id.trim();
    if from.is_empty() || id.is_empty() {
        return None;
    }
    Some(format!("{} {id}", from.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    #[test]
    fn copies_in_two_mailboxes_have_one_key() {
        let to_support = parse(
            b"Delivered-To: support@shop.test\r\nFrom: Kunde <Kunde@Customer.test>\r\n\
To: support@shop.test\r\nCc: returns@shop.test\r\nMessage-ID: <abc@customer.test>\r\n\r\nx",
        );
        let to_returns = parse(
            b"Delivered-To: returns@shop.test\r\nFrom: kunde@customer.test\r\n\
To: support@shop.test\r\nCc: returns@shop.test\r\nMessage-ID: <abc@customer.test>\r\n\r\nx",
        );
        assert_eq!(
            message_key(&to_support).as_deref(),
            Some("kunde@customer.test abc@customer.test")
        );
        assert_eq!(message_key(&to_support), message_key(&to_returns));
    }

    #[test]
    fn a_reused_message_id_from_another_sender_is_another_message() {
        let a = parse(b"From: a@customer.test\r\nMessage-ID: <same@x>\r\n\r\nx");
        let b = parse(b"From: b@customer.test\r\nMessage-ID: <same@x>\r\n\r\nx");
        assert_ne!(message_key(&a), message_key(&b));
    }

    #[test]
    fn mails_without_id_or_sender_are_never_merged() {
        assert_eq!(
            message_key(&parse(b"From: a@b.test\r\nSubject: x\r\n\r\nx")),
            None
        );
        assert_eq!(
            message_key(&parse(b"Message-ID: <m@x>\r\nSubject: x\r\n\r\nx")),
            None
        );
    }
}
