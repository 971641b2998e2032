//! What every protocol's first steps share: the clients' own stages of [`crate::net`] (resolve,
//! TCP connect, TLS handshake), told in words an admin can act on. The handshake runs with
//! [`tls::recording_client_config`], the daemon's trust with a verifier that remembers the
//! certificate, so a refused one can be named by its issuer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::cert::CertInfo;
use super::{Fail, Report};
use crate::config::{smtp_default_port, Encryption, Protocol};
use crate::net::{self, ConnectError};
use crate::tls::{self, Presented, RecordingVerifier, TlsSetupError};

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

    /// The command that upgrades a plain connection to TLS.
    pub fn upgrade(self) -> &'static str {
        match self {
            Service::Pop3 => "STLS",
            _ => "STARTTLS",
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

/// Step "resolve host": the addresses of `host`, by the clients' own resolver.
pub async fn resolve(
    service: Service,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(Vec<SocketAddr>, String), Fail> {
    let addrs = net::resolve(host, port, timeout)
        .await
        .map_err(|e| match e {
            ConnectError::Timeout { secs, .. } => Fail::hint(
                format!("resolving {host} timed out after {secs}s"),
                format!("check {} and the DNS server", service.key("host")),
            ),
            ConnectError::Resolve { source, .. } => Fail::hint(
                format!("host not found: {host} ({source})"),
                format!("check {}", service.key("host")),
            ),
            other => Fail::new(other.to_string()),
        })?;
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

/// Step "connect": the clients' TCP connect to the first address that answers.
pub async fn connect(
    service: Service,
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, String), Fail> {
    let hint = || {
        format!(
            "check {} and the firewall; {}",
            service.key("port"),
            service.default_ports_text()
        )
    };
    match net::connect_addrs(host, port, addrs, timeout).await {
        Ok(tcp) => {
            let peer = tcp
                .peer_addr()
                .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
            Ok((tcp, format!("connected to {peer}")))
        }
        Err(ConnectError::Timeout { secs, .. }) => Err(Fail::hint(
            format!("nothing answers on {host}:{port}: connecting timed out after {secs}s"),
            hint(),
        )),
        Err(ConnectError::Refused { source, .. }) => Err(Fail::hint(
            format!("nothing answers on {host}:{port} ({source})"),
            hint(),
        )),
        Err(other) => Err(Fail::new(other.to_string())),
    }
}

/// Steps "resolve host" and "connect": a TCP connection to `host`, or `None` after the failed
/// step.
pub async fn tcp_steps(
    service: Service,
    host: &str,
    port: u16,
    timeout: Duration,
    report: &mut Report,
) -> Option<TcpStream> {
    let addrs = report
        .run("resolve host", resolve(service, host, port, timeout))
        .await?;
    report
        .run("connect", connect(service, host, port, &addrs, timeout))
        .await
}

/// The daemon's TLS configuration for `ca_file`, recording what the server presents.
pub fn recording_tls(
    service: Service,
    ca_file: Option<&Path>,
) -> Result<(Arc<ClientConfig>, Arc<RecordingVerifier>), Fail> {
    tls::recording_client_config(ca_file).map_err(|e| match e {
        TlsSetupError::NoTrustedRoots(_) => Fail::hint(
            e.to_string(),
            format!(
                "install the system CA certificates or set {}",
                service.key("ca_file")
            ),
        ),
        _ => Fail::hint(
            e.to_string(),
            format!(
                "fix {}: a PEM file with the CA certificate",
                service.key("ca_file")
            ),
        ),
    })
}

/// The certificates a server presented, as a report names them.
pub fn described(chain: &[impl AsRef<[u8]>]) -> Vec<CertInfo> {
    chain
        .iter()
        .filter_map(|c| CertInfo::parse(c.as_ref()))
        .collect()
}

/// What a passed TLS step shows: "TLS 1.3, certificate CN=x for host issued by CN=y, valid
/// until ...".
pub fn tls_detail(version: &str, host: &str, chain: &[CertInfo]) -> String {
    let mut detail = version.to_string();
    if let Some(leaf) = chain.first() {
        detail.push_str(&format!(
            ", certificate {} for {host} issued by {}, {}",
            leaf.subject,
            leaf.issuer,
            leaf.expiry_text()
        ));
        if chain.len() > 1 {
            detail.push_str(&format!(", chain of {}", chain.len()));
        }
    }
    detail
}

/// [`tls_detail`] after the clients' handshake (`version` as it negotiated), with what
/// `verifier` saw.
pub fn handshake_detail(
    version: Option<rustls::ProtocolVersion>,
    host: &str,
    verifier: &RecordingVerifier,
) -> String {
    let version = match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    tls_detail(&version, host, &seen(verifier))
}

fn seen(verifier: &RecordingVerifier) -> Vec<CertInfo> {
    verifier
        .presented()
        .map(|Presented { chain, .. }| described(&chain))
        .unwrap_or_default()
}

/// Where a handshake failed and with what it was tried, to explain the failure.
pub struct Handshake<'a> {
    pub service: Service,
    pub host: &'a str,
    pub encryption: Encryption,
    pub ca_file: Option<&'a Path>,
}

impl Handshake<'_> {
    /// The explanation when `err` is a failure of the TLS handshake itself (not of the
    /// protocol around it), with the certificates `verifier` saw.
    pub fn failed(&self, err: &ConnectError, verifier: &RecordingVerifier) -> Option<Fail> {
        match err {
            ConnectError::Tls { error, .. } => {
                // The verifier's own verdict, when it refused the certificate; else whatever
                // broke the handshake (plain text on a TLS port, a reset ...).
                let presented = verifier.presented();
                let verdict = presented.as_ref().and_then(|p| p.verdict.as_ref().err());
                Some(self.explain(error, verdict, &seen(verifier)))
            }
            ConnectError::TlsTimeout { secs, .. } => Some(Fail::hint(
                format!(
                    "the TLS handshake with {} timed out after {secs}s: the server did not speak \
                     TLS on this port",
                    self.host
                ),
                self.service.tls_mismatch_hint(self.encryption),
            )),
            ConnectError::Setup(e) => Some(Fail::hint(
                e.to_string(),
                format!("check {}", self.service.key("host")),
            )),
            _ => None,
        }
    }

    /// Why the handshake failed (`err`, or the certificate verifier's `verdict`), naming the
    /// certificates the server presented (`seen`).
    pub fn explain(
        &self,
        err: &io::Error,
        verdict: Option<&rustls::Error>,
        seen: &[CertInfo],
    ) -> Fail {
        let (service, host, encryption) = (self.service, self.host, self.encryption);
        let inner = verdict.or_else(|| {
            err.get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
        });
        let leaf = seen.first();
        let issuer = leaf
            .map(|c| c.issuer.clone())
            .unwrap_or_else(|| "unknown".into());
        let subject = leaf.map(|c| c.subject.as_str()).unwrap_or("unknown");
        match inner {
            Some(rustls::Error::InvalidCertificate(cert_err)) => {
                use rustls::CertificateError as C;
                match cert_err {
                    C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus => {
                        let current = match self.ca_file {
                            Some(p) => {
                                format!(" (the current one, {}, did not sign it)", p.display())
                            }
                            None => String::new(),
                        };
                        Fail::hint(
                            format!(
                                "certificate not trusted: issuer {issuer} (subject {subject}) is \
                                 not a known authority"
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
                            "certificate {subject} (issuer {issuer}) is not valid for the name \
                             {host}"
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
                        "the server closed the connection during the TLS handshake: it did not \
                         speak TLS on this port ({err})"
                    ),
                    service.tls_mismatch_hint(encryption),
                )
            }
            _ => Fail::new(tls::explain_handshake_error(err, host)),
        }
    }
}

/// The failure when a plain connection yields no greeting (`what` happened instead): the usual
/// cause is a client speaking plain text to an implicit-TLS port (the server waits for our TLS
/// hello).
pub fn no_greeting(
    service: Service,
    host: &str,
    port: u16,
    encryption: Encryption,
    what: &str,
) -> Fail {
    Fail::hint(
        format!(
            "{what} on {host}:{port}: the server did not speak plain {} on this port (it may \
             expect TLS from the first byte)",
            service.label()
        ),
        service.tls_mismatch_hint(encryption),
    )
}

/// Not encrypted: said in the TLS step's place.
pub const PLAIN_WARNING: &str =
    "not encrypted (encryption = \"none\"): the password and every mail cross the network in clear";
