//! `/accounts/NAME/quarantine`: the account's quarantined mails as `quarantine list` names
//! them (sender, subject, size, tries, since when, the last error), with a button per mail and
//! one for all that does what `quarantine retry` does. Sender, subject and error came from mail
//! or from the store's words about it: maud escapes them like everything else.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::file;
use super::lang::{Lang, Texts};
use super::layout::page;
use super::overview::urlencode;
use super::session::Session;
use super::Web;
use crate::quarantine::{Retried, Which};
use crate::source::SourceKey;
use crate::store::QuarantinedMail;

pub async fn list(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Markup {
    view(&web, lang, &session, &name, &[]).await
}

#[derive(Deserialize)]
pub struct RetryForm {
    /// One mail's source key; absent: every mail of the account.
    key: Option<String>,
}

pub async fn retry(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    let which = match form.key.as_deref().map(str::parse::<SourceKey>) {
        None => Which::Account(name.clone()),
        Some(Ok(key)) => Which::Key {
            key,
            account: Some(name.clone()),
        },
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let config = match file::current(&web).config {
        Ok(loaded) => loaded.config,
        Err(_) => {
            let t = lang.t();
            return (StatusCode::CONFLICT, t.file_broken).into_response();
        }
    };
    let retried = match crate::quarantine::chosen(&web.store, &which).await {
        Ok(mails) => crate::quarantine::retry(&config, &web.store, mails).await,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    for r in &retried {
        tracing::info!(session = %session.id, client = %session.client, account = %r.mail.account,
            source = %r.mail.key, released = r.result.is_ok(), "accounts page: quarantine retry");
    }
    view(&web, lang, &session, &name, &retried)
        .await
        .into_response()
}

/// The page, with what a retry just did above the table.
async fn view(web: &Web, lang: Lang, session: &Session, name: &str, retried: &[Retried]) -> Markup {
    let t = lang.t();
    let mails = web.store.quarantined(Some(name)).await;
    let action = format!("/accounts/{}/quarantine", urlencode(name));
    let content = html! {
        p { a href="/" { (t.back) } }
        h1 { (t.quarantined) ": " (name) }
        p.hint { (t.quarantine_intro) }
        @if !retried.is_empty() {
            ul.retried {
                @for r in retried {
                    @match &r.result {
                        Ok(released) => li.done { (r.mail.key) ": " (released.to_string()) },
                        Err(not) => li.problem { (r.mail.key) ": " (not.to_string()) },
                    }
                }
            }
        }
        @match &mails {
            Err(e) => p.problem role="alert" { (e.to_string()) },
            Ok(mails) if mails.is_empty() => p { (t.nothing_quarantined) },
            Ok(mails) => {
                table.quarantine {
                    thead { tr {
                        th { (t.from) } th { (t.subject) } th { (t.size) } th { (t.tries) }
                        th { (t.failing_since) } th { (t.last_error) } th {}
                    } }
                    tbody {
                        @for mail in mails { (row(t, session, &action, mail)) }
                    }
                }
                form.retry-all method="post" action=(action) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { (t.retry_all) }
                }
            }
        }
    };
    page(lang, t.quarantined, Some(session), content)
}

fn row(t: &Texts, session: &Session, action: &str, mail: &QuarantinedMail) -> Markup {
    let key = mail.key.to_string();
    html! {
        tr data-key=(key) {
            td.sender { (mail.sender) }
            td.subject { (mail.subject) }
            td.count { (mail.size) }
            td.count { (mail.attempts) }
            td { (mail.since.format("%Y-%m-%d %H:%M UTC")) }
            td.error { (mail.error) }
            td {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="key" value=(key);
                    button type="submit" { (t.retry) }
                }
            }
        }
    }
}
