//! What an account's configuration says about the tickets its mails become: type, status, the
//! subject tag, who the customer is, automatic replies and test mails. [`super::route`] reads
//! them; the store never decides anything from them itself.

use super::mail_rules::{MailRule, OldMail};
use super::parse::ParsedMail;
use crate::config::CustomerSource;

/// How the account's mails become tickets.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRules {
    pub account: String,
    pub ticket_type: String,
    pub ticket_status: String,
    pub subject_tag: String,
    /// Who the customer is when a mail has a Reply-To.
    pub customer: CustomerSource,
    /// Automatic replies to new tickets; `None` when the account does not auto-reply.
    pub reply: Option<crate::ingest::reply::ReplyPolicy>,
    /// Verifies the signed marker of `test-fetch` mails (see ingest::testmail): the account's
    /// address and password. `None`: no mail is ever treated as a test mail.
    pub test_mail_key: Option<(String, crate::secret::Secret)>,
    /// `[[account.rule]]`, in the file's order.
    pub mail_rules: Vec<MailRule>,
    /// `old_mail_status` / `old_mail_age`.
    pub old_mail: Option<OldMail>,
}

impl TicketRules {
    /// The rules of an account configured with nothing but its name: type "question", status
    /// "open", the default subject tag, the customer from Reply-To, no automatic replies and no
    /// test mails. What generated stores, fuzzing and tests start from.
    pub fn without_replies(account: &str) -> TicketRules {
        TicketRules {
            account: account.into(),
            ticket_type: "question".into(),
            ticket_status: "open".into(),
            subject_tag: crate::config::default_subject_tag(),
            customer: crate::config::CustomerSource::ReplyTo,
            reply: None,
            test_mail_key: None,
            mail_rules: Vec::new(),
            old_mail: None,
        }
    }

    /// A genuine test-fetch mail of this account: disposed of without a ticket.
    pub fn is_test_mail(&self, parsed: &ParsedMail) -> bool {
        match (&parsed.automation.test_marker, &self.test_mail_key) {
            (Some(marker), Some((email, key))) => {
                crate::ingest::testmail::is_genuine(marker, key, email)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
impl TicketRules {
    /// [`TicketRules::without_replies`] with automatic replies, as a shop at `shop.test`
    /// configures them: at most 2 per recipient and hour, none to mails older than a day.
    pub(crate) fn with_test_replies(account: &str) -> TicketRules {
        TicketRules {
            reply: Some(crate::ingest::reply::ReplyPolicy {
                account_email: format!("{account}@shop.test"),
                sender_name: Some("Shop".into()),
                reply_to: None,
                subject_template: crate::ingest::reply::compose::DEFAULT_SUBJECT.into(),
                body_template: crate::ingest::reply::compose::DEFAULT_BODY.into(),
                subject_tag: "Ticket#".into(),
                ticket_type: "question".into(),
                ticket_status: "open".into(),
                limit: 2,
                max_age: std::time::Duration::from_secs(24 * 3600),
                message_id_domain: "tickets.shop.test".into(),
                own_addresses: vec![format!("{account}@shop.test")],
            }),
            ..TicketRules::without_replies(account)
        }
    }
}
