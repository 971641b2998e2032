//! `test-send` and the SMTP steps that `test-fetch` also uses to send its test mail.
//!
//! The dialogue up to TLS (greeting, EHLO, STARTTLS) is done here byte by byte so every reply can
//! be shown and the handshake goes through the same rustls verification and explanations as IMAP
//! and POP3 (issuer of an untrusted certificate, plain text on a TLS port ...). The stream is then
//! handed to lettre's [`AsyncSmtpConnection`] (EHLO, AUTH, MAIL FROM, RCPT TO, DATA), replaying
//! the greeting it expects, so each step shows the server's reply text.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::net::{self as dnet, LineError, Service};
use super::token::token_step;
use super::{find_account, Fail, Report, GREETING_TIMEOUT};
use crate::config::{AccountConfig, AuthMethod, Config, Encryption, MailProtocol, SmtpConfig};
use crate::ingest::parse::TEST_HEADER;
use crate::net::MailStream;
use crate::secret::Secret;

/// A dated test mail, marked with [`TEST_HEADER`] so ingestion disposes of it without a ticket.
#[derive(Debug, Clone)]
pub struct TestMail {
    pub stamp: String,
    pub subject: String,
    pub envelope: Envelope,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone)]
struct TestMarker(String);

impl Header for TestMarker {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(TEST_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(TestMarker(s.trim().to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// From the account's address with its sender name, Reply-To its `reply_to` (else its own
/// address), to `to`; subject `mail2ticket test <stamp>`.
pub fn test_mail(account: &AccountConfig, to: &str, stamp: &str) -> Result<TestMail, Fail> {
    let from_addr = account.email.parse().map_err(|e| {
        Fail::hint(
            format!(
                "the account's address {:?} is not valid: {e}",
                account.email
            ),
            "fix `email`",
        )
    })?;
    let to_addr = to
        .parse()
        .map_err(|e| Fail::hint(format!("{to:?} is not a valid address: {e}"), "fix --to"))?;
    let reply_to_text = account.reply_to.as_deref().unwrap_or(&account.email);
    let reply_to: Mailbox = reply_to_text.parse().map_err(|e| {
        Fail::hint(
            format!("reply_to {reply_to_text:?} is not a valid address: {e}"),
            "fix `reply_to`",
        )
    })?;
    let subject = format!("mail2ticket test {stamp}");
    let body = format!(
        "This is a test mail from mail2ticket, sent at {stamp} for the account \"{}\".\r\n\
         mail2ticket recognises it by its {TEST_HEADER} header and disposes of it like any \
         other mail of the account (action), without creating a ticket or sending a reply.\r\n",
        account.name
    );
    let message = Message::builder()
        .from(Mailbox::new(account.sender_name.clone(), from_addr))
        .reply_to(reply_to)
        .to(Mailbox::new(None, to_addr))
        .subject(subject.clone())
        .date_now()
        .message_id(None)
        .header(TestMarker(crate::ingest::testmail::marker(
            &account.test_mail_key(),
            &account.email,
            stamp,
        )))
        .body(body)
        .map_err(|e| Fail::new(format!("cannot build the test mail: {e}")))?;
    Ok(TestMail {
        stamp: stamp.to_string(),
        subject,
        envelope: message.envelope().clone(),
        raw: message.formatted(),
    })
}

/// Runs the SMTP steps for `mail` into `report`; returns the server's reply to the message
/// (e.g. "250 2.0.0 Ok: queued as 4F2B") when it was accepted.
pub async fn smtp_steps(
    config: &Config,
    smtp: &SmtpConfig,
    mail: &TestMail,
    report: &mut Report,
) -> Option<String> {
    let token = match (smtp.auth, &smtp.oauth2) {
        (AuthMethod::Oauth2, Some(o)) => {
            let step = token_step(
                report,
                "smtp",
                o,
                MailProtocol::Smtp,
                &config.store.path,
                smtp.timeout,
            );
            Some(step.await?)
        }
        _ => None,
    };
    let token = token.as_ref();
    let host = smtp.host.as_str();
    let port = smtp.port();
    let timeout = smtp.timeout;
    let svc = Service::Smtp;
    let addrs = report
        .run("resolve host", dnet::resolve(svc, host, port, timeout))
        .await?;
    let tcp = report
        .run("connect", dnet::connect(svc, host, port, &addrs, timeout))
        .await?;
    let (stream, greeting) = match smtp.encryption {
        Encryption::Ssl => {
            let mut tls = report
                .run(
                    "TLS",
                    dnet::handshake(
                        svc,
                        tcp,
                        host,
                        smtp.encryption,
                        smtp.ca_file.as_deref(),
                        timeout,
                    ),
                )
                .await?;
            let greeting = report
                .run("greeting", async {
                    let reply = read_reply(&mut tls, timeout).await.map_err(|e| {
                        dnet::no_greeting(svc, host, port, smtp.encryption, e, timeout)
                    })?;
                    greeting_ok(&reply)?;
                    Ok((reply.raw.clone(), reply.text()))
                })
                .await?;
            (tls, greeting)
        }
        Encryption::Starttls => {
            let mut plain = MailStream::Plain(tcp);
            report
                .run("greeting", async {
                    let wait = timeout.min(GREETING_TIMEOUT);
                    let reply = read_reply(&mut plain, wait).await.map_err(|e| {
                        dnet::no_greeting(svc, host, port, smtp.encryption, e, wait)
                    })?;
                    greeting_ok(&reply)?;
                    Ok(((), reply.text()))
                })
                .await?;
            let tls = report.run("TLS", starttls(smtp, plain, timeout)).await?;
            // lettre reads a greeting first; after STARTTLS the server sends none (RFC 3207), so
            // it gets this stand-in and then says EHLO over TLS.
            (
                tls,
                b"220 mail2ticket: TLS established after STARTTLS\r\n".to_vec(),
            )
        }
        Encryption::None => {
            let mut plain = MailStream::Plain(tcp);
            let greeting = report
                .run("greeting", async {
                    let wait = timeout.min(GREETING_TIMEOUT);
                    let reply = read_reply(&mut plain, wait).await.map_err(|e| {
                        dnet::no_greeting(svc, host, port, smtp.encryption, e, wait)
                    })?;
                    greeting_ok(&reply)?;
                    Ok((reply.raw.clone(), reply.text()))
                })
                .await?;
            (plain, greeting)
        }
    };
    // lettre only knows the stream as "custom", so it cannot tell whether it is encrypted.
    let encrypted = smtp.encryption != Encryption::None;
    let replay = Replay {
        prefix: greeting,
        pos: 0,
        inner: stream,
    };
    let mut conn = report
        .run("EHLO", async {
            let conn = timed(
                timeout,
                "EHLO",
                AsyncSmtpConnection::connect_with_transport(Box::new(replay), &ClientId::default()),
            )
            .await?;
            let detail = server_features(&conn, encrypted);
            Ok((conn, detail))
        })
        .await?;
    let accepted = session_steps(smtp, mail, &mut conn, encrypted, token, report).await;
    if accepted.is_some() {
        let _ = tokio::time::timeout(timeout, conn.quit()).await;
    } else {
        let _ = tokio::time::timeout(timeout, conn.abort()).await;
    }
    accepted
}

async fn session_steps(
    smtp: &SmtpConfig,
    mail: &TestMail,
    conn: &mut AsyncSmtpConnection,
    encrypted: bool,
    token: Option<&Secret>,
    report: &mut Report,
) -> Option<String> {
    let timeout = smtp.timeout;
    report
        .run("AUTH", async {
            let Some(user) = smtp.user.as_deref() else {
                return Ok((
                    (),
                    "skipped: [smtp] has no user, sending without login".to_string(),
                ));
            };
            if let Some(token) = token {
                let credentials = Credentials::new(user.to_string(), token.expose().to_string());
                let auth = conn.auth(&[Mechanism::Xoauth2], &credentials);
                return match tokio::time::timeout(timeout, auth).await {
                    Err(_) => Err(timeout_fail("AUTH", timeout)),
                    Ok(Ok(reply)) => Ok((
                        (),
                        format!("logged in as {user} by XOAUTH2: {}", reply_text(&reply)),
                    )),
                    Ok(Err(e)) if e.status().is_some() => Err(Fail::hint(
                        format!(
                            "SMTP login with the token refused for {user} (server said: {})",
                            server_said(&e)
                        ),
                        super::token::REFUSED_TOKEN_HINT,
                    )),
                    Ok(Err(e)) => Err(Fail::new(format!("AUTH failed: {}", server_said(&e)))),
                };
            }
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if conn.server_info().get_auth_mechanism(&mechanisms).is_none() {
                let hint = if encrypted {
                    "leave out [smtp] user and password if this server needs no login, or use \
                     the submission port (587) or 465"
                } else {
                    "most servers only offer AUTH over TLS: use encryption = \"starttls\" or \
                     \"ssl\""
                };
                return Err(Fail::hint(
                    "the server offers no AUTH PLAIN or LOGIN on this connection".to_string(),
                    hint,
                ));
            }
            let password = smtp
                .resolved_password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            let credentials = Credentials::new(user.to_string(), password);
            match tokio::time::timeout(timeout, conn.auth(&mechanisms, &credentials)).await {
                Err(_) => Err(timeout_fail("AUTH", timeout)),
                Ok(Ok(reply)) => Ok(((), format!("logged in as {user}: {}", reply_text(&reply)))),
                Ok(Err(e)) if e.status().is_some() => Err(Fail::hint(
                    format!(
                        "SMTP login rejected for {user} (server said: {})",
                        server_said(&e)
                    ),
                    "check [smtp] user and password",
                )),
                Ok(Err(e)) => Err(Fail::new(format!("AUTH failed: {}", server_said(&e)))),
            }
        })
        .await?;
    report
        .run("MAIL FROM", async {
            let from = mail.envelope.from().cloned();
            let shown = from.as_ref().map(|a| a.to_string()).unwrap_or_default();
            let mut params = Vec::new();
            if !mail.raw.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime)
            {
                params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            let reply = timed(timeout, "MAIL FROM", conn.command(Mail::new(from, params)))
                .await
                .map_err(|f| mail_from_fail(f, &shown, smtp))?;
            Ok(((), format!("<{shown}>: {}", reply_text(&reply))))
        })
        .await?;
    report
        .run("RCPT TO", async {
            let mut shown = Vec::new();
            for to in mail.envelope.to() {
                let reply = timed(
                    timeout,
                    "RCPT TO",
                    conn.command(Rcpt::new(to.clone(), vec![])),
                )
                .await
                .map_err(|f| rcpt_fail(f, to.as_ref(), smtp))?;
                shown.push(format!("<{to}>: {}", reply_text(&reply)));
            }
            Ok(((), shown.join("; ")))
        })
        .await?;
    report
        .run("DATA", async {
            timed(timeout, "DATA", conn.command(Data)).await?;
            let reply = timed(timeout, "DATA", conn.message(&mail.raw)).await?;
            let text = reply_text(&reply);
            Ok((
                text.clone(),
                format!("{} bytes accepted: {text}", mail.raw.len()),
            ))
        })
        .await
}

fn mail_from_fail(f: Fail, from: &str, smtp: &SmtpConfig) -> Fail {
    let lower = f.detail.to_ascii_lowercase();
    if lower.contains("auth") && smtp.user.is_none() {
        Fail::hint(
            format!("the server refused the sender <{from}>: {}", f.detail),
            "the server requires a login: set [smtp] user and password",
        )
    } else if f.hint.is_some() {
        f
    } else {
        Fail::hint(
            format!("the server refused the sender <{from}>: {}", f.detail),
            "check the account's `email` (the sender) and whether [smtp] user may send as it",
        )
    }
}

fn rcpt_fail(f: Fail, to: &str, smtp: &SmtpConfig) -> Fail {
    let lower = f.detail.to_ascii_lowercase();
    if lower.contains("relay") {
        let hint = if smtp.user.is_none() {
            "the server only relays for logged-in senders: set [smtp] user and password (usually \
             with the submission port 587)"
        } else {
            "the server does not relay for this login: check [smtp] user, or ask the mail admin \
             to allow relaying"
        };
        Fail::hint(format!("relay denied for <{to}>: {}", f.detail), hint)
    } else if smtp.user.is_none()
        && (lower.contains("auth") || lower.contains(" 5.7.") || lower.contains("denied"))
    {
        Fail::hint(
            format!("the server refused the recipient <{to}>: {}", f.detail),
            "the server requires a login: set [smtp] user and password",
        )
    } else if f.hint.is_some() {
        f
    } else {
        Fail::hint(
            format!("the server refused the recipient <{to}>: {}", f.detail),
            "check the recipient address",
        )
    }
}

/// Greeting, EHLO and STARTTLS on the plain connection, then the TLS handshake.
async fn starttls(
    smtp: &SmtpConfig,
    mut plain: MailStream,
    timeout: Duration,
) -> Result<(MailStream, String), Fail> {
    let host = smtp.host.as_str();
    let hello = ClientId::default().to_string();
    dnet::write_line(
        &mut plain,
        &format!("EHLO {hello}"),
        timeout,
        "[smtp] timeout",
    )
    .await?;
    let ehlo = read_reply(&mut plain, timeout)
        .await
        .map_err(|e| line_fail("EHLO", e, timeout))?;
    if ehlo.code != 250 {
        return Err(Fail::new(format!(
            "the server refused EHLO: {}",
            ehlo.text()
        )));
    }
    let offered = ehlo.lines.iter().skip(1).any(|l| {
        l.get(4..)
            .unwrap_or("")
            .split_ascii_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        return Err(Fail::hint(
            format!("{host} does not offer STARTTLS; refusing to send mail and password without encryption"),
            "use encryption = \"ssl\" with the implicit-TLS port (usually 465), or \"none\" if you really mean it",
        ));
    }
    dnet::write_line(&mut plain, "STARTTLS", timeout, "[smtp] timeout").await?;
    let reply = read_reply(&mut plain, timeout)
        .await
        .map_err(|e| line_fail("STARTTLS", e, timeout))?;
    if reply.code != 220 {
        return Err(Fail::new(format!(
            "the server refused STARTTLS: {}",
            reply.text()
        )));
    }
    let MailStream::Plain(tcp) = plain else {
        return Err(Fail::new(
            "STARTTLS on a connection that is already encrypted",
        ));
    };
    let (tls, detail) = dnet::handshake(
        Service::Smtp,
        tcp,
        host,
        smtp.encryption,
        smtp.ca_file.as_deref(),
        timeout,
    )
    .await?;
    Ok((
        tls,
        format!("STARTTLS accepted ({}), {detail}", reply.text()),
    ))
}

/// A complete SMTP reply (possibly multi-line) read byte-wise.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
    raw: Vec<u8>,
}

impl Reply {
    /// "220 mail.example.test ESMTP Postfix" (continuation lines joined with " / ").
    fn text(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.get(4..).unwrap_or("").trim())
            .collect();
        format!("{} {}", self.code, parts.join(" / "))
    }
}

async fn read_reply(stream: &mut MailStream, timeout: Duration) -> Result<Reply, LineError> {
    let mut lines = Vec::new();
    let mut raw = Vec::new();
    loop {
        let line = dnet::read_line(stream, timeout).await?;
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(b"\r\n");
        let done = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if done || lines.len() > 100 {
            break;
        }
    }
    let code = lines
        .last()
        .and_then(|l| l.get(0..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Reply { code, lines, raw })
}

fn greeting_ok(reply: &Reply) -> Result<(), Fail> {
    if reply.code == 220 {
        Ok(())
    } else if reply.code == 0 {
        Err(Fail::hint(
            format!(
                "the server did not greet like an SMTP server: {:?}",
                reply.lines.first().map(String::as_str).unwrap_or("")
            ),
            format!(
                "check [smtp] `port`; {}",
                Service::Smtp.default_ports_text()
            ),
        ))
    } else {
        Err(Fail::new(format!(
            "the server refuses connections: {}",
            reply.text()
        )))
    }
}

fn line_fail(what: &str, e: LineError, timeout: Duration) -> Fail {
    match e {
        LineError::Timeout => timeout_fail(what, timeout),
        LineError::Closed => Fail::new(format!("the server closed the connection after {what}")),
        LineError::Io(e) => Fail::new(format!("{what} failed: {e}")),
    }
}

fn timeout_fail(what: &str, timeout: Duration) -> Fail {
    Fail::hint(
        format!("no answer to {what} within {}s", timeout.as_secs()),
        "check the server, or raise [smtp] timeout",
    )
}

/// Runs one lettre call with the deadline; a negative reply becomes a `Fail` with its text.
async fn timed<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Fail> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fail::new(format!("server said: {}", server_said(&e)))),
        Err(_) => Err(timeout_fail(what, timeout)),
    }
}

/// "535 5.7.8 Error: authentication failed: ..." for a negative reply, else the error.
fn server_said(e: &lettre::transport::smtp::Error) -> String {
    let source = std::error::Error::source(e).map(|s| s.to_string());
    match (e.status(), source) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (Some(code), None) => code.to_string(),
        (None, _) => e.to_string(),
    }
}

