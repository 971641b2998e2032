//! The accounts page ("E-Mail-Konten"): the mail accounts of the config file in a browser, with
//! Save and the two test buttons, for the shop owner who knows the mailbox password but has no
//! terminal. Served by the daemon on `[web] listen`, a listener of its own (not the one of
//! /healthz and /metrics: that one has no login and is often open to a monitoring network).
//!
//! The config file stays the single source of truth: every page reads it afresh, Save edits it
//! in place (`config::edit`) and applies it the way SIGHUP does (`crate::reload`).
//!
//! Security is in `guard` (headers, Origin, login, CSRF) and `session` (cookies, throttling);
//! every page is server-rendered with maud, which escapes every value it is given, so text that
//! came from mail (subjects, names) shows as text.

mod account_form;
mod assets;
mod checks;
mod file;
mod form_values;
mod guard;
mod hash_command;
mod lang;
mod layout;
mod login;
mod overview;
mod quarantine;
mod save;
mod session;
mod tickets;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::WebConfig;
use crate::health::Health;
use crate::reload::Reloader;
use crate::store::Store;

pub use hash_command::hash_password_command;

/// The address the request came from (the TCP peer; behind a reverse proxy, the proxy).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Everything the handlers share.
pub struct WebState {
    pub config: WebConfig,
    pub config_path: PathBuf,
    pub health: Health,
    pub store: Store,
    pub reloader: Reloader,
    pub sessions: session::Sessions,
}

pub type Web = Arc<WebState>;

impl WebState {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        config: WebConfig,
        config_path: PathBuf,
        health: Health,
        store: Store,
        reloader: Reloader,
    ) -> Web {
        let sessions = session::Sessions::new(config.session_idle);
        Arc::new(WebState {
            config,
            config_path,
            health,
            store,
            reloader,
            sessions,
        })
    }
}

/// The page's listener; an address in use is named with what to do.
pub async fn bind(config: &WebConfig) -> Result<TcpListener, String> {
    TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "cannot serve the accounts page on [web] listen = \"{}\": {e}; choose a free port",
            config.listen
        )
    })
}

fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(overview::page_handler))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route(
            "/accounts/new",
            get(account_form::new_account).post(save::submit),
        )
        .route(
            "/accounts/{name}",
            get(account_form::existing).post(save::submit),
        )
        .route(
            "/accounts/{name}/quarantine",
            get(quarantine::list).post(quarantine::retry),
        )
        .route("/api/test-fetch", post(checks::test_fetch))
        .route("/api/test-send", post(checks::test_send))
        .route("/api/folders", post(checks::folders))
        .route("/api/detect", post(checks::detect))
        .route("/tickets", get(tickets::search))
        .route("/tickets/{number}", get(tickets::show))
        .route("/tickets/{number}/{article}/raw", get(tickets::raw))
        .route(
            "/tickets/{number}/{article}/attachments/{index}",
            get(tickets::attachment),
        )
        .route("/assets/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::guard,
        ))
        .with_state(web)
}

/// Serves the page until `cancel` fires: https when `[web]` has a certificate, else plain HTTP
/// (validation allows that only on loopback or behind a TLS-terminating proxy).
pub async fn serve(listener: TcpListener, web: Web, cancel: CancellationToken) {
    let tls = match &web.config.tls_cert_file {
        Some(cert) => match server_tls(cert, web.config.tls_key_file.as_deref()) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                warn!("the accounts page is not served: {e}");
                return;
            }
        },
        None => None,
    };
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(url = %format!("{scheme}://{addr}/"), "serving the accounts page");
    }
    let app = router(web);
    while let Some((stream, peer)) = crate::http::accept(&listener, &cancel).await {
        let app = app.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(
                        app.oneshot(req.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|never| match never {}),
                    )
                }
            });
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                b
            };
            let served = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                r = conn => r,
                                _ = cancel.cancelled() => Ok(()),
                            }
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake with a browser failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => r,
                        _ = cancel.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "connection to the accounts page ended");
            }
        });
    }
}

fn server_tls(
    cert: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key = key.ok_or("tls_cert_file needs tls_key_file")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read [web] tls_cert_file {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read [web] tls_key_file {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("[web] tls_cert_file and tls_key_file do not make a pair: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
