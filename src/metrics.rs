//! Every metric the daemon exports, in one place, behind small functions: the code that sees an
//! event calls one function here and never touches the exporter crate.
//!
//! `prometheus-client` (the Prometheus project's own Rust client) keeps the values; `GET /metrics`
//! ([`crate::http`]) renders them in the OpenMetrics text format, which Prometheus scrapes
//! natively. The registry is process-wide, so `run --once`, the tests and the daemon all count;
//! only the daemon serves it.

use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ingest::outcome::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    account: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    account: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    account: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreKindLabel {
    kind: String,
}

struct Metrics {
    registry: Registry,
    store_errors: Family<StoreKindLabel, Counter>,
    passes: Family<AccountLabel, Counter>,
    fetched: Family<AccountLabel, Counter>,
    tickets: Family<AccountLabel, Counter>,
    followups: Family<AccountLabel, Counter>,
    duplicates: Family<AccountLabel, Counter>,
    replies_sent: Family<AccountLabel, Counter>,
    replies_suppressed: Family<ReasonLabel, Counter>,
    replies_failed: Family<AccountLabel, Counter>,
    replies_retried: Family<AccountLabel, Counter>,
    replies_bounced: Family<AccountLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    oauth_tokens: Family<OutcomeLabel, Counter>,
    last_success: Family<AccountLabel, Gauge>,
    backlog: Family<AccountLabel, Gauge>,
    lease_held: Family<AccountLabel, Gauge>,
    outbox_depth: Gauge,
    outbox_bounced: Gauge,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("mail2ticket");
        let m = Metrics {
            store_errors: Family::default(),
            passes: Family::default(),
            fetched: Family::default(),
            tickets: Family::default(),
            followups: Family::default(),
            duplicates: Family::default(),
            replies_sent: Family::default(),
            replies_suppressed: Family::default(),
            replies_failed: Family::default(),
            replies_retried: Family::default(),
            replies_bounced: Family::default(),
            errors: Family::default(),
            oauth_tokens: Family::default(),
            last_success: Family::default(),
            backlog: Family::default(),
            lease_held: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_bounced: Gauge::default(),
            registry: Registry::default(),
        };
        // Counter names get the `_total` suffix when rendered.
        let r = &mut registry;
        r.register(
            "passes",
            "Passes over the account's mailbox that completed (listed, fetched, stored, disposed of)",
            m.passes.clone(),
        );
        r.register(
            "mails_fetched",
            "Mails fetched from the server",
            m.fetched.clone(),
        );
        r.register(
            "tickets_created",
            "Mails that opened a new ticket (committed)",
            m.tickets.clone(),
        );
        r.register(
            "followups",
            "Mails added to an existing ticket (committed)",
            m.followups.clone(),
        );
        r.register(
            "duplicates",
            "Mails recognised as already stored (no new ticket)",
            m.duplicates.clone(),
        );
        r.register(
            "replies_sent",
            "Automatic replies accepted by the SMTP server",
            m.replies_sent.clone(),
        );
        r.register(
            "replies_suppressed",
            "New tickets that got no automatic reply, by reason",
            m.replies_suppressed.clone(),
        );
        r.register(
            "replies_failed",
            "Automatic replies given up (permanent failure or too old)",
            m.replies_failed.clone(),
        );
        r.register(
            "replies_retried",
            "Automatic reply attempts that failed temporarily and will be retried",
            m.replies_retried.clone(),
        );
        r.register(
            "replies_bounced",
            "Delivery reports that came back for an automatic reply (the customer did not get it), by the account that sent it",
            m.replies_bounced.clone(),
        );
        r.register(
            "errors",
            "Errors by kind (connect, login, timeout, protocol, folder, store, dispose, panic)",
            m.errors.clone(),
        );
        r.register(
            "store_errors",
            "Ticket store errors by kind (disk_full, io, read_only, locked, other)",
            m.store_errors.clone(),
        );
        r.register(
            "oauth_token_requests",
            "OAuth 2.0 token requests (first tokens and refreshes) by outcome: ok or the error kind",
            m.oauth_tokens.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the account's last successful pass or committed batch",
            m.last_success.clone(),
        );
        r.register(
            "backlog_seen",
            "Mails in the account's folder at the start of the last pass",
            m.backlog.clone(),
        );
        r.register(
            "lease_held",
            "1 while this instance holds the account's lease and polls it ([store] instances = \"several\"), else 0",
            m.lease_held.clone(),
        );
        r.register(
            "outbox_depth",
            "Automatic replies queued or being sent (all accounts)",
            m.outbox_depth.clone(),
        );
        r.register(
            "outbox_bounced",
            "Automatic replies in the store a delivery report came back for (all accounts, ever)",
            m.outbox_bounced.clone(),
        );
        Metrics { registry, ..m }
    })
}

