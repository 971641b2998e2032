//! One ingestion pass over an IMAP folder.
//!
//! Mails are tracked by UIDVALIDITY + UID in the store's `processed` table, never by sequence
//! numbers or \Seen. The order is always: fetch a batch with BODY.PEEK[] → store it in one
//! fsynced transaction → only then move/delete it. A crash between the two leaves mails whose
//! key is recorded; the next pass disposes them without storing them again.
//!
//! UIDVALIDITY change: the keys of the old validity no longer match, so every mail in the folder
//! looks new and is fetched again. The store recognises a mail whose exact bytes are already
//! stored for the account as a duplicate and records the new key without a new ticket, so the
//! mail is disposed and nothing is lost or doubled.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use tracing::{error, info, warn};

use super::connect::{server_words, timed, ImapConnection, ImapError};
use super::dispose::{self, DisposeError, Disposed, Plan};
use super::utf7;
use tokio_util::sync::CancellationToken;

use crate::config::{AccountConfig, ImapAction};
use crate::health::AccountHealth;
use crate::ingest::parse::parse;
use crate::lease::Holding;
use crate::store::{Incoming, Outcome, Store, StoredAlone, TicketRules};

/// IMAP keyword set on a mail whose storage failed `QUARANTINE_AFTER` times: skipped afterwards.
pub const QUARANTINE_KEYWORD: &str = "$mail2ticket-failed";
pub use crate::store::QUARANTINE_AFTER;
/// Batch limits: many small mails per durable transaction, but bounded memory.
const BATCH_MAILS: usize = 500;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub fetched: usize,
    pub new_tickets: usize,
    pub followups: usize,
    pub duplicates: usize,
    pub test_mails: usize,
    pub disposed: usize,
    pub oversized: usize,
    /// Mails whose storage failed this pass (they stay on the server); `quarantined` of them
    /// for good.
    pub failed: usize,
    pub quarantined: usize,
    /// Disposal problems (e.g. the move_to folder is missing): tickets exist, mails stay.
    pub dispose_errors: Vec<String>,
    /// Mails flagged \Deleted but not expunged (no UIDPLUS, and other clients' mails are
    /// flagged too): tickets exist, mails stay until the guard allows EXPUNGE.
    pub left_flagged: usize,
    /// The POP3 server's LOGIN-DELAY (RFC 2449): the least time between two logins.
    pub login_delay: Option<Duration>,
}

impl PassReport {
    /// Counts one stored mail, logs its line (the source key carries the UID or UIDL) and feeds
    /// the metrics: the same for IMAP and POP3.
    pub fn record(&mut self, account: &str, source: &str, outcome: &Outcome) {
        crate::metrics::mail_stored(account, outcome);
        match outcome {
            Outcome::NewTicket { number } => {
                self.new_tickets += 1;
                info!(account, source, ticket = %number, kind = "new", "mail stored");
            }
            Outcome::FollowUp { number } => {
                self.followups += 1;
                info!(account, source, ticket = %number, kind = "follow-up", "mail stored");
            }
            Outcome::Duplicate { number } => {
                self.duplicates += 1;
                info!(account, source, ticket = %number, kind = "duplicate", "mail already stored");
            }
            Outcome::TestMail => {
                self.test_mails += 1;
                info!(
                    account,
                    source,
                    kind = "test",
                    "test-fetch mail recognised, no ticket"
                );
            }
            Outcome::AlreadyProcessed => {}
        }
    }
}

/// Everything a pass needs besides the connection.
pub struct PassContext<'a> {
    pub account: &'a AccountConfig,
    /// The account's `action` as IMAP knows it (there is no IMAP "keep").
    pub action: &'a ImapAction,
    pub rules: &'a TicketRules,
    pub store: &'a Store,
    pub max_message_size: u64,
    /// Checked between batches: once it fires, the pass ends after the batch in flight is
    /// committed and disposed (graceful shutdown during a big backlog).
    pub cancel: Option<&'a CancellationToken>,
    /// Told after every committed batch, so a long pass counts as progress for /healthz.
    pub health: Option<&'a AccountHealth>,
    /// Several instances: asked right before every disposal.
    pub lease: &'a Holding,
}

struct Listed {
    uid: u32,
    size: u64,
    quarantined: bool,
    /// Carries \Deleted (set by us after a copy, or by another client).
    deleted: bool,
}

/// What the disposal of one pass needs besides the connection.
struct Disposal<'p> {
    plan: &'p Plan,
    /// Mails of the folder flagged \Deleted when it was listed.
    flagged: &'p HashSet<u32>,
    /// Mails of the folder whose tickets are stored (grows batch by batch).
    ours: HashSet<u32>,
    lease: &'p Holding,
}

