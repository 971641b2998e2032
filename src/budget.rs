//! One memory budget for the mail in flight across every account (`[daemon] memory_budget`).
//!
//! A mail takes several times its size while it is fetched, parsed and stored: the raw bytes,
//! the decoded text and attachments, the compressed copy, and what the database binds. Twenty
//! accounts that each receive a phone video at once would each hold that, and a small server's
//! kernel would kill the daemon; systemd restarts it, the same mails are fetched again, and no
//! mailbox moves on. So every batch reserves its cost here before it is fetched, and gives it
//! back when it is stored. An account waits for room; a single mail costlier than the whole
//! budget still goes through, alone (it waits until nothing else is in flight).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The memory a mail of N bytes takes at its peak, as a multiple of N: the raw bytes, the
/// decoded attachments and text beside them, the zstd copy, and the copies the database binds
/// (BENCHMARKS.md, "Big mails at once").
pub const COST_PER_MAIL_BYTE: u64 = 4;

/// The budget is counted in units of this many bytes (a semaphore counts in u32 permits).
const UNIT: u64 = 64 * 1024;

/// Shared by every poller of a process; cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    room: Arc<Semaphore>,
    units: u32,
}

/// Room reserved for one batch: given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl MemoryBudget {
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        MemoryBudget {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until a batch of mails of `mail_bytes` in all fits beside what is in flight.
    pub async fn reserve(&self, mail_bytes: u64) -> Reservation {
        let permit = Arc::clone(&self.room)
            .acquire_many_owned(self.cost(mail_bytes))
            .await
            .expect("the budget's semaphore is never closed");
        Reservation { _permit: permit }
    }

    /// [`reserve`](Self::reserve) without waiting: `None` when there is no room now.
    pub fn try_reserve(&self, mail_bytes: u64) -> Option<Reservation> {
        Arc::clone(&self.room)
            .try_acquire_many_owned(self.cost(mail_bytes))
            .ok()
            .map(|permit| Reservation { _permit: permit })
    }

    /// The units a batch takes: at most the whole budget, so a larger mail goes through alone.
    fn cost(&self, mail_bytes: u64) -> u32 {
        let bytes = mail_bytes.saturating_mul(COST_PER_MAIL_BYTE);
        let units = bytes.div_ceil(UNIT).max(1);
        u32::try_from(units).unwrap_or(u32::MAX).min(self.units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn a_batch_waits_until_the_one_before_gives_its_room_back() {
        let budget = MemoryBudget::new(256 * MB);
        let first = budget.reserve(45 * MB).await;
        assert!(
            budget.try_reserve(45 * MB).is_none(),
            "two 45 MB mails do not fit into 256 MB at once"
        );
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(45 * MB).await }
        });
        drop(first);
        second.await.unwrap();
    }

    #[tokio::test]
    async fn a_mail_larger_than_the_whole_budget_goes_through_alone() {
        let budget = MemoryBudget::new(256 * MB);
        let huge = budget.reserve(500 * MB).await;
        assert!(budget.try_reserve(1).is_none(), "nothing beside it");
        drop(huge);
        assert!(budget.try_reserve(1).is_some());
    }

    #[tokio::test]
    async fn small_batches_of_many_accounts_share_the_budget() {
        let budget = MemoryBudget::new(256 * MB);
        let held: Vec<Reservation> = (0..20)
            .map(|_| {
                budget
                    .try_reserve(2 * MB)
                    .expect("room for twenty 2 MB batches")
            })
            .collect();
        assert_eq!(held.len(), 20);
    }
}
