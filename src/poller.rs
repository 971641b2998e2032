//! One poller per active account: connect, run passes, wait for new mail (IMAP IDLE or polling),
//! and reconnect with capped exponential backoff and jitter. One account's trouble never touches
//! another's: each poller owns its connection and only shares the store.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rustls::ClientConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{
    AccountConfig, AuthMethod, Config, Disposal, ImapAction, DEFAULT_MAX_MESSAGE_SIZE,
};
use crate::health::{AccountHealth, State};
use crate::imap::idle::{idle, idle_wait};
use crate::imap::pass::{run_pass, PassContext, PassReport};
use crate::imap::{self, ImapConnection};
use crate::lease::Holding;
use crate::oauth::TokenSource;
use crate::store::{Store, TicketRules};

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
}

impl AccountRuntime {
    pub fn new(config: &Config, account: &AccountConfig) -> anyhow::Result<AccountRuntime> {
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
                reply: crate::reply::ReplyPolicy::for_account(config, account)?,
                test_mail_key: Some((account.email.clone(), account.test_mail_key())),
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

    /// How long /healthz waits for a success before it calls the account unhealthy.
    /// IDLE ends at `poll_interval` too (see imap::idle), so both waits are the same.
    pub fn expected_interval(&self, idle: bool) -> Duration {
        let wait = if idle {
            idle_wait(self.poll_interval)
        } else {
            self.poll_interval
        };
        wait + self.timeout * 2
    }

    fn ctx<'a>(
        &'a self,
        action: &'a ImapAction,
        store: &'a Store,
        cancel: Option<&'a CancellationToken>,
    ) -> PassContext<'a> {
        PassContext {
            account: &self.account,
            action,
            rules: &self.rules,
            store,
            max_message_size: self.max_message_size,
            cancel,
            health: Some(&self.health),
            lease: &self.lease,
        }
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

/// Connects and logs in, with a token when the account uses OAuth 2.0.
pub async fn imap_connect(rt: &AccountRuntime) -> anyhow::Result<ImapConnection> {
    let a = &rt.account;
    let Some(tokens) = &rt.tokens else {
        return Ok(imap::connect(a, rt.tls.clone(), rt.timeout).await?);
    };
    let server = format!("{}:{}", a.host, a.port());
    crate::oauth::login::sign_in(
        tokens,
        &server,
        &a.user,
        |token| async move { imap::connect_with(a, rt.tls.clone(), rt.timeout, Some(&token)).await },
        |e| match e {
            imap::ImapError::AuthRejected { server, .. } => Some(server.clone()),
            _ => None,
        },
    )
    .await
}

/// One complete pass: connect, fetch everything pending, store, dispose, log out. With `cancel`
/// the pass stops after the batch in flight once it fires.
pub async fn pass_once(
    rt: &AccountRuntime,
    store: &Store,
    cancel: Option<&CancellationToken>,
) -> anyhow::Result<PassReport> {
    match &rt.disposal {
        Disposal::Imap(action) => {
            let mut conn = imap_connect(rt).await?;
            let report = run_pass(&mut conn, &rt.ctx(action, store, cancel)).await;
            let _ = tokio::time::timeout(rt.timeout, conn.session.logout()).await;
            Ok(report?)
        }
        Disposal::Pop3(action) => {
            Ok(crate::pop3::pass::pass_once(rt, *action, store, cancel).await?)
        }
    }
}

/// A short, stable name for the kind of an error, for the `errors` metric.
pub fn error_kind(e: &anyhow::Error) -> &'static str {
    use crate::imap::ImapError;
    use crate::pop3::pass::Pop3PassError;
    if let Some(e) = e.downcast_ref::<ImapError>() {
        return match e {
            ImapError::Connect(_) => "connect",
            ImapError::StartTlsNotOffered { .. } => "tls",
            ImapError::AuthRejected { .. } => "login",
            ImapError::Timeout { .. } => "timeout",
            ImapError::Imap { .. } | ImapError::Protocol { .. } => "protocol",
            ImapError::Refused { .. } => "refused",
            ImapError::Connection { .. } => "connection",
            ImapError::FolderMissing { .. } => "folder",
            ImapError::Store(_) => "store",
        };
    }
    if let Some(e) = e.downcast_ref::<Pop3PassError>() {
        return match e {
            Pop3PassError::Store(_) => "store",
            Pop3PassError::OAuth(o) => o.kind(),
            Pop3PassError::LeaseLost => "lease_lost",
            Pop3PassError::Pop3(p) => {
                use crate::pop3::client::Pop3Error as P;
                match p {
                    P::Connect(_) => "connect",
                    P::StartTlsNotOffered => "tls",
                    P::AuthRejected { .. } => "login",
                    P::LoginDelay { .. } => "login_delay",
                    P::Timeout { .. } => "timeout",
                    P::Closed { .. } | P::ConnectionBroken { .. } | P::Io(_) => "connection",
                    P::Protocol { .. } | P::UidlNotSupported | P::InvalidInput(_) => "protocol",
                }
            }
        };
    }
    if e.downcast_ref::<crate::store::StoreError>().is_some() {
        return "store";
    }
    if let Some(e) = e.downcast_ref::<crate::oauth::OAuthError>() {
        return e.kind();
    }
    "other"
}

