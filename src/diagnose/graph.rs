//! Microsoft Graph's steps, in Graph's words: the token's application permissions (its `roles`
//! claim) and whether the mailbox was found and the app may open it, shared with test-fetch
//! ([`super::graph_fetch`]), and test-send's sendMail.

use std::sync::Arc;

use super::test_mail::TestMail;
use super::{Fail, Report};
use crate::config::{Config, MailProtocol, OAuth2Config, SmtpConfig};
use crate::graph::client::http_client;
use crate::graph::error::is_mailbox_scoping;
use crate::graph::{folders, roles, GraphClient, GraphError};
use crate::oauth::TokenSource;
use crate::secret::Secret;

/// "permissions": the roles the token carries, and which of `needed` are missing.
pub(super) async fn permissions_step(
    report: &mut Report,
    token: &Secret,
    needed: &[&str],
) -> Option<()> {
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
pub(super) fn graph_fail(e: GraphError) -> Fail {
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

/// A client for `mailbox` at `oauth2`'s Graph, with the token source of the "token" step.
pub(super) fn client(
    tokens: Arc<TokenSource>,
    oauth2: &OAuth2Config,
    ca_file: Option<&std::path::Path>,
    mailbox: &str,
    timeout: std::time::Duration,
) -> Result<GraphClient, Fail> {
    let tls = crate::tls::client_config(ca_file).map_err(|e| Fail::new(e.to_string()))?;
    let http = http_client(&tls, timeout).map_err(graph_fail)?;
    Ok(GraphClient::new(http, &oauth2.graph_url(), mailbox, tokens))
}

/// "mailbox": the inbox of `client`'s mailbox, which every app with a mail permission may read.
pub(super) async fn mailbox_step(report: &mut Report, client: &GraphClient) -> Option<()> {
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
    let (token, tokens) = super::token::token_step(
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
        tokens,
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
                    mail.recipient(),
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
