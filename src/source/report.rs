//! What one pass did, for the log line at its end, the metrics and `run --once`.

use std::time::Duration;

use crate::config::Protocol;
use crate::ingest::outcome::Outcome;
use crate::ingest::SourceKey;

/// Logs under the protocol's target (`mail2ticket::imap`, `mail2ticket::pop3`, `mail2ticket::graph`), so a log
/// filter for one protocol sees its mails, whichever module of the shared pass speaks.
macro_rules! log_as {
    ($protocol:expr, $level:ident, $($rest:tt)+) => {
        match $protocol {
            $crate::config::Protocol::Imap => tracing::$level!(target: "mail2ticket::imap", $($rest)+),
            $crate::config::Protocol::Pop3 => tracing::$level!(target: "mail2ticket::pop3", $($rest)+),
            $crate::config::Protocol::Graph => tracing::$level!(target: "mail2ticket::graph", $($rest)+),
        }
    };
}
pub(crate) use log_as;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub fetched: usize,
    pub new_tickets: usize,
    pub followups: usize,
    pub duplicates: usize,
    pub test_mails: usize,
    pub disposed: usize,
    /// Mails larger than `max_message_size` seen for the first time: stored by their header
    /// (counted in `new_tickets` too when they opened one), left on the server.
    pub oversized: usize,
    /// Mails stored by their header before, fetched whole now that they fit.
    pub completed: usize,
    /// Mails whose storage failed this pass (they stay on the server); `quarantined` of them
    /// for good.
    pub failed: usize,
    pub quarantined: usize,
    /// Mails the store recorded with an outcome this version does not know: left on the
    /// server, an error of the account (see `Recorded::Unknown`).
    pub unknown_outcomes: usize,
    /// Disposal problems (e.g. the move_to folder is missing): tickets exist, mails stay.
    pub dispose_errors: Vec<String>,
    /// Mails flagged \Deleted but not expunged (no UIDPLUS, and other clients' mails are
    /// flagged too): tickets exist, mails stay until the guard allows EXPUNGE.
    pub left_flagged: usize,
    /// The POP3 server's LOGIN-DELAY (RFC 2449): the least time between two logins.
    pub login_delay: Option<Duration>,
}

impl PassReport {
    /// Counts one stored mail, logs its line (the source key carries the UID or UIDL) and feeds
    /// the metrics.
    pub fn record(
        &mut self,
        protocol: Protocol,
        account: &str,
        source: &SourceKey,
        outcome: &Outcome,
    ) {
        let source = source.to_string();
        let source = source.as_str();
        crate::metrics::mail_stored(account, outcome);
        match outcome {
            Outcome::NewTicket { number } => {
                self.new_tickets += 1;
                log_as!(protocol, info, account, source, ticket = %number, kind = "new", "mail stored");
            }
            Outcome::FollowUp { number } => {
                self.followups += 1;
                log_as!(protocol, info, account, source, ticket = %number, kind = "follow-up", "mail stored");
            }
            Outcome::Duplicate { number } => {
                self.duplicates += 1;
                log_as!(protocol, info, account, source, ticket = %number, kind = "duplicate", "mail already stored");
            }
            Outcome::OwnAlert => {
                self.test_mails += 1;
                log_as!(
                    protocol,
                    info,
                    account,
                    source,
                    kind = "alert",
                    "one of our own alerts recognised, no ticket"
                );
            }
            Outcome::TestMail => {
                self.test_mails += 1;
                log_as!(
                    protocol,
                    info,
                    account,
                    source,
                    kind = "test",
                    "test-fetch mail recognised, no ticket"
                );
            }
            // Logged by the pass, with the mail's size.
            Outcome::HeaderOnly { opened, .. } => {
                self.oversized += 1;
                self.new_tickets += usize::from(*opened);
            }
            Outcome::Completed { number } => {
                self.completed += 1;
                log_as!(protocol, info, account, source, ticket = %number, kind = "whole",
                    "mail stored whole now that max_message_size allows it, in the ticket of its header (no second reply)");
            }
            Outcome::AlreadyProcessed => {}
        }
    }
}
