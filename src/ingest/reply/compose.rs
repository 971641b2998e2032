//! Building the reply message. Pure: the Message-ID and the Date are passed in (fixed when the
//! reply is queued), so a retry sends byte-for-byte the same message.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::Message;

use super::ReplyPolicy;
use crate::ingest::parse::{ParsedMail, LOOP_HEADER};

/// Default subject template; the ticket tag `[Ticket#<number>]` is put in front of it.
pub const DEFAULT_SUBJECT: &str = "{subject}";

/// Used for `{subject}` when the customer's mail has none.
pub const EMPTY_SUBJECT: &str = "Ihre Anfrage / Your request";

/// Default body (German, then English).
pub const DEFAULT_BODY: &str = "\
Guten Tag {customer_name},

vielen Dank für Ihre Nachricht. Wir haben Ihr Anliegen unter der Ticketnummer
{ticket_number} erfasst und melden uns so bald wie möglich bei Ihnen.
Wenn Sie uns dazu noch etwas mitteilen möchten, antworten Sie einfach auf
diese E-Mail; bitte lassen Sie die Ticketnummer im Betreff stehen.

Dies ist eine automatische Antwort.

----------------------------------------------------------------------

Hello {customer_name},

thank you for your message. We have recorded your request as ticket
{ticket_number} and will get back to you as soon as possible.
If you would like to add anything, simply reply to this e-mail; please keep
the ticket number in the subject.

This is an automatic reply.

-- 
{account_email}
";

/// The local part prefix of our Message-IDs: `m2t.<ticket>.<random>@<message_id_domain>`.
pub const ID_PREFIX: &str = "m2t.";

/// A reply ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Without angle brackets, as the store keeps Message-IDs.
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    /// The complete RFC 5322 message.
    pub message: Vec<u8>,
}

/// A fresh, unique Message-ID (without brackets) for a reply on ticket `number`.
pub fn new_message_id(number: &str, domain: &str) -> String {
    let random: u128 = rand::random();
    format!("{ID_PREFIX}{number}.{random:032x}@{domain}")
}

/// Header values must stay on one line whatever the customer wrote.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The values of the template placeholders.
pub fn placeholder(
    policy: &ReplyPolicy,
    mail: &ParsedMail,
    number: &str,
    recipient: &str,
    name: &str,
) -> String {
    match name {
        "ticket_number" => number.to_string(),
        "subject" => {
            let s = one_line(&mail.subject);
            if s.is_empty() {
                EMPTY_SUBJECT.to_string()
            } else {
                s
            }
        }
        "customer_name" => {
            // The person the reply greets is the one it goes to: a contact form's Reply-To.
            let n = one_line(crate::ingest::customer::reply_person(mail).name);
            if n.is_empty() {
                recipient.to_string()
            } else {
                n
            }
        }
        "customer_email" => recipient.to_string(),
        "ticket_type" => policy.ticket_type.clone(),
        "ticket_status" => policy.ticket_status.clone(),
        "account_email" => policy.account_email.clone(),
        // check-config rejects unknown placeholders; keep one that slipped through visible.
        other => format!("{{{other}}}"),
    }
}

/// The subject: the rendered template, with `[<tag><number>]` in front unless it has it already.
pub fn subject(policy: &ReplyPolicy, mail: &ParsedMail, number: &str, recipient: &str) -> String {
    let rendered = one_line(&crate::template::render(&policy.subject_template, |n| {
        placeholder(policy, mail, number, recipient, n)
    }));
    let tag = format!("[{}{number}]", policy.subject_tag);
    if rendered.to_lowercase().contains(&tag.to_lowercase()) {
        rendered
    } else if rendered.is_empty() {
        tag
    } else {
        format!("{tag} {rendered}")
    }
}

