//! test-fetch for IMAP: the client's own stages ([`crate::imap::connect::secure`],
//! [`crate::imap::login::log_in`], [`crate::imap::login::capabilities`],
//! [`crate::imap::names::discover`]) one step each, then the folders, the disposal and the test
//! mail.
//!
//! Capabilities are asked for after the login, as the daemon does: servers such as Dovecot
//! announce MOVE and UIDPLUS only to authenticated clients.

use std::time::{Duration, Instant};

use futures::TryStreamExt;

use super::forecast::Outlook;
use super::net::{self as dnet, Service};
use super::steps::{
    self, arrival_detail, messages, not_arrived, prepare_test_mail, send_step, Run, POLL_EVERY,
};
use super::token::REFUSED_TOKEN_HINT;
use super::{Fail, Report};
use crate::config::{AccountConfig, Disposal, ImapAction};
use crate::imap::connect::secure;
use crate::imap::dispose::{Expunge, Plan};
use crate::imap::error::{server_words, ImapError};
use crate::imap::login::capabilities;
use crate::imap::names;
use crate::imap::utf7;
use crate::imap::ImapSession;
use crate::ingest::parse::TEST_HEADER;
use crate::net::MailStream;
use crate::secret::Secret;

/// "resolve host", "connect" and "TLS", by [`secure`].
async fn open_steps(run: Run<'_>, report: &mut Report) -> Option<MailStream> {
    let (account, timeout) = (run.account, run.timeout);
    steps::open_steps(
        Service::Imap,
        run,
        report,
        async |tcp, tls, greet_wait| secure(tcp, account, tls, timeout, greet_wait).await,
        MailStream::tls_version,
        |e| match e {
            ImapError::Connect(c) => Ok(c),
            e => Err(e),
        },
        |e, greet_wait| imap_greeting_fail(account, e, greet_wait),
    )
    .await
}

fn imap_greeting_fail(account: &AccountConfig, e: ImapError, wait: Duration) -> Fail {
    match e {
        ImapError::Timeout { operation, .. } if operation == "greeting" => dnet::no_greeting(
            Service::Imap,
            &account.host,
            account.port(),
            account.encryption,
            &format!("no greeting within {}s", wait.as_secs()),
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

/// The steps of test-fetch for an IMAP account, after the token.
pub(super) async fn steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let (config, account, timeout) = (run.config, run.account, run.timeout);
    let (wait, token) = (run.wait, run.token);
    let stream = open_steps(run, report).await?;
    let action = match account.disposal() {
        Ok(Disposal::Imap(action)) => action,
        Ok(Disposal::Pop3(_) | Disposal::Graph(_)) | Err(_) => {
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
            let caps = capabilities(&mut session, timeout)
                .await
                .map_err(imap_fail)?;
            let has = |c: &str| caps.iter().any(|have| have.eq_ignore_ascii_case(c));
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
            Ok((caps, detail))
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
    let exists = report
        .run("folder", async {
            match imap_timed(timeout, "EXAMINE", session.examine(utf7::encode(folder))).await {
                Ok(mb) => Ok((
                    mb.exists,
                    format!("{folder:?} exists, {}", messages(mb.exists)),
                )),
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
    let outlook = Outlook::of(config, account);
    report
        .run(
            "forecast",
            forecast_step(&mut session, &outlook, folder, exists, timeout),
        )
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
    crate::imap::error::timed(timeout, operation, fut)
        .await
        .map_err(imap_fail)
}

/// A failed command, with the server's own words when it answered NO or BAD.
fn imap_fail(e: ImapError) -> Fail {
    use async_imap::error::Error as E;
    match e {
        ImapError::Imap {
            operation,
            source: E::No(text) | E::Bad(text),
        } => Fail::new(format!("{operation}: server said: {}", server_words(&text))),
        ImapError::Refused { operation, server } => {
            Fail::new(format!("{operation}: server said: {server}"))
        }
        other => Fail::new(other.to_string()),
    }
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

/// "forecast": what the mails in the examined folder become, by the rules of the pass (see
/// [`super::forecast`]).
///
/// It fetches each mail's INTERNALDATE and Date header (some 100 bytes a mail; 10,000 mails take
/// 0.1 to 0.3 s on Dovecot, see docs/test-commands.md) rather than counting with `UID
/// SEARCH SENTBEFORE` (Date) or `BEFORE` (INTERNALDATE): those compare whole days, without the
/// time or the zone, and no SEARCH says "by the Date, unless it is missing or absurd, then by
/// INTERNALDATE", which is the rule ([`crate::ingest::mail_rules::OldMail::is_old`]). Reading
/// the dates lets the very same rule code judge each mail, to the second.
async fn forecast_step(
    session: &mut ImapSession,
    outlook: &Outlook,
    folder: &str,
    exists: u32,
    timeout: Duration,
) -> Result<((), String), Fail> {
    let mut tally = outlook.tally(format!("{folder:?}"), None, chrono::Utc::now());
    // FETCH 1:* is an error in an empty folder.
    if exists > 0 {
        let read = async {
            let mut stream = session
                .fetch("1:*", "(INTERNALDATE BODY.PEEK[HEADER.FIELDS (DATE)])")
                .await?;
            while let Some(mail) = stream.try_next().await? {
                tally.add(
                    mail.header().unwrap_or_default(),
                    mail.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
                );
            }
            Ok(())
        };
        imap_timed(timeout, "FETCH (INTERNALDATE Date)", read).await?;
    }
    Ok(((), tally.describe()))
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
