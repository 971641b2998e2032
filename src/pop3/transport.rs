//! The connection under [`super::client::Pop3Client`]: command lines out, reply lines in, each
//! under its deadline, and the rule that keeps the two in step. What the lines mean is
//! [`super::response`]'s; which command to send is the client's.
//!
//! Timeouts: the connect timeout bounds the TCP connect and every TLS handshake (both done
//! before a [`Transport`] exists). The command timeout bounds each network operation after
//! that: writing a command, reading one reply line, and, while a RETR body arrives, each read of
//! the socket. A large mail on a slow link therefore does not time out while data keeps flowing.
//!
//! In step: after a timeout, an I/O error or a malformed reply, the client does not know where
//! the server is in its reply, so the transport refuses further commands with
//! [`Pop3Error::ConnectionBroken`] instead of taking stray bytes as the answer to the next
//! command.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::error::Pop3Error;
use super::response::{
    announced_size, parse_status, shown, trim_eol, unstuff_line, MultiLine, Reply, Status,
    Unstuffer,
};
use crate::net::MailStream;

/// Longest reply line accepted outside message bodies (status lines, CAPA/LIST/UIDL lines).
const MAX_LINE: usize = 8 * 1024;
/// Read buffer size: large enough that a big RETR moves in few syscalls.
const READ_BUFFER: usize = 64 * 1024;
/// Upper bound for pre-allocating a RETR body from the size the server announces.
const MAX_PREALLOC: usize = 32 * 1024 * 1024;

/// One POP3 connection, plain or TLS, with its command deadline.
#[derive(Debug)]
pub(super) struct Transport {
    reader: BufReader<MailStream>,
    /// The deadline of each write and each read (the command timeout).
    pub(super) timeout: Duration,
    /// Reused buffer for reply lines.
    line: Vec<u8>,
    /// Set when the reply stream can no longer be trusted to be in step with our commands.
    broken: bool,
}

impl Transport {
    pub(super) fn new(stream: MailStream, timeout: Duration) -> Self {
        Self {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            timeout,
            line: Vec::with_capacity(256),
            broken: false,
        }
    }

    /// Whether the connection runs over TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.reader.get_ref().is_tls()
    }

    pub(super) fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.reader.get_ref().tls_version()
    }

    /// Sends a command and expects +OK; -ERR becomes [`Pop3Error::Protocol`].
    pub(super) async fn simple(&mut self, name: &str, line: &[u8]) -> Result<String, Pop3Error> {
        match self.command(name, line).await? {
            Reply::Ok(text) => Ok(text),
            Reply::Err(text) => Err(Pop3Error::Protocol {
                command: name.into(),
                reply: format!("-ERR {text}"),
            }),
        }
    }

    /// Sends one command line (`shown` is what may be logged) and reads its status line.
    pub(super) async fn command(&mut self, shown: &str, line: &[u8]) -> Result<Reply, Pop3Error> {
        tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 C: {shown}");
        self.send(shown, line).await?;
        self.read_reply(shown).await
    }

    /// Writes command line(s) and flushes them; `command` names them in errors.
    pub(super) async fn send(&mut self, command: &str, lines: &[u8]) -> Result<(), Pop3Error> {
        if self.broken {
            return Err(Pop3Error::ConnectionBroken {
                command: command.into(),
            });
        }
        let write = async {
            self.reader.get_mut().write_all(lines).await?;
            self.reader.get_mut().flush().await
        };
        let err = match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Pop3Error::Io(e),
            Err(_) => Pop3Error::Timeout {
                command: command.into(),
            },
        };
        Err(self.fail(err))
    }

    /// Reads a status line; anything but `+OK` / `-ERR` breaks the session.
    pub(super) async fn read_reply(&mut self, command: &str) -> Result<Reply, Pop3Error> {
        let line = self.read_line(command).await?;
        let reply = match parse_status(line) {
            Some(Status::Ok(text)) => Reply::Ok(shown(text)),
            Some(Status::Err(text)) => Reply::Err(shown(text)),
            None => {
                let reply = shown(trim_eol(line));
                return Err(self.fail(Pop3Error::Protocol {
                    command: command.into(),
                    reply,
                }));
            }
        };
        match &reply {
            Reply::Ok(text) => {
                tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 S: +OK {text}")
            }
            Reply::Err(text) => {
                tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 S: -ERR {text}")
            }
        }
        Ok(reply)
    }

    /// Reads one line (at most [`MAX_LINE`] bytes, with its line ending).
    pub(super) async fn read_line(&mut self, command: &str) -> Result<&[u8], Pop3Error> {
        if self.broken {
            return Err(Pop3Error::ConnectionBroken {
                command: command.into(),
            });
        }
        let read = read_line_limited(&mut self.reader, &mut self.line, MAX_LINE);
        let err = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(())) => return Ok(&self.line),
            Ok(Err(LineError::Io(e))) => Pop3Error::Io(e),
            Ok(Err(LineError::Eof)) => Pop3Error::Closed {
                command: command.into(),
            },
            Ok(Err(LineError::TooLong)) => Pop3Error::Protocol {
                command: command.into(),
                reply: format!("reply line longer than {MAX_LINE} bytes"),
            },
            Err(_) => Pop3Error::Timeout {
                command: command.into(),
            },
        };
        Err(self.fail(err))
    }

    /// Reads the lines of a multi-line reply up to the terminator. A line that `parse` rejects
    /// fails the command, but only after the terminator, so the session stays usable.
    pub(super) async fn read_listing<T>(
        &mut self,
        command: &str,
        parse: fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, Pop3Error> {
        let mut items = Vec::new();
        let mut bad_line = None;
        loop {
            let line = self.read_line(command).await?;
            match unstuff_line(line) {
                MultiLine::End => break,
                MultiLine::Data(data) => match parse(data) {
                    Some(item) => items.push(item),
                    None => {
                        bad_line.get_or_insert_with(|| shown(trim_eol(data)));
                    }
                },
            }
        }
        match bad_line {
            Some(reply) => Err(Pop3Error::Protocol {
                command: command.into(),
                reply,
            }),
            None => Ok(items),
        }
    }

    /// The body of a multi-line reply whose status line said `status`, dot-stuffing undone, at
    /// most its first `limit` bytes: the rest is read (the session stays in step) and dropped.
    pub(super) async fn read_body(
        &mut self,
        command: &str,
        status: &str,
        limit: usize,
    ) -> Result<Vec<u8>, Pop3Error> {
        let announced = announced_size(status.as_bytes()).min(MAX_PREALLOC);
        let mut body = Vec::with_capacity(announced.min(limit));
        let mut unstuffer = Unstuffer::default();
        loop {
            let read = tokio::time::timeout(self.timeout, self.reader.fill_buf()).await;
            let chunk = match read {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(self.fail(Pop3Error::Io(e))),
                Err(_) => {
                    return Err(self.fail(Pop3Error::Timeout {
                        command: command.into(),
                    }))
                }
            };
            if chunk.is_empty() {
                return Err(self.fail(Pop3Error::Closed {
                    command: command.into(),
                }));
            }
            let (used, done) = match unstuffer.feed(chunk, &mut body) {
                Some(used) => (used, true),
                None => (chunk.len(), false),
            };
            body.truncate(limit);
            self.reader.consume(used);
            if done {
                return Ok(body);
            }
        }
    }

    /// The plain socket after the server's +OK to STLS, ready for the TLS handshake.
    pub(super) fn into_plain_for_tls(self) -> Result<TcpStream, Pop3Error> {
        // Bytes that arrived after "+OK" but before the handshake were never protected by TLS
        // and could be injected replies (CVE-2011-0411 style): refuse them.
        if !self.reader.buffer().is_empty() {
            return Err(Pop3Error::Protocol {
                command: "STLS".into(),
                reply: "the server sent data after +OK before the TLS handshake".into(),
            });
        }
        match self.reader.into_inner() {
            MailStream::Plain(tcp) => Ok(tcp),
            MailStream::Tls(_) => Err(Pop3Error::Protocol {
                command: "STLS".into(),
                reply: "connection is already encrypted".into(),
            }),
        }
    }

    /// Closes the connection, best effort (sends TLS close_notify), within the deadline.
    pub(super) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.reader.get_mut().shutdown()).await;
    }

    /// Marks the session as out of step with the server and passes the error on.
    pub(super) fn fail(&mut self, err: Pop3Error) -> Pop3Error {
        self.broken = true;
        err
    }
}

