//! One durable transaction per batch of mails: look up what the store knows (`lookup`), decide
//! what each mail becomes (`ingest::route`), carry the decisions out (`write`), commit. Tickets,
//! articles, replies and the processed source keys commit together, so "source key recorded"
//! always means "ticket durable".

use sha2::{Digest, Sha256};

use super::write::{carry_out, Planned};
use super::{lookup, Prepared, Store, StoreError, STORE_ANSWER_WITHIN};
pub use crate::ingest::outcome::{Outcome, Recorded, Skipped};
use crate::ingest::route::{Decision, Mail, ReplyPlan};
pub use crate::ingest::{Incoming, TicketRules};

/// The result of [`Store::store_alone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAlone {
    Stored(Outcome),
    Failed { attempts: u32 },
}

/// Failed storage attempts after which a mail is quarantined (skipped, left on the server).
pub const QUARANTINE_AFTER: u32 = 3;

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Store {
    /// Stores a batch in one durable transaction; returns one outcome per mail, in order.
    ///
    /// Three steps: what the store knows about the batch's mails is read in one go
    /// (`lookup`), each mail is routed in order (`ingest::route`, pure), and the decisions are
    /// written through the one write path (`write`). One mail is a batch of one.
    ///
    /// A panic while handling a mail (a bug in parsing, threading, reply rules or building the
    /// rows) is caught here and returned as [`StoreError::Panicked`]: the transaction rolls back
    /// and the caller retries mail by mail, where it counts as that mail's failure.
    pub async fn store_batch(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
    ) -> Result<Vec<Outcome>, StoreError> {
        self.store_prepared(rules, mails, &Prepared::of(mails, self.backend), &[])
            .await
    }

    /// [`store_batch`](Self::store_batch) with the lock-free part already done (see
    /// [`Prepared`]): `prepared` must be `Prepared::of(mails, self.backend())`.
    ///
    /// `disposed`: source keys of the account's mails that have left the server since the last
    /// write, recorded in the same transaction as [`mark_disposed`](Self::mark_disposed)
    /// records them. A pass disposes of one batch while it stores the next, so this saves a
    /// commit, and with it an fsync, per batch. If the batch rolls back, so do these records:
    /// the caller records them on their own then.
    pub async fn store_prepared(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
        prepared: &Prepared,
        disposed: &[crate::ingest::SourceKey],
    ) -> Result<Vec<Outcome>, StoreError> {
        let work =
            std::panic::AssertUnwindSafe(self.store_batch_tx(rules, mails, prepared, disposed));
        // Bounded like every call of the daemon's loops (see `bound`): a batch whose commit
        // got no answer may or may not have been committed, which the next pass finds out from
        // the processed keys, as after a crash.
        let caught = futures::FutureExt::catch_unwind(work);
        match self.answer_within(STORE_ANSWER_WITHIN, caught).await? {
            Ok(Ok(outcomes)) => {
                self.health.worked();
                Ok(outcomes)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                tracing::error!(account = %rules.account, mails = mails.len(), panic = %what,
                    "handling a batch panicked; storing its mails one by one");
                crate::metrics::error(&rules.account, "panic");
                Err(StoreError::Panicked(what))
            }
        }
    }

    async fn store_batch_tx(
        &self,
        rules: &TicketRules,
        mails: &[Incoming],
        prepared: &Prepared,
        disposed: &[crate::ingest::SourceKey],
    ) -> Result<Vec<Outcome>, StoreError> {
        assert_eq!(prepared.len(), mails.len(), "prepared for another batch");
        let views: Vec<Mail> = mails
            .iter()
            .zip(&prepared.shas)
            .zip(&prepared.msg_keys)
            .map(|((incoming, sha), msg_key)| Mail {
                incoming,
                sha,
                msg_key: msg_key.as_ref(),
            })
            .collect();
        let mut tx = self.write_tx().await?;
        let mut known = lookup::known(&mut tx, rules, &views, chrono::Utc::now()).await?;
        let decisions: Vec<Decision> = views
            .iter()
            .map(|&mail| {
                let decision = crate::ingest::route(rules, mail, &known);
                known.remember(rules, mail, &decision);
                decision
            })
            .collect();
        let planned: Vec<Planned> = views
            .iter()
            .zip(&prepared.packed)
            .zip(&decisions)
            .enumerate()
            .map(|(i, ((&mail, packed), decision))| Planned {
                mail,
                packed,
                text: &prepared.texts[i],
                words: prepared.words.get(i).map(String::as_str),
                decision,
            })
            .collect();
        carry_out(&mut tx, rules, &planned, &known.now_text(), disposed).await?;
        tx.commit().await?;
        // Told after the commit: a batch that rolls back (and is retried mail by mail) does not
        // report its decisions twice.
        for (mail, decision) in mails.iter().zip(&decisions) {
            report(rules, mail, decision);
        }
        Ok(mails
            .iter()
            .zip(&decisions)
            .map(|(mail, decision)| decision.outcome(mail.extent))
            .collect())
    }

    /// Stores one mail on its own (after its batch failed), so one bad mail cannot block the
    /// rest. A failure is counted per source key; the caller quarantines the mail after
    /// `QUARANTINE_AFTER` failures in the protocol's own way.
    pub async fn store_alone(
        &self,
        rules: &TicketRules,
        mail: &Incoming,
    ) -> Result<StoredAlone, StoreError> {
        match self.store_batch(rules, std::slice::from_ref(mail)).await {
            Ok(mut outcomes) => Ok(StoredAlone::Stored(
                outcomes.pop().unwrap_or(Outcome::AlreadyProcessed),
            )),
            // The disk, not the mail: stop the pass without blaming the mail.
            Err(e) if e.is_environmental() => Err(e),
            Err(e) => {
                let attempts = self
                    .record_failure(&rules.account, mail, &e.to_string())
                    .await?;
                tracing::error!(account = %rules.account, source = %mail.source_key, attempts, error = %e, "storing a mail failed");
                Ok(StoredAlone::Failed { attempts })
            }
        }
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The log line and metrics of a committed decision about a reply.
fn report(rules: &TicketRules, mail: &Incoming, decision: &Decision) {
    let Decision::Article(article) = decision else {
        return;
    };
    let note = article.note();
    if !note.is_empty() {
        tracing::info!(account = %rules.account, ticket = %article.ticket.number,
            source = %mail.source_key, "{note}");
    }
    if let Some(ReplyPlan::Suppressed { reason, .. }) = &article.reply {
        crate::metrics::reply_suppressed(&rules.account, reason);
    }
    if let Some(bounce) = article.bounce.as_ref().filter(|b| b.first) {
        crate::metrics::reply_bounced(&bounce.reply.account);
    }
}
