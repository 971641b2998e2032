//! A fetched mail on its way to becoming a ticket: its bytes, what the parser read from them, and
//! where it came from.

use chrono::{DateTime, Utc};

use super::parse::ParsedMail;

/// A fetched mail on its way into the store.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Unique per account: `imap:<folder>:<uidvalidity>:<uid>` or `pop3:<uidl>`.
    pub source_key: String,
    pub raw: Vec<u8>,
    pub parsed: ParsedMail,
    pub received_at: DateTime<Utc>,
}
