//! Connects: TCP, TLS from the first byte or STARTTLS, and the greeting, up to the point where a
//! login may be sent. STARTTLS is negotiated by hand before async-imap takes the stream, so that
//! a server that does not offer STARTTLS is refused before any password is sent. Signing in is
//! [`super::login`]'s.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::error::ImapError;
use crate::config::{AccountConfig, Encryption};
use crate::net::{self, MailStream};

/// TCP, TLS (implicit or by STARTTLS) and the greeting: a stream ready for the login.
pub async fn open(
    account: &AccountConfig,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<MailStream, ImapError> {
    let tcp = net::connect_tcp(&account.host, account.port(), timeout).await?;
    secure(tcp, account, tls, timeout, timeout).await
}

/// The stage of [`open`] after the TCP connect: TLS from the first byte or by STARTTLS, and the
/// greeting. `plain_greeting` bounds the wait for the greeting on a plain socket (and the
/// STARTTLS dialogue): `test-fetch` waits less there, because a server on an implicit-TLS port
/// waits for our TLS hello and never greets.
pub async fn secure(
    tcp: TcpStream,
    account: &AccountConfig,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    plain_greeting: Duration,
) -> Result<MailStream, ImapError> {
    let host = account.host.as_str();
    Ok(match account.encryption {
        Encryption::Ssl => {
            let mut tls_stream = net::start_tls(tcp, host, tls, timeout).await?;
            read_greeting(&mut tls_stream, timeout).await?;
            tls_stream
        }
        Encryption::Starttls => {
            let tcp = negotiate_starttls(tcp, host, plain_greeting).await?;
            net::start_tls(tcp, host, tls, timeout).await?
        }
        Encryption::None => {
            let mut plain = MailStream::Plain(tcp);
            read_greeting(&mut plain, plain_greeting).await?;
            plain
        }
    })
}

async fn read_line<S: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut S,
    timeout: Duration,
    operation: &str,
) -> Result<String, ImapError> {
    let mut line = Vec::new();
    let read = within(timeout, operation, reader.read_until(b'\n', &mut line)).await?;
    if read == 0 {
        return Err(ImapError::Protocol {
            operation: operation.into(),
            reply: "connection closed by the server".into(),
        });
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

pub async fn read_greeting(stream: &mut MailStream, timeout: Duration) -> Result<(), ImapError> {
    let text = read_line_unbuffered(stream, timeout, "greeting").await?;
    if text.starts_with("* OK") || text.starts_with("* PREAUTH") {
        Ok(())
    } else {
        Err(ImapError::Protocol {
            operation: "greeting".into(),
            reply: text,
        })
    }
}

/// CAPABILITY before any login, on a greeted stream: the capability names the server announces
/// to a client about to sign in (what `detect` shows as proof of a working server).
pub async fn capabilities(
    stream: &mut MailStream,
    timeout: Duration,
) -> Result<Vec<String>, ImapError> {
    let operation = "CAPABILITY";
    let write = async {
        stream.write_all(b"C1 CAPABILITY\r\n").await?;
        stream.flush().await
    };
    within(timeout, operation, write).await?;
    let mut names = Vec::new();
    loop {
        let line = read_line_unbuffered(stream, timeout, operation).await?;
        if let Some(list) = line.strip_prefix("* CAPABILITY ") {
            names.extend(list.split_ascii_whitespace().map(str::to_string));
        } else if let Some(status) = line.strip_prefix("C1 ") {
            if !status.starts_with("OK") {
                return Err(ImapError::Protocol {
                    operation: operation.into(),
                    reply: line,
                });
            }
            return Ok(names);
        }
    }
}

/// An I/O step of `operation` under the deadline: a timeout and a broken connection each as
/// their own error.
async fn within<T>(
    timeout: Duration,
    operation: &str,
    step: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(timeout, step)
        .await
        .map_err(|_| ImapError::Timeout {
            operation: operation.into(),
            secs: timeout.as_secs(),
        })?
        .map_err(|e| ImapError::Connection {
            operation: operation.into(),
            reason: e.to_string(),
        })
}

/// One reply line, read byte-wise: a BufReader could swallow bytes that belong to whoever reads
/// the stream next (async-imap, or the TLS handshake).
async fn read_line_unbuffered(
    stream: &mut MailStream,
    timeout: Duration,
    operation: &str,
) -> Result<String, ImapError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = within(
            timeout,
            operation,
            tokio::io::AsyncReadExt::read(stream, &mut byte),
        )
        .await?;
        if n == 0 {
            return Err(ImapError::Protocol {
                operation: operation.into(),
                reply: format!("connection closed before the {operation} reply"),
            });
        }
        line.push(byte[0]);
        if byte[0] == b'\n' || line.len() > 8192 {
            return Ok(String::from_utf8_lossy(&line).trim_end().to_string());
        }
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
