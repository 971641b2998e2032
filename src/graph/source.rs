//! Graph's part of the ingestion pass ([`crate::source::pass`]): the folder listed by delta
//! query, mails fetched as MIME, moved or deleted once their tickets are durable, all in
//! `$batch`es of up to 20 requests.
//!
//! - **Listing** (<https://learn.microsoft.com/en-us/graph/delta-query-messages>): the first pass
//!   pages through the whole folder with `messages/delta`; later passes call the delta link and
//!   get only what changed, so a pass that finds nothing costs one request. The folder's mails
//!   are kept here between passes ([`GraphMailbox`]); a restart, or a delta link Graph no longer
//!   knows (410), starts again with a full round.
//! - **Keys**: the immutable id (`graph:<id>`): it survives the move, so after a crash between
//!   the commit and the move the next pass finds the mail recorded as stored and only moves it.
//! - **Fetch**: `GET …/messages/{id}/$value`, the MIME bytes stored byte-exact as with IMAP. A
//!   mail too large to fetch gives its header from `internetMessageHeaders`.
//! - **Dispose**: `move` to the folder of `move_to`, or `DELETE` (a soft delete: the mail leaves
//!   every folder and stays recoverable for the tenant's retention time, see docs/oauth2.md).
//! - **Quarantine**: Graph could tag a mail with a category, but a category is visible to the
//!   staff and kept by Outlook rules; the store remembers the mail instead, as for POP3.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::client::{segment, BatchItem, GraphClient, ItemAnswer, BATCH_LIMIT};
use super::error::GraphError;
use super::folders;
use crate::account::AccountRuntime;
use crate::config::{GraphAction, Protocol};
use crate::source::{
    Fetched, FetchedMail, Finished, Listed, Listing, PassReport, Quarantine, Source, SourceError,
    SourceKey, HEADER_LIMIT,
};
use crate::store::ProcessedState;

/// PidTagMessageSize, the size Exchange gives a message, as a Graph extended property: the pass
/// needs it to leave a mail larger than `max_message_size` unfetched.
const SIZE_PROPERTY: &str = "Integer 0x0E08";

/// Mails up to this size are fetched twenty to a `$batch`; larger ones one by one.
const BATCHED_UP_TO: u64 = 1024 * 1024;

/// Mails per page of a delta round (`Prefer: odata.maxpagesize`).
const DELTA_PAGE: usize = 200;

/// A mailbox's folders, as the pass uses them.
#[derive(Debug, Clone)]
struct Folders {
    /// The configured folder's id.
    folder: String,
    /// `move_to`'s id, with `action = "move"`.
    move_to: Option<String>,
}

/// A mail in the folder as the last delta round left it.
#[derive(Debug, Clone)]
struct Seen {
    size: u64,
    received: Option<DateTime<Utc>>,
}

/// One mailbox and what the poller keeps of it between passes: the folder ids and the delta
/// state.
pub struct GraphMailbox {
    client: GraphClient,
    account: String,
    folder_path: String,
    action: GraphAction,
    folders: Option<Folders>,
    /// The delta link of the last round (None: the next round lists the whole folder).
    delta_link: Option<String>,
    mails: HashMap<String, Seen>,
}

impl GraphMailbox {
    /// The mailbox of an account with `protocol = "graph"`.
    pub fn for_account(
        rt: &AccountRuntime,
        action: &GraphAction,
    ) -> Result<GraphMailbox, SourceError> {
        let client = client_for(rt)?;
        Ok(GraphMailbox::new(
            client,
            &rt.account.name,
            &rt.account.folder,
            action,
        ))
    }

    pub fn new(
        client: GraphClient,
        account: &str,
        folder_path: &str,
        action: &GraphAction,
    ) -> GraphMailbox {
        GraphMailbox {
            client,
            account: account.to_string(),
            folder_path: folder_path.to_string(),
            action: action.clone(),
            folders: None,
            delta_link: None,
            mails: HashMap::new(),
        }
    }

    /// The folder ids, resolved at the first pass.
    async fn folders(&mut self) -> Result<Folders, GraphError> {
        if let Some(f) = &self.folders {
            return Ok(f.clone());
        }
        let folder = folders::resolve(&self.client, &self.folder_path).await?;
        let move_to = match &self.action {
            GraphAction::Move { to } => {
                let target = folders::resolve(&self.client, to).await?;
                if target.id == folder.id {
                    return Err(GraphError::Unexpected {
                        what: format!("move_to {to:?}"),
                        detail: format!("it is the folder being read ({:?})", self.folder_path),
                    });
                }
                Some(target.id)
            }
            GraphAction::Delete => None,
        };
        let resolved = Folders {
            folder: folder.id,
            move_to,
        };
        self.folders = Some(resolved.clone());
        Ok(resolved)
    }

