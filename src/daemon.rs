//! The daemon: installs the signal handlers, opens the store, hands the accounts to the
//! [`Supervisor`](crate::supervisor), serves /healthz and /metrics, reloads on SIGHUP and stops
//! within the shutdown deadline on SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::account::AccountRuntime;
use crate::config::{Config, Instances, Loaded, Severity};
use crate::delivery::{OutboxSender, SenderSettings};
use crate::health::Health;
use crate::http::HttpState;
use crate::lease::Leases;
use crate::reload::{ReloadOutcome, Reloader};
use crate::signals::{self, Event, Signals};
use crate::store::Store;
use crate::supervisor::{self, Plan, Supervisor};
use crate::transport::Transport;

/// `run --once` waits at most this long for queued replies before it exits; what is left (the
/// SMTP server is down, say) stays in the outbox for the next run.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

type Sender = OutboxSender<Transport>;

/// How long stopping tasks may take to finish their mail in flight before they are aborted.
/// With the store close after it, the daemon exits well within 10 s of SIGTERM even when a
/// server hangs (systemd's TimeoutStopSec default is 90 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

pub async fn run(loaded: Loaded, config_path: Option<PathBuf>, once: bool) -> ExitCode {
    // First thing: a SIGTERM during start-up (migrations) is queued, not fatal half-way.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.config;
    let store = match Store::open_at(&config.store.location()).await {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    warn_of_uncompared_copies(&store).await;
    let plan = match supervisor::plan(&config) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            store.close().await;
            return ExitCode::from(crate::config::EXIT_CONFIG);
        }
    };
    if config.store.instances == Instances::One {
        if let Err(e) = crate::lease::check_alone(&store).await {
            error!("{e}");
            store.close().await;
            return ExitCode::FAILURE;
        }
    }
    let leases = (config.store.instances == Instances::Several).then(|| {
        let leases = Leases::new(store.clone());
        info!(
            instance = leases.owner(),
            "several instances share the store: accounts are polled under leases"
        );
        leases
    });
    let code = if once {
        let sender = plan.smtp.map(|(smtp, transport)| {
            OutboxSender::new(store.clone(), transport, SenderSettings::for_smtp(&smtp))
        });
        run_once(&plan.accounts, &store, leases.as_ref(), sender.as_ref()).await
    } else {
        let path = crate::config::resolve_path(config_path);
        run_forever(config, path, plan, &store, leases, signals).await
    };
    if tokio::time::timeout(Duration::from_secs(2), store.close())
        .await
        .is_err()
    {
        warn!("closing the ticket store took over 2s; exiting anyway (SQLite's WAL keeps every commit)");
    }
    code
}

/// Says at every start whether the store holds copies an earlier version recorded without
/// comparing their content, so an admin upgrading learns of mail that may have been merged.
async fn warn_of_uncompared_copies(store: &Store) {
    match store.copies_not_compared().await {
        Ok(0) => {}
        Ok(count) => warn!(
            count,
            "copies recorded before migration 0014: an earlier version took these mails for \
             copies of a stored mail by sender and Message-ID alone, without comparing content, \
             and did not store their bytes; see docs/operations.md, \"Mails taken for copies \
             before migration 0014\", to list them and find any that were mails of their own"
        ),
        Err(e) => warn!("could not count the copies recorded before migration 0014: {e}"),
    }
}

