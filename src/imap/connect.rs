//! Connects and logs in. STARTTLS is negotiated by hand before async-imap takes the stream, so
//! that a server that does not offer STARTTLS is refused before any password is sent.

use std::sync::Arc;
use std::time::Duration;

use async_imap::Session;
use rustls::ClientConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{AccountConfig, Encryption};
use crate::net::{self, ConnectError, MailStream};

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{host} does not offer STARTTLS; refusing to log in without encryption (use encryption = \"ssl\" with the implicit-TLS port, or \"none\" if you really mean it)")]
    StartTlsNotOffered { host: String },
    #[error("login rejected for {user}: check `user` and `password` (server said: {server})")]
    AuthRejected { user: String, server: String },
    #[error("IMAP {operation} timed out after {secs}s")]
    Timeout { operation: String, secs: u64 },
    #[error("IMAP {operation} failed: {source}")]
    Imap {
        operation: String,
        source: async_imap::error::Error,
    },
    /// The connection failed (reset, closed, I/O error): nothing the server said was wrong.
    #[error("the connection to the IMAP server failed during {operation}: {reason}")]
    Connection { operation: String, reason: String },
    /// A NO or BAD answer: the server understood and declined. The words are the server's.
    #[error("the IMAP server refused {operation}: {server}")]
    Refused { operation: String, server: String },
    /// A protocol violation only (a reply that breaks the protocol), never a refusal.
    #[error("IMAP server sent an unexpected reply to {operation}: {reply}")]
    Protocol { operation: String, reply: String },
    #[error("folder {folder:?} cannot be opened: {reason}; check `folder`")]
    FolderMissing { folder: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ImapError {
    /// Errors that retrying soon will not fix (the admin must change something).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ImapError::StartTlsNotOffered { .. } | ImapError::AuthRejected { .. }
        )
    }
}

impl From<ImapError> for crate::source::SourceError {
    fn from(e: ImapError) -> Self {
        use crate::source::ErrorKind;
        let kind = match &e {
            ImapError::Store(store) => ErrorKind::of_store(store),
            ImapError::Connect(_) => ErrorKind::Connect,
            ImapError::StartTlsNotOffered { .. } => ErrorKind::Tls,
            ImapError::AuthRejected { server, .. } => ErrorKind::LoginRejected {
                server_said: server.clone(),
            },
            ImapError::Timeout { .. } => ErrorKind::Timeout,
            ImapError::Imap { .. } | ImapError::Protocol { .. } => ErrorKind::Protocol,
            ImapError::Refused { .. } => ErrorKind::Refused,
            ImapError::Connection { .. } => ErrorKind::Connection,
            ImapError::FolderMissing { .. } => ErrorKind::Folder,
        };
        crate::source::SourceError::new(kind, e)
    }
}

/// LOGIN failures that say nothing about the password (RFC 5530 response codes).
const TEMPORARY_LOGIN_CODES: &[&str] = &["[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]"];

pub struct ImapConnection {
    pub session: Session<MailStream>,
    pub capabilities: Vec<String>,
    /// The server's separator and personal prefix: configured folder names map through it.
    pub hierarchy: super::names::Hierarchy,
    pub timeout: Duration,
}

impl ImapConnection {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(capability))
    }
}

/// Runs `fut` with the per-operation deadline, mapping both failure kinds to `ImapError`.
pub async fn timed<T>(
    timeout: Duration,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
            Err(ImapError::Refused {
                operation: operation.into(),
                server: server_words(&text),
            })
        }
        Ok(Err(source)) => Err(ImapError::Imap {
            operation: operation.into(),
            source,
        }),
        Err(_) => Err(ImapError::Timeout {
            operation: operation.into(),
            secs: timeout.as_secs(),
        }),
    }
}

pub async fn connect(
    account: &AccountConfig,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<ImapConnection, ImapError> {
    connect_with(account, tls, timeout, None).await
}

/// Connects and logs in with the password, or with `token` by SASL (see [`super::oauth`]).
pub async fn connect_with(
    account: &AccountConfig,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    token: Option<&crate::secret::Secret>,
) -> Result<ImapConnection, ImapError> {
    let host = account.host.as_str();
    let tcp = net::connect_tcp(host, account.port(), timeout).await?;
    let stream = match account.encryption {
        Encryption::Ssl => {
            let mut tls_stream = net::start_tls(tcp, host, tls, timeout).await?;
            read_greeting(&mut tls_stream, timeout).await?;
            tls_stream
        }
        Encryption::Starttls => {
            let tcp = negotiate_starttls(tcp, host, timeout).await?;
            net::start_tls(tcp, host, tls, timeout).await?
        }
        Encryption::None => {
            let mut plain = MailStream::Plain(tcp);
            read_greeting(&mut plain, timeout).await?;
            plain
        }
    };
    let mut session = match token {
        Some(token) => {
            super::oauth::authenticate(stream, account, token, timeout)
                .await?
                .0
        }
        None => password_login(stream, account, timeout).await?,
    };
    let caps = timed(timeout, "CAPABILITY", session.capabilities()).await?;
    let capabilities = capability_names(&caps);
    let hierarchy = super::names::discover(&mut session, timeout).await?;
    Ok(ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    })
}