    /// One delta round: every page until Graph gives the next delta link.
    async fn sync(&mut self) -> Result<(), GraphError> {
        let folders = self.folders().await?;
        let resumed = self.delta_link.is_some();
        let first = match self.delta_link.take() {
            Some(link) => link,
            None => {
                self.mails.clear();
                self.client.url(&format!(
                    "{}/mailFolders/{}/messages/delta?$select=receivedDateTime&$expand=singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')",
                    self.client.user_path(),
                    segment(&folders.folder)
                ))
            }
        };
        let mut url = first;
        loop {
            let page = match self.client.get_delta(&url, DELTA_PAGE).await {
                Ok(page) => page,
                // The delta link is too old or unknown: list the whole folder again.
                Err(GraphError::Api { status: 410, .. }) if resumed => {
                    info!(target: "mail2ticket::graph", account = %self.account,
                        "Microsoft Graph no longer knows the folder's delta state: listing the whole folder again");
                    self.mails.clear();
                    return Box::pin(self.sync()).await;
                }
                Err(e) => return Err(e),
            };
            for item in page["value"].as_array().into_iter().flatten() {
                let Some(id) = item["id"].as_str() else {
                    continue;
                };
                if item.get("@removed").is_some() {
                    self.mails.remove(id);
                    continue;
                }
                self.mails.insert(id.to_string(), seen(item));
            }
            if let Some(next) = page["@odata.nextLink"].as_str() {
                url = next.to_string();
                continue;
            }
            match page["@odata.deltaLink"].as_str() {
                Some(link) => {
                    self.delta_link = Some(link.to_string());
                    return Ok(());
                }
                None => {
                    return Err(GraphError::Unexpected {
                        what: "a delta query".into(),
                        detail: "a last page without @odata.deltaLink".into(),
                    })
                }
            }
        }
    }
}

fn seen(item: &Value) -> Seen {
    let size = item["singleValueExtendedProperties"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["id"].as_str().is_some_and(|id| {
                id.eq_ignore_ascii_case(SIZE_PROPERTY) || id.eq_ignore_ascii_case("Integer 0xe08")
            })
        })
        .and_then(|p| p["value"].as_str().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let received = item["receivedDateTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Seen { size, received }
}

/// The Graph client of an account: its `[account.oauth2]` token, `graph_url` and TLS settings.
pub fn client_for(rt: &AccountRuntime) -> Result<GraphClient, SourceError> {
    let tokens: Arc<crate::oauth::TokenSource> = rt.tokens.clone().ok_or_else(|| {
        SourceError::new(
            crate::source::ErrorKind::Other,
            anyhow::anyhow!(
                "protocol = \"graph\" needs auth = \"oauth2\" and an [account.oauth2] table"
            ),
        )
    })?;
    let base = rt
        .account
        .oauth2
        .as_ref()
        .map(|o| o.graph_url())
        .unwrap_or_else(|| crate::config::GRAPH_URL.to_string());
    let http = super::client::http_client(&rt.tls, rt.timeout)?;
    Ok(GraphClient::new(http, &base, &rt.account.user, tokens))
}

/// One pass over the mailbox's folder.
pub struct GraphSource<'a> {
    mailbox: &'a mut GraphMailbox,
}

impl<'a> GraphSource<'a> {
    pub fn new(mailbox: &'a mut GraphMailbox) -> GraphSource<'a> {
        GraphSource { mailbox }
    }

    fn message_path(&self, id: &str) -> String {
        format!(
            "{}/messages/{}",
            self.mailbox.client.user_path(),
            segment(id)
        )
    }

    /// The bytes `bytes_of` takes from the answer to `GET …/messages/{id}{suffix}`, for each of
    /// `ids`, in `$batch`es; a mail gone meanwhile (404: moved or deleted by someone else) is
    /// simply absent.
    async fn get_each(
        &mut self,
        ids: &[String],
        suffix: &str,
        bytes_of: impl Fn(&ItemAnswer) -> Result<Vec<u8>, GraphError>,
    ) -> Result<Fetched<String>, SourceError> {
        let items = ids
            .iter()
            .map(|id| BatchItem {
                method: "GET",
                url: format!("{}{suffix}", self.message_path(id)),
                body: None,
            })
            .collect();
        let answers = self.batched(items).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, answer) in ids.iter().zip(answers) {
            if answer.status == 404 {
                self.mailbox.mails.remove(id);
                continue;
            }
            if !answer.ok() {
                return Err(answer.error(self.mailbox.client.mailbox()).into());
            }
            out.push(FetchedMail {
                id: id.clone(),
                raw: bytes_of(&answer)?,
                arrived: self.mailbox.mails.get(id).and_then(|s| s.received),
            });
        }
        Ok(out)
    }

    /// `items` in batches of 20; the answers in order.
    async fn batched(&self, items: Vec<BatchItem>) -> Result<Vec<ItemAnswer>, GraphError> {
        let mut answers = Vec::with_capacity(items.len());
        for chunk in items.chunks(BATCH_LIMIT) {
            answers.extend(self.mailbox.client.batch(chunk).await?);
        }
        Ok(answers)
    }
}

/// The key prefix of every Graph mail.
pub const KEY_PREFIX: &str = "graph:";

