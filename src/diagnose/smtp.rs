//! The SMTP steps of `test-send`, which `test-fetch` also runs to send its test mail: lettre's
//! [`AsyncSmtpConnection`], the library the daemon's transport ([`crate::smtp`]) is built on,
//! driven one call per step with the daemon's TLS parameters ([`crate::smtp::tls`]) and login
//! ([`crate::smtp::login`]: user, mechanisms, OAuth 2.0 token), so each step shows the server's
//! reply.
//!
//! The TCP connect is the mail clients' ([`crate::net`]). With implicit TLS the handshake is
//! theirs too ([`crate::net::start_tls`] with the daemon's trust, system roots plus `ca_file`,
//! recording the certificate), because lettre cannot start a session on a TLS stream of its
//! own apart from its greeting. With STARTTLS it is lettre's, as in the daemon; a refused
//! certificate is then named from a second look at it (see [`presented_after_starttls`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use super::net::{self as dnet, Handshake, Service};
use super::test_mail::TestMail;
use super::token::{token_step, REFUSED_TOKEN_HINT};
use super::{Fail, Report, GREETING_TIMEOUT};
use crate::config::{AuthMethod, Config, Encryption, MailProtocol, SmtpConfig};
use crate::net::{self, MailStream};
use crate::smtp::SmtpLogin;

/// lettre takes any tokio stream that can name its peer: the clients' plain or TLS stream.
impl AsyncTokioStream for MailStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            MailStream::Plain(tcp) => tcp.peer_addr(),
            MailStream::Tls(tls) => tls.get_ref().0.peer_addr(),
        }
    }
}

/// Runs the SMTP steps for `mail` into `report`; returns the server's reply to the message
/// (e.g. "250 2.0.0 Ok: queued as 4F2B") when it was accepted.
pub async fn smtp_steps(
    config: &Config,
    smtp: &SmtpConfig,
    mail: &TestMail,
    report: &mut Report,
) -> Option<String> {
    if smtp.protocol == crate::config::SmtpProtocol::Graph {
        let from = mail
            .envelope
            .from()
            .map(|a| a.to_string())
            .unwrap_or_default();
        return super::graph::send_steps(config, smtp, mail, &from, report).await;
    }
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
            Some(step.await?.0)
        }
        _ => None,
    };
    let tls = match crate::smtp::tls(smtp) {
        Ok(tls) => tls,
        Err(e) => {
            report.fail_now(
                "SMTP settings",
                Fail::hint(e.to_string(), "fix [smtp] `ca_file` or `host`"),
            );
            return None;
        }
    };
    let login = crate::smtp::login(smtp, token.as_ref());
    let (host, port, timeout) = (smtp.host.as_str(), smtp.port(), smtp.timeout);
    let tcp = dnet::tcp_steps(Service::Smtp, host, port, timeout, report).await?;
    let greet_wait = timeout.min(GREETING_TIMEOUT);
    let hello = ClientId::default();
    let mut conn = match &tls {
        Tls::Wrapper(_) => {
            let stream = report.run("TLS", implicit_tls(smtp, tcp)).await?;
            let greeted = greeting(smtp, Box::new(stream), &hello, timeout);
            report.run("greeting", greeted).await?
        }
        Tls::Required(parameters) | Tls::Opportunistic(parameters) => {
            let greeted = greeting(smtp, Box::new(tcp), &hello, greet_wait);
            let mut conn = report.run("greeting", greeted).await?;
            let upgraded = starttls(smtp, &mut conn, parameters, &hello);
            report.run("TLS", upgraded).await?;
            conn
        }
        _ => {
            let greeted = greeting(smtp, Box::new(tcp), &hello, greet_wait);
            report.run("greeting", greeted).await?
        }
    };
    let encrypted = smtp.encryption != Encryption::None;
    let accepted = session_steps(smtp, mail, &mut conn, encrypted, login.as_ref(), report).await;
    if accepted.is_some() {
        let _ = tokio::time::timeout(timeout, conn.quit()).await;
    } else {
        let _ = tokio::time::timeout(timeout, conn.abort()).await;
    }
    accepted
}

fn handshake(smtp: &SmtpConfig) -> Handshake<'_> {
    Handshake {
        service: Service::Smtp,
        host: &smtp.host,
        encryption: smtp.encryption,
        ca_file: smtp.ca_file.as_deref(),
    }
}

/// "TLS" from the first byte: the clients' handshake with the daemon's trust.
async fn implicit_tls(
    smtp: &SmtpConfig,
    tcp: tokio::net::TcpStream,
) -> Result<(MailStream, String), Fail> {
    let (config, verifier) = dnet::recording_tls(Service::Smtp, smtp.ca_file.as_deref())?;
    let stream = net::start_tls(tcp, &smtp.host, config, smtp.timeout)
        .await
        .map_err(|e| {
            handshake(smtp)
                .failed(&e, &verifier)
                .unwrap_or_else(|| Fail::new(e.to_string()))
        })?;
    let detail = dnet::handshake_detail(stream.tls_version(), &smtp.host, &verifier);
    Ok((stream, detail))
}

/// "greeting": lettre reads the greeting and says EHLO; the detail is what the server offers.
async fn greeting(
    smtp: &SmtpConfig,
    stream: Box<dyn AsyncTokioStream>,
    hello: &ClientId,
    wait: Duration,
) -> Result<(AsyncSmtpConnection, String), Fail> {
    let connect = AsyncSmtpConnection::connect_with_transport(stream, hello);
    match tokio::time::timeout(wait, connect).await {
        Ok(Ok(conn)) => {
            let encrypted = smtp.encryption == Encryption::Ssl;
            let detail = server_features(&conn, encrypted);
            Ok((conn, detail))
        }
        Ok(Err(e)) if e.status().is_some() => Err(Fail::new(format!(
            "the server refuses connections: {}",
            server_said(&e)
        ))),
        Ok(Err(e)) => Err(Fail::hint(
            format!("the server did not greet like an SMTP server: {e}"),
            format!(
                "check [smtp] `port`; {}",
                Service::Smtp.default_ports_text()
            ),
        )),
        Err(_) => Err(dnet::no_greeting(
            Service::Smtp,
            &smtp.host,
            smtp.port(),
            smtp.encryption,
            &format!("no greeting within {}s", wait.as_secs()),
        )),
    }
}

