//! What every request passes before a handler sees it:
//! - the response headers of a page that holds passwords: a strict Content-Security-Policy (no
//!   inline script or style, nothing from elsewhere), no framing, no caching;
//! - on plain HTTP on loopback, a Host that is loopback (a DNS-rebinding page names its own);
//! - a login for everything but the login page and the static assets;
//! - for every request that changes something: an Origin of this very page, and the session's
//!   CSRF token (form field `csrf` or header `X-CSRF-Token`).

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tracing::warn;

use super::lang::Lang;
use super::session::{same_token, Session, COOKIE};
use super::{ClientAddr, Web};

/// The largest request body: an account form is a few KB.
pub const MAX_BODY: usize = 256 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The cookie token of the request's session, for logout.
#[derive(Clone)]
pub struct SessionToken(pub String);

pub async fn guard(State(web): State<Web>, req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut response = match admit(&web, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal,
    };
    secure_headers(response.headers_mut(), asset);
    response
}

fn refused(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

async fn admit(web: &Web, mut req: Request) -> Result<Request, Response> {
    let lang = Lang::from_headers(req.headers());
    req.extensions_mut().insert(lang);
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    if !host_allowed(web, req.headers()) {
        warn!(%client, "accounts page: refused a request for another host name (DNS rebinding?)");
        return Err(refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this page answers on loopback names only (127.0.0.1, localhost); behind a reverse \
             proxy set [web] allow_plain_http = true",
        ));
    }
    let path = req.uri().path().to_owned();
    let public = path == "/login" || path.starts_with("/assets/");
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if writes && !same_origin(req.headers()) {
        warn!(%client, %path, "accounts page: refused a write from another site (Origin)");
        return Err(refused(
            StatusCode::FORBIDDEN,
            "refused: this request did not come from this page (Origin)",
        ));
    }
    let token = cookie(req.headers(), COOKIE);
    let session = token.as_deref().and_then(|t| web.sessions.get(t));
    match (session, token) {
        (Some(session), Some(token)) => {
            if writes {
                req = check_csrf(req, &session).await.map_err(|why| {
                    warn!(%client, %path, session = %session.id, "accounts page: {why}");
                    refused(StatusCode::FORBIDDEN, &format!("refused: {why}"))
                })?;
            }
            req.extensions_mut().insert(session);
            req.extensions_mut().insert(SessionToken(token));
        }
        _ if public => {}
        _ if writes => {
            return Err(refused(StatusCode::FORBIDDEN, "refused: log in first"));
        }
        _ => return Err(Redirect::to("/login").into_response()),
    }
    Ok(req)
}

/// The request must carry the session's CSRF token, in the header (fetch) or as the form field
/// `csrf` (a plain form submit); the body is read for that and handed on unchanged.
async fn check_csrf(req: Request, session: &Session) -> Result<Request, &'static str> {
    if let Some(given) = req.headers().get("x-csrf-token") {
        return match given.to_str() {
            Ok(given) if same_token(given, &session.csrf) => Ok(req),
            _ => Err("wrong CSRF token"),
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| "request body too large")?;
    let given = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match given {
        Some(given) if same_token(&given, &session.csrf) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => Err("wrong CSRF token"),
        None => Err("missing CSRF token"),
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Origin` names the host (and port) this request was sent to. Browsers send Origin with every
/// POST, fetch included; a request without one is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    match url::Url::parse(origin) {
        Ok(url) => {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }
        Err(_) => false,
    }
}

/// On plain HTTP on loopback the page answers only to loopback names. With TLS, or behind a
/// proxy (`allow_plain_http`), the certificate and the proxy decide the name.
fn host_allowed(web: &Web, headers: &HeaderMap) -> bool {
    if web.config.tls() || web.config.allow_plain_http {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == web.config.listen.ip())
}

fn secure_headers(h: &mut HeaderMap, asset: bool) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_write_must_come_from_this_page() {
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8025"),
            ("host", "127.0.0.1:8025")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8025")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "127.0.0.1:8025")
        ])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8025")])));
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; m2t_session=tok; b=2")]);
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&headers(&[]), COOKIE), None);
    }
}
