//! What is wrong right now, as conditions: each has a key (what it is about), a kind (what to
//! say), since when it holds and the server's words. Gathered from what the daemon already
//! knows (the accounts' health, the store's health, the outbox, the quarantine, the mails too
//! large, the config's secret expiry dates); pure, so tests build them from plain values.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::health::{AccountState, State};
use crate::store::StoreState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The server rejected the account's user or password.
    LoginRejected,
    /// The OAuth provider rejected the client (invalid_client) or the authorization
    /// (invalid_grant).
    OAuthRejected,
    /// TLS failed: no encryption offered, or the certificate was not accepted.
    Tls,
    /// DNS, TCP, a timeout or a dropped connection: the server cannot be reached.
    Unreachable,
    /// Any other lasting failure of an account (a folder gone, the server refusing).
    AccountFailing,
    /// The ticket store cannot be written: disk full, read-only, locked, gone.
    StoreFailing,
    /// Replies wait in the outbox because SMTP fails. Only the webhook can carry this one.
    RepliesNotDraining,
    /// Mails of an account are quarantined (their storage failed again and again).
    Quarantined,
    /// Mails of an account are too large to fetch and wait on the server.
    TooLarge,
    /// An OAuth client secret expires soon (stage 1: 14 days, 2: 3 days, 3: expired).
    SecretExpiring,
    /// `mail2ticket alerts test`.
    Test,
}

impl Kind {
    /// The text of `alerts.kind`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::LoginRejected => "login_rejected",
            Kind::OAuthRejected => "oauth_rejected",
            Kind::Tls => "tls",
            Kind::Unreachable => "unreachable",
            Kind::AccountFailing => "account_failing",
            Kind::StoreFailing => "store_failing",
            Kind::RepliesNotDraining => "replies_not_draining",
            Kind::Quarantined => "quarantined",
            Kind::TooLarge => "too_large",
            Kind::SecretExpiring => "secret_expiring",
            Kind::Test => "test",
        }
    }

    pub fn from_label(label: &str) -> Option<Kind> {
        ALL.iter().copied().find(|k| k.label() == label)
    }

    /// A failure of the account's connection: judged only by the instance that polls it, and
    /// reported only once it has lasted `[alerts] after`.
    pub fn is_account_failure(self) -> bool {
        matches!(
            self,
            Kind::LoginRejected
                | Kind::OAuthRejected
                | Kind::Tls
                | Kind::Unreachable
                | Kind::AccountFailing
        )
    }

    /// Reported only once it has lasted `[alerts] after`: a failing state, not an event.
    pub fn waits(self) -> bool {
        self.is_account_failure() || matches!(self, Kind::StoreFailing | Kind::RepliesNotDraining)
    }

    /// Reminded once a day while it lasts (the others only when their stage rises).
    pub fn reminds_daily(self) -> bool {
        !matches!(self, Kind::SecretExpiring | Kind::Test)
    }
}

const ALL: [Kind; 11] = [
    Kind::LoginRejected,
    Kind::OAuthRejected,
    Kind::Tls,
    Kind::Unreachable,
    Kind::AccountFailing,
    Kind::StoreFailing,
    Kind::RepliesNotDraining,
    Kind::Quarantined,
    Kind::TooLarge,
    Kind::SecretExpiring,
    Kind::Test,
];

/// One thing that is wrong now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What it is about: `account:support`, `store`, `smtp`, `quarantine:support`, ...
    pub key: String,
    pub kind: Kind,
    pub account: Option<String>,
    pub since: DateTime<Utc>,
    /// What happened, in the server's words where there are some.
    pub detail: String,
    /// Rising stages are reminded at once: the mails in quarantine, the days of a secret.
    pub stage: i64,
}

/// A quarantined or too large mail, as the alert names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMail {
    pub account: String,
    pub sender: String,
    pub subject: String,
    pub size: u64,
    /// The storage error (quarantine) or where the mail waits (too large).
    pub note: String,
    pub since: DateTime<Utc>,
}

/// An OAuth client secret with a known expiry date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretExpiry {
    /// `account support` or `[smtp]`.
    pub owner: String,
    pub account: Option<String>,
    pub expires: NaiveDate,
}

/// The oldest unsent reply whose sending failed, for "replies not draining".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckReplies {
    pub unsent: i64,
    pub oldest: DateTime<Utc>,
    pub last_error: String,
}

/// Everything the conditions are read from.
#[derive(Debug, Default)]
pub struct Observed {
    pub accounts: BTreeMap<String, AccountState>,
    pub store: Option<StoreState>,
    pub stuck_replies: Option<StuckReplies>,
    pub quarantined: Vec<HeldMail>,
    pub too_large: Vec<HeldMail>,
    pub secrets: Vec<SecretExpiry>,
}

/// Days ahead of a secret's expiry at which it is reported (stage 1, then stage 2).
pub const SECRET_WARNINGS: [i64; 2] = [14, 3];

