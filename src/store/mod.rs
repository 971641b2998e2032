//! The ticket store: SQLite (a file, the default) or PostgreSQL (`[store] url`), through sqlx's
//! `Any` driver so that every statement is written once for both. Schemas in
//! `migrations/sqlite` and `migrations/postgres` (one translated file per migration), run at
//! start-up; `docs/schema.md` is the contract for other applications reading the tables.
//!
//! Durability: SQLite runs WAL with `synchronous = FULL`, so every commit fsyncs the WAL before
//! it returns; PostgreSQL's default `synchronous_commit = on` does the same with its WAL.
//! Ingestion commits a batch of mails in one transaction and only then touches the source
//! mails, so a mail leaves the server only after its ticket is on disk.
//!
//! Dialect-specific code is kept to: opening and tuning a connection (here), the write lock
//! ([`Store::write_tx`]), error classification (`failure`) and full-text search (`find`).

mod activity;
mod alerts;
mod article_text;
mod batch;
#[cfg(test)]
mod batch_equivalence;
mod bound;
mod compact;
mod copy;
mod failure;
mod find;
mod lease;
mod lookup;
mod message_ids;
mod outbox;
mod prepared;
mod processed;
mod quarantine;
mod query;
mod raw;
mod raw_codec;
mod sql;
mod too_large;
mod word_vector;
mod write;
// Benchmarks and tests only (see the `synthetic` feature in Cargo.toml): no generator in the
// daemon.
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor};

use crate::secret::{masked_url, Secret};
pub(crate) use sql::SqlBuilder;

pub use activity::AccountActivity;
pub use alerts::{AlertFacts, AlertMessage, AlertRecord, WaitingReplies, ALERT_ID_PREFIX};
pub use batch::*;
pub use bound::STORE_ANSWER_WITHIN;
pub use compact::{CompactCursor, CompactStep};
pub use copy::CopiedTable;
pub use failure::{StoreErrorKind, StoreHealth, StoreState};
pub use find::{ArticleHit, FindQuery, Sender};
pub use lease::{Fence, LeaseHolder};
pub use outbox::{Channel, OutboxEntry, OutboxRow, OutboxSummary};
pub use prepared::Prepared;
pub use processed::ProcessedState;
pub use quarantine::QuarantinedMail;
pub use query::*;
pub use raw::{AttachmentData, ExportError};
pub use too_large::OversizedMail;

