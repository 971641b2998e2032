//! What the steps of test-fetch share across protocols: the connection's first steps, the test
//! mail sent through `[smtp]`, and the words for its arrival.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::net::{self as dnet, Handshake, Service, PLAIN_WARNING};
use super::smtp::smtp_steps;
use super::test_mail::{test_mail, TestMail};
use super::{human_duration, Fail, Report, GREETING_TIMEOUT};
use crate::config::{AccountConfig, Config, Encryption, Protocol};
use crate::net::ConnectError;
use crate::secret::Secret;

/// Pause between two looks for the test mail.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(250);

/// "resolve host", "connect" and "TLS" of an account: `secure` is the client's stage after the
/// TCP connect (the handshake, from the first byte or after the upgrade command, and the
/// greeting; without encryption the greeting alone), run with the daemon's TLS configuration
/// that records the certificate. `split` picks a handshake failure out of the client's error;
/// `other` tells any other failure (given how long the greeting was waited for).
pub(super) async fn open_steps<S, E>(
    service: Service,
    run: Run<'_>,
    report: &mut Report,
    secure: impl AsyncFnOnce(TcpStream, Arc<ClientConfig>, Duration) -> Result<S, E>,
    tls_version: impl FnOnce(&S) -> Option<rustls::ProtocolVersion>,
    split: impl FnOnce(E) -> Result<ConnectError, E>,
    other: impl FnOnce(E, Duration) -> Fail,
) -> Option<S> {
    let (account, timeout) = (run.account, run.timeout);
    let host = account.host.as_str();
    let tcp = dnet::tcp_steps(service, host, account.port(), timeout, report).await?;
    report
        .run("TLS", async {
            let ca_file = account.ca_file.as_deref();
            let (tls, verifier) = dnet::recording_tls(service, ca_file)?;
            let greet_wait = timeout.min(GREETING_TIMEOUT);
            let session = secure(tcp, tls, greet_wait).await.map_err(|e| {
                let handshake = Handshake {
                    service,
                    host,
                    encryption: account.encryption,
                    ca_file,
                };
                match split(e) {
                    Ok(c) => handshake
                        .failed(&c, &verifier)
                        .unwrap_or_else(|| Fail::new(c.to_string())),
                    Err(e) => other(e, greet_wait),
                }
            })?;
            let tls = || dnet::handshake_detail(tls_version(&session), host, &verifier);
            let detail = match account.encryption {
                Encryption::Ssl => tls(),
                Encryption::Starttls => format!("{} accepted, {}", service.upgrade(), tls()),
                Encryption::None => PLAIN_WARNING.to_string(),
            };
            Ok((session, detail))
        })
        .await
}

/// What the steps of one test-fetch need.
#[derive(Clone, Copy)]
pub(super) struct Run<'a> {
    pub config: &'a Config,
    pub account: &'a AccountConfig,
    pub timeout: Duration,
    /// How long to wait for the test mail.
    pub wait: Duration,
    pub token: Option<&'a Secret>,
    /// Where `token` came from: Graph's steps make their requests with it.
    pub tokens: Option<&'a Arc<crate::oauth::TokenSource>>,
}

/// "1 message", "2 messages".
pub(super) fn messages(n: u32) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

/// The test mail to the account's own address, or the failed step when there is no [smtp].
///
/// Without [smtp] the test mail cannot be sent; that is reported as a failed step (not as
/// skipped) because the check did not show that mail arrives, so it must not exit 0.
pub(super) fn prepare_test_mail(
    config: &Config,
    account: &AccountConfig,
    report: &mut Report,
) -> Option<TestMail> {
    if config.smtp.is_none() {
        report.fail_now(
            "send test mail",
            Fail::hint(
                "not run: the config has no [smtp] section to send the test mail through (the \
                 steps above passed: fetching works)",
                "add an [smtp] section (see config/example.toml) to check that mail arrives",
            ),
        );
        return None;
    }
    match test_mail(account, &account.email, &super::test_stamp()) {
        Ok(mail) => Some(mail),
        Err(fail) => {
            report.fail_now("send test mail", fail);
            None
        }
    }
}

