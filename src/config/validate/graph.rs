//! Rules of Microsoft Graph mailboxes (`protocol = "graph"`) and of `[smtp] protocol = "graph"`:
//! what Graph needs that IMAP does not, each named with its key and line.

use super::{Checker, Key};
use crate::config::{AccountConfig, Action, AuthMethod, Grant, SmtpConfig};

pub fn check_account(c: &mut Checker, at: &Key, account: &AccountConfig) {
    let key = |f: &'static str| at.clone().field(f);
    if account.auth != AuthMethod::Oauth2 {
        c.error(
            key("auth"),
            "protocol = \"graph\" signs in as an app: set auth = \"oauth2\" and an \
             [account.oauth2] table with provider = \"microsoft\", tenant, grant = \
             \"client_credentials\" and the client_id and secret of an app with the \
             application permissions Mail.ReadWrite and Mail.Send (docs/oauth2.md)",
        );
    }
    for (field, set) in [
        ("host", !account.host.is_empty()),
        ("port", account.port.is_some()),
    ] {
        if set {
            c.warning(
                key(field),
                "ignored with protocol = \"graph\": the mailbox is reached at [account.oauth2] \
                 graph_url (default https://graph.microsoft.com/v1.0)",
            );
        }
    }
    if let Some(o) = &account.oauth2 {
        graph_scope(
            c,
            at.clone().table("oauth2").field("scope"),
            o.scope.as_deref(),
        );
        if o.grant == Grant::RefreshToken {
            c.warning(
                at.clone().table("oauth2").field("grant"),
                "a delegated sign-in reads only the mailboxes its user may open; a shop's shared \
                 mailbox needs grant = \"client_credentials\" with the application permissions \
                 Mail.ReadWrite and Mail.Send (docs/oauth2.md)",
            );
        }
    }
    folder_path(c, key("folder"), &account.folder);
    if let (Action::Move, Some(to)) = (account.action, &account.move_to) {
        folder_path(c, key("move_to"), to);
    }
}

/// A scope set by hand must be Graph's: a token for another resource (IMAP's
/// `https://outlook.office365.com/.default`) is refused by every Graph request.
fn graph_scope(c: &mut Checker, at: Key, scope: Option<&str>) {
    if let Some(scope) = scope {
        if !scope.contains("graph.microsoft.com") {
            c.warning(
                at,
                format!(
                    "{scope:?} names no Microsoft Graph scope: a Graph token needs \
                     \"https://graph.microsoft.com/.default\" (leave scope out for it)"
                ),
            );
        }
    }
}

/// A display-name path: names separated by "/", none of them empty.
fn folder_path(c: &mut Checker, at: Key, path: &str) {
    if path.split('/').any(|name| name.trim().is_empty()) {
        c.error(
            at,
            format!(
                "{path:?} has an empty folder name: write the display names separated by \"/\", \
                 e.g. \"Inbox\" or \"Posteingang/Shop\""
            ),
        );
    }
}

pub fn check_smtp(c: &mut Checker, at: &Key, smtp: &SmtpConfig) {
    let key = |f: &'static str| at.clone().field(f);
    if smtp.auth != AuthMethod::Oauth2 {
        c.error(
            key("auth"),
            "protocol = \"graph\" sends as an app: set auth = \"oauth2\" and an [smtp.oauth2] \
             table whose app has the application permission Mail.Send (docs/oauth2.md)",
        );
    }
    if let Some(o) = &smtp.oauth2 {
        graph_scope(
            c,
            at.clone().table("oauth2").field("scope"),
            o.scope.as_deref(),
        );
    }
    for (field, set) in [
        ("host", !smtp.host.is_empty()),
        ("port", smtp.port.is_some()),
    ] {
        if set {
            c.warning(
                key(field),
                "ignored with protocol = \"graph\": replies go through sendMail at \
                 [smtp.oauth2] graph_url",
            );
        }
    }
}
