//! Several instances on one store (`[store] instances = "several"`): every instance runs the
//! whole config, and an account is polled only by the instance holding its lease.
//!
//! # The lease
//!
//! One row per account in `account_leases` (owner, fence, expires_at), written with conditional
//! statements on the store's clock (see `store::lease`):
//! - *acquire* succeeds when the row is missing, expired, or already ours, and increments the
//!   fence every time;
//! - *renew* extends `expires_at` by [`Timing::ttl`] only while owner and fence are still ours;
//! - *release* (shutdown) expires the row at once, so another instance takes over at its next
//!   try instead of after the TTL.
//!
//! A standby instance tries to acquire every [`Timing::renew_every`]; the holder renews as often.
//! A dead holder (SIGKILL, cut from the database) stops renewing, so another instance takes the
//! account over at most `ttl + renew_every` after the holder's last renewal: 18 s with the
//! defaults, well within the 30 s promised.
//!
//! # Stopping before anyone else may start
//!
//! The holder keeps a local deadline on the monotonic clock: the moment the acquiring or renewing
//! statement was *sent*, plus the TTL, minus a safety margin. The database sets the expiry after
//! it received the statement, so the local deadline always comes before the expiry another
//! instance waits for. When the deadline passes without a confirmed renewal (the database is
//! unreachable or slow), or a renewal finds the row taken over, the holder drops the account's
//! session on the spot: the pass in flight is abandoned between two steps, and nothing is
//! disposed (the pass asks [`Holding::may_dispose`] right before every move, delete or POP3
//! QUIT, which is what commits DELEs). A mail whose commit was not confirmed is never touched:
//! it stays on the server, and the next holder finds its key recorded (the commit happened) and
//! disposes of it, or finds nothing and stores it.
//!
//! The margin ([`Timing::margin`], 5 s) covers the one disposal command that may be on the wire
//! when the deadline passes, and clock drift between the instances and the database. On SQLite
//! every instance runs on the machine of the file and shares its clock. On a database server
//! the store's own clock is used for every expiry, so only the rate of the clocks matters, not
//! their offset.
//!
//! # A silent network
//!
//! A network path to the database server that goes silent (packets dropped, the connection
//! never closed) answers no statement, and the kernel gives such a connection up only after
//! many minutes. Lease statements therefore fail after `LEASE_ANSWER_WITHIN` (3 s, in `store`) with
//! no answer, and run on connections of their own, so neither a silent path nor a backlog that
//! keeps every connection of the store busy holds a renewal up. The pass's own store calls have
//! a longer bound (`STORE_ANSWER_WITHIN`, 12 s, in `store`), below the TTL: under a lease the
//! deadline usually comes first and the pass is dropped with whatever it was waiting for, but
//! when only the pass's connection is stuck and renewals still get through, the bound ends the
//! call before the account has waited longer than a takeover would take.
//!
//! # Fencing
//!
//! The account's session writes through a fenced store ([`Store::fenced`]): every write
//! transaction first checks, inside the transaction and under the database's write lock, that
//! owner and fence are still the lease's. A holder that was paused (a stopped VM, a swapped-out
//! process) past its deadline and wakes up in the middle of a commit therefore rolls back
//! instead of writing behind the new holder's back.
//!
//! # Why only when configured
//!
//! With one instance (the default) nothing changes: no lease rows, no extra writes, no wait at
//! start-up. Leases by default would make a daemon restarted after a SIGKILL wait for its own
//! previous lease to expire (its identity is new at every start), up to the TTL.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::account::AccountRuntime;
use crate::health::{AccountHealth, LeaseView, State};
use crate::poller;
use crate::source::{Holding, PassReport, SourceError};
use crate::store::{Fence, Store};

/// How long a lease lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts after its last renewal (on the store's clock).
    pub ttl: Duration,
    /// How often the holder renews, and a standby instance tries to acquire.
    pub renew_every: Duration,
    /// Subtracted from the TTL for the holder's local deadline.
    pub margin: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl: Duration::from_secs(15),
            renew_every: Duration::from_secs(3),
            margin: Duration::from_secs(5),
        }
    }
}

impl Timing {
    /// The local deadline of a lease whose statement was sent at `sent`.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl.saturating_sub(self.margin)
    }
}

/// This instance's identity on the store.
#[derive(Debug, Clone)]
pub struct Leases {
    store: Store,
    owner: Arc<str>,
    timing: Timing,
}