fn account(name: &str) -> AccountLabel {
    AccountLabel {
        account: name.to_string(),
    }
}

/// Creates the series of an account at zero so a dashboard sees it before its first mail.
pub fn register_account(name: &str) {
    let m = metrics();
    let a = account(name);
    for family in [
        &m.passes,
        &m.fetched,
        &m.tickets,
        &m.followups,
        &m.duplicates,
        &m.replies_sent,
        &m.replies_failed,
        &m.replies_bounced,
    ] {
        drop(family.get_or_create(&a));
    }
}

/// Several instances: whether this instance holds the account's lease.
pub fn lease_held(account_name: &str, held: bool) {
    metrics()
        .lease_held
        .get_or_create(&account(account_name))
        .set(i64::from(held));
}

/// A pass over the account's mailbox completed: a dashboard (or a test) sees the daemon work
/// through its passes, and a pass that began after an event proves the event was looked at.
pub fn pass_done(account_name: &str) {
    metrics().passes.get_or_create(&account(account_name)).inc();
}

pub fn mails_fetched(account_name: &str, n: usize) {
    metrics()
        .fetched
        .get_or_create(&account(account_name))
        .inc_by(n as u64);
}

/// One committed mail, counted by what it became.
pub fn mail_stored(account_name: &str, outcome: &Outcome) {
    let m = metrics();
    let family = match outcome {
        Outcome::NewTicket { .. } | Outcome::HeaderOnly { opened: true, .. } => &m.tickets,
        Outcome::FollowUp { .. } => &m.followups,
        Outcome::Duplicate { .. } => &m.duplicates,
        // The whole mail of a ticket counted when its header opened it.
        Outcome::TestMail
        | Outcome::OwnAlert
        | Outcome::AlreadyProcessed
        | Outcome::HeaderOnly { opened: false, .. }
        | Outcome::Completed { .. } => return,
    };
    family.get_or_create(&account(account_name)).inc();
}

pub fn backlog_seen(account_name: &str, n: usize) {
    metrics()
        .backlog
        .get_or_create(&account(account_name))
        .set(n as i64);
}

/// The account did something successfully (a pass, a committed batch, IDLE started).
pub fn success(account_name: &str) {
    metrics()
        .last_success
        .get_or_create(&account(account_name))
        .set(chrono::Utc::now().timestamp());
}

pub fn error(account_name: &str, kind: &str) {
    metrics()
        .errors
        .get_or_create(&KindLabel {
            account: account_name.to_string(),
            kind: kind.to_string(),
        })
        .inc();
}

/// A ticket store error of this kind (see `store::StoreErrorKind`).
pub fn store_error(kind: &str) {
    metrics()
        .store_errors
        .get_or_create(&StoreKindLabel {
            kind: kind.to_string(),
        })
        .inc();
}

/// One OAuth token request of an account (or "smtp"): `ok` or the error kind.
pub fn oauth_token(account_name: &str, outcome: &str) {
    metrics()
        .oauth_tokens
        .get_or_create(&OutcomeLabel {
            account: account_name.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

pub fn reply_suppressed(account_name: &str, reason: &str) {
    metrics()
        .replies_suppressed
        .get_or_create(&ReasonLabel {
            account: account_name.to_string(),
            reason: reason.to_string(),
        })
        .inc();
}

pub fn reply_sent(account_name: &str) {
    metrics()
        .replies_sent
        .get_or_create(&account(account_name))
        .inc();
}

pub fn reply_failed(account_name: &str) {
    metrics()
        .replies_failed
        .get_or_create(&account(account_name))
        .inc();
}

pub fn reply_retried(account_name: &str) {
    metrics()
        .replies_retried
        .get_or_create(&account(account_name))
        .inc();
}

pub fn outbox_depth(n: i64) {
    metrics().outbox_depth.set(n);
}

pub fn reply_bounced(account_name: &str) {
    metrics()
        .replies_bounced
        .get_or_create(&account(account_name))
        .inc();
}

pub fn outbox_bounced(n: i64) {
    metrics().outbox_bounced.set(n);
}

/// The OpenMetrics text of every metric, ending in `# EOF`.
pub fn render() -> String {
    let mut out = String::with_capacity(4096);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics().registry) {
        // Writing into a String cannot fail; keep the scrape well-formed anyway.
        out.clear();
        let _ = writeln!(out, "# rendering metrics failed: {e}\n# EOF");
    }
    out
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_eof() {
        mail_stored("unit-test", &Outcome::NewTicket { number: "1".into() });
        reply_suppressed("unit-test", "robot_sender");
        let text = render();
        assert!(
            text.contains("mail2ticket_tickets_created_total{account=\"unit-test\"}"),
            "{text}"
        );
        assert!(text.contains("reason=\"robot_sender\""), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
