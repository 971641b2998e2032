//! The `articles.words` column of a PostgreSQL store (`tickets find`), built by the daemon from
//! the subject and the text body, on the thread that parses the batch.
//!
//! PostgreSQL computed the column itself until migration 0020 (a generated column):
//!
//! ```sql
//! to_tsvector('simple', search_text(subject))
//!     || to_tsvector('simple', search_text(left(text_body, 100000)))
//! ```
//!
//! That was 4.5 s of a 7.8 s store of 10,000 mixed mails, under the write transaction
//! (BENCHMARKS.md, "PostgreSQL against SQLite"); PostgreSQL reads the same words from their text
//! form (`'paket':3 'rechnung':1,7`) in 0.5 s. This module writes that text form, and it must
//! be exactly what the expression above gives: queries are still folded by `search_text()` and
//! parsed by `to_tsquery` in the database, the subject index is still that expression, and rows
//! written before keep what PostgreSQL computed. So each step mirrors PostgreSQL 15's:
//!
//! * [`search_text`]: migration 0010's function of the same name.
//! * [`for_each_word`]: the default text search parser (`src/backend/tsearch/wparser_def.c`) on
//!   folded text, which holds no ASCII punctuation any more: words are runs of letters, digits
//!   and combining marks, except that a number followed by `e` and digits ends there
//!   (scientific notation: `12e3abc` is `12e3` and `abc`). Which characters are letters
//!   follows glibc's `iswalpha` in a UTF-8 locale, as the parser does.
//! * [`words_column`]: the `simple` dictionary (lower case), positions from 1 per word, at most
//!   255 positions per word and none past 16,383, words of 2,047 bytes or more skipped, and `||`
//!   shifting the body's positions past the subject's (`src/backend/utils/adt/tsvector_op.c`).
//!
//! tests/postgres_store.rs compares this with the database on every code point of the Basic
//! Multilingual Plane (and some rows beyond), at PostgreSQL's limits and on the real-shaped
//! mails of tests/data; the 10,000 mixed mails of `scripts/bench` agreed as well
//! (BENCHMARKS.md, "PostgreSQL against SQLite"). They differ for characters newer than
//! PostgreSQL 15's and glibc's Unicode tables (Unicode 15 and later) and for a few dozen Indic,
//! Tai Tham and other marks that glibc and Unicode class differently (17 rows of 256 code
//! points, listed in that test): a word with such a character, written by this version, is
//! found only by a query that PostgreSQL folds and parses alike.
//!
//! Written by hand: no crate reproduces PostgreSQL's parser, and the point is to equal it.

use std::borrow::Cow;
use std::collections::HashMap;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// `left(text_body, 100000)`: a tsvector holds at most 1 MB, so a body is indexed by the words
/// of its first 100,000 characters (migration 0008).
const BODY_CHARS: usize = 100_000;
/// The last position PostgreSQL stores; later words all get this one (`MAXENTRYPOS - 1`).
const LAST_POSITION: u16 = 16_383;
/// Positions `to_tsvector` keeps per word (`MAXNUMPOS - 1`).
const POSITIONS_PER_PART: usize = 255;
/// Positions a word keeps when `||` merges two vectors (`MAXNUMPOS`).
const POSITIONS: usize = 256;
/// Words this long or longer (in bytes) are not indexed (`MAXSTRLEN`).
const WORD_BYTES_SKIPPED: usize = 2_047;

/// The text form of the `words` column for an article with this subject and text body, to be
/// cast to `tsvector` by the INSERT.
pub fn words_column(subject: &str, body: &str) -> String {
    let body = match body.char_indices().nth(BODY_CHARS) {
        Some((end, _)) => &body[..end],
        None => body,
    };
    let (subject, body) = (search_text(subject), search_text(body));
    let words = concat(part(&subject), part(&body));
    let mut out = String::with_capacity(words.len() * 12);
    for (i, (word, positions)) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('\'');
        for c in word.chars() {
            // Folding leaves neither, but the text form must stay unambiguous.
            if c == '\'' || c == '\\' {
                out.push(c);
            }
            out.push(c);
        }
        out.push_str("':");
        let mut digits = itoa::Buffer::new();
        for (j, p) in positions.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(digits.format(*p));
        }
    }
    out
}

