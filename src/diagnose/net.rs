//! The steps every protocol shares: resolve the host, connect TCP, the TLS handshake (with the
//! certificate shown on success and its issuer named on failure), and reading reply lines
//! byte-wise on a stream that is handed to a protocol client afterwards.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cert::CertInfo;
use super::Fail;
use crate::config::{smtp_default_port, Encryption, Protocol};
use crate::net::MailStream;
use crate::tls;

/// Which settings a hint names: an account's keys, or the `[smtp]` section's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Imap,
    Pop3,
    Smtp,
}

impl Service {
    pub fn label(self) -> &'static str {
        match self {
            Service::Imap => "IMAP",
            Service::Pop3 => "POP3",
            Service::Smtp => "SMTP",
        }
    }

    /// A setting as the admin writes it: `port`, or `[smtp] port`.
    pub fn key(self, key: &str) -> String {
        match self {
            Service::Smtp => format!("[smtp] `{key}`"),
            _ => format!("`{key}`"),
        }
    }

    /// The usual port for an encryption mode.
    pub fn default_port(self, encryption: Encryption) -> u16 {
        match self {
            Service::Imap => Protocol::Imap.default_port(encryption),
            Service::Pop3 => Protocol::Pop3.default_port(encryption),
            Service::Smtp => smtp_default_port(encryption),
        }
    }

    /// "the usual ports for IMAP: 993 with encryption = "ssl", 143 with "starttls" or "none"".
    pub fn default_ports_text(self) -> String {
        let label = self.label();
        match self {
            Service::Smtp => format!(
                "the usual ports for {label}: 465 with encryption = \"ssl\", 587 with \"starttls\", \
                 25 with \"none\""
            ),
            _ => format!(
                "the usual ports for {label}: {} with encryption = \"ssl\", {} with \"starttls\" \
                 or \"none\"",
                self.default_port(Encryption::Ssl),
                self.default_port(Encryption::Starttls)
            ),
        }
    }

    /// The hint when a plain-text greeting arrives where a TLS handshake was expected, or none
    /// arrives where one was.
    pub fn tls_mismatch_hint(self, encryption: Encryption) -> String {
        let ssl = self.default_port(Encryption::Ssl);
        let plain = self.default_port(Encryption::Starttls);
        match encryption {
            Encryption::Ssl => format!(
                "did you mean encryption = \"starttls\"? (or the implicit-TLS port, usually {ssl})"
            ),
            _ => format!(
                "did you mean encryption = \"ssl\"? (or the STARTTLS port, usually {plain})"
            ),
        }
    }
}

/// Step "resolve host": the addresses of `host`.
pub async fn resolve(
    service: Service,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(Vec<SocketAddr>, String), Fail> {
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<SocketAddr> = match lookup {
        Err(_) => {
            return Err(Fail::hint(
                format!("resolving {host} timed out after {}s", timeout.as_secs()),
                format!("check {} and the DNS server", service.key("host")),
            ))
        }
        Ok(Err(e)) => {
            return Err(Fail::hint(
                format!("host not found: {host} ({e})"),
                format!("check {}", service.key("host")),
            ))
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(Fail::hint(
            format!("host not found: {host} has no address"),
            format!("check {}", service.key("host")),
        ));
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in &addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    Ok((addrs, shown.join(", ")))
}

/// Step "connect": a TCP connection to the first address that answers.
pub async fn connect(
    service: Service,
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, String), Fail> {
    let hint = format!(
        "check {} and the firewall; {}",
        service.key("port"),
        service.default_ports_text()
    );
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, format!("connected to {addr}")));
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                return Err(Fail::hint(
                    format!(
                    "nothing answers on {host}:{port}: connecting to {addr} timed out after {}s",
                    timeout.as_secs()
                ),
                    hint,
                ))
            }
        }
    }
    let cause = last
        .map(|e| e.to_string())
        .unwrap_or_else(|| "no address".into());
    Err(Fail::hint(
        format!("nothing answers on {host}:{port} ({cause})"),
        hint,
    ))
}

