//! Rules of `[alerts]`: at least one way to reach the owner, mail only through a configured
//! `[smtp]`, and a webhook over HTTPS (plain HTTP only to this machine: the URL and the alert
//! would cross the network readable).

use super::{Checker, Key};
use crate::config::{AlertsConfig, Config};

pub fn check(c: &mut Checker, config: &Config, alerts: &AlertsConfig) {
    let at = Key::section("alerts");
    if alerts.to.is_empty() && alerts.webhook.is_none() {
        c.error(
            at.clone(),
            "says whom to alert with neither `to` nor `webhook`: set one (or remove [alerts])",
        );
    }
    for address in &alerts.to {
        c.address(at.clone().field("to"), address);
    }
    if let Some(from) = &alerts.from {
        c.address(at.clone().field("from"), from);
    }
    if !alerts.to.is_empty() && config.smtp.is_none() {
        c.error(
            at.clone().field("to"),
            "alert mails are sent through [smtp], which is not configured: add [smtp], or alert \
             by `webhook` only",
        );
    }
    if let Some(url) = &alerts.webhook {
        if let Err(problem) = webhook_url(url.expose()) {
            c.error(at.clone().field("webhook"), problem);
        }
    } else if !alerts.to.is_empty() {
        c.warning(
            at.clone().field("webhook"),
            "not set: when SMTP itself fails (replies not draining), no alert can reach you; a \
             webhook (e.g. an ntfy topic) can",
        );
    }
    if alerts.after.as_secs() < 1 {
        c.error(at.clone().field("after"), "must be at least 1s");
    }
    for address in &alerts.to {
        let own = config
            .accounts
            .iter()
            .find(|a| a.active && a.email.trim().eq_ignore_ascii_case(address.trim()));
        if let Some(account) = own {
            c.warning(
                at.clone().field("to"),
                format!(
                    "{address} is the address of account {:?}: its alerts arrive in that \
                     mailbox, where mail2ticket recognises them and opens no ticket, but moves \
                     or deletes them like test mails; an address you read directly is better",
                    account.name
                ),
            );
        }
    }
}

/// The webhook is reached over HTTPS; plain HTTP only on this machine (a local relay).
fn webhook_url(text: &str) -> Result<(), String> {
    // Shown without the path: it often is the secret.
    let Ok(url) = url::Url::parse(text) else {
        return Err("is not a URL: write e.g. \"https://ntfy.sh/your-topic\"".into());
    };
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if ["127.0.0.1", "localhost", "[::1]"].contains(&host) => Ok(()),
        "http" => Err(format!(
            "is plain HTTP to {host}, which would send the URL and every alert unencrypted: use \
             https://"
        )),
        _ => Err("is not an https:// URL".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn webhooks_are_https_or_loopback_http() {
        assert!(super::webhook_url("https://ntfy.example/shop").is_ok());
        assert!(super::webhook_url("http://127.0.0.1:9000/hook").is_ok());
        let remote = super::webhook_url("http://ntfy.example/secret-topic").unwrap_err();
        assert!(!remote.contains("secret-topic"), "{remote}");
        assert!(super::webhook_url("ftp://x.example/").is_err());
        assert!(super::webhook_url("ntfy.example").is_err());
    }
}
