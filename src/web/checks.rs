//! The form's live checks, each on the values in the form (not the saved file), before Save:
//! the two test buttons (the staged checks of `test-fetch` / `test-send`, step by step as they
//! finish), the folder picker (the server's own folder list, fetched with the form's
//! credentials) and the server settings found from the address.
//!
//! The form becomes a config exactly as Save would write it (`save::prepare`), so a test proves
//! what Save will keep; an empty password field tests with the stored password.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::file;
use super::form_values;
use super::save::{prepare, Prepared, Refusal};
use super::Web;
use crate::account::AccountRuntime;
use crate::budget::MemoryBudget;
use crate::config::{AccountConfig, Config, Protocol};
use crate::diagnose::{Report, Step};

/// How long test-fetch waits for its test mail, as the command does by default.
const TEST_MAIL_WAIT: Duration = Duration::from_secs(60);

/// One line of the stream the test buttons read: a step as it finishes, then the end.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Step {
        #[serde(flatten)]
        step: Step,
        /// The form field the failure is about (a rejected login: `password`).
        field: Option<&'static str>,
    },
    Done {
        ok: bool,
    },
}

/// The form as the config Save would write.
fn form_config(web: &Web, pairs: &[(String, String)]) -> Result<Prepared, Refusal> {
    prepare(&file::current(web), &form_values::of_form(pairs))
}

/// The answer that says which fields are wrong (the page shows each beside its field).
fn refused(refusal: Refusal) -> Response {
    let fields = match refusal {
        Refusal::Fields(fields) => json!(fields),
        Refusal::Problem(text) => json!({ "": [text] }),
    };
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "fields": fields })),
    )
        .into_response()
}

fn account<'a>(config: &'a Config, name: &str) -> Option<&'a AccountConfig> {
    config.accounts.iter().find(|a| a.name == name)
}

pub async fn test_fetch(
    State(web): State<Web>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    run_check(&web, &pairs, Check::Fetch)
}

pub async fn test_send(
    State(web): State<Web>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    run_check(&web, &pairs, Check::Send)
}

#[derive(Clone, Copy)]
enum Check {
    Fetch,
    Send,
}

/// Starts the check and answers with its steps as newline-delimited JSON, each line sent as
/// its step finishes.
fn run_check(web: &Web, pairs: &[(String, String)], check: Check) -> Response {
    let prepared = match form_config(web, pairs) {
        Ok(p) => p,
        Err(refusal) => return refused(refusal),
    };
    let config = prepared.loaded.config;
    let (tx, rx) = mpsc::unbounded_channel();
    let name = prepared.name.clone();
    tokio::spawn(async move {
        let Some(account) = account(&config, &name) else {
            return;
        };
        let mut report = Report::streaming(&name, tx);
        match check {
            Check::Fetch => {
                crate::diagnose::fetch_steps(&config, account, TEST_MAIL_WAIT, &mut report).await
            }
            Check::Send => crate::diagnose::send_steps(&config, account, None, &mut report).await,
        }
    });
    // State: the receiver, whether the end was sent, whether every step so far passed.
    let lines = futures::stream::unfold((rx, false, true), |(mut rx, finished, ok)| async move {
        if finished {
            return None;
        }
        match rx.recv().await {
            Some(step) => {
                let ok = ok && step.ok;
                let field = if step.ok { None } else { field_of(&step.name) };
                let line = Line::Step { step, field };
                Some((
                    Ok::<_, std::convert::Infallible>(ndjson(&line)),
                    (rx, false, ok),
                ))
            }
            None => Some((Ok(ndjson(&Line::Done { ok })), (rx, true, ok))),
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The form field a failed step is about, so the page can mark it.
fn field_of(step: &str) -> Option<&'static str> {
    match step {
        "login" => Some("password"),
        "resolve host" | "connect" => Some("host"),
        "TLS" => Some("encryption"),
        "move_to folder" => Some("move_to"),
        "folder" | "mailbox" => Some("folder"),
        _ => None,
    }
}

fn ndjson(line: &Line) -> String {
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    text
}

/// The server's folders for the "Verschieben nach" picker, logged in with the form's values.
pub async fn folders(State(web): State<Web>, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let prepared = match form_config(&web, &pairs) {
        Ok(p) => p,
        Err(refusal) => return refused(refusal),
    };
    let config = &prepared.loaded.config;
    let Some(account) = account(config, &prepared.name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if account.protocol == Protocol::Pop3 {
        return Json(json!({ "error": "POP3 has no folders: a POP3 mailbox can only delete or keep its mails" }))
            .into_response();
    }
    let budget = MemoryBudget::new(config.daemon.memory_budget.0);
    let rt = match AccountRuntime::new(config, account, &budget) {
        Ok(rt) => rt,
        Err(e) => return Json(json!({ "error": format!("{e:#}") })).into_response(),
    };
    let listed = async {
        let mut conn = crate::imap::login::sign_in(&rt).await?;
        let folders =
            crate::imap::names::configured_folders(&mut conn.session, &conn.hierarchy, rt.timeout)
                .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.session.logout()).await;
        Ok::<_, crate::source::SourceError>((folders, conn.hierarchy.describe()))
    };
    match listed.await {
        Ok((folders, hierarchy)) => {
            Json(json!({ "folders": folders, "hierarchy": hierarchy })).into_response()
        }
        Err(e) => {
            let field = matches!(e.kind(), crate::source::ErrorKind::LoginRejected { .. })
                .then_some("password");
            Json(json!({ "error": e.to_string(), "field": field })).into_response()
        }
    }
}

/// Server settings from the address typed in the form, each proved by a live connection
/// (with the form's `ca_file` trusted too, for a private CA).
pub async fn detect(Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let values = form_values::of_form(&pairs);
    let address = values.get("email").cloned().unwrap_or_default();
    let mut options = match crate::detect::DetectOptions::from_env() {
        Ok(o) => o,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    if let Some(ca) = values.get("ca_file").filter(|c| !c.is_empty()) {
        options.extra_ca = Some(ca.into());
    }
    match crate::detect::detect(&address, &options).await {
        Ok(found) => {
            let incoming: Vec<_> = found
                .incoming
                .iter()
                .map(|c| {
                    json!({
                        "protocol": c.protocol,
                        "host": c.host,
                        "port": c.port,
                        "encryption": c.encryption,
                        "proven": c.proof.is_proven(),
                        "line": crate::detect::report::line(c),
                    })
                })
                .collect();
            // Where the provider requires OAuth 2.0 (Microsoft 365, Google), "use" presets it.
            let oauth2 = found
                .oauth2
                .as_ref()
                .map(|o| json!({ "provider": o.provider, "reason": o.reason }));
            Json(json!({ "incoming": incoming, "notes": found.notes, "oauth2": oauth2 }))
                .into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
