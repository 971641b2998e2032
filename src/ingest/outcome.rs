//! What became of a mail, typed: the outcome of storing it, and why a mail is left on the server
//! unfetched. The store keeps both as the text of `processed.outcome` and reads it back as a
//! [`Recorded`].
//!
//! A mail too large to fetch is stored by its header ([`Outcome::HeaderOnly`]) and stays on the
//! server, recorded so that it is not fetched again ([`Recorded::HeaderOnly`]) until
//! `max_message_size` allows it; then its whole mail joins the same ticket
//! ([`Outcome::Completed`]) and it may leave the server like any stored mail.

/// The label of [`Outcome::HeaderOnly`], read back as [`Recorded::HeaderOnly`].
pub const HEADER_ONLY: &str = "header-only";

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
    /// Larger than `max_message_size`: its header is stored in ticket `number` (which it opened
    /// when `opened`; else it joined it, as a follow-up or as another copy of a stored message)
    /// and the mail stays on the server, never moved or deleted while it is too large.
    HeaderOnly {
        number: String,
        opened: bool,
    },
    /// The whole mail of one stored before by its header alone, fetched once
    /// `max_message_size` allowed it: an article of the same ticket `number`, without a second
    /// reply. Now it may leave the server.
    Completed {
        number: String,
    },
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
            Outcome::HeaderOnly { .. } => HEADER_ONLY,
            Outcome::Completed { .. } => "completed",
        }
    }
}

/// Why a mail is deliberately left on the server and not fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Larger than `max_message_size`, with no ticket: what earlier versions recorded for every
    /// such mail, and this one only where the server cannot give a header alone (a POP3 server
    /// without TOP). A pass takes such a mail up again as a new one (its header opens a ticket,
    /// or, once it fits, the whole mail), and the record gives way to the new one.
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
/// stored by its header alone, or a label this version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Skipped(Skipped),
    /// Too large to fetch: its header is in a ticket ([`Outcome::HeaderOnly`]). The mail stays
    /// on the server and is not fetched again until it fits `max_message_size`; then the whole
    /// mail is fetched into the same ticket and the record becomes that of a stored mail.
    HeaderOnly,
    /// Written by a newer version, by a version whose labels were renamed, or damaged. Nothing
    /// says the mail has a ticket, so it stays on the server (fail closed) and is not fetched
    /// again either (its key is taken).
    Unknown(String),
}

impl Recorded {
    /// The labels of the records a later record of the same key replaces: too large without a
    /// ticket ([`Skipped::Oversized`]) and held by a header ([`Recorded::HeaderOnly`]). Every
    /// other record of a key is final.
    pub const GIVE_WAY: [&'static str; 2] = ["oversized", HEADER_ONLY];

    /// From the store's text: the labels of [`Outcome::label`] but `processed` (which is never
    /// written) and `header-only` are stored mails, those of [`Skipped::label`] skipped ones;
    /// every other text is [`Recorded::Unknown`].
    pub fn from_label(label: &str) -> Recorded {
        match label {
            "ticket" | "followup" | "duplicate" | "test" | "alert" | "completed" => {
                Recorded::Stored
            }
            HEADER_ONLY => Recorded::HeaderOnly,
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
            Outcome::Completed { number: number() },
        ] {
            assert_eq!(Recorded::from_label(stored.label()), Recorded::Stored);
        }
    }

    #[test]
    fn only_records_of_mails_too_large_give_way_to_a_later_record() {
        let records: Vec<Recorded> = Recorded::GIVE_WAY
            .iter()
            .map(|l| Recorded::from_label(l))
            .collect();
        assert_eq!(
            records,
            [Recorded::Skipped(Skipped::Oversized), Recorded::HeaderOnly]
        );
    }

    #[test]
    fn a_mail_stored_by_its_header_alone_is_not_a_stored_mail() {
        for opened in [true, false] {
            let header = Outcome::HeaderOnly {
                number: "10001".into(),
                opened,
            };
            assert_eq!(Recorded::from_label(header.label()), Recorded::HeaderOnly);
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