impl Leases {
    /// A new identity: host:pid:random, so a restarted process is a new owner.
    pub fn new(store: Store) -> Leases {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let random: u32 = rand::thread_rng().gen();
        Leases {
            store,
            owner: format!("{host}:{}:{random:08x}", std::process::id()).into(),
            timing: Timing::default(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes the account's lease if it is free; `None` when another instance holds it or the
    /// store did not answer (both mean: not ours, try again later).
    async fn acquire(&self, account: &str) -> Option<(Fence, Instant)> {
        let sent = Instant::now();
        match self
            .store
            .acquire_lease(account, &self.owner, self.timing.ttl)
            .await
        {
            Ok(Some(fence)) => Some((
                Fence {
                    account: account.to_string(),
                    owner: self.owner.to_string(),
                    fence,
                },
                self.timing.deadline(sent),
            )),
            Ok(None) => None,
            Err(e) => {
                warn!(account, error = %e, "cannot reach the store to acquire the account's lease; trying again");
                None
            }
        }
    }

    /// Keeps the lease: renews it every `renew_every` and moves `holding`'s deadline. Returns
    /// (why) when the lease is lost; never returns while it is held.
    async fn keep(&self, fence: &Fence, holding: &Holding) -> &'static str {
        loop {
            let deadline = holding.deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return "no renewal confirmed before its deadline (store unreachable or too slow)",
                _ = tokio::time::sleep(self.timing.renew_every) => {}
            }
            let sent = Instant::now();
            let renewed =
                tokio::time::timeout_at(deadline, self.store.renew_lease(fence, self.timing.ttl))
                    .await;
            match renewed {
                Err(_) => return "no renewal confirmed before its deadline (store unreachable or too slow)",
                Ok(Ok(true)) => holding.extend(self.timing.deadline(sent)),
                Ok(Ok(false)) => return "another instance took it over",
                Ok(Err(e)) => {
                    debug!(account = %fence.account, error = %e, "renewing the lease failed; retrying until its deadline");
                }
            }
        }
    }

    /// Runs `work` with the account's lease held: `None` when the lease was lost first (the
    /// work is dropped at once). The lease is released after the work unless it was lost.
    async fn while_held<T>(
        &self,
        fence: Fence,
        deadline: Instant,
        work: impl FnOnce(Store, Holding) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Option<T> {
        let holding = Holding::until(deadline);
        let store = self.store.fenced(fence.clone());
        let done = tokio::select! {
            done = work(store, holding.clone()) => Some(done),
            why = self.keep(&fence, &holding) => {
                holding.revoke();
                crate::metrics::lease_held(&fence.account, false);
                crate::metrics::error(&fence.account, "lease_lost");
                warn!(account = %fence.account, fence = fence.fence, why,
                    "lease lost: stopped touching the mailbox; the instance that holds it now carries on");
                return None;
            }
        };
        holding.revoke();
        crate::metrics::lease_held(&fence.account, false);
        if let Err(e) = self.store.release_lease(&fence).await {
            warn!(account = %fence.account, error = %e, "could not release the lease; another instance takes over when it expires");
        }
        done
    }
}

type Session = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The account's long-running loop under a lease: wait in standby until the lease is ours, run
/// `session(fenced store, holding, cancel)` while it is held, and start over when it is lost.
/// Returns when `cancel` fires (the lease is released for the next instance).
pub async fn serve(
    leases: &Leases,
    health: &AccountHealth,
    account: &str,
    cancel: &CancellationToken,
    session: impl Fn(Store, Holding, CancellationToken) -> Session,
) {
    while !cancel.is_cancelled() {
        let Some((fence, deadline)) = leases.acquire(account).await else {
            standby(leases, health, account).await;
            tokio::select! {
                _ = tokio::time::sleep(leases.timing.renew_every) => {}
                _ = cancel.cancelled() => return,
            }
            continue;
        };
        info!(
            account,
            fence = fence.fence,
            instance = leases.owner(),
            "lease acquired: polling the account"
        );
        health.set_lease(Some(LeaseView::Held { fence: fence.fence }));
        crate::metrics::lease_held(account, true);
        let cancel = cancel.clone();
        let held = leases
            .while_held(fence, deadline, |store, holding| {
                session(store, holding, cancel)
            })
            .await;
        if held.is_none() {
            // Lost: say so at once, not only once the next acquisition attempt has answered.
            health.set_lease(Some(LeaseView::Standby { holder: None }));
            health.set(State::Standby);
        }
    }
}

/// An account's poller: [`poller::run_account`] as it is with one instance, under the
/// account's lease ([`serve`]) with several.
pub async fn run_account(
    leases: Option<Leases>,
    rt: AccountRuntime,
    store: Store,
    cancel: CancellationToken,
) {
    let Some(leases) = leases else {
        return poller::run_account(rt, store, cancel).await;
    };
    let (health, name) = (rt.health.clone(), rt.account.name.clone());
    serve(
        &leases,
        &health,
        &name,
        &cancel,
        |store, holding, cancel| {
            let rt = AccountRuntime {
                lease: holding,
                ..rt.clone()
            };
            Box::pin(poller::run_account(rt, store, cancel))
        },
    )
    .await
}

/// Shows who holds the account while this instance waits.
async fn standby(leases: &Leases, health: &AccountHealth, account: &str) {
    let holder = leases.store.lease_holder(account).await.ok().flatten();
    crate::metrics::lease_held(account, false);
    health.set_lease(Some(LeaseView::Standby {
        holder: holder.map(|h| h.owner),
    }));
    health.set(State::Standby);
}

/// With `instances = "one"`: refuses to start while another instance polls an account of this
/// store under a lease, since this one would poll it too. The error names the account and says
/// what to do.
pub async fn check_alone(store: &Store) -> Result<(), String> {
    let live = store
        .live_leases()
        .await
        .map_err(|e| format!("cannot read the account leases: {e}"))?;
    match live.first() {
        None => Ok(()),
        Some((account, holder)) => Err(format!(
            "account {account:?} is polled under a lease by instance {} (until {}), which runs \
             with [store] instances = \"several\"; this instance (instances = \"one\") would \
             poll it as well. Set instances = \"several\" in [store] here too, or stop that \
             instance (a stopped instance releases its leases; a killed one's expire 15 s after \
             it died)",
            holder.owner, holder.expires_at
        )),
    }
}

/// One pass (`run --once`) while holding the account's lease: with one instance there is no
/// lease and the pass just runs; with several, only if the lease is free, and under it (another
/// instance polling the account is no error: it is skipped).
pub async fn pass_holding_lease(
    leases: Option<&Leases>,
    rt: &AccountRuntime,
    store: &Store,
) -> Result<PassReport, SourceError> {
    let Some(leases) = leases else {
        return poller::connect_and_pass(rt, store, None).await;
    };
    let name = rt.account.name.as_str();
    let Some((fence, deadline)) = leases.acquire(name).await else {
        info!(
            account = name,
            "another instance holds the account's lease and polls it: skipped"
        );
        return Ok(PassReport::default());
    };
    let rt = rt.clone();
    let done = leases
        .while_held(fence, deadline, |store, holding| {
            Box::pin(async move {
                let rt = AccountRuntime {
                    lease: holding,
                    ..rt
                };
                poller::connect_and_pass(&rt, &store, None).await
            })
        })
        .await;
    done.unwrap_or_else(|| Err(SourceError::lease_lost()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // On tokio's paused clock (the holding's deadline is a `tokio::time::Instant`): time moves
    // only when the test sleeps, so "before the deadline" cannot turn into "after" on a loaded
    // machine between two lines, and the sleeps land exactly 1 ms before and on the deadline.
    #[tokio::test(start_paused = true)]
    async fn a_holding_allows_disposal_only_before_its_deadline() {
        let holding = Holding::until(Instant::now() + Duration::from_millis(50));
        assert!(holding.may_dispose());
        tokio::time::sleep(Duration::from_millis(49)).await;
        assert!(holding.may_dispose(), "1 ms before the deadline");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!holding.may_dispose(), "at the deadline");
        assert!(Holding::default().may_dispose(), "leases off");
        let revoked = Holding::until(Instant::now() + Duration::from_secs(10));
        revoked.revoke();
        revoked.extend(Instant::now() + Duration::from_secs(10));
        assert!(!revoked.may_dispose(), "a lost lease is never extended");
    }

    #[tokio::test]
    async fn a_single_instance_refuses_to_start_beside_lease_holders() {
        let store = Store::open_in_memory().await.unwrap();
        assert_eq!(check_alone(&store).await, Ok(()));
        let ttl = Timing::default().ttl;
        let fence = store
            .acquire_lease("support", "other:1:2", ttl)
            .await
            .unwrap()
            .unwrap();
        let err = check_alone(&store).await.unwrap_err();
        assert!(
            err.contains("\"support\"") && err.contains("other:1:2") && err.contains("several"),
            "{err}"
        );
        let fence = Fence {
            account: "support".into(),
            owner: "other:1:2".into(),
            fence,
        };
        store.release_lease(&fence).await.unwrap();
        assert_eq!(
            check_alone(&store).await,
            Ok(()),
            "a released lease is no one's"
        );
    }

    #[test]
    fn the_local_deadline_ends_before_the_lease_expires() {
        let t = Timing::default();
        let sent = Instant::now();
        assert!(t.deadline(sent) + t.margin <= sent + t.ttl);
        assert!(
            t.ttl + t.renew_every < Duration::from_secs(30),
            "a dead holder's account is taken over within 30 s"
        );
    }
}
