//! Waiting for new mail in IMAP IDLE (RFC 2177).
//!
//! IDLE is a hint, not a promise: some servers push new-mail notices only after a minute or so
//! (Cyrus with its shipped settings, Courier without its file-watch helper), some never. So the
//! wait in IDLE ends at `poll_interval` at the latest, and the pass that follows lists the folder
//! whether the server said anything or not. With IDLE a mail therefore waits at most
//! `poll_interval` (plus the pass itself), and on a server that pushes at once about a second.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ImapConnection;

/// Servers may drop an IDLE after 30 minutes (RFC 2177): never wait longer than this in one.
pub const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// How long one IDLE lasts: until `poll_interval`, but within [`IDLE_RENEW`].
pub fn idle_wait(poll_interval: Duration) -> Duration {
    poll_interval.min(IDLE_RENEW)
}

/// Waits in IDLE until the server reports a change, `poll_interval` passes, or we are cancelled
/// (then `None`: the connection is logged out).
pub async fn idle(
    conn: ImapConnection,
    poll_interval: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<ImapConnection>> {
    let ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    } = conn;
    let mut handle = session.idle();
    tokio::time::timeout(timeout, handle.init())
        .await
        .map_err(|_| anyhow::anyhow!("IDLE did not start within {}s", timeout.as_secs()))??;
    let cancelled = {
        let (wait, stop) = handle.wait_with_timeout(idle_wait(poll_interval));
        tokio::select! {
            r = wait => { r?; false }
            _ = cancel.cancelled() => { drop(stop); true }
        }
    };
    let mut session = tokio::time::timeout(timeout, handle.done())
        .await
        .map_err(|_| anyhow::anyhow!("ending IDLE timed out after {}s", timeout.as_secs()))??;
    if cancelled {
        let _ = tokio::time::timeout(timeout, session.logout()).await;
        return Ok(None);
    }
    Ok(Some(ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    }))
}
