//! A failed pass, with its kind decided where the error happened: the poller picks its wait,
//! the metrics their label and /healthz its words from [`ErrorKind`], without looking inside.

use std::fmt;
use std::time::Duration;

use crate::oauth::OAuthError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// DNS, TCP or TLS: the server could not be reached.
    Connect,
    /// Encryption was asked for and the server does not offer it.
    Tls,
    /// The server rejected the user or password, in its own words.
    LoginRejected {
        server_said: String,
    },
    /// A POP3 login before the server's LOGIN-DELAY (RFC 2449) was over: not a failure.
    LoginTooEarly {
        delay: Option<Duration>,
    },
    Timeout,
    /// A reply that breaks the protocol, or a server without a feature we need.
    Protocol,
    /// A NO or BAD answer: the server understood and declined.
    Refused,
    /// The connection broke (reset, closed).
    Connection,
    /// The configured folder cannot be opened.
    Folder,
    /// The ticket store failed.
    Store,
    /// Getting or using an OAuth 2.0 token failed.
    OAuth {
        label: &'static str,
        permanent: bool,
    },
    /// Several instances: this instance's lease on the account ended (see crate::lease).
    LeaseLost,
    Other,
}

impl ErrorKind {
    /// A store error's kind for the pass: a lost lease is not a store failure.
    pub fn of_store(e: &StoreError) -> ErrorKind {
        match e.kind() {
            crate::store::StoreErrorKind::LeaseLost => ErrorKind::LeaseLost,
            _ => ErrorKind::Store,
        }
    }

    /// A short, stable name for the `errors` metric and /healthz.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::LoginRejected { .. } => "login",
            ErrorKind::LoginTooEarly { .. } => "login_delay",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Refused => "refused",
            ErrorKind::Connection => "connection",
            ErrorKind::Folder => "folder",
            ErrorKind::Store => "store",
            ErrorKind::OAuth { label, .. } => label,
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Other => "other",
        }
    }
}

/// An error of a pass or a connection, and its kind.
#[derive(Debug)]
pub struct SourceError {
    kind: ErrorKind,
    error: anyhow::Error,
}

impl SourceError {
    pub fn new(kind: ErrorKind, error: impl Into<anyhow::Error>) -> SourceError {
        SourceError {
            kind,
            error: error.into(),
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The pass stopped because the account's lease is no longer this instance's.
    pub fn lease_lost() -> SourceError {
        SourceError::new(
            ErrorKind::LeaseLost,
            anyhow::anyhow!(
                "the account's lease is no longer this instance's; nothing more moved or \
                 deleted, the mails are left to the instance holding it"
            ),
        )
    }
}

impl fmt::Display for SourceError {
    /// The whole chain of causes: the kind is for machines, this is for the admin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for SourceError {}

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> SourceError {
        SourceError::new(ErrorKind::of_store(&e), e)
    }
}

impl From<OAuthError> for SourceError {
    fn from(e: OAuthError) -> SourceError {
        let kind = ErrorKind::OAuth {
            label: e.kind(),
            permanent: e.is_permanent(),
        };
        SourceError::new(kind, e)
    }
}

impl<E: Into<SourceError>> From<crate::oauth::login::SignInError<E>> for SourceError {
    fn from(e: crate::oauth::login::SignInError<E>) -> SourceError {
        match e {
            crate::oauth::login::SignInError::OAuth(o) => o.into(),
            crate::oauth::login::SignInError::Login(l) => l.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreErrorKind;

    #[test]
    fn a_store_failure_in_a_pass_is_told_once_and_keeps_its_kind() {
        let store = StoreError::Unavailable {
            kind: StoreErrorKind::Unreachable,
            path: "postgres://m2t:***@db/tickets".into(),
            cause: sqlx::Error::PoolTimedOut,
        };
        let e = SourceError::from(store);
        assert_eq!(e.kind(), &ErrorKind::Store);
        let shown = e.to_string();
        assert_eq!(
            shown.matches("database server unreachable").count(),
            1,
            "{shown}"
        );
        assert_eq!(shown.matches("pool timed out").count(), 1, "{shown}");

        let lost = StoreError::LeaseLost {
            account: "support".into(),
        };
        let e = SourceError::from(lost);
        assert_eq!(e.kind(), &ErrorKind::LeaseLost);
    }
}
