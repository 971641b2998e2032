//! How much of a mail was fetched: all of it, or its header alone (a mail too large to fetch).

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
