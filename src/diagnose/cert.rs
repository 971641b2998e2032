//! Just enough X.509 (DER) to name a certificate in a report: subject, issuer and expiry.
//! The certificate was already checked (or rejected) by rustls; this only describes it, and a
//! certificate it cannot read is simply not described.

use chrono::{DateTime, NaiveDateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// e.g. "CN=localhost"
    pub subject: String,
    /// e.g. "CN=mail2ticket lab CA, O=Example"
    pub issuer: String,
    pub not_after: Option<DateTime<Utc>>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Option<CertInfo> {
        let (tag, cert, _) = tlv(der)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, tbs, _) = tlv(cert)?;
        if tag != 0x30 {
            return None;
        }
        let mut rest = tbs;
        let (tag, _, after) = tlv(rest)?;
        if tag == 0xa0 {
            rest = after; // explicit version
        }
        let (_, _, rest) = tlv(rest)?; // serialNumber
        let (_, _, rest) = tlv(rest)?; // signature algorithm
        let (tag, issuer, rest) = tlv(rest)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, validity, rest) = tlv(rest)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, subject, _) = tlv(rest)?;
        if tag != 0x30 {
            return None;
        }
        let (_, _, v) = tlv(validity)?; // notBefore
        let not_after = tlv(v).and_then(|(tag, t, _)| parse_time(tag, t));
        Some(CertInfo {
            subject: name(subject),
            issuer: name(issuer),
            not_after,
        })
    }

    /// "valid until 2036-11-25 (3650 days)", "expired on 2024-01-01".
    pub fn expiry_text(&self) -> String {
        let Some(at) = self.not_after else {
            return "expiry unknown".into();
        };
        let days = (at - Utc::now()).num_days();
        let date = at.format("%Y-%m-%d");
        if at < Utc::now() {
            format!("expired on {date}")
        } else if days < 21 {
            format!("valid until {date}, only {days} more days: renew it soon")
        } else {
            format!("valid until {date} ({days} days)")
        }
    }
}

/// One DER element: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((tag, &input[header..end], &input[end..]))
}

/// A distinguished name as "CN=..., OU=..., O=..., C=..." (the parts a person recognises).
fn name(mut seq: &[u8]) -> String {
    let mut parts: Vec<(usize, String)> = Vec::new();
    while let Some((_, set, rest)) = tlv(seq) {
        seq = rest;
        let mut set = set;
        while let Some((_, atv, rest)) = tlv(set) {
            set = rest;
            let Some((0x06, oid, value)) = tlv(atv) else {
                continue;
            };
            let Some((_, text, _)) = tlv(value) else {
                continue;
            };
            let (rank, label) = match oid {
                [0x55, 0x04, 0x03] => (0, "CN"),
                [0x55, 0x04, 0x0b] => (1, "OU"),
                [0x55, 0x04, 0x0a] => (2, "O"),
                [0x55, 0x04, 0x06] => (3, "C"),
                _ => continue,
            };
            parts.push((rank, format!("{label}={}", String::from_utf8_lossy(text))));
        }
    }
    parts.sort_by_key(|(rank, _)| *rank);
    if parts.is_empty() {
        return "(no name)".into();
    }
    parts
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_time(tag: u8, bytes: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end_matches('Z');
    let full = match tag {
        // UTCTime YYMMDDHHMMSS: 50..99 are 19xx (RFC 5280 4.1.2.5.1)
        0x17 => {
            let yy: u32 = text.get(0..2)?.parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        0x18 => text.to_string(),
        _ => return None,
    };
    NaiveDateTime::parse_from_str(full.get(0..14)?, "%Y%m%d%H%M%S")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate: CN=test.example, O=Example Org, valid 2024-01-01 to
    /// 2034-01-01 (hand-built DER, signature bytes are irrelevant here).
    fn sample() -> Vec<u8> {
        fn el(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 0x80 {
                out.push(content.len() as u8);
            } else {
                out.push(0x82);
                out.extend_from_slice(&(content.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(content);
            out
        }
        fn rdn(oid_last: u8, text: &str) -> Vec<u8> {
            let atv = [el(0x06, &[0x55, 0x04, oid_last]), el(0x0c, text.as_bytes())].concat();
            el(0x31, &el(0x30, &atv))
        }
        let issuer = el(
            0x30,
            &[rdn(0x0a, "Example Org"), rdn(0x03, "Example CA")].concat(),
        );
        let subject = el(0x30, &rdn(0x03, "test.example"));
        let validity = el(
            0x30,
            &[el(0x17, b"240101000000Z"), el(0x18, b"20340101000000Z")].concat(),
        );
        let tbs = el(
            0x30,
            &[
                el(0xa0, &el(0x02, &[2])),
                el(0x02, &[1]),
                el(0x30, &el(0x06, &[0x2a])),
                issuer,
                validity,
                subject,
                el(0x30, &[0u8; 150]),
            ]
            .concat(),
        );
        el(
            0x30,
            &[tbs, el(0x30, &el(0x06, &[0x2a])), el(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn reads_subject_issuer_and_expiry() {
        let info = CertInfo::parse(&sample()).unwrap();
        assert_eq!(info.subject, "CN=test.example");
        assert_eq!(info.issuer, "CN=Example CA, O=Example Org");
        assert_eq!(
            info.not_after.unwrap().to_rfc3339(),
            "2034-01-01T00:00:00+00:00"
        );
        assert!(info.expiry_text().starts_with("valid until 2034-01-01"));
    }

    #[test]
    fn garbage_is_not_described() {
        assert_eq!(CertInfo::parse(b"not a certificate"), None);
        assert_eq!(CertInfo::parse(&[0x30, 0x82, 0xff]), None);
    }
}
