//! `test-fetch NAME`: resolve, connect, TLS, capabilities, login, folders, then a test mail sent
//! through [smtp] to the account's own address that must show up in `folder`. The steps of each
//! protocol are in [`super::imap`], [`super::pop3`] and [`super::graph_fetch`]; the token is
//! taken here, what they share (the test mail and waiting for it) is in [`super::steps`].

use std::process::ExitCode;
use std::time::Duration;

use super::steps::Run;
use super::token::token_step;
use super::{find_account, Report};
use crate::config::{AccountConfig, AuthMethod, Config, Protocol};

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
    let run = Run {
        config,
        account,
        timeout,
        wait,
        token: token.as_ref().map(|(secret, _)| secret),
        tokens: token.as_ref().map(|(_, source)| source),
    };
    match account.protocol {
        Protocol::Imap => super::imap::steps(run, report).await,
        Protocol::Pop3 => super::pop3::steps(run, report).await,
        Protocol::Graph => super::graph_fetch::steps(run, report).await,
    };
}
