//! Runs one task per active account plus the reply sender, restarts a task that panics or ends
//! on its own (with backoff, never silently), applies a reloaded config by restarting only the
//! accounts whose settings changed, and stops everything within a deadline.
//!
//! Stop = cancel, wait up to the grace period, then abort and wait for the abort. Aborting is
//! safe for the mail: a batch is only disposed after its commit, so an aborted poller leaves its
//! uncommitted mails on the server, and an aborted send stays leased in the outbox and is sent
//! after the lease.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::account::AccountRuntime;
use crate::backoff::backoff_delay;
use crate::budget::MemoryBudget;
use crate::config::{Config, SmtpConfig};
use crate::delivery::{OutboxSender, SenderSettings};
use crate::health::{AccountHealth, Health, State};
use crate::lease::Leases;
use crate::poller;
use crate::store::Store;
use crate::transport::Transport;

/// Everything a config needs at run time, built (and checked) before anything is changed: a
/// reload whose plan fails is rejected and the running config stays.
pub struct Plan {
    pub accounts: Vec<AccountRuntime>,
    pub smtp: Option<(SmtpConfig, Transport)>,
    /// Shared by `accounts`; a running supervisor keeps the budget of its first plan.
    pub budget: MemoryBudget,
}

/// Builds the runtimes of every active account and the SMTP transport.
pub fn plan(config: &Config) -> Result<Plan, String> {
    let budget = MemoryBudget::new(config.daemon.memory_budget.0);
    let mut accounts = Vec::new();
    for account in &config.accounts {
        if !account.active {
            poller::warn_inactive(account);
            continue;
        }
        let rt = AccountRuntime::new(config, account, &budget)
            .map_err(|e| format!("account {}: {e:#}", account.name))?;
        accounts.push(rt);
    }
    let smtp = match &config.smtp {
        None => None,
        Some(smtp) => Some((
            smtp.clone(),
            Transport::for_config(smtp, &config.store.path).map_err(|e| format!("[smtp]: {e}"))?,
        )),
    };
    Ok(Plan {
        accounts,
        smtp,
        budget,
    })
}

struct Task<S> {
    settings: S,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// What `apply` changed, by account name.
#[derive(Debug, Default)]
pub struct Changes {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
    pub sender: &'static str,
}

pub struct Supervisor {
    store: Store,
    /// `[store] instances = "several"`: accounts are polled under their leases.
    leases: Option<Leases>,
    health: Health,
    grace: Duration,
    accounts: BTreeMap<String, Task<AccountRuntime>>,
    sender: Option<Task<SmtpConfig>>,
    /// One memory budget for the process's whole life: accounts started by a reload share it
    /// with those still running (a changed `memory_budget` needs a restart).
    budget: Option<MemoryBudget>,
}

impl Supervisor {
    /// `grace`: how long a stopping task may take to finish its mail in flight before it is
    /// aborted.
    pub fn new(
        store: Store,
        leases: Option<Leases>,
        health: Health,
        grace: Duration,
    ) -> Supervisor {
        Supervisor {
            store,
            leases,
            health,
            grace,
            accounts: BTreeMap::new(),
            sender: None,
            budget: None,
        }
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Makes the running tasks match `plan`: accounts that are new start, accounts whose
    /// settings changed restart, accounts that are gone (or inactive now) stop, and the rest keep
    /// running with their connections.
    pub async fn apply(&mut self, plan: Plan) -> Changes {
        let mut changes = Changes::default();
        let budget = self.budget.get_or_insert(plan.budget).clone();
        let wanted: BTreeMap<String, AccountRuntime> = plan
            .accounts
            .into_iter()
            .map(|rt| (rt.account.name.clone(), rt))
            .collect();
        let mut to_stop = Vec::new();
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(rt) if self.accounts[&name].settings.same_settings(rt) => {}
                Some(_) => {
                    to_stop.extend(self.accounts.remove(&name));
                    changes.restarted.push(name);
                }
                None => {
                    to_stop.extend(self.accounts.remove(&name));
                    self.health.remove(&name);
                    changes.stopped.push(name);
                }
            }
        }
        stop_all(to_stop, self.grace).await;
        for (name, mut rt) in wanted {
            if self.accounts.contains_key(&name) {
                changes.unchanged.push(name);
                continue;
            }
            if !changes.restarted.contains(&name) {
                changes.started.push(name.clone());
            }
            rt.budget = budget.clone();
            rt.health = self
                .health
                .register(&name, poller::expected_interval(&rt, false));
            crate::metrics::register_account(&name);
            let cancel = CancellationToken::new();
            let handle = tokio::spawn(supervise_account(
                rt.clone(),
                self.store.clone(),
                self.leases.clone(),
                cancel.clone(),
            ));
            self.accounts.insert(
                name,
                Task {
                    settings: rt,
                    cancel,
                    handle,
                },
            );
        }

