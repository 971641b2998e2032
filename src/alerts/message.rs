//! An alert's messages: a plain-text mail to each `[alerts] to` address and a JSON body for the
//! webhook. The mails carry `Auto-Submitted: auto-generated` (RFC 3834), so no well-behaved
//! responder answers them, and a Message-ID the store keeps, so an alert that arrives in one of
//! the accounts is recognised and opens no ticket.

use std::time::SystemTime;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::Message;

use super::text::{words, About, Moment};
use super::Settings;
use crate::store::{AlertMessage, Channel, ALERT_ID_PREFIX};

/// The header that names an alert's kind (for the owner's mail filters).
pub const ALERT_HEADER: &str = "X-Mail2ticket-Alert";

/// The messages of one alert: a mail per address (none for what only the webhook can carry)
/// and the webhook's body.
pub fn messages(
    settings: &Settings,
    moment: Moment,
    about: &About<'_>,
) -> Result<Vec<AlertMessage>, String> {
    let w = words(settings.language, moment, about);
    let mut out = Vec::new();
    let by_mail = about.kind != super::condition::Kind::RepliesNotDraining;
    if by_mail {
        for to in &settings.to {
            let message_id = new_message_id(&settings.message_id_domain);
            let mail = mail(settings, to, &message_id, &w.title, &w.body, about)?;
            out.push(AlertMessage {
                channel: Channel::Mail,
                recipient: to.clone(),
                message_id,
                message: mail,
            });
        }
    }
    if settings.webhook {
        let body = serde_json::json!({
            "source": "mail2ticket",
            "event": moment.label(),
            "kind": about.kind.label(),
            "account": about.account,
            "since": about.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "title": w.title,
            "message": w.body,
            "by_mail": by_mail && !settings.to.is_empty(),
        });
        out.push(AlertMessage {
            channel: Channel::Webhook,
            recipient: "webhook".into(),
            message_id: new_message_id("webhook.invalid"),
            message: body.to_string().into_bytes(),
        });
    }
    Ok(out)
}

fn new_message_id(domain: &str) -> String {
    let random: u128 = rand::random();
    format!("{ALERT_ID_PREFIX}{random:032x}@{domain}")
}

fn mail(
    settings: &Settings,
    to: &str,
    message_id: &str,
    title: &str,
    body: &str,
    about: &About<'_>,
) -> Result<Vec<u8>, String> {
    let address = |key: &str, value: &str| {
        value
            .trim()
            .parse::<lettre::Address>()
            .map_err(|e| format!("[alerts] {key} {value:?}: {e}"))
    };
    let raw = |name: &'static str, value: String| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
    };
    let message = Message::builder()
        .from(Mailbox::new(
            Some("mail2ticket".into()),
            address("from", &settings.from)?,
        ))
        .to(Mailbox::new(None, address("to", to)?))
        .subject(format!("[mail2ticket] {title}"))
        .date(SystemTime::now())
        .message_id(Some(format!("<{message_id}>")))
        .raw_header(raw("Auto-Submitted", "auto-generated".into()))
        .raw_header(raw("X-Auto-Response-Suppress", "All".into()))
        .raw_header(raw(ALERT_HEADER, about.kind.label().into()))
        .singlepart(SinglePart::plain(body.replace('\n', "\r\n")))
        .map_err(|e| format!("cannot build the alert mail: {e}"))?;
    Ok(message.formatted())
}
