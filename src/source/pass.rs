//! One pass over a folder or maildrop, for any [`Source`].
//!
//! Mails are tracked by their [`SourceKey`] in the store's `processed` table. The order is
//! always: fetch a batch → store it in one fsynced transaction → only then dispose of it. A crash
//! between the two leaves mails whose key is recorded; the next pass disposes of them without
//! storing them again.
//!
//! Pipelined: while batch N is stored (SQLite's thread, one fsynced commit), the connection
//! disposes of the committed batch N-1 and fetches batch N+1, which is then parsed and prepared
//! (hashed, compressed) on a blocking thread. That batch N-1 left the server is recorded in
//! batch N+1's transaction: one commit per batch, not two.
//!
//! Shutdown, one rule: once `cancel` fires nothing more is fetched; the batch in hand is stored
//! and disposed of, and the pass ends normally.
//!
//! The pass keeps the books: every store write of a pass is made here (the batch, what left the
//! server, skipped and forgotten keys, UIDVALIDITY); a [`Source`] only reports facts.
//!
//! A mail larger than `max_message_size` is not fetched: its header alone is, and becomes a
//! ticket like any new mail (the same decision, `ingest::route`, and the same write). The mail
//! stays on the server, recorded as held by its header ([`Recorded::HeaderOnly`]), so it is not
//! fetched again; once `max_message_size` allows it (a reload), the whole mail is fetched with
//! the new mails, joins its header's ticket, and only then may it leave the server.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::report::log_as;
use super::Holding;
use super::{
    Fetched, FetchedMail, FolderValidity, Listed, Listing, PassReport, Quarantine, Source,
    SourceError, SourceKey, HEADER_LIMIT,
};
use crate::budget::{MemoryBudget, Reservation};
use crate::health::AccountHealth;
use crate::ingest::outcome::{Outcome, Recorded, Skipped};
use crate::ingest::parse::parse_fetched;
use crate::ingest::Extent;
use crate::store::{
    Backend, Incoming, Prepared, ProcessedState, Store, StoreError, StoredAlone, TicketRules,
    QUARANTINE_AFTER,
};

/// Batch limits: many small mails per durable transaction, but bounded memory.
const BATCH_MAILS: usize = 500;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Headers of mails too large to fetch per transaction: at most [`HEADER_LIMIT`] each, so a
/// batch holds at most 12.5 MiB of them.
const HEADER_BATCH: usize = 100;

/// Everything a pass needs besides the source.
pub struct PassContext<'a> {
    pub account: &'a str,
    pub rules: &'a TicketRules,
    pub store: &'a Store,
    pub max_message_size: u64,
    /// Checked between batches (see the shutdown rule above).
    pub cancel: Option<&'a CancellationToken>,
    /// Told after every committed batch, so a long pass counts as progress for /healthz.
    pub health: Option<&'a AccountHealth>,
    /// Several instances: asked right before mail leaves the server (see crate::lease).
    pub lease: &'a Holding,
    /// Every batch reserves its memory here before it is fetched (see crate::budget).
    pub budget: &'a MemoryBudget,
}

