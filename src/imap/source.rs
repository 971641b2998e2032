//! IMAP's part of the ingestion pass ([`crate::source::pass`]): SELECT and list the folder,
//! fetch with BODY.PEEK[] (the header alone of a mail too large to fetch with
//! BODY.PEEK[HEADER]), dispose of committed mails (see [`dispose`](super::dispose)), and
//! quarantine with a keyword (see [`quarantine`](super::quarantine)).
//!
//! Mails are told apart by UIDVALIDITY + UID, never by sequence numbers or \Seen.
//! UIDVALIDITY change: the keys of the old validity no longer match, so every mail in the folder
//! looks new and is fetched again. The store recognises a mail whose exact bytes are already
//! stored for the account as a duplicate and records the new key without a new ticket, so the
//! mail is disposed of and nothing is lost or doubled. The listing carries the UIDVALIDITY; the
//! pass keeps it in the store and says when it changed.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use tracing::{error, info, warn};

use super::dispose::{self, DisposeError, Disposed, Plan};
use super::error::{server_words, timed, ImapError};
use super::flagged_wait::{FlaggedWait, WaitChange};
use super::login::ImapConnection;
use super::quarantine::{self, QUARANTINE_KEYWORD};
use super::uid_set::uid_set;
use super::utf7;
use crate::config::{AccountConfig, ImapAction, Protocol};
use crate::source::{
    Fetched, FetchedMail, Finished, FolderValidity, Listed, Listing, PassReport, Quarantine,
    Source, SourceError, SourceKey, HEADER_LIMIT,
};
use crate::store::ProcessedState;

/// One pass over the account's folder on an open connection.
pub struct ImapSource<'a> {
    conn: &'a mut ImapConnection,
    account: &'a AccountConfig,
    /// The account's `action` as IMAP knows it (there is no IMAP "keep").
    action: &'a ImapAction,
    plan: Plan,
    uidvalidity: u32,
    /// Mails of the folder flagged \Deleted when it was listed.
    flagged: HashSet<u32>,
    /// Mails of the folder whose tickets are stored (grows batch by batch).
    ours: HashSet<u32>,
    /// The account's memory, kept by the poller across passes, of whether its mails wait
    /// flagged \Deleted.
    wait: &'a mut FlaggedWait,
}

impl<'a> ImapSource<'a> {
    pub fn new(
        conn: &'a mut ImapConnection,
        account: &'a AccountConfig,
        action: &'a ImapAction,
        wait: &'a mut FlaggedWait,
    ) -> ImapSource<'a> {
        let plan = Plan::for_connection(action, conn);
        ImapSource {
            conn,
            account,
            action,
            plan,
            uidvalidity: 0,
            flagged: HashSet::new(),
            ours: HashSet::new(),
            wait,
        }
    }

    fn report_disposal(
        &mut self,
        uids: &[u32],
        result: Result<Disposed, DisposeError>,
        report: &mut PassReport,
    ) -> Vec<u32> {
        let account = self.account;
        let name = account.name.as_str();
        match result {
            Ok(Disposed::Done) => {
                if self.wait.note(false) == Some(WaitChange::Ended) {
                    info!(account = name, folder = %account.folder,
                        "the mails that waited flagged \\Deleted have left the folder: no other \
                         client's mail is flagged any more");
                }
                return uids.to_vec();
            }
            Ok(Disposed::LeftFlagged { others }) => {
                report.left_flagged += uids.len();
                if self.wait.note(true) == Some(WaitChange::Started) {
                    warn!(account = name, mails = uids.len(), others, folder = %account.folder,
                        "mails with tickets are flagged \\Deleted but stay in the folder: the server has no UIDPLUS, \
                         and EXPUNGE would also remove {others} mail(s) another client flagged \\Deleted; \
                         they are expunged once those are gone (said once until then)");
                }
            }
            Err(e) => {
                let message = disposal_failure(uids.len(), &account.folder, self.action, &e);
                error!(account = name, "{message}");
                report.dispose_errors.push(message);
            }
        }
        Vec::new()
    }
}

/// The log line and report entry for a failed disposal. "The mails stay" only where that is known:
/// the server refused (a tagged NO or BAD) or nothing was sent. After a lost connection, a
/// timeout or an unreadable answer the server may have done it all the same; the next pass lists
/// the folder and finds out.
fn disposal_failure(count: usize, folder: &str, action: &ImapAction, e: &DisposeError) -> String {
    let known = matches!(
        e,
        DisposeError::TargetMissing { .. }
            | DisposeError::LeaseLost
            | DisposeError::Imap(ImapError::Refused { .. })
    );
    match (e, action, known) {
        (DisposeError::TargetMissing { .. }, ImapAction::Move { to }, _) => format!(
            "moving {count} mail(s) failed: {e}; the tickets exist and the mails stay in \
             {folder:?} until the folder exists: create it or fix `move_to` (now {to:?}); \
             retrying next pass"
        ),
        (_, ImapAction::Move { .. }, true) => format!(
            "moving {count} mail(s) failed: {e}; the tickets exist and the mails stay in \
             {folder:?}; retrying next pass"
        ),
        (_, ImapAction::Move { .. }, false) => format!(
            "moving {count} mail(s) failed: {e}; the tickets exist; whether the mails left \
             {folder:?} is not known; the next pass finds out"
        ),
        (_, ImapAction::Delete, true) => format!(
            "deleting {count} mail(s) failed: {e}; the tickets exist and the mails stay; \
             retrying next pass"
        ),
        (_, ImapAction::Delete, false) => format!(
            "deleting {count} mail(s) failed: {e}; the tickets exist; whether the mails left \
             the server is not known; the next pass finds out"
        ),
    }
}