/// Exponential backoff with jitter: 1s, 2s, 4s … capped at 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter)
}

/// Logs a pass and reports it: a pass that returned is a success, and its disposal problems
/// are counted as errors.
fn after_pass(rt: &AccountRuntime, report: &PassReport) {
    log_report(&rt.account.name, report);
    rt.health.success();
    for _ in &report.dispose_errors {
        crate::metrics::error(&rt.account.name, "dispose");
    }
}

fn log_report(account: &str, report: &PassReport) {
    if report.fetched > 0 || report.disposed > 0 || !report.dispose_errors.is_empty() {
        info!(
            account,
            fetched = report.fetched,
            new = report.new_tickets,
            followups = report.followups,
            duplicates = report.duplicates,
            test_mails = report.test_mails,
            disposed = report.disposed,
            oversized = report.oversized,
            failed = report.failed,
            quarantined = report.quarantined,
            dispose_errors = report.dispose_errors.len(),
            "pass done"
        );
    } else {
        debug!(account, "pass done, nothing new");
    }
}

/// The server's words when `e` is a rejected login (wrong user or password): retrying soon
/// cannot help, and a provider's fail2ban would ban the whole host after a few tries. Other
/// login trouble (a locked maildrop, a server fault, "too early") is not a rejection.
pub fn login_rejection(e: &anyhow::Error) -> Option<&str> {
    use crate::imap::ImapError;
    use crate::pop3::client::Pop3Error;
    use crate::pop3::pass::Pop3PassError;
    match e.downcast_ref::<ImapError>() {
        Some(ImapError::AuthRejected { server, .. }) => return Some(server),
        Some(_) => return None,
        None => {}
    }
    match e.downcast_ref::<Pop3PassError>() {
        Some(Pop3PassError::Pop3(Pop3Error::AuthRejected { server_text, .. })) => Some(server_text),
        _ => None,
    }
}

/// After a rejected login: 10 minutes, doubling up to an hour. At most two failed logins per
/// account in any first 10 minutes, however the process is restarted by a reload.
pub fn login_backoff(rejections: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(10 * 60);
    const MAX: Duration = Duration::from_secs(60 * 60);
    FIRST
        .saturating_mul(1u32 << rejections.saturating_sub(1).min(3))
        .min(MAX)
}

