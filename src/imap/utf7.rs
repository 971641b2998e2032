//! IMAP mailbox names on the wire use modified UTF-7 (RFC 3501 section 5.1.3):
//! "Erledigt/Geprüft" is sent as "Erledigt/Gepr&APw-ft".

use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};
use base64::Engine;

const ENGINE: GeneralPurpose = GeneralPurpose::new(&IMAP_MUTF7, NO_PAD);

pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Modified UTF-7 (RFC 3501 5.1.3) to UTF-8; undecodable parts are kept as they are.
pub fn decode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let decoded = ENGINE.decode(encoded).ok().and_then(|bytes| {
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16(&units).ok()
            });
            match decoded {
                Some(text) => out.push_str(&text),
                None => out.push_str(&rest[start..start + end + 2]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_back_and_undecodable_parts_stay() {
        assert_eq!(decode("Erledigt/Gepr&APw-ft"), "Erledigt/Geprüft");
        assert_eq!(decode("A &- B"), "A & B");
        assert_eq!(decode("INBOX"), "INBOX");
        for name in ["Größe/Ärger", "日本語", "a&b"] {
            assert_eq!(decode(&encode(name)), name);
        }
    }

    #[test]
    fn encodes_umlauts_and_ampersands() {
        assert_eq!(encode("Erledigt/Geprüft"), "Erledigt/Gepr&APw-ft");
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
    }
}