impl Source for ImapSource<'_> {
    type Id = u32;

    const PROTOCOL: Protocol = Protocol::Imap;

    async fn list(&mut self) -> Result<Listing<u32>, SourceError> {
        let Selected { uidvalidity, any } = select(self.conn, &self.account.folder).await?;
        self.uidvalidity = uidvalidity;
        // Store keys use the configured name, so they survive a change of the server's separator.
        let prefix = SourceKey::imap_prefix(&self.account.folder, uidvalidity);
        let validity = Some(FolderValidity {
            folder: self.account.folder.clone(),
            uidvalidity,
        });
        if !any {
            return Ok(Listing {
                prefix,
                validity,
                mails: Vec::new(),
            });
        }
        let listed = list_folder(self.conn).await?;
        self.flagged = listed.iter().filter(|m| m.deleted).map(|m| m.uid).collect();
        let mails = listed
            .into_iter()
            .map(|m| Listed {
                key: self.key(&m.uid),
                id: m.uid,
                size: m.size,
                quarantined: m.quarantined,
            })
            .collect();
        Ok(Listing {
            prefix,
            validity,
            mails,
        })
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Fetched<u32>, SourceError> {
        Ok(fetch_bodies(self.conn, uids).await?)
    }

    async fn fetch_headers(&mut self, uids: &[u32]) -> Result<Fetched<u32>, SourceError> {
        Ok(fetch_part(self.conn, uids, Part::Header).await?)
    }

    /// Every IMAP server gives BODY[HEADER] (RFC 3501).
    fn fetches_headers(&self) -> bool {
        true
    }

    /// Moves or deletes as the [`Plan`] says. A failure is logged loudly and reported; the next
    /// pass tries again with whatever is still in the folder. A failed move never falls back to
    /// deleting.
    async fn dispose(
        &mut self,
        uids: &[u32],
        report: &mut PassReport,
    ) -> Result<Vec<u32>, SourceError> {
        self.ours.extend(uids);
        let result = dispose::dispose(self.conn, &self.plan, uids, &self.flagged, &self.ours).await;
        Ok(self.report_disposal(uids, result, report))
    }

    async fn quarantine(&mut self, uid: &u32, attempts: u32) -> Result<Quarantine, SourceError> {
        let name = &self.account.name;
        match quarantine::mark(self.conn, *uid).await {
            Ok(()) => {
                error!(account = %name, uid, keyword = QUARANTINE_KEYWORD,
                    "mail quarantined after {attempts} failed attempts: it stays on the server, marked, and is skipped");
                Ok(Quarantine::Marked)
            }
            Err(e) => {
                error!(account = %name, uid, error = %e, "could not mark mail as quarantined");
                Ok(Quarantine::NotMarked)
            }
        }
    }

    /// The connection stays open for IDLE: nothing to end.
    async fn finish(
        self,
        _processed: &HashMap<SourceKey, ProcessedState>,
    ) -> Result<Finished, SourceError> {
        Ok(Finished::default())
    }

    fn key(&self, uid: &u32) -> SourceKey {
        SourceKey::Imap {
            folder: self.account.folder.clone(),
            uidvalidity: self.uidvalidity,
            uid: *uid,
        }
    }
}

/// A folder as SELECT opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uidvalidity: u32,
    /// Whether it holds any mail.
    pub any: bool,
}

/// SELECTs a folder by its configured name (mapped to the server's).
pub async fn select(conn: &mut ImapConnection, folder: &str) -> Result<Selected, ImapError> {
    let on_server = conn.hierarchy.server_name(folder);
    let t = conn.timeout;
    let selected = tokio::time::timeout(t, conn.session.select(utf7::encode(&on_server))).await;
    let mailbox = match selected {
        Ok(Ok(m)) => m,
        Ok(Err(async_imap::error::Error::No(reason))) => {
            return Err(ImapError::FolderMissing {
                folder: on_server,
                reason: server_words(&reason),
            })
        }
        Ok(Err(source)) => {
            return Err(ImapError::Imap {
                operation: format!("SELECT {folder}"),
                source,
            })
        }
        Err(_) => {
            return Err(ImapError::Timeout {
                operation: format!("SELECT {folder}"),
                secs: t.as_secs(),
            })
        }
    };
    Ok(Selected {
        uidvalidity: mailbox.uid_validity.unwrap_or(0),
        any: mailbox.exists > 0,
    })
}

