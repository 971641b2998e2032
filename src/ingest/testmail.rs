//! Test mails of `test-fetch` are disposed of without a ticket. Anyone can write a header, so the
//! marker is signed: `X-Mail2ticket-Test: <stamp>; sig=<hmac>` with an HMAC keyed by the account's
//! password. A stranger's mail carrying the header is an ordinary mail and gets its ticket.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

fn signature(key: &Secret, account_email: &str, stamp: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(account_email.to_ascii_lowercase().as_bytes());
    mac.update(b"\n");
    mac.update(stamp.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The header value for a test mail sent to `account_email` at `stamp`.
pub fn marker(key: &Secret, account_email: &str, stamp: &str) -> String {
    format!("{stamp}; sig={}", signature(key, account_email, stamp))
}

/// The stamp of a marker (what test-fetch searches for), folded or not.
pub fn stamp(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// True when `value` was made by [`marker`] with the same key and address.
pub fn is_genuine(value: &str, key: &Secret, account_email: &str) -> bool {
    // The header may arrive folded ("...Z;\r\n sig=..."): unfold before reading it.
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((stamp, sig)) = value.rsplit_once("; sig=") else {
        return false;
    };
    let expected = signature(key, account_email, stamp);
    // Constant-time enough for a 128-bit tag compared once per mail.
    expected.len() == sig.len()
        && expected
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_marker_signed_with_the_account_key_is_genuine() {
        let key = Secret::new("pw");
        let m = marker(&key, "support@example.test", "2026-11-28T10:00:00Z");
        assert!(is_genuine(&m, &key, "Support@Example.test"));
        assert!(is_genuine(
            &m.replace("; ", ";\r\n "),
            &key,
            "support@example.test"
        ));
        assert!(!is_genuine(
            &m,
            &Secret::new("other"),
            "support@example.test"
        ));
        assert!(!is_genuine(&m, &key, "returns@example.test"));
        assert!(!is_genuine(
            "2026-11-28T10:00:00Z",
            &key,
            "support@example.test"
        ));
        assert!(!is_genuine("x; sig=00", &key, "support@example.test"));
        assert!(!m.contains("pw"));
        assert_eq!(stamp(&m.replace("; ", ";\r\n ")), "2026-11-28T10:00:00Z");
    }
}
