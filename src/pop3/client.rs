//! POP3 client (RFC 1939 USER/PASS, RFC 2449 CAPA, RFC 2595 STLS) on tokio over
//! [`crate::net::MailStream`].
//!
//! Why not `async-pop` 1.1.3 (source read, not built): it cannot do STLS. It has no STLS
//! command, and `async_pop::new(stream)` on a connection we upgraded by hand waits for a second
//! greeting that never comes, with no timeout anywhere in the crate. RETR returns `bytes::Bytes`
//! (8-bit safe), but it cuts the body at `take_until("\r\n.\r\n")` without dot-unstuffing
//! (`..foo` stays `..foo`), fails on an empty message or a bare-LF terminator, caps every reply
//! at 20 MiB and parses it again from the start after each 2 KiB read (quadratic). Server input
//! can break it: trace logging calls `str::from_utf8(..).unwrap()` on every reply (a panic on
//! 8-bit mail) and logs `PASS` in clear, `Buffer::reset_with` panics when more than 2 KiB follow
//! a reply, and a 0-byte read (EOF) counts as "need more", so a server that hangs up mid-reply
//! makes it spin. Hence this small client of our own.
//!
//! Timeouts: the connect timeout bounds the TCP connect and every TLS handshake. The command
//! timeout bounds each network operation after that: writing a command, reading one reply line,
//! and, while a RETR body arrives, each read of the socket. A large mail on a slow link therefore
//! does not time out while data keeps flowing. After a timeout, an I/O error or a malformed reply,
//! the client does not know where the server is in its reply, so it refuses further commands with
//! [`Pop3Error::ConnectionBroken`] instead of taking stray bytes as the answer to the next command.
//! Deletions are committed only by [`Pop3Client::quit`]. Dropping the client closes the connection
//! without QUIT, so the server keeps every message.
//!
//! RETR and DELE for many messages ([`Pop3Client::retr_all`], [`Pop3Client::dele_all`]) are
//! pipelined where the server's CAPA lists PIPELINING (RFC 2449 section 6.6): up to
//! [`PIPELINE_WINDOW`] commands are in flight, written in small chunks between reading the
//! replies, which are matched to their commands strictly in order. Without PIPELINING the same
//! loop sends one command and waits for its reply before the next.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::net::{self, ConnectError, MailStream};

/// Longest reply line accepted outside message bodies (status lines, CAPA/LIST/UIDL lines).
const MAX_LINE: usize = 8 * 1024;
/// Read buffer size: large enough that a big RETR moves in few syscalls.
const READ_BUFFER: usize = 64 * 1024;
/// Upper bound for pre-allocating a RETR body from the size the server announces.
const MAX_PREALLOC: usize = 32 * 1024 * 1024;
/// Server text in errors and logs is cut to this many characters.
const MAX_SHOWN: usize = 300;
/// Most commands in flight when pipelining. Each is a dozen bytes, so the unanswered ones never
/// fill a socket buffer: the server can always read them while we read its replies, and neither
/// side waits on the other (RFC 2449 section 6.6 asks the client not to deadlock).
const PIPELINE_WINDOW: usize = 32;
/// Extra time QUIT may take per message marked with DELE (see [`quit_deadline`]).
const QUIT_TIME_PER_MARKED: Duration = Duration::from_millis(10);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3Security {
    /// TLS from the first byte (usually port 995).
    Implicit,
    /// Plain connection upgraded with STLS (RFC 2595, usually port 110); never downgrades.
    StartTls,
    /// No encryption at all: the password crosses the network in clear.
    Plain,
}

/// Deadlines per network operation (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pop3Timeouts {
    /// TCP connect (per address) and TLS handshake.
    pub connect: Duration,
    /// Each command write and each reply read.
    pub command: Duration,
}

impl Default for Pop3Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    /// DNS failure, refused connection, connect timeout or TLS failure (with an explanation).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "the POP3 server does not offer STLS, so the connection cannot be encrypted and \
         mail2ticket will not log in over it; use encryption = \"ssl\" on the implicit-TLS port \
         (usually 995)"
    )]
    StartTlsNotOffered,
    #[error("login rejected for {user}: check `user` and `password` (server said: {server_text})")]
    AuthRejected { user: String, server_text: String },
    /// RFC 2449 `[LOGIN-DELAY]`: the login came too soon after the previous one (of anybody
    /// using the mailbox). The password was not judged.
    #[error(
        "the POP3 server refused the login as too early: it allows one login every {} \
         (LOGIN-DELAY); this is not a wrong password, the next try waits that long (server \
         said: {server_text})",
        delay.map_or("while".to_string(), |d| format!("{} s", d.as_secs()))
    )]
    LoginDelay {
        /// The delay the server advertised in CAPA, if it did.
        delay: Option<Duration>,
        server_text: String,
    },
    #[error(
        "timed out waiting for the POP3 server at {command}; check `host`, `port` and the \
         firewall, or raise the timeout"
    )]
    Timeout { command: String },
    #[error("unexpected reply from the POP3 server to {command}: {reply}")]
    Protocol { command: String, reply: String },
    #[error(
        "the server does not support UIDL; mail2ticket needs it to tell mails apart and never \
         fetch one twice"
    )]
    UidlNotSupported,
    #[error("the POP3 server closed the connection during {command}")]
    Closed { command: String },
    #[error(
        "the POP3 connection is unusable after an earlier error (at {command}); reconnect \
         (deletions of this session are not committed)"
    )]
    ConnectionBroken { command: String },
    /// A value from the configuration that POP3 cannot carry (e.g. a line break in `user`).
    #[error("{0}")]
    InvalidInput(String),
    #[error("I/O error talking to the POP3 server: {0}")]
    Io(#[from] std::io::Error),
}

/// A POP3 session. Obtain one with [`Pop3Client::connect`], then [`Pop3Client::login`].
#[derive(Debug)]
pub struct Pop3Client {
    reader: BufReader<MailStream>,
    timeouts: Pop3Timeouts,
    capabilities: Vec<String>,
    /// Reused buffer for reply lines.
    line: Vec<u8>,
    /// Set when the reply stream can no longer be trusted to be in step with our commands.
    broken: bool,
    /// Messages the server accepted a DELE for in this session (removed at QUIT).
    marked: usize,
}

/// A status line: `+OK text` or `-ERR text`, text owned and lossily decoded.
enum Reply {
    Ok(String),
    Err(String),
}

/// A command sent for many messages in a row, pipelined where the server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PerMessage {
    Retr,
    Dele,
}

impl PerMessage {
    fn command(self, msg: u32) -> String {
        match self {
            PerMessage::Retr => format!("RETR {msg}"),
            PerMessage::Dele => format!("DELE {msg}"),
        }
    }
}

/// The replies to one command sent for several messages: the messages the server answered
/// +OK for, in command order, with what it sent (a RETR body), and the first failure. After a
/// failure no further command is sent; the replies already in flight are still read, so the
/// session stays in step (after a -ERR) and every +OK is accounted for.
#[derive(Debug)]
pub struct Replies<T> {
    pub accepted: Vec<(u32, T)>,
    pub failure: Option<Pop3Error>,
}

impl<T> Replies<T> {
    /// Every reply, or the first failure. `Ok` holds one entry per message, in order.
    pub fn all(self) -> Result<Vec<(u32, T)>, Pop3Error> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok(self.accepted),
        }
    }
}

