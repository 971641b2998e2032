//! What a Graph request failed with, its kind for the poller, and the words an admin can act on.

use crate::oauth::OAuthError;
use crate::source::{ErrorKind, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// DNS, TCP, TLS or a deadline: Graph could not be asked.
    #[error("cannot reach Microsoft Graph at {host}: {detail}")]
    Unreachable {
        host: String,
        detail: String,
        timeout: bool,
    },
    /// Getting a token failed, or Graph refused a token the provider had just issued.
    #[error(transparent)]
    Token(#[from] OAuthError),
    /// Graph answered with an error (its envelope's code and message).
    #[error("Microsoft Graph answered {status} {code} for mailbox {mailbox}: {message}{}", hint(*.status, .code, .message))]
    Api {
        status: u16,
        code: String,
        message: String,
        mailbox: String,
    },
    /// 429 or 503 again and again, each waited out as `Retry-After` said.
    #[error("Microsoft Graph kept throttling mailbox {mailbox} ({tries} answers 429/503, each waited out as Retry-After said); the next pass tries again")]
    Throttled { mailbox: String, tries: u32 },
    /// An answer of a shape the reference does not describe.
    #[error("Microsoft Graph's answer to {what} is not what its reference describes: {detail}")]
    Unexpected { what: String, detail: String },
    /// A folder of the configured path does not exist (nothing is created).
    #[error("folder {path:?} not found in mailbox {mailbox}: {missing:?} is not among {}", shown_names(.siblings))]
    FolderNotFound {
        path: String,
        mailbox: String,
        missing: String,
        siblings: Vec<String>,
    },
}

fn shown_names(names: &[String]) -> String {
    if names.is_empty() {
        return "its folders (there are none)".into();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// What to do about an error answer, by what Graph's reference says it means.
fn hint(status: u16, code: &str, message: &str) -> &'static str {
    let code = code.to_ascii_lowercase();
    match status {
        403 if is_mailbox_scoping(message) => {
            "; the app may not open this mailbox: an ApplicationAccessPolicy or RBAC for \
             Applications scope leaves it out. Add the mailbox to the policy's group or the \
             role assignment's scope (docs/oauth2.md, \"Restrict the app to the shop's mailboxes\")"
        }
        403 => {
            "; the app lacks a permission: grant Mail.ReadWrite (and Mail.Send for replies) as \
             application permissions of Microsoft Graph, with admin consent (docs/oauth2.md)"
        }
        404 if code == "errorinvaliduser" || code == "mailboxnotenabledforrestapi" => {
            "; no such mailbox: check the account's `user` (the mailbox's address or UPN; a \
             shared mailbox works by its address)"
        }
        _ => "",
    }
}

/// Whether a 403 is Exchange's per-mailbox scoping of the app (ApplicationAccessPolicy, RBAC for
/// Applications) rather than a missing permission. Exchange says so only in its message:
/// "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy
/// settings."
pub fn is_mailbox_scoping(message: &str) -> bool {
    message.contains("RAOP") || message.contains("AccessPolicy")
}

impl GraphError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GraphError::Unreachable { timeout: true, .. } => ErrorKind::Timeout,
            GraphError::Unreachable { .. } => ErrorKind::Connect,
            GraphError::Token(e) => ErrorKind::OAuth {
                label: e.kind(),
                permanent: e.is_permanent(),
            },
            GraphError::Api { status, .. } if *status >= 500 => ErrorKind::Connection,
            GraphError::Api { status: 400, .. } => ErrorKind::Protocol,
            GraphError::Api { .. } => ErrorKind::Refused,
            GraphError::Throttled { .. } => ErrorKind::Other,
            GraphError::Unexpected { .. } => ErrorKind::Protocol,
            GraphError::FolderNotFound { .. } => ErrorKind::Folder,
        }
    }

    /// The status of an error answer (for callers that treat 404 as "gone").
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<GraphError> for SourceError {
    fn from(e: GraphError) -> SourceError {
        SourceError::new(e.kind(), e)
    }
}

/// Graph's error envelope in an answer's bytes: `{"error": {"code": ..., "message": ...}}`
/// (<https://learn.microsoft.com/en-us/graph/errors>); an answer that is not one (a proxy's
/// page) gives its first 200 bytes as the message.
pub fn envelope(body: &[u8]) -> (String, String) {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (code, message) = envelope_of(&value);
    let message = message
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    (code, message)
}

/// The code and message of an error envelope already parsed (a `$batch` item's body).
pub fn envelope_of(value: &serde_json::Value) -> (String, Option<String>) {
    let error = &value["error"];
    let code = error["code"].as_str().unwrap_or("(no code)").to_string();
    (code, error["message"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_of_an_access_policy_is_told_from_a_missing_permission() {
        let scoped = GraphError::Api {
            status: 403,
            code: "ErrorAccessDenied".into(),
            message: "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.".into(),
            mailbox: "returns@shop.example".into(),
        };
        assert!(
            scoped.to_string().contains("ApplicationAccessPolicy"),
            "{scoped}"
        );
        let permission = GraphError::Api {
            status: 403,
            code: "ErrorAccessDenied".into(),
            message: "Access is denied. Check credentials and try again.".into(),
            mailbox: "returns@shop.example".into(),
        };
        assert!(
            permission.to_string().contains("Mail.ReadWrite"),
            "{permission}"
        );
        assert_eq!(permission.kind(), ErrorKind::Refused);
    }

    #[test]
    fn the_error_envelope_gives_code_and_message() {
        let (code, message) =
            envelope(br#"{"error":{"code":"ErrorItemNotFound","message":"The specified object was not found in the store."}}"#);
        assert_eq!(code, "ErrorItemNotFound");
        assert!(message.starts_with("The specified object"));
        let (code, _) = envelope(b"<html>proxy</html>");
        assert_eq!(code, "(no code)");
    }
}