enum LineError {
    Io(std::io::Error),
    Eof,
    TooLong,
}

/// Reads up to and including the next `\n` into `line` (cleared first), failing beyond `limit`.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
) -> Result<(), LineError> {
    line.clear();
    loop {
        let buf = reader.fill_buf().await.map_err(LineError::Io)?;
        if buf.is_empty() {
            return Err(LineError::Eof);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > limit {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop3::test_server::{connected, serve_one};
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_reply_line_longer_than_the_limit_is_refused() {
        let mut line = Vec::new();
        let mut input: &[u8] = b"+OK short\r\nrest";
        let mut reader = BufReader::new(&mut input);
        assert!(read_line_limited(&mut reader, &mut line, 64).await.is_ok());
        assert_eq!(line, b"+OK short\r\n");
        assert!(matches!(
            read_line_limited(&mut reader, &mut line, 64).await,
            Err(LineError::Eof)
        ));
        let long = [b'a'; 100];
        let mut reader = BufReader::with_capacity(16, &long[..]);
        assert!(matches!(
            read_line_limited(&mut reader, &mut line, 64).await,
            Err(LineError::TooLong)
        ));
    }

    #[tokio::test]
    async fn silent_server_times_out_and_breaks_the_session() {
        let (port, server) = serve_one(|mut socket| async move {
            socket.write_all(b"+OK ready\r\n").await.unwrap();
            // Answer CAPA, then go silent in the middle of RETR.
            let mut buf = [0u8; 64];
            let _ = socket.read(&mut buf).await;
            socket.write_all(b"+OK\r\n.\r\n").await.unwrap();
            let _ = socket.read(&mut buf).await;
            socket.write_all(b"+OK\r\nhalf a mail\r\n").await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        // The usual timeouts while the server answers (greeting, CAPA); the short one only for
        // RETR, where the server goes silent for good, so it can only fire there (at the
        // status line if the answer is slow, or mid-body: either way RETR 1 timed out).
        let mut client = connected(port).await;
        client.set_command_timeout(Duration::from_millis(200));
        let err = client.retr(1).await.unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Timeout { command } if command == "RETR 1"),
            "{err:?}"
        );
        assert!(matches!(
            client.dele_all(&[1]).await.all(),
            Err(Pop3Error::ConnectionBroken { .. })
        ));
        assert!(client.quit().await.is_err());
        server.await.unwrap();
    }
}