pub async fn run_pass<S: Source>(
    mut source: S,
    ctx: &PassContext<'_>,
) -> Result<PassReport, SourceError> {
    let name = ctx.account;
    let mut report = PassReport::default();
    let listing = source.list().await?;
    if let Some(validity) = &listing.validity {
        note_validity::<S>(ctx, validity).await?;
    }
    crate::metrics::backlog_seen(name, listing.mails.len());
    let processed = if source.forgets_gone_keys() {
        // A record no larger than the maildrop, read whole (and every key parsed, so it fails
        // closed by itself): `finish` forgets what left it.
        ctx.store.processed(name, &listing.prefix).await?
    } else {
        // The listed mails' records, and the mails held by their header (which may have left
        // the server by other means: `note_gone_unfetched`); not the account's whole history,
        // whose keys are only checked to be readable.
        ctx.store.check_keys_readable(name, &listing.prefix).await?;
        let listed = listing.mails.iter().map(|m| &m.key);
        let mut processed = ctx.store.processed_listed(name, listed).await?;
        processed.extend(ctx.store.held_by_header(name, &listing.prefix).await?);
        processed
    };

    let mut committed = Vec::new();
    let mut new = Vec::new();
    // New mails larger than max_message_size: their headers alone make their tickets.
    let mut too_large = Vec::new();
    for m in &listing.mails {
        let key = &m.key;
        let fits = m.size <= ctx.max_message_size;
        match processed.get(key).map(|p| &p.outcome) {
            Some(Recorded::Skipped(Skipped::Quarantined)) => {}
            // Stored in an earlier pass (or before a crash), not disposed of yet.
            Some(Recorded::Stored) => committed.push(m.id.clone()),
            // Fail closed: nothing says this mail has a ticket, so it stays where it is.
            Some(Recorded::Unknown(label)) => {
                report.unknown_outcomes += 1;
                log_as!(S::PROTOCOL, error, account = name, source = %key, label = %label,
                    "the store records this mail with an outcome this version does not know \
                     (written by a newer mail2ticket, or damaged): it stays on the server. \
                     Run the version that wrote it, or check the row in the store's processed \
                     table (docs/operations.md)");
            }
            _ if m.quarantined => {}
            // Its header is in a ticket: fetched whole once it fits, else left as it is.
            Some(Recorded::HeaderOnly) if fits => new.push(m),
            Some(Recorded::HeaderOnly) => {}
            // New, or recorded too large without a ticket (by an earlier version, or where the
            // server could not give its header alone): taken up as a new mail.
            None | Some(Recorded::Skipped(Skipped::Oversized)) if fits => new.push(m),
            None | Some(Recorded::Skipped(Skipped::Oversized)) => too_large.push(m),
        }
    }
    note_gone_unfetched::<S>(ctx, &listing, &processed).await?;
    // Mails that left the server, not yet recorded as gone in the store: recorded in the next
    // batch's transaction (see `Store::store_prepared`), or on their own at the end.
    let mut unrecorded: Vec<SourceKey> = Vec::new();
    if !committed.is_empty() {
        let gone = dispose_committed(&mut source, ctx, &committed, &mut report).await?;
        unrecorded = count_gone(keys_of(&source, &gone), &mut report);
    }
    store_headers(&mut source, ctx, &too_large, &mut report).await?;

    let batches = batches(&new);
    let mut ready = match batches.first() {
        Some(first) => {
            let room = ctx.budget.reserve(bytes(first)).await;
            Some(fetch_and_parse(&mut source, &ids(first), room, ctx.store.backend()).await?)
        }
        None => None,
    };
    let mut durable: Vec<S::Id> = Vec::new();
    for i in 0..batches.len() {
        let Some(batch) = ready.take() else { break };
        report.fetched += batch.ids.len();
        crate::metrics::mails_fetched(name, batch.ids.len());
        let stopping = ctx.cancel.is_some_and(|c| c.is_cancelled());
        if stopping && i + 1 < batches.len() {
            log_as!(
                S::PROTOCOL,
                info,
                account = name,
                left = new.len().saturating_sub(report.fetched),
                "stopping the pass: shutting down"
            );
        }
        let following = batches.get(i + 1).filter(|_| !stopping);
        // The next batch is fetched while this one is stored only if the budget has room for
        // both now; else after this one is stored and its memory given back. (Waiting for room
        // while holding this batch's could wait for ever: the room it needs may be its own.)
        let (early, late) = match following.map(|b| (ids(b), ctx.budget.try_reserve(bytes(b)))) {
            Some((ids, Some(room))) => (Some((ids, room)), None),
            Some((ids, None)) => (None, following.map(|b| (ids, bytes(b)))),
            None => (None, None),
        };
        let recording = std::mem::take(&mut unrecorded);
        let (first_try, (gone, next)) = tokio::join!(
            ctx.store
                .store_prepared(ctx.rules, &batch.incoming, &batch.prepared, &recording),
            async {
                let gone = if durable.is_empty() {
                    Ok(Vec::new())
                } else {
                    dispose_committed(&mut source, ctx, &durable, &mut report).await
                };
                let next = match early {
                    Some((ids, room)) => {
                        Some(fetch_and_parse(&mut source, &ids, room, ctx.store.backend()).await)
                    }
                    None => None,
                };
                (gone, next)
            }
        );
        unrecorded = count_gone(keys_of(&source, &gone?), &mut report);
        let Ready {
            ids: batch_ids,
            incoming,
            prepared,
            room,
        } = batch;
        // The compressed copies are written: only the mails are still needed.
        drop(prepared);
        let outcomes = after_first_try(
            first_try,
            &mut source,
            ctx,
            &batch_ids,
            &incoming,
            &recording,
            &mut report,
        )
        .await?;
        // The batch is durable now: only its stored mails may leave (with the next fetch).
        durable = Vec::new();
        for ((id, mail), outcome) in batch_ids.into_iter().zip(&incoming).zip(outcomes) {
            // A mail that could not be stored stays on the server.
            let Some(outcome) = outcome else { continue };
            report.record(S::PROTOCOL, name, &mail.source_key, &outcome);
            durable.push(id);
        }
        drop((incoming, room));
        // A failed fetch ends the pass; this batch stays stored and is disposed of next pass.
        ready = match (next, late) {
            (Some(next), _) => Some(next?),
            (None, Some((ids, size))) => {
                let room = ctx.budget.reserve(size).await;
                Some(fetch_and_parse(&mut source, &ids, room, ctx.store.backend()).await?)
            }
            (None, None) => None,
        };
    }
    if !durable.is_empty() {
        let gone = dispose_committed(&mut source, ctx, &durable, &mut report).await?;
        unrecorded.extend(count_gone(keys_of(&source, &gone), &mut report));
    }
    record_gone::<S>(ctx, &unrecorded).await;
    // POP3's QUIT deletes what DELE marked: past the lease, drop the connection instead and
    // the server keeps every mail.
    if !ctx.lease.may_dispose() {
        return Err(SourceError::lease_lost());
    }
    let finished = source.finish(&processed).await?;
    record_gone::<S>(ctx, &count_gone(finished.gone, &mut report)).await;
    if !finished.forget.is_empty() {
        ctx.store.forget_processed(name, &finished.forget).await?;
    }
    Ok(report)
}