/// The conditions that hold at `now`.
pub fn conditions(seen: &Observed, now: DateTime<Utc>) -> Vec<Condition> {
    let mut out = Vec::new();
    for (name, state) in &seen.accounts {
        if let Some(c) = account_condition(name, state) {
            out.push(c);
        }
    }
    if let Some(store) = seen.store.as_ref().filter(|s| !s.healthy) {
        out.push(Condition {
            key: "store".into(),
            kind: Kind::StoreFailing,
            account: None,
            since: store.since.as_deref().and_then(parse_time).unwrap_or(now),
            detail: store
                .error
                .clone()
                .unwrap_or_else(|| store.state.to_string()),
            stage: 0,
        });
    }
    if let Some(stuck) = &seen.stuck_replies {
        out.push(Condition {
            key: "smtp".into(),
            kind: Kind::RepliesNotDraining,
            account: None,
            since: stuck.oldest,
            detail: stuck.last_error.clone(),
            stage: 0,
        });
    }
    out.extend(held(&seen.quarantined, Kind::Quarantined, "quarantine"));
    out.extend(held(&seen.too_large, Kind::TooLarge, "too_large"));
    for secret in &seen.secrets {
        let days = (secret.expires - now.date_naive()).num_days();
        let stage = match days {
            d if d < 0 => 3,
            d if d <= SECRET_WARNINGS[1] => 2,
            d if d <= SECRET_WARNINGS[0] => 1,
            _ => continue,
        };
        out.push(Condition {
            // The date is part of the key: a renewed secret (a new date) ends the episode.
            key: format!("secret:{}:{}", secret.owner, secret.expires),
            kind: Kind::SecretExpiring,
            account: secret.account.clone(),
            since: now,
            detail: format!("{} ({days} days)", secret.expires),
            stage,
        });
    }
    out
}

fn account_condition(name: &str, state: &AccountState) -> Option<Condition> {
    // Another instance polls it: that one judges it.
    if state.state == State::Standby {
        return None;
    }
    let since = state.failing_since.as_deref().and_then(parse_time)?;
    let kind = if state.state == State::LoginRejected {
        Kind::LoginRejected
    } else {
        match state.last_error_kind.as_deref() {
            Some("login") => Kind::LoginRejected,
            Some("oauth_invalid_client" | "oauth_invalid_grant") => Kind::OAuthRejected,
            Some("tls") => Kind::Tls,
            Some("connect" | "timeout" | "connection") => Kind::Unreachable,
            // Not the account's trouble: the store's alert or another instance says it.
            Some("store" | "lease_lost" | "login_delay") => return None,
            _ => Kind::AccountFailing,
        }
    };
    let detail = state
        .server_said
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| state.last_error.clone())
        .unwrap_or_default();
    Some(Condition {
        key: format!("account:{name}"),
        kind,
        account: Some(name.to_string()),
        since,
        detail,
        stage: 0,
    })
}

/// One condition per account with held mails: the count is its stage, so another mail in
/// quarantine is reported at once, and the detail names the first few.
fn held(mails: &[HeldMail], kind: Kind, prefix: &str) -> Vec<Condition> {
    let mut by_account: BTreeMap<&str, Vec<&HeldMail>> = BTreeMap::new();
    for m in mails {
        by_account.entry(&m.account).or_default().push(m);
    }
    by_account
        .into_iter()
        .map(|(account, mails)| {
            let mut detail: Vec<String> = mails
                .iter()
                .take(5)
                .map(|m| {
                    format!(
                        "{} | {} | {} | {}",
                        m.sender,
                        m.subject,
                        size_text(m.size),
                        m.note
                    )
                })
                .collect();
            if mails.len() > 5 {
                detail.push(format!("... and {} more", mails.len() - 5));
            }
            Condition {
                key: format!("{prefix}:{account}"),
                kind,
                account: Some(account.to_string()),
                since: mails.iter().map(|m| m.since).min().unwrap_or_default(),
                detail: detail.join("\n"),
                stage: mails.len() as i64,
            }
        })
        .collect()
}

/// `12.3 MB` (decimal, as mail providers state limits).
pub fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} KB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::AccountHealth;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    #[test]
    fn a_rejected_login_is_a_condition_with_the_servers_words() {
        let health = AccountHealth::detached("support");
        health.login_rejected(
            "login rejected by imap.example:993",
            "[AUTHENTICATIONFAILED] Authentication failed.",
            Utc::now(),
        );
        let mut seen = Observed::default();
        seen.accounts
            .insert("support".into(), health.snapshot(Utc::now()));
        let found = conditions(&seen, Utc::now());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::LoginRejected);
        assert_eq!(found[0].key, "account:support");
        assert!(found[0].detail.contains("AUTHENTICATIONFAILED"));
    }

    #[test]
    fn a_secret_is_reported_at_fourteen_and_three_days_and_when_expired() {
        let now = at("2027-02-10T12:00:00Z");
        let stage_on = |expires: &str| {
            let seen = Observed {
                secrets: vec![SecretExpiry {
                    owner: "account support".into(),
                    account: Some("support".into()),
                    expires: expires.parse().unwrap(),
                }],
                ..Observed::default()
            };
            conditions(&seen, now).first().map(|c| c.stage)
        };
        assert_eq!(stage_on("2027-02-25"), None, "15 days ahead");
        assert_eq!(stage_on("2027-02-24"), Some(1));
        assert_eq!(stage_on("2027-02-13"), Some(2));
        assert_eq!(stage_on("2027-02-09"), Some(3));
    }

    #[test]
    fn held_mails_are_one_condition_per_account_counted_by_stage() {
        let mail = |account: &str| HeldMail {
            account: account.into(),
            sender: "a@b.example".into(),
            subject: "Hi".into(),
            size: 10,
            note: "error".into(),
            since: at("2027-01-01T00:00:00Z"),
        };
        let seen = Observed {
            quarantined: vec![mail("support"), mail("support"), mail("returns")],
            ..Observed::default()
        };
        let found = conditions(&seen, Utc::now());
        let stages: Vec<(&str, i64)> = found.iter().map(|c| (c.key.as_str(), c.stage)).collect();
        assert_eq!(
            stages,
            [("quarantine:returns", 1), ("quarantine:support", 2)]
        );
    }
}
