//! One rustls stack for every protocol (IMAP, POP3 and SMTP): certificates are verified against the
//! system roots plus an optional extra CA file, and the host name is always checked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, SignatureScheme, WantsVerifier};

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
    /// Only for [`recording_client_config`], which builds its verifier at once: the daemon's
    /// configuration accepts an empty root store and refuses every certificate later.
    #[error("no trusted CA certificates ({0}): this machine has no CA bundle")]
    NoTrustedRoots(String),
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

/// The trusted roots: the system's (when the machine has any) plus `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsSetupError> {
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
    Ok(roots)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder(provider: Arc<CryptoProvider>) -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

/// Builds the client configuration: system roots (when the machine has any) plus `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let config = builder(provider())
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configuration of [`client_config`] (same roots, protocol versions and checks), with a
/// verifier that remembers what the server presented and what the check said, so that
/// `test-fetch` can name the certificate it accepted or refused.
pub fn recording_client_config(
    ca_file: Option<&Path>,
) -> Result<(Arc<ClientConfig>, Arc<RecordingVerifier>), TlsSetupError> {
    let provider = provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::NoTrustedRoots(e.to_string()))?;
    let verifier = Arc::new(RecordingVerifier {
        inner,
        seen: Mutex::new(None),
    });
    let config = builder(provider)
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// What the server presented in the last handshake, and the verifier's verdict on it.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The server's certificate first, then the intermediates it sent.
    pub chain: Vec<CertificateDer<'static>>,
    pub verdict: Result<(), rustls::Error>,
}

/// The rustls verifier of [`client_config`], unchanged in what it decides; it only keeps a copy
/// of the certificates it judged.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Presented>>,
}

impl RecordingVerifier {
    /// The last handshake's certificates and verdict; `None` before the server sent any.
    pub fn presented(&self) -> Option<Presented> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
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
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Ok(mut seen) = self.seen.lock() {
            let chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            *seen = Some(Presented {
                chain,
                verdict: verdict.as_ref().map(|_| ()).map_err(Clone::clone),
            });
        }
        verdict
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