        let same_smtp = match (&self.sender, &plan.smtp) {
            (None, None) => true,
            (Some(t), Some((smtp, _))) => t.settings == *smtp,
            _ => false,
        };
        changes.sender = if same_smtp {
            "unchanged"
        } else {
            if let Some(old) = self.sender.take() {
                stop_all(vec![old], self.grace).await;
            }
            match plan.smtp {
                Some((smtp, transport)) => {
                    let cancel = CancellationToken::new();
                    let handle = tokio::spawn(supervise_sender(
                        self.store.clone(),
                        transport,
                        SenderSettings::for_smtp(&smtp),
                        cancel.clone(),
                    ));
                    self.sender = Some(Task {
                        settings: smtp,
                        cancel,
                        handle,
                    });
                    "started"
                }
                None => "stopped",
            }
        };
        changes
    }

    /// Stops every task; `false` when some had to be aborted after the grace period.
    pub async fn shutdown(mut self) -> bool {
        let mut tasks: Vec<Task<()>> = std::mem::take(&mut self.accounts)
            .into_values()
            .map(Task::erase)
            .collect();
        tasks.extend(self.sender.take().map(Task::erase));
        stop_all(tasks, self.grace).await
    }
}

impl<S> Task<S> {
    fn erase(self) -> Task<()> {
        Task {
            settings: (),
            cancel: self.cancel,
            handle: self.handle,
        }
    }
}

/// Cancels all, waits up to `grace` for them together, then aborts the rest. `true` when all
/// finished on their own.
async fn stop_all<S>(tasks: Vec<Task<S>>, grace: Duration) -> bool {
    for t in &tasks {
        t.cancel.cancel();
    }
    let mut handles: Vec<JoinHandle<()>> = tasks.into_iter().map(|t| t.handle).collect();
    let finished = tokio::time::timeout(grace, async {
        for h in &mut handles {
            let _ = h.await;
        }
    })
    .await
    .is_ok();
    if !finished {
        let left = handles.iter().filter(|h| !h.is_finished()).count();
        error!(
            tasks = left,
            grace_secs = grace.as_secs(),
            "tasks did not stop in time (a server not answering?); aborting them: \
             uncommitted mails stay on the server, a reply being sent is retried after its lease"
        );
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
    finished
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `start(cancel)` in its own task until `cancel` fires; restarts it with backoff when it
/// panics or ends on its own. If this task is aborted, the inner one is too (the JoinSet
/// aborts what it holds when dropped).
async fn supervise(
    what: String,
    health: Option<AccountHealth>,
    cancel: CancellationToken,
    start: impl Fn(CancellationToken) -> BoxFuture,
) {
    let mut restarts = 0u32;
    loop {
        let mut one = JoinSet::new();
        one.spawn(start(cancel.clone()));
        let ended = one.join_next().await;
        if cancel.is_cancelled() {
            return;
        }
        restarts += 1;
        let why = match ended {
            Some(Err(e)) if e.is_panic() => {
                let payload = e.into_panic();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                format!("panicked: {text}")
            }
            _ => "ended unexpectedly".to_string(),
        };
        let delay = backoff_delay(restarts);
        let until = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        crate::metrics::error(&what, "panic");
        error!(task = %what, restarts,
            restart_at = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "{what} {why}; restarting it (this is a bug: please report it with the log)");
        if let Some(h) = &health {
            h.failed(&format!("poller {why}"), until);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn supervise_account(
    rt: AccountRuntime,
    store: Store,
    leases: Option<Leases>,
    cancel: CancellationToken,
) {
    let name = rt.account.name.clone();
    let health = rt.health.clone();
    supervise(name, Some(health.clone()), cancel, move |cancel| {
        Box::pin(crate::lease::run_account(
            leases.clone(),
            rt.clone(),
            store.clone(),
            cancel,
        ))
    })
    .await;
    health.set(State::Stopped);
}

async fn supervise_sender(
    store: Store,
    transport: Transport,
    settings: SenderSettings,
    cancel: CancellationToken,
) {
    supervise("reply sender".into(), None, cancel, move |cancel| {
        let sender = OutboxSender::new(store.clone(), transport.clone(), settings.clone());
        Box::pin(sender.run(cancel))
    })
    .await;
}

impl Changes {
    pub fn log(&self, elapsed: Duration) {
        if self.started.is_empty() && self.restarted.is_empty() && self.stopped.is_empty() {
            info!(
                unchanged = self.unchanged.len(),
                sender = self.sender,
                elapsed_ms = elapsed.as_millis() as u64,
                "config reloaded: no account changed"
            );
        } else {
            info!(started = ?self.started, restarted = ?self.restarted, stopped = ?self.stopped,
                unchanged = self.unchanged.len(), sender = self.sender,
                elapsed_ms = elapsed.as_millis() as u64, "config reloaded");
        }
        if self.sender == "stopped" {
            warn!("[smtp] removed: queued automatic replies stay in the outbox until it is back");
        }
    }
}
