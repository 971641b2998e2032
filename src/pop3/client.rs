//! POP3 client (RFC 1939 USER/PASS, RFC 2449 CAPA, RFC 2595 STLS) on tokio over
//! [`crate::net::MailStream`]: [`Pop3Client`], one method per command.
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
//! The client's parts, each in a file of its own: the connection with its deadlines and the rule
//! that a session out of step refuses further commands ([`super::transport`]), what the server's
//! lines mean ([`super::response`]), USER/PASS and SASL ([`super::auth`]), RETR and DELE for
//! many messages, pipelined where offered ([`super::pipeline`]), and [`Pop3Error`].
//!
//! Deletions are committed only by [`Pop3Client::quit`]. Dropping the client closes the connection
//! without QUIT, so the server keeps every message.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::auth;
use super::pipeline::{self, PerMessage};
use super::response::{
    parse_capa_line, parse_list_line, parse_stat, parse_uidl_line, shown, Reply,
};
use super::transport::Transport;
use crate::net::{self, MailStream};

pub use super::error::Pop3Error;
pub use super::pipeline::Replies;

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

/// Deadlines per network operation (see [`super::transport`]).
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

/// A POP3 session. Obtain one with [`Pop3Client::connect`], then [`Pop3Client::login`].
#[derive(Debug)]
pub struct Pop3Client {
    wire: Transport,
    capabilities: Vec<String>,
    /// Messages the server accepted a DELE for in this session (removed at QUIT).
    marked: usize,
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
        let mut client = Self::secure(tcp, host, security, tls, timeouts, timeouts.command).await?;
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

    /// The stage of [`Pop3Client::connect`] after the TCP connect: TLS from the first byte, or
    /// the greeting, CAPA and STLS on the plain socket and then TLS; or the greeting alone
    /// without encryption. The capabilities are not asked for yet. `plain_greeting` bounds the
    /// wait for the greeting on a plain socket: `test-fetch` waits less there, because a server
    /// on an implicit-TLS port waits for our TLS hello and never greets.
    pub async fn secure(
        tcp: TcpStream,
        host: &str,
        security: Pop3Security,
        tls: Arc<rustls::ClientConfig>,
        timeouts: Pop3Timeouts,
        plain_greeting: Duration,
    ) -> Result<Self, Pop3Error> {
        let greeted = |stream, within| async move {
            let mut client = Self::from_stream(stream, timeouts);
            client.read_greeting(within).await?;
            Ok::<_, Pop3Error>(client)
        };
        Ok(match security {
            Pop3Security::Implicit => {
                let stream = net::start_tls(tcp, host, tls, timeouts.connect).await?;
                greeted(stream, timeouts.command).await?
            }
            Pop3Security::Plain => greeted(MailStream::Plain(tcp), plain_greeting).await?,
            Pop3Security::StartTls => {
                let mut plain = greeted(MailStream::Plain(tcp), plain_greeting).await?;
                plain.refresh_capabilities().await?;
                let tcp = plain.stls().await?;
                // A new session over TLS: capabilities seen before TLS are not trustworthy
                // (RFC 2595 section 4), so the caller asks again.
                let stream = net::start_tls(tcp, host, tls, timeouts.connect).await?;
                Self::from_stream(stream, timeouts)
            }
        })
    }

    /// STLS (RFC 2595) after the greeting and CAPA: refused unless CAPA lists STLS. Returns the
    /// plain socket, ready for the TLS handshake; the session continues over TLS in a new
    /// client (see [`Pop3Client::from_stream`]) without a second greeting.
    pub async fn stls(mut self) -> Result<TcpStream, Pop3Error> {
        if !self.has_capability("STLS") {
            return Err(Pop3Error::StartTlsNotOffered);
        }
        self.wire.simple("STLS", b"STLS\r\n").await?;
        self.wire.into_plain_for_tls()
    }

    pub fn from_stream(stream: MailStream, timeouts: Pop3Timeouts) -> Self {
        Self {
            wire: Transport::new(stream, timeouts.command),
            capabilities: Vec::new(),
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
        self.wire.is_tls()
    }

    /// The TLS version of the session; `None` without encryption.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.wire.tls_version()
    }

