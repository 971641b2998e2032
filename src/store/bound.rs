//! How long the daemon waits for a database server's answer.
//!
//! A network path to PostgreSQL that goes silent (a firewall forgot the connection's state, a
//! cable was pulled: packets dropped, nothing closed) answers no statement, and the kernel gives
//! such a connection up only after many minutes (about 15 with Linux's default retransmissions).
//! Without a bound the call waiting for it, and with it the account's pass or the reply sender,
//! would hang that long while /healthz still showed the store as fine. Both ends are therefore
//! bounded:
//!
//! - the daemon's own end: every store call of the pollers and the reply sender gives up after
//!   [`STORE_ANSWER_WITHIN`] with [`StoreError::NoAnswer`] (environmental: the pass stops, its
//!   mails stay on the server, no mail is blamed, /healthz says `unreachable`), and a connection
//!   whose call was given up is closed, not reused (see `postgres_pool` in `store`);
//! - the server's end (set on every connection, see `postgres_pool`): `statement_timeout`,
//!   TCP keepalive and `tcp_user_timeout`, so the server ends the work and the connection of a
//!   client it no longer hears from, and with them the locks it holds.
//!
//! The socket of the daemon's end cannot be tuned: sqlx 0.8 opens it itself and sets nothing on
//! it but TCP_NODELAY (`sqlx-core`'s `net::socket::connect_tcp`; `PgConnectOptions` has no
//! keepalive or user timeout, and its `options` are server settings, the same as the `SET`s in
//! `postgres_pool`). So the bound on the daemon's end is the timer here, not the kernel's.
//!
//! SQLite is not bounded: a local file has no network path, and its busy timeout already
//! bounds the wait for another writer.

use std::future::Future;
use std::time::Duration;

use super::{Backend, Store, StoreError};

/// How long a store call of the pollers or the reply sender waits for the database server.
///
/// Below the lease TTL (15 s, `crate::lease`): with several instances, a holder whose path is
/// silent gives its accounts up at its local deadline anyway (10 s after the last renewal it
/// sent), but when only the call's own connection is stuck the renewals still get through, and
/// the account would stay with a holder that does nothing for as long as the call hangs. Below
/// the TTL, a stuck call never costs an account more than a dead holder would (a takeover after
/// 15-18 s). With one instance there is no lease, and this is the only bound.
///
/// Long enough for the longest legitimate call, a batch commit of 500 mails or 32 MB
/// (`source::pass`): about 1.3 s on PostgreSQL at the measured 380 mails/s (BENCHMARKS.md, "The
/// backlog on PostgreSQL"), up to about 4 s on a busy machine or a slow link (32 MB at
/// 100 Mbit/s alone take 2.7 s); and before it, while other instances store their own batches,
/// the wait for the store's write lock: two more such batches fit. A call that needed longer
/// fails as `NoAnswer` and its mails are stored in the next pass; nothing is lost, only time.
///
/// A little above [`STATEMENT_TIMEOUT`]: a statement that is only slow (waiting for the write
/// lock behind a stuck writer) is ended by the server, which answers with an error, and its
/// connection stays usable; this bound is for when no answer comes at all.
pub const STORE_ANSWER_WITHIN: Duration = Duration::from_secs(12);

/// The server's `statement_timeout` for the daemon's statements (see [`STORE_ANSWER_WITHIN`]):
/// the server ends a statement the daemon would no longer wait for, instead of running it, and
/// holding its locks, for a client that may be gone. Maintenance (migrations, the Message-ID
/// fill, `store compact`, `store copy`) is exempt: see `Store::maintenance_tx`.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection given back to the pool may take to answer the pool's check. A call
/// given up by [`STORE_ANSWER_WITHIN`] drops its connection with the statement still on the
/// wire; sqlx then pings it before reuse, without a bound of its own, so on a silent path the
/// ping would hold one of the pool's connections until the kernel gives up. A connection
/// answering a ping within 3 s is kept (the statement that was given up has ended by then, or
/// the server ended it); any other is closed and the pool opens a fresh one when needed.
pub(super) const RELEASE_ANSWER_WITHIN: Duration = Duration::from_secs(3);

impl Store {
    /// `call`'s output, or on a database server [`StoreError::NoAnswer`] when it did not end
    /// within `within` (counted and shown on /healthz, see [`Store::fail`]). Dropping `call`
    /// drops the connection it holds, which is closed rather than reused (see
    /// [`RELEASE_ANSWER_WITHIN`]); a transaction in it rolls back.
    pub(super) async fn answer_within<F: Future>(
        &self,
        within: Duration,
        call: F,
    ) -> Result<F::Output, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(call.await);
        }
        tokio::time::timeout(within, call).await.map_err(|_| {
            self.fail(StoreError::NoAnswer {
                path: self.path.to_string(),
                within,
            })
        })
    }

    /// A store call of the daemon's loops: `call`'s result within [`STORE_ANSWER_WITHIN`],
    /// every error counted and, when environmental, shown on /healthz.
    pub(super) async fn bounded<T, E: Into<StoreError>>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        let answer = self
            .answer_within(STORE_ANSWER_WITHIN, call)
            .await?
            .map_err(|e| self.fail(e))?;
        self.health.answered();
        Ok(answer)
    }
}
