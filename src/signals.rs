//! Signals and the systemd notification protocol.
//!
//! The handlers are installed first thing in `daemon::run`, before the store is opened: a SIGTERM
//! during start-up (migrations) is then queued and handled as soon as the daemon runs, instead
//! of killing the process half-way.
//!
//! systemd: `READY=1` after the config is loaded, the store migrated and the pollers started;
//! `RELOADING=1` (with `MONOTONIC_USEC`) on SIGHUP, then `READY=1` again; `STOPPING=1` on
//! SIGTERM/SIGINT; `WATCHDOG=1` every half `WatchdogSec` when the unit sets it. Outside systemd
//! (`NOTIFY_SOCKET` unset) every notification is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub enum Event {
    /// SIGTERM or SIGINT, by name.
    Shutdown(&'static str),
    /// SIGHUP.
    Reload,
}

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Shutdown("SIGTERM"),
            _ = self.int.recv() => Event::Shutdown("SIGINT"),
            _ = self.hup.recv() => Event::Reload,
        }
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "systemd notification not delivered");
    }
}

pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the systemd watchdog every half `WatchdogSec` until `cancel` fires; does nothing when
/// the unit sets no watchdog.
pub async fn watchdog(cancel: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    loop {
        notify(&[NotifyState::Watchdog]);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