async fn password_login(
    stream: MailStream,
    account: &AccountConfig,
    timeout: Duration,
) -> Result<Session<MailStream>, ImapError> {
    let client = async_imap::Client::new(stream);
    let login = tokio::time::timeout(
        timeout,
        client.login(&account.user, account.password().expose()),
    )
    .await;
    match login {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((async_imap::error::Error::No(text), _)))
        | Ok(Err((async_imap::error::Error::Bad(text), _))) => {
            let server = server_words(&text);
            // RFC 5530: the server's own trouble, not the credentials (retried soon).
            if TEMPORARY_LOGIN_CODES.iter().any(|c| server.starts_with(c)) {
                return Err(ImapError::Protocol {
                    operation: "LOGIN".into(),
                    reply: server,
                });
            }
            Err(ImapError::AuthRejected {
                user: account.user.clone(),
                server,
            })
        }
        Ok(Err((source, _))) => Err(ImapError::Imap {
            operation: "LOGIN".into(),
            source,
        }),
        Err(_) => Err(ImapError::Timeout {
            operation: "LOGIN".into(),
            secs: timeout.as_secs(),
        }),
    }
}

async fn read_line<S: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut S,
    timeout: Duration,
    operation: &str,
) -> Result<String, ImapError> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| ImapError::Timeout {
            operation: operation.into(),
            secs: timeout.as_secs(),
        })?
        .map_err(|e| ImapError::Connection {
            operation: operation.into(),
            reason: e.to_string(),
        })?;
    if read == 0 {
        return Err(ImapError::Protocol {
            operation: operation.into(),
            reply: "connection closed by the server".into(),
        });
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

pub async fn read_greeting(stream: &mut MailStream, timeout: Duration) -> Result<(), ImapError> {
    // Unbuffered single reads would be slow, but a BufReader could swallow bytes that belong to
    // async-imap; the greeting is the only thing the server sends unasked, so read byte-wise.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(timeout, tokio::io::AsyncReadExt::read(stream, &mut byte))
            .await
            .map_err(|_| ImapError::Timeout {
                operation: "greeting".into(),
                secs: timeout.as_secs(),
            })?
            .map_err(|e| ImapError::Connection {
                operation: "greeting".into(),
                reason: e.to_string(),
            })?;
        if n == 0 {
            return Err(ImapError::Protocol {
                operation: "greeting".into(),
                reply: "connection closed before the greeting".into(),
            });
        }
        line.push(byte[0]);
        if byte[0] == b'\n' || line.len() > 8192 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line);
    if text.starts_with("* OK") || text.starts_with("* PREAUTH") {
        Ok(())
    } else {
        Err(ImapError::Protocol {
            operation: "greeting".into(),
            reply: text.trim_end().to_string(),
        })
    }
}

