//! `test-fetch NAME`: resolve, connect, TLS, capabilities, login, folders, then a test mail sent
//! through [smtp] to the account's own address that must show up in `folder`.
//!
//! IMAP asks for capabilities after the login: servers such as Dovecot announce MOVE and
//! UIDPLUS only to authenticated clients (RFC 3501 allows the list to change at login), so a
//! pre-login list would report them missing. POP3 asks before the login, as the daemon does:
//! a missing UIDL ends the check there.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::net::TcpStream;

use super::net::{self as dnet, LineError, Service};
use super::send::{smtp_steps, test_mail, TestMail};
use super::token::{token_step, REFUSED_TOKEN_HINT};
use super::{find_account, human_duration, Fail, Report, GREETING_TIMEOUT};
use crate::config::{
    AccountConfig, AuthMethod, Config, Disposal, Encryption, ImapAction, Pop3Action, Protocol,
};
use crate::imap::connect::{negotiate_starttls, read_greeting};
use crate::imap::dispose::{Expunge, Plan};
use crate::imap::error::{server_words, ImapError};
use crate::imap::names;
use crate::imap::utf7;
use crate::imap::ImapSession;
use crate::ingest::parse::TEST_HEADER;
use crate::net::MailStream;
use crate::pop3::client::{Pop3Client, Pop3Error, Pop3Timeouts};
use crate::pop3::login::log_in;
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
    fetch_steps(config, account, Duration::from_secs(wait), &mut report).await;
    report.finish("test-fetch")
}

/// The steps of test-fetch for `account` (active or not, in `config` or not), into `report`.
pub async fn fetch_steps(
    config: &Config,
    account: &AccountConfig,
    wait: Duration,
    report: &mut Report,
) {
    let timeout = config.daemon.network_timeout;
    let token = match (account.auth, &account.oauth2) {
        (AuthMethod::Oauth2, Some(o)) => {
            let protocol = account.protocol.into();
            let step = token_step(
                report,
                &account.name,
                o,
                protocol,
                &config.store.path,
                timeout,
            );
            match step.await {
                Some(token) => Some(token),
                None => return,
            }
        }
        _ => None,
    };
    let token = token.as_ref();
    let run = Run {
        config,
        account,
        timeout,
        wait,
        token,
    };
    match account.protocol {
        Protocol::Imap => imap_steps(run, report).await,
        Protocol::Pop3 => pop3_steps(run, report).await,
    };
}

/// What the steps of one test-fetch need.
#[derive(Clone, Copy)]
struct Run<'a> {
    config: &'a Config,
    account: &'a AccountConfig,
    timeout: Duration,
    /// How long to wait for the test mail.
    wait: Duration,
    token: Option<&'a Secret>,
}

/// What differs between IMAP and POP3 in the first steps: how the server greets and how a plain
/// connection is upgraded. The steps themselves ([`open_steps`]) are the same for both, and
/// each protocol's part is the daemon's own code.
trait Opening {
    /// The session the steps hand on: the greeted stream for IMAP, the client for POP3.
    type Session;
    const SERVICE: Service;
    /// The upgrade command as the step's detail names it.
    const UPGRADE: &'static str;
    /// The greeting on `stream`, waited for at most `wait`.
    async fn greeted(&self, stream: MailStream, wait: Duration) -> Result<Self::Session, Fail>;
    /// Greeting and the upgrade command on the plain socket: the socket ready for TLS.
    async fn upgrade(&self, tcp: TcpStream, wait: Duration) -> Result<TcpStream, Fail>;
    /// The session over TLS after the upgrade (the server does not greet again).
    fn over_tls(&self, stream: MailStream) -> Self::Session;
}

/// IMAP's opening: async-imap takes the greeted stream.
struct ImapOpening<'a>(&'a AccountConfig);

impl Opening for ImapOpening<'_> {
    type Session = MailStream;
    const SERVICE: Service = Service::Imap;
    const UPGRADE: &'static str = "STARTTLS";

    async fn greeted(&self, mut stream: MailStream, wait: Duration) -> Result<MailStream, Fail> {
        let greeting = read_greeting(&mut stream, wait).await;
        greeting.map_err(|e| imap_greeting_fail(self.0, e, wait))?;
        Ok(stream)
    }

    async fn upgrade(&self, tcp: TcpStream, wait: Duration) -> Result<TcpStream, Fail> {
        let upgraded = negotiate_starttls(tcp, &self.0.host, wait).await;
        upgraded.map_err(|e| imap_greeting_fail(self.0, e, wait))
    }

    fn over_tls(&self, stream: MailStream) -> MailStream {
        stream
    }
}

