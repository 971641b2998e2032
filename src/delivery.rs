//! The task that delivers the outbox: replies and mailed alerts through the shared SMTP
//! transport, webhook alerts by HTTP (one sender per channel, the same state machine).
//!
//! # Exactly once
//!
//! A reply is queued in the transaction that creates its ticket, with its complete message
//! (Message-ID and Date included) fixed at that moment; every attempt sends the identical bytes.
//!
//! Sending one entry:
//! 1. *claim*: `status = 'sending'`, `attempts + 1`, `next_attempt_at = now + lease`, committed
//!    (fsynced) before the SMTP conversation starts;
//! 2. send, bounded by `send_deadline` (shorter than the lease);
//! 3. commit the result: `sent`, `pending` with a later `next_attempt_at` (temporary failure), or
//!    `failed` (permanent failure). A `sent` the store cannot commit at once is tried again
//!    until the lease is about to end.
//!
//! The only window with a choice is between the server's final `250` and the commit of step 3:
//! if the process dies there, the server has the mail but the row still says `sending`. When the
//! lease ends the row is claimed again and the reply is sent a second time. The alternative —
//! marking `sent` before sending — would silently lose every reply whose send was interrupted,
//! which is the worse failure for a customer waiting for a ticket number. The window is a few
//! milliseconds (one local fsync), and a duplicate carries the same Message-ID, so mail clients
//! that de-duplicate show it once. The same holds for a send that times out after the server
//! accepted the data but before its reply reached us: it is retried.
//!
//! The lease (instead of resetting `sending` rows at start-up) keeps a second process — e.g. a
//! `run --once` started while the daemon runs — from sending a reply that the other one is
//! sending right now.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::SmtpConfig;
use crate::smtp::{Deliver, SendError};
use crate::store::{Channel, OutboxEntry, OutboxSummary, Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct SenderSettings {
    /// Which rows this sender delivers.
    pub channel: Channel,
    /// How often the outbox is checked for new or due replies.
    pub poll: Duration,
    /// Upper bound of one delivery (connect, TLS, AUTH, MAIL, RCPT, DATA).
    pub send_deadline: Duration,
    /// How long a claimed entry belongs to its sender; longer than `send_deadline`.
    pub lease: Duration,
    /// Temporary failures for longer than this (since queueing) turn into `failed`.
    pub give_up_after: Duration,
    /// Entries claimed per round.
    pub batch: i64,
}

impl SenderSettings {
    pub fn for_smtp(smtp: &SmtpConfig) -> SenderSettings {
        let send_deadline = smtp.timeout.saturating_mul(3);
        SenderSettings {
            channel: Channel::Mail,
            poll: Duration::from_millis(500),
            send_deadline,
            lease: send_deadline + Duration::from_secs(30),
            give_up_after: Duration::from_secs(2 * 24 * 3600),
            batch: 20,
        }
    }

    /// The alert webhook: a POST answered within 30 s, or tried again.
    pub fn for_webhook() -> SenderSettings {
        let send_deadline = Duration::from_secs(30);
        SenderSettings {
            channel: Channel::Webhook,
            poll: Duration::from_millis(500),
            send_deadline,
            lease: send_deadline + Duration::from_secs(30),
            give_up_after: Duration::from_secs(2 * 24 * 3600),
            batch: 20,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

pub struct OutboxSender<D: Deliver> {
    store: Store,
    deliver: Arc<D>,
    settings: SenderSettings,
    login: std::sync::Mutex<LoginGate>,
}

/// After the SMTP server rejected our login, nothing is sent (so no login is tried) until
/// `until`: 10 minutes, doubling up to an hour, like a fetching account.
#[derive(Debug, Default)]
struct LoginGate {
    rejections: u32,
    until: Option<chrono::DateTime<Utc>>,
}

/// The envelope sender: the From address of the stored reply (our account address).
fn envelope_from(message: &[u8]) -> Option<String> {
    let parsed = crate::ingest::parse::parse(message);
    Some(parsed.from_email).filter(|f| !f.is_empty())
}

impl<D: Deliver> OutboxSender<D> {
    pub fn new(store: Store, deliver: D, settings: SenderSettings) -> Self {
        OutboxSender {
            store,
            deliver: Arc::new(deliver),
            settings,
            login: Default::default(),
        }
    }

    /// Claims every due entry and tries to send each once.
    pub async fn send_due(&self) -> Result<Round, StoreError> {
        self.round(false, None).await
    }

    /// A round; `fresh_start` also tries pending entries still in their backoff: a restart (or
    /// the next `run --once`) often follows a fix, and waiting out the old backoff helps nobody.
    /// With `cancel`, a round that is told to stop finishes the send in flight and gives the
    /// entries it has not tried back (they are sent right after the next start).
    async fn round(
        &self,
        fresh_start: bool,
        cancel: Option<&CancellationToken>,
    ) -> Result<Round, StoreError> {
        if self.login_blocked_until().is_some() {
            return Ok(Round::default());
        }
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        let entries = self
            .store
            .claim_due_replies(
                self.settings.channel,
                now,
                lease_until,
                self.settings.batch,
                fresh_start,
            )
            .await?;
        let mut round = Round {
            claimed: entries.len(),
            ..Round::default()
        };
        for (i, entry) in entries.iter().enumerate() {
            if cancel.is_some_and(|c| c.is_cancelled()) {
                for left in &entries[i..] {
                    self.store.release_reply(left).await?;
                }
                debug!(released = entries.len() - i, "reply sender stopping");
                break;
            }
            match self.attempt(entry, lease_until).await? {
                Verdict::Sent => round.sent += 1,
                Verdict::Retry => round.retrying += 1,
                Verdict::Failed => round.failed += 1,
                Verdict::LoginRejected => {
                    // The same login would be rejected for every other entry: give them back.
                    round.retrying += 1;
                    for left in &entries[i + 1..] {
                        self.store.release_reply(left).await?;
                    }
                    break;
                }
            }
        }
        Ok(round)
    }

    async fn attempt(
        &self,
        entry: &OutboxEntry,
        lease_until: chrono::DateTime<Utc>,
    ) -> Result<Verdict, StoreError> {
        let from = match self.settings.channel {
            Channel::Mail => envelope_from(&entry.message),
            // An HTTP POST has no envelope.
            Channel::Webhook => Some(String::new()),
        };
        let what = if entry.article_id.is_some() {
            "auto-reply"
        } else {
            "alert"
        };
        let result = match from {
            None => Err(SendError::Unusable(
                "the stored message has no From address".into(),
            )),
            Some(from) => {
                let send = self
                    .deliver
                    .deliver(&from, &entry.recipient, &entry.message);
                match tokio::time::timeout(self.settings.send_deadline, send).await {
                    Ok(r) => r,
                    Err(_) => Err(SendError::Transient {
                        server: "the SMTP server".into(),
                        detail: format!(
                            "no complete answer within {}s; check [smtp] timeout and the server",
                            self.settings.send_deadline.as_secs()
                        ),
                    }),
                }
            }
        };
        let queued_ms = chrono::DateTime::parse_from_rfc3339(&entry.created_at)
            .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_milliseconds())
            .unwrap_or(-1);
        match result {
            Ok(()) => {
                self.login_accepted();
                self.record_sent(entry, lease_until).await?;
                if entry.article_id.is_some() {
                    crate::metrics::reply_sent(&entry.account);
                }
                info!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                    attempts = entry.attempts, queued_ms, "{what} sent");
                Ok(Verdict::Sent)
            }
            Err(e @ SendError::LoginRejected { .. }) => {
                let next = self.login_rejected();
                let text = e.to_string();
                self.store.mark_reply_retry(entry, &text, next).await?;
                crate::metrics::reply_retried(&entry.account);
                crate::metrics::error("smtp", "login");
                let next_try = next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                warn!(error = %text, next_try = %next_try,
                    "SMTP login rejected: no reply is sent (and no login tried) before {next_try}; \
                     fix [smtp] user and password (a SIGHUP with changed credentials retries at once)");
                Ok(Verdict::LoginRejected)
            }
            Err(e) if e.is_permanent() => {
                let text = format!("{e}; not retried");
                self.store.mark_reply_failed(entry, &text).await?;
                crate::metrics::reply_failed(&entry.account);
                error!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                    attempts = entry.attempts, error = %text, "{what} failed");
                Ok(Verdict::Failed)
            }
            Err(e) => {
                let age = Duration::from_millis(queued_ms.max(0) as u64);
                if age > self.settings.give_up_after {
                    let text = format!(
                        "{e}; gave up after {} attempts over {}",
                        entry.attempts,
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    );
                    self.store.mark_reply_failed(entry, &text).await?;
                    crate::metrics::reply_failed(&entry.account);
                    error!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                        error = %text, "{what} failed");
                    return Ok(Verdict::Failed);
                }
                let delay = crate::backoff::backoff_delay(entry.attempts.saturating_sub(1));
                let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                let text = e.to_string();
                self.store.mark_reply_retry(entry, &text, next).await?;
                crate::metrics::reply_retried(&entry.account);
                warn!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                    attempts = entry.attempts, error = %text,
                    next_attempt = %next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "{what} not sent yet; will retry");
                Ok(Verdict::Retry)
            }
        }
    }

    /// Records a delivered entry as sent. The server has the message now: a store that cannot
    /// record that at once (a busy or full disk, a PostgreSQL restart) is asked again until the
    /// entry's lease is about to end. Given up at once, the entry would be claimed again when
    /// its lease ends and the reply sent a second time.
    async fn record_sent(
        &self,
        entry: &OutboxEntry,
        lease_until: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut failures = 0;
        loop {
            let e = match self.store.mark_reply_sent(entry).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            failures += 1;
            let wait = crate::backoff::backoff_delay(failures).min(Duration::from_secs(10));
            let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            if next >= lease_until {
                error!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                    error = %e, "sent, but the store could not record it before the claim ended: \
                    it will be sent again when the claim has ended");
                return Err(e);
            }
            warn!(account = %entry.account, to = %entry.recipient, message_id = %entry.message_id,
                error = %e, retry_in_secs = wait.as_secs(),
                "sent, but the store could not record it yet; trying again");
            tokio::time::sleep(wait).await;
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, LoginGate> {
        self.login.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the last rejected login still blocks sending: until when.
    fn login_blocked_until(&self) -> Option<chrono::DateTime<Utc>> {
        self.gate().until.filter(|until| *until > Utc::now())
    }

    /// Counts a rejected login; returns when the next may be tried.
    fn login_rejected(&self) -> chrono::DateTime<Utc> {
        let mut gate = self.gate();
        gate.rejections += 1;
        let delay = crate::backoff::login_backoff(gate.rejections);
        let until = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        gate.until = Some(until);
        until
    }

    fn login_accepted(&self) {
        *self.gate() = LoginGate::default();
    }

    /// The daemon's task: send whatever is due until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut store_failures = 0u32;
        let mut fresh_start = true;
        while !cancel.is_cancelled() {
            let result = self.round(fresh_start, Some(&cancel)).await;
            fresh_start = false;
            let wait = match result {
                Ok(round) => {
                    store_failures = 0;
                    if let Some(until) = self.login_blocked_until() {
                        (until - Utc::now()).to_std().unwrap_or_default()
                    } else if round.claimed as i64 >= self.settings.batch {
                        continue;
                    } else {
                        self.settings.poll
                    }
                }
                Err(e) => {
                    store_failures += 1;
                    error!(error = %e, "the reply sender cannot read the outbox; retrying");
                    crate::backoff::backoff_delay(store_failures)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => {}
            }
        }
        debug!("reply sender stopped");
    }

    /// For `run --once`: sends until the outbox is empty, or nothing more can be sent before
    /// `wait` has passed (what is left stays queued for the next run).
    pub async fn drain(&self, wait: Duration) -> Result<OutboxSummary, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut fresh_start = true;
        loop {
            self.round(fresh_start, None).await?;
            fresh_start = false;
            let summary = self.store.outbox_summary().await?;
            if self.login_blocked_until().is_some() {
                return Ok(summary);
            }
            let Some(next_due) = summary.next_due.clone() else {
                return Ok(summary);
            };
            let due_in = chrono::DateTime::parse_from_rfc3339(&next_due)
                .map(|t| {
                    (t.with_timezone(&Utc) - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let now = tokio::time::Instant::now();
            if now + due_in > deadline {
                return Ok(summary);
            }
            tokio::time::sleep(due_in.max(Duration::from_millis(50))).await;
        }
    }
}

enum Verdict {
    Sent,
    Retry,
    Failed,
    /// Retried after the login pause; the rest of the round is given back.
    LoginRejected,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::ingest::parse::parse;
    use crate::store::{Incoming, TicketRules};

    /// Answers with the scripted results in order (then success), recording every delivery.
    #[derive(Default)]
    struct Script {
        results: Mutex<Vec<Result<(), SendError>>>,
        delivered: Mutex<Vec<(String, String, Vec<u8>)>>,
    }

    impl Deliver for Arc<Script> {
        async fn deliver(&self, from: &str, to: &str, message: &[u8]) -> Result<(), SendError> {
            self.delivered
                .lock()
                .unwrap()
                .push((from.into(), to.into(), message.to_vec()));
            let mut r = self.results.lock().unwrap();
            if r.is_empty() {
                Ok(())
            } else {
                r.remove(0)
            }
        }
    }

    fn settings() -> SenderSettings {
        SenderSettings {
            channel: Channel::Mail,
            poll: Duration::from_millis(20),
            send_deadline: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            batch: 10,
        }
    }

    fn rules() -> TicketRules {
        TicketRules::with_test_replies("support")
    }

    fn incoming(n: usize, from: &str) -> Incoming {
        let raw = format!(
            "From: {from}\r\nTo: support@shop.test\r\nSubject: Frage {n}\r\nMessage-ID: <q{n}@c.test>\r\n\r\nHallo {n}\r\n"
        );
        Incoming {
            source_key: format!("imap:INBOX:1:{n}").parse().unwrap(),
            parsed: parse(raw.as_bytes()),
            raw: raw.into_bytes(),
            received_at: Utc::now(),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    /// A store whose outbox holds the replies queued with the tickets of `mails`.
    async fn queued(mails: &[Incoming]) -> (tempfile::TempDir, Store) {
        let (dir, store) = store().await;
        store.store_batch(&rules(), mails).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn queued_with_the_ticket_sent_once_and_noted() {
        let (_d, store) = queued(&[incoming(1, "Kunde <k@c.test>")]).await;
        let s = store.outbox_summary().await.unwrap();
        assert_eq!((s.pending, s.sent), (1, 0));
        let script = Arc::new(Script::default());
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        let round = sender.send_due().await.unwrap();
        assert_eq!(round.sent, 1);
        assert_eq!(sender.send_due().await.unwrap().claimed, 0);
        let delivered = script.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].0, "support@shop.test");
        assert_eq!(delivered[0].1, "k@c.test");
        let detail = store.show_ticket("10001").await.unwrap().unwrap();
        assert!(
            detail.articles[0]
                .auto_reply
                .starts_with("auto-reply sent to k@c.test"),
            "{}",
            detail.articles[0].auto_reply
        );
    }

    #[tokio::test]
    async fn a_send_the_store_cannot_record_at_once_is_recorded_later_and_not_sent_again() {
        let (_d, store) = queued(&[incoming(1, "k@c.test")]).await;
        // The store refuses to record a sent reply until the next-but-one second of the clock:
        // the first record fails, the one after the first backoff (2 s and more) succeeds.
        let until = Utc::now().timestamp() + 2;
        sqlx::query(&format!(
            "CREATE TRIGGER refuse_sent BEFORE UPDATE ON outbox WHEN NEW.status = 'sent' \
             AND CAST(strftime('%s', 'now') AS INTEGER) < {until} \
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        let script = Arc::new(Script::default());
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        let round = sender.send_due().await.unwrap();
        assert_eq!(round.sent, 1, "recorded once the store took it");
        assert!(
            Utc::now().timestamp() >= until,
            "the first record was refused"
        );
        let rows = store.outbox_rows().await.unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
        // Even a fresh start with every lease ignored finds nothing left to send.
        assert_eq!(sender.round(true, None).await.unwrap().claimed, 0);
        assert_eq!(script.delivered.lock().unwrap().len(), 1, "sent once");
    }

    #[tokio::test]
    async fn a_rejected_smtp_login_pauses_all_sending_for_ten_minutes() {
        let (_d, store) = queued(&[
            incoming(1, "a@c.test"),
            incoming(2, "b@c.test"),
            incoming(3, "d@c.test"),
        ])
        .await;
        let script = Arc::new(Script::default());
        *script.results.lock().unwrap() = vec![Err(SendError::LoginRejected {
            server: "s".into(),
            detail: "535 5.7.8 authentication failed".into(),
        })];
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        let r = sender.send_due().await.unwrap();
        assert_eq!(r.retrying, 1);
        let s = sender.drain(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            script.delivered.lock().unwrap().len(),
            1,
            "one login tried, not one per queued reply"
        );
        assert_eq!((s.sent, s.unsent()), (0, 3), "every reply stays queued");
        let until = sender.login_blocked_until().expect("sending is paused");
        let pause = until - Utc::now();
        assert!(
            pause > chrono::Duration::minutes(9) && pause <= chrono::Duration::minutes(10),
            "{pause}"
        );
    }

    #[tokio::test]
    async fn temporary_failures_retry_with_identical_bytes_permanent_ones_stop() {
        let (_d, store) = queued(&[incoming(1, "a@c.test"), incoming(2, "b@c.test")]).await;
        let script = Arc::new(Script::default());
        *script.results.lock().unwrap() = vec![
            Err(SendError::Transient {
                server: "s".into(),
                detail: "421 busy".into(),
            }),
            Err(SendError::Permanent {
                server: "s".into(),
                detail: "550 no such user".into(),
            }),
        ];
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        let r = sender.send_due().await.unwrap();
        assert_eq!((r.retrying, r.failed), (1, 1));
        // The retry is due after the backoff (about a second), and goes out unchanged.
        let s = sender.drain(Duration::from_secs(5)).await.unwrap();
        assert_eq!((s.sent, s.failed, s.unsent()), (1, 1, 0));
        let d = script.delivered.lock().unwrap().clone();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].2, d[2].2, "a retry sends the identical message");
        let rows = store.outbox_rows().await.unwrap();
        assert_eq!(rows[0].status, "sent");
        assert_eq!(rows[0].attempts, 2);
        assert_eq!(rows[1].status, "failed");
        assert!(rows[1].last_error.contains("550"), "{}", rows[1].last_error);
    }

    /// Two senders "died" after claiming an entry, before recording the result: one whose lease
    /// still runs for an hour, and one that claimed two minutes ago with a one-minute lease. The
    /// leases are stamps on the wall clock that `claim_due_replies` compares with the sender's
    /// `Utc::now()`, so neither tokio's paused clock nor a short sleep can stand in for a lease
    /// running out (a 300 ms lease raced the checks on a loaded machine): each lease is simply
    /// on its side of now by far more than the test takes.
    #[tokio::test]
    async fn a_claimed_entry_of_a_crashed_sender_is_retried_after_its_lease() {
        let (_d, store) =
            queued(&[incoming(1, "running@c.test"), incoming(2, "ended@c.test")]).await;
        let now = Utc::now();
        let running = store
            .claim_due_replies(
                Channel::Mail,
                now,
                now + chrono::Duration::hours(1),
                1,
                true,
            )
            .await
            .unwrap();
        let then = now - chrono::Duration::minutes(2);
        let ended = store
            .claim_due_replies(
                Channel::Mail,
                then,
                then + chrono::Duration::minutes(1),
                1,
                true,
            )
            .await
            .unwrap();
        assert_eq!(running[0].recipient, "running@c.test");
        assert_eq!(ended[0].recipient, "ended@c.test");

        let script = Arc::new(Script::default());
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        let r = sender.send_due().await.unwrap();
        assert_eq!(
            (r.claimed, r.sent),
            (1, 1),
            "only the entry whose lease ended"
        );
        assert_eq!(
            sender.round(true, None).await.unwrap().claimed,
            0,
            "a fresh start respects leases"
        );
        let delivered = script.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].1, "ended@c.test");
        let rows = store.outbox_rows().await.unwrap();
        let row = |to: &str| rows.iter().find(|r| r.recipient == to).unwrap().clone();
        assert_eq!(row("ended@c.test").status, "sent");
        assert_eq!(row("ended@c.test").attempts, 2, "the crashed claim counts");
        assert_eq!(row("running@c.test").status, "sending", "still leased");
    }

    #[tokio::test]
    async fn senders_of_several_instances_on_one_store_send_each_reply_once() {
        let mails: Vec<Incoming> = (0..60)
            .map(|n| incoming(n, &format!("k{n}@c.test")))
            .collect();
        let (dir, store) = queued(&mails).await;
        // Three instances: each its own pool on the same file, all sending at once.
        let script = Arc::new(Script::default());
        let mut senders = Vec::new();
        for _ in 0..3 {
            let own = Store::open(&dir.path().join("t.db")).await.unwrap();
            senders.push(OutboxSender::new(own, script.clone(), settings()));
        }
        loop {
            let rounds =
                futures::future::join_all(senders.iter().map(|s| s.round(true, None))).await;
            if rounds.into_iter().all(|r| r.unwrap().claimed == 0) {
                break;
            }
        }
        let delivered = script.delivered.lock().unwrap().clone();
        let recipients: std::collections::HashSet<&String> =
            delivered.iter().map(|(_, to, _)| to).collect();
        assert_eq!(delivered.len(), 60, "each reply sent once");
        assert_eq!(recipients.len(), 60, "no reply sent twice");
        assert_eq!(store.outbox_summary().await.unwrap().sent, 60);
    }

    #[tokio::test]
    async fn a_fresh_start_does_not_wait_out_an_old_backoff() {
        let (_d, store) = queued(&[incoming(1, "a@c.test")]).await;
        let script = Arc::new(Script::default());
        *script.results.lock().unwrap() = vec![Err(SendError::Transient {
            server: "s".into(),
            detail: "connection refused".into(),
        })];
        let sender = OutboxSender::new(store.clone(), script.clone(), settings());
        assert_eq!(sender.send_due().await.unwrap().retrying, 1);
        assert_eq!(sender.send_due().await.unwrap().claimed, 0, "backing off");
        assert_eq!(sender.round(true, None).await.unwrap().sent, 1);
    }

    #[tokio::test]
    async fn rate_limit_counts_queued_replies_in_the_same_batch() {
        let mails: Vec<_> = (1..=5).map(|n| incoming(n, "burst@c.test")).collect();
        let (_d, store) = queued(&mails).await;
        let s = store.outbox_summary().await.unwrap();
        assert_eq!(s.pending, 2);
        let detail = store.show_ticket("10005").await.unwrap().unwrap();
        assert!(
            detail.articles[0].auto_reply.contains("auto_reply_limit"),
            "{}",
            detail.articles[0].auto_reply
        );
    }

    #[tokio::test]
    async fn suppressed_mail_records_its_reason_and_followups_get_nothing() {
        let (_d, store) = store().await;
        let mut robot = incoming(1, "noreply@c.test");
        robot.source_key = "imap:INBOX:1:100".parse().unwrap();
        store.store_batch(&rules(), &[robot]).await.unwrap();
        let detail = store.show_ticket("10001").await.unwrap().unwrap();
        assert!(detail.articles[0].auto_reply.contains("robot"));
        assert_eq!(store.outbox_summary().await.unwrap().pending, 0);

        store
            .store_batch(&rules(), &[incoming(2, "k@c.test")])
            .await
            .unwrap();
        let rows = store.outbox_rows().await.unwrap();
        let reply_id = rows[0].message_id.clone();
        let answer = format!(
            "From: k@c.test\r\nSubject: Re: x\r\nIn-Reply-To: <{reply_id}>\r\nMessage-ID: <ans@c.test>\r\n\r\nthanks\r\n"
        );
        let answer = Incoming {
            source_key: "imap:INBOX:1:3".parse().unwrap(),
            parsed: parse(answer.as_bytes()),
            raw: answer.into_bytes(),
            received_at: Utc::now(),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        };
        let out = store.store_batch(&rules(), &[answer]).await.unwrap();
        assert_eq!(
            out[0],
            crate::ingest::outcome::Outcome::FollowUp {
                number: "10002".into()
            }
        );
        assert_eq!(store.outbox_rows().await.unwrap().len(), 1);
    }
}
