//! The small HTTP server behind `[daemon] http_listen`: `GET /healthz` and `GET /metrics`.
//!
//! hyper 1 (HTTP/1 server only) with hyper-util's tokio glue: two fixed routes need no router, so
//! axum (and tower) would only add weight. The client side of `mail2ticket healthcheck` is a
//! plain HTTP/1.0 request over a TcpStream: it only ever talks to this server.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::health::Health;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub health: Health,
    pub store: Store,
    /// The open alerts, as the alert task last saw them.
    pub alerts: crate::alerts::Board,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "cannot listen on [daemon] http_listen = \"{addr}\": {e}; is another mail2ticket \
             (or another service) using that port? Choose a free port or remove http_listen"
        )
    })
}

/// Serves until `cancel` fires.
pub async fn serve(listener: TcpListener, state: HttpState, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /healthz and /metrics");
    }
    while let Some((stream, peer)) = accept(&listener, &cancel).await {
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(%peer, error = %e, "HTTP connection ended") },
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// The next connection, or `None` once `cancel` fires. A failed accept (out of file
/// descriptors, say) is logged and retried after a short pause instead of ending the server.
/// The accounts page's listener (`crate::web`) accepts through this too.
pub async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = cancel.cancelled() => return None,
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn handle(req: Request<Incoming>, state: &HttpState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => {
            let (ok, body) = state.health.report(&state.store.health());
            let body = with_alerts(body, &state.alerts);
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            response(status, "application/json", body + "\n")
        }
        "/metrics" => {
            let started = Instant::now();
            // The outbox depth is read at scrape time; a slow store must not hang the scrape.
            match tokio::time::timeout(Duration::from_secs(2), state.store.outbox_summary()).await {
                Ok(Ok(s)) => {
                    crate::metrics::outbox_depth(s.unsent());
                    crate::metrics::outbox_bounced(s.bounced);
                }
                Ok(Err(e)) => warn!(error = %e, "metrics: cannot read the outbox depth"),
                Err(_) => warn!("metrics: reading the outbox depth took over 2s"),
            }
            let body = crate::metrics::render();
            debug!(
                micros = started.elapsed().as_micros() as u64,
                bytes = body.len(),
                "metrics rendered"
            );
            response(StatusCode::OK, crate::metrics::CONTENT_TYPE, body)
        }
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /healthz or /metrics\n".into(),
        ),
    }
}

/// Adds the open alerts (`[alerts]`) to the /healthz body: the states the owner was told of,
/// from memory (the alert task's last round), so a stalled store cannot hold up the check.
fn with_alerts(body: String, alerts: &crate::alerts::Board) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&body) else {
        return body;
    };
    value["alerts"] = serde_json::json!(alerts.open());
    value.to_string()
}

/// `GET /healthz` on our own server: `(status code, body)`. An unspecified listen address
/// (0.0.0.0, ::) is reached over loopback.
pub async fn get_healthz(listen: SocketAddr, timeout: Duration) -> Result<(u16, String), String> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        stream.take(1 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot reach http://{addr}/healthz: {e}; is the daemon running with this config?"
            ))
        }
        Err(_) => {
            return Err(format!(
                "http://{addr}/healthz did not answer within {}s",
                timeout.as_secs()
            ))
        }
    };
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("http://{addr}/healthz sent no HTTP status line"))?;
    Ok((code, body.trim_end().to_string()))
}
