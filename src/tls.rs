//! One rustls stack for every protocol (IMAP, POP3 and SMTP): certificates are verified against the
//! system roots plus an optional extra CA file, and the host name is always checked.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read ca_file {path}: {source}")]
    CaFileUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("ca_file {path} holds no PEM certificate")]
    CaFileEmpty { path: String },
    #[error("ca_file {path}: certificate rejected: {reason}")]
    CaFileInvalid { path: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    BadServerName(String),
}

/// Reads the PEM certificates of `ca_file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::CaFileUnreadable {
        path: shown.clone(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::CaFileInvalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::CaFileEmpty { path: shown });
    }
    Ok(certs)
}

/// Builds the client configuration: system roots (when the machine has any) plus `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    // A machine without a system bundle still works with an explicit ca_file, so errors
    // loading single system certificates are not fatal.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::CaFileInvalid {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsSetupError::BadServerName(host.into()))
}

/// Turns a rustls handshake error into words an admin can act on.
pub fn explain_handshake_error(err: &std::io::Error, host: &str) -> String {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert_err)) => {
            use rustls::CertificateError as C;
            match cert_err {
                C::UnknownIssuer | C::BadSignature => format!(
                    "certificate of {host} not trusted ({cert_err:?}): its issuer is not a known \
                     authority; set `ca_file` to the CA that signed it"
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    format!("certificate of {host} has expired: renew it on the server")
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "certificate is not valid for the name {host}: use the host name the \
                     certificate was issued for in `host`"
                ),
                other => format!("certificate of {host} rejected: {other:?}"),
            }
        }
        Some(rustls::Error::InvalidMessage(_)) => format!(
            "the server {host} did not speak TLS on this port: did you mean encryption = \
             \"starttls\" (or the implicit-TLS port for \"ssl\")?"
        ),
        Some(other) => format!("TLS handshake with {host} failed: {other}"),
        None => {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                format!(
                    "the server {host} closed the connection during the TLS handshake: it may not \
                     speak TLS on this port; did you mean encryption = \"starttls\"?"
                )
            } else {
                format!("TLS handshake with {host} failed: {err}")
            }
        }
    }
}
