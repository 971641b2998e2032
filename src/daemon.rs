//! The daemon: opens the store, starts one poller per active account, and stops them cleanly.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Loaded;
use crate::poller::{self, AccountRuntime};
use crate::reply::sender::{OutboxSender, SenderSettings};
use crate::smtp::SmtpTransport;
use crate::store::Store;

/// `run --once` waits at most this long for queued replies before it exits; what is left (the
/// SMTP server is down, say) stays in the outbox for the next run.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

type Sender = OutboxSender<SmtpTransport>;

pub async fn run(loaded: Loaded, _config_path: Option<PathBuf>, once: bool) -> ExitCode {
    let config = loaded.config;
    let store = match Store::open(&config.store.path).await {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runtimes = Vec::new();
    for account in &config.accounts {
        if !account.active {
            poller::warn_inactive(account);
            continue;
        }
        match AccountRuntime::new(&config, account) {
            Ok(rt) => runtimes.push(rt),
            Err(e) => {
                error!(account = %account.name, "{e:#}");
                return ExitCode::from(crate::config::EXIT_CONFIG);
            }
        }
    }
    // One transport for every reply; without [smtp] nothing is queued, so nothing to send.
    let sender = match &config.smtp {
        None => None,
        Some(smtp) => match SmtpTransport::new(smtp) {
            Ok(transport) => Some(OutboxSender::new(
                store.clone(),
                transport,
                SenderSettings::for_smtp(smtp),
            )),
            Err(e) => {
                error!("{e}");
                return ExitCode::from(crate::config::EXIT_CONFIG);
            }
        },
    };
    let code = if once {
        run_once(&runtimes, &store, sender.as_ref()).await
    } else {
        run_forever(runtimes, &store, sender).await
    };
    store.close().await;
    code
}

/// One pass per active account, concurrently; exit 0 only when every pass fully succeeded.
async fn run_once(runtimes: &[AccountRuntime], store: &Store, sender: Option<&Sender>) -> ExitCode {
    let mut set = JoinSet::new();
    for rt in runtimes.iter().cloned() {
        let store = store.clone();
        set.spawn(async move {
            let result = poller::pass_once(&rt, &store).await;
            (rt.account.name.clone(), result)
        });
    }
    let mut ok = true;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(report))) => {
                info!(account = %name, fetched = report.fetched, new = report.new_tickets,
                    followups = report.followups, duplicates = report.duplicates,
                    disposed = report.disposed, oversized = report.oversized, "pass finished");
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
    if let Some(sender) = sender {
        drain_outbox(sender).await;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sends the replies this run queued (and older ones that are due), waiting at most DRAIN_WAIT.
/// Replies that cannot go out yet are not an error of this run: they stay queued.
async fn drain_outbox(sender: &Sender) {
    match sender.drain(DRAIN_WAIT).await {
        Ok(summary) if summary.unsent() > 0 => {
            warn!(
                unsent = summary.unsent(),
                next_attempt = summary.next_due.as_deref().unwrap_or("-"),
                "automatic replies still queued; the next run (or the daemon) sends them"
            );
            eprintln!(
                "warning: {} automatic replies are still queued (SMTP not reachable?); the next run sends them",
                summary.unsent()
            );
        }
        Ok(summary) => {
            info!(
                sent = summary.sent,
                failed = summary.failed,
                "outbox drained"
            )
        }
        Err(e) => error!("sending the queued replies failed: {e}"),
    }
}

async fn run_forever(
    runtimes: Vec<AccountRuntime>,
    store: &Store,
    sender: Option<Sender>,
) -> ExitCode {
    let cancel = CancellationToken::new();
    let mut set = JoinSet::new();
    let accounts = runtimes.len();
    for rt in runtimes {
        set.spawn(poller::run_account(rt, store.clone(), cancel.child_token()));
    }
    if let Some(sender) = sender {
        set.spawn(sender.run(cancel.child_token()));
    }
    info!(accounts, "mail2ticket running");
    shutdown_signal().await;
    info!("stopping: finishing the mails in flight");
    cancel.cancel();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        error!(
            "pollers did not stop in time; aborting them (uncommitted mails stay on the server)"
        );
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