/// Keeps the folder's UIDVALIDITY in the store and says when it changed: the keys of the old
/// validity no longer match, so every mail of the folder looks new; the store recognises the
/// ones already stored by their bytes (see `imap::source`). A mail held by its header under an
/// old key is held again under its new one (its header is a copy of the stored one): the old
/// key is recorded as gone, so it is not counted as waiting twice.
async fn note_validity<S: Source>(
    ctx: &PassContext<'_>,
    validity: &FolderValidity,
) -> Result<(), SourceError> {
    let (name, folder, uidvalidity) = (ctx.account, validity.folder.as_str(), validity.uidvalidity);
    if let Some(previous) = ctx.store.uidvalidity(name, folder).await? {
        if previous != uidvalidity {
            log_as!(S::PROTOCOL, warn, account = %name, folder, previous, uidvalidity,
                "UIDVALIDITY changed: every mail is checked again; already stored ones are recognised by their bytes");
            let old = SourceKey::imap_prefix(folder, previous);
            ctx.store.check_keys_readable(name, &old).await?;
            let held: Vec<SourceKey> = ctx
                .store
                .held_by_header(name, &old)
                .await?
                .into_keys()
                .collect();
            if !held.is_empty() {
                ctx.store.mark_disposed(name, &held).await?;
            }
        }
    }
    ctx.store.set_uidvalidity(name, folder, uidvalidity).await?;
    Ok(())
}