pub use crate::config::StoreLocation;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The variants that name their cause in the message keep it as `cause`, not as a
    // `source()`: a chain printed with `{:#}` would show it twice.
    #[error("cannot create the store folder {path}: {cause}; check [store] path and permissions")]
    CreateDir { path: String, cause: std::io::Error },
    #[error("cannot open the ticket store {path}: {cause}; check [store] path and that the folder is writable (in Docker, mount a volume there)")]
    Open { path: String, cause: sqlx::Error },
    /// Connecting to PostgreSQL failed. The cause is kept as text with the URL's password
    /// masked: a driver message must not carry it into a log.
    #[error("cannot connect to the ticket store {url}: {cause}; check [store] url (or url_file / url_env), that the server runs and lets this user in (password in the URL, PGPASSFILE or ~/.pgpass), and sslmode / sslrootcert")]
    Connect { url: String, cause: String },
    /// Something this backend cannot do (e.g. generating a synthetic store on PostgreSQL).
    #[error("{0}")]
    Unsupported(String),
    /// `store copy` refused or found a mismatch; nothing was committed.
    #[error("store copy: {0}")]
    Copy(String),
    #[error("migrating the ticket store {path} failed: {cause}")]
    Migrate {
        path: String,
        cause: sqlx::migrate::MigrateError,
    },
    #[error("ticket store: {0}")]
    Sql(#[from] sqlx::Error),
    /// An environmental error (see [`StoreErrorKind::is_environmental`]): the pass stops, the
    /// mails stay on the server, no mail is blamed.
    #[error("ticket store: {what} at {path}; mails stay on the server until {until} ({cause})", what = kind.what_and_until().0, until = kind.what_and_until().1)]
    Unavailable {
        kind: StoreErrorKind,
        path: String,
        cause: sqlx::Error,
    },
    /// A statement got no answer in time: the network path to the database server went silent
    /// (a partition drops packets without closing the connection) or the server is stuck.
    #[error("ticket store: no answer from {path} within {secs} s (the network path to the database server is cut, or the server is stuck); the daemon retries by itself", secs = within.as_secs())]
    NoAnswer { path: String, within: Duration },
    /// Handling one mail panicked (a bug): counted as that mail's failure.
    #[error("handling the mail panicked: {0}")]
    Panicked(String),
    /// A write of a lease holder found the account's lease taken over by another instance (or
    /// gone): the transaction rolled back, the mails stay on the server for the new holder.
    #[error("ticket store: the lease of account {account:?} is no longer this instance's; nothing was written, the mails stay on the server for the instance holding it now")]
    LeaseLost { account: String },
    /// A `processed` row whose source key this version cannot read: which mail it records is
    /// unknown, so no mail of the account may move (fail closed).
    #[error("ticket store: account {account:?} has a processed row with source key {key:?}, which this version cannot read (written by a newer mail2ticket, or damaged); no mail of the account is fetched or moved until it is fixed. Run the version that wrote it, or correct or delete the row (docs/operations.md, \"A source key this version cannot read\")")]
    UnreadableSourceKey { account: String, key: String },
    /// A `failures` row whose source key this version cannot read: which mail failed is
    /// unknown, so it cannot be listed, exported or released.
    #[error("ticket store: account {account:?} has a failures row with source key {key:?}, which this version cannot read (written by a newer mail2ticket, or damaged). Run the version that wrote it, or delete the row (DELETE FROM failures WHERE account = '...' AND source_key = '...'): its mail, if it is still on the server, is then tried again")]
    UnreadableFailureKey { account: String, key: String },
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Sql(e) => StoreErrorKind::of(e),
            StoreError::Unavailable { kind, .. } => *kind,
            StoreError::CreateDir { .. } | StoreError::Open { .. } => StoreErrorKind::Io,
            StoreError::Connect { .. } | StoreError::NoAnswer { .. } => StoreErrorKind::Unreachable,
            StoreError::LeaseLost { .. } => StoreErrorKind::LeaseLost,
            StoreError::Migrate { .. }
            | StoreError::Panicked(_)
            | StoreError::Unsupported(_)
            | StoreError::Copy(_)
            | StoreError::UnreadableSourceKey { .. }
            | StoreError::UnreadableFailureKey { .. } => StoreErrorKind::Other,
        }
    }

    /// True when the error is the environment's (disk, file system, lock), not the mail's.
    pub fn is_environmental(&self) -> bool {
        self.kind().is_environmental()
    }
}

