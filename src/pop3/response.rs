//! What the server says, parsed without I/O: status lines (`+OK` / `-ERR`), the lines of a
//! multi-line reply (LIST, UIDL, CAPA), and a RETR body with its dot-stuffing undone (RFC 1939
//! section 3). Kept apart from the socket so each rule can be tested on bytes alone; the
//! reading itself is [`super::transport`]'s.

/// Server text in errors and logs is cut to this many characters.
const MAX_SHOWN: usize = 300;

/// A status line: `+OK text` or `-ERR text`, text owned and lossily decoded.
pub(super) enum Reply {
    Ok(String),
    Err(String),
}

/// A parsed status line; the text is what follows the indicator, without the line ending.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Status<'a> {
    Ok(&'a [u8]),
    Err(&'a [u8]),
}

/// Parses `+OK text` / `-ERR text` (indicator case-insensitive); anything else is `None`.
pub(super) fn parse_status(line: &[u8]) -> Option<Status<'_>> {
    let line = trim_eol(line);
    if let Some(text) = strip_indicator(line, b"+OK") {
        Some(Status::Ok(text))
    } else {
        strip_indicator(line, b"-ERR").map(Status::Err)
    }
}

fn strip_indicator<'a>(line: &'a [u8], indicator: &[u8]) -> Option<&'a [u8]> {
    if line.len() < indicator.len() || !line[..indicator.len()].eq_ignore_ascii_case(indicator) {
        return None;
    }
    let rest = &line[indicator.len()..];
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii_start()),
        Some(_) => None,
    }
}

/// Removes one trailing `\r\n` or `\n`.
pub(super) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Server bytes made printable and short for errors and logs.
pub(super) fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// One line of a multi-line reply, after byte-unstuffing.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MultiLine<'a> {
    /// The terminating ".CRLF" (or ".LF").
    End,
    /// A data line with its line ending, its leading termination octet removed if it had one.
    Data(&'a [u8]),
}

/// RFC 1939 section 3: a line starting with "." is either the terminator (nothing but CRLF
/// follows) or has that first "." stripped.
pub(super) fn unstuff_line(line: &[u8]) -> MultiLine<'_> {
    match line.strip_prefix(b".") {
        Some(b"\r\n" | b"\n") => MultiLine::End,
        Some(rest) => MultiLine::Data(rest),
        None => MultiLine::Data(line),
    }
}

/// `+OK nn mm` of STAT (the text after `+OK`).
pub(super) fn parse_stat(text: &[u8]) -> Option<(u32, u64)> {
    let mut words = text
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    let count = parse_number(words.next()?)?;
    let size = parse_number(words.next()?)?;
    Some((count, size))
}

/// A LIST scan listing: `msgno size` (anything after is ignored, RFC 1939 allows it).
pub(super) fn parse_list_line(line: &[u8]) -> Option<(u32, u64)> {
    parse_stat(trim_eol(line))
}

/// A UIDL listing: `msgno uid`, uid being 1 to 70 characters in 0x21..=0x7E (RFC 1939).
/// Longer uids are accepted (some servers exceed 70), up to 512.
pub(super) fn parse_uidl_line(line: &[u8]) -> Option<(u32, String)> {
    let line = trim_eol(line).trim_ascii();
    let split = line.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let msg = parse_number(&line[..split])?;
    let uid = line[split..].trim_ascii_start();
    if uid.is_empty() || uid.len() > 512 || !uid.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    // Only ASCII is left, so this cannot fail.
    let uid = String::from_utf8(uid.to_vec()).ok()?;
    Some((msg, uid))
}

pub(super) fn parse_capa_line(line: &[u8]) -> Option<String> {
    Some(shown(trim_eol(line).trim_ascii()))
}

