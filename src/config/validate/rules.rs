//! Rules of `[[account.rule]]` and of the old-mail status: every status and type one of
//! `[tickets]`'s (when it lists them), every rule usable (one test, a regular expression that
//! compiles, something to set), and `old_mail_status` only with `old_mail_age`.

use super::{Checker, Key};
use crate::config::{AccountConfig, RuleError, TicketsConfig};

pub fn check(c: &mut Checker, at: &Key, account: &AccountConfig, tickets: Option<&TicketsConfig>) {
    for (i, rule) in account.rules.iter().enumerate() {
        let key = |field: &'static str| at.clone().item("rule", i).field(field);
        if let Err(e) = rule.test() {
            let field = match e {
                RuleError::NoTest | RuleError::TwoTests => "contains",
                RuleError::BadRegex(_) => "matches",
                RuleError::SetsNothing => "status",
                RuleError::NoHeader => "header",
            };
            c.error(key(field), e.to_string());
        }
        if let Some(status) = &rule.status {
            known_status(c, key("status"), status, tickets);
        }
        if let Some(ticket_type) = &rule.ticket_type {
            known_type(c, key("type"), ticket_type, tickets);
        }
    }
    match (&account.old_mail_status, account.old_mail_age) {
        (Some(status), Some(_)) => {
            known_status(c, at.clone().field("old_mail_status"), status, tickets)
        }
        (Some(_), None) => c.error(
            at.clone().field("old_mail_status"),
            "needs old_mail_age, e.g. \"14d\": mails older than that get this status",
        ),
        (None, Some(_)) => c.error(
            at.clone().field("old_mail_age"),
            "needs old_mail_status, e.g. \"closed\": the status old mails get",
        ),
        (None, None) => {}
    }
}

pub fn known_status(c: &mut Checker, key: Key, status: &str, tickets: Option<&TicketsConfig>) {
    c.non_empty(key.clone(), status);
    if let Some(t) = tickets.filter(|t| !t.statuses.is_empty()) {
        if !t.statuses.iter().any(|s| s == status) {
            c.error(
                key,
                format!("{status:?} is not in [tickets] statuses {:?}", t.statuses),
            );
        }
    }
}

pub fn known_type(c: &mut Checker, key: Key, ticket_type: &str, tickets: Option<&TicketsConfig>) {
    c.non_empty(key.clone(), ticket_type);
    if let Some(t) = tickets.filter(|t| !t.types.is_empty()) {
        if !t.types.iter().any(|s| s == ticket_type) {
            c.error(
                key,
                format!("{ticket_type:?} is not in [tickets] types {:?}", t.types),
            );
        }
    }
}
