//! `/`: one row per account of the file, with its live state from the pollers' health, its last
//! successful fetch and what it did today.

use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::lang::{Lang, Texts};
use super::layout::page;
use super::session::Session;
use super::{file, Web};
use crate::config::{AlertLanguage, Protocol, MAX_ACCOUNTS};
use crate::health::{AccountState, State as Polling};
use crate::store::AccountActivity;

pub async fn page_handler(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
) -> Markup {
    let t = lang.t();
    let file = file::current(&web);
    let states = web.health.snapshots();
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or_else(Utc::now);
    let activity = web.store.account_activity(midnight).await;
    let store = web.store.health();
    let alert_language = match lang {
        Lang::De => AlertLanguage::De,
        Lang::En => AlertLanguage::En,
    };
    let alerts = crate::alerts::shown(&web.store, alert_language).await;
    let content = html! {
        h1 { (t.title) }
        @if !store.healthy {
            p.problem role="alert" {
                (t.st_store_failing) ": " (store.error.as_deref().unwrap_or(store.state))
            }
        }
        @if let Err(e) = &activity {
            p.problem role="alert" { (t.st_store_failing) ": " (e.to_string()) }
        }
        @if !alerts.is_empty() {
            section.alerts role="alert" {
                h2 { (t.alerts_open) }
                ul {
                    @for alert in &alerts {
                        li data-alert=(alert.kind) {
                            strong { (alert.title) }
                            " (" (t.alerts_since) " " (short_time(&alert.since)) "): "
                            (alert.detail)
                        }
                    }
                }
            }
        }
        @match &file.config {
            Err(issues) => {
                div.problem role="alert" {
                    p { (t.file_broken) }
                    ul { @for issue in issues { li { (issue.to_string()) } } }
                }
            }
            Ok(loaded) => {
                table.accounts {
                    thead { tr {
                        th { (t.name) } th { (t.email) } th { (t.active) } th { (t.protocol) }
                        th { (t.host) } th { (t.state) } th { (t.last_fetch) }
                        th { (t.mails_today) } th { (t.tickets_today) } th { (t.quarantined) }
                    } }
                    tbody {
                        @for account in &loaded.config.accounts {
                            @let state = states.get(&account.name);
                            @let today = activity.as_ref().ok().and_then(|a| a.get(&account.name)).cloned().unwrap_or_default();
                            (row(t, account, state, &today))
                        }
                    }
                }
                @if loaded.config.accounts.len() < MAX_ACCOUNTS {
                    p { a.button href="/accounts/new" { (t.new_account) } }
                } @else {
                    p { (t.max_accounts) }
                }
            }
        }
    };
    page(lang, t.title, Some(&session), content)
}

fn row(
    t: &Texts,
    account: &crate::config::AccountConfig,
    state: Option<&AccountState>,
    today: &AccountActivity,
) -> Markup {
    let protocol = match account.protocol {
        Protocol::Imap => "IMAP",
        Protocol::Pop3 => "POP3",
        Protocol::Graph => "Microsoft Graph",
    };
    let link = format!("/accounts/{}", urlencode(&account.name));
    html! {
        tr data-account=(account.name) {
            td { a href=(link) { (account.name) } }
            td { (account.email) }
            td { (if account.active { t.yes } else { t.no }) }
            td { (protocol) }
            td { (account.host) }
            td.state { (state_text(t, account.active, state)) }
            td { (state.and_then(|s| s.last_success.as_deref()).map(short_time).unwrap_or_else(|| t.never.to_string())) }
            td.count { (today.mails) }
            td.count { (today.new_tickets) }
            td.count.quarantined {
                @if today.quarantined > 0 {
                    a href=(format!("{link}/quarantine")) { (today.quarantined) }
                } @else {
                    (today.quarantined)
                }
            }
        }
    }
}

/// The state in words, with the server's words where there are some.
fn state_text(t: &Texts, active: bool, state: Option<&AccountState>) -> String {
    if !active {
        return t.st_inactive.to_string();
    }
    let Some(s) = state else {
        return t.st_not_running.to_string();
    };
    let until = s
        .backoff_until
        .as_deref()
        .map(short_time)
        .unwrap_or_default();
    let error = s.last_error.clone().unwrap_or_default();
    let token_failure = s
        .last_error_kind
        .as_deref()
        .is_some_and(|k| k.starts_with("oauth"));
    match s.state {
        Polling::LoginRejected => format!(
            "{} ({until}): {}",
            t.st_login_rejected,
            s.server_said.as_deref().unwrap_or(&error)
        ),
        Polling::BackingOff if token_failure => format!("{} ({until}): {error}", t.st_token),
        Polling::BackingOff => format!("{} {until}: {error}", t.st_backing_off),
        Polling::Starting | Polling::Connecting | Polling::Connected => t.st_starting.into(),
        Polling::Polling => t.st_polling.into(),
        Polling::Idle => t.st_idle.into(),
        Polling::Waiting => t.st_waiting.into(),
        Polling::Standby => t.st_standby.into(),
        Polling::Stopped => t.st_stopped.into(),
    }
}

/// `2026-12-07T09:15:02Z` as `2026-12-07 09:15 UTC`.
fn short_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

pub fn urlencode(text: &str) -> String {
    // Form encoding writes a space as '+', which a path takes literally; a real '+' is %2B.
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
