//! A folder's display-name path ("Inbox", "Posteingang/Shop", "Erledigt") to its id, as the
//! config names folders for IMAP. Nothing is created: a missing folder is an error naming the
//! folders that do exist.
//!
//! The first name is looked up among the mailbox's top-level folders by display name, ignoring
//! case (Exchange keeps sibling names unique that way), then as one of Graph's well-known folder
//! names (<https://learn.microsoft.com/en-us/graph/api/resources/mailfolder>), so "Inbox" works
//! in a mailbox whose inbox is called "Posteingang". The other names are child folders.

use serde_json::Value;

use super::client::{segment, GraphClient};
use super::error::GraphError;

/// Well-known names as a display name may write them ("Sent Items"), and Graph's name for each.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("inbox", "inbox"),
    ("archive", "archive"),
    ("drafts", "drafts"),
    ("sent items", "sentitems"),
    ("sentitems", "sentitems"),
    ("deleted items", "deleteditems"),
    ("deleteditems", "deleteditems"),
    ("junk email", "junkemail"),
    ("junkemail", "junkemail"),
];

/// One folder as a listing shows it.
#[derive(Debug, Clone)]
pub struct Folder {
    pub id: String,
    pub name: String,
    pub children: u64,
    pub total: u64,
}

impl Folder {
    fn of(value: &Value) -> Option<Folder> {
        Some(Folder {
            id: value["id"].as_str()?.to_string(),
            name: value["displayName"].as_str().unwrap_or("").to_string(),
            children: value["childFolderCount"].as_u64().unwrap_or(0),
            total: value["totalItemCount"].as_u64().unwrap_or(0),
        })
    }
}

/// The folders under `parent` (None: the top level), every page of them.
pub async fn children(
    client: &GraphClient,
    parent: Option<&str>,
) -> Result<Vec<Folder>, GraphError> {
    let path = match parent {
        None => format!("{}/mailFolders?$top=250", client.user_path()),
        Some(id) => format!(
            "{}/mailFolders/{}/childFolders?$top=250",
            client.user_path(),
            segment(id)
        ),
    };
    let mut url = client.url(&path);
    let mut out = Vec::new();
    loop {
        let page = client.get_json(&url).await?;
        out.extend(
            page["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Folder::of),
        );
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => return Ok(out),
        }
    }
}

/// A folder by its well-known name (`inbox`, `sentitems`, ...).
pub async fn well_known(client: &GraphClient, name: &str) -> Result<Folder, GraphError> {
    let url = client.url(&format!(
        "{}/mailFolders/{}",
        client.user_path(),
        segment(name)
    ));
    let value = client.get_json(&url).await?;
    Folder::of(&value).ok_or_else(|| GraphError::Unexpected {
        what: format!("the folder {name}"),
        detail: "no id".into(),
    })
}

/// The id of the folder at `path`.
pub async fn resolve(client: &GraphClient, path: &str) -> Result<Folder, GraphError> {
    let mut names = path.split('/').filter(|n| !n.is_empty());
    let first = names.next().unwrap_or("Inbox");
    let not_found = |missing: &str, siblings: &[Folder]| GraphError::FolderNotFound {
        path: path.to_string(),
        mailbox: client.mailbox().to_string(),
        missing: missing.to_string(),
        siblings: siblings.iter().map(|f| f.name.clone()).collect(),
    };
    let top = children(client, None).await?;
    let mut folder = match find(&top, first) {
        Some(f) => f,
        None => match well_known_name(first) {
            Some(name) => well_known(client, name).await?,
            None => return Err(not_found(first, &top)),
        },
    };
    for name in names {
        let below = children(client, Some(&folder.id)).await?;
        folder = find(&below, name).ok_or_else(|| not_found(name, &below))?;
    }
    Ok(folder)
}

fn find(folders: &[Folder], name: &str) -> Option<Folder> {
    folders
        .iter()
        .find(|f| f.name.to_lowercase() == name.to_lowercase())
        .cloned()
}

/// Graph's well-known name for what a config may write ("Inbox", "Sent Items", "junkemail").
pub fn well_known_name(written: &str) -> Option<&'static str> {
    let lower = written.trim().to_lowercase();
    WELL_KNOWN
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, graph)| *graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_names_are_found_as_written_in_a_config() {
        assert_eq!(well_known_name("Inbox"), Some("inbox"));
        assert_eq!(well_known_name("Sent Items"), Some("sentitems"));
        assert_eq!(well_known_name("junkemail"), Some("junkemail"));
        assert_eq!(well_known_name("Posteingang"), None);
    }
}