/// Composes the reply to `mail`, which opened ticket `number`.
pub fn compose(
    policy: &ReplyPolicy,
    mail: &ParsedMail,
    number: &str,
    recipient: &str,
    message_id: &str,
    date: DateTime<Utc>,
) -> Result<Reply, String> {
    let parse = |what: &str, addr: &str| {
        addr.trim()
            .parse::<lettre::Address>()
            .map_err(|e| format!("{what} {addr:?} is not a valid address ({e})"))
    };
    let from = Mailbox::new(
        policy.sender_name.as_deref().map(one_line),
        parse("account email", &policy.account_email)?,
    );
    let person = crate::ingest::customer::reply_person(mail);
    let customer_name = one_line(person.name);
    // A display name only when it belongs to the address we answer.
    let to_name = (!customer_name.is_empty() && person.email.eq_ignore_ascii_case(recipient))
        .then_some(customer_name);
    let to = Mailbox::new(to_name, parse("recipient", recipient)?);
    let subject = subject(policy, mail, number, recipient);
    let body = crate::template::render(&policy.body_template, |n| {
        placeholder(policy, mail, number, recipient, n)
    });
    // Plain text with CRLF line ends as RFC 5322 wants them.
    let body = body.replace("\r\n", "\n").replace('\n', "\r\n");

    let raw = |name: &'static str, value: String| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
    };
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject.clone())
        .date(SystemTime::from(date))
        .message_id(Some(format!("<{message_id}>")))
        .raw_header(raw("Auto-Submitted", "auto-replied".into()))
        .raw_header(raw("X-Auto-Response-Suppress", "All".into()))
        .raw_header(raw(
            LOOP_HEADER,
            format!("mail2ticket; {}", policy.account_email),
        ));
    if let Some(reply_to) = &policy.reply_to {
        builder = builder.reply_to(Mailbox::new(None, parse("reply_to", reply_to)?));
    }
    if !mail.message_id.is_empty() {
        // References: the customer's thread so far, then the mail we answer (RFC 5322 3.6.4).
        let mut refs: Vec<String> = mail
            .references
            .iter()
            .filter(|r| **r != mail.message_id)
            .map(|r| format!("<{r}>"))
            .collect();
        refs.push(format!("<{}>", mail.message_id));
        builder = builder
            .in_reply_to(format!("<{}>", mail.message_id))
            .references(refs.join(" "));
    }
    let message = builder
        .singlepart(SinglePart::plain(body))
        .map_err(|e| format!("cannot build the reply: {e}"))?;
    Ok(Reply {
        message_id: message_id.to_string(),
        recipient: recipient.to_string(),
        subject,
        message: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;
    use std::time::Duration;

    fn policy() -> ReplyPolicy {
        ReplyPolicy {
            account_email: "support@shop.test".into(),
            sender_name: Some("Shop Kundenservice".into()),
            reply_to: Some("help@shop.test".into()),
            subject_template: DEFAULT_SUBJECT.into(),
            body_template: DEFAULT_BODY.into(),
            subject_tag: "Ticket#".into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            limit: 5,
            max_age: Duration::from_secs(24 * 3600),
            message_id_domain: "tickets.shop.test".into(),
            own_addresses: vec![],
        }
    }

    const CUSTOMER: &[u8] = b"From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <j@customer.test>\r\n\
To: support@shop.test\r\nSubject: =?ISO-8859-1?Q?R=FCckgabe_f=FCr_Bestellung?=\r\n\
Message-ID: <c2@customer.test>\r\nReferences: <c1@customer.test>\r\n\
Date: Sat, 28 Nov 2026 11:00:00 +0000\r\n\r\nHallo\r\n";

    fn reply() -> Reply {
        let mail = parse(CUSTOMER);
        compose(
            &policy(),
            &mail,
            "10042",
            "j@customer.test",
            "m2t.10042.ab@tickets.shop.test",
            "2026-11-28T12:00:00Z".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn reply_has_every_header_and_parses_back() {
        let r = reply();
        let text = String::from_utf8_lossy(&r.message).to_string();
        let back = parse(&r.message);
        assert_eq!(back.subject, "[Ticket#10042] Rückgabe für Bestellung");
        assert_eq!(back.from_email, "support@shop.test");
        assert_eq!(back.from_name, "Shop Kundenservice");
        assert_eq!(back.reply_to_email.as_deref(), Some("help@shop.test"));
        assert_eq!(back.to, "j@customer.test");
        assert_eq!(back.message_id, "m2t.10042.ab@tickets.shop.test");
        assert_eq!(back.in_reply_to, vec!["c2@customer.test"]);
        assert_eq!(
            back.references,
            vec!["c1@customer.test", "c2@customer.test"]
        );
        assert_eq!(
            back.automation.auto_submitted.as_deref(),
            Some("auto-replied")
        );
        assert_eq!(
            back.automation.x_auto_response_suppress.as_deref(),
            Some("All")
        );
        assert_eq!(
            back.automation.loop_marker.as_deref(),
            Some("mail2ticket; support@shop.test")
        );
        assert_eq!(back.date, Some("2026-11-28T12:00:00Z".parse().unwrap()));
        assert!(
            back.text.contains("Guten Tag Jürgen Müller,"),
            "{}",
            back.text
        );
        assert!(back.text.contains("ticket\r\n10042") || back.text.contains("ticket\n10042"));
        assert!(text.contains("charset=utf-8"), "{text}");
        // Non-ASCII never goes out raw in a header.
        let head = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(head.is_ascii(), "{head}");
    }

    #[test]
    fn our_reply_is_never_answered_by_our_own_rules() {
        let r = reply();
        let mut p = policy();
        p.message_id_domain = "elsewhere.test".into();
        let verdict = super::super::rules::check(
            &p,
            &parse(&r.message),
            "2026-11-28T12:00:00Z".parse().unwrap(),
            &[],
        );
        assert!(verdict.is_err());
    }

    #[test]
    fn subject_template_gets_the_tag_unless_it_has_it() {
        let mail = parse(CUSTOMER);
        let mut p = policy();
        p.subject_template = "Eingang: {subject}".into();
        assert_eq!(
            subject(&p, &mail, "7", "j@customer.test"),
            "[Ticket#7] Eingang: Rückgabe für Bestellung"
        );
        p.subject_template = "Re: {subject} [Ticket#{ticket_number}]".into();
        assert_eq!(
            subject(&p, &mail, "7", "j@customer.test"),
            "Re: Rückgabe für Bestellung [Ticket#7]"
        );
        let bare = parse(b"From: a@b.test\r\n\r\nx");
        assert_eq!(
            subject(&policy(), &bare, "7", "a@b.test"),
            "[Ticket#7] Ihre Anfrage / Your request"
        );
    }

    #[test]
    fn all_placeholders_render_and_header_injection_is_flattened() {
        let raw = b"From: Eve <eve@x.test>\r\nSubject: hi\r\n\r\nx";
        let mut mail = parse(raw);
        mail.subject = "hi\r\nBcc: victim@x.test".into();
        let mut p = policy();
        p.body_template = "{ticket_number}|{subject}|{customer_name}|{customer_email}|{ticket_type}|{ticket_status}|{account_email}".into();
        let r = compose(
            &p,
            &mail,
            "9",
            "eve@x.test",
            "m2t.9.x@tickets.shop.test",
            Utc::now(),
        )
        .unwrap();
        let back = parse(&r.message);
        assert_eq!(
            back.text.trim(),
            "9|hi  Bcc: victim@x.test|Eve|eve@x.test|question|open|support@shop.test"
        );
        let text = String::from_utf8_lossy(&r.message);
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn a_contact_form_reply_greets_and_addresses_the_reply_to_person() {
        let form = parse(
            b"From: Webshop Kontaktformular <noreply@shop-web.test>\r\n\
Reply-To: =?UTF-8?Q?Erika_M=C3=BCller?= <kunde@customer.test>\r\nSubject: Kontakt\r\n\r\nx",
        );
        let r = compose(
            &policy(),
            &form,
            "5",
            "kunde@customer.test",
            "m2t.5.x@d",
            Utc::now(),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&r.message).to_string();
        let back = parse(&r.message);
        assert!(
            back.text.contains("Guten Tag Erika Müller,"),
            "{}",
            back.text
        );
        assert!(!back.text.contains("Kontaktformular"), "{}", back.text);
        assert!(text.contains("<kunde@customer.test>"), "{text}");
    }

    #[test]
    fn no_threading_headers_without_a_message_id() {
        let mail = parse(b"From: a@b.test\r\nSubject: x\r\n\r\nx");
        let r = compose(&policy(), &mail, "1", "a@b.test", "m2t.1.x@d", Utc::now()).unwrap();
        let back = parse(&r.message);
        assert!(back.in_reply_to.is_empty());
        assert!(back.references.is_empty());
    }

    #[test]
    fn message_ids_are_unique_and_on_our_domain() {
        let a = new_message_id("1", "tickets.shop.test");
        let b = new_message_id("1", "tickets.shop.test");
        assert_ne!(a, b);
        assert!(
            a.starts_with("m2t.1.") && a.ends_with("@tickets.shop.test"),
            "{a}"
        );
    }
}
