//! A fetched mail on its way to becoming a ticket: its bytes, what the parser read from them, and
//! where it came from.

use chrono::{DateTime, Utc};

use super::extent::Extent;
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