/// One pass per active account, concurrently; exit 0 only when every pass fully succeeded:
/// every mail it saw stored and disposed of.
async fn run_once(
    runtimes: &[AccountRuntime],
    store: &Store,
    leases: Option<&Leases>,
    sender: Option<&Sender>,
) -> ExitCode {
    let mut set = JoinSet::new();
    for rt in runtimes.iter().cloned() {
        let store = store.clone();
        let leases = leases.cloned();
        set.spawn(async move {
            let result = crate::lease::pass_holding_lease(leases.as_ref(), &rt, &store).await;
            (rt.account.name.clone(), result)
        });
    }
    let mut ok = true;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(report))) => {
                info!(account = %name, fetched = report.fetched, new = report.new_tickets,
                    followups = report.followups, duplicates = report.duplicates,
                    disposed = report.disposed, oversized = report.oversized, completed = report.completed,
                    failed = report.failed, quarantined = report.quarantined, "pass finished");
                if report.failed > 0 {
                    ok = false;
                    eprintln!(
                        "error: account {name}: {} mail(s) could not be stored ({} quarantined); \
                         they stay on the server, see the log for why",
                        report.failed, report.quarantined
                    );
                }
                if report.unknown_outcomes > 0 {
                    ok = false;
                    eprintln!(
                        "error: account {name}: {} mail(s) are recorded in the store with an \
                         outcome this version does not know; they stay on the server, see the log",
                        report.unknown_outcomes
                    );
                }
                if !report.dispose_errors.is_empty() {
                    ok = false;
                    for e in &report.dispose_errors {
                        eprintln!("error: account {name}: {e}");
                    }
                }
            }
            Ok((name, Err(e))) => {
                ok = false;
                error!(account = %name, "{e:#}");
                eprintln!("error: account {name}: {e:#}");
            }
            Err(e) => {
                ok = false;
                error!("a pass crashed: {e}");
            }
        }
    }
    let drained = match sender {
        Some(sender) => drain_outbox(sender).await,
        None => Drained::All,
    };
    match (ok, drained) {
        (true, Drained::All) => ExitCode::SUCCESS,
        (true, Drained::StillQueued) => ExitCode::from(EXIT_REPLIES_QUEUED),
        _ => ExitCode::FAILURE,
    }
}

/// `run --once`'s exit code when every mail was stored and disposed of but automatic replies
/// are still queued (the SMTP server is unreachable, say): EX_TEMPFAIL of sysexits.h, which cron
/// wrappers and systemd units read as "try again later", not as a failure of the mail.
pub const EXIT_REPLIES_QUEUED: u8 = 75;

/// What became of the outbox at the end of `run --once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// Every due reply was sent (or failed for good, which the log and the ticket say).
    All,
    /// Some replies wait for a later try: they stay queued for the next run.
    StillQueued,
    /// The outbox could not be read or written.
    Failed,
}

/// Sends the replies this run queued (and older ones that are due), waiting at most DRAIN_WAIT.
/// Replies that cannot go out yet stay queued for the next run.
async fn drain_outbox(sender: &Sender) -> Drained {
    match sender.drain(DRAIN_WAIT).await {
        Ok(summary) if summary.unsent() > 0 => {
            warn!(
                unsent = summary.unsent(),
                next_attempt = summary.next_due.as_deref().unwrap_or("-"),
                "automatic replies still queued; the next run (or the daemon) sends them"
            );
            eprintln!(
                "warning: {} automatic replies are still queued (SMTP not reachable?); the next \
                 run sends them (exit code {EXIT_REPLIES_QUEUED})",
                summary.unsent()
            );
            Drained::StillQueued
        }
        Ok(summary) => {
            info!(
                sent = summary.sent,
                failed = summary.failed,
                "outbox drained"
            );
            Drained::All
        }
        Err(e) => {
            error!("sending the queued replies failed: {e}");
            eprintln!("error: sending the queued replies failed: {e}");
            Drained::Failed
        }
    }
}

