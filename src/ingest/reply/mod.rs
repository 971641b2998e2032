//! Automatic replies to mails that open a new ticket.
//!
//! * [`rules`]: whether a mail may get a reply at all (robots, lists, loops, old mail) — pure.
//! * [`compose`]: the reply message itself, from the account's templates — pure.
//!
//! Both are pure: they know nothing of the store. The task that delivers the outbox through the
//! shared SMTP transport, with retries, exactly once, is [`crate::delivery`].
//!
//! The reply is decided with the rest of a mail's fate (`ingest::route`) and queued by the store
//! in the ingestion transaction: the ticket, the outbox row and the article's `reply_note`
//! commit together, so a reply is never lost (queued with its ticket) and never queued twice
//! (the mail's source key is processed in the same commit).

pub mod compose;
pub mod rules;

use std::time::Duration;

use crate::config::{AccountConfig, Config};

/// Recipients get at most this many replies per hour unless the account says otherwise.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);

/// Everything the ingestion hook needs to decide on and compose a reply for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyPolicy {
    pub account_email: String,
    pub sender_name: Option<String>,
    pub reply_to: Option<String>,
    /// Subject template; the ticket tag is put in front unless the result already carries it.
    pub subject_template: String,
    pub body_template: String,
    pub subject_tag: String,
    pub ticket_type: String,
    pub ticket_status: String,
    /// Replies per recipient and hour.
    pub limit: u32,
    /// Mails whose Date is older than this get no reply.
    pub max_age: Duration,
    /// Domain of our Message-IDs.
    pub message_id_domain: String,
    /// Every address that is ours (all accounts' emails and reply_to addresses), lower case.
    pub own_addresses: Vec<String>,
}

impl ReplyPolicy {
    /// The policy of `account`, or `None` when it does not auto-reply (or there is no [smtp]).
    pub fn for_account(
        config: &Config,
        account: &AccountConfig,
    ) -> anyhow::Result<Option<ReplyPolicy>> {
        let Some(smtp) = &config.smtp else {
            return Ok(None);
        };
        if !account.auto_reply {
            return Ok(None);
        }
        let body_template = match (&account.auto_reply_body, &account.auto_reply_template_file) {
            (Some(body), _) => body.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "account {}: cannot read auto_reply_template_file {}: {e}",
                    account.name,
                    path.display()
                )
            })?,
            (None, None) => compose::DEFAULT_BODY.to_string(),
        };
        let mut own_addresses: Vec<String> = config
            .accounts
            .iter()
            .flat_map(|a| std::iter::once(&a.email).chain(a.reply_to.as_ref()))
            .map(|e| e.trim().to_lowercase())
            .collect();
        own_addresses.sort();
        own_addresses.dedup();
        Ok(Some(ReplyPolicy {
            account_email: account.email.trim().to_string(),
            sender_name: account.sender_name.clone().filter(|n| !n.trim().is_empty()),
            reply_to: account.reply_to.clone(),
            subject_template: account
                .auto_reply_subject
                .clone()
                .unwrap_or_else(|| compose::DEFAULT_SUBJECT.to_string()),
            body_template,
            subject_tag: config
                .tickets
                .as_ref()
                .map(|t| t.subject_tag.clone())
                .unwrap_or_else(crate::config::default_subject_tag),
            ticket_type: account.ticket_type.clone(),
            ticket_status: account.ticket_status.clone(),
            limit: account.auto_reply_limit,
            max_age: account.auto_reply_max_age,
            message_id_domain: message_id_domain(config, smtp),
            own_addresses,
        }))
    }
}

/// `[smtp] message_id_domain`, else the domain of the first account's address.
pub fn message_id_domain(config: &Config, smtp: &crate::config::SmtpConfig) -> String {
    smtp.message_id_domain
        .clone()
        .filter(|d| !d.trim().is_empty())
        .or_else(|| {
            config
                .accounts
                .first()
                .and_then(|a| a.email.rsplit_once('@'))
                .map(|(_, d)| d.to_string())
        })
        .unwrap_or_else(|| "mail2ticket.invalid".into())
        .trim()
        .to_lowercase()
}