/// Migration 0010's `search_text()`: lower case; a mark that PostgreSQL's `regexp_replace`
/// drops after a letter a–z dropped from the decomposed (NFD) text, which is composed again
/// (NFC) where it is not already; ASCII punctuation as a space.
pub fn search_text(text: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + 8);
    let mut scratch = Scratch::default();
    let mut rest = text;
    // ASCII is its own decomposition and composition, and no character composes with an ASCII
    // character that follows it: only a run of other characters, with the ASCII character just
    // before it (`e` + U+0301), needs Unicode's tables.
    while let Some(other) = rest.bytes().position(|b| !b.is_ascii()) {
        let start = other.saturating_sub(1);
        push_ascii(&mut out, &rest[..start]);
        let end = rest[other..]
            .bytes()
            .position(|b| b.is_ascii())
            .map_or(rest.len(), |n| other + n);
        scratch.fold(&mut out, &rest[start..end]);
        rest = &rest[end..];
    }
    push_ascii(&mut out, rest);
    String::from_utf8(out).expect("ASCII and whole characters")
}

fn push_ascii(out: &mut Vec<u8>, ascii: &str) {
    out.extend(ascii.bytes().map(|b| {
        if b.is_ascii_punctuation() {
            b' '
        } else {
            b.to_ascii_lowercase()
        }
    }));
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let c = if c.is_ascii_punctuation() { ' ' } else { c };
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

/// Buffers reused for each run of non-ASCII characters.
#[derive(Default)]
struct Scratch {
    lower: String,
    bare: String,
}

impl Scratch {
    fn fold(&mut self, out: &mut Vec<u8>, run: &str) {
        self.lower.clear();
        for c in run.chars() {
            // PostgreSQL lowers one character at a time (towlower); so does
            // char::to_lowercase, except for U+0130, which it writes as i + U+0307, whose mark
            // is dropped below.
            self.lower.extend(c.to_lowercase());
        }
        self.bare.clear();
        let mut after_latin = false;
        for c in self.lower.nfd() {
            if after_latin && dropped_mark(c) {
                continue;
            }
            after_latin = c.is_ascii_lowercase();
            self.bare.push(c);
        }
        match is_nfc_quick(self.bare.chars()) {
            IsNormalized::Yes => self.bare.chars().for_each(|c| push_char(out, c)),
            _ => self.bare.nfc().for_each(|c| push_char(out, c)),
        }
    }
}

/// The marks `search_text()` drops after a–z: those FTS5's `remove_diacritics 2` removes.
fn dropped_mark(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{304}' | '\u{306}'..='\u{30c}' | '\u{30f}' | '\u{311}' | '\u{31b}'
        | '\u{323}'..='\u{328}' | '\u{32d}' | '\u{32e}' | '\u{330}' | '\u{331}')
}

/// How PostgreSQL's parser sees a character of folded text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Starts or continues a word (`p_isalpha`: ASCII letters and glibc's alphabetic
    /// characters, non-ASCII digits among them).
    Letter,
    /// 0–9 (`p_isdigit`: glibc's `iswdigit` knows no others).
    Digit,
    /// Continues a word but starts none (`p_isspecial`: zero-width marks).
    Mark,
    /// Between words.
    Space,
}

fn kind(c: char) -> Kind {
    if c.is_ascii() {
        return if c.is_ascii_alphabetic() {
            Kind::Letter
        } else if c.is_ascii_digit() {
            Kind::Digit
        } else {
            Kind::Space
        };
    }
    let category = c.general_category();
    let mark = matches!(
        category,
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    );
    // glibc counts the combining diacritical marks (the Latin small letters written above
    // among them) as marks, not letters, though Unicode calls some of them alphabetic.
    if mark
        && matches!(c,
            '\u{300}'..='\u{344}' | '\u{346}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}'
            | '\u{1dc0}'..='\u{1de6}' | '\u{20d0}'..='\u{20ff}' | '\u{fe20}'..='\u{fe2f}')
    {
        return Kind::Mark;
    }
    if c.is_alphabetic() || category == GeneralCategory::DecimalNumber {
        return Kind::Letter;
    }
    if mark {
        Kind::Mark
    } else {
        Kind::Space
    }
}

