//! `test-send NAME [--to ADDR]`: a dated test mail from the account through `[smtp]`, by the
//! steps of [`super::smtp`]. test-fetch sends the same mail to the account itself.

use std::process::ExitCode;

use super::smtp::smtp_steps;
use super::test_mail::test_mail;
use super::{find_account, Fail, Report};
use crate::config::{AccountConfig, Config};

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
