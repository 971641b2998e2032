//! When a mail must not get an automatic reply. Pure: headers in, verdict out. The per-recipient
//! rate limit counts replies in the store and is applied by `ingest::route`; everything else is
//! here.
//!
//! The rules follow RFC 3834 (Auto-Submitted), the de-facto list and bulk markers, Microsoft's
//! X-Auto-Response-Suppress, and our own loop markers, so that no robot, list, bounce or other
//! auto-responder (including another mail2ticket) is ever answered.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ReplyPolicy;
use crate::ingest::bounce::{is_bounce_sender, squashed_local_part};
use crate::ingest::parse::{ParsedMail, LOOP_HEADER};

/// Why a mail gets no reply; the text goes into `articles.reply_note` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    AutoSubmitted(String),
    Precedence(String),
    ListHeader(&'static str),
    ResponseSuppressed(String),
    EmptyReturnPath,
    DeliveryReport,
    RobotSender(String),
    OwnAddress(String),
    OwnMessageId(String),
    LoopHeader(String),
    TooOld {
        date: DateTime<Utc>,
        max_age: Duration,
    },
    RateLimited {
        recipient: String,
        limit: u32,
    },
    NoRecipient(String),
}

impl Suppression {
    /// A short, stable name of the reason, for the `replies_suppressed` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Suppression::AutoSubmitted(_) => "auto_submitted",
            Suppression::Precedence(_) => "precedence",
            Suppression::ListHeader(_) => "mailing_list",
            Suppression::ResponseSuppressed(_) => "response_suppressed",
            Suppression::EmptyReturnPath => "bounce",
            Suppression::DeliveryReport => "delivery_report",
            Suppression::RobotSender(_) => "robot_sender",
            Suppression::OwnAddress(_) => "own_address",
            Suppression::OwnMessageId(_) => "own_message_id",
            Suppression::LoopHeader(_) => "loop_header",
            Suppression::TooOld { .. } => "too_old",
            Suppression::RateLimited { .. } => "rate_limited",
            Suppression::NoRecipient(_) => "no_recipient",
        }
    }
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::AutoSubmitted(v) => {
                write!(f, "Auto-Submitted: {v} (automated mail, RFC 3834)")
            }
            Suppression::Precedence(v) => write!(f, "Precedence: {v} (bulk or list mail)"),
            Suppression::ListHeader(h) => write!(f, "{h} header present (mailing list)"),
            Suppression::ResponseSuppressed(v) => {
                write!(f, "X-Auto-Response-Suppress: {v} (sender asks for no auto-replies)")
            }
            Suppression::EmptyReturnPath => write!(f, "empty Return-Path <> (a bounce)"),
            Suppression::DeliveryReport => {
                write!(f, "delivery status report (multipart/report)")
            }
            Suppression::RobotSender(a) => write!(f, "sender {a} is a robot address"),
            Suppression::OwnAddress(a) => write!(f, "sender {a} is one of our own accounts"),
            Suppression::OwnMessageId(id) => {
                write!(f, "refers to our own Message-ID <{id}> (a mail we sent, or a reply to one)")
            }
            Suppression::LoopHeader(v) => write!(f, "carries our loop header {LOOP_HEADER}: {v}"),
            Suppression::TooOld { date, max_age } => write!(
                f,
                "mail dated {} is older than auto_reply_max_age {}",
                date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                humantime::format_duration(*max_age)
            ),
            Suppression::RateLimited { recipient, limit } => write!(
                f,
                "{recipient} already got {limit} automatic replies in the last hour (auto_reply_limit)"
            ),
            Suppression::NoRecipient(why) => write!(f, "no address to reply to: {why}"),
        }
    }
}

/// The address a reply goes to: Reply-To if the mail has one, else From.
pub fn recipient(mail: &ParsedMail) -> &str {
    crate::ingest::customer::reply_person(mail).email
}

