//! Waiting for new mail between passes: IMAP IDLE (RFC 2177), or a plain wait where the server
//! has no IDLE.
//!
//! IDLE is a hint, not a promise: some servers push new-mail notices only after a minute or so
//! (Cyrus with its shipped settings, Courier without its file-watch helper), some never. So the
//! wait in IDLE ends at `poll_interval` at the latest, and the pass that follows lists the folder
//! whether the server said anything or not. With IDLE a mail therefore waits at most
//! `poll_interval` (plus the pass itself), and on a server that pushes at once about a second.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ImapConnection, ImapError};

/// Servers may drop an IDLE after 30 minutes (RFC 2177): never wait longer than this in one.
pub const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// How long one IDLE lasts: until `poll_interval`, but within [`IDLE_RENEW`].
pub fn idle_wait(poll_interval: Duration) -> Duration {
    poll_interval.min(IDLE_RENEW)
}

/// What ended a wait.
pub enum Woken {
    /// Time for the next pass, on this connection (boxed: a session is large, `Cancelled` empty).
    Pass(Box<ImapConnection>),
    /// Cancelled: the connection is logged out.
    Cancelled,
}

/// Waits until the next pass is due: at once when changes arrived during the last pass, else in
/// IDLE when the server offers it, else for `poll_interval`.
pub async fn wait_for_change(
    conn: ImapConnection,
    poll_interval: Duration,
    cancel: &CancellationToken,
) -> Result<Woken, ImapError> {
    // Changes that arrived during the pass are already queued: go again right away.
    let mut changed = false;
    while let Ok(resp) = conn.session.unsolicited_responses.try_recv() {
        if matches!(resp, async_imap::types::UnsolicitedResponse::Exists(_)) {
            changed = true;
        }
    }
    if changed {
        return Ok(Woken::Pass(Box::new(conn)));
    }
    if conn.has("IDLE") {
        return idle(conn, poll_interval, cancel).await;
    }
    tokio::select! {
        _ = tokio::time::sleep(poll_interval) => Ok(Woken::Pass(Box::new(conn))),
        _ = cancel.cancelled() => {
            logout(conn).await;
            Ok(Woken::Cancelled)
        }
    }
}

/// Logs out, within the connection's timeout; a failure only means the server will drop the
/// connection by itself.
pub async fn logout(mut conn: ImapConnection) {
    let _ = tokio::time::timeout(conn.timeout, conn.session.logout()).await;
}

/// Waits in IDLE until the server reports a change, `poll_interval` passes, or we are cancelled.
async fn idle(
    conn: ImapConnection,
    poll_interval: Duration,
    cancel: &CancellationToken,
) -> Result<Woken, ImapError> {
    let ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    } = conn;
    let failed = |source| ImapError::Imap {
        operation: "IDLE".into(),
        source,
    };
    let timed_out = |operation: &str| ImapError::Timeout {
        operation: operation.into(),
        secs: timeout.as_secs(),
    };
    let mut handle = session.idle();
    tokio::time::timeout(timeout, handle.init())
        .await
        .map_err(|_| timed_out("IDLE"))?
        .map_err(failed)?;
    let cancelled = {
        let (wait, stop) = handle.wait_with_timeout(idle_wait(poll_interval));
        tokio::select! {
            r = wait => { r.map_err(failed)?; false }
            _ = cancel.cancelled() => { drop(stop); true }
        }
    };
    let session = tokio::time::timeout(timeout, handle.done())
        .await
        .map_err(|_| timed_out("DONE (ending IDLE)"))?
        .map_err(failed)?;
    let conn = ImapConnection {
        session,
        capabilities,
        hierarchy,
        timeout,
    };
    if cancelled {
        logout(conn).await;
        return Ok(Woken::Cancelled);
    }
    Ok(Woken::Pass(Box::new(conn)))
}
