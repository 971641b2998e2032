//! A request to apply the config file again: what SIGHUP does, asked for by the accounts page
//! after a Save. The daemon's main loop serves it like a SIGHUP and sends the outcome back, so
//! the page can say which accounts restarted, or why the file was not applied.

use tokio::sync::{mpsc, oneshot};

/// What applying the file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file was applied; only these accounts changed.
    Applied {
        started: Vec<String>,
        restarted: Vec<String>,
        stopped: Vec<String>,
    },
    /// The file has errors (or its accounts cannot start): the running config stays.
    Rejected(Vec<String>),
}

pub struct ReloadRequest {
    pub reply: oneshot::Sender<ReloadOutcome>,
}

/// The page's side of the channel; cheap to clone.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<ReloadRequest>);

impl Reloader {
    pub fn channel() -> (Reloader, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(4);
        (Reloader(tx), rx)
    }

    /// Asks the daemon to apply the file and waits for the outcome.
    pub async fn reload(&self) -> ReloadOutcome {
        let (reply, outcome) = oneshot::channel();
        if self.0.send(ReloadRequest { reply }).await.is_err() {
            return ReloadOutcome::Rejected(vec!["the daemon is stopping".into()]);
        }
        outcome
            .await
            .unwrap_or_else(|_| ReloadOutcome::Rejected(vec!["the daemon is stopping".into()]))
    }
}
