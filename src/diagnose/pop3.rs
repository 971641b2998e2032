//! test-fetch for POP3: the client's own stages ([`Pop3Client::secure`],
//! [`Pop3Client::refresh_capabilities`], [`crate::pop3::login::log_in`]) one step each, then the
//! maildrop and the test mail.
//!
//! Capabilities are asked for before the login, as the daemon does: a missing UIDL ends the
//! check there.

use std::time::{Duration, Instant};

use super::forecast::Outlook;
use super::net::{self as dnet, Service};
use super::steps::{
    self, arrival_detail, is_test_mail, messages, not_arrived, prepare_test_mail, send_step, Run,
    POLL_EVERY,
};
use super::token::REFUSED_TOKEN_HINT;
use super::{Fail, Report};
use crate::config::{AccountConfig, Disposal, Encryption, Pop3Action};
use crate::pop3::client::{Pop3Client, Pop3Error, Pop3Timeouts};
use crate::pop3::login::{log_in, security};
use crate::source::HEADER_LIMIT;

/// "resolve host", "connect" and "TLS", by [`Pop3Client::secure`].
async fn open_steps(run: Run<'_>, report: &mut Report) -> Option<Pop3Client> {
    let (account, timeout) = (run.account, run.timeout);
    let host = account.host.as_str();
    let security = security(account.encryption);
    let timeouts = pop3_timeouts(timeout);
    steps::open_steps(
        Service::Pop3,
        run,
        report,
        async |tcp, tls, greet_wait| {
            Pop3Client::secure(tcp, host, security, tls, timeouts, greet_wait).await
        },
        Pop3Client::tls_version,
        |e| match e {
            Pop3Error::Connect(c) => Ok(c),
            e => Err(e),
        },
        |e, greet_wait| pop3_greeting_fail(account, e, greet_wait),
    )
    .await
}

fn pop3_timeouts(timeout: Duration) -> Pop3Timeouts {
    Pop3Timeouts {
        connect: timeout,
        command: timeout,
    }
}

/// A failure of the opening that is not the handshake's: the greeting, or CAPA and STLS.
fn pop3_greeting_fail(account: &AccountConfig, e: Pop3Error, wait: Duration) -> Fail {
    let greeting = |command: &str| command.starts_with("the greeting");
    let unread = match e {
        Pop3Error::Protocol { command, reply } if greeting(&command) => {
            return Fail::hint(
                format!("the server did not greet like a POP3 server: {reply:?}"),
                format!(
                    "check `port` and `protocol`; {}",
                    Service::Pop3.default_ports_text()
                ),
            )
        }
        Pop3Error::Timeout { command } if greeting(&command) => {
            format!("no greeting within {}s", wait.as_secs())
        }
        Pop3Error::Closed { command } if greeting(&command) => {
            "the server closed the connection before greeting".to_string()
        }
        Pop3Error::Io(e) => format!("reading the greeting failed ({e})"),
        other => return pop3_fail(account, other),
    };
    dnet::no_greeting(
        Service::Pop3,
        &account.host,
        account.port(),
        account.encryption,
        &unread,
    )
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

/// At most this many headers are read for the forecast. A header is some KB (Received lines,
/// DKIM and ARC signatures): 2,000 of them are about 10 MB, a few seconds over a slow line,
/// which is as long as a check should take (on the lab's Dovecot 2,000 headers take 0.1 to 0.2 s).
const FORECAST_HEADERS: usize = 2_000;

/// "forecast": what the mails in the maildrop become, by the rules of the pass (see
/// [`super::forecast`]).
///
/// POP3 knows no date of its own (no INTERNALDATE): a mail's age is its Date header, read with
/// `TOP n 0` (pipelined where offered, as RETR), for the newest [`FORECAST_HEADERS`] mails by
/// number (a maildrop lists its mails in the order they arrived). A server without TOP (it is
/// optional, RFC 1939) gets the rule without the numbers.
async fn forecast_step(
    client: &mut Pop3Client,
    account: &AccountConfig,
    outlook: &Outlook,
    numbers: &[u32],
) -> Result<((), String), Fail> {
    let place = "the maildrop";
    let total = numbers.len() as u64;
    let unread = |why: &str| Ok(((), outlook.unread(place, total, why)));
    if total > 0 && !client.offers_top() {
        return unread("the server offers no TOP to read a mail's header");
    }
    let newest = &numbers[numbers.len().saturating_sub(FORECAST_HEADERS)..];
    let mut tally = outlook.tally(place.into(), Some(total), chrono::Utc::now());
    // At most HEADER_LIMIT of each, as the pass reads a header: a hostile one costs no more.
    let limit = usize::try_from(HEADER_LIMIT).unwrap_or(usize::MAX);
    let replies = client.headers_all(newest, limit).await;
    if let Some(e) = replies.failure {
        return match e {
            // The session is still in step after a -ERR: a server that refuses TOP.
            Pop3Error::Protocol { reply, .. } if replies.accepted.is_empty() => {
                unread(&format!("the server refused TOP ({reply})"))
            }
            e => Err(pop3_fail(account, e)),
        };
    }
    for (_, header) in &replies.accepted {
        tally.add(header, None);
    }
    Ok(((), tally.describe()))
}

/// The steps of test-fetch for a POP3 account, after the token.
pub(super) async fn steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let (config, account, timeout) = (run.config, run.account, run.timeout);
    let (wait, token) = (run.wait, run.token);
    let mut client = open_steps(run, report).await?;
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
    let listed = report
        .run("mailbox", async {
            let (count, size) = client.stat().await.map_err(|e| pop3_fail(account, e))?;
            let uids = client.uidl().await.map_err(|e| pop3_fail(account, e))?;
            Ok((uids, format!("{}, {size} bytes", messages(count))))
        })
        .await?;
    let outlook = Outlook::of(config, account);
    let numbers: Vec<u32> = listed.iter().map(|(n, _)| *n).collect();
    report
        .run(
            "forecast",
            forecast_step(&mut client, account, &outlook, &numbers),
        )
        .await?;
    let before: Vec<String> = listed.into_iter().map(|(_, u)| u).collect();
    let login_delay = client.login_delay().unwrap_or_default();
    let _ = client.quit().await;
    let mail = prepare_test_mail(config, account, report)?;
    let accepted = send_step(config, &mail, report).await?;
    report
        .run("test mail arrives", async {
            let started = Instant::now();
            let tls = crate::tls::client_config(account.ca_file.as_deref())
                .map_err(|e| Fail::new(e.to_string()))?;
            let security = security(account.encryption);
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