/// The database behind a store, for the few places where the dialects differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection of a store's pool talks to (`Any` connections only say it by
    /// name); for code that holds a transaction rather than the [`Store`].
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Backend {
        match conn.backend_name() {
            <sqlx::Postgres as sqlx::Database>::NAME => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The lease statements' own connections (see [`LEASE_POOL_SIZE`]).
    lease_pool: AnyPool,
    backend: Backend,
    /// As shown in messages: the file, or the URL with its password masked.
    path: Arc<str>,
    health: StoreHealth,
    /// Set on the handle of a lease holder (see [`Store::fenced`]): every write transaction
    /// first checks that the lease is still ours.
    fence: Option<Arc<Fence>>,
}

/// The seed of the PostgreSQL advisory lock every write transaction takes (see
/// [`Store::write_tx`]): "m2tstore" in ASCII.
const WRITE_LOCK_KEY: i64 = 0x6d32_7473_746f_7265;

/// Connections per store: enough for the pollers' batches, the reply sender and reads.
const POOL_SIZE: u32 = 4;

/// Connections for lease statements alone, opened on first use (none with one instance). In
/// the main pool a renewal would queue behind ingestion (every connection waiting for the
/// write lock in a long backlog) and could miss its deadline, giving the account up for
/// nothing. Two: one left when the other's statement went unanswered and its connection is
/// still stuck (see [`StoreError::NoAnswer`]).
const LEASE_POOL_SIZE: u32 = 2;

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// sqlx logs every statement at DEBUG and slow ones at WARN by default; a slow query is a tuning
/// hint for the daemon's debug log, not a warning for whoever runs a command, and the
/// statements themselves are trace detail.
fn quiet(options: AnyConnectOptions) -> AnyConnectOptions {
    options
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

/// The SQLite pool's options (the main pool and the leases' alike).
fn sqlite_pool(size: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL; FULL: a commit is fsynced before it returns, and disposal of source
                // mails relies on it. The busy timeout lets writers queue for the lock.
                // The page cache: 8 MiB instead of SQLite's 2 MiB default. A batch of 500
                // mails dirties more than 2 MiB (new rows, seven indexes, the full-text index),
                // so the default spilled pages into the WAL mid-transaction and read them back;
                // 8 MiB and temp_store together took a 10,000-mail backlog from 4.0-4.4 s to
                // 3.6-3.9 s (BENCHMARKS.md). It
                // is also the ceiling for one huge mail's dirty pages, which keeps the 26.5 MB
                // mail under its memory target (16 MiB: 150 MB peak RSS, 8 MiB: 142 MB).
                // temp_store: statement journals (every multi-row INSERT with triggers opens
                // one) stay in memory instead of spilling to a temporary file.
                // wal_autocheckpoint: the WAL is copied into the database every 10,000 pages
                // (40 MiB, a few batches) instead of every 1,000 (about each batch), so an index
                // page that several batches change is copied once: 10,000 mails wrote 213 MB
                // instead of 252 MB, and into a store of 100,000 articles 309 MB instead of
                // 364 MB. The price is a -wal file of up to about 40 MiB beside the store.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000; \
                     PRAGMA cache_size = -8192; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 10000;",
                )
                .await?;
                Ok(())
            })
        })
        .after_release(|conn, _| {
            Box::pin(async move {
                // The ping flushes a queued rollback first. A connection still inside a
                // transaction after that (SQLite rolled back by itself on a full disk, so
                // sqlx's ROLLBACK failed and its depth counter stayed up) is closed: reused,
                // every later BEGIN on it would fail.
                conn.ping().await?;
                if conn.is_in_transaction() {
                    tracing::warn!(
                        "discarding a store connection left inside a failed transaction"
                    );
                    return Ok(false);
                }
                Ok(true)
            })
        })
}

/// What every PostgreSQL session of the store asks of the server, so that a client it no longer
/// hears from (frozen, or cut off by a silent network path) does not keep its locks, above all
/// the store's write lock, until the server's kernel gives the connection up (hours for an idle
/// one):
///
/// - `idle_in_transaction_session_timeout`: a transaction left open ends after 10 s (nothing of
///   ours idles that long inside one), so the other instances, and the account's next lease
///   holder, can write again;
/// - `statement_timeout`: a statement ends after `bound::STATEMENT_TIMEOUT` (10 s), by which
///   time the daemon has given up waiting for it anyway (maintenance is exempt, see
///   [`Store::maintenance_tx`] and [`Store::migrated`]);
/// - TCP keepalive on the server's socket (first probe after 30 s of silence, then every 10 s,
///   3 unanswered probes: about a minute), so an idle connection of a vanished client is
///   closed;
/// - `tcp_user_timeout` (60 s): the same for a connection with data the client never
///   acknowledges (results sent to a client that is gone), which keepalive does not cover.
///   PostgreSQL 12 or newer (the store needs 14 anyway, see [`OLDEST_POSTGRES`]).
///
/// They are `SET`s rather than the URL's `options`, so a URL written for libpq works as it is.
/// Over a Unix socket PostgreSQL ignores the TCP settings (they read 0), as it should.
/// The client's own socket cannot be tuned (see `bound`).
fn session_settings() -> String {
    format!(
        "SET idle_in_transaction_session_timeout = '10s'; SET statement_timeout = {}; \
         SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; \
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = 60000",
        bound::STATEMENT_TIMEOUT.as_millis()
    )
}

