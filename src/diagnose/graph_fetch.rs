//! test-fetch for a Microsoft Graph account, after the token: its permissions, the mailbox, the
//! folders, and a test mail sent with sendMail to the mailbox itself, seen arriving.

use std::time::Instant;

use super::graph::{client, graph_fail, mailbox_step, permissions_step};
use super::steps::{Run, POLL_EVERY};
use super::test_mail::TestMail;
use super::{human_duration, Fail, Report};
use crate::config::AccountConfig;
use crate::graph::client::segment;
use crate::graph::{folders, roles, GraphClient};

/// The steps of test-fetch for a Graph account, after the token.
pub(super) async fn steps(run: Run<'_>, report: &mut Report) -> Option<()> {
    let account = run.account;
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
    let (token, tokens) = (run.token?, run.tokens?);
    permissions_step(report, token, &[roles::READ_WRITE]).await?;
    let client = match client(
        tokens.clone(),
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
    let mail = match super::test_mail::test_mail(account, &account.email, &super::test_stamp()) {
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
