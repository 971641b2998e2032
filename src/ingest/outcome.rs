//! What became of a mail, typed: the outcome of storing it, and why a mail is left on the server
//! unfetched. The store keeps both as the text of `processed.outcome` and reads it back as a
//! [`Recorded`].

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
    /// One of our own alerts: disposed without a ticket.
    OwnAlert,
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
            Outcome::OwnAlert => "alert",
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

/// A source key's row in the store, read back: stored (its mail may leave the server), skipped,
/// or a label this version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Skipped(Skipped),
    /// Written by a newer version, by a version whose labels were renamed, or damaged. Nothing
    /// says the mail has a ticket, so it stays on the server (fail closed) and is not fetched
    /// again either (its key is taken).
    Unknown(String),
}

impl Recorded {
    /// From the store's text: the labels of [`Outcome::label`] but `processed` (which is never
    /// written) are stored mails, those of [`Skipped::label`] skipped ones; every other text is
    /// [`Recorded::Unknown`].
    pub fn from_label(label: &str) -> Recorded {
        match label {
            "ticket" | "followup" | "duplicate" | "test" | "alert" => Recorded::Stored,
            "oversized" => Recorded::Skipped(Skipped::Oversized),
            "quarantined" => Recorded::Skipped(Skipped::Quarantined),
            other => Recorded::Unknown(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_mails_are_told_apart_from_stored_ones_by_their_label() {
        for skipped in [Skipped::Oversized, Skipped::Quarantined] {
            assert_eq!(
                Recorded::from_label(skipped.label()),
                Recorded::Skipped(skipped)
            );
        }
        let number = || "10001".to_string();
        for stored in [
            Outcome::NewTicket { number: number() },
            Outcome::FollowUp { number: number() },
            Outcome::Duplicate { number: number() },
            Outcome::TestMail,
            Outcome::OwnAlert,
        ] {
            assert_eq!(Recorded::from_label(stored.label()), Recorded::Stored);
        }
    }

    #[test]
    fn a_label_this_version_does_not_know_is_not_a_stored_mail() {
        for label in ["", "Ticket", "stored", "processed", "ticket "] {
            assert_eq!(
                Recorded::from_label(label),
                Recorded::Unknown(label.to_string())
            );
        }
    }
}
