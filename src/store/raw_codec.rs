//! How raw mail is kept on disk: compressed with zstd, in `raw_mails` (migration 0009).
//!
//! zstd level 3 against the alternatives on 10,000 mails of the benchmark's mixed corpus is in
//! BENCHMARKS.md ("Storage"); the bytes read back are checked against the SHA-256 taken at
//! ingestion (see `raw::verified_raw`), so compression never weakens "byte-exact".

use std::cell::RefCell;

/// zstd's default level: level 9 gave frames 9 % smaller at a fifth of the speed, on the
/// ingestion path of every mail (BENCHMARKS.md, "Storage").
const ZSTD_LEVEL: i32 = 3;

const ZSTD_INFALLIBLE: &str = "zstd compression into a growable buffer does not fail";

/// Setting up a zstd context costs more than compressing a 4 KB mail, so each thread keeps one;
/// a larger mail gets a context of its own, so the kept one never grows to a huge mail's tables.
const REUSE_CONTEXT_UP_TO: usize = 1 << 20;

thread_local! {
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// How the `data` of a `raw_mails` row decodes to the mail's bytes (its `codec` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawCodec {
    /// One zstd frame.
    Zstd,
}

impl RawCodec {
    /// The codec new rows are written with.
    pub(crate) const CURRENT: RawCodec = RawCodec::Zstd;

    pub(crate) fn label(self) -> &'static str {
        match self {
            RawCodec::Zstd => "zstd",
        }
    }

    pub(crate) fn from_label(label: &str) -> Option<RawCodec> {
        match label {
            "zstd" => Some(RawCodec::Zstd),
            _ => None,
        }
    }

    /// The stored form of `raw`.
    pub(crate) fn encode(self, raw: &[u8]) -> Vec<u8> {
        match self {
            RawCodec::Zstd if raw.len() <= REUSE_CONTEXT_UP_TO => ZSTD.with(|context| {
                let mut context = context.borrow_mut();
                let compressor = match &mut *context {
                    Some(c) => c,
                    None => context
                        .insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect(ZSTD_INFALLIBLE)),
                };
                compressor.compress(raw).expect(ZSTD_INFALLIBLE)
            }),
            RawCodec::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL).expect(ZSTD_INFALLIBLE),
        }
    }

    /// The mail's bytes back; `size` is the length stored with the article (its capacity bound:
    /// a damaged frame claiming more is refused rather than allocated).
    pub(crate) fn decode(self, data: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
        match self {
            RawCodec::Zstd => zstd::bulk::decompress(data, size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_decodes_to_exactly_its_bytes() {
        let raw = b"Subject: Gr\xfc\xdfe\r\n\r\nDie R\xfccksendung ist unterwegs.\r\n".repeat(40);
        let stored = RawCodec::CURRENT.encode(&raw);
        assert!(stored.len() < raw.len() / 4, "{} bytes", stored.len());
        let label = RawCodec::CURRENT.label();
        let codec = RawCodec::from_label(label).unwrap();
        assert_eq!(codec.decode(&stored, raw.len()).unwrap(), raw);
    }

    #[test]
    fn a_damaged_frame_is_an_error_not_other_bytes() {
        let raw = b"From: a@example.test\r\n\r\nhello\r\n".repeat(10);
        let mut stored = RawCodec::CURRENT.encode(&raw);
        let last = stored.len() - 1;
        stored.truncate(last);
        assert!(RawCodec::Zstd.decode(&stored, raw.len()).is_err());
    }
}