impl Pop3Client {
    /// Connects and reads the greeting and capabilities. With [`Pop3Security::StartTls`] it
    /// requires STLS in CAPA, upgrades, and issues CAPA again over TLS. Each step is a method of
    /// its own, so that `test-fetch` can report them one by one.
    pub async fn connect(
        host: &str,
        port: u16,
        security: Pop3Security,
        tls: Arc<rustls::ClientConfig>,
        timeouts: Pop3Timeouts,
    ) -> Result<Self, Pop3Error> {
        let tcp = net::connect_tcp(host, port, timeouts.connect).await?;
        let greeted = |stream| async move {
            let mut client = Self::from_stream(stream, timeouts);
            client.read_greeting(timeouts.command).await?;
            Ok::<_, Pop3Error>(client)
        };
        let mut client = match security {
            Pop3Security::Implicit => {
                greeted(net::start_tls(tcp, host, tls, timeouts.connect).await?).await?
            }
            Pop3Security::Plain => greeted(MailStream::Plain(tcp)).await?,
            Pop3Security::StartTls => {
                let mut plain = greeted(MailStream::Plain(tcp)).await?;
                plain.refresh_capabilities().await?;
                let tcp = plain.stls().await?;
                // A new session over TLS: capabilities seen before TLS are not trustworthy
                // (RFC 2595 section 4), so they are asked again below.
                let stream = net::start_tls(tcp, host, tls, timeouts.connect).await?;
                Self::from_stream(stream, timeouts)
            }
        };
        client.refresh_capabilities().await?;
        tracing::debug!(
            host,
            port,
            ?security,
            tls = client.is_tls(),
            "POP3 connected"
        );
        Ok(client)
    }

    /// STLS (RFC 2595) after the greeting and CAPA: refused unless CAPA lists STLS. Returns the
    /// plain socket, ready for the TLS handshake; the session continues over TLS in a new
    /// client (see [`Pop3Client::from_stream`]) without a second greeting.
    pub async fn stls(mut self) -> Result<TcpStream, Pop3Error> {
        if !self.has_capability("STLS") {
            return Err(Pop3Error::StartTlsNotOffered);
        }
        self.simple("STLS", b"STLS\r\n").await?;
        // Bytes that arrived after "+OK" but before the handshake were never protected by TLS
        // and could be injected replies (CVE-2011-0411 style): refuse them.
        if !self.reader.buffer().is_empty() {
            return Err(self.fail(Pop3Error::Protocol {
                command: "STLS".into(),
                reply: "the server sent data after +OK before the TLS handshake".into(),
            }));
        }
        match self.reader.into_inner() {
            MailStream::Plain(tcp) => Ok(tcp),
            MailStream::Tls(_) => Err(Pop3Error::Protocol {
                command: "STLS".into(),
                reply: "connection is already encrypted".into(),
            }),
        }
    }

    pub fn from_stream(stream: MailStream, timeouts: Pop3Timeouts) -> Self {
        Self {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            timeouts,
            capabilities: Vec::new(),
            line: Vec::with_capacity(256),
            broken: false,
            marked: 0,
        }
    }

    /// The CAPA lines (e.g. `"TOP"`, `"UIDL"`, `"SASL PLAIN"`); empty if the server has no CAPA.
    /// After STLS this is the list given over TLS.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether a capability keyword (first word of a CAPA line) is present, ignoring case.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.split_ascii_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    }

    /// The least time between two logins the server advertised (RFC 2449 `LOGIN-DELAY n`).
    pub fn login_delay(&self) -> Option<Duration> {
        self.capabilities.iter().find_map(|c| {
            let mut words = c.split_ascii_whitespace();
            let name = words.next()?;
            if !name.eq_ignore_ascii_case("LOGIN-DELAY") {
                return None;
            }
            words.next()?.parse().ok().map(Duration::from_secs)
        })
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.reader.get_ref().is_tls()
    }

