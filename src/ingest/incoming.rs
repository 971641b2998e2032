//! A fetched mail on its way to becoming a ticket: its bytes, what the parser read from them, and
//! where it came from.

use chrono::{DateTime, Utc};

use super::parse::ParsedMail;
use super::source_key::SourceKey;

/// A fetched mail on its way into the store.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Which mail on which server it is; unique per account.
    pub source_key: SourceKey,
    pub raw: Vec<u8>,
    pub parsed: ParsedMail,
    /// When mail2ticket fetched it.
    pub received_at: DateTime<Utc>,
    /// When the server received it, where the protocol says (IMAP's INTERNALDATE).
    pub arrived: Option<DateTime<Utc>>,
    /// Whether `raw` is the whole mail or only its header.
    pub extent: Extent,
}

/// How much of a mail was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extent {
    /// The whole mail: `raw` is every byte of it.
    #[default]
    Whole,
    /// The mail is larger than the account's `max_message_size`: only its header was fetched
    /// (`raw` is the header and the empty line after it), and the whole mail of `size` bytes
    /// (as the server listed it) stays on the server until it may be fetched.
    HeaderOnly { size: u64 },
}

impl Extent {
    pub fn is_header_only(self) -> bool {
        matches!(self, Extent::HeaderOnly { .. })
    }
}