/// Mails held by their header that are no longer on the server (another client moved or
/// deleted them): recorded as gone, so they are no longer counted as waiting on the server
/// (`Store::oversized`). Their tickets keep the header.
async fn note_gone_unfetched<S: Source>(
    ctx: &PassContext<'_>,
    listing: &Listing<S::Id>,
    processed: &HashMap<SourceKey, ProcessedState>,
) -> Result<(), SourceError> {
    let listed: HashSet<&SourceKey> = listing.mails.iter().map(|m| &m.key).collect();
    let gone: Vec<SourceKey> = processed
        .iter()
        .filter(|(key, p)| {
            p.outcome == Recorded::HeaderOnly && !p.disposed && !listed.contains(key)
        })
        .map(|(key, _)| key.clone())
        .collect();
    for key in &gone {
        log_as!(S::PROTOCOL, warn, account = ctx.account, source = %key,
            "a mail too large to fetch has left the server by other means (another client moved \
             or deleted it): its ticket keeps only its header");
    }
    if !gone.is_empty() {
        ctx.store.mark_disposed(ctx.account, &gone).await?;
    }
    Ok(())
}

/// Mails larger than max_message_size, seen for the first time: their headers alone become
/// tickets as any new mail does, through the same decision (`ingest::route`) and the same
/// write, in batches of [`HEADER_BATCH`]. The mails stay on the server, recorded as held by
/// their header, and nothing here disposes of them: a mail leaves the server only once it is
/// stored whole. Where the server cannot give a header alone (POP3 without TOP), they are
/// recorded as skipped, without a ticket.
async fn store_headers<S: Source>(
    source: &mut S,
    ctx: &PassContext<'_>,
    mails: &[&Listed<S::Id>],
    report: &mut PassReport,
) -> Result<(), SourceError> {
    let name = ctx.account;
    if !mails.is_empty() && !source.fetches_headers() {
        for m in mails {
            report.oversized += 1;
            if ctx
                .store
                .record_skipped(name, &m.key, Skipped::Oversized)
                .await?
            {
                log_as!(S::PROTOCOL, warn, account = name, source = %m.key, size = m.size,
                    limit = ctx.max_message_size,
                    "mail larger than max_message_size left on the server WITHOUT a ticket: the \
                     server cannot give its header alone (no TOP); raise max_message_size or \
                     handle the mail by hand");
            }
        }
        return Ok(());
    }
    let sizes: HashMap<&SourceKey, u64> = mails.iter().map(|m| (&m.key, m.size)).collect();
    for chunk in mails.chunks(HEADER_BATCH) {
        // The shutdown rule: nothing more is fetched.
        if ctx.cancel.is_some_and(|c| c.is_cancelled()) {
            break;
        }
        let room = ctx
            .budget
            .reserve(chunk.iter().map(|m| m.size.min(HEADER_LIMIT)).sum())
            .await;
        let fetched = source.fetch_headers(&ids(chunk)).await?;
        let header_of = |key: &SourceKey| Extent::HeaderOnly {
            size: sizes.get(key).copied().unwrap_or(0),
        };
        let batch = prepare(source, fetched, header_of, room, ctx.store.backend()).await?;
        let first_try = ctx
            .store
            .store_prepared(ctx.rules, &batch.incoming, &batch.prepared, &[])
            .await;
        let outcomes = after_first_try(
            first_try,
            source,
            ctx,
            &batch.ids,
            &batch.incoming,
            &[],
            report,
        )
        .await?;
        for (mail, outcome) in batch.incoming.iter().zip(outcomes) {
            let Some(outcome) = outcome else { continue };
            if let (Outcome::HeaderOnly { number, .. }, Extent::HeaderOnly { size }) =
                (&outcome, mail.extent)
            {
                log_as!(S::PROTOCOL, warn, account = name, source = %mail.source_key, size,
                    limit = ctx.max_message_size, ticket = %number,
                    "mail larger than max_message_size: its header is stored in the ticket, the \
                     mail stays on the server until max_message_size allows it");
            }
            report.record(S::PROTOCOL, name, &mail.source_key, &outcome);
        }
    }
    Ok(())
}

