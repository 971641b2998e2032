//! test-fetch and test-send for Microsoft Graph, in Graph's words: the token's application
//! permissions (its `roles` claim), whether the mailbox was found and the app may open it, the
//! folders, and the test mail sent with sendMail (to the mailbox itself for test-fetch).

use std::sync::Arc;
use std::time::Instant;

use super::fetch::{Run, POLL_EVERY};
use super::send::TestMail;
use super::{human_duration, Fail, Report};
use crate::config::{AccountConfig, Config, MailProtocol, OAuth2Config, SmtpConfig};
use crate::graph::client::{http_client, segment};
use crate::graph::error::is_mailbox_scoping;
use crate::graph::{folders, roles, GraphClient, GraphError};
use crate::oauth::TokenSource;
use crate::secret::Secret;

/// "permissions": the roles the token carries, and which of `needed` are missing.
async fn permissions_step(report: &mut Report, token: &Secret, needed: &[&str]) -> Option<()> {
    report
        .run("permissions", async {
            let Some(granted) = roles::of_token(token.expose()) else {
                return Ok((
                    (),
                    "the token shows no roles (it is not a JWT with a roles claim): Microsoft \
                     Graph decides on each request"
                        .into(),
                ));
            };
            let missing = roles::missing(&granted, needed);
            if missing.is_empty() {
                return Ok((
                    (),
                    format!("application permissions: {}", granted.join(", ")),
                ));
            }
            Err(Fail::hint(
                format!(
                    "the token lacks {} (it carries {})",
                    missing.join(" and "),
                    if granted.is_empty() {
                        "no application permission".to_string()
                    } else {
                        granted.join(", ")
                    }
                ),
                format!(
                    "in Microsoft Entra: App registrations → the app → API permissions → Add a \
                     permission → Microsoft Graph → Application permissions: {}; then \"Grant \
                     admin consent\" (docs/oauth2.md)",
                    missing.join(", ")
                ),
            ))
        })
        .await
}

/// A failed request as a step's failure, with what to do.
fn graph_fail(e: GraphError) -> Fail {
    let hint = match &e {
        GraphError::Api {
            status: 403,
            message,
            ..
        } if is_mailbox_scoping(message) => Some(
            "the app may not open this mailbox: add it to the ApplicationAccessPolicy's group or \
             the RBAC for Applications scope (docs/oauth2.md), or check `user`",
        ),
        GraphError::Api { status: 403, .. } => Some(
            "grant the app Mail.ReadWrite and Mail.Send (application permissions of Microsoft \
             Graph) with admin consent (docs/oauth2.md)",
        ),
        GraphError::Api { status: 404, .. } => {
            Some("check `user`: the mailbox's address or UPN (a shared mailbox by its address)")
        }
        GraphError::FolderNotFound { .. } => Some(
            "fix `folder` / `move_to`: a display-name path such as \"Inbox\" or \
             \"Posteingang/Shop\"; mail2ticket creates no folder",
        ),
        GraphError::Unreachable { .. } => Some("check graph_url and the network (HTTPS to it)"),
        _ => None,
    };
    match hint {
        Some(h) => Fail::hint(e.to_string(), h),
        None => Fail::new(e.to_string()),
    }
}

/// A client for `mailbox` with the tokens of `oauth2`.
fn client(
    config: &Config,
    name: &str,
    oauth2: &OAuth2Config,
    ca_file: Option<&std::path::Path>,
    mailbox: &str,
    timeout: std::time::Duration,
) -> Result<GraphClient, Fail> {
    let tokens = TokenSource::new(
        name,
        oauth2,
        MailProtocol::Graph,
        &config.store.path,
        timeout,
    )
    .map_err(|e| Fail::new(e.to_string()))?;
    let tls = crate::tls::client_config(ca_file).map_err(|e| Fail::new(e.to_string()))?;
    let http = http_client(&tls, timeout).map_err(graph_fail)?;
    Ok(GraphClient::new(
        http,
        &oauth2.graph_url(),
        mailbox,
        Arc::new(tokens),
    ))
}

/// "mailbox": the inbox of `client`'s mailbox, which every app with a mail permission may read.
async fn mailbox_step(report: &mut Report, client: &GraphClient) -> Option<()> {
    report
        .run("mailbox", async {
            let inbox = folders::well_known(client, "inbox")
                .await
                .map_err(graph_fail)?;
            Ok((
                (),
                format!(
                    "{} found; its inbox {:?} holds {} mails",
                    client.mailbox(),
                    inbox.name,
                    inbox.total
                ),
            ))
        })
        .await
}

