//! `test-fetch NAME`: resolve, connect, TLS, capabilities, login, folders, then a test mail sent
//! through [smtp] to the account's own address that must show up in `folder`.
//!
//! IMAP asks for capabilities after the login: servers such as Dovecot announce MOVE and
//! UIDPLUS only to authenticated clients (RFC 3501 allows the list to change at login), so a
//! pre-login list would report them missing. POP3 asks before the login, as the daemon does:
//! a missing UIDL ends the check there.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_imap::Session;
use futures::TryStreamExt;

use super::net::{self as dnet, LineError, Service};
use super::send::{smtp_steps, test_mail, TestMail};
use super::token::{token_step, REFUSED_TOKEN_HINT};
use super::{find_account, human_duration, Fail, Report, GREETING_TIMEOUT};
use crate::config::{
    AccountConfig, AuthMethod, Config, Disposal, Encryption, ImapAction, Pop3Action, Protocol,
};
use crate::imap::connect::server_words;
use crate::imap::connect::{negotiate_starttls, read_greeting, ImapError};
use crate::imap::dispose::{Expunge, Plan};
use crate::imap::names;
use crate::imap::utf7;
use crate::ingest::parse::TEST_HEADER;
use crate::net::MailStream;
use crate::oauth::sasl::Mechanism;
use crate::pop3::client::{Pop3Client, Pop3Error, Pop3Timeouts};
use crate::secret::Secret;

/// Pause between two looks for the test mail.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// `mail2ticket test-fetch NAME [--json] [--wait SECS]`; works for inactive accounts too.
pub async fn test_fetch(config: &Config, name: &str, json: bool, wait: u64) -> ExitCode {
    let account = match find_account(config, name) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut report = Report::new(&account.name, json);
    let timeout = config.daemon.network_timeout;
    let wait = Duration::from_secs(wait);
    let token = match (account.auth, &account.oauth2) {
        (AuthMethod::Oauth2, Some(o)) => {
            let protocol = account.protocol.into();
            let step = token_step(
                &mut report,
                &account.name,
                o,
                protocol,
                &config.store.path,
                timeout,
            );
            match step.await {
                Some(token) => Some(token),
                None => return report.finish("test-fetch"),
            }
        }
        _ => None,
    };
    let token = token.as_ref();
    match account.protocol {
        Protocol::Imap => imap_steps(config, account, timeout, wait, token, &mut report).await,
        Protocol::Pop3 => pop3_steps(config, account, timeout, wait, token, &mut report).await,
    };
    report.finish("test-fetch")
}

fn service(account: &AccountConfig) -> Service {
    match account.protocol {
        Protocol::Imap => Service::Imap,
        Protocol::Pop3 => Service::Pop3,
    }
}

/// "resolve host" and "connect".
async fn tcp_steps(
    account: &AccountConfig,
    timeout: Duration,
    report: &mut Report,
) -> Option<tokio::net::TcpStream> {
    let svc = service(account);
    let (host, port) = (account.host.as_str(), account.port());
    let addrs = report
        .run("resolve host", dnet::resolve(svc, host, port, timeout))
        .await?;
    report
        .run("connect", dnet::connect(svc, host, port, &addrs, timeout))
        .await
}

const PLAIN_WARNING: &str =
    "not encrypted (encryption = \"none\"): the password and every mail cross the network in clear";

fn imap_greeting_fail(account: &AccountConfig, e: ImapError, wait: Duration) -> Fail {
    match e {
        ImapError::Timeout { operation, .. } if operation == "greeting" => dnet::no_greeting(
            Service::Imap,
            &account.host,
            account.port(),
            account.encryption,
            LineError::Timeout,
            wait,
        ),
        ImapError::Protocol { operation, reply } if operation == "greeting" => Fail::hint(
            format!("the server did not greet like an IMAP server: {reply}"),
            format!(
                "check `port` and `protocol`; {}",
                Service::Imap.default_ports_text()
            ),
        ),
        ImapError::StartTlsNotOffered { .. } => Fail::hint(
            format!("{} does not offer STARTTLS", account.host),
            "use encryption = \"ssl\" with the implicit-TLS port (usually 993), or \"none\" if \
             you really mean it",
        ),
        other => Fail::new(other.to_string()),
    }
}