/// The one place where mails leave the server: only mails whose tickets are committed get here,
/// and only while this instance may still touch the mailbox (several instances: its lease).
async fn dispose_committed<S: Source>(
    source: &mut S,
    ctx: &PassContext<'_>,
    committed: &[S::Id],
    report: &mut PassReport,
) -> Result<Vec<S::Id>, SourceError> {
    if !ctx.lease.may_dispose() {
        return Err(SourceError::lease_lost());
    }
    source.dispose(committed, report).await
}

fn keys_of<S: Source>(source: &S, gone: &[S::Id]) -> Vec<SourceKey> {
    gone.iter().map(|id| source.key(id)).collect()
}

/// Counts mails that left the server; returns their keys for the store's records.
fn count_gone(gone: Vec<SourceKey>, report: &mut PassReport) -> Vec<SourceKey> {
    report.disposed += gone.len();
    gone
}

/// Records in the store, in a transaction of its own, that mails left the server (only
/// bookkeeping: a mail whose record is missing is found gone next pass).
async fn record_gone<S: Source>(ctx: &PassContext<'_>, keys: &[SourceKey]) {
    if keys.is_empty() {
        return;
    }
    if let Err(e) = ctx.store.mark_disposed(ctx.account, keys).await {
        log_as!(S::PROTOCOL, warn, account = ctx.account, error = %e,
            "could not record disposal (harmless: the mails are gone)");
    }
}

fn ids<Id: Clone>(batch: &[&Listed<Id>]) -> Vec<Id> {
    batch.iter().map(|m| m.id.clone()).collect()
}