/// Greeting, CAPABILITY, STARTTLS on the plain socket; returns the socket ready for TLS.
pub async fn negotiate_starttls(
    tcp: TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<TcpStream, ImapError> {
    let mut reader = BufReader::new(tcp);
    let greeting = read_line(&mut reader, timeout, "greeting").await?;
    if !greeting.starts_with("* OK") {
        return Err(ImapError::Protocol {
            operation: "greeting".into(),
            reply: greeting,
        });
    }
    reader
        .get_mut()
        .write_all(b"S1 CAPABILITY\r\n")
        .await
        .map_err(|e| ImapError::Connection {
            operation: "CAPABILITY".into(),
            reason: e.to_string(),
        })?;
    let mut offered = false;
    loop {
        let line = read_line(&mut reader, timeout, "CAPABILITY").await?;
        if line.starts_with("* CAPABILITY") {
            offered = line
                .split_ascii_whitespace()
                .any(|c| c.eq_ignore_ascii_case("STARTTLS"));
        } else if let Some(status) = line.strip_prefix("S1 ") {
            if !status.starts_with("OK") {
                return Err(ImapError::Protocol {
                    operation: "CAPABILITY".into(),
                    reply: line,
                });
            }
            break;
        }
    }
    if !offered {
        return Err(ImapError::StartTlsNotOffered { host: host.into() });
    }
    reader
        .get_mut()
        .write_all(b"S2 STARTTLS\r\n")
        .await
        .map_err(|e| ImapError::Connection {
            operation: "STARTTLS".into(),
            reason: e.to_string(),
        })?;
    loop {
        let line = read_line(&mut reader, timeout, "STARTTLS").await?;
        if let Some(status) = line.strip_prefix("S2 ") {
            if !status.starts_with("OK") {
                return Err(ImapError::Protocol {
                    operation: "STARTTLS".into(),
                    reply: line,
                });
            }
            break;
        }
    }
    if !reader.buffer().is_empty() {
        // Bytes after the OK before the handshake would be a STARTTLS injection attempt.
        return Err(ImapError::Protocol {
            operation: "STARTTLS".into(),
            reply: "server sent data after STARTTLS before the TLS handshake".into(),
        });
    }
    Ok(reader.into_inner())
}

/// The server's capabilities as it wrote them ("IMAP4rev1", "AUTH=PLAIN", "MOVE").
pub fn capability_names(caps: &async_imap::types::Capabilities) -> Vec<String> {
    caps.iter()
        .map(|c| match c {
            async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_string(),
            async_imap::types::Capability::Auth(a) => format!("AUTH={a}"),
            async_imap::types::Capability::Atom(a) => a.to_string(),
        })
        .collect()
}

/// async-imap renders NO/BAD replies as `code: None, info: Some("...")` (most commands) or
/// `outcome: Outcome { code: None, information: Some("...") }` (STATUS, SELECT); keep the
/// server's words, with a response code such as `[TRYCREATE]` in front as the server sent it.
pub fn server_words(text: &str) -> String {
    let words = ["information: Some(\"", "info: Some(\""]
        .iter()
        .find_map(|marker| text.split_once(marker))
        .map(|(_, rest)| rest.rsplit_once("\")").map_or(rest, |(words, _)| words));
    let Some(words) = words else {
        return text.trim().to_string();
    };
    let words = words.replace("\\\"", "\"");
    // A plain code such as TryCreate or Alert; codes with arguments are left out.
    let code = text.split_once("code: Some(").and_then(|(_, rest)| {
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric())?;
        (end > 0 && rest[end..].starts_with(')')).then(|| &rest[..end])
    });
    match code {
        Some(code) => format!("[{}] {words}", code.to_ascii_uppercase()),
        None => words,
    }
}

/// Whether a refusal carries `[TRYCREATE]`: the target folder does not exist (RFC 3501 6.4.7).
pub fn is_trycreate(server: &str) -> bool {
    server.to_ascii_uppercase().starts_with("[TRYCREATE]")
}

#[cfg(test)]
mod tests {
    use crate::source::{ErrorKind, SourceError};
    use crate::store::{StoreError, StoreErrorKind};

    #[test]
    fn a_store_failure_in_an_imap_pass_is_told_once_and_keeps_its_kind() {
        let store = StoreError::Unavailable {
            kind: StoreErrorKind::Unreachable,
            path: "postgres://m2t:***@db/tickets".into(),
            cause: sqlx::Error::PoolTimedOut,
        };
        let e = SourceError::from(super::ImapError::Store(store));
        assert_eq!(e.kind(), &ErrorKind::Store);
        let shown = e.to_string();
        assert_eq!(
            shown.matches("database server unreachable").count(),
            1,
            "{shown}"
        );
        assert_eq!(shown.matches("pool timed out").count(), 1, "{shown}");

        let lost = StoreError::LeaseLost {
            account: "support".into(),
        };
        let e = SourceError::from(super::ImapError::Store(lost));
        assert_eq!(e.kind(), &ErrorKind::LeaseLost);
    }

    #[test]
    fn server_words_strip_the_debug_rendering() {
        assert_eq!(
            super::server_words(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(super::server_words(" plain text "), "plain text");
        assert_eq!(
            super::server_words(
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: Nope") }"#
            ),
            "Mailbox doesn't exist: Nope"
        );
        let missing = super::server_words(
            r#"code: Some(TryCreate), info: Some("Mailbox doesn't exist: Nope")"#,
        );
        assert_eq!(missing, "[TRYCREATE] Mailbox doesn't exist: Nope");
        assert!(super::is_trycreate(&missing));
    }
}
