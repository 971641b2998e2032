//! Delivery reports: which mail a bounce returns. Pure: a parsed message in, the returned mail's
//! Message-ID out, so that a bounce of one of our replies can join that reply's ticket.
//!
//! Two shapes are understood:
//! * RFC 3464 delivery status notifications: `multipart/report` with the returned mail's header
//!   as `message/rfc822-headers` (Postfix writes `text/rfc822-headers`) or the whole mail as
//!   `message/rfc822` (`message/global` and `message/global-headers` for RFC 6533);
//! * non-standard bounces (qmail, old Exchange and friends): a mail from `MAILER-DAEMON` or
//!   `postmaster`, or with an empty Return-Path, that carries the returned mail as an attached
//!   `message/rfc822` or quotes its header lines in the text ("Message-ID: <…>").
//!
//! Whether the returned Message-ID is really one of ours is the store's question (the outbox).

use mail_parser::{Message, MessageParser, MimeHeaders};

/// Content types of a part that holds a returned mail or its header.
const RETURNED_TYPES: [&str; 6] = [
    "message/rfc822-headers",
    "text/rfc822-headers",
    "message/rfc822",
    "message/global",
    "message/global-headers",
    "text/rfc822",
];

/// `MAILER-DAEMON` or `postmaster` in any spelling: the senders of bounces.
pub fn is_bounce_sender(address: &str) -> bool {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    let local = local.split('+').next().unwrap_or(local);
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    squashed.starts_with("mailerdaemon") || squashed.starts_with("postmaster")
}

/// The Message-ID (without brackets) of the mail this bounce returns, if the message is a
/// delivery report and names one.
pub fn returned_message_id(
    msg: &Message<'_>,
    from: &str,
    return_path: Option<&str>,
) -> Option<String> {
    let is_report = msg.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let looks_like_bounce = is_report || is_bounce_sender(from) || return_path == Some("");
    if !looks_like_bounce {
        return None;
    }
    // The returned mail or its header as a part of its own: the standard way, and what most
    // non-standard bounces do as well.
    for part in msg.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase();
        if !RETURNED_TYPES.contains(&ctype.as_str()) {
            continue;
        }
        let id = match part.message() {
            Some(nested) => nested.message_id().map(str::to_string),
            None => MessageParser::default()
                .parse_headers(part.contents())
                .and_then(|h| h.message_id().map(str::to_string)),
        };
        if let Some(id) = id.map(|i| clean(&i)).filter(|i| !i.is_empty()) {
            return Some(id);
        }
    }
    // A bounce that quotes the returned header in its text. Only for mails that are clearly
    // bounces: a customer quoting a header in a normal mail must not be taken for one.
    if is_report || is_bounce_sender(from) {
        let text = msg.body_text(0)?;
        return quoted_message_id(&text);
    }
    None
}

/// The first `Message-ID: <…>` header line quoted in a text.
fn quoted_message_id(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start_matches(['>', ' ', '\t']);
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let value = value.trim();
        let id = value.strip_prefix('<')?.split_once('>')?.0;
        Some(clean(id)).filter(|i| !i.is_empty() && i.contains('@'))
    })
}

fn clean(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use crate::ingest::parse::parse;

    #[test]
    fn postfix_dsn_with_text_rfc822_headers_names_the_returned_mail() {
        let m = parse(include_bytes!(
            "../../tests/data/postfix_dsn_text_rfc822_headers.eml"
        ));
        assert_eq!(
            m.automation.returned_message_id.as_deref(),
            Some("m2t.10001.4f1c@tickets.example.test")
        );
        assert!(m.automation.is_delivery_report);
    }

    #[test]
    fn rfc3464_dsn_with_the_whole_mail_attached() {
        let m = parse(include_bytes!(
            "../../tests/data/exchange_dsn_message_rfc822.eml"
        ));
        assert_eq!(
            m.automation.returned_message_id.as_deref(),
            Some("m2t.10002.77aa@tickets.example.test")
        );
    }

    #[test]
    fn qmail_bounce_quoting_the_header_in_plain_text() {
        let m = parse(include_bytes!(
            "../../tests/data/qmail_bounce_plain_text.eml"
        ));
        assert!(!m.automation.is_delivery_report);
        assert_eq!(
            m.automation.returned_message_id.as_deref(),
            Some("m2t.10003.9e@tickets.example.test")
        );
    }

    #[test]
    fn a_customer_quoting_a_header_is_no_bounce() {
        let raw = b"From: kunde@customer.test\r\nSubject: see below\r\n\r\n\
Message-ID: <m2t.10004.1@tickets.example.test>\r\nplease explain\r\n";
        assert_eq!(parse(raw).automation.returned_message_id, None);
        let forwarded = b"From: kunde@customer.test\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfyi\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.test\r\nMessage-ID: <fwd@y.test>\r\n\r\nhi\r\n--b--\r\n";
        assert_eq!(parse(forwarded).automation.returned_message_id, None);
    }

    #[test]
    fn bounce_senders_in_every_spelling() {
        for a in [
            "MAILER-DAEMON@mx.test",
            "mailer_daemon@x",
            "Postmaster@x.test",
            "postmaster",
        ] {
            assert!(super::is_bounce_sender(a), "{a}");
        }
        assert!(!super::is_bounce_sender("post@x.test"));
        assert!(!super::is_bounce_sender("daemon@x.test"));
    }
}