impl Source for GraphSource<'_> {
    /// The immutable id.
    type Id = String;

    const PROTOCOL: Protocol = Protocol::Graph;

    async fn list(&mut self) -> Result<Listing<String>, SourceError> {
        self.mailbox.sync().await?;
        let mut mails: Vec<(&String, &Seen)> = self.mailbox.mails.iter().collect();
        // Oldest first, as IMAP lists by UID: replies after their originals where the order
        // of arrival says so (the pass orders each batch, too).
        mails.sort_by(|a, b| (a.1.received, a.0).cmp(&(b.1.received, b.0)));
        Ok(Listing {
            prefix: KEY_PREFIX.to_string(),
            validity: None,
            mails: mails
                .into_iter()
                .map(|(id, seen)| Listed {
                    id: id.clone(),
                    key: SourceKey::Graph { id: id.clone() },
                    size: seen.size,
                    quarantined: false,
                })
                .collect(),
        })
    }

    async fn fetch(&mut self, ids: &[String]) -> Result<Fetched<String>, SourceError> {
        // A large mail comes on its own: in a $batch its bytes would arrive as base64 inside one
        // JSON answer with the others, held in memory three times over.
        let (large, small): (Vec<String>, Vec<String>) = ids.iter().cloned().partition(|id| {
            self.mailbox
                .mails
                .get(id)
                .is_some_and(|seen| seen.size > BATCHED_UP_TO)
        });
        let mut out = self.get_each(&small, "/$value", ItemAnswer::bytes).await?;
        for id in large {
            let url = self
                .mailbox
                .client
                .url(&format!("{}/$value", self.message_path(&id)));
            match self.mailbox.client.get_bytes(&url).await {
                Ok(raw) => out.push(FetchedMail {
                    arrived: self.mailbox.mails.get(&id).and_then(|s| s.received),
                    id,
                    raw,
                }),
                Err(e) if e.status() == Some(404) => {
                    self.mailbox.mails.remove(&id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    async fn fetch_headers(&mut self, ids: &[String]) -> Result<Fetched<String>, SourceError> {
        self.get_each(ids, "?$select=internetMessageHeaders", |answer| {
            Ok(header_block(&answer.body["internetMessageHeaders"]))
        })
        .await
    }

    fn fetches_headers(&self) -> bool {
        true
    }

    async fn dispose(
        &mut self,
        ids: &[String],
        report: &mut PassReport,
    ) -> Result<Vec<String>, SourceError> {
        let folders = self.mailbox.folders().await?;
        let items = ids
            .iter()
            .map(|id| match &folders.move_to {
                Some(to) => BatchItem {
                    method: "POST",
                    url: format!("{}/move", self.message_path(id)),
                    body: Some(json!({ "destinationId": to })),
                },
                None => BatchItem {
                    method: "DELETE",
                    url: self.message_path(id),
                    body: None,
                },
            })
            .collect();
        let answers = self.batched(items).await?;
        let mut gone = Vec::with_capacity(ids.len());
        for (id, answer) in ids.iter().zip(answers) {
            // 404: not there any more (someone moved or deleted it): gone all the same.
            if answer.ok() || answer.status == 404 {
                self.mailbox.mails.remove(id);
                gone.push(id.clone());
                continue;
            }
            let e = answer.error(self.mailbox.client.mailbox());
            warn!(target: "mail2ticket::graph", account = %self.mailbox.account, id = %id, error = %e,
                "could not move or delete a stored mail: it stays in the folder and is tried again next pass");
            report.dispose_errors.push(e.to_string());
        }
        Ok(gone)
    }

    async fn quarantine(
        &mut self,
        _id: &String,
        _attempts: u32,
    ) -> Result<Quarantine, SourceError> {
        Ok(Quarantine::Unmarkable)
    }

    async fn finish(
        self,
        _processed: &HashMap<SourceKey, ProcessedState>,
    ) -> Result<Finished, SourceError> {
        Ok(Finished::default())
    }

    fn key(&self, id: &String) -> SourceKey {
        SourceKey::Graph { id: id.clone() }
    }
}

/// A header block from Graph's `internetMessageHeaders` (name/value pairs), for a mail too large
/// to fetch: not the mail's bytes, but the same fields, capped at [`HEADER_LIMIT`].
fn header_block(headers: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers.as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (h["name"].as_str(), h["value"].as_str()) else {
            continue;
        };
        let line = format!("{name}: {}\r\n", value.replace(['\r', '\n'], " "));
        if (out.len() + line.len() + 2) as u64 > HEADER_LIMIT {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_item_gives_size_and_arrival() {
        let item = json!({
            "id": "AAkALg",
            "receivedDateTime": "2026-12-01T08:30:00Z",
            "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value": "4711"}],
        });
        let seen = seen(&item);
        assert_eq!(seen.size, 4711);
        assert_eq!(
            seen.received.unwrap().to_rfc3339(),
            "2026-12-01T08:30:00+00:00"
        );
    }

    #[test]
    fn a_header_block_ends_with_the_empty_line() {
        let headers = json!([
            {"name": "From", "value": "Kundin <k@example.test>"},
            {"name": "Subject", "value": "Bestellung\r\n 4711"},
        ]);
        assert_eq!(
            header_block(&headers),
            b"From: Kundin <k@example.test>\r\nSubject: Bestellung   4711\r\n\r\n"
        );
    }
}
