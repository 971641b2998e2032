//! One POP3 pass: UIDL tells mails apart (a server without UIDL is refused), RETR fetches,
//! a batch is stored durably, and only then DELE marks it; QUIT commits the deletions. If the
//! connection drops before QUIT the server keeps the mails; the next pass finds their UIDLs in
//! the store and deletes them without new tickets.

use std::collections::HashSet;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::client::{Pop3Client, Pop3Error, Pop3Security, Pop3Timeouts};
use crate::config::{Encryption, Pop3Action};
use crate::imap::pass::PassReport;
use crate::ingest::order::store_order;
use crate::ingest::parse::parse;
use crate::oauth::sasl::Mechanism;
use crate::poller::AccountRuntime;
use crate::store::{Incoming, Outcome, Store, StoredAlone, QUARANTINE_AFTER};

const BATCH_MAILS: usize = 200;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// A retrieved batch: (message number, UIDL) per mail and the parsed mails, in the same order.
type Retrieved = (Vec<(u32, String)>, Vec<Incoming>);

#[derive(Debug, thiserror::Error)]
pub enum Pop3PassError {
    #[error(transparent)]
    Pop3(#[from] Pop3Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("the account's lease is no longer this instance's; nothing deleted (no QUIT), the mails are left to the instance holding it")]
    LeaseLost,
}

pub fn security(encryption: Encryption) -> Pop3Security {
    match encryption {
        Encryption::Ssl => Pop3Security::Implicit,
        Encryption::Starttls => Pop3Security::StartTls,
        Encryption::None => Pop3Security::Plain,
    }
}

/// Connects and logs in: USER/PASS, or with `auth = "oauth2"` SASL with a token.
pub async fn connect(rt: &AccountRuntime) -> Result<Pop3Client, Pop3PassError> {
    let a = &rt.account;
    let Some(tokens) = &rt.tokens else {
        let mut client = open(rt).await?;
        client.login(&a.user, a.password().expose()).await?;
        return Ok(client);
    };
    let server = format!("{}:{}", a.host, a.port());
    let signed_in = crate::oauth::login::sign_in(
        tokens,
        &server,
        &a.user,
        |token| async move {
            let mut client = open(rt).await?;
            let sasl: Vec<&str> = client
                .capabilities()
                .iter()
                .filter_map(|c| c.strip_prefix("SASL "))
                .flat_map(str::split_ascii_whitespace)
                .collect();
            let mechanism = Mechanism::choose(sasl);
            let message = mechanism.initial_response(&a.user, &a.host, a.port(), &token);
            client
                .authenticate(
                    &a.user,
                    mechanism.name(),
                    &message,
                    mechanism.after_error_challenge(),
                )
                .await?;
            Ok::<_, Pop3Error>(client)
        },
        |e| match e {
            Pop3Error::AuthRejected { server_text, .. } => Some(server_text.clone()),
            _ => None,
        },
    )
    .await;
    signed_in.map_err(|e| match e.downcast::<Pop3Error>() {
        Ok(p) => Pop3PassError::Pop3(p),
        Err(e) => match e.downcast::<crate::oauth::OAuthError>() {
            Ok(o) => Pop3PassError::OAuth(o),
            Err(e) => Pop3PassError::Pop3(Pop3Error::InvalidInput(format!("{e:#}"))),
        },
    })
}

/// Connects, reads the greeting and the capabilities (and does STLS), without logging in.
async fn open(rt: &AccountRuntime) -> Result<Pop3Client, Pop3Error> {
    let a = &rt.account;
    let client = Pop3Client::connect(
        &a.host,
        a.port(),
        security(a.encryption),
        rt.tls.clone(),
        Pop3Timeouts {
            connect: rt.timeout,
            command: rt.timeout,
        },
    )
    .await?;
    Ok(client)
}

/// With `cancel`, the pass stops fetching after the batch in flight once it fires; the DELEs of
/// what was stored are still committed by QUIT.
pub async fn pass_once(
    rt: &AccountRuntime,
    action: Pop3Action,
    store: &Store,
    cancel: Option<&CancellationToken>,
) -> Result<PassReport, Pop3PassError> {
    let account = &rt.account;
    let name = account.name.as_str();
    let mut client = connect(rt).await?;
    let mut report = PassReport {
        login_delay: client.login_delay(),
        ..PassReport::default()
    };

    let uidls = client.uidl().await?;
    let sizes: std::collections::HashMap<u32, u64> = client.list().await?.into_iter().collect();
    crate::metrics::backlog_seen(name, uidls.len());
    let key = |uidl: &str| format!("pop3:{uidl}");
    let processed = store.processed(name, "pop3:").await?;

    let delete = action == Pop3Action::Delete;
    let mut dele_keys = Vec::new();
    let mut new = Vec::new();
    for (msg, uidl) in &uidls {
        let size = sizes.get(msg).copied().unwrap_or(0);
        match processed.get(&key(uidl)) {
            Some(state) if state.outcome == "oversized" || state.outcome == QUARANTINED => {}
            Some(_) => {
                if delete {
                    client.dele(*msg).await?;
                    dele_keys.push(key(uidl));
                }
            }
            None if size > rt.max_message_size => {
                report.oversized += 1;
                if store.record_skipped(name, &key(uidl), "oversized").await? {
                    warn!(account = name, uidl = %uidl, size, limit = rt.max_message_size,
                        "mail larger than max_message_size left on the server (not fetched)");
                }
            }
            None => new.push((*msg, uidl.clone(), size)),
        }
    }

    // Batches by count and bytes; while batch N is stored (SQLite's thread, one fsynced
    // commit), batch N+1 is retrieved. DELE only follows a batch's commit.
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < new.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < new.len()
            && end - start < BATCH_MAILS
            && (end == start || bytes + new[end].2 <= BATCH_BYTES)
        {
            bytes += new[end].2;
            end += 1;
        }
        chunks.push(&new[start..end]);
        start = end;
    }
    let mut parsed: Option<Retrieved> = None;
    for i in 0..=chunks.len() {
        // Shutdown: retrieve nothing more, but still store (and DELE) the batch in hand.
        let stopping = cancel.is_some_and(|c| c.is_cancelled());
        if stopping && i < chunks.len() {
            info!(
                account = name,
                left = new.len() - report.fetched,
                "stopping the pass: shutting down"
            );
        }
        let current = if stopping { None } else { chunks.get(i) };
        let retrieve = async {
            let mut raws = Vec::new();
            if let Some(chunk) = current {
                for (msg, _, _) in chunk.iter() {
                    raws.push(client.retr(*msg).await?);
                }
            }
            Ok::<_, Pop3Error>(raws)
        };
        let store_previous = async {
            match &parsed {
                Some((_, incoming)) => Some(store.store_batch(&rt.rules, incoming).await),
                None => None,
            }
        };
        let (raws, outcomes) = tokio::join!(retrieve, store_previous);
        if let (Some(outcomes), Some((meta, incoming))) = (outcomes, parsed.take()) {
            let outcomes: Vec<Option<Outcome>> = match outcomes {
                Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
                // A full disk and the like: no mail is to blame. The pass ends without QUIT, so
                // the DELEs of this session are not committed either; their mails are stored
                // and are deleted by the next pass.
                Err(e) if e.is_environmental() => return Err(e.into()),
                Err(e) => {
                    warn!(account = name, error = %e, "storing a batch failed; storing its mails one by one");
                    store_one_by_one(rt, store, &incoming, &mut report).await?
                }
            };
            rt.health.success();
            for ((msg, uidl), outcome) in meta.iter().zip(&outcomes) {
                // A mail that could not be stored stays on the server (no DELE).
                let Some(outcome) = outcome else { continue };
                report.record(name, &key(uidl), outcome);
                // Durable now: marking for deletion is safe.
                if delete {
                    client.dele(*msg).await?;
                    dele_keys.push(key(uidl));
                }
            }
        }
        let raws = raws?;
        let Some(chunk) = current else { break };
        report.fetched += raws.len();
        crate::metrics::mails_fetched(name, raws.len());
        let meta: Vec<(u32, String)> = chunk.iter().map(|(m, u, _)| (*m, u.clone())).collect();
        let keys: Vec<String> = meta.iter().map(|(_, u)| key(u)).collect();
        let incoming = tokio::task::spawn_blocking(move || {
            raws.into_iter()
                .zip(keys)
                .map(|(raw, source_key)| Incoming {
                    source_key,
                    parsed: parse(&raw),
                    raw,
                    received_at: Utc::now(),
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Pop3Error::Io(std::io::Error::other(e)))?;
        // A reply the server lists before its original is stored after it (joins its ticket).
        let (meta, incoming): (Vec<_>, Vec<_>) =
            store_order(meta.into_iter().zip(incoming).collect(), |(_, m)| &m.parsed)
                .into_iter()
                .unzip();
        parsed = Some((meta, incoming));
    }

    if !delete {
        // Keep mode: forget UIDLs that left the server so the table does not grow for ever.
        let on_server: HashSet<String> = uidls.iter().map(|(_, u)| key(u)).collect();
        let gone: Vec<String> = processed
            .keys()
            .filter(|k| !on_server.contains(*k))
            .cloned()
            .collect();
        if !gone.is_empty() {
            store.forget_processed(name, &gone).await?;
        }
    }
    // QUIT commits the DELEs (RFC 1939 UPDATE state): the one step that deletes mail. Several
    // instances: not after this instance's lease may have ended (see crate::lease); dropping
    // the connection without QUIT leaves every mail on the server.
    if !rt.lease.may_dispose() {
        return Err(Pop3PassError::LeaseLost);
    }
    client.quit().await?;
    report.disposed = dele_keys.len();
    if !dele_keys.is_empty() {
        store.mark_disposed(name, &dele_keys).await?;
    }
    Ok(report)
}

/// Recorded for a mail whose storage failed `QUARANTINE_AFTER` times: it is skipped (and kept
/// on the server) from then on. POP3 has no flags to mark it there, so the store remembers it.
const QUARANTINED: &str = "quarantined";

/// After a failed batch: each mail on its own, so one bad mail cannot block the maildrop.
async fn store_one_by_one(
    rt: &AccountRuntime,
    store: &Store,
    incoming: &[Incoming],
    report: &mut PassReport,
) -> Result<Vec<Option<Outcome>>, Pop3PassError> {
    let name = rt.account.name.as_str();
    let mut out = Vec::with_capacity(incoming.len());
    for mail in incoming {
        match store.store_alone(&rt.rules, mail).await? {
            StoredAlone::Stored(outcome) => out.push(Some(outcome)),
            StoredAlone::Failed { attempts } => {
                report.failed += 1;
                if attempts >= QUARANTINE_AFTER {
                    report.quarantined += 1;
                    store
                        .record_skipped(name, &mail.source_key, QUARANTINED)
                        .await?;
                    tracing::error!(account = name, source = %mail.source_key,
                        "mail quarantined after {attempts} failed attempts: it stays on the server and is skipped");
                }
                out.push(None);
            }
        }
    }
    Ok(out)
}
