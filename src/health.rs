//! Per-account state shared by the pollers (which report), the supervisor (which logs and
//! restarts) and `GET /healthz` (which judges).
//!
//! An account is healthy when it succeeded within its expected interval: its poll interval (or
//! the IDLE renewal time while it sits in IMAP IDLE) plus twice the network timeout. A pass over a
//! big backlog reports success after every committed batch, so it stays healthy while it works.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::store::StoreState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Connecting,
    Connected,
    /// A pass is running.
    Polling,
    /// Waiting in IMAP IDLE for new mail.
    Idle,
    /// Sleeping until the next poll.
    Waiting,
    /// Failed; retrying at `backoff_until`.
    BackingOff,
    /// The server rejected the credentials; the next try is at `backoff_until` (or at once
    /// after a SIGHUP that changes them). `server_said` has the server's words.
    #[serde(rename = "login_rejected")]
    LoginRejected,
    /// Several instances: another instance holds the account's lease and polls it; this one
    /// takes over when that lease expires.
    Standby,
    Stopped,
}

/// Several instances: whether this instance holds the account's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseView {
    /// This instance polls the account; `fence` counts the acquisitions of the lease.
    Held { fence: i64 },
    /// Another instance (`holder`, host:pid:random) polls it.
    Standby { holder: Option<String> },
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountState {
    pub state: State,
    pub healthy: bool,
    pub since: String,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The kind of the last error (as in the `errors` metric), e.g. `login` or
    /// `oauth_invalid_grant`: what to look at without parsing the message.
    pub last_error_kind: Option<String>,
    pub failing_since: Option<String>,
    pub backoff_until: Option<String>,
    /// What the server answered to the rejected login (state `login_rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_said: Option<String>,
    /// Seconds within which a success is expected.
    pub expected_interval_secs: u64,
    /// With `[store] instances = "several"`: who holds the account's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    state: State,
    since: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<(DateTime<Utc>, String)>,
    last_error_kind: Option<&'static str>,
    failing_since: Option<DateTime<Utc>>,
    backoff_until: Option<DateTime<Utc>>,
    server_said: Option<String>,
    expected: Duration,
    lease: Option<LeaseView>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One account's state; cheap to clone. A handle made with `detached` (for `run --once` and
/// diagnostics) is not part of any health report.
#[derive(Debug, Clone)]
pub struct AccountHealth(Arc<Mutex<Inner>>);

impl AccountHealth {
    pub fn detached(name: &str) -> AccountHealth {
        AccountHealth(Arc::new(Mutex::new(Inner {
            name: name.to_string(),
            state: State::Starting,
            since: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_kind: None,
            failing_since: None,
            backoff_until: None,
            server_said: None,
            expected: Duration::from_secs(120),
            lease: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state, logging the change. The routine poll cycle (polling, idle, waiting)
    /// logs at debug level; everything else at info.
    pub fn set(&self, state: State) {
        let mut s = self.lock();
        if s.state == state {
            return;
        }
        let routine = matches!(state, State::Polling | State::Idle | State::Waiting)
            && matches!(s.state, State::Polling | State::Idle | State::Waiting);
        if routine {
            debug!(account = %s.name, from = %s.state, state = %state, "account state changed");
        } else {
            info!(account = %s.name, from = %s.state, state = %state, "account state changed");
        }
        s.state = state;
        s.since = Utc::now();
        if !matches!(state, State::BackingOff | State::LoginRejected) {
            s.backoff_until = None;
            s.server_said = None;
        }
    }

    /// Names the kind of the error the next [`AccountHealth::failed`] reports.
    pub fn set_error_kind(&self, kind: &'static str) {
        self.lock().last_error_kind = Some(kind);
    }

    pub fn set_lease(&self, lease: Option<LeaseView>) {
        self.lock().lease = lease;
    }

    pub fn set_expected(&self, expected: Duration) {
        self.lock().expected = expected;
    }

    /// A pass finished, a batch was committed, or IDLE started: the account works.
    pub fn success(&self) {
        let mut s = self.lock();
        let now = Utc::now();
        if let Some(since) = s.failing_since.take() {
            info!(account = %s.name, failing_since = %ts(since), "account recovered");
        }
        s.last_success = Some(now);
        crate::metrics::success(&s.name);
    }

    /// The poller failed and retries at `until`.
    pub fn failed(&self, error: &str, until: DateTime<Utc>) {
        let now = Utc::now();
        {
            let mut s = self.lock();
            s.last_error = Some((now, error.to_string()));
            let since = *s.failing_since.get_or_insert(now);
            warn!(account = %s.name, backing_off_until = %ts(until), failing_since = %ts(since),
                "account backing off");
        }
        self.set(State::BackingOff);
        self.lock().backoff_until = Some(until);
    }

    /// The server rejected the login; the poller tries again at `until`. The poller logs the
    /// WARN line itself (one per attempt).
    pub fn login_rejected(&self, error: &str, server_said: &str, until: DateTime<Utc>) {
        {
            let mut s = self.lock();
            let now = Utc::now();
            s.last_error = Some((now, error.to_string()));
            s.failing_since.get_or_insert(now);
        }
        self.set(State::LoginRejected);
        let mut s = self.lock();
        s.backoff_until = Some(until);
        s.server_said = Some(server_said.to_string());
    }

    pub fn snapshot(&self, now: DateTime<Utc>) -> AccountState {
        let s = self.lock();
        let expected = chrono::Duration::from_std(s.expected).unwrap_or(chrono::Duration::MAX);
        // Rejected credentials need the admin, however recent the last success was. An account
        // in standby is served by the instance holding its lease.
        let healthy = s.state == State::Standby
            || !matches!(s.state, State::Stopped | State::LoginRejected)
                && s.last_success.is_some_and(|t| now - t <= expected);
        AccountState {
            state: s.state,
            healthy,
            since: ts(s.since),
            last_success: s.last_success.map(ts),
            last_error: s.last_error.as_ref().map(|(_, e)| e.clone()),
            last_error_at: s.last_error.as_ref().map(|(t, _)| ts(*t)),
            last_error_kind: s.last_error_kind.map(str::to_string),
            failing_since: s.failing_since.map(ts),
            backoff_until: s.backoff_until.map(ts),
            server_said: s.server_said.clone(),
            expected_interval_secs: s.expected.as_secs(),
            lease: s.lease.clone(),
        }
    }
}

/// Every supervised account's state, by name.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, AccountHealth>>>);

impl Health {
    fn map(&self) -> MutexGuard<'_, BTreeMap<String, AccountHealth>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle for a (re)started account; a restart keeps the history of the old one.
    pub fn register(&self, name: &str, expected: Duration) -> AccountHealth {
        let handle = self
            .map()
            .entry(name.to_string())
            .or_insert_with(|| AccountHealth::detached(name))
            .clone();
        handle.set_expected(expected);
        handle
    }

    pub fn remove(&self, name: &str) {
        self.map().remove(name);
    }

    /// Every supervised account's state now, by name (the accounts page shows them).
    pub fn snapshots(&self) -> BTreeMap<String, AccountState> {
        let now = Utc::now();
        self.map()
            .iter()
            .map(|(name, h)| (name.clone(), h.snapshot(now)))
            .collect()
    }

    /// `(all healthy, JSON body)` for `GET /healthz`: every account, and the ticket store (a
    /// store that cannot be written, e.g. a full disk, is unhealthy however the accounts are).
    pub fn report(&self, store: &StoreState) -> (bool, String) {
        let accounts = self.snapshots();
        let ok = store.healthy && accounts.values().all(|a| a.healthy);
        let mut body = serde_json::json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "store": store,
            "accounts": accounts,
        });
        // Several instances: the accounts this instance polls, at a glance.
        if accounts.values().any(|a| a.lease.is_some()) {
            let held: Vec<&String> = accounts
                .iter()
                .filter(|(_, a)| matches!(a.lease, Some(LeaseView::Held { .. })))
                .map(|(name, _)| name)
                .collect();
            body["held_accounts"] = serde_json::json!(held);
        }
        (ok, body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_after_a_recent_success() {
        let health = Health::default();
        let store = crate::store::StoreHealth::default().state();
        let a = health.register("a", Duration::from_secs(60));
        assert!(!health.report(&store).0, "no success yet");
        a.success();
        assert!(health.report(&store).0);
        a.failed("login rejected", Utc::now() + chrono::Duration::seconds(5));
        let (ok, body) = health.report(&store);
        assert!(
            ok,
            "one failure right after a success is within the interval"
        );
        assert!(
            body.contains("login rejected") && body.contains("backing-off"),
            "{body}"
        );
        let snap = a.snapshot(Utc::now() + chrono::Duration::seconds(61));
        assert!(!snap.healthy, "no success within the expected interval");
    }

    #[test]
    fn an_account_in_standby_is_healthy_and_held_accounts_are_listed() {
        let health = Health::default();
        let store = crate::store::StoreHealth::default().state();
        let held = health.register("a", Duration::from_secs(60));
        held.set_lease(Some(LeaseView::Held { fence: 4 }));
        held.success();
        let waiting = health.register("b", Duration::from_secs(60));
        waiting.set_lease(Some(LeaseView::Standby {
            holder: Some("other:1:2".into()),
        }));
        waiting.set(State::Standby);
        let (ok, body) = health.report(&store);
        assert!(ok, "another instance serves b: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["held_accounts"], serde_json::json!(["a"]));
        assert_eq!(body["accounts"]["a"]["lease"]["state"], "held");
        assert_eq!(body["accounts"]["b"]["lease"]["holder"], "other:1:2");
        assert_eq!(body["accounts"]["b"]["state"], "standby");
    }
}
