//! Raw message bytes → the fields a ticket needs. Never fails: a mail the parser cannot make sense
//! of still becomes a ticket, flagged, with its raw bytes kept.

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

use super::extent::Extent;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// What the reply rules need to know about the headers (see the replies module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutomationHeaders {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub has_list_id: bool,
    pub has_list_unsubscribe: bool,
    pub x_auto_response_suppress: Option<String>,
    /// `Some("")` for an empty Return-Path (`<>`), as bounces carry.
    pub return_path: Option<String>,
    pub is_delivery_report: bool,
    /// The Message-ID of the mail a delivery report (bounce) returns, see [`super::bounce`].
    pub returned_message_id: Option<String>,
    /// Our own loop marker, set on every mail we send.
    pub loop_marker: Option<String>,
    /// Set on test-fetch mails: they are disposed without a ticket.
    pub test_marker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// Without angle brackets; empty when the mail has none.
    pub message_id: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from_email: String,
    pub from_name: String,
    pub reply_to_email: Option<String>,
    /// The Reply-To's display name; empty when it has none (or there is no Reply-To).
    pub reply_to_name: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    /// The plain-text body, or the text rendering of an HTML-only mail. The HTML itself is not
    /// copied out: it is in the raw mail, stored compressed (see docs/schema.md, `html_body`).
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub automation: AutomationHeaders,
    /// Why the mail is flagged as malformed, if it is.
    pub parse_problem: Option<String>,
}

pub const LOOP_HEADER: &str = "X-Mail2ticket-Loop";
pub const TEST_HEADER: &str = "X-Mail2ticket-Test";
pub const UNPARSEABLE_SUBJECT: &str = "(unparseable message)";

/// Parses a mail fetched as `extent` says. Of a header alone (a mail too large to fetch) only
/// what a header says is kept: the parser would make the missing body of a multipart mail an
/// empty attachment.
pub fn parse_fetched(raw: &[u8], extent: Extent) -> ParsedMail {
    let mut parsed = parse(raw);
    if extent.is_header_only() {
        parsed.text.clear();
        parsed.attachments.clear();
    }
    parsed
}

/// Parses a fetched mail. No input can take the batch down: should the parser panic, the mail
/// becomes an unparseable one (its raw bytes kept, flagged with the problem) like any other
/// mail it cannot read.
pub fn parse(raw: &[u8]) -> ParsedMail {
    let mut parsed = match std::panic::catch_unwind(|| parse_or_panic(raw)) {
        Ok(parsed) => parsed,
        Err(_) => {
            tracing::error!(
                size = raw.len(),
                "the mail parser panicked; the mail is stored as unparseable"
            );
            unparseable(raw, "the mail parser panicked on this message")
        }
    };
    replace_nul(&mut parsed);
    parsed
}

/// Every occurrence of header `name` (compared without regard to case), in order, as text:
/// decoded where the header is unstructured text (encoded words, folding), else as written and
/// unfolded (addresses, dates, Message-IDs), so a rule can test any header. As in [`parse`], a
/// panic of the parser stays with this mail: it then has no such header.
pub fn header_texts(raw: &[u8], name: &str) -> Vec<String> {
    let read = || {
        // mail-parser keeps headers it does not know raw, and applies `default_header_text`
        // only once its table of headers is set (`with_minimal_headers`): then they are text,
        // with encoded words decoded.
        let parser = MessageParser::new()
            .with_minimal_headers()
            .default_header_text();
        let Some(msg) = parser.parse_headers(raw) else {
            return Vec::new();
        };
        msg.headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| match h.value().as_text() {
                Some(text) => text.trim().to_string(),
                None => {
                    let span = h.offset_start() as usize..h.offset_end() as usize;
                    String::from_utf8_lossy(raw.get(span).unwrap_or_default())
                        .replace(['\r', '\n'], "")
                        .trim()
                        .to_string()
                }
            })
            .collect()
    };
    std::panic::catch_unwind(read).unwrap_or_else(|_| {
        tracing::error!(
            size = raw.len(),
            "the mail parser panicked reading a header; the mail has none for the rules"
        );
        Vec::new()
    })
}