/// Calls `word` with each word of folded text, in order.
fn for_each_word<'t>(text: &'t str, mut word: impl FnMut(&'t str)) {
    let mut rest = text.char_indices().peekable();
    while let Some((start, first)) = rest.next() {
        let mut only_digits = match kind(first) {
            Kind::Letter => false,
            Kind::Digit => true,
            Kind::Mark | Kind::Space => continue,
        };
        let mut end = start + first.len_utf8();
        while let Some(&(at, c)) = rest.peek() {
            if only_digits && c == 'e' && text[at + 1..].starts_with(|d: char| d.is_ascii_digit()) {
                // Scientific notation: the number ends with its exponent's digits.
                let digits = text[at + 1..]
                    .bytes()
                    .take_while(u8::is_ascii_digit)
                    .count();
                end = at + 1 + digits;
                while rest.peek().is_some_and(|&(i, _)| i < end) {
                    rest.next();
                }
                break;
            }
            match kind(c) {
                Kind::Space => break,
                Kind::Digit => {}
                Kind::Letter | Kind::Mark => only_digits = false,
            }
            end = at + c.len_utf8();
            rest.next();
        }
        word(&text[start..end]);
    }
}

/// A word and its positions.
type Word<'t> = (Cow<'t, str>, Vec<u16>);

/// One part's words as `to_tsvector('simple', …)` gives them: sorted by word (bytewise, as
/// PostgreSQL compares lexemes), each word's positions ascending.
fn part(folded: &str) -> Vec<Word<'_>> {
    let mut words: Vec<Word> = Vec::new();
    let mut index: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut position: u16 = 0;
    for_each_word(folded, |word| {
        if word.len() >= WORD_BYTES_SKIPPED {
            return;
        }
        position = position.saturating_add(1);
        let at = position.min(LAST_POSITION);
        let i = *index.entry(word).or_insert_with(|| {
            words.push((lexeme(word), Vec::new()));
            words.len() - 1
        });
        let positions = &mut words[i].1;
        match positions.last() {
            None => positions.push(at),
            Some(&last) => {
                if positions.len() < POSITIONS_PER_PART && last != LAST_POSITION && last != at {
                    positions.push(at);
                }
            }
        }
    });
    words.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    // Two spellings with one lexeme (rare: lower case changed a word) are one word.
    words.dedup_by(|later, first| {
        if later.0 != first.0 {
            return false;
        }
        let mut all = std::mem::take(&mut first.1);
        all.append(&mut later.1);
        all.sort_unstable();
        all.dedup();
        all.truncate(POSITIONS_PER_PART);
        first.1 = all;
        true
    });
    words
}

/// The `simple` dictionary's lexeme: the word in lower case (folding lowered it already, so this
/// rarely changes anything).
fn lexeme(word: &str) -> Cow<'_, str> {
    if word.is_ascii() || word.chars().all(|c| c.to_lowercase().eq([c])) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(word.chars().flat_map(char::to_lowercase).collect())
    }
}

