//! `/accounts/NAME` and `/accounts/new`: the account form, in the product's order and words.
//! Values come from the file (or, after a refused Save, from what was typed); a password never
//! does: the field is always empty, and says where the stored one comes from.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::file::{self, SecretSource};
use super::form_values::{self, Values};
use super::lang::{Lang, Texts};
use super::layout::page;
use super::session::Session;
use super::Web;
use crate::config::edit::SecretKind;

/// What Save has to say above the form.
pub enum Notice {
    Done(String),
    Problem(String),
    /// The file cannot be written: the account as TOML, to paste by hand.
    Paste {
        message: String,
        toml: String,
    },
}

pub struct FormView<'a> {
    pub lang: Lang,
    pub session: &'a Session,
    /// The account's name in the file; None for a new account.
    pub original: Option<String>,
    /// The file's version when the form was made (`config::edit`).
    pub version: String,
    pub values: Values,
    /// Problems by field (config key); `""` for problems of the file elsewhere.
    pub issues: BTreeMap<String, Vec<String>>,
    pub notice: Option<Notice>,
    pub password_source: SecretSource,
    pub client_secret_source: SecretSource,
    pub types: Vec<String>,
    pub statuses: Vec<String>,
}

pub async fn new_account(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
) -> Response {
    let current = file::current(&web);
    let (types, statuses) = current.ticket_choices();
    let mut values = form_values::for_new_account();
    if let Some(t) = types.first() {
        values.insert("ticket_type".into(), t.clone());
    }
    if let Some(s) = statuses.first() {
        values.insert("ticket_status".into(), s.clone());
    }
    render(&FormView {
        lang,
        session: &session,
        original: None,
        version: current.version.clone(),
        values,
        issues: BTreeMap::new(),
        notice: None,
        password_source: SecretSource::None,
        client_secret_source: SecretSource::None,
        types,
        statuses,
    })
    .into_response()
}

pub async fn existing(
    State(web): State<Web>,
    Path(name): Path<String>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
) -> Response {
    let current = file::current(&web);
    if current.account(&name).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("no account named {name:?} in the config file"),
        )
            .into_response();
    }
    stored_form(lang, &session, &current, &name, None).into_response()
}

/// The form of account `name` as the file has it now (its values, where its secrets come
/// from, the file's version), with `notice` above it.
pub fn stored_form(
    lang: Lang,
    session: &Session,
    current: &file::CurrentFile,
    name: &str,
    notice: Option<Notice>,
) -> Markup {
    let (types, statuses) = current.ticket_choices();
    render(&FormView {
        lang,
        session,
        original: Some(name.to_string()),
        version: current.version.clone(),
        values: current
            .account(name)
            .map(form_values::of_account)
            .unwrap_or_default(),
        issues: BTreeMap::new(),
        notice,
        password_source: current.secret_source(name, SecretKind::Password),
        client_secret_source: current.secret_source(name, SecretKind::ClientSecret),
        types,
        statuses,
    })
}

pub fn render(view: &FormView) -> Markup {
    let t = view.lang.t();
    let title = view
        .original
        .clone()
        .unwrap_or_else(|| t.new_account.into());
    let action = match &view.original {
        Some(name) => format!("/accounts/{}", super::overview::urlencode(name)),
        None => "/accounts/new".to_string(),
    };
    let v = |k: &str| view.values.get(k).cloned().unwrap_or_default();
    let content = html! {
        h1 { (t.title) ": " (title) }
        @match &view.notice {
            Some(Notice::Done(text)) => p.done role="status" { (text) },
            Some(Notice::Problem(text)) => p.problem role="alert" { (text) },
            Some(Notice::Paste { message, toml }) => div.problem role="alert" {
                p { (message) }
                pre.paste { (toml) }
            },
            None => {}
        }
        @if let Some(other) = view.issues.get("") {
            ul.problem { @for i in other { li { (i) } } }
        }
        form #account method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(view.session.csrf);
            input type="hidden" name="version" value=(view.version);
            input type="hidden" name="original" value=(view.original.clone().unwrap_or_default());
            (text_field(view, "name", t.name, "text"))
            (text_field(view, "email", t.email, "email"))
            div.detect {
                button #detect type="button" { (t.find_settings) }
                div #detected aria-live="polite" {}
            }
            (checkbox(view, "active", t.active))
            (text_field(view, "user", t.user, "text"))
            (password_field(view, t))
            (select(view, "protocol", t.protocol, &[("pop3", "POP"), ("imap", "IMAP"), ("graph", "Microsoft 365 (Graph)")]))
            div.field {
                label for="port" { (t.port) }
                input #port name="port" type="text" inputmode="numeric" value=(v("port"))
                    placeholder=(default_port(&v("protocol"), &v("encryption")));
                p #port-hint.hint hidden { (t.port_25) }
                (issues(view, "port"))
            }
            (select(view, "encryption", t.encryption, &[("ssl", "SSL"), ("starttls", "TLS"), ("none", t.enc_none)]))
            (text_field(view, "host", t.host, "text"))
            (choice_or_text(view, "ticket_type", t.ticket_type, &view.types))
            (choice_or_text(view, "ticket_status", t.ticket_status, &view.statuses))
            (text_field(view, "sender_name", t.sender_name, "text"))
            (text_field(view, "reply_to", t.reply_to, "email"))
            (select(view, "action", t.action, &[("move", t.act_move), ("delete", t.act_delete), ("keep", t.act_keep)]))
            div.field {
                label for="move_to" { (t.move_to) }
                input #move_to name="move_to" type="text" value=(v("move_to"));
                button #load-folders type="button" { (t.load_folders) }
                select #folder-list hidden {}
                p #folders-problem.hint hidden {}
                (issues(view, "move_to"))
            }
            details.advanced open[advanced_has_issues(view)] {
                summary { (t.advanced) }
                (text_field(view, "folder", "folder", "text"))
                (select(view, "customer", "customer", &[("reply_to", "reply_to"), ("from", "from")]))
                (checkbox(view, "auto_reply", "auto_reply"))
                (text_field(view, "auto_reply_subject", "auto_reply_subject", "text"))
                div.field {
                    label for="auto_reply_body" { "auto_reply_body" }
                    textarea #auto_reply_body name="auto_reply_body" rows="5" { (v("auto_reply_body")) }
                    (issues(view, "auto_reply_body"))
                }
                (text_field(view, "max_message_size", "max_message_size", "text"))
                (text_field(view, "ca_file", "ca_file", "text"))
                (select(view, "auth", "auth", &[("password", "password"), ("oauth2", "oauth2")]))
                (select(view, "oauth2.provider", "oauth2.provider", &[("", "–"), ("microsoft", "microsoft"), ("google", "google"), ("custom", "custom")]))
                (text_field(view, "oauth2.tenant", "oauth2.tenant", "text"))
                (select(view, "oauth2.grant", "oauth2.grant", &[("", "–"), ("client_credentials", "client_credentials"), ("refresh_token", "refresh_token")]))
                (text_field(view, "oauth2.client_id", "oauth2.client_id", "text"))
                (secret_field(view, "oauth2.client_secret", "oauth2.client_secret", &view.client_secret_source, t))
            }
            div.buttons {
                button #save type="submit" { (t.save) }
                button #test-fetch type="button" data-url="/api/test-fetch" { (t.test_fetch) }
                button #test-send type="button" data-url="/api/test-send" { (t.test_send) }
            }
            ol #steps aria-live="polite" {}
        }
    };
    page(view.lang, &title, Some(view.session), content)
}