pub async fn run_pass(
    conn: &mut ImapConnection,
    ctx: &PassContext<'_>,
) -> Result<PassReport, ImapError> {
    let account = ctx.account;
    // Store keys use the configured name, so they survive a change of the server's separator.
    let folder = account.folder.as_str();
    let on_server = conn.hierarchy.server_name(folder);
    let t = conn.timeout;
    let mut report = PassReport::default();

    let mailbox = match tokio::time::timeout(t, conn.session.select(utf7::encode(&on_server))).await
    {
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
    let uidvalidity = mailbox.uid_validity.unwrap_or(0);
    if let Some(previous) = ctx.store.uidvalidity(&account.name, folder).await? {
        if previous != uidvalidity {
            warn!(account = %account.name, folder, previous, uidvalidity,
                "UIDVALIDITY changed: every mail is checked again; already stored ones are recognised by their bytes");
        }
    }
    ctx.store
        .set_uidvalidity(&account.name, folder, uidvalidity)
        .await?;
    if mailbox.exists == 0 {
        return Ok(report);
    }

    let listed = list_folder(conn).await?;
    crate::metrics::backlog_seen(&account.name, listed.len());
    let prefix = format!("imap:{folder}:{uidvalidity}:");
    let key = |uid: u32| format!("{prefix}{uid}");
    let processed = ctx.store.processed(&account.name, &prefix).await?;

    let plan = Plan::for_connection(ctx.action, conn);
    let flagged: HashSet<u32> = listed.iter().filter(|m| m.deleted).map(|m| m.uid).collect();
    let mut to_dispose = Vec::new();
    let mut new = Vec::new();
    for m in &listed {
        match processed.get(&key(m.uid)) {
            Some(state) if state.outcome == "oversized" => {}
            Some(_) => to_dispose.push(m.uid),
            None if m.quarantined => {}
            None if m.size > ctx.max_message_size => {
                report.oversized += 1;
                if ctx
                    .store
                    .record_skipped(&account.name, &key(m.uid), "oversized")
                    .await?
                {
                    warn!(account = %account.name, uid = m.uid, size = m.size, limit = ctx.max_message_size,
                        "mail larger than max_message_size left on the server (not fetched)");
                }
            }
            None => new.push(m),
        }
    }

    let mut disposal = Disposal {
        plan: &plan,
        flagged: &flagged,
        ours: to_dispose.iter().copied().collect(),
        lease: ctx.lease,
    };
    // Mails stored in an earlier pass (or before a crash) whose disposal did not happen yet.
    if !to_dispose.is_empty() {
        dispose(conn, ctx, &disposal, &to_dispose, &prefix, &mut report).await;
    }

    // Pipelined: while batch N is stored (SQLite's thread, one fsynced commit), the connection
    // moves the durable batch N-1 and fetches batch N+1. A batch is moved only after its commit.
    let batches = batches(&new);
    let mut fetched = match batches.first() {
        Some(first) => Some(fetch_bodies(conn, &uids_of(first)).await?),
        None => None,
    };
    let mut durable: Vec<u32> = Vec::new();
    for i in 0..batches.len() {
        // Shutdown: stop between batches. The fetched-but-unstored batch stays on the server
        // untouched; the last durable batch is disposed after the loop.
        if ctx.cancel.is_some_and(|c| c.is_cancelled()) {
            info!(account = %account.name, left = new.len().saturating_sub(report.fetched), "stopping the pass: shutting down");
            break;
        }
        let Some(batch) = fetched.take() else { break };
        report.fetched += batch.len();
        crate::metrics::mails_fetched(&account.name, batch.len());
        let incoming = parse_batch(batch, &prefix).await?;
        let following = batches.get(i + 1).map(|b| uids_of(b));
        let (first_try, (moved, next)) =
            tokio::join!(ctx.store.store_batch(ctx.rules, &incoming), async {
                let moved = if durable.is_empty() {
                    None
                } else {
                    Some(dispose_on_server(conn, &disposal, &durable).await)
                };
                let next = match &following {
                    Some(uids) => Some(fetch_bodies(conn, uids).await),
                    None => None,
                };
                (moved, next)
            });
        if let Some(moved) = moved {
            record_disposal(
                ctx,
                &std::mem::take(&mut durable),
                &prefix,
                moved,
                &mut report,
            )
            .await;
        }
        let stored = match first_try {
            Ok(outcomes) => incoming.iter().zip(outcomes).collect(),
            // A full disk and the like: no mail is to blame, none is tried alone. The pass
            // ends; this batch stays on the server, the batches before it are durable.
            Err(e) if e.is_environmental() => return Err(e.into()),
            Err(e) => {
                warn!(account = %ctx.account.name, error = %e, "storing a batch failed; storing its mails one by one");
                store_one_by_one(conn, ctx, &incoming, &mut report).await?
            }
        };
        if let Some(health) = ctx.health {
            health.success();
        }
        for (mail, outcome) in &stored {
            report.record(&account.name, &mail.source_key, outcome);
        }
        // The batch is durable now: only these mails may leave the folder (with the next fetch).
        durable = stored
            .iter()
            .filter_map(|(m, _)| m.source_key.rsplit(':').next()?.parse().ok())
            .collect();
        disposal.ours.extend(&durable);
        // A failed fetch ends the pass; this batch stays stored and is disposed next pass.
        fetched = next.transpose()?;
    }
    if !durable.is_empty() {
        dispose(conn, ctx, &disposal, &durable, &prefix, &mut report).await;
    }
    Ok(report)
}

async fn list_folder(conn: &mut ImapConnection) -> Result<Vec<Listed>, ImapError> {
    let t = conn.timeout;
    let fut = async {
        let stream = conn
            .session
            .uid_fetch("1:*", "(UID RFC822.SIZE FLAGS)")
            .await?;
        stream.try_collect::<Vec<_>>().await
    };
    let fetches = timed(t, "UID FETCH (list)", fut).await?;
    let mut listed: Vec<Listed> = fetches
        .iter()
        .filter_map(|f| {
            Some(Listed {
                uid: f.uid?,
                size: f.size.unwrap_or(0) as u64,
                quarantined: f.flags().any(|fl| {
                    matches!(fl, async_imap::types::Flag::Custom(ref c) if c.eq_ignore_ascii_case(QUARANTINE_KEYWORD))
                }),
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

fn uids_of(batch: &[&Listed]) -> Vec<u32> {
    batch.iter().map(|m| m.uid).collect()
}

/// Parses a fetched batch off the async threads.
async fn parse_batch(
    fetched: Vec<(u32, Vec<u8>)>,
    prefix: &str,
) -> Result<Vec<Incoming>, ImapError> {
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        let incoming = fetched
            .into_iter()
            .map(|(uid, raw)| Incoming {
                source_key: format!("{prefix}{uid}"),
                parsed: parse(&raw),
                raw,
                received_at: Utc::now(),
            })
            .collect();
        crate::ingest::order::store_order(incoming, |m: &Incoming| &m.parsed)
    })
    .await
    .map_err(|e| ImapError::Protocol {
        operation: "parse".into(),
        reply: e.to_string(),
    })
}

fn batches<'a>(mails: &'a [&'a Listed]) -> Vec<&'a [&'a Listed]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, m) in mails.iter().enumerate() {
        if i > start && (i - start >= BATCH_MAILS || bytes + m.size > BATCH_BYTES) {
            out.push(&mails[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += m.size;
    }
    if start < mails.len() {
        out.push(&mails[start..]);
    }
    out
}

async fn fetch_bodies(
    conn: &mut ImapConnection,
    uids: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, ImapError> {
    let set = uid_set(uids);
    // Large batches take longer; allow the per-operation timeout per 8 MB fetched.
    let t = conn.timeout;
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    // Each response is copied out and dropped as it arrives: a batch is held once, not twice.
    let fut = async {
        let mut stream = conn.session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
        let mut out: Vec<(u32, Vec<u8>)> = Vec::with_capacity(uids.len());
        while let Some(f) = stream.try_next().await? {
            // A mail expunged by another client between listing and fetching simply is absent.
            if let Some(uid) = f.uid.filter(|u| wanted.contains(u)) {
                out.push((uid, f.body().unwrap_or_default().to_vec()));
            }
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    let mut out = timed(t * 4, "UID FETCH BODY.PEEK[]", fut).await?;
    out.sort_by_key(|(uid, _)| *uid);
    out.dedup_by_key(|(uid, _)| *uid);
    Ok(out)
}

/// After a batch transaction failed: stores its mails one by one so one bad mail cannot block
/// the mailbox, and quarantines a mail after repeated failures.
async fn store_one_by_one<'m>(
    conn: &mut ImapConnection,
    ctx: &PassContext<'_>,
    incoming: &'m [Incoming],
    report: &mut PassReport,
) -> Result<Vec<(&'m Incoming, Outcome)>, ImapError> {
    let mut stored = Vec::new();
    for mail in incoming {
        match ctx.store.store_alone(ctx.rules, mail).await? {
            StoredAlone::Stored(outcome) => stored.push((mail, outcome)),
            StoredAlone::Failed { attempts } => {
                report.failed += 1;
                if attempts >= QUARANTINE_AFTER {
                    let uid = mail.source_key.rsplit(':').next().unwrap_or_default();
                    let flag = format!("+FLAGS.SILENT ({QUARANTINE_KEYWORD})");
                    let t = conn.timeout;
                    let res = timed(t, "UID STORE (quarantine)", async {
                        conn.session
                            .uid_store(uid, &flag)
                            .await?
                            .try_collect::<Vec<_>>()
                            .await
                    })
                    .await;
                    match res {
                        Ok(_) => {
                            report.quarantined += 1;
                            error!(account = %ctx.account.name, uid, keyword = QUARANTINE_KEYWORD,
                                "mail quarantined after {attempts} failed attempts: it stays on the server, marked, and is skipped");
                        }
                        Err(e) => {
                            error!(account = %ctx.account.name, uid, error = %e, "could not mark mail as quarantined")
                        }
                    }
                }
            }
        }
    }
    Ok(stored)
}

/// Moves or deletes stored mails (see [`dispose`](super::dispose) for how). Failures are logged
/// loudly and reported; the mails stay and are retried next pass. A failed move never falls back
/// to deleting.
async fn dispose(
    conn: &mut ImapConnection,
    ctx: &PassContext<'_>,
    disposal: &Disposal<'_>,
    uids: &[u32],
    prefix: &str,
    report: &mut PassReport,
) {
    let result = dispose_on_server(conn, disposal, uids).await;
    record_disposal(ctx, uids, prefix, result, report).await;
}

/// The one call that moves or deletes mail of the folder.
async fn dispose_on_server(
    conn: &mut ImapConnection,
    disposal: &Disposal<'_>,
    uids: &[u32],
) -> Result<Disposed, DisposeError> {
    // Several instances: not after this instance's lease may have ended (see crate::lease).
    if !disposal.lease.may_dispose() {
        return Err(DisposeError::LeaseLost);
    }
    dispose::dispose(conn, disposal.plan, uids, disposal.flagged, &disposal.ours).await
}

/// Accounts whose mails wait flagged for other clients' \Deleted mails, so that the reason is
/// logged once, not every pass.
static LEFT_FLAGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records whether `account`'s mails wait flagged; true when that is news (worth a log line).
fn left_flagged_changed(account: &str, waiting: bool) -> bool {
    let mut accounts = LEFT_FLAGGED.lock().unwrap_or_else(|e| e.into_inner());
    let was = accounts.iter().any(|a| a == account);
    if waiting && !was {
        accounts.push(account.to_string());
    } else if !waiting {
        accounts.retain(|a| a != account);
    }
    waiting != was
}

/// The store side of [`dispose`]: report and record what the server did.
async fn record_disposal(
    ctx: &PassContext<'_>,
    uids: &[u32],
    prefix: &str,
    result: Result<Disposed, DisposeError>,
    report: &mut PassReport,
) {
    let account = ctx.account;
    let name = account.name.as_str();
    match result {
        Ok(Disposed::Done) => {
            left_flagged_changed(name, false);
            report.disposed += uids.len();
            let keys: Vec<String> = uids.iter().map(|u| format!("{prefix}{u}")).collect();
            if let Err(e) = ctx.store.mark_disposed(name, &keys).await {
                warn!(account = name, error = %e, "could not record disposal (harmless: the mails are gone)");
            }
        }
        Ok(Disposed::LeftFlagged { others }) => {
            report.left_flagged += uids.len();
            if left_flagged_changed(name, true) {
                warn!(account = name, mails = uids.len(), others, folder = %account.folder,
                    "mails with tickets are flagged \\Deleted but stay in the folder: the server has no UIDPLUS, \
                     and EXPUNGE would also remove {others} mail(s) another client flagged \\Deleted; \
                     they are expunged once those are gone (said once until then)");
            }
        }
        Err(e) => {
            let count = uids.len();
            let folder = &account.folder;
            let message = match (&e, ctx.action) {
                (DisposeError::LeaseLost, _) => format!("{count} stored mail(s) not disposed: {e}"),
                (DisposeError::TargetMissing { .. }, ImapAction::Move { to }) => format!(
                    "moving {count} mail(s) failed: {e}; the tickets exist and the mails stay in \
                     {folder:?} until the folder exists: create it or fix `move_to` (now {to:?}); \
                     retrying next pass"
                ),
                (_, ImapAction::Move { .. }) => format!(
                    "moving {count} mail(s) failed: {e}; the tickets exist and the mails stay in \
                     {folder:?}; retrying next pass"
                ),
                (_, ImapAction::Delete) => format!(
                    "deleting {count} mail(s) failed: {e}; the tickets exist and the mails stay; \
                     retrying next pass"
                ),
            };
            error!(account = name, "{message}");
            report.dispose_errors.push(message);
        }
    }
}

/// "1:3,5,7:8" from sorted or unsorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
