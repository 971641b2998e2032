//! Recognising follow-ups by the ticket tag in a subject.

/// Ticket numbers are row ids plus 10000 in an `i64`, so they never have more digits than this;
/// a longer run of digits is not one of our tags.
pub const MAX_TICKET_DIGITS: usize = 19;

/// Finds `[<tag><number>]` (tag compared ASCII-case-insensitively, digits only) in a subject.
///
/// The search runs on bytes and never case-maps the subject: lower-casing changes the byte
/// length of some characters (İ, K, ẞ, Σ …), so offsets found in a lower-cased copy do not fit
/// the original. The tag is ASCII in practice; a non-ASCII part of it must match exactly.
pub fn ticket_number_in_subject<'a>(subject: &'a str, tag: &str) -> Option<&'a str> {
    if tag.is_empty() {
        return None;
    }
    let hay = subject.as_bytes();
    let tag = tag.as_bytes();
    let mut from = 0;
    while let Some(pos) = hay[from..].iter().position(|&b| b == b'[') {
        let open = from + pos;
        from = open + 1;
        // Too close to the end for the tag: no later `[` can hold one either.
        let candidate = hay.get(from..from + tag.len())?;
        if !candidate.eq_ignore_ascii_case(tag) {
            continue;
        }
        let start = from + tag.len();
        let digits = hay[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if (1..=MAX_TICKET_DIGITS).contains(&digits) && hay.get(start + digits) == Some(&b']') {
            // `start` follows an ASCII `[` and whole characters of the tag, so it is a char
            // boundary; `get` keeps even a mistake in that reasoning from panicking.
            return subject.get(start..start + digits);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_ticket_tag_anywhere_in_the_subject() {
        assert_eq!(
            ticket_number_in_subject("Re: [Ticket#10042] Rückgabe", "Ticket#"),
            Some("10042")
        );
        assert_eq!(
            ticket_number_in_subject("AW: [ticket#7] x", "Ticket#"),
            Some("7")
        );
        assert_eq!(
            ticket_number_in_subject("[Ticket#] x [Ticket#12]", "Ticket#"),
            Some("12")
        );
        assert_eq!(ticket_number_in_subject("[Ticket#12a]", "Ticket#"), None);
        assert_eq!(ticket_number_in_subject("no tag", "Ticket#"), None);
    }

    #[test]
    fn characters_that_change_length_when_lower_cased_neither_panic_nor_hide_the_tag() {
        // İ lower-cases to two chars, K (Kelvin sign, 3 bytes) to a 1-byte k.
        assert_eq!(
            ticket_number_in_subject("İİ[Ticket#\u{212A}", "Ticket#"),
            None
        );
        assert_eq!(
            ticket_number_in_subject("İİ[Ticket#\u{212A}] [TICKET#10001]", "Ticket#"),
            Some("10001")
        );
        assert_eq!(
            ticket_number_in_subject("AW: Maße und Größe ẞ [Ticket#10077]", "Ticket#"),
            Some("10077")
        );
        // The Kelvin sign is not an ASCII k: a tag spelt with it is not our tag.
        assert_eq!(
            ticket_number_in_subject("[Tic\u{212A}et#10001]", "Ticket#"),
            None
        );
    }

    #[test]
    fn absurdly_long_numbers_are_no_tag() {
        let long = format!("[Ticket#{}]", "9".repeat(MAX_TICKET_DIGITS + 1));
        assert_eq!(ticket_number_in_subject(&long, "Ticket#"), None);
        let longest = format!("[Ticket#{}]", "9".repeat(MAX_TICKET_DIGITS));
        assert!(ticket_number_in_subject(&longest, "Ticket#").is_some());
    }

    /// ASCII letters of `tag` in the case given by `upper` (cycled).
    fn recase(tag: &str, upper: &[bool]) -> String {
        tag.chars()
            .enumerate()
            .map(|(i, c)| {
                if upper.get(i % upper.len().max(1)).copied().unwrap_or(false) {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn never_panics_and_returns_only_short_digit_runs(subject in any::<String>(), tag in any::<String>()) {
            if let Some(n) = ticket_number_in_subject(&subject, &tag) {
                prop_assert!(!n.is_empty() && n.len() <= MAX_TICKET_DIGITS);
                prop_assert!(n.bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn finds_a_tag_between_arbitrary_unicode_in_any_ascii_case(
            before in "[^\\[]*",
            after in any::<String>(),
            number in 1u64..=i64::MAX as u64,
            upper in proptest::collection::vec(any::<bool>(), 1..8),
        ) {
            let subject = format!("{before}[{}{number}]{after}", recase("Ticket#", &upper));
            let expected = number.to_string();
            prop_assert_eq!(ticket_number_in_subject(&subject, "Ticket#"), Some(expected.as_str()));
        }

        #[test]
        fn a_subject_without_the_tag_has_no_number(subject in "[^\\[]*") {
            prop_assert_eq!(ticket_number_in_subject(&subject, "Ticket#"), None);
        }
    }
}
