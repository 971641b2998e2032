//! Signing in to the account's IMAP server: a password login, or with `auth = "oauth2"` the
//! account's token (renewed once if the server refuses it); then the capabilities and the
//! folder hierarchy the pass works with.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use super::error::{server_words, timed, ImapError};
use super::names::Hierarchy;
use super::wire::{ImapSession, Tolerant};
use crate::account::AccountRuntime;
use crate::config::AccountConfig;
use crate::net::MailStream;
use crate::oauth::sasl::Mechanism;
use crate::secret::Secret;
use crate::source::SourceError;

/// LOGIN failures that say nothing about the password (RFC 5530 response codes).
const TEMPORARY_LOGIN_CODES: &[&str] = &["[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]"];

/// A signed-in session with what the pass needs to know about the server.
pub struct ImapConnection {
    pub session: ImapSession,
    pub capabilities: Vec<String>,
    /// The server's separator and personal prefix: configured folder names map through it.
    pub hierarchy: Hierarchy,
    pub timeout: Duration,
}

impl ImapConnection {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(capability))
    }
}

/// Connects and logs in, with a token when the account uses OAuth 2.0.
pub async fn sign_in(rt: &AccountRuntime) -> Result<ImapConnection, SourceError> {
    let a = &rt.account;
    let Some(tokens) = &rt.tokens else {
        return Ok(connect(a, rt.tls.clone(), rt.timeout).await?);
    };
    let server = format!("{}:{}", a.host, a.port());
    Ok(crate::oauth::login::sign_in(
        tokens,
        &server,
        &a.user,
        |token| async move { connect_with(a, rt.tls.clone(), rt.timeout, Some(&token)).await },
        |e| match e {
            ImapError::AuthRejected { server, .. } => Some(server.clone()),
            _ => None,
        },
    )
    .await?)
}

/// Connects and logs in with the password.
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
    token: Option<&Secret>,
) -> Result<ImapConnection, ImapError> {
    let stream = super::connect::open(account, tls, timeout).await?;
    let (mut session, _) = log_in(stream, account, timeout, token).await?;
    let capabilities = capabilities(&mut session, timeout).await?;
    let hierarchy = super::names::discover(&mut session, timeout).await?;
    Ok(ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    })
}

/// The login on an open stream: LOGIN with the password, or AUTHENTICATE with `token` (then the
/// mechanism used is returned too).
pub async fn log_in(
    stream: MailStream,
    account: &AccountConfig,
    timeout: Duration,
    token: Option<&Secret>,
) -> Result<(ImapSession, Option<Mechanism>), ImapError> {
    match token {
        Some(token) => {
            let (session, mechanism) =
                super::oauth::authenticate(stream, account, token, timeout).await?;
            Ok((session, Some(mechanism)))
        }
        None => Ok((password_login(stream, account, timeout).await?, None)),
    }
}

async fn password_login(
    stream: MailStream,
    account: &AccountConfig,
    timeout: Duration,
) -> Result<ImapSession, ImapError> {
    let client = async_imap::Client::new(Tolerant::new(stream));
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

/// CAPABILITY after the login: servers such as Dovecot announce MOVE and UIDPLUS only to
/// authenticated clients (RFC 3501 allows the list to change at login).
pub async fn capabilities(
    session: &mut ImapSession,
    timeout: Duration,
) -> Result<Vec<String>, ImapError> {
    let caps = timed(timeout, "CAPABILITY", session.capabilities()).await?;
    Ok(capability_names(&caps))
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
