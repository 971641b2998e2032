//! The one decision of alerting, pure: given the alerts open now and the conditions that hold,
//! which alert to open, which to remind of and which to resolve.
//!
//! - A condition opens an alert when it has no open one and, for a failing state, has lasted
//!   `after` (a connection that drops for a minute is not news; a quarantined mail is).
//! - An open alert is reminded of once a day while its condition lasts, or at once when its
//!   stage rises (another mail in quarantine, a secret 3 days from expiry).
//! - An open alert whose condition is gone is resolved, but only by an instance that can see
//!   it: an account's connection is judged by the instance polling that account.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::condition::{Condition, Kind};

/// How often a lasting condition is told again.
pub const REMIND_EVERY: Duration = Duration::from_secs(24 * 3600);

/// An alert that was sent and not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub id: i64,
    pub key: String,
    pub kind: Kind,
    pub account: Option<String>,
    pub stage: i64,
    pub since: DateTime<Utc>,
    pub detail: String,
    /// When the last alert or reminder was queued.
    pub notified_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Open(Condition),
    Remind { alert: OpenAlert, now: Condition },
    Resolve(OpenAlert),
}

/// What this instance can see of the accounts.
pub struct Sight<'a> {
    /// Accounts this instance polls (their connection is judged here).
    pub polled: &'a HashSet<String>,
    /// Accounts in the config at all (an alert of an account removed from it is resolved).
    pub configured: &'a HashSet<String>,
}

pub fn judge(
    open: &[OpenAlert],
    conditions: &[Condition],
    sight: &Sight<'_>,
    after: Duration,
    now: DateTime<Utc>,
) -> Vec<Step> {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let remind_every = chrono::Duration::from_std(REMIND_EVERY).unwrap_or_default();
    let by_key: HashMap<&str, &OpenAlert> = open.iter().map(|a| (a.key.as_str(), a)).collect();
    let mut steps = Vec::new();
    for c in conditions {
        match by_key.get(c.key.as_str()) {
            None => {
                let lasted = now - c.since >= after;
                if !c.kind.waits() || lasted {
                    steps.push(Step::Open(c.clone()));
                }
            }
            Some(alert) => {
                let daily = c.kind.reminds_daily() && now - alert.notified_at >= remind_every;
                if daily || c.stage > alert.stage {
                    steps.push(Step::Remind {
                        alert: (*alert).clone(),
                        now: c.clone(),
                    });
                }
            }
        }
    }
    let holding: HashSet<&str> = conditions.iter().map(|c| c.key.as_str()).collect();
    for alert in open {
        if holding.contains(alert.key.as_str()) || alert.kind == Kind::Test {
            continue;
        }
        let visible = match (&alert.account, alert.kind.is_account_failure()) {
            (Some(account), true) => {
                sight.polled.contains(account) || !sight.configured.contains(account)
            }
            _ => true,
        };
        if visible {
            steps.push(Step::Resolve(alert.clone()));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(15 * 60);

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-10T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::minutes(minutes)
    }

    fn login_failing_since(minutes: i64) -> Condition {
        Condition {
            key: "account:support".into(),
            kind: Kind::LoginRejected,
            account: Some("support".into()),
            since: t(minutes),
            detail: "[AUTHENTICATIONFAILED]".into(),
            stage: 0,
        }
    }

    fn opened(c: &Condition, notified: i64) -> OpenAlert {
        OpenAlert {
            id: 1,
            key: c.key.clone(),
            kind: c.kind,
            account: c.account.clone(),
            stage: c.stage,
            since: c.since,
            detail: c.detail.clone(),
            notified_at: t(notified),
        }
    }

    fn sight<'a>(polled: &'a HashSet<String>, configured: &'a HashSet<String>) -> Sight<'a> {
        Sight { polled, configured }
    }

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_account_failure_opens_an_alert_only_after_it_lasted() {
        let (polled, configured) = (names(&["support"]), names(&["support"]));
        let c = login_failing_since(0);
        let at = |m| {
            judge(
                &[],
                std::slice::from_ref(&c),
                &sight(&polled, &configured),
                AFTER,
                t(m),
            )
        };
        assert_eq!(at(14), []);
        assert_eq!(at(15), [Step::Open(c.clone())]);
    }

    #[test]
    fn an_open_alert_is_reminded_once_a_day_and_resolved_when_its_condition_ends() {
        let (polled, configured) = (names(&["support"]), names(&["support"]));
        let c = login_failing_since(0);
        let open = [opened(&c, 15)];
        let s = sight(&polled, &configured);
        assert_eq!(judge(&open, std::slice::from_ref(&c), &s, AFTER, t(60)), []);
        assert_eq!(
            judge(&open, std::slice::from_ref(&c), &s, AFTER, t(15 + 24 * 60)),
            [Step::Remind {
                alert: open[0].clone(),
                now: c.clone()
            }]
        );
        assert_eq!(
            judge(&open, &[], &s, AFTER, t(70)),
            [Step::Resolve(open[0].clone())]
        );
    }

    #[test]
    fn another_instances_account_is_not_resolved_here_unless_it_left_the_config() {
        let c = login_failing_since(0);
        let open = [opened(&c, 15)];
        let (none, configured) = (names(&[]), names(&["support"]));
        assert_eq!(
            judge(&open, &[], &sight(&none, &configured), AFTER, t(70)),
            []
        );
        let removed = names(&[]);
        assert_eq!(
            judge(&open, &[], &sight(&none, &removed), AFTER, t(70)),
            [Step::Resolve(open[0].clone())]
        );
    }

    #[test]
    fn held_mails_are_reported_at_once_and_again_when_more_arrive() {
        let (polled, configured) = (names(&[]), names(&["support"]));
        let s = sight(&polled, &configured);
        let mut c = Condition {
            key: "quarantine:support".into(),
            kind: Kind::Quarantined,
            account: Some("support".into()),
            since: t(0),
            detail: "a@b | Hi | 1 KB | error".into(),
            stage: 1,
        };
        assert_eq!(
            judge(&[], std::slice::from_ref(&c), &s, AFTER, t(0)),
            [Step::Open(c.clone())]
        );
        let open = [opened(&c, 0)];
        assert_eq!(judge(&open, std::slice::from_ref(&c), &s, AFTER, t(5)), []);
        c.stage = 2;
        assert_eq!(
            judge(&open, std::slice::from_ref(&c), &s, AFTER, t(6)),
            [Step::Remind {
                alert: open[0].clone(),
                now: c.clone()
            }]
        );
    }
}
