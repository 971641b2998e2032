//! The part of storing a batch that needs CPU but no lock: each mail's SHA-256, its raw bytes
//! compressed for `raw_mails`, its text compressed for `articles.text_zstd`, the key that tells
//! copies of one message apart and, for a PostgreSQL store, the words of its word search (see
//! `word_vector`). A pass
//! computes it on a blocking thread together with parsing, while the batch before is still being
//! written, so SQLite's write transaction holds the lock only for writing.

use super::article_text::pack;
use super::batch::{sha256_hex, Incoming};
use super::raw_codec::RawCodec;
use super::word_vector::words_column;
use super::Backend;
use crate::ingest::same_message::{message_key, MessageKey};

/// What [`Store::store_prepared`](super::Store::store_prepared) needs beside the mails
/// themselves, in the same order.
#[derive(Debug)]
pub struct Prepared {
    pub(super) shas: Vec<String>,
    pub(super) packed: Vec<Vec<u8>>,
    /// `articles.text_zstd` of each mail (see `article_text`).
    pub(super) texts: Vec<Vec<u8>>,
    pub(super) msg_keys: Vec<Option<MessageKey>>,
    /// `articles.words` of each mail on PostgreSQL; empty for SQLite, whose full-text index
    /// tokenizes the text itself (see `article_text::index_words`).
    pub(super) words: Vec<String>,
}

impl Prepared {
    pub fn of(mails: &[Incoming], backend: Backend) -> Prepared {
        Prepared {
            shas: mails.iter().map(|m| sha256_hex(&m.raw)).collect(),
            packed: mails
                .iter()
                .map(|m| RawCodec::CURRENT.encode(&m.raw))
                .collect(),
            texts: mails.iter().map(|m| pack(&m.parsed.text)).collect(),
            msg_keys: mails
                .iter()
                .map(|m| message_key(&m.parsed, &m.raw))
                .collect(),
            words: match backend {
                Backend::Postgres => mails.iter().map(words_of).collect(),
                Backend::Sqlite => Vec::new(),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.shas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shas.is_empty()
    }
}

/// A mail's words for PostgreSQL's word search. A panic while building them (a bug) costs the
/// article its words, not its batch: the batch is prepared on a blocking thread, where a panic
/// would end every pass at the same mail.
fn words_of(mail: &Incoming) -> String {
    let build = || words_column(&mail.parsed.subject, &mail.parsed.text);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).unwrap_or_else(|_| {
        tracing::error!(
            source_key = %mail.source_key,
            "building the search words of a mail failed (a bug): it is stored without them, \
             so `tickets find` does not find it by its words"
        );
        String::new()
    })
}
