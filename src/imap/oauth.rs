//! IMAP `AUTHENTICATE` with a bearer token: OAUTHBEARER if the server lists it before login,
//! else XOAUTH2. The capabilities are asked by hand on the raw stream, like STARTTLS, because
//! async-imap only asks for them after login.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{server_words, ImapError};
use super::wire::{ImapSession, Tolerant};
use crate::config::AccountConfig;
use crate::net::MailStream;
use crate::oauth::sasl::Mechanism;
use crate::secret::Secret;

/// The SASL mechanisms (`AUTH=...`) the server offers before login.
async fn sasl_mechanisms(
    stream: &mut MailStream,
    timeout: Duration,
) -> Result<Vec<String>, ImapError> {
    let failed = |reply: String| ImapError::Protocol {
        operation: "CAPABILITY".into(),
        reply,
    };
    let io = async {
        stream.write_all(b"A0 CAPABILITY\r\n").await?;
        let mut mechanisms = Vec::new();
        // Byte by byte: nothing may be read past the tagged reply, which async-imap reads next.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if stream.read(&mut byte).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            line.push(byte[0]);
            if byte[0] != b'\n' && line.len() < 64 * 1024 {
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            line.clear();
            if text.starts_with("* CAPABILITY") {
                mechanisms.extend(text.split_ascii_whitespace().filter_map(|c| {
                    c.get(..5)
                        .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                        .map(|_| c[5..].to_string())
                }));
            } else if let Some(status) = text.strip_prefix("A0 ") {
                return Ok((status.starts_with("OK"), text.clone(), mechanisms));
            }
        }
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok((true, _, mechanisms))) => Ok(mechanisms),
        Ok(Ok((false, reply, _))) => Err(failed(reply)),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(ImapError::Timeout {
            operation: "CAPABILITY".into(),
            secs: timeout.as_secs(),
        }),
    }
}

/// Answers the server's challenges: the token message first, then (after a failure challenge)
/// the mechanism's "I give up" so the server can send its NO.
struct Bearer {
    first: Option<Secret>,
    mechanism: Mechanism,
}

impl async_imap::Authenticator for Bearer {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        match self.first.take() {
            Some(message) => message.expose().as_bytes().to_vec(),
            None => self.mechanism.after_error_challenge().to_vec(),
        }
    }
}

/// Logs in with `token`; returns the session and the mechanism used.
pub async fn authenticate(
    mut stream: MailStream,
    account: &AccountConfig,
    token: &Secret,
    timeout: Duration,
) -> Result<(ImapSession, Mechanism), ImapError> {
    let offered = sasl_mechanisms(&mut stream, timeout).await?;
    let mechanism = Mechanism::choose(offered.iter().map(String::as_str));
    let message = mechanism.initial_response(&account.user, &account.host, account.port(), token);
    let client = async_imap::Client::new(Tolerant::new(stream));
    let auth = Bearer {
        first: Some(message),
        mechanism,
    };
    match tokio::time::timeout(timeout, client.authenticate(mechanism.name(), auth)).await {
        Ok(Ok(session)) => Ok((session, mechanism)),
        Ok(Err((async_imap::error::Error::No(text), _)))
        | Ok(Err((async_imap::error::Error::Bad(text), _))) => Err(ImapError::AuthRejected {
            user: account.user.clone(),
            server: server_words(&text),
        }),
        Ok(Err((source, _))) => Err(ImapError::Imap {
            operation: format!("AUTHENTICATE {}", mechanism.name()),
            source,
        }),
        Err(_) => Err(ImapError::Timeout {
            operation: format!("AUTHENTICATE {}", mechanism.name()),
            secs: timeout.as_secs(),
        }),
    }
}