/// "send test mail": the SMTP steps of test-send, summarised in one line.
pub(super) async fn send_step(
    config: &Config,
    mail: &TestMail,
    report: &mut Report,
) -> Option<String> {
    let smtp = config.smtp.as_ref()?;
    let via = match smtp.protocol {
        crate::config::SmtpProtocol::Smtp => format!("{}:{}", smtp.host, smtp.port()),
        crate::config::SmtpProtocol::Graph => "Microsoft Graph".to_string(),
    };
    report
        .run("send test mail", async {
            let mut inner = Report::quiet(&report_name(mail));
            let accepted = smtp_steps(config, smtp, mail, &mut inner).await;
            match accepted {
                Some(reply) => Ok((
                    reply.clone(),
                    format!(
                        "{:?} to {} via {via}: {reply}",
                        mail.subject,
                        mail.recipient(),
                    ),
                )),
                None => {
                    let failed = inner.steps.iter().find(|s| !s.ok);
                    let (step, detail, hint) = match failed {
                        Some(s) => (s.name.clone(), s.detail.clone(), s.hint.clone()),
                        None => ("?".into(), "the mail was not accepted".into(), None),
                    };
                    Err(Fail {
                        detail: format!("SMTP step \"{step}\" failed ({via}): {detail}"),
                        hint: Some(match hint {
                            Some(h) => {
                                format!("{h} (`mail2ticket test-send` shows every SMTP step)")
                            }
                            None => "`mail2ticket test-send` shows every SMTP step".into(),
                        }),
                    })
                }
            }
        })
        .await
}

fn report_name(mail: &TestMail) -> String {
    mail.subject.clone()
}

/// "in \"INBOX\" 0.4 s after the SMTP server accepted it; the next fetch pass ...".
pub(super) fn arrival_detail(place: &str, then: &str, elapsed: Duration) -> String {
    format!(
        "{place} {} after the SMTP server accepted it; {then}",
        human_duration(elapsed)
    )
}

pub(super) fn not_arrived(account: &AccountConfig, wait: Duration, accepted: &str) -> Fail {
    let place = match account.protocol {
        Protocol::Imap | Protocol::Graph => format!("in {:?}", account.folder),
        Protocol::Pop3 => "in the maildrop".into(),
    };
    Fail::hint(
        format!(
            "the test mail did not arrive {place} within {} s (the SMTP server accepted it: \
             {accepted})",
            wait.as_secs()
        ),
        format!(
            "check that mail to {} is delivered to this mailbox (mail server log, forwarding, \
             spam filter, `folder`), or wait longer with --wait",
            account.email
        ),
    )
}

/// Whether `raw` carries our test header with this stamp (`<stamp>; sig=<hmac>`).
pub(super) fn is_test_mail(raw: &[u8], stamp: &str) -> bool {
    crate::ingest::parse::parse(raw)
        .automation
        .test_marker
        .as_deref()
        .map(crate::ingest::testmail::stamp)
        == Some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::TEST_HEADER;

    #[test]
    fn test_mails_are_recognised_by_stamp() {
        let raw = format!(
            "From: a@example.test\r\n{TEST_HEADER}: 2026-01-01T00:00:00.000Z; sig=00\r\nSubject: x\r\n\r\nbody\r\n"
        );
        assert!(is_test_mail(raw.as_bytes(), "2026-01-01T00:00:00.000Z"));
        assert!(!is_test_mail(raw.as_bytes(), "2026-01-01T00:00:00.001Z"));
        assert!(!is_test_mail(
            b"Subject: x\r\n\r\nbody",
            "2026-01-01T00:00:00.000Z"
        ));
    }
}