    /// USER/PASS login. The password is never logged nor put in an error.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Pop3Error> {
        let delay = self.login_delay();
        auth::user_pass(&mut self.wire, user, password, delay).await
    }

    /// SASL `AUTH` (RFC 5034) with one client message, e.g. XOAUTH2 or OAUTHBEARER with a
    /// token; see [`auth::sasl`]. `after_error` answers a second challenge (the server's error
    /// details) so it can finish. Neither the message nor its base64 form is ever logged or put
    /// in an error.
    pub async fn authenticate(
        &mut self,
        user: &str,
        mechanism: &str,
        message: &crate::secret::Secret,
        after_error: &[u8],
    ) -> Result<(), Pop3Error> {
        let delay = self.login_delay();
        auth::sasl(&mut self.wire, user, mechanism, message, after_error, delay).await
    }

    /// STAT: (number of messages, total size in octets).
    pub async fn stat(&mut self) -> Result<(u32, u64), Pop3Error> {
        let text = self.wire.simple("STAT", b"STAT\r\n").await?;
        parse_stat(text.as_bytes()).ok_or(Pop3Error::Protocol {
            command: "STAT".into(),
            reply: shown(text.as_bytes()),
        })
    }

    /// LIST without argument: (message number, size in octets) for every message.
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        self.wire.simple("LIST", b"LIST\r\n").await?;
        self.wire.read_listing("LIST", parse_list_line).await
    }

    /// UIDL without argument: (message number, unique id) for every message.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        match self.wire.command("UIDL", b"UIDL\r\n").await? {
            Reply::Ok(_) => self.wire.read_listing("UIDL", parse_uidl_line).await,
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
        let pipelining = self.has_capability("PIPELINING");
        pipeline::per_message(&mut self.wire, pipelining, PerMessage::Retr, msgs).await
    }

    /// `TOP n 0` for each of `msgs` (pipelined where offered): each message's header and the
    /// empty line after it, as [`Pop3Client::retr`] returns a body, cut after `limit` bytes.
    /// TOP is optional (RFC 1939): see [`Pop3Client::offers_top`].
    pub async fn headers_all(&mut self, msgs: &[u32], limit: usize) -> Replies<Vec<u8>> {
        let pipelining = self.has_capability("PIPELINING");
        let kind = PerMessage::Header { limit };
        pipeline::per_message(&mut self.wire, pipelining, kind, msgs).await
    }

    /// Whether TOP may be tried: the server lists it in CAPA, or has no CAPA at all (an RFC
    /// 1939-only server, which may well have TOP).
    pub fn offers_top(&self) -> bool {
        self.capabilities.is_empty() || self.has_capability("TOP")
    }

    /// DELE for each of `msgs` (pipelined where offered): marks them for deletion at QUIT.
    /// `accepted` lists exactly the messages the server answered +OK for.
    pub async fn dele_all(&mut self, msgs: &[u32]) -> Replies<()> {
        let pipelining = self.has_capability("PIPELINING");
        let replies =
            pipeline::per_message(&mut self.wire, pipelining, PerMessage::Dele, msgs).await;
        self.marked += replies.accepted.len();
        Replies {
            accepted: replies.accepted.into_iter().map(|(m, _)| (m, ())).collect(),
            failure: replies.failure,
        }
    }

    /// NOOP: keeps the session alive / checks that it still is.
    pub async fn noop(&mut self) -> Result<(), Pop3Error> {
        self.wire.simple("NOOP", b"NOOP\r\n").await.map(drop)
    }

    /// QUIT: the server commits the deletions and closes the session. An error means the
    /// deletions may not have been committed.
    pub async fn quit(mut self) -> Result<(), Pop3Error> {
        let usual = self.wire.timeout;
        self.wire.timeout = quit_deadline(usual, self.marked);
        let reply = self.wire.simple("QUIT", b"QUIT\r\n").await;
        self.wire.timeout = usual;
        reply?;
        // Best effort (sends TLS close_notify); the session is already over.
        self.wire.shutdown().await;
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
        let usual = std::mem::replace(&mut self.wire.timeout, within);
        let reply = self.wire.read_reply(command).await;
        self.wire.timeout = usual;
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
        self.capabilities = match self.wire.command("CAPA", b"CAPA\r\n").await? {
            Reply::Ok(_) => {
                let mut caps = self.wire.read_listing("CAPA", parse_capa_line).await?;
                caps.retain(|c| !c.is_empty());
                caps
            }
            // RFC 1939-only server: no capability list.
            Reply::Err(_) => Vec::new(),
        };
        tracing::debug!(capabilities = ?self.capabilities, "POP3 CAPA");
        Ok(())
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

#[cfg(test)]
impl Pop3Client {
    /// The command timeout from here on: a test of a silent server shortens it once the
    /// greeting and CAPA are through, so that it can only fire where the server falls silent.
    pub(super) fn set_command_timeout(&mut self, timeout: Duration) {
        self.wire.timeout = timeout;
    }

    /// How many messages the server accepted a DELE for (what QUIT will remove).
    pub(super) fn marked(&self) -> usize {
        self.marked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnectError;
    use crate::pop3::test_server::{connect, connected, fake_server, serve_one, session, timeouts};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    const CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n";

    #[tokio::test]
    async fn a_plain_session_runs_every_command_up_to_quit() {
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
        let mut client = connected(port).await;
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
        let err = connect(port, Pop3Security::StartTls, timeouts())
            .await
            .unwrap_err();
        assert!(matches!(err, Pop3Error::StartTlsNotOffered), "{err:?}");
        // The server saw CAPA and nothing else (no USER/PASS in clear).
        assert_eq!(server.await.unwrap(), ["CAPA"]);
    }

    #[tokio::test]
    async fn an_accepted_stls_goes_on_to_the_tls_handshake() {
        let (port, server) = serve_one(|socket| async move {
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
        })
        .await;
        let err = connect(port, Pop3Security::StartTls, timeouts())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Pop3Error::Connect(ConnectError::Tls { .. })),
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
        let err = connect(port, Pop3Security::StartTls, timeouts())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Protocol { command, .. } if command == "STLS"),
            "{err:?}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_refusing_uidl_is_reported_as_without_uidl() {
        let script = vec![
            ("CAPA", b"+OK\r\nUSER\r\n.\r\n".to_vec()),
            ("UIDL", b"-ERR unknown command\r\n".to_vec()),
        ];
        let (mut client, server) = session(script).await;
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
        let (mut client, server) = session(script).await;
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
    async fn a_server_that_never_greets_times_out_at_the_greeting() {
        let (port, server) = serve_one(|mut socket| async move {
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        let short = Pop3Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_millis(200),
        };
        let err = connect(port, Pop3Security::Plain, short).await.unwrap_err();
        assert!(matches!(&err, Pop3Error::Timeout { command } if command.contains("greeting")));
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
