//! What goes wrong talking POP3, one kind per variant, so that the pass ([`super::source`]) and
//! `test-fetch` can tell a wrong password from a dropped connection without reading text.

use std::time::Duration;

use crate::net::ConnectError;

#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    /// DNS failure, refused connection, connect timeout or TLS failure (with an explanation).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "the POP3 server does not offer STLS, so the connection cannot be encrypted and \
         mail2ticket will not log in over it; use encryption = \"ssl\" on the implicit-TLS port \
         (usually 995)"
    )]
    StartTlsNotOffered,
    #[error("login rejected for {user}: check `user` and `password` (server said: {server_text})")]
    AuthRejected { user: String, server_text: String },
    /// RFC 2449 `[LOGIN-DELAY]`: the login came too soon after the previous one (of anybody
    /// using the mailbox). The password was not judged.
    #[error(
        "the POP3 server refused the login as too early: it allows one login every {} \
         (LOGIN-DELAY); this is not a wrong password, the next try waits that long (server \
         said: {server_text})",
        delay.map_or("while".to_string(), |d| format!("{} s", d.as_secs()))
    )]
    LoginDelay {
        /// The delay the server advertised in CAPA, if it did.
        delay: Option<Duration>,
        server_text: String,
    },
    #[error(
        "timed out waiting for the POP3 server at {command}; check `host`, `port` and the \
         firewall, or raise the timeout"
    )]
    Timeout { command: String },
    #[error("unexpected reply from the POP3 server to {command}: {reply}")]
    Protocol { command: String, reply: String },
    #[error(
        "the server does not support UIDL; mail2ticket needs it to tell mails apart and never \
         fetch one twice"
    )]
    UidlNotSupported,
    #[error("the POP3 server closed the connection during {command}")]
    Closed { command: String },
    #[error(
        "the POP3 connection is unusable after an earlier error (at {command}); reconnect \
         (deletions of this session are not committed)"
    )]
    ConnectionBroken { command: String },
    /// A value from the configuration that POP3 cannot carry (e.g. a line break in `user`).
    #[error("{0}")]
    InvalidInput(String),
    #[error("I/O error talking to the POP3 server: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_uidl_is_told_why_it_cannot_be_used() {
        assert!(Pop3Error::UidlNotSupported
            .to_string()
            .contains("never fetch one twice"));
    }
}