fn reply_text(reply: &Response) -> String {
    let text: Vec<&str> = reply.message().collect();
    format!("{} {}", reply.code(), text.join(" / "))
}

fn server_features(conn: &AsyncSmtpConnection, encrypted: bool) -> String {
    let info = conn.server_info();
    let mut features = Vec::new();
    for (ext, name) in [
        (Extension::StartTls, "STARTTLS"),
        (Extension::EightBitMime, "8BITMIME"),
        (Extension::SmtpUtfEight, "SMTPUTF8"),
    ] {
        if info.supports_feature(ext) {
            features.push(name.to_string());
        }
    }
    let auth: Vec<&str> = [
        (Mechanism::Plain, "PLAIN"),
        (Mechanism::Login, "LOGIN"),
        (Mechanism::Xoauth2, "XOAUTH2"),
    ]
    .into_iter()
    .filter(|(m, _)| info.supports_auth_mechanism(*m))
    .map(|(_, n)| n)
    .collect();
    if !auth.is_empty() {
        features.push(format!("AUTH {}", auth.join(" ")));
    }
    let tls = if encrypted { "over TLS" } else { "unencrypted" };
    format!(
        "{} ({tls}): {}",
        info.name(),
        if features.is_empty() {
            "no extensions".to_string()
        } else {
            features.join(", ")
        }
    )
}