/// Checks every header rule; on success returns the (lower-cased) address to reply to.
///
/// `sent_by_us` are those of the mail's Message-ID, In-Reply-To and References that we sent
/// ourselves: the store looks them up in the outbox (`Known::replies` of `ingest::route`). A
/// Message-ID on our domain that we never sent (the shop's order confirmation, a customer whose
/// mail program uses the same domain) is somebody else's.
pub fn check(
    policy: &ReplyPolicy,
    mail: &ParsedMail,
    now: DateTime<Utc>,
    sent_by_us: &[String],
) -> Result<String, Suppression> {
    let a = &mail.automation;
    if let Some(v) = &a.auto_submitted {
        let token = v
            .split([';', '('])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if token != "no" {
            return Err(Suppression::AutoSubmitted(v.clone()));
        }
    }
    if let Some(v) = &a.precedence {
        let p = v.trim().to_ascii_lowercase();
        if ["bulk", "junk", "list"].contains(&p.as_str()) {
            return Err(Suppression::Precedence(v.clone()));
        }
    }
    if a.has_list_id {
        return Err(Suppression::ListHeader("List-Id"));
    }
    if a.has_list_unsubscribe {
        return Err(Suppression::ListHeader("List-Unsubscribe"));
    }
    if let Some(v) = &a.x_auto_response_suppress {
        let suppressed = v.split([',', ' ', ';']).any(|t| {
            let t = t.trim().to_ascii_lowercase();
            t == "all" || t == "autoreply" || t == "oof"
        });
        if suppressed {
            return Err(Suppression::ResponseSuppressed(v.clone()));
        }
    }
    if a.return_path.as_deref() == Some("") {
        return Err(Suppression::EmptyReturnPath);
    }
    if a.is_delivery_report {
        return Err(Suppression::DeliveryReport);
    }
    if let Some(v) = &a.loop_marker {
        return Err(Suppression::LoopHeader(v.clone()));
    }
    if let Some(id) = sent_by_us.first() {
        return Err(Suppression::OwnMessageId(id.clone()));
    }

    // A bounce sender is a robot whatever its Reply-To says. Otherwise the address the reply
    // would go to decides: a contact form sends from noreply@ with the customer in Reply-To.
    let from = mail.from_email.trim().to_lowercase();
    if is_bounce_sender(&from) {
        return Err(Suppression::RobotSender(from));
    }
    let to = recipient(mail).to_lowercase();
    if !to.is_empty() {
        if is_robot_address(&to) {
            return Err(Suppression::RobotSender(to));
        }
        if policy.own_addresses.contains(&to) {
            return Err(Suppression::OwnAddress(to));
        }
    }
    if to.is_empty() {
        return Err(Suppression::NoRecipient(
            "the mail has no From or Reply-To".into(),
        ));
    }
    if let Err(e) = to.parse::<lettre::Address>() {
        return Err(Suppression::NoRecipient(format!(
            "{to:?} is not a valid address ({e})"
        )));
    }

    match too_old(mail.date, policy.max_age, now) {
        Some(too_old) => Err(too_old),
        None => Ok(to),
    }
}

