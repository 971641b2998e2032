//! What goes wrong talking IMAP, and the helpers that turn async-imap's answers into it: the
//! deadline per operation and the server's own words out of a NO or BAD.

use std::time::Duration;

use crate::net::ConnectError;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{host} does not offer STARTTLS; refusing to log in without encryption (use encryption = \"ssl\" with the implicit-TLS port, or \"none\" if you really mean it)")]
    StartTlsNotOffered { host: String },
    #[error("login rejected for {user}: check `user` and `password` (server said: {server})")]
    AuthRejected { user: String, server: String },
    #[error("IMAP {operation} timed out after {secs}s")]
    Timeout { operation: String, secs: u64 },
    #[error("IMAP {operation} failed: {source}")]
    Imap {
        operation: String,
        source: async_imap::error::Error,
    },
    /// The connection failed (reset, closed, I/O error): nothing the server said was wrong.
    #[error("the connection to the IMAP server failed during {operation}: {reason}")]
    Connection { operation: String, reason: String },
    /// A NO or BAD answer: the server understood and declined. The words are the server's.
    #[error("the IMAP server refused {operation}: {server}")]
    Refused { operation: String, server: String },
    /// A protocol violation only (a reply that breaks the protocol), never a refusal.
    #[error("IMAP server sent an unexpected reply to {operation}: {reply}")]
    Protocol { operation: String, reply: String },
    #[error("folder {folder:?} cannot be opened: {reason}; check `folder`")]
    FolderMissing { folder: String, reason: String },
}

impl ImapError {
    /// Errors that retrying soon will not fix (the admin must change something).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ImapError::StartTlsNotOffered { .. } | ImapError::AuthRejected { .. }
        )
    }
}

impl From<ImapError> for crate::source::SourceError {
    fn from(e: ImapError) -> Self {
        use crate::source::ErrorKind;
        let kind = match &e {
            ImapError::Connect(_) => ErrorKind::Connect,
            ImapError::StartTlsNotOffered { .. } => ErrorKind::Tls,
            ImapError::AuthRejected { server, .. } => ErrorKind::LoginRejected {
                server_said: server.clone(),
            },
            ImapError::Timeout { .. } => ErrorKind::Timeout,
            ImapError::Imap { .. } | ImapError::Protocol { .. } => ErrorKind::Protocol,
            ImapError::Refused { .. } => ErrorKind::Refused,
            ImapError::Connection { .. } => ErrorKind::Connection,
            ImapError::FolderMissing { .. } => ErrorKind::Folder,
        };
        crate::source::SourceError::new(kind, e)
    }
}

/// Runs `fut` with the per-operation deadline, mapping both failure kinds to `ImapError`.
pub async fn timed<T>(
    timeout: Duration,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
            Err(ImapError::Refused {
                operation: operation.into(),
                server: server_words(&text),
            })
        }
        Ok(Err(source)) => Err(ImapError::Imap {
            operation: operation.into(),
            source,
        }),
        Err(_) => Err(ImapError::Timeout {
            operation: operation.into(),
            secs: timeout.as_secs(),
        }),
    }
}

/// async-imap renders NO/BAD replies as `code: None, info: Some("...")` (most commands) or
/// `outcome: Outcome { code: None, information: Some("...") }` (STATUS, SELECT); keep the
/// server's words, with a response code such as `[TRYCREATE]` in front as the server sent it.
pub fn server_words(text: &str) -> String {
    let words = ["information: Some(\"", "info: Some(\""]
        .iter()
        .find_map(|marker| text.split_once(marker))
        .map(|(_, rest)| rest.rsplit_once("\")").map_or(rest, |(words, _)| words));
    let Some(words) = words else {
        return text.trim().to_string();
    };
    let words = words.replace("\\\"", "\"");
    // A plain code such as TryCreate or Alert; codes with arguments are left out.
    let code = text.split_once("code: Some(").and_then(|(_, rest)| {
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric())?;
        (end > 0 && rest[end..].starts_with(')')).then(|| &rest[..end])
    });
    match code {
        Some(code) => format!("[{}] {words}", code.to_ascii_uppercase()),
        None => words,
    }
}

/// Whether a refusal carries `[TRYCREATE]`: the target folder does not exist (RFC 3501 6.4.7).
pub fn is_trycreate(server: &str) -> bool {
    server.to_ascii_uppercase().starts_with("[TRYCREATE]")
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_words_strip_the_debug_rendering() {
        assert_eq!(
            super::server_words(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(super::server_words(" plain text "), "plain text");
        assert_eq!(
            super::server_words(
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: Nope") }"#
            ),
            "Mailbox doesn't exist: Nope"
        );
        let missing = super::server_words(
            r#"code: Some(TryCreate), info: Some("Mailbox doesn't exist: Nope")"#,
        );
        assert_eq!(missing, "[TRYCREATE] Mailbox doesn't exist: Nope");
        assert!(super::is_trycreate(&missing));
    }
}