fn advanced_has_issues(view: &FormView) -> bool {
    [
        "folder",
        "customer",
        "auto_reply",
        "auto_reply_subject",
        "auto_reply_body",
        "max_message_size",
        "ca_file",
        "auth",
    ]
    .iter()
    .any(|k| view.issues.contains_key(*k))
        || view.issues.keys().any(|k| k.starts_with("oauth2"))
}

fn default_port(protocol: &str, encryption: &str) -> &'static str {
    match (protocol, encryption) {
        ("pop3", "ssl") => "995",
        ("pop3", _) => "110",
        (_, "ssl") => "993",
        _ => "143",
    }
}

fn issues(view: &FormView, key: &str) -> Markup {
    html! {
        @if let Some(list) = view.issues.get(key) {
            @for issue in list {
                p.issue data-for=(key) role="alert" { (issue) }
            }
        }
    }
}

fn text_field(view: &FormView, key: &str, label: &str, kind: &str) -> Markup {
    let value = view.values.get(key).cloned().unwrap_or_default();
    html! {
        div.field {
            label for=(key) { (label) }
            input id=(key) name=(key) type=(kind) value=(value);
            (issues(view, key))
        }
    }
}

fn checkbox(view: &FormView, key: &str, label: &str) -> Markup {
    let checked = view.values.get(key).is_some_and(|v| v == "true");
    html! {
        div.field.check {
            input type="hidden" name=(key) value="false";
            label for=(key) { (label) }
            input id=(key) name=(key) type="checkbox" value="true" checked[checked];
            (issues(view, key))
        }
    }
}

fn select(view: &FormView, key: &str, label: &str, options: &[(&str, &str)]) -> Markup {
    let current = view.values.get(key).cloned().unwrap_or_default();
    html! {
        div.field {
            label for=(key) { (label) }
            select id=(key) name=(key) {
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (text) }
                }
                @if !current.is_empty() && !options.iter().any(|(v, _)| *v == current) {
                    option value=(current) selected { (current) }
                }
            }
            (issues(view, key))
        }
    }
}

/// A drop-down of `[tickets]` types or statuses; free text when the config lists none.
fn choice_or_text(view: &FormView, key: &str, label: &str, choices: &[String]) -> Markup {
    if choices.is_empty() {
        return text_field(view, key, label, "text");
    }
    let options: Vec<(&str, &str)> = choices.iter().map(|c| (c.as_str(), c.as_str())).collect();
    select(view, key, label, &options)
}

fn password_field(view: &FormView, t: &Texts) -> Markup {
    secret_field(view, "password", t.password, &view.password_source, t)
}

/// A write-only secret: always empty. A secret from a file or an environment variable is named
/// and cannot be changed here.
fn secret_field(
    view: &FormView,
    key: &str,
    label: &str,
    source: &SecretSource,
    t: &Texts,
) -> Markup {
    html! {
        div.field {
            label for=(key) { (label) }
            @match source {
                SecretSource::File(path) => {
                    input id=(key) type="password" disabled;
                    p.hint { (t.password_from_file) " " code { (path.display().to_string()) } }
                }
                SecretSource::Env(var) => {
                    input id=(key) type="password" disabled;
                    p.hint { (t.password_from_env) " " code { (var) } }
                }
                SecretSource::Inline => {
                    input id=(key) name=(key) type="password" autocomplete="new-password" value="";
                    p.hint { (t.password_keep) }
                }
                SecretSource::None => {
                    input id=(key) name=(key) type="password" autocomplete="new-password" value="";
                }
            }
            (issues(view, key))
        }
    }
}
