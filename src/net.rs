//! The byte stream under every mail protocol: plain TCP, or TLS over TCP (implicit or after
//! STARTTLS/STLS). One enum keeps the protocol clients free of generics over the transport.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls;

#[derive(Debug)]
pub enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("host not found: {host}: {source}; check `host`")]
    Resolve { host: String, source: io::Error },
    #[error("nothing answers on {host}:{port} ({source}); check `port` and the firewall")]
    Refused {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("connecting to {host}:{port} timed out after {secs}s; check `host`, `port` and the firewall")]
    Timeout { host: String, port: u16, secs: u64 },
    /// The handshake failed; the message explains the rustls error in `error`, which is kept
    /// (not as `source`: the message already says it) so that `test-fetch` can tell a refused
    /// certificate from plain text on a TLS port.
    #[error("{}", tls::explain_handshake_error(error, host))]
    Tls { host: String, error: io::Error },
    #[error(
        "TLS handshake with {host} timed out: the server may not speak TLS on this port; did you \
         mean encryption = \"starttls\"?"
    )]
    TlsTimeout { host: String, secs: u64 },
    #[error(transparent)]
    Setup(#[from] tls::TlsSetupError),
}

/// Resolves and connects with a deadline, telling DNS failures from refused connections.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let addrs = resolve(host, port, timeout).await?;
    connect_addrs(host, port, &addrs, timeout).await
}

/// The addresses of `host` (the first stage of [`connect_tcp`]); a lookup that outlasts the
/// deadline is [`ConnectError::Timeout`].
pub async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let addrs = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| ConnectError::Timeout {
            host: host.into(),
            port,
            secs: timeout.as_secs(),
        })?
        .map_err(|source| ConnectError::Resolve {
            host: host.into(),
            source,
        })?
        .collect();
    Ok(addrs)
}

/// Connects to the first of `addrs` (already resolved for `host`) that answers. For callers that
/// resolve names themselves, e.g. `detect` asking one particular name server.
pub async fn connect_addrs(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for &addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                // A connection that dies silently (NAT timeout, pulled cable) while we wait in
                // IDLE would otherwise only be noticed when IDLE is renewed; keepalive probes
                // find it within about two minutes.
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(60))
                    .with_interval(Duration::from_secs(15));
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                return Ok(stream);
            }
            Ok(Err(e)) => last_err = e,
            Err(_) => {
                return Err(ConnectError::Timeout {
                    host: host.into(),
                    port,
                    secs: timeout.as_secs(),
                })
            }
        }
    }
    Err(ConnectError::Refused {
        host: host.into(),
        port,
        source: last_err,
    })
}

/// Runs the TLS handshake over an established TCP stream (implicit TLS or after STARTTLS).
pub async fn start_tls(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<MailStream, ConnectError> {
    let name = tls::server_name(host)?;
    let connector = TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(MailStream::Tls(Box::new(stream))),
        Ok(Err(error)) => Err(ConnectError::Tls {
            host: host.into(),
            error,
        }),
        Err(_) => Err(ConnectError::TlsTimeout {
            host: host.into(),
            secs: timeout.as_secs(),
        }),
    }
}

impl MailStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, MailStream::Tls(_))
    }

    /// The TLS version the handshake agreed on; `None` on a plain connection.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            MailStream::Tls(tls) => tls.get_ref().1.protocol_version(),
            MailStream::Plain(_) => None,
        }
    }
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A network library's error and its causes in one line ("error sending request: connection
/// refused"); a cause whose text the line already holds is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