/// Splits the new mails into batches by count and bytes (a mail larger than the byte limit is
/// a batch of its own).
fn batches<'a, Id>(mails: &'a [&'a Listed<Id>]) -> Vec<&'a [&'a Listed<Id>]> {
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

/// A fetched batch, parsed and prepared for storing, in the order it is to be stored.
struct Ready<Id> {
    ids: Vec<Id>,
    incoming: Vec<Incoming>,
    prepared: Prepared,
    /// Its share of the memory budget, given back when the batch is dropped.
    room: Reservation,
}

/// The bytes of a batch's mails, as the server listed them.
fn bytes<Id>(batch: &[&Listed<Id>]) -> u64 {
    batch.iter().map(|m| m.size).sum()
}

/// Fetches a batch and parses it off the async threads, in the order it is to be stored: a
/// reply the server lists before its original is stored after it (and joins its ticket). The
/// pass runs this for batch N+1 while batch N is being written.
async fn fetch_and_parse<S: Source>(
    source: &mut S,
    ids: &[S::Id],
    room: Reservation,
    backend: Backend,
) -> Result<Ready<S::Id>, SourceError> {
    let fetched = source.fetch(ids).await?;
    prepare(source, fetched, |_| Extent::Whole, room, backend).await
}

/// Parses fetched mails (whole, or as `extent` says of each) and prepares them for storing, off
/// the async threads, in the order they are to be stored.
async fn prepare<S: Source>(
    source: &S,
    fetched: Fetched<S::Id>,
    extent: impl Fn(&SourceKey) -> Extent,
    room: Reservation,
    backend: Backend,
) -> Result<Ready<S::Id>, SourceError> {
    let keyed: Vec<(SourceKey, Extent, FetchedMail<S::Id>)> = fetched
        .into_iter()
        .map(|mail| {
            let key = source.key(&mail.id);
            let extent = extent(&key);
            (key, extent, mail)
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        let incoming = keyed
            .into_iter()
            .map(|(key, extent, FetchedMail { id, raw, arrived })| {
                let mail = Incoming {
                    source_key: key,
                    parsed: parse_fetched(&raw, extent),
                    raw,
                    received_at: Utc::now(),
                    arrived,
                    extent,
                };
                (id, mail)
            })
            .collect();
        let (ids, incoming): (Vec<S::Id>, Vec<Incoming>) =
            crate::ingest::order::store_order(incoming, |(_, m): &(S::Id, Incoming)| &m.parsed)
                .into_iter()
                .unzip();
        let prepared = Prepared::of(&incoming, backend);
        Ready {
            ids,
            incoming,
            prepared,
            room,
        }
    })
    .await
    .map_err(|e| {
        let e = anyhow::anyhow!("parsing a batch failed: {e}");
        SourceError::new(super::ErrorKind::Other, e)
    })
}

/// The outcomes of a batch after its first try to store it in one transaction: that try's, or,
/// when it failed for a reason of its mails, those of storing them one by one. `recording`: the
/// records of mails gone that rolled back with the batch, recorded on their own then.
async fn after_first_try<S: Source>(
    first_try: Result<Vec<Outcome>, StoreError>,
    source: &mut S,
    ctx: &PassContext<'_>,
    ids: &[S::Id],
    incoming: &[Incoming],
    recording: &[SourceKey],
    report: &mut PassReport,
) -> Result<Vec<Option<Outcome>>, SourceError> {
    let outcomes = match first_try {
        Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
        // A full disk and the like: no mail is to blame, none is tried alone. The pass ends;
        // this batch stays on the server, the batches before it are durable.
        Err(e) if e.is_environmental() => return Err(e.into()),
        Err(e) => {
            log_as!(S::PROTOCOL, warn, account = ctx.account, error = %e,
                "storing a batch failed; storing its mails one by one");
            record_gone::<S>(ctx, recording).await;
            store_one_by_one(source, ctx, ids, incoming, report).await?
        }
    };
    if let Some(health) = ctx.health {
        health.success();
    }
    Ok(outcomes)
}

/// After a batch transaction failed: stores its mails one by one so one bad mail cannot block
/// the mailbox, and quarantines a mail after repeated failures. `None` for a mail not stored.
async fn store_one_by_one<S: Source>(
    source: &mut S,
    ctx: &PassContext<'_>,
    ids: &[S::Id],
    incoming: &[Incoming],
    report: &mut PassReport,
) -> Result<Vec<Option<Outcome>>, SourceError> {
    let mut out = Vec::with_capacity(incoming.len());
    for (id, mail) in ids.iter().zip(incoming) {
        match ctx.store.store_alone(ctx.rules, mail).await? {
            StoredAlone::Stored(outcome) => out.push(Some(outcome)),
            StoredAlone::Failed { attempts } => {
                report.failed += 1;
                if attempts >= QUARANTINE_AFTER && quarantine(source, ctx, id, attempts).await? {
                    report.quarantined += 1;
                }
                out.push(None);
            }
        }
    }
    Ok(out)
}

/// Quarantines a mail whose storage failed too often: marked on the server, or, where the
/// protocol has nothing to mark it with (POP3), recorded in the store as skipped. True when it
/// is quarantined now.
async fn quarantine<S: Source>(
    source: &mut S,
    ctx: &PassContext<'_>,
    id: &S::Id,
    attempts: u32,
) -> Result<bool, SourceError> {
    match source.quarantine(id, attempts).await? {
        Quarantine::Marked => Ok(true),
        Quarantine::NotMarked => Ok(false),
        Quarantine::Unmarkable => {
            let key = source.key(id);
            ctx.store
                .record_skipped(ctx.account, &key, Skipped::Quarantined)
                .await?;
            log_as!(S::PROTOCOL, error, account = ctx.account, source = %key,
                "mail quarantined after {attempts} failed attempts: it stays on the server and is skipped");
            Ok(true)
        }
    }
}