/// "TLS" by STARTTLS: lettre's upgrade with the daemon's TLS parameters, then EHLO again.
async fn starttls(
    smtp: &SmtpConfig,
    conn: &mut AsyncSmtpConnection,
    parameters: &TlsParameters,
    hello: &ClientId,
) -> Result<((), String), Fail> {
    let host = smtp.host.as_str();
    if !conn.server_info().supports_feature(Extension::StartTls) {
        return Err(Fail::hint(
            format!(
                "{host} does not offer STARTTLS; refusing to send mail and password without \
                 encryption"
            ),
            "use encryption = \"ssl\" with the implicit-TLS port (usually 465), or \"none\" if \
             you really mean it",
        ));
    }
    let upgrade = conn.starttls(parameters.clone(), hello);
    match tokio::time::timeout(smtp.timeout, upgrade).await {
        Ok(Ok(())) => {
            let chain = conn.certificate_chain().unwrap_or_default();
            let tls = dnet::tls_detail("TLS", host, &dnet::described(&chain));
            let features = server_features(conn, true);
            Ok(((), format!("STARTTLS accepted, {tls}; {features}")))
        }
        Ok(Err(e)) => match handshake_error(&e) {
            Some(io) => {
                let seen = presented_after_starttls(smtp, hello).await;
                Err(handshake(smtp).explain(io, None, &dnet::described(&seen)))
            }
            None => Err(Fail::new(format!(
                "the server refused STARTTLS: {}",
                server_said(&e)
            ))),
        },
        Err(_) => Err(timeout_fail("STARTTLS", smtp.timeout)),
    }
}

/// The I/O error of a failed TLS handshake inside a lettre error, if that is what failed.
fn handshake_error(e: &lettre::transport::smtp::Error) -> Option<&io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// The certificates the server presents after STARTTLS, to name the one lettre refused: lettre
/// keeps nothing of a failed handshake, so a second connection looks again, accepting any
/// certificate. Nothing is sent on it but EHLO, STARTTLS and QUIT; empty when that fails too.
async fn presented_after_starttls(smtp: &SmtpConfig, hello: &ClientId) -> Vec<Vec<u8>> {
    let look = async {
        let tcp = net::connect_tcp(&smtp.host, smtp.port(), smtp.timeout)
            .await
            .ok()?;
        let any = TlsParameters::builder(smtp.host.clone())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .ok()?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), hello)
            .await
            .ok()?;
        conn.starttls(any, hello).await.ok()?;
        let chain = conn.certificate_chain().ok();
        conn.abort().await;
        chain
    };
    tokio::time::timeout(smtp.timeout, look)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// "AUTH": the daemon's login ([`crate::smtp::login`]) by the first of its mechanisms the
/// server offers.
async fn auth_step(
    conn: &mut AsyncSmtpConnection,
    login: Option<&SmtpLogin>,
    encrypted: bool,
    timeout: Duration,
) -> Result<((), String), Fail> {
    let Some(login) = login else {
        return Ok((
            (),
            "skipped: [smtp] has no user, sending without login".to_string(),
        ));
    };
    let user = login.user.as_str();
    let oauth = login.mechanisms.contains(&Mechanism::Xoauth2);
    let Some(mechanism) = conn.server_info().get_auth_mechanism(&login.mechanisms) else {
        let offered: Vec<String> = login.mechanisms.iter().map(|m| m.to_string()).collect();
        let hint = if encrypted {
            "leave out [smtp] user and password if this server needs no login, or use the \
             submission port (587) or 465"
        } else {
            "most servers only offer AUTH over TLS: use encryption = \"starttls\" or \"ssl\""
        };
        return Err(Fail::hint(
            format!(
                "the server offers no AUTH {} on this connection",
                offered.join(" or ")
            ),
            hint,
        ));
    };
    let auth = conn.auth(&login.mechanisms, &login.credentials);
    match tokio::time::timeout(timeout, auth).await {
        Err(_) => Err(timeout_fail("AUTH", timeout)),
        Ok(Ok(reply)) => Ok((
            (),
            format!("logged in as {user} by {mechanism}: {}", reply_text(&reply)),
        )),
        Ok(Err(e)) if e.status().is_some() && oauth => Err(Fail::hint(
            format!(
                "SMTP login with the token refused for {user} (server said: {})",
                server_said(&e)
            ),
            REFUSED_TOKEN_HINT,
        )),
        Ok(Err(e)) if e.status().is_some() => Err(Fail::hint(
            format!(
                "SMTP login rejected for {user} (server said: {})",
                server_said(&e)
            ),
            "check [smtp] user and password",
        )),
        Ok(Err(e)) => Err(Fail::new(format!("AUTH failed: {}", server_said(&e)))),
    }
}

/// "AUTH", "MAIL FROM", "RCPT TO" and "DATA" on a greeted connection.
async fn session_steps(
    smtp: &SmtpConfig,
    mail: &TestMail,
    conn: &mut AsyncSmtpConnection,
    encrypted: bool,
    login: Option<&SmtpLogin>,
    report: &mut Report,
) -> Option<String> {
    let timeout = smtp.timeout;
    report
        .run("AUTH", auth_step(conn, login, encrypted, timeout))
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