/// The stream handed to lettre: first the greeting we already read, then the connection.
#[derive(Debug)]
struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: MailStream,
}

impl AsyncTokioStream for Replay {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            MailStream::Plain(tcp) => tcp.peer_addr(),
            MailStream::Tls(tls) => tls.get_ref().0.peer_addr(),
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `mail2ticket test-send NAME [--to ADDR]`.
pub async fn test_send(config: &Config, name: &str, to: Option<&str>, json: bool) -> ExitCode {
    let account = match find_account(config, name) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut report = Report::new(&account.name, json);
    send_steps(config, account, to, &mut report).await;
    report.finish("test-send")
}

/// The steps of test-send for `account` into `report`: a test mail to `to` (default: the
/// account's own address) through `[smtp]`.
pub async fn send_steps(
    config: &Config,
    account: &AccountConfig,
    to: Option<&str>,
    report: &mut Report,
) {
    let Some(smtp) = config.smtp.as_ref() else {
        report.fail_now(
            "SMTP settings",
            Fail::hint(
                "the config has no [smtp] section, so nothing can be sent",
                "add an [smtp] section with host, port, encryption, user and password \
                 (see config/example.toml)",
            ),
        );
        return;
    };
    let to = to.unwrap_or(&account.email);
    match test_mail(account, to, &super::test_stamp()) {
        Ok(mail) => {
            smtp_steps(config, smtp, &mail, report).await;
        }
        Err(fail) => report.fail_now("build test mail", fail),
    }
}