/// The steps of test-fetch for a Graph account, after the token.
pub(super) async fn fetch_steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let (config, account) = (run.config, run.account);
    let Some(oauth2) = account.oauth2.as_ref() else {
        report.fail_now(
            "token",
            Fail::hint(
                "protocol = \"graph\" signs in with OAuth 2.0",
                "set auth = \"oauth2\" and an [account.oauth2] table (docs/oauth2.md)",
            ),
        );
        return None;
    };
    let token = run.token?;
    permissions_step(report, token, &[roles::READ_WRITE]).await?;
    let client = match client(
        config,
        &account.name,
        oauth2,
        account.ca_file.as_deref(),
        &account.user,
        run.timeout,
    ) {
        Ok(c) => c,
        Err(fail) => {
            report.fail_now("mailbox", fail);
            return None;
        }
    };
    mailbox_step(report, &client).await?;
    let folder = report
        .run("folders", async {
            let folder = folders::resolve(&client, &account.folder)
                .await
                .map_err(graph_fail)?;
            let mut detail = format!("{:?} holds {} mails", account.folder, folder.total);
            if let Ok(crate::config::Disposal::Graph(crate::config::GraphAction::Move { to })) =
                account.disposal()
            {
                folders::resolve(&client, &to).await.map_err(graph_fail)?;
                detail.push_str(&format!("; move_to {to:?} found"));
            }
            Ok((folder, detail))
        })
        .await?;
    let mail = match super::send::test_mail(account, &account.email, &super::test_stamp()) {
        Ok(mail) => mail,
        Err(fail) => {
            report.fail_now("send test mail", fail);
            return None;
        }
    };
    let sent_at = report
        .run("send test mail", async {
            crate::graph::send::send_mime(&client, &mail.raw, true)
                .await
                .map_err(|e| {
                    let mut fail = graph_fail(e);
                    if fail.hint.is_none() {
                        fail.hint =
                            Some("sendMail needs the Mail.Send application permission".into());
                    }
                    fail
                })?;
            Ok((
                Instant::now(),
                format!(
                    "{:?} sent with sendMail from {} to {}: 202 Accepted",
                    mail.subject, account.user, account.email
                ),
            ))
        })
        .await?;
    arrival_step(report, &client, account, &folder, &mail, sent_at, run.wait).await
}

/// "test mail arrived": the newest mails of the folder, looked at until the test mail is there.
async fn arrival_step(
    report: &mut Report,
    client: &GraphClient,
    account: &AccountConfig,
    folder: &folders::Folder,
    mail: &TestMail,
    sent_at: Instant,
    wait: std::time::Duration,
) -> Option<()> {
    let url = client.url(&format!(
        "{}/mailFolders/{}/messages?$select=subject&$orderby=receivedDateTime%20desc&$top=25",
        client.user_path(),
        segment(&folder.id)
    ));
    report
        .run("test mail arrived", async {
            loop {
                let page = client.get_json(&url).await.map_err(graph_fail)?;
                let found = page["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["subject"].as_str() == Some(mail.subject.as_str()));
                if found {
                    return Ok((
                        (),
                        format!(
                            "in {:?} {} after Graph accepted it; the next pass disposes of it \
                             without a ticket",
                            account.folder,
                            human_duration(sent_at.elapsed())
                        ),
                    ));
                }
                if sent_at.elapsed() >= wait {
                    return Err(Fail::hint(
                        format!(
                            "the test mail did not arrive in {:?} within {} s",
                            account.folder,
                            wait.as_secs()
                        ),
                        format!(
                            "check that mail to {} lands in this folder (Outlook rules, the \
                             junk filter), or wait longer with --wait",
                            account.email
                        ),
                    ));
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
        .await
}

/// test-send through `[smtp] protocol = "graph"`: the token and its Mail.Send, the sending
/// mailbox, and sendMail. Returns Graph's answer when the mail was accepted.
pub async fn send_steps(
    config: &Config,
    smtp: &SmtpConfig,
    mail: &TestMail,
    from: &str,
    report: &mut Report,
) -> Option<String> {
    let Some(oauth2) = smtp.oauth2.as_ref() else {
        report.fail_now(
            "SMTP settings",
            Fail::hint(
                "[smtp] protocol = \"graph\" sends as the app with OAuth 2.0",
                "set auth = \"oauth2\" and an [smtp.oauth2] table (docs/oauth2.md)",
            ),
        );
        return None;
    };
    let token = super::token::token_step(
        report,
        "smtp",
        oauth2,
        MailProtocol::Graph,
        &config.store.path,
        smtp.timeout,
    )
    .await?;
    permissions_step(report, &token, &[roles::SEND]).await?;
    let mailbox = smtp.user.clone().unwrap_or_else(|| from.to_string());
    let client = match client(
        config,
        "smtp",
        oauth2,
        smtp.ca_file.as_deref(),
        &mailbox,
        smtp.timeout,
    ) {
        Ok(c) => c,
        Err(fail) => {
            report.fail_now("mailbox", fail);
            return None;
        }
    };
    report
        .run("sendMail", async {
            crate::graph::send::send_mime(&client, &mail.raw, smtp.save_to_sent_items)
                .await
                .map_err(graph_fail)?;
            let answer = "202 Accepted".to_string();
            Ok((
                answer.clone(),
                format!(
                    "{:?} sent from {mailbox} to {}: {answer}{}",
                    mail.subject,
                    mail.envelope
                        .to()
                        .first()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    if smtp.save_to_sent_items {
                        ", a copy kept in Sent Items"
                    } else {
                        ""
                    }
                ),
            ))
        })
        .await
}