/// The age rule of replies: a mail whose Date is older than `max_age` at `now` gets none. A
/// missing Date counts as new; a future one too. (`test-fetch` counts a folder's mails by it.)
pub fn too_old(
    date: Option<DateTime<Utc>>,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Option<Suppression> {
    let date = date?;
    let age = now.signed_duration_since(date).to_std().ok()?;
    (age > max_age).then_some(Suppression::TooOld { date, max_age })
}

/// MAILER-DAEMON, postmaster and every spelling of no-reply / do-not-reply.
pub fn is_robot_address(address: &str) -> bool {
    if is_bounce_sender(address) {
        return true;
    }
    let squashed = squashed_local_part(address);
    squashed.contains("noreply") || squashed.contains("donotreply")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn policy() -> ReplyPolicy {
        ReplyPolicy {
            account_email: "support@shop.test".into(),
            sender_name: Some("Shop Support".into()),
            reply_to: Some("help@shop.test".into()),
            subject_template: super::super::compose::DEFAULT_SUBJECT.into(),
            body_template: super::super::compose::DEFAULT_BODY.into(),
            subject_tag: "Ticket#".into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            limit: 5,
            max_age: Duration::from_secs(24 * 3600),
            message_id_domain: "tickets.shop.test".into(),
            own_addresses: vec!["help@shop.test".into(), "support@shop.test".into()],
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    const BASE: &str = "From: Kunde <kunde@customer.test>\r\nTo: support@shop.test\r\n\
Subject: Hilfe\r\nMessage-ID: <c1@customer.test>\r\nDate: Sat, 28 Nov 2026 11:00:00 +0000\r\n";

    fn verdict(extra_headers: &str) -> Result<String, Suppression> {
        let raw = format!("{BASE}{extra_headers}\r\nbody\r\n");
        check(&policy(), &parse(raw.as_bytes()), now(), &[])
    }

    #[test]
    fn a_plain_customer_mail_gets_a_reply_to_reply_to_or_from() {
        assert_eq!(verdict("").unwrap(), "kunde@customer.test");
        assert_eq!(
            verdict("Auto-Submitted: no\r\n").unwrap(),
            "kunde@customer.test"
        );
        assert_eq!(
            verdict("Reply-To: Other <Other@Customer.test>\r\n").unwrap(),
            "other@customer.test"
        );
        assert_eq!(
            verdict("Precedence: first-class\r\n").unwrap(),
            "kunde@customer.test"
        );
        assert_eq!(
            verdict("X-Auto-Response-Suppress: DR, RN\r\n").unwrap(),
            "kunde@customer.test"
        );
        assert_eq!(
            verdict("Return-Path: <kunde@customer.test>\r\n").unwrap(),
            "kunde@customer.test"
        );
    }

    #[test]
    fn every_suppression_rule_has_its_reason() {
        let cases: &[(&str, &str)] = &[
            ("Auto-Submitted: auto-replied\r\n", "Auto-Submitted"),
            ("Auto-Submitted: auto-generated\r\n", "Auto-Submitted"),
            ("Auto-Submitted: Auto-Notified; owner-email=x@y\r\n", "Auto-Submitted"),
            ("Precedence: bulk\r\n", "Precedence"),
            ("Precedence: JUNK\r\n", "Precedence"),
            ("Precedence: list\r\n", "Precedence"),
            ("List-Id: <news.shop.test>\r\n", "List-Id"),
            ("List-Unsubscribe: <mailto:u@news.test>\r\n", "List-Unsubscribe"),
            ("X-Auto-Response-Suppress: All\r\n", "X-Auto-Response-Suppress"),
            ("X-Auto-Response-Suppress: DR, AutoReply\r\n", "X-Auto-Response-Suppress"),
            ("X-Auto-Response-Suppress: OOF\r\n", "X-Auto-Response-Suppress"),
            ("Return-Path: <>\r\n", "Return-Path"),
            (
                "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                "delivery status report",
            ),
            ("X-Mail2ticket-Loop: support@other.test\r\n", "loop header"),
            ("Reply-To: noreply@customer.test\r\n", "robot"),
            ("Reply-To: support@shop.test\r\n", "our own accounts"),
        ];
        for (headers, reason) in cases {
            let err = verdict(headers).expect_err(headers);
            assert!(err.to_string().contains(reason), "{headers:?}: {err}");
        }
    }

    #[test]
    fn robot_senders_in_every_spelling() {
        for from in [
            "MAILER-DAEMON@mx.customer.test",
            "mailer_daemon@x.test",
            "postmaster@customer.test",
            "noreply@x.test",
            "no-reply@x.test",
            "no_reply@x.test",
            "No.Reply@x.test",
            "donotreply@x.test",
            "do-not-reply@x.test",
            "do_not_reply+bounce@x.test",
            "shop-noreply@x.test",
        ] {
            let raw = format!("From: {from}\r\nSubject: x\r\n\r\nbody");
            let err = check(&policy(), &parse(raw.as_bytes()), now(), &[]).expect_err(from);
            assert!(matches!(err, Suppression::RobotSender(_)), "{from}: {err}");
        }
        assert!(!is_robot_address("norbert@x.test"));
        assert!(!is_robot_address("reply@x.test"));
        assert!(!is_robot_address("post@x.test"));
    }

    #[test]
    fn own_addresses_and_message_ids_we_sent() {
        let raw = b"From: Support@Shop.test\r\nSubject: x\r\n\r\nbody";
        assert!(matches!(
            check(&policy(), &parse(raw), now(), &[]),
            Err(Suppression::OwnAddress(_))
        ));
        let raw = b"From: a@b.test\r\nMessage-ID: <m2t.5.x@tickets.shop.test>\r\n\r\nbody";
        let sent = ["m2t.5.x@tickets.shop.test".to_string()];
        let err = check(&policy(), &parse(raw), now(), &sent).unwrap_err();
        assert_eq!(err, Suppression::OwnMessageId(sent[0].clone()));
        assert!(err.to_string().contains("our own Message-ID"), "{err}");
    }

    #[test]
    fn a_message_id_on_our_domain_that_we_never_sent_is_somebody_elses() {
        // The shop's order system sends from the shop's domain; the customer answers it.
        for headers in [
            "In-Reply-To: <order-4711@shop.test>\r\n",
            "References: <x@y> <m2t.1.abc@TICKETS.shop.test>\r\n",
            "In-Reply-To: <m2t.1.abc@tickets.shop.test>\r\n",
        ] {
            assert_eq!(
                verdict(headers).unwrap(),
                "kunde@customer.test",
                "{headers}"
            );
        }
    }

    #[test]
    fn a_contact_form_is_answered_at_its_reply_to_person() {
        let form = b"From: Webshop Kontaktformular <noreply@shop-web.test>\r\n\
Reply-To: Erika Mustermann <Kunde@Customer.test>\r\nSubject: Kontakt\r\n\r\nx";
        assert_eq!(
            check(&policy(), &parse(form), now(), &[]).unwrap(),
            "kunde@customer.test"
        );
        // noreply without a Reply-To, and a Reply-To that is itself a robot, stay unanswered.
        for raw in [
            &b"From: Webshop <noreply@shop-web.test>\r\nSubject: Bestellung\r\n\r\nx"[..],
            b"From: Webshop <noreply@shop-web.test>\r\nReply-To: no-reply@shop-web.test\r\n\r\nx",
            b"From: Kunde <k@customer.test>\r\nReply-To: donotreply@customer.test\r\n\r\nx",
        ] {
            let err = check(&policy(), &parse(raw), now(), &[]).unwrap_err();
            assert!(matches!(err, Suppression::RobotSender(_)), "{err}");
        }
        // A bounce sender is a robot whatever its Reply-To says; so is a form with list headers.
        let daemon = b"From: MAILER-DAEMON@mx.test\r\nReply-To: k@customer.test\r\n\r\nx";
        assert!(matches!(
            check(&policy(), &parse(daemon), now(), &[]),
            Err(Suppression::RobotSender(_))
        ));
        let listed = b"From: noreply@shop-web.test\r\nReply-To: k@customer.test\r\n\
List-Unsubscribe: <mailto:u@shop-web.test>\r\n\r\nx";
        assert!(matches!(
            check(&policy(), &parse(listed), now(), &[]),
            Err(Suppression::ListHeader(_))
        ));
    }

    #[test]
    fn old_mail_gets_no_reply_but_undated_and_future_mail_does() {
        let old = b"From: a@b.test\r\nDate: Thu, 26 Nov 2026 11:00:00 +0000\r\n\r\nx";
        let err = check(&policy(), &parse(old), now(), &[]).unwrap_err();
        assert!(err.to_string().contains("auto_reply_max_age 1day"), "{err}");
        let undated = b"From: a@b.test\r\nSubject: x\r\n\r\nx";
        assert!(check(&policy(), &parse(undated), now(), &[]).is_ok());
        let future = b"From: a@b.test\r\nDate: Mon, 30 Nov 2026 11:00:00 +0000\r\n\r\nx";
        assert!(check(&policy(), &parse(future), now(), &[]).is_ok());
    }

    #[test]
    fn mail_without_any_address_is_not_answered() {
        let raw = b"Subject: who am I\r\nDate: Sat, 28 Nov 2026 11:00:00 +0000\r\n\r\nx";
        assert!(matches!(
            check(&policy(), &parse(raw), now(), &[]),
            Err(Suppression::NoRecipient(_))
        ));
    }
}
