//! An account as its poller runs it: the config resolved once (TLS, disposal, ticket rules,
//! limits, tokens), shared by the protocols' sign-in and the pass.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::budget::MemoryBudget;
use crate::config::{AccountConfig, AuthMethod, Config, Disposal, DEFAULT_MAX_MESSAGE_SIZE};
use crate::health::AccountHealth;
use crate::ingest::mail_rules::{MailRule, OldMail};
use crate::oauth::TokenSource;
use crate::source::Holding;
use crate::store::TicketRules;

/// What a poller needs, resolved once from the config.
#[derive(Clone)]
pub struct AccountRuntime {
    pub account: AccountConfig,
    /// `protocol` + `action` + `move_to`, typed: the protocol code dispatches on this.
    pub disposal: Disposal,
    pub rules: TicketRules,
    pub tls: Arc<ClientConfig>,
    pub max_message_size: u64,
    pub poll_interval: Duration,
    pub timeout: Duration,
    /// Where the poller reports its state (detached unless the supervisor registered it).
    pub health: AccountHealth,
    /// With `auth = "oauth2"`: the account's tokens, kept across reconnects.
    pub tokens: Option<Arc<TokenSource>>,
    /// Several instances: asked before every disposal (set by `lease::serve`; always yes
    /// otherwise).
    pub lease: Holding,
    /// The process's memory for mail in flight, shared by every account.
    pub budget: MemoryBudget,
}

impl AccountRuntime {
    pub fn new(
        config: &Config,
        account: &AccountConfig,
        budget: &MemoryBudget,
    ) -> anyhow::Result<AccountRuntime> {
        let tls = crate::tls::client_config(account.ca_file.as_deref())?;
        let disposal = account
            .disposal()
            .map_err(|e| anyhow::anyhow!("account {:?}: `action`: {e}", account.name))?;
        Ok(AccountRuntime {
            disposal,
            rules: TicketRules {
                account: account.name.clone(),
                ticket_type: account.ticket_type.clone(),
                ticket_status: account.ticket_status.clone(),
                subject_tag: config
                    .tickets
                    .as_ref()
                    .map(|t| t.subject_tag.clone())
                    .unwrap_or_else(crate::config::default_subject_tag),
                customer: account.customer,
                reply: crate::ingest::reply::ReplyPolicy::for_account(config, account)?,
                test_mail_key: Some((account.email.clone(), account.test_mail_key())),
                mail_rules: mail_rules(account)?,
                old_mail: OldMail::for_account(account),
            },
            tls,
            max_message_size: account
                .max_message_size
                .or(config.daemon.max_message_size)
                .map_or(DEFAULT_MAX_MESSAGE_SIZE, |s| s.0),
            poll_interval: config.daemon.poll_interval,
            timeout: config.daemon.network_timeout,
            health: AccountHealth::detached(&account.name),
            tokens: token_source(config, account)?,
            lease: Holding::default(),
            budget: budget.clone(),
            account: account.clone(),
        })
    }

    /// Whether `other` would poll exactly like this one (a reload restarts the account if not).
    /// The CA file is compared by path, not by content.
    pub fn same_settings(&self, other: &AccountRuntime) -> bool {
        self.account == other.account
            && self.rules == other.rules
            && self.max_message_size == other.max_message_size
            && self.poll_interval == other.poll_interval
            && self.timeout == other.timeout
    }
}

fn token_source(
    config: &Config,
    account: &AccountConfig,
) -> anyhow::Result<Option<Arc<TokenSource>>> {
    match (&account.auth, &account.oauth2) {
        (AuthMethod::Oauth2, Some(o)) => Ok(Some(Arc::new(TokenSource::new(
            &account.name,
            o,
            account.protocol.into(),
            &config.store.path,
            config.daemon.network_timeout,
        )?))),
        _ => Ok(None),
    }
}

/// The account's `[[account.rule]]`s, compiled. check-config refuses a config with a rule that
/// does not compile, so an error here means the config was not checked.
fn mail_rules(account: &AccountConfig) -> anyhow::Result<Vec<MailRule>> {
    account
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            MailRule::new(i + 1, rule)
                .map_err(|e| anyhow::anyhow!("account {:?}: rule {}: {e}", account.name, i + 1))
        })
        .collect()
}
