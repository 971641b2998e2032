//! What became of a mail, typed: the outcome of storing it, and why a mail is left on the server
//! unfetched. The store keeps both as the text of `processed.outcome` (see [`Recorded`]).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NewTicket {
        number: String,
    },
    FollowUp {
        number: String,
    },
    /// The same bytes were already stored for this account (e.g. after a UIDVALIDITY change).
    /// Also: a copy of a message another account (or this one) already stored; it is recorded
    /// against that message's article (see `ingest::same_message`).
    Duplicate {
        number: String,
    },
    /// A test-fetch mail: disposed without a ticket.
    TestMail,
    /// This source key was handled in an earlier pass.
    AlreadyProcessed,
}

impl Outcome {
    /// The text the store records for the mail's source key.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::NewTicket { .. } => "ticket",
            Outcome::FollowUp { .. } => "followup",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::TestMail => "test",
            Outcome::AlreadyProcessed => "processed",
        }
    }
}

/// Why a mail is deliberately left on the server and not fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Larger than `max_message_size`.
    Oversized,
    /// Its storage failed `QUARANTINE_AFTER` times (POP3 has no flag to mark it on the server).
    Quarantined,
}

impl Skipped {
    /// The text the store records for the mail's source key.
    pub fn label(self) -> &'static str {
        match self {
            Skipped::Oversized => "oversized",
            Skipped::Quarantined => "quarantined",
        }
    }
}

/// A source key's row in the store, read back: stored (its mail may leave the server) or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Skipped(Skipped),
}

impl Recorded {
    /// From the store's text. Every label but the skipped ones means a stored mail (a ticket,
    /// follow-up, duplicate or test mail), also a label an older version wrote.
    pub fn from_label(label: &str) -> Recorded {
        [Skipped::Oversized, Skipped::Quarantined]
            .into_iter()
            .find(|s| s.label() == label)
            .map_or(Recorded::Stored, Recorded::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_mails_are_told_apart_from_stored_ones_by_their_label() {
        assert_eq!(
            Recorded::from_label("oversized"),
            Recorded::Skipped(Skipped::Oversized)
        );
        assert_eq!(
            Recorded::from_label("quarantined"),
            Recorded::Skipped(Skipped::Quarantined)
        );
        for label in ["ticket", "followup", "duplicate", "test"] {
            assert_eq!(Recorded::from_label(label), Recorded::Stored);
        }
    }
}
