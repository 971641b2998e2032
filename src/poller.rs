//! One poller per active account: connect, run passes, wait for new mail (IMAP IDLE or polling),
//! and reconnect with capped exponential backoff and jitter. One account's trouble never touches
//! another's: each poller owns its connection and only shares the store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::account::AccountRuntime;
use crate::backoff::{backoff_delay, login_backoff};
use crate::config::{AccountConfig, Disposal, ImapAction, Pop3Action};
use crate::graph::source::{GraphMailbox, GraphSource};
use crate::health::State;
use crate::imap::flagged_wait::FlaggedWait;
use crate::imap::idle::{idle_wait, logout, wait_for_change, Woken};
use crate::imap::source::ImapSource;
use crate::pop3::source::Pop3Source;
use crate::source::{run_pass, ErrorKind, PassContext, PassReport, SourceError};
use crate::store::Store;

/// How long /healthz waits for a success before it calls the account unhealthy.
/// IDLE ends at `poll_interval` too (see imap::idle), so both waits are the same.
pub fn expected_interval(rt: &AccountRuntime, idle: bool) -> Duration {
    let wait = if idle {
        idle_wait(rt.poll_interval)
    } else {
        rt.poll_interval
    };
    wait + rt.timeout * 2
}

fn context<'a>(
    rt: &'a AccountRuntime,
    store: &'a Store,
    cancel: Option<&'a CancellationToken>,
) -> PassContext<'a> {
    PassContext {
        account: &rt.account.name,
        rules: &rt.rules,
        store,
        max_message_size: rt.max_message_size,
        cancel,
        health: Some(&rt.health),
        lease: &rt.lease,
        budget: &rt.budget,
    }
}

/// One pass on a connection of its own (`run --once`, a POP3 poll): connect, fetch everything
/// pending, store, dispose, log out. With `cancel` the pass stops after the batch in hand once
/// it fires.
pub async fn connect_and_pass(
    rt: &AccountRuntime,
    store: &Store,
    cancel: Option<&CancellationToken>,
) -> Result<PassReport, SourceError> {
    match &rt.disposal {
        Disposal::Imap(action) => {
            let mut conn = crate::imap::login::sign_in(rt).await?;
            // One pass: nothing to remember for a next one.
            let mut wait = FlaggedWait::default();
            let report = imap_pass(rt, &mut conn, action, store, cancel, &mut wait).await;
            logout(conn).await;
            report
        }
        Disposal::Pop3(action) => pop3_pass(rt, *action, store, cancel).await,
        Disposal::Graph(action) => {
            let mut mailbox = GraphMailbox::for_account(rt, action)?;
            run_pass(GraphSource::new(&mut mailbox), &context(rt, store, cancel)).await
        }
    }
}

async fn imap_pass(
    rt: &AccountRuntime,
    conn: &mut crate::imap::ImapConnection,
    action: &ImapAction,
    store: &Store,
    cancel: Option<&CancellationToken>,
    wait: &mut FlaggedWait,
) -> Result<PassReport, SourceError> {
    let source = ImapSource::new(conn, &rt.account, action, wait);
    run_pass(source, &context(rt, store, cancel)).await
}

async fn pop3_pass(
    rt: &AccountRuntime,
    action: Pop3Action,
    store: &Store,
    cancel: Option<&CancellationToken>,
) -> Result<PassReport, SourceError> {
    let client = crate::pop3::login::sign_in(rt).await?;
    let login_delay = client.login_delay();
    let source = Pop3Source::new(client, action);
    let report = run_pass(source, &context(rt, store, cancel)).await?;
    Ok(PassReport {
        login_delay,
        ..report
    })
}

/// Logs a pass and reports it: a pass that returned is a success, and its disposal problems
/// are counted as errors.
fn after_pass(rt: &AccountRuntime, report: &PassReport) {
    log_report(&rt.account.name, report);
    rt.health.success();
    crate::metrics::pass_done(&rt.account.name);
    for _ in &report.dispose_errors {
        crate::metrics::error(&rt.account.name, "dispose");
    }
    for _ in 0..report.unknown_outcomes {
        crate::metrics::error(&rt.account.name, "unknown_outcome");
    }
}

fn log_report(account: &str, report: &PassReport) {
    if report.fetched > 0
        || report.oversized > 0
        || report.disposed > 0
        || !report.dispose_errors.is_empty()
        || report.unknown_outcomes > 0
    {
        info!(
            account,
            fetched = report.fetched,
            new = report.new_tickets,
            followups = report.followups,
            duplicates = report.duplicates,
            test_mails = report.test_mails,
            disposed = report.disposed,
            oversized = report.oversized,
            completed = report.completed,
            failed = report.failed,
            quarantined = report.quarantined,
            unknown_outcomes = report.unknown_outcomes,
            dispose_errors = report.dispose_errors.len(),
            "pass done"
        );
    } else {
        debug!(account, "pass done, nothing new");
    }
}

