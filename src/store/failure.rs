//! What kind of trouble a store error is. Environmental errors (a full disk, an I/O error, a
//! read-only file system, a lock held past the busy timeout, a database server that went away)
//! say nothing about the mail being stored: they stop the pass and the mails stay on the server, but never count toward a mail's
//! quarantine. Anything else may be the mail's own fault and is counted per mail.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorKind {
    DiskFull,
    Io,
    ReadOnly,
    Locked,
    /// The database server is gone: connection lost or refused, shut down, restarting.
    Unreachable,
    /// The account's lease is another instance's now (several instances on one store): not
    /// the mail's fault, and not the store's either.
    LeaseLost,
    /// Not environmental: a constraint, a malformed value, a bug. Counted per mail.
    Other,
}

impl StoreErrorKind {
    /// The label of the `store_errors` metric and of /healthz.
    pub fn label(self) -> &'static str {
        match self {
            StoreErrorKind::DiskFull => "disk_full",
            StoreErrorKind::Io => "io",
            StoreErrorKind::ReadOnly => "read_only",
            StoreErrorKind::Locked => "locked",
            StoreErrorKind::Unreachable => "unreachable",
            StoreErrorKind::LeaseLost => "lease_lost",
            StoreErrorKind::Other => "other",
        }
    }

    pub fn is_environmental(self) -> bool {
        self != StoreErrorKind::Other
    }

    /// "disk full at PATH; mails stay on the server until there is space", without the path.
    pub(crate) fn what_and_until(self) -> (&'static str, &'static str) {
        match self {
            StoreErrorKind::DiskFull => ("disk full", "there is space"),
            StoreErrorKind::Io => ("I/O error", "the disk works again"),
            StoreErrorKind::ReadOnly => ("read-only file system", "it is writable again"),
            StoreErrorKind::Locked => (
                "database locked past the busy timeout (another process holds it)",
                "the lock is released",
            ),
            StoreErrorKind::Unreachable => (
                "database server unreachable",
                "it answers again (the daemon retries by itself)",
            ),
            StoreErrorKind::LeaseLost => (
                "the account's lease was lost",
                "this instance holds the lease again",
            ),
            StoreErrorKind::Other => ("error", "it is fixed"),
        }
    }

    /// Sorts an sqlx error by SQLite's primary result code or PostgreSQL's SQLSTATE.
    pub fn of(e: &sqlx::Error) -> StoreErrorKind {
        match e {
            sqlx::Error::Database(db) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    return StoreErrorKind::of_sqlstate(pg.code());
                }
                let code = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .unwrap_or_default();
                // SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_BUSY,
                // SQLITE_LOCKED (extended codes keep the primary one in the low byte).
                match code & 0xff {
                    13 => StoreErrorKind::DiskFull,
                    10 | 14 => StoreErrorKind::Io,
                    8 => StoreErrorKind::ReadOnly,
                    5 | 6 => StoreErrorKind::Locked,
                    _ => StoreErrorKind::Other,
                }
            }
            // Sockets: only a server store has them (SQLite's I/O errors are result codes).
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => StoreErrorKind::Unreachable,
            sqlx::Error::WorkerCrashed => StoreErrorKind::Io,
            sqlx::Error::PoolTimedOut => StoreErrorKind::Locked,
            _ => StoreErrorKind::Other,
        }
    }

    /// PostgreSQL's error classes (appendix A of its manual) that are the server's or the
    /// network's trouble, not the statement's.
    fn of_sqlstate(code: &str) -> StoreErrorKind {
        match code {
            "53100" => StoreErrorKind::DiskFull,
            // read_only_sql_transaction: a standby, or default_transaction_read_only.
            "25006" => StoreErrorKind::ReadOnly,
            // serialization failure, deadlock, lock not available, statement timeout.
            "40001" | "40P01" | "55P03" | "57014" => StoreErrorKind::Locked,
            // admin / crash shutdown, cannot connect now (starting up, shutting down), too many
            // connections.
            "57P01" | "57P02" | "57P03" | "53300" => StoreErrorKind::Unreachable,
            c if c.starts_with("08") => StoreErrorKind::Unreachable,
            // insufficient resources, system error (I/O), internal error.
            c if c.starts_with("53") || c.starts_with("58") || c.starts_with("XX") => {
                StoreErrorKind::Io
            }
            _ => StoreErrorKind::Other,
        }
    }
}

/// The store's state for /healthz: the last environmental error until a write succeeds again
/// (or, for an unreachable server, until any statement is answered).
#[derive(Debug, Clone, Default)]
pub struct StoreHealth(Arc<Mutex<Option<Problem>>>);

#[derive(Debug, Clone)]
struct Problem {
    kind: StoreErrorKind,
    error: String,
    since: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreState {
    /// `ok`, or the kind of the environmental error (`disk_full`, `io`, `read_only`, `locked`,
    /// `unreachable`).
    pub state: &'static str,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl StoreHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Problem>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn failed(&self, kind: StoreErrorKind, error: &str) {
        let mut p = self.lock();
        let since = p
            .as_ref()
            .filter(|p| p.kind == kind)
            .map_or_else(Utc::now, |p| p.since);
        *p = Some(Problem {
            kind,
            error: error.to_string(),
            since,
        });
    }

    pub(crate) fn worked(&self) {
        if let Some(p) = self.lock().take() {
            tracing::info!(was = p.kind.label(), "ticket store writable again");
        }
    }

    /// A statement was answered: a server that was unreachable is reachable again. Without
    /// this, an instance whose accounts have no new mail would report the store unreachable
    /// until the next mail is stored. Other trouble (a full disk) is over only when a write
    /// succeeds ([`StoreHealth::worked`]).
    pub(crate) fn answered(&self) {
        let mut p = self.lock();
        if p.as_ref()
            .is_some_and(|p| p.kind == StoreErrorKind::Unreachable)
        {
            *p = None;
            tracing::info!(was = "unreachable", "ticket store answers again");
        }
    }

    pub fn state(&self) -> StoreState {
        match &*self.lock() {
            None => StoreState {
                state: "ok",
                healthy: true,
                error: None,
                since: None,
            },
            Some(p) => StoreState {
                state: p.kind.label(),
                healthy: false,
                error: Some(p.error.clone()),
                since: Some(p.since.to_rfc3339_opts(SecondsFormat::Secs, true)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_server_going_away_is_environmental_and_a_constraint_is_not() {
        assert_eq!(
            StoreErrorKind::of_sqlstate("57P01"),
            StoreErrorKind::Unreachable
        );
        assert_eq!(
            StoreErrorKind::of_sqlstate("08006"),
            StoreErrorKind::Unreachable
        );
        assert_eq!(
            StoreErrorKind::of_sqlstate("53100"),
            StoreErrorKind::DiskFull
        );
        assert_eq!(StoreErrorKind::of_sqlstate("23505"), StoreErrorKind::Other);
        assert_eq!(StoreErrorKind::of_sqlstate("22P02"), StoreErrorKind::Other);
    }
}