/// The oldest PostgreSQL the migrations run on (`server_version_num`): 0020 drops a generated
/// column's expression (13), 0021 sets a column's compression (14).
const OLDEST_POSTGRES: u32 = 140_000;

/// Refuses a server older than [`OLDEST_POSTGRES`] before any migration runs, in words rather
/// than as a migration's syntax error.
async fn require_postgres_version(pool: &AnyPool, shown: &str) -> Result<(), StoreError> {
    let (number, version): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version_num'), version()")
            .fetch_one(pool)
            .await?;
    if postgres_too_old(&number) {
        return Err(StoreError::Unsupported(format!(
            "the ticket store {shown} runs {version}; mail2ticket needs PostgreSQL 14 or newer. \
             Upgrade the server (pg_upgrade or a dump and restore), or keep the store in SQLite"
        )));
    }
    Ok(())
}

fn postgres_too_old(server_version_num: &str) -> bool {
    server_version_num
        .trim()
        .parse::<u32>()
        .is_ok_and(|n| n < OLDEST_POSTGRES)
}

/// The PostgreSQL pool's options (the main pool and the leases' alike).
fn postgres_pool(size: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        // A restarted server leaves dead connections in the pool: each is tested before use
        // (the default), and a pass that still meets one stops as environmental.
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(session_settings().as_str()).await?;
                Ok(())
            })
        })
        // A connection comes back with a statement still on the wire when its call was given up
        // (see `bound`); sqlx's own check before reuse waits for it without a bound, which on
        // a silent path would hold the connection, and a place in the pool, for as long as the
        // kernel keeps it. One that does not answer in time is closed instead.
        .after_release(|conn, _| {
            Box::pin(async move {
                match tokio::time::timeout(bound::RELEASE_ANSWER_WITHIN, conn.ping()).await {
                    Ok(answer) => answer.map(|()| true),
                    Err(_) => {
                        tracing::debug!(
                            "closing a store connection that did not answer within {} s; \
                             a fresh one is opened when needed",
                            bound::RELEASE_ANSWER_WITHIN.as_secs()
                        );
                        Ok(false)
                    }
                }
            })
        })
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens the store at `location` (see [`Store::open`] and [`Store::open_url`]).
    pub async fn open_at(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Store::open(path).await,
            StoreLocation::Postgres(url) => Store::open_url(url).await,
        }
    }

    /// Opens (creating if needed) the SQLite file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        install_drivers();
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir {
                path: dir.display().to_string(),
                cause,
            })?;
        }
        // The Any driver takes a URL; SQLite's own options write it (percent-encoding the path).
        let url = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .to_url_lossy();
        let open_error = |cause| StoreError::Open {
            path: shown.clone(),
            cause,
        };
        let options = quiet(AnyConnectOptions::from_url(&url).map_err(open_error)?);
        let pool = sqlite_pool(POOL_SIZE)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let lease_pool = sqlite_pool(LEASE_POOL_SIZE).connect_lazy_with(options);
        Store::migrated(pool, lease_pool, Backend::Sqlite, shown).await
    }

    /// Connects to PostgreSQL and runs pending migrations. TLS, the password file and the like
    /// are the URL's parameters (`sslmode=verify-full&sslrootcert=...`), as for libpq; without a
    /// password in the URL, `PGPASSFILE` (or `~/.pgpass`) is read.
    pub async fn open_url(url: &Secret) -> Result<Store, StoreError> {
        install_drivers();
        let shown = masked_url(url.expose());
        let connect_error = |e: sqlx::Error| StoreError::Connect {
            url: shown.clone(),
            cause: mask_secret(&e.to_string(), url),
        };
        let options = AnyConnectOptions::from_url(
            &url::Url::parse(url.expose())
                .map_err(|e| connect_error(sqlx::Error::Configuration(e.into())))?,
        )
        .map_err(connect_error)?;
        let options = quiet(options);
        let pool = postgres_pool(POOL_SIZE)
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let lease_pool = postgres_pool(LEASE_POOL_SIZE).connect_lazy_with(options);
        Store::migrated(pool, lease_pool, Backend::Postgres, shown).await
    }

    /// A private in-memory store (one connection), for fuzzing and unit tests.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        install_drivers();
        let shown = ":memory:".to_string();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .map_err(|cause| StoreError::Open {
                path: shown.clone(),
                cause,
            })?;
        // One connection is the whole database: the leases use it too.
        Store::migrated(pool.clone(), pool, Backend::Sqlite, shown).await
    }

    /// Brings a freshly opened pool's schema up to date: the one place migrations run. Each
    /// backend has its own directory; the files are numbered alike, one translation per step.
    async fn migrated(
        pool: AnyPool,
        lease_pool: AnyPool,
        backend: Backend,
        shown: String,
    ) -> Result<Store, StoreError> {
        if backend == Backend::Postgres {
            require_postgres_version(&pool, &shown).await?;
        }
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        // sqlx serialises migrations on PostgreSQL (an advisory lock) but not on SQLite: two
        // processes opening a new store file at the same moment (the daemon and a command) can
        // both start step 1, and the later one fails with "table ... already exists" once the
        // first commits (each step is its own transaction, so nothing half-done stays). Running
        // the migrator again finds those steps applied; a real failure fails every time.
        let mut retries = 0;
        loop {
            let run = match backend {
                Backend::Sqlite => migrator.run(&pool).await,
                Backend::Postgres => migrate_unbounded(&migrator, &pool).await,
            };
            match run {
                Ok(()) => break,
                Err(_) if backend == Backend::Sqlite && retries < 3 => {
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 * retries)).await;
                }
                Err(cause) => {
                    return Err(StoreError::Migrate {
                        path: shown.clone(),
                        cause,
                    })
                }
            }
        }
        let store = Store {
            pool,
            lease_pool,
            backend,
            path: shown.into(),
            health: StoreHealth::default(),
            fence: None,
        };
        // Part of bringing the schema up to date: every lookup by Message-ID relies on it.
        message_ids::fill(&store).await.map_err(|e| store.fail(e))?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is, as shown in messages (a PostgreSQL password masked).
    pub fn shown(&self) -> &str {
        &self.path
    }

    /// The store's state for /healthz.
    pub fn health(&self) -> StoreState {
        self.health.state()
    }

    /// Every store error on its way out: counted by kind, an environmental one named with the
    /// store's path and remembered for /healthz.
    pub(crate) fn fail(&self, e: impl Into<StoreError>) -> StoreError {
        let e = e.into();
        let kind = match (&e, self.backend) {
            // sqlx reports a server that refuses connections until the acquire timeout as a
            // pool timeout (it keeps retrying the connect); on SQLite it means every connection
            // stayed busy.
            (StoreError::Sql(sqlx::Error::PoolTimedOut), Backend::Postgres) => {
                StoreErrorKind::Unreachable
            }
            _ => e.kind(),
        };
        crate::metrics::store_error(kind.label());
        if !kind.is_environmental() || kind == StoreErrorKind::LeaseLost {
            return e;
        }
        let e = match e {
            StoreError::Sql(cause) => StoreError::Unavailable {
                kind,
                path: self.path.to_string(),
                cause,
            },
            other => other,
        };
        self.health.failed(kind, &e.to_string());
        e
    }

    /// Closes every connection. On SQLite the store is left whole in its one file first.
    ///
    /// Commits reach `tickets.db-wal` first and the database file at the next checkpoint.
    /// SQLite checkpoints when the last connection closes, but only if no other connection of
    /// any process still holds the file open at that moment. A pool's connections can still be
    /// on their way back from their last use when it closes; then none of them was last (four
    /// closes in six of `a_closed_store_is_whole_in_its_one_file` without this), and the newest
    /// commits stayed in the -wal file. Safe (the next open replays them), but a copy of
    /// `tickets.db` alone, the obvious backup of a stopped daemon, missed them. So one
    /// connection copies the WAL into the database and empties it before the pool closes; with
    /// a busy timeout of zero, because a second instance reading the store must not hold up a
    /// stop (SIGTERM).
    ///
    /// A command (`tickets list`) closing beside a running daemon does the checkpoint the
    /// daemon would have done later: no more than the -wal file holds (up to about 40 MiB).
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            self.checkpoint_for_close().await;
        }
        self.lease_pool.close().await;
        self.pool.close().await;
    }

    async fn checkpoint_for_close(&self) {
        // A connection just released may still be on its way back to the pool (its release
        // check runs first); one still held after a second belongs to work being dropped.
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(1), self.pool.acquire()).await
        else {
            return;
        };
        // Taken out of the pool: its busy timeout of zero must not serve anything else.
        let mut conn = conn.detach();
        let checkpoint = async {
            conn.execute("PRAGMA busy_timeout = 0").await?;
            sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await
        };
        match checkpoint.await {
            Ok((0, _, _)) => {}
            Ok(_) => tracing::debug!(
                "another process is reading the store: the newest commits stay in its -wal \
                 file until the last one closes it"
            ),
            Err(e) => tracing::debug!("checkpoint before closing the store: {e}"),
        }
        if let Err(e) = conn.close().await {
            tracing::debug!("closing the store's checkpoint connection: {e}");
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The same store for the holder of an account's lease: each of its write transactions
    /// checks, inside the transaction, that `fence` still holds the lease, and rolls back with
    /// [`StoreError::LeaseLost`] if not.
    pub fn fenced(&self, fence: Fence) -> Store {
        Store {
            fence: Some(Arc::new(fence)),
            ..self.clone()
        }
    }

    /// A write transaction holds the store's one write lock from its first statement, so the
    /// reads it makes before writing (already processed? message stored by another account?
    /// the next row ids) stay true until it commits, whichever process writes beside it.
    ///
    /// SQLite: BEGIN IMMEDIATE. A deferred one that reads first and writes later fails at once
    /// with "database is locked" when another connection committed in between (the busy timeout
    /// does not apply to that upgrade), which under load would count as a storage failure of an
    /// innocent mail.
    ///
    /// PostgreSQL: a transaction-level advisory lock, released by COMMIT or ROLLBACK (or the
    /// server when the connection dies). Readers are never blocked; each later statement of the
    /// transaction (READ COMMITTED) sees everything committed before the lock was granted.
    ///
    /// On a fenced store (an account's lease holder), the lease is checked next, under the
    /// write lock: no later write of the new holder can come before this transaction's commit.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        self.write_tx_with(Statements::Bounded).await
    }

    /// A write transaction for maintenance that runs beside the daemon in short batches, or in
    /// one long transaction (the Message-ID fill, `store compact`, `store copy`): as
    /// [`Store::write_tx`], but on PostgreSQL its statements are not cut by the sessions'
    /// `statement_timeout`. A copy's commit or read-back of a store of years, or a wait for the
    /// write lock behind a daemon's batch, may take longer than a daemon's statement should,
    /// and cutting it would only make the command fail and start over. `SET LOCAL` ends with
    /// the transaction, so the connection goes back to the pool with the daemon's bound.
    pub(crate) async fn maintenance_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        self.write_tx_with(Statements::Unbounded).await
    }

    async fn write_tx_with(
        &self,
        statements: Statements,
    ) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        let mut tx = self.write_lock(statements).await?;
        if let Some(fence) = &self.fence {
            lease::check_fence(&mut tx, fence).await?;
        }
        Ok(tx)
    }

    async fn write_lock(
        &self,
        statements: Statements,
    ) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // Before the lock: waiting for it is a statement too.
                if statements == Statements::Unbounded {
                    (&mut *tx)
                        .execute("SET LOCAL statement_timeout = 0")
                        .await?;
                }
                // Keyed by the schema too: two stores in one database (say, a test and a
                // production schema) do not wait for each other.
                // And no parallel plans inside a write transaction (`SET LOCAL`, in the same
                // round trip): a batch's lookup of 500 keys in a table of about 100,000 rows
                // was planned as a parallel sequential scan, cheaper on paper than 500 index
                // probes and 16-25 ms per batch in fact, where the index takes 1-2 ms. A store
                // of 100,000 articles took a 10,000-mail backlog 0.7 s longer than one of
                // 1,000,000 (BENCHMARKS.md, "Growth"). The searches, outside write
                // transactions, keep parallel plans.
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema(), $1)), \
                     set_config('max_parallel_workers_per_gather', '0', true)",
                )
                .bind(WRITE_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
                Ok(tx)
            }
        }
    }
}