/// The long-running loop of one account; returns when `cancel` fires.
pub async fn run_account(rt: AccountRuntime, store: Store, cancel: CancellationToken) {
    let name = rt.account.name.clone();
    let mut failures = 0u32;
    // Consecutive rejected logins; any other outcome of a connection starts again from zero.
    let mut rejections = 0u32;
    // The account's state that outlives a connection (and so a reconnect): whether its mails
    // wait flagged \Deleted, so that is said when it starts and ends, not every pass.
    let mut wait = FlaggedWait::default();
    while !cancel.is_cancelled() {
        rt.health.set(State::Connecting);
        let result = match &rt.disposal {
            Disposal::Imap(action) => {
                imap_session(&rt, action, &store, &cancel, &mut failures, &mut wait).await
            }
            Disposal::Pop3(_) => poll_session(&rt, &store, &cancel, &mut failures).await,
            Disposal::Graph(action) => {
                graph_session(&rt, action, &store, &cancel, &mut failures).await
            }
        };
        let e = match result {
            Ok(()) => {
                rt.health.set(State::Stopped);
                return;
            }
            Err(e) => e,
        };
        // A rejected login (wrong user or password): retrying soon cannot help, and a
        // provider's fail2ban would ban the whole host after a few tries. Other login trouble
        // (a locked maildrop, a server fault, "too early") is not a rejection.
        if let ErrorKind::LoginRejected { server_said } = e.kind() {
            rejections += 1;
            let delay = login_backoff(rejections);
            let until = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
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
        rejections = 0;
        failures += 1;
        // A wrong client secret or a revoked authorization waits for the admin: retry at the
        // longest interval instead of asking the provider again every second.
        if matches!(
            e.kind(),
            ErrorKind::OAuth {
                permanent: true,
                ..
            }
        ) {
            failures = failures.max(8);
        }
        let kind = e.kind().label();
        rt.health.set_error_kind(kind);
        let delay = backoff_delay(failures);
        let until = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        crate::metrics::error(&name, kind);
        error!(account = %name, error = %format!("{e:#}"), failures,
            backing_off_until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "account failing");
        rt.health.failed(&format!("{e:#}"), until);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
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
) -> Result<(), SourceError> {
    rt.health.set_expected(expected_interval(rt, false));
    let mut interval = PollInterval::default();
    loop {
        rt.health.set(State::Polling);
        let wait = match connect_and_pass(rt, store, Some(cancel)).await {
            Ok(report) => {
                *failures = 0;
                after_pass(rt, &report);
                interval.learn(rt, report.login_delay)
            }
            // Too early is not a failure: nobody must change anything, so no backoff.
            Err(e) => match e.kind() {
                ErrorKind::LoginTooEarly { delay } => {
                    warn!(account = %rt.account.name, error = %format!("{e:#}"), "login too early");
                    match delay {
                        Some(delay) => interval.learn(rt, Some(*delay)),
                        // RFC 2449 suggests delays of minutes; without a figure, wait one.
                        None => rt.poll_interval.max(Duration::from_secs(60)),
                    }
                }
                _ => return Err(e),
            },
        };
        rt.health.set(State::Waiting);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

/// Polls a Graph mailbox every `poll_interval`. The mailbox (its folder ids and the delta
/// state) is kept between passes, so a pass that finds nothing costs one request; a failure
/// starts a new session, which lists the whole folder again.
async fn graph_session(
    rt: &AccountRuntime,
    action: &crate::config::GraphAction,
    store: &Store,
    cancel: &CancellationToken,
    failures: &mut u32,
) -> Result<(), SourceError> {
    rt.health.set_expected(expected_interval(rt, false));
    let mut mailbox = GraphMailbox::for_account(rt, action)?;
    loop {
        rt.health.set(State::Polling);
        let context = context(rt, store, Some(cancel));
        let report = run_pass(GraphSource::new(&mut mailbox), &context).await?;
        *failures = 0;
        after_pass(rt, &report);
        rt.health.set(State::Waiting);
        tokio::select! {
            _ = tokio::time::sleep(rt.poll_interval) => {}
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

/// Keeps one IMAP connection: pass, then wait (IDLE or polling) until something arrives, repeat.
async fn imap_session(
    rt: &AccountRuntime,
    action: &ImapAction,
    store: &Store,
    cancel: &CancellationToken,
    failures: &mut u32,
    wait: &mut FlaggedWait,
) -> Result<(), SourceError> {
    let name = rt.account.name.as_str();
    let mut conn = crate::imap::login::sign_in(rt).await?;
    info!(account = name, idle = conn.has("IDLE"), "connected");
    rt.health.set(State::Connected);
    rt.health
        .set_expected(expected_interval(rt, conn.has("IDLE")));
    loop {
        rt.health.set(State::Polling);
        let report = imap_pass(rt, &mut conn, action, store, Some(cancel), wait).await?;
        *failures = 0;
        after_pass(rt, &report);
        if cancel.is_cancelled() {
            logout(conn).await;
            return Ok(());
        }
        rt.health.set(if conn.has("IDLE") {
            State::Idle
        } else {
            State::Waiting
        });
        conn = match wait_for_change(conn, rt.poll_interval, cancel).await? {
            Woken::Pass(conn) => *conn,
            Woken::Cancelled => return Ok(()),
        };
    }
}

pub fn warn_inactive(account: &AccountConfig) {
    warn!(account = %account.name, "account inactive (active = false): validated, not polled");
}