/// `left || right`: the right part's positions shifted past the left part's last one.
fn concat<'a>(left: Vec<Word<'a>>, right: Vec<Word<'a>>) -> Vec<Word<'a>> {
    let shift = left
        .iter()
        .filter_map(|(_, p)| p.last().copied())
        .max()
        .unwrap_or(0);
    let shifted = |p: u16| p.saturating_add(shift).min(LAST_POSITION);
    let mut out: Vec<Word> = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let order = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(l), Some(r)) => l.0.as_bytes().cmp(r.0.as_bytes()),
        };
        let (word, mut positions, more) = match order {
            std::cmp::Ordering::Less => {
                out.extend(left.next());
                continue;
            }
            std::cmp::Ordering::Greater => {
                let (word, more) = right.next().expect("peeked");
                (word, Vec::new(), more)
            }
            std::cmp::Ordering::Equal => {
                let (word, positions) = left.next().expect("peeked");
                let (_, more) = right.next().expect("peeked");
                (word, positions, more)
            }
        };
        for p in more {
            if positions.len() >= POSITIONS || positions.last() == Some(&LAST_POSITION) {
                break;
            }
            positions.push(shifted(p));
        }
        out.push((word, positions));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a sender writes, the words are built (no panic) and every word has
        /// positions PostgreSQL accepts.
        #[test]
        fn any_text_gives_words_postgresql_accepts(subject in "\\PC{0,40}", body in "(\\PC|[ \n\t0-9e])*") {
            let column = words_column(&subject, &body);
            for entry in column.split(' ').filter(|e| !e.is_empty()) {
                let (_, positions) = entry.rsplit_once("':").expect("'word':positions");
                for p in positions.split(',') {
                    let p: u32 = p.parse().expect("a number");
                    prop_assert!((1..=16_383).contains(&p));
                }
            }
        }
    }

    #[test]
    fn folding_lowers_drops_latin_diacritics_and_breaks_at_punctuation() {
        assert_eq!(search_text("Köln-Süd, Nguyễn"), "koln sud  nguyen");
        assert_eq!(search_text("Straße Ørsted"), "straße ørsted");
        assert_eq!(search_text("Order-4711"), "order 4711");
        // Cyrillic keeps its mark, as FTS5 does.
        assert_eq!(search_text("ЙОД"), "йод");
        assert_eq!(search_text("İstanbul"), "istanbul");
    }

    #[test]
    fn words_have_positions_and_the_body_follows_the_subject() {
        assert_eq!(
            words_column("Rechnung 4711", "Die Rechnung kam nicht."),
            "'4711':2 'die':3 'kam':5 'nicht':6 'rechnung':1,4"
        );
        assert_eq!(words_column("", ""), "");
        assert_eq!(words_column("", "a a"), "'a':1,2");
    }

    #[test]
    fn a_number_in_scientific_notation_ends_at_its_exponent() {
        assert_eq!(
            words_column("", "12e3abc 4e5b7f 1e x2e3"),
            "'12e3':1 '1e':5 '4e5':3 'abc':2 'b7f':4 'x2e3':6"
        );
    }

    #[test]
    fn a_word_keeps_255_positions_per_part_and_256_in_all() {
        let many = "ab ".repeat(300);
        let subject_only = words_column(&many, "");
        assert_eq!(subject_only.matches(',').count(), 254);
        let both = words_column(&many, &many);
        assert_eq!(both.matches(',').count(), 255);
        assert!(both.ends_with(",256"), "{both}");
    }

    #[test]
    fn positions_stop_at_16383_and_a_body_at_100000_characters() {
        // 33,334 words of two letters in the first 100,000 characters, each word ~49 times.
        let letters: Vec<char> = ('a'..='z').collect();
        let body: String = (0..40_000)
            .map(|i| format!("{}{} ", letters[i % 26], letters[i / 26 % 26]))
            .collect();
        let column = words_column("", &body);
        let positions: Vec<u32> = column
            .split([' ', ','])
            .map(|p| p.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(positions.iter().max(), Some(&16_383));
        // Each word keeps one position at 16,383 however often it comes after: the 676 words
        // of two letters and the one letter left of the word the 100,000th character cuts.
        assert_eq!(positions.iter().filter(|&&p| p == 16_383).count(), 677);
        assert!(column.contains("'b':16383"), "{}", &column[..200]);
    }

    #[test]
    fn a_word_of_2047_bytes_or_more_is_skipped_without_a_position() {
        let long = "x".repeat(2047);
        assert_eq!(words_column("", &format!("a {long} b")), "'a':1 'b':2");
    }
}