/// A NUL character is legal in a mail (an 8-bit body, `=00`, base64) but PostgreSQL's text
/// cannot hold one, and no reader wants one: each becomes U+FFFD in every text the mail is
/// parsed into, so such a mail is a ticket on either store. The raw mail keeps the byte.
fn replace_nul(parsed: &mut ParsedMail) {
    fn fix(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
        }
    }
    // Spelled out field by field, so that a text field added later does not compile until
    // it is listed here.
    let ParsedMail {
        message_id,
        in_reply_to,
        references,
        from_email,
        from_name,
        reply_to_email,
        reply_to_name,
        to,
        cc,
        subject,
        date: _,
        text,
        attachments,
        automation,
        parse_problem,
    } = parsed;
    let AutomationHeaders {
        auto_submitted,
        precedence,
        has_list_id: _,
        has_list_unsubscribe: _,
        x_auto_response_suppress,
        return_path,
        is_delivery_report: _,
        returned_message_id,
        loop_marker,
        test_marker,
    } = automation;
    for s in [
        message_id,
        from_email,
        from_name,
        reply_to_name,
        to,
        cc,
        subject,
        text,
    ] {
        fix(s);
    }
    for s in [
        reply_to_email,
        auto_submitted,
        precedence,
        x_auto_response_suppress,
        return_path,
        returned_message_id,
        loop_marker,
        test_marker,
        parse_problem,
    ]
    .into_iter()
    .flatten()
    {
        fix(s);
    }
    for s in in_reply_to.iter_mut().chain(references) {
        fix(s);
    }
    for Attachment {
        filename,
        content_type,
        data: _,
    } in attachments
    {
        fix(filename);
        fix(content_type);
    }
}

/// [`parse`] without the panic guard: for the fuzzer, which must see panics.
pub fn parse_or_panic(raw: &[u8]) -> ParsedMail {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return unparseable(raw, "no message headers could be parsed");
    };
    // mail-parser accepts almost anything; without a single core header it is not an e-mail.
    let looks_like_mail = msg.from().is_some()
        || msg.subject().is_some()
        || msg.message_id().is_some()
        || msg.date().is_some()
        || msg.header_raw("Received").is_some();
    if !looks_like_mail {
        return unparseable(raw, "no From, Subject, Date, Message-ID or Received header");
    }

    let (from_email, from_name) = first_address(msg.from());
    let (reply_to_email, reply_to_name) = first_address(msg.reply_to());
    let text_header =
        |name: &str| -> Option<String> { msg.header_raw(name).map(|v| v.trim().to_string()) };
    let content_type = msg
        .content_type()
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase());
    let return_path = msg.header_raw("Return-Path").map(|v| {
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
            .to_string()
    });

    let automation = AutomationHeaders {
        auto_submitted: text_header("Auto-Submitted"),
        precedence: text_header("Precedence"),
        has_list_id: msg.header_raw("List-Id").is_some(),
        has_list_unsubscribe: msg.header_raw("List-Unsubscribe").is_some(),
        x_auto_response_suppress: text_header("X-Auto-Response-Suppress"),
        return_path: return_path.clone(),
        is_delivery_report: content_type.as_deref() == Some("multipart/report"),
        returned_message_id: super::bounce::returned_message_id(
            &msg,
            &from_email,
            return_path.as_deref(),
        ),
        loop_marker: text_header(LOOP_HEADER),
        test_marker: text_header(TEST_HEADER),
    };

    let attachments = msg
        .attachments()
        .map(|part| Attachment {
            filename: part
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| "attachment".into()),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            data: part.contents().to_vec(),
        })
        .collect();

    ParsedMail {
        message_id: msg.message_id().map(clean_id).unwrap_or_default(),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        from_email,
        from_name,
        reply_to_name: if reply_to_email.is_empty() {
            String::new()
        } else {
            reply_to_name
        },
        reply_to_email: Some(reply_to_email).filter(|e| !e.is_empty()),
        to: address_list(msg.to()),
        cc: address_list(msg.cc()),
        subject: msg
            .subject()
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        date: msg
            .date()
            .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single()),
        text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        attachments,
        automation,
        parse_problem: None,
    }
}

fn unparseable(raw: &[u8], problem: &str) -> ParsedMail {
    ParsedMail {
        message_id: String::new(),
        in_reply_to: Vec::new(),
        references: Vec::new(),
        from_email: String::new(),
        from_name: String::new(),
        reply_to_email: None,
        reply_to_name: String::new(),
        to: String::new(),
        cc: String::new(),
        subject: UNPARSEABLE_SUBJECT.into(),
        date: None,
        text: String::from_utf8_lossy(raw).into_owned(),
        attachments: Vec::new(),
        automation: AutomationHeaders::default(),
        parse_problem: Some(problem.into()),
    }
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|id| !id.is_empty())
    .collect()
}

fn first_address(addr: Option<&Address>) -> (String, String) {
    addr.and_then(|a| a.first())
        .map(|a| {
            (
                a.address().unwrap_or_default().trim().to_string(),
                a.name().unwrap_or_default().trim().to_string(),
            )
        })
        .unwrap_or_default()
}