/// POP3's opening: the daemon's client, step by step.
struct Pop3Opening<'a> {
    account: &'a AccountConfig,
    timeout: Duration,
}

impl Opening for Pop3Opening<'_> {
    type Session = Pop3Client;
    const SERVICE: Service = Service::Pop3;
    const UPGRADE: &'static str = "STLS";

    async fn greeted(&self, stream: MailStream, wait: Duration) -> Result<Pop3Client, Fail> {
        let mut client = self.over_tls(stream);
        let greeting = client.read_greeting(wait).await;
        greeting.map_err(|e| pop3_greeting_fail(self.account, e, wait))?;
        Ok(client)
    }

    async fn upgrade(&self, tcp: TcpStream, wait: Duration) -> Result<TcpStream, Fail> {
        let fail = |e| pop3_fail(self.account, e);
        let mut plain = self.greeted(MailStream::Plain(tcp), wait).await?;
        plain.refresh_capabilities().await.map_err(fail)?;
        plain.stls().await.map_err(fail)
    }

    fn over_tls(&self, stream: MailStream) -> Pop3Client {
        Pop3Client::from_stream(stream, pop3_timeouts(self.timeout))
    }
}

fn pop3_timeouts(timeout: Duration) -> Pop3Timeouts {
    Pop3Timeouts {
        connect: timeout,
        command: timeout,
    }
}

