//! Folder names as the config writes them and as the server knows them.
//!
//! The config uses "/" as the hierarchy separator on every server ("Erledigt/Geprüft"). Servers
//! differ: Dovecot's default is "/" with folders at the top level, while Courier and Debian's
//! Cyrus use "." and keep every personal folder under "INBOX.". At connect time the server is
//! asked for its separator (`LIST "" ""`) and its personal prefix, and a configured name is
//! mapped: "/" becomes the server's separator and the prefix is put in front. A name that already
//! is the server's full name ("INBOX.Erledigt.Geprüft") is used unchanged, and so is "INBOX".
//!
//! The personal prefix is read from the folder list, not from NAMESPACE: the IMAP parser in use
//! (imap-proto 0.17) does not understand NAMESPACE responses. A server whose top level holds
//! nothing but INBOX, with folders under "INBOX<separator>", has the prefix "INBOX<separator>".
//!
//! A missing `move_to` folder is never created: a typo would silently create a folder that
//! nobody looks at, so the mails stay (with their tickets) and the error and test-fetch name the
//! folder the server would need.

use std::time::Duration;

use futures::TryStreamExt;

use super::error::{timed, ImapError};
use super::wire::ImapSession;

/// The server's hierarchy separator and personal namespace prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchy {
    /// `None` for a flat server (no hierarchy at all).
    pub separator: Option<char>,
    /// "" on most servers, "INBOX." on Courier and Debian's Cyrus.
    pub personal_prefix: String,
}

impl Hierarchy {
    /// The server's name for a configured folder name (before modified UTF-7 encoding).
    pub fn server_name(&self, configured: &str) -> String {
        if configured.eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        let prefix = self.personal_prefix.as_str();
        if !prefix.is_empty() && configured.starts_with(prefix) {
            return configured.to_string();
        }
        let mapped = match self.separator {
            Some(sep) if sep != '/' => configured.replace('/', &sep.to_string()),
            _ => configured.to_string(),
        };
        if prefix.is_empty() || mapped.starts_with(prefix) {
            mapped
        } else {
            format!("{prefix}{mapped}")
        }
    }

    /// The configured name of a server's folder (decoded from modified UTF-7 first): the
    /// inverse of [`Hierarchy::server_name`], so a folder picked from the list maps back to it.
    pub fn configured_name(&self, server: &str) -> String {
        if server.eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        let prefix = self.personal_prefix.as_str();
        let local = match server.strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() && !rest.is_empty() => rest,
            _ => server,
        };
        match self.separator {
            Some(sep) if sep != '/' => local.replace(sep, "/"),
            _ => local.to_string(),
        }
    }

    /// For test-fetch: how a configured name maps, or `None` when it is used as it is.
    pub fn explain(&self, configured: &str) -> Option<String> {
        let server = self.server_name(configured);
        (server != configured).then(|| format!("{configured:?} is {server:?} on this server"))
    }

    /// "separator \".\", personal folders under \"INBOX.\"".
    pub fn describe(&self) -> String {
        let sep = match self.separator {
            Some(c) => format!("separator {:?}", c.to_string()),
            None => "no hierarchy".into(),
        };
        if self.personal_prefix.is_empty() {
            sep
        } else {
            format!("{sep}, personal folders under {:?}", self.personal_prefix)
        }
    }
}

/// Asks the server for its separator and personal prefix (two or three LIST commands).
pub async fn discover(
    session: &mut ImapSession,
    timeout: Duration,
) -> Result<Hierarchy, ImapError> {
    let separator = first_separator(list(session, timeout, "").await?);
    let mut hierarchy = Hierarchy {
        separator,
        personal_prefix: String::new(),
    };
    let Some(sep) = separator.filter(|s| *s != '/') else {
        return Ok(hierarchy);
    };
    let top = list(session, timeout, "%").await?;
    if top
        .iter()
        .all(|(name, _)| name.eq_ignore_ascii_case("INBOX"))
    {
        let under_inbox = list(session, timeout, &format!("INBOX{sep}%")).await?;
        if !under_inbox.is_empty() {
            hierarchy.personal_prefix = format!("INBOX{sep}");
        }
    }
    Ok(hierarchy)
}