fn address_list(addr: Option<&Address>) -> String {
    addr.map(|a| {
        a.iter()
            .filter_map(|a| a.address())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_anywhere_in_the_text_becomes_a_replacement_character() {
        let raw = b"From: K\0unde <k@example.test>\r\nSubject: Null\0byte =?UTF-8?Q?a=00b?=\r\n\
Message-ID: <n\0ul@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nbody =00 and \0 here\r\n";
        let p = parse(raw);
        for text in [&p.subject, &p.text, &p.from_name, &p.message_id] {
            assert!(!text.contains('\0'), "{text:?}");
        }
        assert!(p.subject.contains('\u{FFFD}'), "{:?}", p.subject);
        assert!(p.text.contains("body \u{FFFD} and"), "{:?}", p.text);
    }

    #[test]
    fn decodes_rfc2047_subject_and_latin1_body() {
        let raw = b"From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <j@example.test>\r\n\
Subject: =?ISO-8859-1?Q?R=FCckgabe_f=FCr_Bestellung?=\r\n\
Message-ID: <abc@example.test>\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n";
        let m = parse(raw);
        assert_eq!(m.subject, "Rückgabe für Bestellung");
        assert_eq!(m.from_name, "Jürgen Müller");
        assert_eq!(m.from_email, "j@example.test");
        assert_eq!(m.message_id, "abc@example.test");
        assert!(m.text.contains("Grüße"), "{:?}", m.text);
        assert!(m.parse_problem.is_none());
    }

    #[test]
    fn a_text_only_mail_keeps_its_text_and_an_alternative_its_plain_part() {
        let m = parse(b"From: a@example.test\r\nSubject: plain\r\n\r\nJust text.\r\n");
        assert_eq!(m.text.trim(), "Just text.");
        let alt = parse(b"From: a@example.test\r\nSubject: alt\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>rich</p>\r\n--b--\r\n");
        assert!(alt.text.contains("plain"));
        assert!(!alt.text.contains("<p>"), "{:?}", alt.text);
    }

    #[test]
    fn html_only_mail_gets_a_text_rendering() {
        let raw = b"From: a@example.test\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo <b>Welt</b></p>";
        let m = parse(raw);
        assert!(m.text.contains("Hallo"), "{:?}", m.text);
        assert!(!m.text.contains("<b>"), "{:?}", m.text);
    }

    #[test]
    fn collects_reply_ids_without_brackets() {
        let raw = b"From: a@example.test\r\nIn-Reply-To: <one@x>\r\nReferences: <zero@x> <one@x>\r\n\r\nbody";
        let m = parse(raw);
        assert_eq!(m.in_reply_to, vec!["one@x"]);
        assert_eq!(m.references, vec!["zero@x", "one@x"]);
    }

    #[test]
    fn a_header_alone_has_no_body_and_no_attachment() {
        let header = b"From: Kunde <k@customer.test>\r\nSubject: Foto\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n";
        let m = parse_fetched(header, Extent::HeaderOnly { size: 80_000_000 });
        assert_eq!(
            (m.subject.as_str(), m.from_email.as_str()),
            ("Foto", "k@customer.test")
        );
        assert!(m.attachments.is_empty() && m.text.is_empty());
    }

    #[test]
    fn keeps_attachments_with_non_ascii_names() {
        let raw = "From: a@example.test\r\nSubject: att\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let m = parse(raw.as_bytes());
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename, "Rechnung März.pdf");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.attachments[0].data, b"%PDF-");
    }

    #[test]
    fn garbage_still_becomes_a_flagged_mail() {
        let m = parse(b"\x00\x01\x02 not a mail at all");
        assert!(m.parse_problem.is_some());
        assert!(!m.subject.is_empty());
        let empty = parse(b"");
        assert!(empty.parse_problem.is_some());
    }

    #[test]
    fn reads_automation_headers() {
        let raw = b"From: MAILER-DAEMON@example.test\r\nReturn-Path: <>\r\nAuto-Submitted: auto-replied\r\nPrecedence: bulk\r\nList-Id: <l.example>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x--\r\n";
        let a = parse(raw).automation;
        assert_eq!(a.return_path.as_deref(), Some(""));
        assert_eq!(a.auto_submitted.as_deref(), Some("auto-replied"));
        assert_eq!(a.precedence.as_deref(), Some("bulk"));
        assert!(a.has_list_id);
        assert!(a.is_delivery_report);
    }
}
