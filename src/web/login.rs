//! `/login` (one field, `password`) and `/logout`. A failed login is logged with the client's
//! address, never with what was typed; after five failures a minute from one client (or more
//! from everybody together, see `session`) logins wait.

use axum::extract::{Extension, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use tracing::{info, warn};

use super::guard::SessionToken;
use super::lang::Lang;
use super::layout::page;
use super::session::COOKIE;
use super::{ClientAddr, Web};

pub async fn form(Extension(lang): Extension<Lang>) -> Markup {
    login_page(lang, None)
}

fn login_page(lang: Lang, problem: Option<&str>) -> Markup {
    let t = lang.t();
    page(
        lang,
        t.login,
        None,
        html! {
            h1 { (t.title) }
            form.login method="post" action="/login" {
                @if let Some(problem) = problem {
                    p.problem role="alert" { (problem) }
                }
                label for="password" { (t.password) }
                input #password type="password" name="password" autocomplete="current-password" autofocus required;
                button type="submit" { (t.login) }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    password: String,
}

pub async fn submit(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = peer.ip();
    let t = lang.t();
    if let Some(wait) = web.sessions.login_blocked(client) {
        warn!(%client, wait_secs = wait.as_secs(), "accounts page: login refused, too many failed tries");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            login_page(lang, Some(t.too_many_tries)),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let hash = web
        .config
        .resolved_admin_hash
        .as_ref()
        .map(|h| h.expose().to_owned())
        .unwrap_or_default();
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || crate::password_hash::verify(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        web.sessions.login_failed(client);
        warn!(%client, "accounts page: failed login");
        return (
            StatusCode::UNAUTHORIZED,
            login_page(lang, Some(t.wrong_password)),
        )
            .into_response();
    }
    let (token, session) = web.sessions.open(client);
    info!(%client, session = %session.id, "accounts page: logged in");
    let secure = if web.config.tls() || web.config.allow_plain_http {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub async fn logout(
    State(web): State<Web>,
    Extension(SessionToken(token)): Extension<SessionToken>,
) -> Response {
    web.sessions.close(&token);
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