/// Whether a write transaction's statements keep the sessions' `statement_timeout`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Statements {
    Bounded,
    Unbounded,
}

/// Runs the PostgreSQL migrations on a connection of their own without `statement_timeout`: a
/// migration rewrites tables and builds indexes over every article of a store of years
/// (0010 took 2.5 minutes per 100,000 articles, BENCHMARKS.md), and sqlx waits for another
/// process's migration on its advisory lock; cut after the daemon's 10 s, an upgrade could never
/// finish. (Each migration is a transaction sqlx opens itself, so there is no room for a
/// `SET LOCAL` as in [`Store::maintenance_tx`].) A pool of one connection, closed afterwards,
/// rather than one connection taken from `pool`: no daemon statement ever runs on it
/// unbounded, and sqlx's `Migrator::run` on a single connection makes the callers' futures
/// fail to be `Send` ("implementation of `Acquire` is not general enough").
async fn migrate_unbounded(
    migrator: &sqlx::migrate::Migrator,
    pool: &AnyPool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let options = (*pool.connect_options()).clone();
    let unbounded = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET statement_timeout = 0").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    let run = migrator.run(&unbounded).await;
    unbounded.close().await;
    run
}

/// `text` with every occurrence of the secret URL's password replaced by `***`.
fn mask_secret(text: &str, url: &Secret) -> String {
    let password = url::Url::parse(url.expose())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .filter(|p| !p.is_empty());
    let text = text.replace(url.expose(), &masked_url(url.expose()));
    match password {
        Some(p) => text.replace(&p, "***"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_older_than_14_is_refused_before_migrating() {
        assert!(postgres_too_old("130015"));
        assert!(postgres_too_old("120022"));
        assert!(!postgres_too_old("140000"));
        assert!(!postgres_too_old("150018"));
        assert!(!postgres_too_old("180001"));
        // A number that does not parse is left to the migrations to judge.
        assert!(!postgres_too_old("unknown"));
    }

    #[tokio::test]
    async fn two_openers_of_a_new_store_file_at_once_both_get_it_migrated() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tickets.db");
            let (a, b) = tokio::join!(Store::open(&path), Store::open(&path));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.count_tickets().await.unwrap(), 0);
            assert_eq!(b.count_tickets().await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn a_closed_store_is_whole_in_its_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.db");
        let store = Store::open(&path).await.unwrap();
        let made = store
            .generate(&crate::store::synthetic::Synthetic::new(2_000))
            .await
            .unwrap();
        // Every connection of the pool open at once, as a busy daemon leaves them.
        let counts = futures::future::join_all((0..POOL_SIZE).map(|_| store.count_tickets())).await;
        assert!(counts
            .iter()
            .all(|c| c.as_ref().unwrap() == &(made.tickets as i64)));
        store.close().await;

        let wal = std::fs::metadata(dir.path().join("tickets.db-wal")).map_or(0, |m| m.len());
        assert_eq!(
            wal, 0,
            "the WAL is checkpointed into the database and emptied"
        );
        let copy = dir.path().join("copy").join("tickets.db");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&path, &copy).unwrap();
        let copied = Store::open(&copy).await.unwrap();
        assert_eq!(copied.count_tickets().await.unwrap(), made.tickets as i64);
        copied.close().await;
    }

    #[test]
    fn a_url_in_messages_never_shows_its_password() {
        let url = Secret::new("postgres://m2t:s3cret@db/t");
        assert_eq!(
            mask_secret(
                "password s3cret refused for postgres://m2t:s3cret@db/t",
                &url
            ),
            "password *** refused for postgres://m2t:***@db/t"
        );
    }
}
