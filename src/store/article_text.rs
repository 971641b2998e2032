//! How an article's decoded text is kept (migration 0022): compressed, in `articles.text_zstd`,
//! one zstd frame of its UTF-8 bytes; `text_body` stays empty for such rows and holds the text of
//! rows written before.
//!
//! The text was the largest part of the store (28.1 of 69.9 MB for 10,000 mixed mails, 0.66× the
//! raw mail; BENCHMARKS.md "Storage"); compressed it is 4.7 MB. SQL can no longer read it, which
//! docs/schema.md says; `tickets show` and the page decode it here, and any zstd library can.
//!
//! SQLite's full-text index (`articles_fts`, external content over `articles`) cannot read a
//! compressed text either, so whoever writes such a row indexes its words with
//! [`index_words`] in the same transaction; its trigger still indexes rows that carry their
//! text in `text_body`.

use sqlx::{Any, Transaction};

use super::raw_codec::RawCodec;
use super::{Backend, SqlBuilder, StoreError};

/// `text_zstd` of an article whose text is `text`. The same zstd level and per-thread context as
/// the raw mail (`RawCodec`): levels 1 and 3 differ by 1 % in size on text of this kind.
pub(crate) fn pack(text: &str) -> Vec<u8> {
    RawCodec::Zstd.encode(text.as_bytes())
}

/// The text back from `text_zstd`. A frame that does not decode, or not to UTF-8, is an error:
/// the store was damaged after the row was written.
pub(crate) fn unpack(frame: &[u8]) -> Result<String, String> {
    let bytes = zstd::stream::decode_all(frame).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// An article's text from its row's `text_body` and `text_zstd`, whichever holds it.
pub(crate) fn of_row(text_body: String, text_zstd: Option<Vec<u8>>) -> Result<String, String> {
    match text_zstd {
        Some(frame) => unpack(&frame),
        None => Ok(text_body),
    }
}

/// Rows of SQLite's full-text index per INSERT: three values each, so a whole write chunk of
/// articles goes in one statement (FTS5 writes one new segment per statement).
const INDEX_CHUNK: usize = 500;

/// Indexes the words of articles whose text is compressed: `(id, subject, text)`. A SQLite store
/// only; PostgreSQL's word column is written with the row (see `word_vector`).
pub(super) async fn index_words(
    tx: &mut Transaction<'_, Any>,
    rows: &[(i64, &str, &str)],
) -> Result<(), StoreError> {
    if Backend::of(tx) != Backend::Sqlite {
        return Ok(());
    }
    for chunk in rows.chunks(INDEX_CHUNK) {
        let mut q = SqlBuilder::new(
            Backend::Sqlite,
            "INSERT INTO articles_fts (rowid, subject, text_body) ",
        );
        q.push_values(chunk, |b, (id, subject, text)| {
            b.push_bind(*id).push_bind(*subject).push_bind(*text);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_unpacks_to_exactly_itself() {
        for text in [
            "",
            "Wo bleibt mein Paket? Grüße aus Köln ✓\r\n"
                .repeat(50)
                .as_str(),
        ] {
            assert_eq!(unpack(&pack(text)).unwrap(), text);
        }
    }

    #[test]
    fn a_damaged_frame_is_an_error_not_other_text() {
        let mut frame = pack(&"Rücksendung 4711 ".repeat(40));
        frame.truncate(frame.len() - 1);
        assert!(unpack(&frame).is_err());
    }

    #[test]
    fn a_row_without_a_frame_keeps_its_plain_text() {
        assert_eq!(of_row("alt".into(), None).unwrap(), "alt");
        assert_eq!(of_row(String::new(), Some(pack("neu"))).unwrap(), "neu");
    }
}