/// Every folder a mail can be moved to, as the config writes it: UTF-8, "/"-separated, without
/// the personal prefix, sorted. Folders marked \Noselect (containers only) are left out.
pub async fn configured_folders(
    session: &mut ImapSession,
    hierarchy: &Hierarchy,
    timeout: Duration,
) -> Result<Vec<String>, ImapError> {
    let names = timed(timeout, "LIST", async {
        session
            .list(Some(""), Some("*"))
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    let mut folders: Vec<String> = names
        .iter()
        .filter(|n| {
            !n.attributes()
                .iter()
                .any(|a| matches!(a, async_imap::types::NameAttribute::NoSelect))
        })
        .map(|n| hierarchy.configured_name(&super::utf7::decode(n.name())))
        .collect();
    folders.sort();
    folders.dedup();
    Ok(folders)
}

fn first_separator(names: Vec<(String, Option<String>)>) -> Option<char> {
    names
        .into_iter()
        .find_map(|(_, sep)| sep.and_then(|s| s.chars().next()))
}

async fn list(
    session: &mut ImapSession,
    timeout: Duration,
    pattern: &str,
) -> Result<Vec<(String, Option<String>)>, ImapError> {
    // async-imap sends the pattern as it is: quote it (an empty one would vanish otherwise).
    let quoted = format!("\"{pattern}\"");
    let names = timed(timeout, "LIST", async {
        session
            .list(Some(""), Some(&quoted))
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    Ok(names
        .iter()
        .map(|n| (n.name().to_string(), n.delimiter().map(str::to_string)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Hierarchy;

    fn courier() -> Hierarchy {
        Hierarchy {
            separator: Some('.'),
            personal_prefix: "INBOX.".into(),
        }
    }

    #[test]
    fn slash_maps_to_the_servers_separator_under_its_personal_prefix() {
        assert_eq!(
            courier().server_name("Erledigt/Geprüft"),
            "INBOX.Erledigt.Geprüft"
        );
        assert_eq!(courier().server_name("Archive"), "INBOX.Archive");
        assert_eq!(courier().server_name("INBOX/Archive"), "INBOX.Archive");
    }

    #[test]
    fn the_servers_own_full_name_and_inbox_are_kept() {
        assert_eq!(
            courier().server_name("INBOX.Erledigt.Geprüft"),
            "INBOX.Erledigt.Geprüft"
        );
        assert_eq!(courier().server_name("inbox"), "INBOX");
        assert_eq!(courier().explain("INBOX.Archive"), None);
    }

    #[test]
    fn a_slash_server_without_prefix_uses_names_as_written() {
        let dovecot = Hierarchy {
            separator: Some('/'),
            personal_prefix: String::new(),
        };
        assert_eq!(dovecot.server_name("Erledigt/Geprüft"), "Erledigt/Geprüft");
        assert_eq!(dovecot.explain("Erledigt/Geprüft"), None);
        let flat = Hierarchy::default();
        assert_eq!(flat.server_name("Archive"), "Archive");
    }

    #[test]
    fn a_servers_folder_maps_back_to_its_configured_name() {
        for configured in ["Erledigt/Geprüft", "Archive", "INBOX"] {
            let server = courier().server_name(configured);
            assert_eq!(courier().configured_name(&server), configured);
        }
    }

    #[test]
    fn the_mapping_is_explained() {
        assert_eq!(
            courier().explain("Erledigt/Geprüft").unwrap(),
            "\"Erledigt/Geprüft\" is \"INBOX.Erledigt.Geprüft\" on this server"
        );
    }
}