    /// USER/PASS login. The password is never logged nor put in an error.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Pop3Error> {
        if has_line_break(user) {
            return Err(Pop3Error::InvalidInput(
                "`user` contains a line break or NUL, which POP3 cannot send".into(),
            ));
        }
        if has_line_break(password) {
            return Err(Pop3Error::InvalidInput(
                "`password` contains a line break or NUL, which POP3 cannot send".into(),
            ));
        }
        let line = format!("USER {user}\r\n");
        if let Reply::Err(text) = self.command("USER", line.as_bytes()).await? {
            return Err(login_failure(
                LoginStep::User,
                user,
                text,
                self.login_delay(),
            ));
        }
        let mut line = Vec::with_capacity(password.len() + 7);
        line.extend_from_slice(b"PASS ");
        line.extend_from_slice(password.as_bytes());
        line.extend_from_slice(b"\r\n");
        let reply = self.command("PASS ***", &line).await;
        line.fill(0);
        if let Reply::Err(text) = reply? {
            return Err(login_failure(
                LoginStep::Pass,
                user,
                text,
                self.login_delay(),
            ));
        }
        Ok(())
    }

    /// SASL `AUTH` (RFC 5034) with one client message, e.g. XOAUTH2 or OAUTHBEARER with a
    /// token. The message goes after the server's `+` continuation rather than on the AUTH
    /// line, because RFC 5034 caps that line at 255 octets and bearer tokens are longer.
    /// `after_error` answers a second challenge (the server's error details) so it can finish.
    /// Neither the message nor its base64 form is ever logged or put in an error.
    pub async fn authenticate(
        &mut self,
        user: &str,
        mechanism: &str,
        message: &crate::secret::Secret,
        after_error: &[u8],
    ) -> Result<(), Pop3Error> {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let command = format!("AUTH {mechanism}");
        let mut sent = false;
        let mut line = format!("{command}\r\n").into_bytes();
        loop {
            let logged = if sent {
                "(SASL response)"
            } else {
                command.as_str()
            };
            tracing::debug!("POP3 C: {logged}");
            let written = self.send(&command, &line).await;
            line.fill(0);
            written?;
            self.read_line(&command).await?;
            if self.line.starts_with(b"+ ") || trim_eol(&self.line) == b"+" {
                // A continuation: first the request for our message, then (if any) the
                // server's error details, answered with the mechanism's "give up".
                let reply = if sent {
                    b64(after_error)
                } else {
                    b64(message.expose().as_bytes())
                };
                line = format!("{reply}\r\n").into_bytes();
                sent = true;
                continue;
            }
            return match parse_status(&self.line) {
                Some(Status::Ok(_)) => Ok(()),
                Some(Status::Err(text)) => {
                    let text = shown(text);
                    Err(login_failure(
                        LoginStep::Pass,
                        user,
                        text,
                        self.login_delay(),
                    ))
                }
                None => {
                    let reply = shown(trim_eol(&self.line));
                    Err(self.fail(Pop3Error::Protocol { command, reply }))
                }
            };
        }
    }

    /// STAT: (number of messages, total size in octets).
    pub async fn stat(&mut self) -> Result<(u32, u64), Pop3Error> {
        let text = self.simple("STAT", b"STAT\r\n").await?;
        parse_stat(text.as_bytes()).ok_or(Pop3Error::Protocol {
            command: "STAT".into(),
            reply: shown(text.as_bytes()),
        })
    }

    /// LIST without argument: (message number, size in octets) for every message.
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        self.simple("LIST", b"LIST\r\n").await?;
        self.read_listing("LIST", parse_list_line).await
    }

    /// UIDL without argument: (message number, unique id) for every message.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        match self.command("UIDL", b"UIDL\r\n").await? {
            Reply::Ok(_) => self.read_listing("UIDL", parse_uidl_line).await,
            // A server that announces UIDL but refuses it has some other problem.
            Reply::Err(text) if self.has_capability("UIDL") => Err(Pop3Error::Protocol {
                command: "UIDL".into(),
                reply: text,
            }),
            Reply::Err(_) => Err(Pop3Error::UidlNotSupported),
        }
    }

    /// RETR: the message exactly as stored, with dot-stuffing undone and the terminating
    /// ".CRLF" removed; line endings and 8-bit bytes are kept as they are.
    pub async fn retr(&mut self, msg: u32) -> Result<Vec<u8>, Pop3Error> {
        let mut one = self.retr_all(&[msg]).await.all()?;
        Ok(one.pop().map(|(_, body)| body).unwrap_or_default())
    }

    /// RETR for each of `msgs` (pipelined where offered), each body as [`Pop3Client::retr`]
    /// returns it.
    pub async fn retr_all(&mut self, msgs: &[u32]) -> Replies<Vec<u8>> {
        self.per_message(PerMessage::Retr, msgs).await
    }

    /// DELE for each of `msgs` (pipelined where offered): marks them for deletion at QUIT.
    /// `accepted` lists exactly the messages the server answered +OK for.
    pub async fn dele_all(&mut self, msgs: &[u32]) -> Replies<()> {
        let replies = self.per_message(PerMessage::Dele, msgs).await;
        Replies {
            accepted: replies.accepted.into_iter().map(|(m, _)| (m, ())).collect(),
            failure: replies.failure,
        }
    }

    /// Sends `kind` for each message and reads the replies in order. One loop for both ways:
    /// with PIPELINING, whenever at most half the window is unanswered the next chunk of
    /// commands goes out; without, the window is one command, sent once the previous reply
    /// is read.
    async fn per_message(&mut self, kind: PerMessage, msgs: &[u32]) -> Replies<Vec<u8>> {
        let window = if self.has_capability("PIPELINING") {
            PIPELINE_WINDOW
        } else {
            1
        };
        let mut accepted = Vec::with_capacity(msgs.len());
        let mut failure = None;
        let mut sent = 0;
        for (answered, &msg) in msgs.iter().enumerate() {
            if failure.is_none() && sent < msgs.len() && sent - answered <= window / 2 {
                let upto = msgs.len().min(answered + window);
                if let Err(e) = self.send_per_message(kind, &msgs[sent..upto]).await {
                    failure = Some(e);
                    break;
                }
                sent = upto;
            }
            if answered == sent {
                // Only after a failure: every command sent has its reply.
                break;
            }
            let command = kind.command(msg);
            let answer = match self.read_reply(&command).await {
                Ok(Reply::Ok(text)) if kind == PerMessage::Retr => {
                    self.read_body(&command, &text).await
                }
                Ok(Reply::Ok(_)) => {
                    self.marked += 1;
                    Ok(Vec::new())
                }
                Ok(Reply::Err(text)) => {
                    // The server refused this one command and goes on with the next.
                    failure.get_or_insert(Pop3Error::Protocol {
                        command,
                        reply: format!("-ERR {text}"),
                    });
                    continue;
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(body) => accepted.push((msg, body)),
                // The session is broken (see `fail`): no further reply can be read.
                Err(e) => {
                    failure.get_or_insert(e);
                    break;
                }
            }
        }
        Replies { accepted, failure }
    }

    /// Writes `kind` for each of `msgs` in one go; a failure names the first of them.
    async fn send_per_message(&mut self, kind: PerMessage, msgs: &[u32]) -> Result<(), Pop3Error> {
        let commands: Vec<String> = msgs.iter().map(|&m| kind.command(m)).collect();
        let mut lines = Vec::with_capacity(commands.iter().map(|c| c.len() + 2).sum());
        for command in &commands {
            tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 C: {command}");
            lines.extend_from_slice(command.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        let first = commands.first().map_or("", String::as_str);
        self.send(first, &lines).await
    }

    /// The body of a multi-line reply whose status line said `status`, dot-stuffing undone.
    async fn read_body(&mut self, command: &str, status: &str) -> Result<Vec<u8>, Pop3Error> {
        let mut body = Vec::with_capacity(announced_size(status.as_bytes()).min(MAX_PREALLOC));
        let mut unstuffer = Unstuffer::default();
        loop {
            let read = tokio::time::timeout(self.timeouts.command, self.reader.fill_buf()).await;
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
            self.reader.consume(used);
            if done {
                return Ok(body);
            }
        }
    }

    /// NOOP: keeps the session alive / checks that it still is.
    pub async fn noop(&mut self) -> Result<(), Pop3Error> {
        self.simple("NOOP", b"NOOP\r\n").await.map(drop)
    }

    /// QUIT: the server commits the deletions and closes the session. An error means the
    /// deletions may not have been committed.
    pub async fn quit(mut self) -> Result<(), Pop3Error> {
        let usual = self.timeouts.command;
        self.timeouts.command = quit_deadline(usual, self.marked);
        let reply = self.simple("QUIT", b"QUIT\r\n").await;
        self.timeouts.command = usual;
        reply?;
        // Best effort (sends TLS close_notify); the session is already over.
        let _ = tokio::time::timeout(self.timeouts.command, self.reader.get_mut().shutdown()).await;
        Ok(())
    }

    /// The server's greeting, waited for at most `within`: a short wait tells a port that
    /// expects TLS from the first byte (the server waits for our TLS hello and says nothing).
    pub async fn read_greeting(&mut self, within: Duration) -> Result<(), Pop3Error> {
        let command = if self.is_tls() {
            "the greeting"
        } else {
            "the greeting (if this port expects TLS at once, use encryption = \"ssl\")"
        };
        let usual = std::mem::replace(&mut self.timeouts.command, within);
        let reply = self.read_reply(command).await;
        self.timeouts.command = usual;
        match reply? {
            Reply::Ok(_) => Ok(()),
            Reply::Err(text) => Err(Pop3Error::Protocol {
                command: "the greeting".into(),
                reply: format!("-ERR {text}"),
            }),
        }
    }

    /// CAPA (RFC 2449): the capability list, kept for [`Pop3Client::capabilities`]; empty when
    /// the server has no CAPA.
    pub async fn refresh_capabilities(&mut self) -> Result<(), Pop3Error> {
        self.capabilities = match self.command("CAPA", b"CAPA\r\n").await? {
            Reply::Ok(_) => {
                let mut caps = self.read_listing("CAPA", parse_capa_line).await?;
                caps.retain(|c| !c.is_empty());
                caps
            }
            // RFC 1939-only server: no capability list.
            Reply::Err(_) => Vec::new(),
        };
        tracing::debug!(capabilities = ?self.capabilities, "POP3 CAPA");
        Ok(())
    }

    /// Sends a command and expects +OK; -ERR becomes [`Pop3Error::Protocol`].
    async fn simple(&mut self, name: &str, line: &[u8]) -> Result<String, Pop3Error> {
        match self.command(name, line).await? {
            Reply::Ok(text) => Ok(text),
            Reply::Err(text) => Err(Pop3Error::Protocol {
                command: name.into(),
                reply: format!("-ERR {text}"),
            }),
        }
    }

    /// Sends one command line (`shown` is what may be logged) and reads its status line.
    async fn command(&mut self, shown: &str, line: &[u8]) -> Result<Reply, Pop3Error> {
        tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 C: {shown}");
        self.send(shown, line).await?;
        self.read_reply(shown).await
    }

    /// Writes command line(s) and flushes them; `command` names them in errors.
    async fn send(&mut self, command: &str, lines: &[u8]) -> Result<(), Pop3Error> {
        if self.broken {
            return Err(Pop3Error::ConnectionBroken {
                command: command.into(),
            });
        }
        let write = async {
            self.reader.get_mut().write_all(lines).await?;
            self.reader.get_mut().flush().await
        };
        let err = match tokio::time::timeout(self.timeouts.command, write).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Pop3Error::Io(e),
            Err(_) => Pop3Error::Timeout {
                command: command.into(),
            },
        };
        Err(self.fail(err))
    }

    async fn read_reply(&mut self, command: &str) -> Result<Reply, Pop3Error> {
        self.read_line(command).await?;
        let reply = match parse_status(&self.line) {
            Some(Status::Ok(text)) => Reply::Ok(shown(text)),
            Some(Status::Err(text)) => Reply::Err(shown(text)),
            None => {
                let reply = shown(trim_eol(&self.line));
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

    /// Reads one line (at most [`MAX_LINE`] bytes, with its line ending) into `self.line`.
    async fn read_line(&mut self, command: &str) -> Result<(), Pop3Error> {
        if self.broken {
            return Err(Pop3Error::ConnectionBroken {
                command: command.into(),
            });
        }
        let read = read_line_limited(&mut self.reader, &mut self.line, MAX_LINE);
        let err = match tokio::time::timeout(self.timeouts.command, read).await {
            Ok(Ok(())) => return Ok(()),
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
    async fn read_listing<T>(
        &mut self,
        command: &str,
        parse: fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, Pop3Error> {
        let mut items = Vec::new();
        let mut bad_line = None;
        loop {
            self.read_line(command).await?;
            match unstuff_line(&self.line) {
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

    /// Marks the session as out of step with the server and passes the error on.
    fn fail(&mut self, err: Pop3Error) -> Pop3Error {
        self.broken = true;
        err
    }
}

/// How long QUIT may take. The server removes the marked messages before it answers (RFC 1939
/// UPDATE state; Dovecot unlinks one file per message), and on a loaded machine 10,000 of them
/// took longer than the usual per-command timeout of 60 s. Timing out there would report a pass
/// as failed whose deletions did happen, so the deadline grows with the number marked.
fn quit_deadline(command: Duration, marked: usize) -> Duration {
    let marked = u32::try_from(marked).unwrap_or(u32::MAX);
    command.saturating_add(QUIT_TIME_PER_MARKED.saturating_mul(marked))
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginStep {
    User,
    Pass,
}

/// Maps a -ERR during login: always a rejection after PASS, and after USER when the server
/// marks it with the RFC 3206 `[AUTH]` response code; any other USER failure is a protocol error.
fn login_failure(
    step: LoginStep,
    user: &str,
    server_text: String,
    delay: Option<Duration>,
) -> Pop3Error {
    if server_text
        .get(..13)
        .is_some_and(|code| code.eq_ignore_ascii_case("[LOGIN-DELAY]"))
    {
        return Pop3Error::LoginDelay { delay, server_text };
    }
    // RFC 2449 response codes: a locked maildrop or a server-side fault is not a wrong password,
    // and telling the admin to check the password would send them the wrong way.
    if server_text.starts_with("[IN-USE]") || server_text.starts_with("[SYS/") {
        return Pop3Error::Protocol {
            command: if step == LoginStep::Pass {
                "PASS"
            } else {
                "USER"
            }
            .into(),
            reply: format!("-ERR {server_text}"),
        };
    }
    if step == LoginStep::Pass || server_text.contains("[AUTH]") {
        Pop3Error::AuthRejected {
            user: user.into(),
            server_text,
        }
    } else {
        Pop3Error::Protocol {
            command: "USER".into(),
            reply: format!("-ERR {server_text}"),
        }
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

// ---- pure parsing -------------------------------------------------------------------------

/// A parsed status line; the text is what follows the indicator, without the line ending.
#[derive(Debug, PartialEq, Eq)]
enum Status<'a> {
    Ok(&'a [u8]),
    Err(&'a [u8]),
}

/// Parses `+OK text` / `-ERR text` (indicator case-insensitive); anything else is `None`.
fn parse_status(line: &[u8]) -> Option<Status<'_>> {
    let line = trim_eol(line);
    if let Some(text) = strip_indicator(line, b"+OK") {
        Some(Status::Ok(text))
    } else {
        strip_indicator(line, b"-ERR").map(Status::Err)
    }
}

fn strip_indicator<'a>(line: &'a [u8], indicator: &[u8]) -> Option<&'a [u8]> {
    if line.len() < indicator.len() || !line[..indicator.len()].eq_ignore_ascii_case(indicator) {
        return None;
    }
    let rest = &line[indicator.len()..];
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii_start()),
        Some(_) => None,
    }
}

/// Removes one trailing `\r\n` or `\n`.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Server bytes made printable and short for errors and logs.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// One line of a multi-line reply, after byte-unstuffing.
#[derive(Debug, PartialEq, Eq)]
enum MultiLine<'a> {
    /// The terminating ".CRLF" (or ".LF").
    End,
    /// A data line with its line ending, its leading termination octet removed if it had one.
    Data(&'a [u8]),
}

/// RFC 1939 section 3: a line starting with "." is either the terminator (nothing but CRLF
/// follows) or has that first "." stripped.
fn unstuff_line(line: &[u8]) -> MultiLine<'_> {
    match line.strip_prefix(b".") {
        Some(b"\r\n" | b"\n") => MultiLine::End,
        Some(rest) => MultiLine::Data(rest),
        None => MultiLine::Data(line),
    }
}

/// `+OK nn mm` of STAT (the text after `+OK`).
fn parse_stat(text: &[u8]) -> Option<(u32, u64)> {
    let mut words = text
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    let count = parse_number(words.next()?)?;
    let size = parse_number(words.next()?)?;
    Some((count, size))
}

/// A LIST scan listing: `msgno size` (anything after is ignored, RFC 1939 allows it).
fn parse_list_line(line: &[u8]) -> Option<(u32, u64)> {
    parse_stat(trim_eol(line))
}

/// A UIDL listing: `msgno uid`, uid being 1 to 70 characters in 0x21..=0x7E (RFC 1939).
/// Longer uids are accepted (some servers exceed 70), up to 512.
fn parse_uidl_line(line: &[u8]) -> Option<(u32, String)> {
    let line = trim_eol(line).trim_ascii();
    let split = line.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let msg = parse_number(&line[..split])?;
    let uid = line[split..].trim_ascii_start();
    if uid.is_empty() || uid.len() > 512 || !uid.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    // Only ASCII is left, so this cannot fail.
    let uid = String::from_utf8(uid.to_vec()).ok()?;
    Some((msg, uid))
}

fn parse_capa_line(line: &[u8]) -> Option<String> {
    Some(shown(trim_eol(line).trim_ascii()))
}

/// A decimal number of ASCII digits only (no sign, no blanks); `None` on overflow.
fn parse_number<T: std::str::FromStr>(word: &[u8]) -> Option<T> {
    if word.is_empty() || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The size that a RETR reply announces, as in `+OK 1234 octets`; 0 if none.
fn announced_size(text: &[u8]) -> usize {
    let mut words = text.split(u8::is_ascii_whitespace);
    match (words.next(), words.next()) {
        (Some(n), Some(unit)) if unit.eq_ignore_ascii_case(b"octets") => {
            parse_number(n).unwrap_or(0)
        }
        _ => 0,
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum UnstuffState {
    /// At the start of a line.
    #[default]
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw "." at the start of a line.
    Dot,
    /// Saw ".\r" at the start of a line.
    DotCr,
}

/// Streaming decoder of a multi-line body: undoes dot-stuffing and finds the terminator,
/// across arbitrary chunk boundaries, without looking at the bytes otherwise.
#[derive(Debug, Default)]
struct Unstuffer {
    state: UnstuffState,
}

impl Unstuffer {
    /// Appends the payload in `input` to `out`. Returns `Some(n)` once the terminator has been
    /// consumed, `n` being the bytes of `input` used (the rest belongs to the next reply), and
    /// `None` when all of `input` was used and more is needed.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                UnstuffState::Mid => match input[i..].iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        out.extend_from_slice(&input[i..=i + pos]);
                        i += pos + 1;
                        self.state = UnstuffState::LineStart;
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        i = input.len();
                    }
                },
                UnstuffState::LineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = UnstuffState::Dot;
                    } else {
                        self.state = UnstuffState::Mid;
                    }
                }
                UnstuffState::Dot => match input[i] {
                    b'\n' => {
                        self.state = UnstuffState::LineStart;
                        return Some(i + 1);
                    }
                    b'\r' => {
                        i += 1;
                        self.state = UnstuffState::DotCr;
                    }
                    // The "." is dropped; the byte itself (even a second ".") is data.
                    _ => self.state = UnstuffState::Mid,
                },
                UnstuffState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = UnstuffState::LineStart;
                        return Some(i + 1);
                    }
                    // ".\r" not followed by "\n": the dot was stuffing, the "\r" is data.
                    out.push(b'\r');
                    self.state = UnstuffState::Mid;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    fn unstuff_all(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut out = Vec::new();
        let used = Unstuffer::default().feed(input, &mut out);
        (out, used)
    }

    /// Feeds `input` in chunks of `size` bytes; returns the body once the terminator is seen.
    fn unstuff_chunked(input: &[u8], size: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut unstuffer = Unstuffer::default();
        for chunk in input.chunks(size) {
            if unstuffer.feed(chunk, &mut out).is_some() {
                return Some(out);
            }
        }
        None
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"+OK ready\r\n"), Some(Status::Ok(b"ready")));
        assert_eq!(parse_status(b"+OK\r\n"), Some(Status::Ok(b"")));
        assert_eq!(parse_status(b"+ok  lower\n"), Some(Status::Ok(b"lower")));
        assert_eq!(
            parse_status(b"-ERR [AUTH] Authentication failed.\r\n"),
            Some(Status::Err(b"[AUTH] Authentication failed."))
        );
        assert_eq!(parse_status(b"-ERR\r\n"), Some(Status::Err(b"")));
        assert_eq!(parse_status(b"+OKAY\r\n"), None);
        assert_eq!(parse_status(b"* OK IMAP4rev1 ready\r\n"), None);
        assert_eq!(parse_status(b"\r\n"), None);
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"+O"), None);
    }

    #[test]
    fn dot_stuffed_line_is_unstuffed() {
        let (out, used) = unstuff_all(b"..foo\r\n.\r\n");
        assert_eq!(out, b".foo\r\n");
        assert_eq!(used, Some(10));
        // A line of just ".." is a line of just ".".
        assert_eq!(unstuff_all(b"a\r\n..\r\nb\r\n.\r\n").0, b"a\r\n.\r\nb\r\n");
        // RFC 1939: a leading "." followed by other octets is stripped even if not doubled.
        assert_eq!(unstuff_all(b".x\r\n.\r\n").0, b"x\r\n");
        assert_eq!(unstuff_all(b".\rx\r\n.\r\n").0, b"\rx\r\n");
    }

    #[test]
    fn eight_bit_bytes_survive_exactly() {
        // ISO-8859-1 "Grüße, Müller" plus bytes that are not valid UTF-8 in any order.
        let body: &[u8] = b"Subject: Gr\xfc\xdfe\r\n\r\nM\xfcller \xff\xfe\x80\x00\x7f\r\n";
        let mut wire = body.to_vec();
        wire.extend_from_slice(b".\r\n");
        assert_eq!(unstuff_all(&wire).0, body);
    }

    #[test]
    fn dot_ends_the_body_only_at_line_start() {
        let (out, used) = unstuff_all(b"a.\r\nb . c\r\n.\r\n");
        assert_eq!(out, b"a.\r\nb . c\r\n");
        assert_eq!(used, Some(14));
        // "\r\n.\r\n" inside a line is not possible; ".\r\n" mid-line is data.
        assert_eq!(unstuff_all(b"x.\r\n.\r\n").0, b"x.\r\n");
        // Empty message.
        assert_eq!(unstuff_all(b".\r\n"), (Vec::new(), Some(3)));
        // Without a terminator, more is needed.
        assert_eq!(unstuff_all(b"a\r\n.").1, None);
        assert_eq!(unstuff_all(b"a\r\n.\r").1, None);
    }

    #[test]
    fn crlf_preserved_and_bare_lf_tolerated() {
        assert_eq!(
            unstuff_all(b"A: b\r\n\r\nline\r\n.\r\n").0,
            b"A: b\r\n\r\nline\r\n"
        );
        let (out, used) = unstuff_all(b"a\nb\n..c\n.\n");
        assert_eq!(out, b"a\nb\n.c\n");
        assert_eq!(used, Some(10));
        // Mixed, and a lone CR inside a line is data.
        assert_eq!(unstuff_all(b"a\rb\r\nc\n.\r\n").0, b"a\rb\r\nc\n");
    }

    #[test]
    fn terminator_leaves_following_bytes_alone() {
        let (out, used) = unstuff_all(b"a\r\n.\r\n+OK next\r\n");
        assert_eq!(out, b"a\r\n");
        assert_eq!(used, Some(6));
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let wire: &[u8] = b"..a\r\n.\rb\r\n\xe9t\xe9\n\r\n..\r\nend.\r\n.\r\n";
        let (whole, _) = unstuff_all(wire);
        assert_eq!(whole, b".a\r\n\rb\r\n\xe9t\xe9\n\r\n.\r\nend.\r\n");
        for size in 1..wire.len() {
            assert_eq!(
                unstuff_chunked(wire, size).as_deref(),
                Some(&whole[..]),
                "{size}"
            );
        }
    }

    #[test]
    fn multiline_listing_lines() {
        assert_eq!(unstuff_line(b".\r\n"), MultiLine::End);
        assert_eq!(unstuff_line(b".\n"), MultiLine::End);
        assert_eq!(unstuff_line(b"..\r\n"), MultiLine::Data(b".\r\n"));
        assert_eq!(unstuff_line(b"1 120\r\n"), MultiLine::Data(b"1 120\r\n"));
        assert_eq!(unstuff_line(b".x\r\n"), MultiLine::Data(b"x\r\n"));
    }

    #[test]
    fn list_and_stat_lines() {
        assert_eq!(parse_list_line(b"1 120\r\n"), Some((1, 120)));
        assert_eq!(
            parse_list_line(b"2 5000000000 extra info\n"),
            Some((2, 5_000_000_000))
        );
        assert_eq!(parse_list_line(b"x 120\r\n"), None);
        assert_eq!(parse_list_line(b"1\r\n"), None);
        assert_eq!(parse_list_line(b"-1 5\r\n"), None);
        assert_eq!(parse_list_line(b"99999999999 5\r\n"), None);
        assert_eq!(parse_stat(b"2 320"), Some((2, 320)));
        assert_eq!(parse_stat(b"0 0 maildrop empty"), Some((0, 0)));
        assert_eq!(parse_stat(b""), None);
        assert_eq!(announced_size(b"1234 octets"), 1234);
        assert_eq!(announced_size(b"message follows"), 0);
    }

    #[test]
    fn uidl_lines() {
        assert_eq!(
            parse_uidl_line(b"1 whqtswO00WBw418f9t5JxYwZ\r\n"),
            Some((1, "whqtswO00WBw418f9t5JxYwZ".to_string()))
        );
        assert_eq!(
            parse_uidl_line(b"12 000000015f3e9c1a\n"),
            Some((12, "000000015f3e9c1a".into()))
        );
        assert_eq!(parse_uidl_line(b"1 \r\n"), None);
        assert_eq!(parse_uidl_line(b"1\r\n"), None);
        assert_eq!(parse_uidl_line(b"a b\r\n"), None);
        assert_eq!(parse_uidl_line(b"1 a b\r\n"), None);
        assert_eq!(parse_uidl_line(b"1 caf\xe9\r\n"), None);
    }

    #[test]
    fn a_login_delay_code_is_too_early_never_a_wrong_password() {
        let e = login_failure(
            LoginStep::Pass,
            "bob",
            "[LOGIN-DELAY] Logins must be at least 1 minute apart".into(),
            Some(Duration::from_secs(60)),
        );
        assert!(matches!(&e, Pop3Error::LoginDelay { delay: Some(d), .. } if d.as_secs() == 60));
        let text = e.to_string();
        assert!(
            text.contains("too early") && text.contains("60 s"),
            "{text}"
        );
        assert!(!text.contains("check `user`"), "{text}");
    }

    #[test]
    fn err_replies_map_to_errors() {
        let e = login_failure(
            LoginStep::Pass,
            "bob",
            "[AUTH] Authentication failed.".into(),
            None,
        );
        assert!(matches!(&e, Pop3Error::AuthRejected { user, .. } if user == "bob"));
        assert_eq!(
            e.to_string(),
            "login rejected for bob: check `user` and `password` (server said: [AUTH] \
             Authentication failed.)"
        );
        assert!(matches!(
            login_failure(LoginStep::Pass, "bob", "invalid password".into(), None),
            Pop3Error::AuthRejected { .. }
        ));
        assert!(matches!(
            login_failure(
                LoginStep::User,
                "bob",
                "[AUTH] Plaintext authentication disallowed on non-secure connections.".into(),
                None,
            ),
            Pop3Error::AuthRejected { .. }
        ));
        assert!(matches!(
            login_failure(LoginStep::User, "bob", "[SYS/TEMP] try later".into(), None),
            Pop3Error::Protocol { command, .. } if command == "USER"
        ));
        assert!(matches!(
            login_failure(LoginStep::Pass, "bob", "[IN-USE] Mailbox locked".into(), None),
            Pop3Error::Protocol { command, .. } if command == "PASS"
        ));
        assert!(Pop3Error::UidlNotSupported
            .to_string()
            .contains("never fetch one twice"));
    }

    #[test]
    fn shown_text_is_bounded_and_printable() {
        assert_eq!(shown(b"a\x1bb\xff"), "a?b\u{fffd}");
        assert_eq!(shown(&[b'x'; 1000]).chars().count(), MAX_SHOWN + 1);
    }

    #[tokio::test]
    async fn line_reader_limits_length() {
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

    // ---- a scripted fake server over loopback -------------------------------------------

    fn tls_config() -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }

    fn timeouts() -> Pop3Timeouts {
        Pop3Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
        }
    }

    /// Serves one connection: sends `greeting`, then for each (expected command, reply) reads
    /// one command line, checks it and writes the reply. Returns the commands received.
    async fn fake_server(
        greeting: &'static [u8],
        script: Vec<(&'static str, Vec<u8>)>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            let mut seen = Vec::new();
            if !greeting.is_empty() {
                socket.get_mut().write_all(greeting).await.unwrap();
            }
            for (expected, reply) in script {
                let mut line = Vec::new();
                if socket.read_until(b'\n', &mut line).await.unwrap() == 0 {
                    break;
                }
                let line = String::from_utf8(line).unwrap();
                assert_eq!(line, format!("{expected}\r\n"));
                seen.push(line.trim_end().to_string());
                socket.get_mut().write_all(&reply).await.unwrap();
            }
            // Drain until the client closes, so a stray command is noticed.
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
            assert!(
                rest.is_empty(),
                "unexpected: {:?}",
                String::from_utf8_lossy(&rest)
            );
            seen
        });
        (port, handle)
    }

    const CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n";

    #[tokio::test]
    async fn full_plain_session() {
        let body: &[u8] =
            b"From: a@example.org\r\nSubject: Gr\xfc\xdfe\r\n\r\n.hidden\r\n.\r\nM\xfcller\r\n";
        let mut retr = b"+OK 77 octets\r\n".to_vec();
        retr.extend_from_slice(b"From: a@example.org\r\nSubject: Gr\xfc\xdfe\r\n\r\n..hidden\r\n..\r\nM\xfcller\r\n.\r\n");
        let script = vec![
            ("CAPA", CAPA.to_vec()),
            ("USER bob", b"+OK\r\n".to_vec()),
            ("PASS s3cret pass", b"+OK Logged in.\r\n".to_vec()),
            ("STAT", b"+OK 2 1200\r\n".to_vec()),
            ("UIDL", b"+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n".to_vec()),
            (
                "LIST",
                b"+OK 2 messages\r\n1 77\r\n2 1123\r\n.\r\n".to_vec(),
            ),
            ("RETR 1", retr),
            ("NOOP", b"+OK\r\n".to_vec()),
            ("DELE 1", b"+OK Marked to be deleted.\r\n".to_vec()),
            ("RETR 9", b"-ERR There's no message 9.\r\n".to_vec()),
            ("QUIT", b"+OK Logging out, messages deleted.\r\n".to_vec()),
        ];
        let (port, server) = fake_server(b"+OK Dovecot ready.\r\n", script).await;
        let mut client = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::Plain,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap();
        assert!(!client.is_tls());
        assert_eq!(
            client.capabilities(),
            ["CAPA", "TOP", "UIDL", "USER", "SASL PLAIN"]
        );
        assert!(client.has_capability("sasl"));
        client.login("bob", "s3cret pass").await.unwrap();
        assert_eq!(client.stat().await.unwrap(), (2, 1200));
        assert_eq!(
            client.uidl().await.unwrap(),
            [(1, "uid-one".to_string()), (2, "uid-two".to_string())]
        );
        assert_eq!(client.list().await.unwrap(), [(1, 77), (2, 1123)]);
        assert_eq!(client.retr(1).await.unwrap(), body);
        client.noop().await.unwrap();
        client.dele_all(&[1]).await.all().unwrap();
        // -ERR on a single-line reply leaves the session usable.
        let err = client.retr(9).await.unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Protocol { command, reply } if command == "RETR 9" && reply.contains("no message 9")),
            "{err:?}"
        );
        client.quit().await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
    }

    #[tokio::test]
    async fn starttls_not_offered_never_downgrades() {
        let script = vec![("CAPA", CAPA.to_vec())];
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let err = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::StartTls,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Pop3Error::StartTlsNotOffered), "{err:?}");
        // The server saw CAPA and nothing else (no USER/PASS in clear).
        assert_eq!(server.await.unwrap(), ["CAPA"]);
    }

    #[tokio::test]
    async fn starttls_goes_to_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            let mut seen = Vec::new();
            socket.get_mut().write_all(b"+OK ready\r\n").await.unwrap();
            for reply in [&b"+OK\r\nSTLS\r\nUIDL\r\n.\r\n"[..], b"+OK Begin TLS.\r\n"] {
                let mut line = Vec::new();
                socket.read_until(b'\n', &mut line).await.unwrap();
                seen.push(String::from_utf8(line).unwrap());
                socket.get_mut().write_all(reply).await.unwrap();
            }
            // Read the ClientHello, then hang up instead of answering it.
            let mut hello = [0u8; 5];
            socket.read_exact(&mut hello).await.unwrap();
            assert_eq!(hello[0], 0x16, "a TLS handshake record");
            seen
        });
        let err = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::StartTls,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Pop3Error::Connect(ConnectError::Tls(_))),
            "{err:?}"
        );
        assert_eq!(server.await.unwrap(), ["CAPA\r\n", "STLS\r\n"]);
    }

    #[tokio::test]
    async fn data_injected_before_tls_is_refused() {
        let capa = b"+OK\r\nSTLS\r\n.\r\n".to_vec();
        let script = vec![
            ("CAPA", capa),
            ("STLS", b"+OK Begin TLS.\r\n+OK injected\r\n".to_vec()),
        ];
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let err = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::StartTls,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Protocol { command, .. } if command == "STLS"),
            "{err:?}"
        );
        server.await.unwrap();
    }

    /// RFC 5034 AUTH with a bearer message: the message follows the server's `+`, and a second
    /// `+` (the server's error details, as XOAUTH2 sends them) is answered so the server can say
    /// -ERR. Neither the token nor its base64 form shows in the error.
    #[tokio::test]
    async fn sasl_auth_sends_the_message_after_the_continuation_and_gives_up_cleanly() {
        use base64::Engine;
        let message = crate::secret::Secret::new("user=bob\x01auth=Bearer tok-123\x01\x01");
        let b64: &'static str = Box::leak(
            base64::engine::general_purpose::STANDARD
                .encode(message.expose())
                .into_boxed_str(),
        );
        for accepted in [true, false] {
            let mut script = vec![
                ("CAPA", b"+OK\r\nSASL XOAUTH2\r\n.\r\n".to_vec()),
                ("AUTH XOAUTH2", b"+ \r\n".to_vec()),
            ];
            if accepted {
                script.push((b64, b"+OK Logged in.\r\n".to_vec()));
            } else {
                script.push((b64, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n".to_vec()));
                script.push(("", b"-ERR [AUTH] Authentication failed.\r\n".to_vec()));
            }
            let (port, server) = fake_server(b"+OK ready\r\n", script).await;
            let mut client = Pop3Client::connect(
                "127.0.0.1",
                port,
                Pop3Security::Plain,
                tls_config(),
                timeouts(),
            )
            .await
            .unwrap();
            let result = client.authenticate("bob", "XOAUTH2", &message, b"").await;
            if accepted {
                result.unwrap();
            } else {
                let err = result.unwrap_err();
                assert!(matches!(err, Pop3Error::AuthRejected { .. }), "{err:?}");
                let text = format!("{err} {err:?}");
                assert!(
                    text.contains("bob") && !text.contains("tok-123") && !text.contains(b64),
                    "{text}"
                );
            }
            drop(client);
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn rejected_login_hides_the_password() {
        let script = vec![
            ("CAPA", b"-ERR unknown command\r\n".to_vec()),
            ("USER bob", b"+OK\r\n".to_vec()),
            (
                "PASS hunter2",
                b"-ERR [AUTH] Authentication failed.\r\n".to_vec(),
            ),
        ];
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let mut client = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::Plain,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap();
        assert!(client.capabilities().is_empty());
        let err = client.login("bob", "hunter2").await.unwrap_err();
        assert!(matches!(err, Pop3Error::AuthRejected { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("bob") && !text.contains("hunter2"), "{text}");
        assert!(client.login("bob", "a\r\nDELE 1").await.is_err());
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn uidl_refused_is_reported() {
        let script = vec![
            ("CAPA", b"+OK\r\nUSER\r\n.\r\n".to_vec()),
            ("UIDL", b"-ERR unknown command\r\n".to_vec()),
        ];
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let mut client = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::Plain,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap();
        assert!(matches!(
            client.uidl().await,
            Err(Pop3Error::UidlNotSupported)
        ));
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bad_listing_line_fails_but_keeps_the_session() {
        let script = vec![
            ("CAPA", b"+OK\r\nUIDL\r\n.\r\n".to_vec()),
            ("UIDL", b"+OK\r\n1 good\r\n2 bad uid\r\n.\r\n".to_vec()),
            ("NOOP", b"+OK\r\n".to_vec()),
        ];
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let mut client = Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::Plain,
            tls_config(),
            timeouts(),
        )
        .await
        .unwrap();
        let err = client.uidl().await.unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Protocol { reply, .. } if reply == "2 bad uid"),
            "{err:?}"
        );
        client.noop().await.unwrap();
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out_and_breaks_the_session() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"+OK ready\r\n").await.unwrap();
            // Answer CAPA, then go silent in the middle of RETR.
            let mut buf = [0u8; 64];
            let _ = socket.read(&mut buf).await;
            socket.write_all(b"+OK\r\n.\r\n").await.unwrap();
            let _ = socket.read(&mut buf).await;
            socket.write_all(b"+OK\r\nhalf a mail\r\n").await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        });
        // The usual timeouts while the server answers (greeting, CAPA); the short one only for
        // RETR, where the server goes silent for good, so it can only fire there (at the
        // status line if the answer is slow, or mid-body: either way RETR 1 timed out).
        let mut client = connected(port, timeouts()).await;
        client.timeouts.command = Duration::from_millis(200);
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

    #[tokio::test]
    async fn no_greeting_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        });
        let short = Pop3Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_millis(200),
        };
        let err = Pop3Client::connect("127.0.0.1", port, Pop3Security::Plain, tls_config(), short)
            .await
            .unwrap_err();
        assert!(matches!(&err, Pop3Error::Timeout { command } if command.contains("greeting")));
        server.await.unwrap();
    }

    // ---- pipelining (RFC 2449 PIPELINING) -----------------------------------------------

    const CAPA_PIPELINING: &[u8] = b"+OK\r\nUIDL\r\nPIPELINING\r\nUSER\r\n.\r\n";

    /// A client signed in to `port` (the fake server's CAPA decides about pipelining).
    async fn connected(port: u16, timeouts: Pop3Timeouts) -> Pop3Client {
        Pop3Client::connect(
            "127.0.0.1",
            port,
            Pop3Security::Plain,
            tls_config(),
            timeouts,
        )
        .await
        .unwrap()
    }

    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }

    #[tokio::test]
    async fn pipelined_replies_are_matched_to_their_commands_in_order() {
        let bodies: [&[u8]; 3] = [b"one\r\n", b"+OK not a status\r\n.\r\n", b""];
        let wire: [&[u8]; 3] = [b"one\r\n", b"+OK not a status\r\n..\r\n", b""];
        let mut script = vec![("CAPA", CAPA_PIPELINING.to_vec())];
        for (i, body) in wire.iter().enumerate() {
            let mut reply = format!("+OK {} octets\r\n", body.len()).into_bytes();
            reply.extend_from_slice(body);
            reply.extend_from_slice(b".\r\n");
            script.push((leak(format!("RETR {}", i + 1)), reply));
        }
        for i in 1..=3 {
            script.push((leak(format!("DELE {i}")), b"+OK Marked.\r\n".to_vec()));
        }
        script.push(("QUIT", b"+OK Logging out.\r\n".to_vec()));
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let mut client = connected(port, timeouts()).await;
        let fetched = client.retr_all(&[1, 2, 3]).await.all().unwrap();
        let expected: Vec<(u32, Vec<u8>)> = (1..=3).zip(bodies.map(<[u8]>::to_vec)).collect();
        assert_eq!(fetched, expected);
        let deleted = client.dele_all(&[1, 2, 3]).await.all().unwrap();
        assert_eq!(deleted, [(1, ()), (2, ()), (3, ())]);
        assert_eq!(client.marked, 3);
        client.quit().await.unwrap();
        server.await.unwrap();
    }

    /// A refused DELE in the middle of a window: the error names it, nothing more is sent, the
    /// replies in flight are read (the session goes on), and only what the server accepted
    /// counts as marked.
    #[tokio::test]
    async fn a_refused_dele_mid_window_is_named_and_only_accepted_ones_count_as_marked() {
        let mut script = vec![("CAPA", CAPA_PIPELINING.to_vec())];
        // 40 messages: the first window is 1..=32; nothing after it may be sent.
        for i in 1..=PIPELINE_WINDOW {
            let reply: &[u8] = if i == 5 {
                b"-ERR Message is deleted.\r\n"
            } else {
                b"+OK Marked to be deleted.\r\n"
            };
            script.push((leak(format!("DELE {i}")), reply.to_vec()));
        }
        script.push(("NOOP", b"+OK\r\n".to_vec()));
        let (port, server) = fake_server(b"+OK ready\r\n", script).await;
        let mut client = connected(port, timeouts()).await;
        let msgs: Vec<u32> = (1..=40).collect();
        let replies = client.dele_all(&msgs).await;
        let accepted: Vec<u32> = replies.accepted.iter().map(|(m, _)| *m).collect();
        let expected: Vec<u32> = (1..=32).filter(|&m| m != 5).collect();
        assert_eq!(accepted, expected);
        assert_eq!(client.marked, 31);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Protocol { command, reply })
                if command == "DELE 5" && reply == "-ERR Message is deleted."),
            "{:?}",
            replies.failure
        );
        client.noop().await.unwrap();
        drop(client);
        server.await.unwrap();
    }

    // The fake servers below take the client's commands as events, never as what arrived
    // before a quiet spell: a quiet gap of a few hundred milliseconds is also what a loaded
    // machine puts between two writes of a correct client. tokio's paused clock is no way out
    // here: it jumps to the next timer whenever the runtime is idle, and a loopback write whose
    // delivery the kernel deferred leaves it idle, so a command timeout would fire early.

    /// Reads the next `n` command lines, however long they take to come. (The bound only turns
    /// a client that never sends them into a failure instead of a hang.)
    async fn read_lines(socket: &mut BufReader<tokio::net::TcpStream>, n: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(n);
        while lines.len() < n {
            let mut line = Vec::new();
            let read = socket.read_until(b'\n', &mut line);
            match tokio::time::timeout(Duration::from_secs(30), read).await {
                Ok(Ok(k)) if k > 0 => lines.push(String::from_utf8(line).unwrap()),
                other => panic!("expected {n} command lines, got {lines:?}, then {other:?}"),
            }
        }
        lines
    }

    /// Asserts that the client has sent nothing beyond the lines read so far, at a moment when
    /// it waits for a reply. The tests run on tokio's current-thread runtime, so while the fake
    /// server runs the client is parked at an await point; before the server's next reply the
    /// only one it can reach is the read of that reply, and everything it wrote up to there
    /// is in the server's socket (loopback). So no quiet spell is needed: what is not there now
    /// was not sent before the reply. (Should the kernel still hold back part of a write, this
    /// could only miss a misbehaving client, never fail a correct one.)
    fn assert_nothing_more_sent(socket: &mut BufReader<tokio::net::TcpStream>) {
        assert_eq!(
            tokio::runtime::Handle::current().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread,
            "the client must not run while the fake server looks"
        );
        let buffered = String::from_utf8_lossy(socket.buffer()).into_owned();
        assert!(buffered.is_empty(), "sent before the reply: {buffered:?}");
        let mut more = [0u8; 512];
        match socket.get_ref().try_read(&mut more) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => panic!("the client closed the connection instead of waiting for the reply"),
            Ok(n) => panic!(
                "sent before the reply: {:?}",
                String::from_utf8_lossy(&more[..n])
            ),
            Err(e) => panic!("reading the client's socket: {e}"),
        }
    }

    /// Serves greeting and `capa`, then hands the socket to `then`.
    async fn serve_after_capa<F, Fut>(capa: &'static [u8], then: F) -> (u16, JoinHandle<()>)
    where
        F: FnOnce(BufReader<tokio::net::TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            socket.get_mut().write_all(b"+OK ready\r\n").await.unwrap();
            assert_eq!(read_lines(&mut socket, 1).await, ["CAPA\r\n"]);
            assert_nothing_more_sent(&mut socket);
            socket.get_mut().write_all(capa).await.unwrap();
            then(socket).await;
        });
        (port, handle)
    }

    /// A server that answers slowly never has more than the window unanswered, and a connection
    /// dropped mid-window names the command whose reply was cut off.
    #[tokio::test]
    async fn pipelining_keeps_at_most_one_window_unanswered() {
        let (port, server) = serve_after_capa(CAPA_PIPELINING, |mut socket| async move {
            // A whole window before any reply, and not one command more.
            let first = read_lines(&mut socket, PIPELINE_WINDOW).await;
            assert_nothing_more_sent(&mut socket);
            assert_eq!(first[0], "DELE 1\r\n");
            assert_eq!(
                first[PIPELINE_WINDOW - 1],
                format!("DELE {PIPELINE_WINDOW}\r\n")
            );
            // Half the window answered: the next chunk fills it up again, and no more.
            let half = "+OK\r\n".repeat(PIPELINE_WINDOW / 2);
            socket.get_mut().write_all(half.as_bytes()).await.unwrap();
            let next = read_lines(&mut socket, PIPELINE_WINDOW / 2).await;
            assert_nothing_more_sent(&mut socket);
            assert_eq!(next[0], format!("DELE {}\r\n", PIPELINE_WINDOW + 1));
        })
        .await;
        let mut client = connected(port, timeouts()).await;
        let msgs: Vec<u32> = (1..=100).collect();
        let replies = client.dele_all(&msgs).await;
        assert_eq!(replies.accepted.len(), PIPELINE_WINDOW / 2);
        let cut = format!("DELE {}", PIPELINE_WINDOW / 2 + 1);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Closed { command }) if *command == cut),
            "{:?}",
            replies.failure
        );
        server.await.unwrap();
    }

    /// Without PIPELINING in CAPA every command waits for the reply to the one before.
    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_the_previous_reply() {
        let capa = b"+OK\r\nUIDL\r\nUSER\r\n.\r\n";
        let (port, server) = serve_after_capa(capa, |mut socket| async move {
            for i in 1..=3 {
                assert_eq!(read_lines(&mut socket, 1).await, [format!("RETR {i}\r\n")]);
                assert_nothing_more_sent(&mut socket);
                let reply = format!("+OK\r\nmail {i}\r\n.\r\n");
                socket.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            // Nothing after the third reply, up to the end of the session.
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        })
        .await;
        let mut client = connected(port, timeouts()).await;
        let fetched = client.retr_all(&[1, 2, 3]).await.all().unwrap();
        assert_eq!(fetched[2], (3, b"mail 3\r\n".to_vec()));
        drop(client);
        server.await.unwrap();
    }

    /// A server that stalls in the middle of a pipelined RETR body: the timeout names that RETR,
    /// the mails before it are answered, and the session refuses further commands.
    #[tokio::test]
    async fn a_timeout_mid_window_names_the_command_and_breaks_the_session() {
        let (port, server) = serve_after_capa(CAPA_PIPELINING, |mut socket| async move {
            // Everything this server will ever say goes out at once, ahead of the commands (the
            // client reads it when it gets there): the client's short timeout can then only
            // fire where the server is silent for good, never while an answer is on its way.
            let replies = b"+OK\r\nfirst\r\n.\r\n+OK\r\nhalf of the sec";
            socket.get_mut().write_all(replies).await.unwrap();
            assert_eq!(
                read_lines(&mut socket, 3).await,
                ["RETR 1\r\n", "RETR 2\r\n", "RETR 3\r\n"]
            );
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        let mut client = connected(port, timeouts()).await;
        client.timeouts.command = Duration::from_millis(500);
        let replies = client.retr_all(&[1, 2, 3]).await;
        assert_eq!(replies.accepted, [(1, b"first\r\n".to_vec())]);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Timeout { command }) if command == "RETR 2"),
            "{:?}",
            replies.failure
        );
        assert!(matches!(
            client.noop().await,
            Err(Pop3Error::ConnectionBroken { .. })
        ));
        drop(client);
        server.await.unwrap();
    }

    #[test]
    fn quit_may_take_longer_the_more_messages_are_marked() {
        let usual = Duration::from_secs(60);
        assert_eq!(quit_deadline(usual, 0), usual);
        assert_eq!(quit_deadline(usual, 1), usual + Duration::from_millis(10));
        assert_eq!(quit_deadline(usual, 10_000), Duration::from_secs(160));
        assert!(quit_deadline(usual, usize::MAX) > Duration::from_secs(1_000_000));
    }
}
