//! The one SMTP transport every automatic reply goes through: a lettre `AsyncSmtpTransport` with
//! a connection pool, built from `[smtp]`.
//!
//! Encryption: `ssl` is implicit TLS (`Tls::Wrapper`, port 465), `starttls` upgrades a plain
//! connection and refuses to send if the server does not offer STARTTLS (`Tls::Required`, 587),
//! `none` is plain text (`Tls::None`, 25). Certificates are checked against the system roots plus
//! `ca_file`, and the host name is always verified.
//!
//! The password is a [`Secret`](crate::secret::Secret); it is handed to lettre only as
//! credentials (whose `Debug` prints nothing) and never appears in an error or a log line.

use std::time::Duration;

use lettre::address::Envelope;
use std::sync::Arc;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{AuthMethod, Encryption, MailProtocol, SmtpConfig};
use crate::oauth::TokenSource;
use crate::secret::Secret;

/// Building the transport failed: a config problem, found before any mail is queued.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("cannot read [smtp] ca_file {path}: {source}")]
    CaFileUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("[smtp] ca_file {path} is not a usable PEM certificate: {reason}")]
    CaFileInvalid { path: String, reason: String },
    #[error("[smtp] TLS setup for {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("[smtp] OAuth 2.0 setup failed: {0}")]
    OAuth(#[from] crate::oauth::OAuthError),
}

/// Why one message could not be delivered. Callers must tell the two apart: a transient failure
/// is retried later, a permanent one never.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The server refused this message for good (5xx to MAIL FROM, RCPT TO or DATA).
    #[error("the SMTP server {server} refused the message permanently: {detail}")]
    Permanent { server: String, detail: String },
    /// Worth another try: 4xx replies, connection/TLS/timeout trouble, and login failures (a
    /// wrong password must not throw away every queued reply; it is fixed in the config).
    #[error("sending through {server} failed for now: {detail}")]
    Transient { server: String, detail: String },
    /// The server rejected our credentials (535). Retried, but only after a long pause for the
    /// whole sender: every attempt is a failed login, and a provider's fail2ban bans the host.
    #[error("the SMTP server {server} rejected the login: {detail}")]
    LoginRejected { server: String, detail: String },
    /// The message in the outbox cannot be sent at all (no valid sender or recipient).
    #[error("the queued message is unusable: {0}")]
    Unusable(String),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent { .. } | SendError::Unusable(_))
    }
}

/// Anything that can deliver a complete RFC 5322 message to one recipient. The outbox sender is
/// generic over this so its retry logic is testable without a server.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send;
}

/// The shared, pooled transport.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port (encryption)`, for messages.
    server: String,
    /// With `auth = "oauth2"`: the token source and a transport built for the current token.
    oauth: Option<Arc<OAuthSmtp>>,
}

/// lettre takes credentials when the transport is built, so a new token means a new transport
/// (and pool); connections of the old pool stay signed in until they close.
struct OAuthSmtp {
    config: SmtpConfig,
    tokens: Arc<TokenSource>,
    current: tokio::sync::Mutex<Option<(Secret, AsyncSmtpTransport<Tokio1Executor>)>>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, SmtpSetupError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| SmtpSetupError::CaFileUnreadable {
            path: shown.clone(),
            source,
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| SmtpSetupError::CaFileInvalid {
            path: shown,
            reason: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| SmtpSetupError::Tls {
        host: config.host.clone(),
        reason: e.to_string(),
    })
}

impl SmtpTransport {
    /// Must be called inside a Tokio runtime: the connection pool starts a task to close idle
    /// connections.
    pub fn new(config: &SmtpConfig) -> Result<SmtpTransport, SmtpSetupError> {
        let (inner, server) = build(config, login(config, None))?;
        Ok(SmtpTransport {
            inner,
            server,
            oauth: None,
        })
    }

