//! Whether an account's mails with tickets wait in the folder flagged \Deleted because another
//! client's mails are flagged too (no UIDPLUS: see [`dispose`](super::dispose)). The wait can
//! last many passes; remembering it lets the log say so when it starts and when it ends, not
//! every pass.
//!
//! The memory belongs to one account: the poller keeps one across its passes and reconnects
//! (`run --once` one for its single pass), so it dies with the poller and two accounts never
//! see each other's wait.

/// What a disposal changed about the wait, worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitChange {
    /// The account's mails wait flagged now, and did not before.
    Started,
    /// They waited, and the last disposal removed mails from the folder.
    Ended,
}

/// One account's memory of the wait (none at first).
#[derive(Debug, Default)]
pub struct FlaggedWait {
    waiting: bool,
}

impl FlaggedWait {
    /// Records whether the account's mails wait after a disposal; the change, if it is news.
    pub fn note(&mut self, waiting: bool) -> Option<WaitChange> {
        let was = std::mem::replace(&mut self.waiting, waiting);
        match (was, waiting) {
            (false, true) => Some(WaitChange::Started),
            (true, false) => Some(WaitChange::Ended),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_news_when_it_starts_and_when_it_ends_never_in_between() {
        let mut wait = FlaggedWait::default();
        assert_eq!(wait.note(false), None, "no wait, nothing to say");
        assert_eq!(wait.note(true), Some(WaitChange::Started));
        assert_eq!(wait.note(true), None, "said once until it ends");
        assert_eq!(wait.note(true), None);
        assert_eq!(wait.note(false), Some(WaitChange::Ended));
        assert_eq!(wait.note(false), None, "said once");
        assert_eq!(wait.note(true), Some(WaitChange::Started), "a new wait");
    }

    #[test]
    fn two_accounts_never_see_each_others_wait() {
        let (mut support, mut billing) = (FlaggedWait::default(), FlaggedWait::default());
        assert_eq!(support.note(true), Some(WaitChange::Started));
        assert_eq!(
            billing.note(true),
            Some(WaitChange::Started),
            "billing's wait is news though support's started first"
        );
        assert_eq!(billing.note(false), Some(WaitChange::Ended));
        assert_eq!(
            support.note(true),
            None,
            "support still waits, said already"
        );
        assert_eq!(support.note(false), Some(WaitChange::Ended));
    }
}
