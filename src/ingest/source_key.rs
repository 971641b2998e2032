//! Which mail on which server a ticket came from. The store keeps the text form
//! (`imap:<folder>:<uidvalidity>:<uid>`, `pop3:<uidl>`, `graph:<immutable id>`) in `processed.source_key`; that form is
//! fixed, so stores written by every earlier version stay valid.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// A mail in an IMAP folder: the configured folder name (not the server's, so a key survives
    /// a change of the server's separator), the folder's UIDVALIDITY and the mail's UID.
    Imap {
        folder: String,
        uidvalidity: u32,
        uid: u32,
    },
    /// A mail in a POP3 maildrop, by its UIDL.
    Pop3 { uidl: String },
    /// A mail in a Microsoft Graph mailbox, by its immutable id (it survives a move).
    Graph { id: String },
}

impl SourceKey {
    /// The start of the text form that every key of one IMAP folder (under one UIDVALIDITY)
    /// shares: the store lists processed keys by it.
    pub fn imap_prefix(folder: &str, uidvalidity: u32) -> String {
        format!("imap:{folder}:{uidvalidity}:")
    }

    /// The start of the text form of every POP3 key.
    pub const POP3_PREFIX: &'static str = "pop3:";

    /// The start of the text form of every Graph key.
    pub const GRAPH_PREFIX: &'static str = "graph:";
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::Imap {
                folder,
                uidvalidity,
                uid,
            } => write!(f, "{}{uid}", SourceKey::imap_prefix(folder, *uidvalidity)),
            SourceKey::Pop3 { uidl } => write!(f, "{}{uidl}", SourceKey::POP3_PREFIX),
            SourceKey::Graph { id } => write!(f, "{}{id}", SourceKey::GRAPH_PREFIX),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a source key (imap:<folder>:<uidvalidity>:<uid>, pop3:<uidl> or graph:<id>)")]
pub struct NotASourceKey(String);

impl FromStr for SourceKey {
    type Err = NotASourceKey;

    /// The store's text form. A folder may itself contain `:`, so UID and UIDVALIDITY are taken
    /// from the end.
    fn from_str(s: &str) -> Result<SourceKey, NotASourceKey> {
        let bad = || NotASourceKey(s.to_string());
        if let Some(uidl) = s.strip_prefix(SourceKey::POP3_PREFIX) {
            if uidl.is_empty() {
                return Err(bad());
            }
            return Ok(SourceKey::Pop3 {
                uidl: uidl.to_string(),
            });
        }
        if let Some(id) = s.strip_prefix(SourceKey::GRAPH_PREFIX) {
            if id.is_empty() {
                return Err(bad());
            }
            return Ok(SourceKey::Graph { id: id.to_string() });
        }
        let rest = s.strip_prefix("imap:").ok_or_else(bad)?;
        let mut parts = rest.rsplitn(3, ':');
        let uid = parts.next().and_then(|u| u.parse().ok()).ok_or_else(bad)?;
        let uidvalidity = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let folder = parts.next().ok_or_else(bad)?.to_string();
        Ok(SourceKey::Imap {
            folder,
            uidvalidity,
            uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_text_form_the_store_has_always_used() {
        let imap = SourceKey::Imap {
            folder: "INBOX".into(),
            uidvalidity: 1700000000,
            uid: 42,
        };
        assert_eq!(imap.to_string(), "imap:INBOX:1700000000:42");
        let pop3 = SourceKey::Pop3 {
            uidl: "000000a15f3e2b1c".into(),
        };
        assert_eq!(pop3.to_string(), "pop3:000000a15f3e2b1c");
        assert!(imap
            .to_string()
            .starts_with(&SourceKey::imap_prefix("INBOX", 1700000000)));
    }

    #[test]
    fn text_forms_parse_back_also_with_colons_in_the_folder() {
        for text in [
            "imap:INBOX:1:1",
            "imap:Support/Kunden:4294967295:7",
            "imap:odd:name:12:34",
            "pop3:UID:with:colons",
            "graph:AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A",
        ] {
            assert_eq!(text.parse::<SourceKey>().unwrap().to_string(), text);
        }
        for text in ["imap:INBOX:x:1", "imap:1:2", "pop3:", "smtp:1", ""] {
            assert!(text.parse::<SourceKey>().is_err(), "{text}");
        }
    }
}