/// "resolve host", "connect" and "TLS" (the handshake, from the first byte or after the
/// upgrade, and the greeting; without encryption the greeting alone).
async fn open_steps<O: Opening>(
    opening: O,
    account: &AccountConfig,
    timeout: Duration,
    report: &mut Report,
) -> Option<O::Session> {
    let (host, port) = (account.host.as_str(), account.port());
    let addrs = report
        .run(
            "resolve host",
            dnet::resolve(O::SERVICE, host, port, timeout),
        )
        .await?;
    let tcp = report
        .run(
            "connect",
            dnet::connect(O::SERVICE, host, port, &addrs, timeout),
        )
        .await?;
    let greet_wait = timeout.min(GREETING_TIMEOUT);
    let ca = account.ca_file.as_deref();
    let handshake = |tcp| dnet::handshake(O::SERVICE, tcp, host, account.encryption, ca, timeout);
    report
        .run("TLS", async {
            match account.encryption {
                Encryption::Ssl => {
                    let (tls, detail) = handshake(tcp).await?;
                    Ok((opening.greeted(tls, timeout).await?, detail))
                }
                Encryption::Starttls => {
                    let tcp = opening.upgrade(tcp, greet_wait).await?;
                    let (tls, detail) = handshake(tcp).await?;
                    let detail = format!("{} accepted, {detail}", O::UPGRADE);
                    Ok((opening.over_tls(tls), detail))
                }
                Encryption::None => {
                    let plain = MailStream::Plain(tcp);
                    let session = opening.greeted(plain, greet_wait).await?;
                    Ok((session, PLAIN_WARNING.to_string()))
                }
            }
        })
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

fn pop3_greeting_fail(account: &AccountConfig, e: Pop3Error, wait: Duration) -> Fail {
    let unread = match e {
        Pop3Error::Protocol { reply, .. } => {
            return Fail::hint(
                format!("the server did not greet like a POP3 server: {reply:?}"),
                format!(
                    "check `port` and `protocol`; {}",
                    Service::Pop3.default_ports_text()
                ),
            )
        }
        Pop3Error::Timeout { .. } => LineError::Timeout,
        Pop3Error::Closed { .. } => LineError::Closed,
        Pop3Error::Io(e) => LineError::Io(e),
        other => return pop3_fail(account, other),
    };
    dnet::no_greeting(
        Service::Pop3,
        &account.host,
        account.port(),
        account.encryption,
        unread,
        wait,
    )
}

async fn imap_steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let (config, account, timeout) = (run.config, run.account, run.timeout);
    let (wait, token) = (run.wait, run.token);
    let stream = open_steps(ImapOpening(account), account, timeout, report).await?;
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
            let names = crate::imap::login::capability_names(&caps);
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
    // A running mail2ticket may fetch the test mail first and move it on: look in `move_to`
    // too, so a test run beside the daemon (the accounts page's button) still sees it arrive.
    let moved_to = match &action {
        ImapAction::Move { to } => Some(hierarchy.server_name(to)),
        ImapAction::Delete => None,
    };
    let arrived = report
        .run("test mail arrives", async {
            let started = Instant::now();
            let query = format!("HEADER {TEST_HEADER} \"{}\"", mail.stamp);
            let places: Vec<&str> = std::iter::once(folder).chain(moved_to.as_deref()).collect();
            loop {
                for (i, place) in places.iter().enumerate() {
                    imap_timed(timeout, "EXAMINE", session.examine(utf7::encode(place)))
                        .await
                        .map_err(|e| Fail::new(format!("looking for the test mail: {e}")))?;
                    let found = imap_timed(timeout, "UID SEARCH", session.uid_search(&query))
                        .await
                        .map_err(|e| Fail::new(format!("looking for the test mail: {e}")))?;
                    if found.is_empty() {
                        continue;
                    }
                    let then = if i == 0 {
                        format!("the next fetch pass stores it without a ticket: it is {plan}")
                    } else {
                        "a running mail2ticket already fetched it (no ticket: it is a test \
                         mail) and moved it there"
                            .to_string()
                    };
                    return Ok((
                        (),
                        arrival_detail(&format!("in {place:?}"), &then, started.elapsed()),
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

/// "login": the daemon's own login ([`crate::imap::login::log_in`]), its failures told with
/// what to change.
async fn imap_login(
    account: &AccountConfig,
    stream: MailStream,
    timeout: Duration,
    token: Option<&Secret>,
) -> Result<(ImapSession, String), Fail> {
    let user = account.user.as_str();
    match crate::imap::login::log_in(stream, account, timeout, token).await {
        Ok((session, Some(mechanism))) => Ok((
            session,
            format!("logged in as {user} by {}", mechanism.name()),
        )),
        Ok((session, None)) => Ok((session, format!("logged in as {user}"))),
        Err(ImapError::AuthRejected { server, .. }) if token.is_some() => Err(Fail::hint(
            format!("login with the token refused for {user} (server said: {server})"),
            REFUSED_TOKEN_HINT,
        )),
        Err(ImapError::AuthRejected { server, .. }) => Err(Fail::hint(
            format!("login rejected for {user} (server said: {server})"),
            "check `user` and `password`",
        )),
        Err(ImapError::Timeout { operation, secs }) => Err(Fail::hint(
            format!("no answer to {operation} within {secs}s"),
            "check the server, or raise [daemon] network_timeout",
        )),
        Err(e) => Err(Fail::new(e.to_string())),
    }
}

async fn imap_timed<T>(
    timeout: Duration,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, Fail> {
    use async_imap::error::Error as E;
    crate::imap::error::timed(timeout, operation, fut)
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

/// "1 message", "2 messages".
fn messages(n: u32) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

/// The folders the server has, decoded, for hints.
async fn folder_list(session: &mut ImapSession, timeout: Duration) -> String {
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
    session: &mut ImapSession,
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

async fn pop3_steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let (config, account, timeout) = (run.config, run.account, run.timeout);
    let (wait, token) = (run.wait, run.token);
    let mut client = open_steps(Pop3Opening { account, timeout }, account, timeout, report).await?;
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
            let pipelining = if client.has_capability("PIPELINING") {
                "PIPELINING yes"
            } else {
                "PIPELINING no (RETR and DELE wait for each reply)"
            };
            let mut detail = format!(
                "UIDL yes, {stls}, {pipelining}; server lists {}",
                words.join(" ")
            );
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
            let how = log_in(&mut client, account, token)
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
            let how = how.map(|m| format!(" by {}", m.name())).unwrap_or_default();
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
            let tls = crate::tls::client_config(account.ca_file.as_deref())
                .map_err(|e| Fail::new(e.to_string()))?;
            let security = crate::pop3::login::security(account.encryption);
            let mut seen = before;
            // Every look is a login: keep the server's LOGIN-DELAY between two of them.
            let pause = POLL_EVERY.max(Duration::from_millis(500)).max(login_delay);
            tokio::time::sleep(login_delay).await;
            loop {
                // A POP3 session sees the maildrop as it was at login: log in anew each time.
                let found = async {
                    let mut c = Pop3Client::connect(
                        &account.host,
                        account.port(),
                        security,
                        tls.clone(),
                        pop3_timeouts(timeout),
                    )
                    .await?;
                    log_in(&mut c, account, token).await?;
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
