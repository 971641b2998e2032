//! Save: the form becomes an edit of the config file (only the keys the user changed), checked
//! by every check-config rule before anything is written, written atomically unless the file
//! changed since the form was opened, then applied the way SIGHUP does. Every saved change is
//! logged with the session, the client, the account and the keys, never a secret's value.

use std::collections::BTreeMap;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use tracing::{info, warn};

use super::account_form::{render, stored_form, FormView, Notice};
use super::file::{self, CurrentFile};
use super::form_values::{self, Kind, Values, KEYS, SECRETS};
use super::lang::Lang;
use super::session::Session;
use super::{ClientAddr, Web};
use crate::config::edit::{self, AccountEdit, Change, SecretKind, Secrets, Value};
use crate::config::file::{self as config_file, FileVersion, SaveError};
use crate::config::ConfigIssue;
use crate::config::Loaded;
use crate::reload::ReloadOutcome;

/// A form turned into the file it would make.
pub struct Prepared {
    pub name: String,
    pub original: Option<String>,
    pub new_text: String,
    pub changed_keys: Vec<String>,
    pub loaded: Loaded,
}

/// Why a form cannot become a file.
pub enum Refusal {
    /// Problems by field (`""`: elsewhere in the file).
    Fields(BTreeMap<String, Vec<String>>),
    Problem(String),
}

/// The edit of `current` the form asks for, validated. Writes nothing.
pub fn prepare(current: &CurrentFile, values: &Values) -> Result<Prepared, Refusal> {
    let original = values.get("original").filter(|o| !o.is_empty()).cloned();
    let old = match &original {
        Some(name) => match current.account(name) {
            Some(account) => form_values::of_account(account),
            None => {
                return Err(Refusal::Problem(format!(
                    "the config file has no account named {name:?} any more"
                )))
            }
        },
        None => Values::new(),
    };
    let mut changes = Vec::new();
    for (key, kind, optional) in KEYS {
        // A field the form did not send (disabled) stays as it is.
        let Some(new) = values.get(*key) else {
            continue;
        };
        let before = old.get(*key).map(String::as_str).unwrap_or("");
        if new == before {
            continue;
        }
        let change = match (new.is_empty(), optional) {
            (true, true) => Change::Remove,
            (true, false) => Change::Set(Value::Str(String::new())),
            (false, _) => Change::Set(typed(*kind, new)),
        };
        changes.push((key.to_string(), change));
    }
    for key in SECRETS {
        if let Some(secret) = values.get(*key).filter(|s| !s.is_empty()) {
            changes.push((key.to_string(), Change::Set(Value::Str(secret.clone()))));
        }
    }
    let name = values
        .get("name")
        .cloned()
        .or_else(|| original.clone())
        .unwrap_or_default();
    let changed_keys = changes.iter().map(|(k, _)| k.clone()).collect();
    let edit = AccountEdit {
        original_name: original.clone(),
        changes,
    };
    let edited = edit::apply(&current.text, &edit).map_err(|e| Refusal::Problem(e.to_string()))?;
    let validated = edit::validate(&edited.text, edited.position).map_err(|issues| {
        let words =
            |list: Vec<ConfigIssue>| list.into_iter().map(|i| i.message).collect::<Vec<_>>();
        let mut fields: BTreeMap<String, Vec<String>> = issues
            .fields
            .into_iter()
            .map(|(key, list)| (key, words(list)))
            .collect();
        // The account as a whole and the rest of the file: above the form, with their lines.
        let elsewhere: Vec<String> = issues
            .account
            .iter()
            .chain(&issues.other)
            .map(|i| i.to_string())
            .collect();
        if !elsewhere.is_empty() {
            fields.entry(String::new()).or_default().extend(elsewhere);
        }
        Refusal::Fields(fields)
    })?;
    Ok(Prepared {
        name,
        original,
        new_text: edited.text,
        changed_keys,
        loaded: validated.loaded,
    })
}