async fn imap_steps(
    config: &Config,
    account: &AccountConfig,
    timeout: Duration,
    wait: Duration,
    token: Option<&Secret>,
    report: &mut Report,
) -> Option<()> {
    let tcp = tcp_steps(account, timeout, report).await?;
    let host = account.host.as_str();
    let greet_wait = timeout.min(GREETING_TIMEOUT);
    let ca = account.ca_file.as_deref();
    let stream = report
        .run("TLS", async {
            match account.encryption {
                Encryption::Ssl => {
                    let (mut tls, detail) =
                        dnet::handshake(Service::Imap, tcp, host, account.encryption, ca, timeout)
                            .await?;
                    read_greeting(&mut tls, timeout)
                        .await
                        .map_err(|e| imap_greeting_fail(account, e, timeout))?;
                    Ok((tls, detail))
                }
                Encryption::Starttls => {
                    let tcp = negotiate_starttls(tcp, host, greet_wait)
                        .await
                        .map_err(|e| imap_greeting_fail(account, e, greet_wait))?;
                    let (tls, detail) =
                        dnet::handshake(Service::Imap, tcp, host, account.encryption, ca, timeout)
                            .await?;
                    Ok((tls, format!("STARTTLS accepted, {detail}")))
                }
                Encryption::None => {
                    let mut plain = MailStream::Plain(tcp);
                    read_greeting(&mut plain, greet_wait)
                        .await
                        .map_err(|e| imap_greeting_fail(account, e, greet_wait))?;
                    Ok((plain, PLAIN_WARNING.to_string()))
                }
            }
        })
        .await?;
    let action = match account.disposal() {
        Ok(Disposal::Imap(action)) => action,
        Ok(Disposal::Pop3(_)) | Err(_) => {
            report.fail_now(
                "login",
                Fail::hint(
                    "`action` has no meaning for IMAP",
                    "run `mail2ticket check-config`",
                ),
            );
            return None;
        }
    };
    let mut session = report
        .run("login", imap_login(account, stream, timeout, token))
        .await?;
    let caps = report
        .run("capabilities", async {
            let caps = imap_timed(timeout, "CAPABILITY", session.capabilities()).await?;
            let has = |c: &str| caps.has_str(c);
            let mut parts = Vec::new();
            let mut notes = Vec::new();
            for (cap, missing) in [
                (
                    "IDLE",
                    "new mail is noticed at the next poll_interval instead of at once",
                ),
                ("MOVE", "mails are copied, then flagged and expunged"),
                (
                    "UIDPLUS",
                    "a plain EXPUNGE is used, guarded as the disposal step says",
                ),
            ] {
                if has(cap) {
                    parts.push(format!("{cap} yes"));
                } else {
                    parts.push(format!("{cap} no"));
                    notes.push(format!("without {cap} {missing}"));
                }
            }
            let mut detail = parts.join(", ");
            if !notes.is_empty() {
                detail.push_str(&format!(" ({})", notes.join("; ")));
            }
            let names = crate::imap::connect::capability_names(&caps);
            Ok((names, detail))
        })
        .await?;
    let hierarchy = report
        .run("folder names", async {
            let h = names::discover(&mut session, timeout)
                .await
                .map_err(|e| Fail::new(format!("asking for the hierarchy separator: {e}")))?;
            let mut detail = h.describe();
            let mut mapped = vec![h.explain(&account.folder)];
            if let ImapAction::Move { to } = &action {
                mapped.push(h.explain(to));
            }
            let mapped: Vec<String> = mapped.into_iter().flatten().collect();
            if mapped.is_empty() {
                detail.push_str("; configured names are used as written");
            } else {
                detail.push_str(&format!(
                    "; \"/\" in the config is the separator everywhere: {}",
                    mapped.join(", ")
                ));
            }
            Ok((h, detail))
        })
        .await?;
    let folder = hierarchy.server_name(&account.folder);
    let folder = folder.as_str();
    report
        .run("folder", async {
            match imap_timed(timeout, "EXAMINE", session.examine(utf7::encode(folder))).await {
                Ok(mb) => Ok(((), format!("{folder:?} exists, {}", messages(mb.exists)))),
                Err(e) => {
                    let folders = folder_list(&mut session, timeout).await;
                    Err(Fail::hint(
                        format!("folder {folder:?} cannot be opened ({})", e.detail),
                        format!("check `folder`; the server has: {folders}"),
                    ))
                }
            }
        })
        .await?;
    if let ImapAction::Move { to } = &action {
        let target = hierarchy.server_name(to);
        let target = target.as_str();
        report
            .run("move_to folder", async {
                let status = imap_timed(
                    timeout,
                    "STATUS",
                    session.status(utf7::encode(target), "(MESSAGES)"),
                )
                .await;
                match status {
                    Ok(mb) => Ok(((), format!("{target:?} exists, {}", messages(mb.exists)))),
                    Err(e) => {
                        let folders = folder_list(&mut session, timeout).await;
                        Err(Fail::hint(
                            format!(
                                "move_to folder {target:?} does not exist ({}): mails would get \
                                 their ticket but stay in {folder:?}",
                                e.detail
                            ),
                            format!(
                                "create {target:?} on the server or fix `move_to`; the server \
                                 has: {folders}"
                            ),
                        ))
                    }
                }
            })
            .await?;
    }
    let plan = Plan::new(
        &action,
        |c| caps.iter().any(|have| have.eq_ignore_ascii_case(c)),
        &hierarchy,
    );
    report
        .run("disposal", disposal_step(&mut session, &plan, timeout))
        .await?;
    let mail = prepare_test_mail(config, account, report)?;
    let accepted = send_step(config, &mail, report).await?;
    let arrived = report
        .run("test mail arrives", async {
            let started = Instant::now();
            let query = format!("HEADER {TEST_HEADER} \"{}\"", mail.stamp);
            loop {
                imap_timed(timeout, "EXAMINE", session.examine(utf7::encode(folder)))
                    .await
                    .map_err(|e| Fail::new(format!("looking for the test mail: {e}")))?;
                let found = imap_timed(timeout, "UID SEARCH", session.uid_search(&query))
                    .await
                    .map_err(|e| Fail::new(format!("looking for the test mail: {e}")))?;
                if !found.is_empty() {
                    let then =
                        format!("the next fetch pass stores it without a ticket: it is {plan}");
                    return Ok((
                        (),
                        arrival_detail(&format!("in {folder:?}"), &then, started.elapsed()),
                    ));
                }
                if started.elapsed() >= wait {
                    return Err(not_arrived(account, wait, &accepted));
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
        .await;
    let _ = tokio::time::timeout(timeout, session.logout()).await;
    arrived
}

async fn imap_login(
    account: &AccountConfig,
    stream: MailStream,
    timeout: Duration,
    token: Option<&Secret>,
) -> Result<(Session<MailStream>, String), Fail> {
    if let Some(token) = token {
        let user = account.user.as_str();
        return match crate::imap::oauth::authenticate(stream, account, token, timeout).await {
            Ok((session, mechanism)) => Ok((
                session,
                format!("logged in as {user} by {}", mechanism.name()),
            )),
            Err(ImapError::AuthRejected { server, .. }) => Err(Fail::hint(
                format!("login with the token refused for {user} (server said: {server})"),
                REFUSED_TOKEN_HINT,
            )),
            Err(e) => Err(Fail::new(e.to_string())),
        };
    }
    let client = async_imap::Client::new(stream);
    let user = account.user.as_str();
    let password = account.password();
    match tokio::time::timeout(timeout, client.login(user, password.expose())).await {
        Ok(Ok(session)) => Ok((session, format!("logged in as {user}"))),
        Ok(Err((async_imap::error::Error::No(text), _)))
        | Ok(Err((async_imap::error::Error::Bad(text), _))) => Err(Fail::hint(
            format!(
                "login rejected for {user} (server said: {})",
                server_words(&text)
            ),
            "check `user` and `password`",
        )),
        Ok(Err((e, _))) => Err(Fail::new(format!("IMAP LOGIN failed: {e}"))),
        Err(_) => Err(Fail::hint(
            format!("no answer to LOGIN within {}s", timeout.as_secs()),
            "check the server, or raise [daemon] network_timeout",
        )),
    }
}

async fn imap_timed<T>(
    timeout: Duration,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, Fail> {
    use async_imap::error::Error as E;
    crate::imap::connect::timed(timeout, operation, fut)
        .await
        .map_err(|e| match e {
            ImapError::Imap {
                operation,
                source: E::No(text) | E::Bad(text),
            } => Fail::new(format!("{operation}: server said: {}", server_words(&text))),
            ImapError::Refused { operation, server } => {
                Fail::new(format!("{operation}: server said: {server}"))
            }
            other => Fail::new(other.to_string()),
        })
}

/// The server's words out of async-imap's `code: .., info: Some("...")` rendering.
fn messages(n: u32) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

/// The folders the server has, decoded, for hints.
async fn folder_list(session: &mut Session<MailStream>, timeout: Duration) -> String {
    let listed = async {
        let names: Vec<_> = session
            .list(Some(""), Some("*"))
            .await?
            .try_collect()
            .await?;
        Ok::<_, async_imap::error::Error>(names)
    };
    match tokio::time::timeout(timeout, listed).await {
        Ok(Ok(names)) => {
            let mut shown: Vec<String> = names
                .iter()
                .map(|n| format!("{:?}", utf7::decode(n.name())))
                .collect();
            shown.sort();
            shown.join(", ")
        }
        _ => "(the folder list could not be read)".into(),
    }
}

/// The test mail to the account's own address, or the failed step when there is no [smtp].
///
/// Without [smtp] the test mail cannot be sent; that is reported as a failed step (not as
/// skipped) because the check did not show that mail arrives, so it must not exit 0.
fn prepare_test_mail(
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
async fn send_step(config: &Config, mail: &TestMail, report: &mut Report) -> Option<String> {
    let smtp = config.smtp.as_ref()?;
    report
        .run("send test mail", async {
            let mut inner = Report::quiet(&report_name(mail));
            let accepted = smtp_steps(config, smtp, mail, &mut inner).await;
            match accepted {
                Some(reply) => Ok((
                    reply.clone(),
                    format!(
                        "{:?} to {} via {}:{}: {reply}",
                        mail.subject,
                        mail.envelope
                            .to()
                            .first()
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        smtp.host,
                        smtp.port()
                    ),
                )),
                None => {
                    let failed = inner.steps.iter().find(|s| !s.ok);
                    let (step, detail, hint) = match failed {
                        Some(s) => (s.name.clone(), s.detail.clone(), s.hint.clone()),
                        None => ("?".into(), "the mail was not accepted".into(), None),
                    };
                    Err(Fail {
                        detail: format!(
                            "SMTP step \"{step}\" failed ({}:{}): {detail}",
                            smtp.host,
                            smtp.port()
                        ),
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
fn arrival_detail(place: &str, then: &str, elapsed: Duration) -> String {
    format!(
        "{place} {} after the SMTP server accepted it; {then}",
        human_duration(elapsed)
    )
}

/// "disposal": exactly what the daemon does with a stored mail on this server, and whether
/// something in the folder would hold it up now.
async fn disposal_step(
    session: &mut Session<MailStream>,
    plan: &Plan,
    timeout: Duration,
) -> Result<((), String), Fail> {
    let mut detail = format!("a mail with a stored ticket is {plan}");
    if plan.expunge == Expunge::Guarded {
        let flagged = imap_timed(timeout, "UID SEARCH DELETED", session.uid_search("DELETED"))
            .await?
            .len();
        if flagged > 0 {
            detail.push_str(&format!(
                "; now {} in the folder flagged \\Deleted, so mails stay flagged until it is \
                 expunged or undeleted (unless it is one of ours)",
                messages(flagged as u32)
            ));
        }
    }
    Ok(((), detail))
}

fn not_arrived(account: &AccountConfig, wait: Duration, accepted: &str) -> Fail {
    let place = match account.protocol {
        Protocol::Imap => format!("in {:?}", account.folder),
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

// ------------------------------------------------------------------------------------ POP3

/// USER/PASS, or SASL with `token`; returns " by MECHANISM" for the latter.
async fn pop3_sign_in(
    client: &mut Pop3Client,
    account: &AccountConfig,
    token: Option<&Secret>,
) -> Result<String, Pop3Error> {
    let Some(token) = token else {
        client
            .login(&account.user, account.password().expose())
            .await?;
        return Ok(String::new());
    };
    let offered: Vec<String> = client
        .capabilities()
        .iter()
        .filter_map(|c| c.strip_prefix("SASL "))
        .flat_map(str::split_ascii_whitespace)
        .map(str::to_string)
        .collect();
    let mechanism = Mechanism::choose(offered.iter().map(String::as_str));
    let message = mechanism.initial_response(&account.user, &account.host, account.port(), token);
    client
        .authenticate(
            &account.user,
            mechanism.name(),
            &message,
            mechanism.after_error_challenge(),
        )
        .await?;
    Ok(format!(" by {}", mechanism.name()))
}

fn pop3_fail(account: &AccountConfig, e: Pop3Error) -> Fail {
    match e {
        Pop3Error::AuthRejected { user, server_text } => Fail::hint(
            format!("login rejected for {user} (server said: {server_text})"),
            "check `user` and `password`",
        ),
        Pop3Error::LoginDelay { delay, server_text } => Fail::hint(
            format!(
                "the server refused the login as too early (LOGIN-DELAY, server said: \
                 {server_text}); this is not a wrong password"
            ),
            format!(
                "someone logged in to this mailbox less than {} ago (the daemon, or another \
                 client): wait that long and run test-fetch again",
                delay.map_or("the server's LOGIN-DELAY".to_string(), |d| format!(
                    "{} s",
                    d.as_secs()
                ))
            ),
        ),
        Pop3Error::UidlNotSupported => uidl_missing(),
        Pop3Error::StartTlsNotOffered => Fail::hint(
            format!("{} does not offer STLS", account.host),
            "use encryption = \"ssl\" with the implicit-TLS port (usually 995), or \"none\" if \
             you really mean it",
        ),
        other => Fail::new(other.to_string()),
    }
}

fn uidl_missing() -> Fail {
    Fail::hint(
        "the server does not offer UIDL: mail2ticket needs it to tell mails apart and never \
         fetch one twice",
        "use IMAP with this server if it has it, or ask the mail admin to enable UIDL",
    )
}

/// One POP3 status line; `+OK` passes.
async fn pop3_status(stream: &mut MailStream, wait: Duration, what: &str) -> Result<String, Fail> {
    let line = dnet::read_line(stream, wait)
        .await
        .map_err(|e| Fail::new(format!("no answer to {what}: {e:?}")))?;
    if line.starts_with("+OK") {
        Ok(line)
    } else {
        Err(Fail::new(format!("the server refused {what}: {line}")))
    }
}

/// Greeting on a stream that is not yet a [`Pop3Client`].
async fn pop3_greeting(
    account: &AccountConfig,
    stream: &mut MailStream,
    wait: Duration,
) -> Result<(), Fail> {
    match dnet::read_line(stream, wait).await {
        Ok(line) if line.starts_with("+OK") => Ok(()),
        Ok(line) => Err(Fail::hint(
            format!("the server did not greet like a POP3 server: {line:?}"),
            format!(
                "check `port` and `protocol`; {}",
                Service::Pop3.default_ports_text()
            ),
        )),
        Err(e) => Err(dnet::no_greeting(
            Service::Pop3,
            &account.host,
            account.port(),
            account.encryption,
            e,
            wait,
        )),
    }
}

/// Greeting, CAPA and STLS on the plain connection (by hand: the daemon's client does all of
/// connect, STLS and CAPA in one call, and each must be its own step here).
async fn pop3_stls(
    account: &AccountConfig,
    mut plain: MailStream,
    greet_wait: Duration,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, Fail> {
    pop3_greeting(account, &mut plain, greet_wait).await?;
    dnet::write_line(&mut plain, "CAPA", timeout, "[daemon] network_timeout").await?;
    let mut offered = false;
    if pop3_status(&mut plain, timeout, "CAPA").await.is_ok() {
        loop {
            let line = dnet::read_line(&mut plain, timeout)
                .await
                .map_err(|e| Fail::new(format!("reading CAPA: {e:?}")))?;
            if line == "." {
                break;
            }
            if line
                .split_ascii_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("STLS"))
            {
                offered = true;
            }
        }
    }
    if !offered {
        return Err(pop3_fail(account, Pop3Error::StartTlsNotOffered));
    }
    dnet::write_line(&mut plain, "STLS", timeout, "[daemon] network_timeout").await?;
    pop3_status(&mut plain, timeout, "STLS").await?;
    match plain {
        MailStream::Plain(tcp) => Ok(tcp),
        MailStream::Tls(_) => Err(Fail::new("STLS on a connection that is already encrypted")),
    }
}

async fn pop3_steps(
    config: &Config,
    account: &AccountConfig,
    timeout: Duration,
    wait: Duration,
    token: Option<&Secret>,
    report: &mut Report,
) -> Option<()> {
    let tcp = tcp_steps(account, timeout, report).await?;
    let host = account.host.as_str();
    let greet_wait = timeout.min(GREETING_TIMEOUT);
    let ca = account.ca_file.as_deref();
    let timeouts = Pop3Timeouts {
        connect: timeout,
        command: timeout,
    };
    let stream = report
        .run("TLS", async {
            match account.encryption {
                Encryption::Ssl => {
                    let (mut tls, detail) =
                        dnet::handshake(Service::Pop3, tcp, host, account.encryption, ca, timeout)
                            .await?;
                    pop3_greeting(account, &mut tls, timeout).await?;
                    Ok((tls, detail))
                }
                Encryption::Starttls => {
                    let tcp =
                        pop3_stls(account, MailStream::Plain(tcp), greet_wait, timeout).await?;
                    let (tls, detail) =
                        dnet::handshake(Service::Pop3, tcp, host, account.encryption, ca, timeout)
                            .await?;
                    Ok((tls, format!("STLS accepted, {detail}")))
                }
                Encryption::None => {
                    let mut plain = MailStream::Plain(tcp);
                    pop3_greeting(account, &mut plain, greet_wait).await?;
                    Ok((plain, PLAIN_WARNING.to_string()))
                }
            }
        })
        .await?;
    let mut client = Pop3Client::from_stream(stream, timeouts);
    report
        .run("capabilities", async {
            client
                .refresh_capabilities()
                .await
                .map_err(|e| pop3_fail(account, e))?;
            if client.capabilities().is_empty() {
                return Ok((
                    (),
                    "the server lists no capabilities (no CAPA); UIDL is tried after login"
                        .to_string(),
                ));
            }
            if !client.has_capability("UIDL") {
                return Err(uidl_missing());
            }
            let stls = match account.encryption {
                Encryption::Starttls => "STLS yes (in use)",
                Encryption::Ssl => "STLS not needed (implicit TLS)",
                Encryption::None if client.has_capability("STLS") => {
                    "STLS yes (not used: encryption = \"none\")"
                }
                Encryption::None => "STLS no",
            };
            let words: Vec<&str> = client
                .capabilities()
                .iter()
                .filter_map(|c| c.split_ascii_whitespace().next())
                .collect();
            let mut detail = format!("UIDL yes, {stls}; server lists {}", words.join(" "));
            if let Some(delay) = client.login_delay() {
                detail.push_str(&format!(
                    "; LOGIN-DELAY {} s: the server allows one login every {} s, so the daemon \
                     polls at most that often{}",
                    delay.as_secs(),
                    delay.as_secs(),
                    if delay > config.daemon.poll_interval {
                        format!(
                            " (instead of poll_interval = {} s)",
                            config.daemon.poll_interval.as_secs()
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            Ok(((), detail))
        })
        .await?;
    report
        .run("login", async {
            let user = account.user.as_str();
            let how = pop3_sign_in(&mut client, account, token)
                .await
                .map_err(|e| match (e, token) {
                    (Pop3Error::AuthRejected { server_text, .. }, Some(_)) => Fail::hint(
                        format!(
                            "login with the token refused for {user} (server said: {server_text})"
                        ),
                        REFUSED_TOKEN_HINT,
                    ),
                    (e, _) => pop3_fail(account, e),
                })?;
            Ok(((), format!("logged in as {user}{how}")))
        })
        .await?;
    let before = report
        .run("mailbox", async {
            let (count, size) = client.stat().await.map_err(|e| pop3_fail(account, e))?;
            let uids = client.uidl().await.map_err(|e| pop3_fail(account, e))?;
            Ok((
                uids.into_iter().map(|(_, u)| u).collect::<Vec<_>>(),
                format!("{}, {size} bytes", messages(count)),
            ))
        })
        .await?;
    let login_delay = client.login_delay().unwrap_or_default();
    let _ = client.quit().await;
    let mail = prepare_test_mail(config, account, report)?;
    let accepted = send_step(config, &mail, report).await?;
    report
        .run("test mail arrives", async {
            let started = Instant::now();
            let tls = crate::tls::client_config(ca).map_err(|e| Fail::new(e.to_string()))?;
            let security = crate::pop3::login::security(account.encryption);
            let mut seen = before;
            // Every look is a login: keep the server's LOGIN-DELAY between two of them.
            let pause = POLL_EVERY.max(Duration::from_millis(500)).max(login_delay);
            tokio::time::sleep(login_delay).await;
            loop {
                // A POP3 session sees the maildrop as it was at login: log in anew each time.
                let found = async {
                    let mut c =
                        Pop3Client::connect(host, account.port(), security, tls.clone(), timeouts)
                            .await?;
                    pop3_sign_in(&mut c, account, token).await?;
                    let mut found = false;
                    for (n, uid) in c.uidl().await? {
                        if seen.contains(&uid) {
                            continue;
                        }
                        let raw = c.retr(n).await?;
                        if is_test_mail(&raw, &mail.stamp) {
                            found = true;
                            break;
                        }
                        seen.push(uid);
                    }
                    let _ = c.quit().await;
                    Ok::<_, Pop3Error>(found)
                }
                .await
                .map_err(|e| {
                    let f = pop3_fail(account, e);
                    Fail {
                        detail: format!("looking for the test mail: {}", f.detail),
                        hint: f.hint,
                    }
                })?;
                if found {
                    let then = match account.disposal() {
                        Ok(Disposal::Pop3(Pop3Action::Keep)) => {
                            "the next fetch pass recognises it, creates no ticket and keeps it \
                             on the server (action = \"keep\")"
                        }
                        _ => "the next fetch pass recognises it, creates no ticket and deletes it",
                    };
                    return Ok((
                        (),
                        arrival_detail("in the maildrop", then, started.elapsed()),
                    ));
                }
                if started.elapsed() >= wait {
                    return Err(not_arrived(account, wait, &accepted));
                }
                tokio::time::sleep(pause).await;
            }
        })
        .await
}

/// Whether `raw` carries our test header with this stamp (`<stamp>; sig=<hmac>`).
fn is_test_mail(raw: &[u8], stamp: &str) -> bool {
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