/// A decimal number of ASCII digits only (no sign, no blanks); `None` on overflow.
fn parse_number<T: std::str::FromStr>(word: &[u8]) -> Option<T> {
    if word.is_empty() || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The size that a RETR reply announces, as in `+OK 1234 octets`; 0 if none.
pub(super) fn announced_size(text: &[u8]) -> usize {
    let mut words = text.split(u8::is_ascii_whitespace);
    match (words.next(), words.next()) {
        (Some(n), Some(unit)) if unit.eq_ignore_ascii_case(b"octets") => {
            parse_number(n).unwrap_or(0)
        }
        _ => 0,
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum UnstuffState {
    /// At the start of a line.
    #[default]
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw "." at the start of a line.
    Dot,
    /// Saw ".\r" at the start of a line.
    DotCr,
}

/// Streaming decoder of a multi-line body: undoes dot-stuffing and finds the terminator,
/// across arbitrary chunk boundaries, without looking at the bytes otherwise.
#[derive(Debug, Default)]
pub(super) struct Unstuffer {
    state: UnstuffState,
}

impl Unstuffer {
    /// Appends the payload in `input` to `out`. Returns `Some(n)` once the terminator has been
    /// consumed, `n` being the bytes of `input` used (the rest belongs to the next reply), and
    /// `None` when all of `input` was used and more is needed.
    pub(super) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                UnstuffState::Mid => match input[i..].iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        out.extend_from_slice(&input[i..=i + pos]);
                        i += pos + 1;
                        self.state = UnstuffState::LineStart;
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        i = input.len();
                    }
                },
                UnstuffState::LineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = UnstuffState::Dot;
                    } else {
                        self.state = UnstuffState::Mid;
                    }
                }
                UnstuffState::Dot => match input[i] {
                    b'\n' => {
                        self.state = UnstuffState::LineStart;
                        return Some(i + 1);
                    }
                    b'\r' => {
                        i += 1;
                        self.state = UnstuffState::DotCr;
                    }
                    // The "." is dropped; the byte itself (even a second ".") is data.
                    _ => self.state = UnstuffState::Mid,
                },
                UnstuffState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = UnstuffState::LineStart;
                        return Some(i + 1);
                    }
                    // ".\r" not followed by "\n": the dot was stuffing, the "\r" is data.
                    out.push(b'\r');
                    self.state = UnstuffState::Mid;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstuff_all(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut out = Vec::new();
        let used = Unstuffer::default().feed(input, &mut out);
        (out, used)
    }

    /// Feeds `input` in chunks of `size` bytes; returns the body once the terminator is seen.
    fn unstuff_chunked(input: &[u8], size: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut unstuffer = Unstuffer::default();
        for chunk in input.chunks(size) {
            if unstuffer.feed(chunk, &mut out).is_some() {
                return Some(out);
            }
        }
        None
    }

    #[test]
    fn a_status_line_is_ok_or_err_and_nothing_else() {
        assert_eq!(parse_status(b"+OK ready\r\n"), Some(Status::Ok(b"ready")));
        assert_eq!(parse_status(b"+OK\r\n"), Some(Status::Ok(b"")));
        assert_eq!(parse_status(b"+ok  lower\n"), Some(Status::Ok(b"lower")));
        assert_eq!(
            parse_status(b"-ERR [AUTH] Authentication failed.\r\n"),
            Some(Status::Err(b"[AUTH] Authentication failed."))
        );
        assert_eq!(parse_status(b"-ERR\r\n"), Some(Status::Err(b"")));
        assert_eq!(parse_status(b"+OKAY\r\n"), None);
        assert_eq!(parse_status(b"* OK IMAP4rev1 ready\r\n"), None);
        assert_eq!(parse_status(b"\r\n"), None);
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"+O"), None);
    }

    #[test]
    fn dot_stuffed_line_is_unstuffed() {
        let (out, used) = unstuff_all(b"..foo\r\n.\r\n");
        assert_eq!(out, b".foo\r\n");
        assert_eq!(used, Some(10));
        // A line of just ".." is a line of just ".".
        assert_eq!(unstuff_all(b"a\r\n..\r\nb\r\n.\r\n").0, b"a\r\n.\r\nb\r\n");
        // RFC 1939: a leading "." followed by other octets is stripped even if not doubled.
        assert_eq!(unstuff_all(b".x\r\n.\r\n").0, b"x\r\n");
        assert_eq!(unstuff_all(b".\rx\r\n.\r\n").0, b"\rx\r\n");
    }

    #[test]
    fn eight_bit_bytes_survive_exactly() {
        // ISO-8859-1 "Grüße, Müller" plus bytes that are not valid UTF-8 in any order.
        let body: &[u8] = b"Subject: Gr\xfc\xdfe\r\n\r\nM\xfcller \xff\xfe\x80\x00\x7f\r\n";
        let mut wire = body.to_vec();
        wire.extend_from_slice(b".\r\n");
        assert_eq!(unstuff_all(&wire).0, body);
    }

    #[test]
    fn dot_ends_the_body_only_at_line_start() {
        let (out, used) = unstuff_all(b"a.\r\nb . c\r\n.\r\n");
        assert_eq!(out, b"a.\r\nb . c\r\n");
        assert_eq!(used, Some(14));
        // "\r\n.\r\n" inside a line is not possible; ".\r\n" mid-line is data.
        assert_eq!(unstuff_all(b"x.\r\n.\r\n").0, b"x.\r\n");
        // Empty message.
        assert_eq!(unstuff_all(b".\r\n"), (Vec::new(), Some(3)));
        // Without a terminator, more is needed.
        assert_eq!(unstuff_all(b"a\r\n.").1, None);
        assert_eq!(unstuff_all(b"a\r\n.\r").1, None);
    }

    #[test]
    fn crlf_preserved_and_bare_lf_tolerated() {
        assert_eq!(
            unstuff_all(b"A: b\r\n\r\nline\r\n.\r\n").0,
            b"A: b\r\n\r\nline\r\n"
        );
        let (out, used) = unstuff_all(b"a\nb\n..c\n.\n");
        assert_eq!(out, b"a\nb\n.c\n");
        assert_eq!(used, Some(10));
        // Mixed, and a lone CR inside a line is data.
        assert_eq!(unstuff_all(b"a\rb\r\nc\n.\r\n").0, b"a\rb\r\nc\n");
    }

    #[test]
    fn terminator_leaves_following_bytes_alone() {
        let (out, used) = unstuff_all(b"a\r\n.\r\n+OK next\r\n");
        assert_eq!(out, b"a\r\n");
        assert_eq!(used, Some(6));
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let wire: &[u8] = b"..a\r\n.\rb\r\n\xe9t\xe9\n\r\n..\r\nend.\r\n.\r\n";
        let (whole, _) = unstuff_all(wire);
        assert_eq!(whole, b".a\r\n\rb\r\n\xe9t\xe9\n\r\n.\r\nend.\r\n");
        for size in 1..wire.len() {
            assert_eq!(
                unstuff_chunked(wire, size).as_deref(),
                Some(&whole[..]),
                "{size}"
            );
        }
    }

    #[test]
    fn a_listing_line_is_unstuffed_or_ends_the_listing() {
        assert_eq!(unstuff_line(b".\r\n"), MultiLine::End);
        assert_eq!(unstuff_line(b".\n"), MultiLine::End);
        assert_eq!(unstuff_line(b"..\r\n"), MultiLine::Data(b".\r\n"));
        assert_eq!(unstuff_line(b"1 120\r\n"), MultiLine::Data(b"1 120\r\n"));
        assert_eq!(unstuff_line(b".x\r\n"), MultiLine::Data(b"x\r\n"));
    }

    #[test]
    fn list_and_stat_lines_give_message_numbers_and_sizes() {
        assert_eq!(parse_list_line(b"1 120\r\n"), Some((1, 120)));
        assert_eq!(
            parse_list_line(b"2 5000000000 extra info\n"),
            Some((2, 5_000_000_000))
        );
        assert_eq!(parse_list_line(b"x 120\r\n"), None);
        assert_eq!(parse_list_line(b"1\r\n"), None);
        assert_eq!(parse_list_line(b"-1 5\r\n"), None);
        assert_eq!(parse_list_line(b"99999999999 5\r\n"), None);
        assert_eq!(parse_stat(b"2 320"), Some((2, 320)));
        assert_eq!(parse_stat(b"0 0 maildrop empty"), Some((0, 0)));
        assert_eq!(parse_stat(b""), None);
        assert_eq!(announced_size(b"1234 octets"), 1234);
        assert_eq!(announced_size(b"message follows"), 0);
    }

    #[test]
    fn a_uidl_line_gives_the_number_and_a_printable_ascii_uid() {
        assert_eq!(
            parse_uidl_line(b"1 whqtswO00WBw418f9t5JxYwZ\r\n"),
            Some((1, "whqtswO00WBw418f9t5JxYwZ".to_string()))
        );
        assert_eq!(
            parse_uidl_line(b"12 000000015f3e9c1a\n"),
            Some((12, "000000015f3e9c1a".into()))
        );
        assert_eq!(parse_uidl_line(b"1 \r\n"), None);
        assert_eq!(parse_uidl_line(b"1\r\n"), None);
        assert_eq!(parse_uidl_line(b"a b\r\n"), None);
        assert_eq!(parse_uidl_line(b"1 a b\r\n"), None);
        assert_eq!(parse_uidl_line(b"1 caf\xe9\r\n"), None);
    }

    #[test]
    fn shown_text_is_bounded_and_printable() {
        assert_eq!(shown(b"a\x1bb\xff"), "a?b\u{fffd}");
        assert_eq!(shown(&[b'x'; 1000]).chars().count(), MAX_SHOWN + 1);
    }
}
