//! The pass's side of a lease: may this instance still move or delete mail of the account?
//! Kept apart from the lease loop (the parent module), which needs the poller, so that the
//! account and the pass can carry the handle without importing the loop that sets it.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// What the pass asks before every disposal: whether this instance may still touch the mailbox.
/// The default handle (leases off) always may.
#[derive(Debug, Clone, Default)]
pub struct Holding(Option<Arc<Mutex<Option<Instant>>>>);

impl Holding {
    pub(super) fn until(deadline: Instant) -> Holding {
        Holding(Some(Arc::new(Mutex::new(Some(deadline)))))
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Option<Instant>>> {
        self.0
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True while the lease is held and its local deadline has not passed.
    pub fn may_dispose(&self) -> bool {
        match self.lock() {
            None => true,
            Some(deadline) => deadline.is_some_and(|d| Instant::now() < d),
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        self.lock().and_then(|d| *d).unwrap_or_else(Instant::now)
    }

    pub(super) fn extend(&self, deadline: Instant) {
        if let Some(mut d) = self.lock() {
            if d.is_some() {
                *d = Some(deadline);
            }
        }
    }

    pub(super) fn revoke(&self) {
        if let Some(mut d) = self.lock() {
            *d = None;
        }
    }
}