/// The long-running loop of one account; returns when `cancel` fires.
pub async fn run_account(rt: AccountRuntime, store: Store, cancel: CancellationToken) {
    let name = rt.account.name.clone();
    let mut failures = 0u32;
    // Consecutive rejected logins; any other outcome of a connection starts again from zero.
    let mut rejections = 0u32;
    while !cancel.is_cancelled() {
        rt.health.set(State::Connecting);
        let result = match &rt.disposal {
            Disposal::Imap(action) => {
                imap_session(&rt, action, &store, &cancel, &mut failures).await
            }
            Disposal::Pop3(_) => poll_session(&rt, &store, &cancel, &mut failures).await,
        };
        if let Err(e) = &result {
            if let Some(server_said) = login_rejection(e) {
                rejections += 1;
                let delay = login_backoff(rejections);
                let until =
                    chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                let next_try = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                crate::metrics::error(&name, "login");
                warn!(account = %name, server_said, rejections, next_try = %next_try,
                    "login rejected: check the account's user and password; not trying again \
                     before {next_try} (a SIGHUP with changed credentials retries at once)");
                rt.health
                    .login_rejected(&format!("{e:#}"), server_said, until);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
                continue;
            }
        }
        rejections = 0;
        match result {
            Ok(()) => {
                rt.health.set(State::Stopped);
                return;
            }
            Err(e) => {
                failures += 1;
                // A wrong client secret or a revoked authorization waits for the admin: retry
                // at the longest interval instead of asking the provider again every second.
                if e.downcast_ref::<crate::oauth::OAuthError>()
                    .is_some_and(|o| o.is_permanent())
                    || matches!(e.downcast_ref::<crate::pop3::pass::Pop3PassError>(),
                        Some(crate::pop3::pass::Pop3PassError::OAuth(o)) if o.is_permanent())
                {
                    failures = failures.max(8);
                }
                rt.health.set_error_kind(error_kind(&e));
                let delay = backoff_delay(failures);
                let until =
                    chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                crate::metrics::error(&name, error_kind(&e));
                error!(account = %name, error = %format!("{e:#}"), failures,
                    backing_off_until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "account failing");
                rt.health.failed(&format!("{e:#}"), until);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

/// Polls without a persistent connection (POP3): a pass, then sleep `poll_interval`.
/// `failures` is reset by every successful pass, so an occasional drop after hours of work
/// backs off for a second, not for the maximum.
async fn poll_session(
    rt: &AccountRuntime,
    store: &Store,
    cancel: &CancellationToken,
    failures: &mut u32,
) -> anyhow::Result<()> {
    rt.health.set_expected(rt.expected_interval(false));
    let mut interval = PollInterval::default();
    loop {
        rt.health.set(State::Polling);
        let wait = match pass_once(rt, store, Some(cancel)).await {
            Ok(report) => {
                *failures = 0;
                after_pass(rt, &report);
                interval.learn(rt, report.login_delay)
            }
            Err(e) => match login_delay(&e) {
                // Too early is not a failure: nobody must change anything, so no backoff.
                Some(delay) => {
                    warn!(account = %rt.account.name, error = %format!("{e:#}"), "login too early");
                    match delay {
                        Some(delay) => interval.learn(rt, Some(delay)),
                        // RFC 2449 suggests delays of minutes; without a figure, wait one.
                        None => rt.poll_interval.max(Duration::from_secs(60)),
                    }
                }
                None => return Err(e),
            },
        };
        rt.health.set(State::Waiting);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

/// The POP3 wait between passes: `poll_interval`, or the server's LOGIN-DELAY (RFC 2449) when
/// that is longer, since a login before it would be refused.
#[derive(Default)]
struct PollInterval {
    announced: Option<Duration>,
}

impl PollInterval {
    /// The wait after a pass that saw `delay`; says once when the delay bounds the interval.
    fn learn(&mut self, rt: &AccountRuntime, delay: Option<Duration>) -> Duration {
        let wait = rt.poll_interval.max(delay.unwrap_or_default());
        if wait > rt.poll_interval && self.announced != Some(wait) {
            self.announced = Some(wait);
            info!(account = %rt.account.name, login_delay_secs = wait.as_secs(),
                poll_interval_secs = rt.poll_interval.as_secs(),
                "the POP3 server allows one login every {} s (LOGIN-DELAY): polling every {} s instead of poll_interval",
                wait.as_secs(), wait.as_secs());
            rt.health.set_expected(wait + rt.timeout * 2);
        }
        wait
    }
}

/// `Some(advertised delay)` when `e` is a POP3 login refused as too early.
fn login_delay(e: &anyhow::Error) -> Option<Option<Duration>> {
    use crate::pop3::client::Pop3Error;
    use crate::pop3::pass::Pop3PassError;
    match e.downcast_ref::<Pop3PassError>()? {
        Pop3PassError::Pop3(Pop3Error::LoginDelay { delay, .. }) => Some(*delay),
        _ => None,
    }
}

/// Keeps one IMAP connection: pass, then IDLE (or poll) until something arrives, repeat.
async fn imap_session(
    rt: &AccountRuntime,
    action: &ImapAction,
    store: &Store,
    cancel: &CancellationToken,
    failures: &mut u32,
) -> anyhow::Result<()> {
    let name = rt.account.name.as_str();
    let mut conn = imap_connect(rt).await?;
    info!(account = name, idle = conn.has("IDLE"), "connected");
    rt.health.set(State::Connected);
    rt.health
        .set_expected(rt.expected_interval(conn.has("IDLE")));
    loop {
        rt.health.set(State::Polling);
        let report = run_pass(&mut conn, &rt.ctx(action, store, Some(cancel))).await?;
        *failures = 0;
        after_pass(rt, &report);
        if cancel.is_cancelled() {
            let _ = tokio::time::timeout(rt.timeout, conn.session.logout()).await;
            return Ok(());
        }
        // Changes that arrived during the pass are already queued: go again right away.
        let mut changed = false;
        while let Ok(resp) = conn.session.unsolicited_responses.try_recv() {
            if matches!(resp, async_imap::types::UnsolicitedResponse::Exists(_)) {
                changed = true;
            }
        }
        if changed {
            continue;
        }
        if conn.has("IDLE") {
            rt.health.set(State::Idle);
            conn = match idle(conn, rt.poll_interval, cancel).await? {
                Some(conn) => conn,
                None => return Ok(()),
            };
        } else {
            rt.health.set(State::Waiting);
            tokio::select! {
                _ = tokio::time::sleep(rt.poll_interval) => {}
                _ = cancel.cancelled() => {
                    let _ = tokio::time::timeout(rt.timeout, conn.session.logout()).await;
                    return Ok(());
                }
            }
        }
    }
}

pub fn warn_inactive(account: &AccountConfig) {
    warn!(account = %account.name, "account inactive (active = false): validated, not polled");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_logins_wait_ten_minutes_doubling_to_an_hour() {
        let minutes = |n| login_backoff(n).as_secs() / 60;
        assert_eq!([1, 2, 3, 4, 5, 40].map(minutes), [10, 20, 40, 60, 60, 60]);
    }
}