    /// The transport for `[smtp]`: with `auth = "oauth2"` it signs in with tokens kept beside
    /// `store_path` (see [`crate::oauth`]).
    pub fn for_config(
        config: &SmtpConfig,
        store_path: &std::path::Path,
    ) -> Result<SmtpTransport, SmtpSetupError> {
        let (AuthMethod::Oauth2, Some(o)) = (config.auth, &config.oauth2) else {
            return SmtpTransport::new(config);
        };
        let tokens = TokenSource::new("smtp", o, MailProtocol::Smtp, store_path, config.timeout)?;
        let (inner, server) = build(config, None)?;
        Ok(SmtpTransport {
            inner,
            server,
            oauth: Some(Arc::new(OAuthSmtp {
                config: config.clone(),
                tokens: Arc::new(tokens),
                current: tokio::sync::Mutex::new(None),
            })),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The transport signed in with `token`, built anew when the token changed.
    async fn with_token(
        &self,
        oauth: &OAuthSmtp,
        token: &Secret,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let mut current = oauth.current.lock().await;
        if let Some((t, transport)) = current.as_ref() {
            if t == token {
                return Ok(transport.clone());
            }
        }
        let (transport, _) =
            build(&oauth.config, login(&oauth.config, Some(token))).map_err(|e| {
                SendError::Transient {
                    server: self.server.clone(),
                    detail: e.to_string(),
                }
            })?;
        *current = Some((token.clone(), transport.clone()));
        Ok(transport)
    }
}

/// How `[smtp]` is encrypted, as lettre takes it: implicit TLS, STARTTLS that must succeed, or
/// none.
pub fn tls(config: &SmtpConfig) -> Result<Tls, SmtpSetupError> {
    Ok(match config.encryption {
        Encryption::Ssl => Tls::Wrapper(tls_parameters(config)?),
        Encryption::Starttls => Tls::Required(tls_parameters(config)?),
        Encryption::None => Tls::None,
    })
}

/// The login the daemon offers the SMTP server: `[smtp] user` with the mechanisms tried in
/// order. The credentials' `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct SmtpLogin {
    pub user: String,
    pub credentials: Credentials,
    pub mechanisms: Vec<Mechanism>,
}

/// The login for `[smtp]`: XOAUTH2 with `token`, else the password by PLAIN or LOGIN (lettre's
/// default order); none without a user or without a secret.
pub fn login(config: &SmtpConfig, token: Option<&Secret>) -> Option<SmtpLogin> {
    let user = config.user.clone()?;
    let (secret, mechanisms) = match token {
        Some(token) => (token, vec![Mechanism::Xoauth2]),
        None => (
            config.resolved_password.as_ref()?,
            vec![Mechanism::Plain, Mechanism::Login],
        ),
    };
    Some(SmtpLogin {
        credentials: Credentials::new(user.clone(), secret.expose().to_string()),
        user,
        mechanisms,
    })
}

/// Builds the pooled lettre transport, signing in with `login`.
fn build(
    config: &SmtpConfig,
    login: Option<SmtpLogin>,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, String), SmtpSetupError> {
    let port = config.port();
    let mode = match config.encryption {
        Encryption::Ssl => "ssl",
        Encryption::Starttls => "starttls",
        Encryption::None => "none",
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
        .port(port)
        .tls(tls(config)?)
        .timeout(Some(config.timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(4)
                .idle_timeout(Duration::from_secs(60)),
        );
    if let Some(login) = login {
        builder = builder
            .credentials(login.credentials)
            .authentication(login.mechanisms);
    }
    Ok((builder.build(), format!("{}:{port} ({mode})", config.host)))
}

/// SMTP reply codes that mean "the login or the session is wrong", not "this message is wrong":
/// they are retried (after the admin fixes the config) instead of failing every queued reply.
const SESSION_CODES: &[&str] = &["530", "534", "538"];
/// "Authentication credentials invalid" (RFC 4954).
const LOGIN_REJECTED: &str = "535";

/// Sorts a lettre error into permanent/transient, with words an admin can act on.
pub fn classify(server: &str, err: &lettre::transport::smtp::Error) -> SendError {
    let code = err.status().map(|c| c.to_string());
    let text = err.to_string();
    if err.is_permanent() {
        if code.as_deref() == Some(LOGIN_REJECTED) {
            return SendError::LoginRejected {
                server: server.into(),
                detail: format!("{text}; check [smtp] user and password"),
            };
        }
        if code.as_deref().is_some_and(|c| SESSION_CODES.contains(&c)) {
            return SendError::Transient {
                server: server.into(),
                detail: format!(
                    "login refused ({text}); check [smtp] user and password (or whether the server requires encryption)"
                ),
            };
        }
        return SendError::Permanent {
            server: server.into(),
            detail: text,
        };
    }
    let hint = if text.contains("STARTTLS is not supported") {
        "; the server does not offer STARTTLS: set [smtp] encryption = \"ssl\" (port 465) if it speaks implicit TLS; mail2ticket never falls back to plain text"
    } else if err.is_tls() {
        "; check [smtp] ca_file and that host matches the server certificate"
    } else if err.is_timeout() {
        "; the server did not answer within [smtp] timeout"
    } else if err.is_transient() {
        ""
    } else {
        "; is the SMTP server reachable? check [smtp] host, port and encryption"
    };
    SendError::Transient {
        server: server.into(),
        detail: format!("{}{hint}", crate::net::error_chain(err)),
    }
}

impl Deliver for SmtpTransport {
    async fn deliver(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<(), SendError> {
        let from: Address = envelope_from.parse().map_err(|e| {
            SendError::Unusable(format!("sender address {envelope_from:?} is invalid: {e}"))
        })?;
        let to: Address = recipient.parse().map_err(|e| {
            SendError::Unusable(format!("recipient address {recipient:?} is invalid: {e}"))
        })?;
        let envelope = Envelope::new(Some(from), vec![to])
            .map_err(|e| SendError::Unusable(format!("no valid envelope: {e}")))?;
        let Some(oauth) = &self.oauth else {
            return self
                .inner
                .send_raw(&envelope, message)
                .await
                .map(|_| ())
                .map_err(|e| classify(&self.server, &e));
        };
        let user = oauth.config.user.clone().unwrap_or_default();
        let sent = crate::oauth::login::sign_in(
            &oauth.tokens,
            &self.server,
            &user,
            |token| {
                let envelope = envelope.clone();
                async move {
                    let transport = self.with_token(oauth, &token).await?;
                    transport
                        .send_raw(&envelope, message)
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(&self.server, &e))
                }
            },
            |e: &SendError| match e {
                SendError::Transient { detail, .. } if detail.starts_with("login refused") => {
                    Some(detail.clone())
                }
                _ => None,
            },
        )
        .await;
        // A token problem is never the message's fault: the reply stays queued and is retried.
        sent.map_err(|e| match e {
            crate::oauth::login::SignInError::Login(send) => send,
            crate::oauth::login::SignInError::OAuth(other) => SendError::Transient {
                server: self.server.clone(),
                detail: format!("{other:#}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn config(encryption: Encryption) -> SmtpConfig {
        SmtpConfig {
            protocol: crate::config::SmtpProtocol::Smtp,
            save_to_sent_items: true,
            host: "localhost".into(),
            port: None,
            encryption,
            user: Some("u@example.test".into()),
            password: None,
            password_file: None,
            password_env: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
            message_id_domain: None,
            auth: crate::config::AuthMethod::Password,
            oauth2: None,
            resolved_password: Some(Secret::new("hunter2")),
        }
    }

    #[tokio::test]
    async fn builds_every_encryption_and_never_shows_the_password() {
        for (enc, port) in [
            (Encryption::Ssl, 465),
            (Encryption::Starttls, 587),
            (Encryption::None, 25),
        ] {
            let t = SmtpTransport::new(&config(enc)).unwrap();
            assert!(t.server().contains(&format!(":{port}")), "{}", t.server());
            assert!(!format!("{t:?}").contains("hunter2"));
        }
    }

    #[tokio::test]
    async fn unreadable_ca_file_is_named() {
        let mut c = config(Encryption::Starttls);
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = SmtpTransport::new(&c).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    /// A one-connection SMTP server: `ehlo` is its EHLO answer, `answers` maps a command prefix
    /// to its reply; everything else gets 250. Returns the port and the commands it received.
    async fn fake_server(
        ehlo: &'static str,
        answers: &'static [(&'static str, &'static str)],
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut seen = Vec::new();
            w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if in_data {
                    if line == "." {
                        in_data = false;
                        w.write_all(b"250 queued\r\n").await.unwrap();
                    }
                    continue;
                }
                seen.push(line.clone());
                let upper = line.to_ascii_uppercase();
                let reply = if upper.starts_with("EHLO") {
                    ehlo.to_string()
                } else if let Some((_, a)) = answers.iter().find(|(p, _)| upper.starts_with(p)) {
                    a.to_string()
                } else if upper.starts_with("DATA") {
                    in_data = true;
                    "354 go on".into()
                } else if upper.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    break;
                } else {
                    "250 ok".into()
                };
                if w.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            seen
        });
        (port, task)
    }

    fn local(port: u16, encryption: Encryption, user: bool) -> SmtpTransport {
        let mut c = config(encryption);
        c.host = "127.0.0.1".into();
        c.port = Some(port);
        if !user {
            c.user = None;
        }
        SmtpTransport::new(&c).unwrap()
    }

    const MSG: &[u8] = b"From: a@example.test\r\nSubject: x\r\n\r\nx\r\n";

    #[tokio::test]
    async fn starttls_not_offered_is_refused_before_any_mail_command() {
        let (port, server) = fake_server("250-fake\r\n250 8BITMIME", &[]).await;
        let t = local(port, Encryption::Starttls, true);
        let err = t
            .deliver("a@example.test", "b@example.test", MSG)
            .await
            .unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.to_string().contains("STARTTLS"), "{err}");
        drop(t);
        let seen = server.await.unwrap();
        assert!(
            !seen
                .iter()
                .any(|l| l.starts_with("MAIL") || l.starts_with("AUTH")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn rejected_recipient_is_permanent_busy_server_transient() {
        let (port, _s) = fake_server("250 fake", &[("RCPT", "550 5.1.1 no such user")]).await;
        let err = local(port, Encryption::None, false)
            .deliver("a@example.test", "b@example.test", MSG)
            .await
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(err.to_string().contains("550"), "{err}");

        let (port, _s) = fake_server("250 fake", &[("MAIL", "451 4.3.0 try later")]).await;
        let err = local(port, Encryption::None, false)
            .deliver("a@example.test", "b@example.test", MSG)
            .await
            .unwrap_err();
        assert!(!err.is_permanent(), "{err}");
    }

    #[tokio::test]
    async fn a_refused_login_is_retried_and_never_shows_the_password() {
        let (port, _s) = fake_server(
            "250-fake\r\n250 AUTH PLAIN LOGIN",
            &[("AUTH", "535 5.7.8 authentication failed")],
        )
        .await;
        let err = local(port, Encryption::None, true)
            .deliver("a@example.test", "b@example.test", MSG)
            .await
            .unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        let text = err.to_string();
        assert!(text.contains("user and password"), "{text}");
        assert!(!text.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn accepted_message_is_delivered() {
        let (port, server) = fake_server("250 fake", &[]).await;
        let t = local(port, Encryption::None, false);
        t.deliver("a@example.test", "b@example.test", MSG)
            .await
            .unwrap();
        drop(t);
        // Dropping the transport closes the pooled connection, which ends the fake server.
        let seen = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the pooled connection closes with the transport")
            .unwrap();
        assert!(
            seen.iter().any(|l| l == "MAIL FROM:<a@example.test>"),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|l| l == "RCPT TO:<b@example.test>"),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        // A port nothing listens on: bind, learn the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = config(Encryption::None);
        c.host = "127.0.0.1".into();
        c.port = Some(port);
        c.user = None;
        let t = SmtpTransport::new(&c).unwrap();
        let err = t
            .deliver(
                "a@example.test",
                "b@example.test",
                b"Subject: x\r\n\r\nx\r\n",
            )
            .await
            .unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}