struct ListedUid {
    uid: u32,
    size: u64,
    quarantined: bool,
    /// Carries \Deleted (set by us after a copy, or by another client).
    deleted: bool,
}

async fn list_folder(conn: &mut ImapConnection) -> Result<Vec<ListedUid>, ImapError> {
    let t = conn.timeout;
    let fut = async {
        let stream = conn
            .session
            .uid_fetch("1:*", "(UID RFC822.SIZE FLAGS)")
            .await?;
        stream.try_collect::<Vec<_>>().await
    };
    let fetches = timed(t, "UID FETCH (list)", fut).await?;
    let mut listed: Vec<ListedUid> = fetches
        .iter()
        .filter_map(|f| {
            Some(ListedUid {
                uid: f.uid?,
                size: f.size.unwrap_or(0) as u64,
                quarantined: f.flags().any(|fl| quarantine::is_marked(&fl)),
                deleted: f
                    .flags()
                    .any(|fl| matches!(fl, async_imap::types::Flag::Deleted)),
            })
        })
        .collect();
    listed.sort_by_key(|l| l.uid);
    listed.dedup_by_key(|l| l.uid);
    Ok(listed)
}

/// The raw bytes of `uids` (BODY.PEEK[]: \Seen stays as it is), with INTERNALDATE; a mail
/// that is gone is absent.
pub async fn fetch_bodies(
    conn: &mut ImapConnection,
    uids: &[u32],
) -> Result<Fetched<u32>, ImapError> {
    fetch_part(conn, uids, Part::Whole).await
}

/// What of a mail a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole mail: BODY.PEEK[].
    Whole,
    /// The header alone, at most [`HEADER_LIMIT`] bytes of it (a partial fetch, RFC 3501
    /// 6.4.5): BODY.PEEK[HEADER]<0.N>, for a mail too large to fetch.
    Header,
}

impl Part {
    fn items(self) -> String {
        match self {
            Part::Whole => "(UID INTERNALDATE BODY.PEEK[])".into(),
            Part::Header => format!("(UID INTERNALDATE BODY.PEEK[HEADER]<0.{HEADER_LIMIT}>)"),
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Part::Whole => "UID FETCH BODY.PEEK[]",
            Part::Header => "UID FETCH BODY.PEEK[HEADER]",
        }
    }

    fn bytes(self, f: &async_imap::types::Fetch) -> Option<&[u8]> {
        match self {
            Part::Whole => f.body(),
            Part::Header => f.header(),
        }
    }
}

/// The part of `uids` that `part` names, with INTERNALDATE; a mail that is gone is absent.
async fn fetch_part(
    conn: &mut ImapConnection,
    uids: &[u32],
    part: Part,
) -> Result<Fetched<u32>, ImapError> {
    let set = uid_set(uids);
    // Large batches take longer; allow the per-operation timeout per 8 MB fetched.
    let t = conn.timeout;
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    // Each response is copied out and dropped as it arrives: a batch is held once, not twice.
    let fut = async {
        let mut stream = conn.session.uid_fetch(&set, part.items()).await?;
        let mut out: Fetched<u32> = Vec::with_capacity(uids.len());
        while let Some(f) = stream.try_next().await? {
            // A mail expunged by another client between listing and fetching simply is absent.
            if let Some(uid) = f.uid.filter(|u| wanted.contains(u)) {
                out.push(FetchedMail {
                    id: uid,
                    raw: part.bytes(&f).unwrap_or_default().to_vec(),
                    arrived: f.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
                });
            }
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    let mut out = timed(t * 4, part.operation(), fut).await?;
    out.sort_by_key(|m| m.id);
    out.dedup_by_key(|m| m.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_disposal_says_the_mails_stay_only_when_the_server_refused() {
        let refused = DisposeError::Imap(ImapError::Refused {
            operation: "UID EXPUNGE".into(),
            server: "Mailbox is read-only".into(),
        });
        let lost = DisposeError::Imap(ImapError::Imap {
            operation: "UID EXPUNGE".into(),
            source: async_imap::error::Error::ConnectionLost,
        });
        let timeout = DisposeError::Imap(ImapError::Timeout {
            operation: "UID MOVE".into(),
            secs: 20,
        });
        let to_done = ImapAction::Move { to: "Done".into() };
        for action in [&to_done, &ImapAction::Delete] {
            let said = disposal_failure(3, "INBOX", action, &refused);
            assert!(said.contains("the mails stay"), "{said}");
            for unknown in [&lost, &timeout] {
                let said = disposal_failure(3, "INBOX", action, unknown);
                assert!(!said.contains("stay"), "{said}");
                assert!(
                    said.contains("is not known; the next pass finds out"),
                    "{said}"
                );
            }
        }
    }
}