/// Remembers the certificates the server presented, so a rejected one can be described.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The same trust as the daemon ([`crate::tls::client_config`]: system roots plus `ca_file`),
/// with a verifier that records what the server presented.
fn recording_config(
    service: Service,
    ca_file: Option<&Path>,
) -> Result<(Arc<ClientConfig>, Arc<RecordingVerifier>), Fail> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let certs = tls::read_ca_file(path).map_err(|e| {
            Fail::hint(
                e.to_string(),
                format!(
                    "fix {}: a PEM file with the CA certificate",
                    service.key("ca_file")
                ),
            )
        })?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Fail::hint(
                    format!("ca_file {}: certificate rejected: {e}", path.display()),
                    format!("fix {}", service.key("ca_file")),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| {
            Fail::hint(
                format!("no trusted CA certificates ({e}): this machine has no CA bundle"),
                format!(
                    "install the system CA certificates or set {}",
                    service.key("ca_file")
                ),
            )
        })?;
    let verifier = Arc::new(RecordingVerifier {
        inner,
        seen: Mutex::new(Vec::new()),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// The TLS handshake over `tcp` (implicit TLS, or after STARTTLS/STLS). On success the detail
/// names protocol version, certificate subject, issuer and expiry.
pub async fn handshake(
    service: Service,
    tcp: TcpStream,
    host: &str,
    encryption: Encryption,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<(MailStream, String), Fail> {
    let (config, verifier) = recording_config(service, ca_file)?;
    let name = tls::server_name(host)
        .map_err(|e| Fail::hint(e.to_string(), format!("check {}", service.key("host"))))?;
    let connector = TlsConnector::from(config);
    let result = tokio::time::timeout(timeout, connector.connect(name, tcp)).await;
    let seen: Vec<CertInfo> = verifier
        .seen
        .lock()
        .map(|s| s.iter().filter_map(|c| CertInfo::parse(c)).collect())
        .unwrap_or_default();
    let stream = match result {
        Err(_) => {
            return Err(Fail::hint(
                format!(
                    "the TLS handshake with {host} timed out after {}s: the server did not speak \
                     TLS on this port",
                    timeout.as_secs()
                ),
                service.tls_mismatch_hint(encryption),
            ))
        }
        Ok(Err(e)) => return Err(explain(service, &e, host, encryption, ca_file, &seen)),
        Ok(Ok(stream)) => stream,
    };
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    let mut detail = version;
    if let Some(leaf) = seen.first() {
        detail.push_str(&format!(
            ", certificate {} for {host} issued by {}, {}",
            leaf.subject,
            leaf.issuer,
            leaf.expiry_text()
        ));
        if seen.len() > 1 {
            detail.push_str(&format!(", chain of {}", seen.len()));
        }
    }
    Ok((MailStream::Tls(Box::new(stream)), detail))
}

fn explain(
    service: Service,
    err: &io::Error,
    host: &str,
    encryption: Encryption,
    ca_file: Option<&Path>,
    seen: &[CertInfo],
) -> Fail {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let leaf = seen.first();
    let issuer = leaf
        .map(|c| c.issuer.clone())
        .unwrap_or_else(|| "unknown".into());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert_err)) => {
            use rustls::CertificateError as C;
            match cert_err {
                C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus => {
                    let current = match ca_file {
                        Some(p) => format!(" (the current one, {}, did not sign it)", p.display()),
                        None => String::new(),
                    };
                    Fail::hint(
                        format!(
                            "certificate not trusted: issuer {issuer} (subject {}) is not a known \
                             authority",
                            leaf.map(|c| c.subject.as_str()).unwrap_or("unknown")
                        ),
                        format!(
                            "set {} to the PEM file of the CA that signed it{current}",
                            service.key("ca_file")
                        ),
                    )
                }
                C::Expired | C::ExpiredContext { .. } => Fail::hint(
                    format!(
                        "certificate of {host} (issuer {issuer}) {}",
                        leaf.map(|c| c.expiry_text())
                            .unwrap_or_else(|| "has expired".into())
                    ),
                    "renew the certificate on the server",
                ),
                C::NotValidYet | C::NotValidYetContext { .. } => Fail::hint(
                    format!("certificate of {host} is not valid yet (issuer {issuer})"),
                    "check the clock of this machine and of the server",
                ),
                C::NotValidForName | C::NotValidForNameContext { .. } => Fail::hint(
                    format!(
                        "certificate {} (issuer {issuer}) is not valid for the name {host}",
                        leaf.map(|c| c.subject.as_str()).unwrap_or("unknown")
                    ),
                    format!(
                        "use in {} a name the certificate was issued for",
                        service.key("host")
                    ),
                ),
                other => Fail::new(format!(
                    "certificate of {host} rejected: {other:?} (issuer {issuer})"
                )),
            }
        }
        Some(rustls::Error::InvalidMessage(_))
        | Some(rustls::Error::InappropriateMessage { .. }) => Fail::hint(
            format!("the server did not speak TLS on this port ({host}: {err})"),
            service.tls_mismatch_hint(encryption),
        ),
        None if err.kind() == io::ErrorKind::UnexpectedEof
            || err.kind() == io::ErrorKind::ConnectionReset =>
        {
            Fail::hint(
                format!(
                    "the server closed the connection during the TLS handshake: it did not speak \
                     TLS on this port ({err})"
                ),
                service.tls_mismatch_hint(encryption),
            )
        }
        _ => Fail::new(tls::explain_handshake_error(err, host)),
    }
}

/// Why a reply line could not be read.
#[derive(Debug)]
pub enum LineError {
    Timeout,
    Closed,
    Io(io::Error),
}

/// Reads one line byte-wise, so that nothing after it is consumed: the stream is handed to a
/// protocol client afterwards, or upgraded to TLS.
/// Writes one protocol line (CRLF added) before TLS or a client takes over; a timeout names
/// `setting`, the config key that raises it.
pub async fn write_line(
    stream: &mut MailStream,
    line: &str,
    timeout: Duration,
    setting: &str,
) -> Result<(), Fail> {
    use tokio::io::AsyncWriteExt;
    let write = async {
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Fail::new(format!("sending {line} failed: {e}"))),
        Err(_) => Err(Fail::hint(
            format!("sending {line} timed out after {}s", timeout.as_secs()),
            format!("check the server, or raise {setting}"),
        )),
    }
}

pub async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<String, LineError> {
    let read = async {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = stream.read(&mut byte).await.map_err(LineError::Io)?;
            if n == 0 {
                return Err(LineError::Closed);
            }
            line.push(byte[0]);
            if byte[0] == b'\n' || line.len() > 8192 {
                return Ok(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| LineError::Timeout)?
}

/// The failure when a plain connection yields no greeting: the usual cause is a client speaking
/// plain text to an implicit-TLS port (the server waits for our TLS hello).
pub fn no_greeting(
    service: Service,
    host: &str,
    port: u16,
    encryption: Encryption,
    err: LineError,
    timeout: Duration,
) -> Fail {
    let what = match err {
        LineError::Timeout => format!("no greeting within {}s", timeout.as_secs()),
        LineError::Closed => "the server closed the connection before greeting".into(),
        LineError::Io(e) => format!("reading the greeting failed ({e})"),
    };
    Fail::hint(
        format!(
            "{what} on {host}:{port}: the server did not speak plain {} on this port (it may \
             expect TLS from the first byte)",
            service.label()
        ),
        service.tls_mismatch_hint(encryption),
    )
}