/// A field's text as the TOML value of its key; text that is not a number stays text, so
/// validation names the key ("expected an integer") instead of the page guessing.
fn typed(kind: Kind, text: &str) -> Value {
    match kind {
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(text.to_string())),
        Kind::Bool => Value::Bool(text == "true"),
        Kind::Text => Value::Str(text.to_string()),
    }
}

pub async fn submit(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let t = lang.t();
    let values = form_values::of_form(&pairs);
    let current = file::current(&web);
    let typed_back = |notice: Notice, issues: BTreeMap<String, Vec<String>>| {
        let original = values.get("original").filter(|o| !o.is_empty()).cloned();
        let (types, statuses) = current.ticket_choices();
        let mut shown = values.clone();
        for key in SECRETS {
            shown.remove(*key);
        }
        render(&FormView {
            lang,
            session: &session,
            password_source: original
                .as_deref()
                .map(|n| current.secret_source(n, SecretKind::Password))
                .unwrap_or(file::SecretSource::None),
            client_secret_source: original
                .as_deref()
                .map(|n| current.secret_source(n, SecretKind::ClientSecret))
                .unwrap_or(file::SecretSource::None),
            original,
            version: values.get("version").cloned().unwrap_or_default(),
            values: shown,
            issues,
            notice: Some(notice),
            types,
            statuses,
        })
    };
    if values.get("version") != Some(&current.version) {
        return (
            StatusCode::CONFLICT,
            typed_back(Notice::Problem(t.changed_on_disk.into()), BTreeMap::new()),
        )
            .into_response();
    }
    let prepared = match prepare(&current, &values) {
        Ok(p) => p,
        Err(Refusal::Fields(issues)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                typed_back(Notice::Problem(t.fix_fields.into()), issues),
            )
                .into_response()
        }
        Err(Refusal::Problem(text)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                typed_back(Notice::Problem(text), BTreeMap::new()),
            )
                .into_response()
        }
    };
    let expected: FileVersion = match current.version.parse() {
        Ok(v) => v,
        Err(_) => {
            return (StatusCode::BAD_REQUEST, "malformed form version").into_response();
        }
    };
    let client = peer.ip();
    match config_file::write_atomically(&web.config_path, &expected, &prepared.new_text) {
        Ok(_) => {}
        Err(SaveError::Changed) => {
            return (
                StatusCode::CONFLICT,
                typed_back(Notice::Problem(t.changed_on_disk.into()), BTreeMap::new()),
            )
                .into_response()
        }
        Err(SaveError::ReadOnly { reason }) => {
            warn!(%client, session = %session.id, account = %prepared.name, %reason,
                "accounts page: the config file cannot be written; the page shows the TOML to paste");
            // Inline secrets stay out of the page: the admin adds the password by hand.
            let toml = edit::account_snippet(&prepared.new_text, &prepared.name, Secrets::Blanked)
                .unwrap_or_default();
            return (
                StatusCode::CONFLICT,
                typed_back(
                    Notice::Paste {
                        message: format!("{} ({reason})", t.read_only),
                        toml,
                    },
                    BTreeMap::new(),
                ),
            )
                .into_response();
        }
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                typed_back(Notice::Problem(e.to_string()), BTreeMap::new()),
            )
                .into_response()
        }
    }
    info!(%client, session = %session.id, account = %prepared.name,
        renamed_from = prepared.original.as_deref().filter(|o| *o != prepared.name).unwrap_or(""),
        keys = ?prepared.changed_keys, "accounts page: saved a change to the config file");
    let notice = match web.reloader.reload().await {
        ReloadOutcome::Applied {
            started,
            restarted,
            stopped,
        } => {
            let changed: Vec<String> = started
                .into_iter()
                .chain(restarted)
                .chain(stopped)
                .collect();
            if changed.is_empty() {
                Notice::Done(t.saved_unchanged.into())
            } else {
                Notice::Done(format!("{} ({})", t.saved, changed.join(", ")))
            }
        }
        ReloadOutcome::Rejected(why) => {
            Notice::Problem(format!("{} {}", t.not_applied, why.join("; ")))
        }
    };
    let fresh = file::current(&web);
    stored_form(lang, &session, &fresh, &prepared.name, Some(notice)).into_response()
}
