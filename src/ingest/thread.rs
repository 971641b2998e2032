//! Recognising follow-ups by the ticket tag in a subject.

/// Finds `[<tag><number>]` (case-insensitive tag, digits only) in a subject.
pub fn ticket_number_in_subject<'a>(subject: &'a str, tag: &str) -> Option<&'a str> {
    if tag.is_empty() {
        return None;
    }
    let lower = subject.to_lowercase();
    // Lower-casing may change byte lengths for some scripts; only search when it did not.
    if lower.len() != subject.len() {
        return None;
    }
    let needle = format!("[{}", tag.to_lowercase());
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&needle) {
        let start = from + pos + needle.len();
        let rest = &subject[start..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && rest[digits..].starts_with(']') {
            return Some(&rest[..digits]);
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