async fn run_forever(
    config: Config,
    path: PathBuf,
    plan: Plan,
    store: &Store,
    leases: Option<Leases>,
    mut signals: Signals,
) -> ExitCode {
    let health = Health::default();
    let board = crate::alerts::Board::default();
    let background = CancellationToken::new();
    if let Some(addr) = config.daemon.http_listen {
        let listener = match crate::http::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let state = HttpState {
            health: health.clone(),
            store: store.clone(),
            alerts: board.clone(),
        };
        tokio::spawn(crate::http::serve(listener, state, background.clone()));
    }
    // The accounts page asks for reloads through this channel; without the page it stays empty.
    let (reloader, mut reload_requests) = Reloader::channel();
    if let Some(web) = &config.web {
        let listener = match crate::web::bind(web).await {
            Ok(l) => l,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let page = crate::web::WebState::new(
            web.clone(),
            path.clone(),
            health.clone(),
            store.clone(),
            reloader,
        );
        tokio::spawn(crate::web::serve(listener, page, background.clone()));
    } else {
        drop(reloader);
    }
    // The alert task and the webhook read the config as it is now (a reload applies at once).
    let (config_now, config_seen) =
        tokio::sync::watch::channel(std::sync::Arc::new(config.clone()));
    tokio::spawn(
        crate::alerts::Alerting::new(store.clone(), health.clone(), board, config_seen.clone())
            .run(background.clone()),
    );
    match crate::alerts::webhook::WebhookDeliver::new(config_seen) {
        Ok(webhook) => {
            let sender = OutboxSender::new(store.clone(), webhook, SenderSettings::for_webhook());
            tokio::spawn(sender.run(background.clone()));
        }
        Err(e) => error!("alerts: {e}"),
    }
    let mut supervisor = Supervisor::new(store.clone(), leases, health, SHUTDOWN_GRACE);
    supervisor.apply(plan).await;
    tokio::spawn(signals::watchdog(background.clone()));
    let accounts = supervisor.account_count();
    info!(accounts, config = %path.display(), pid = std::process::id(), "mail2ticket running");
    signals::notify_ready(&format!("running {accounts} account(s)"));

    let mut current = config;
    let name = loop {
        tokio::select! {
            event = signals.next() => match event {
                Event::Shutdown(name) => break name,
                Event::Reload => {
                    reload(&path, &mut current, &mut supervisor).await;
                    config_now.send_replace(std::sync::Arc::new(current.clone()));
                }
            },
            Some(request) = reload_requests.recv() => {
                let outcome = reload(&path, &mut current, &mut supervisor).await;
                config_now.send_replace(std::sync::Arc::new(current.clone()));
                let _ = request.reply.send(outcome);
            }
        }
    };
    signals::notify_stopping();
    info!(signal = name, "stopping: finishing the mails in flight");
    let started = Instant::now();
    let clean = supervisor.shutdown().await;
    background.cancel();
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        clean, "stopped"
    );
    ExitCode::SUCCESS
}

/// SIGHUP (or a Save on the accounts page): load and validate the file again. A config with
/// errors is rejected with every error logged, and the running one stays; otherwise only the
/// accounts whose settings changed are restarted.
async fn reload(path: &Path, current: &mut Config, supervisor: &mut Supervisor) -> ReloadOutcome {
    signals::notify_reloading();
    let started = Instant::now();
    info!(config = %path.display(), "SIGHUP: reloading the config");
    let outcome = match crate::config::load(path) {
        Err(e) => {
            for issue in &e.issues {
                error!(config = %path.display(), "{issue}");
            }
            error!(
                config = %path.display(),
                errors = e.issues.iter().filter(|i| i.severity == Severity::Error).count(),
                "config reload rejected: still running the previous config; fix the file \
                 (`mail2ticket check-config`) and send SIGHUP again"
            );
            ReloadOutcome::Rejected(e.issues.iter().map(|i| i.to_string()).collect())
        }
        Ok(loaded) => {
            for w in &loaded.warnings {
                warn!(config = %path.display(), "{w}");
            }
            let new = loaded.config;
            needs_restart(current, &new);
            match supervisor::plan(&new) {
                Err(e) => {
                    error!(
                        "config reload rejected: {e}; still running the previous config; fix \
                         it and send SIGHUP again"
                    );
                    ReloadOutcome::Rejected(vec![e])
                }
                Ok(plan) => {
                    let changes = supervisor.apply(plan).await;
                    changes.log(started.elapsed());
                    *current = new;
                    ReloadOutcome::Applied {
                        started: changes.started,
                        restarted: changes.restarted,
                        stopped: changes.stopped,
                    }
                }
            }
        }
    };
    signals::notify_ready(&format!(
        "running {} account(s)",
        supervisor.account_count()
    ));
    outcome
}

/// Settings that only a restart applies: say so instead of silently ignoring them.
fn needs_restart(old: &Config, new: &Config) {
    let mut keys = Vec::new();
    let old_place = crate::config::StoreConfig {
        instances: new.store.instances,
        ..old.store.clone()
    };
    if old_place != new.store {
        keys.push("[store] path / url");
    }
    if old.store.instances != new.store.instances {
        keys.push("[store] instances");
    }
    if old.daemon.http_listen != new.daemon.http_listen {
        keys.push("[daemon] http_listen");
    }
    if old.daemon.log_format != new.daemon.log_format {
        keys.push("[daemon] log_format");
    }
    if old.daemon.memory_budget != new.daemon.memory_budget {
        keys.push("[daemon] memory_budget");
    }
    if old.web != new.web {
        keys.push("[web]");
    }
    if !keys.is_empty() {
        warn!(
            changed = ?keys,
            "these settings take effect only after a restart (systemctl restart mail2ticket); \
             the rest of the new config is applied"
        );
    }
}
