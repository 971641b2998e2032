//! The ticket store: SQLite through sqlx, schema in `migrations/`, run at start-up.
//!
//! Durability: WAL with `synchronous = FULL`, so every commit fsyncs the WAL before it returns.
//! Ingestion commits a batch of mails in one transaction and only then touches the source
//! mails, so a mail leaves the server only after its ticket is on disk.

mod compact;
mod failure;
mod find;
mod ingest;
mod outbox;
mod query;
mod raw;
mod raw_codec;
pub mod synthetic;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};

pub use compact::{CompactCursor, CompactStep};
pub use failure::{StoreErrorKind, StoreHealth, StoreState};
pub use find::{ArticleHit, FindQuery, Sender};
pub use ingest::*;
pub use outbox::{OutboxEntry, OutboxRow, OutboxSummary};
pub use query::*;
pub use raw::{AttachmentData, ExportError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store folder {path}: {source}; check [store] path and permissions")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the ticket store {path}: {source}; check [store] path and that the folder is writable (in Docker, mount a volume there)")]
    Open { path: String, source: sqlx::Error },
    #[error("migrating the ticket store {path} failed: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("ticket store: {0}")]
    Sql(#[from] sqlx::Error),
    /// An environmental error (see [`StoreErrorKind::is_environmental`]): the pass stops, the
    /// mails stay on the server, no mail is blamed.
    #[error("ticket store: {what} at {path}; mails stay on the server until {until} ({source})", what = kind.what_and_until().0, until = kind.what_and_until().1)]
    Unavailable {
        kind: StoreErrorKind,
        path: String,
        source: sqlx::Error,
    },
    /// Handling one mail panicked (a bug): counted as that mail's failure.
    #[error("handling the mail panicked: {0}")]
    Panicked(String),
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Sql(e) => StoreErrorKind::of(e),
            StoreError::Unavailable { kind, .. } => *kind,
            StoreError::CreateDir { .. } | StoreError::Open { .. } => StoreErrorKind::Io,
            StoreError::Migrate { .. } | StoreError::Panicked(_) => StoreErrorKind::Other,
        }
    }

    /// True when the error is the environment's (disk, file system, lock), not the mail's.
    pub fn is_environmental(&self) -> bool {
        self.kind().is_environmental()
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// As shown in messages.
    path: Arc<str>,
    health: StoreHealth,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating if needed) the SQLite file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is fsynced before it returns; disposal of source mails relies on it.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // sqlx logs every statement at DEBUG and slow ones at WARN by default; a slow query
            // is a tuning hint for the daemon's debug log, not a warning for whoever runs a
            // command, and the statements themselves are trace detail.
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|conn, _| {
                Box::pin(async move {
                    // The ping flushes a queued rollback first. A connection still inside a
                    // transaction after that (SQLite rolled back by itself on a full disk, so
                    // sqlx's ROLLBACK failed and its depth counter stayed up) is closed:
                    // reused, every later BEGIN on it would fail.
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
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source,
            })?;
        Store::migrated(pool, shown).await
    }

    /// A private in-memory store (one connection), for fuzzing and unit tests.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        let shown = ":memory:".to_string();
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source,
            })?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source,
            })?;
        Store::migrated(pool, shown).await
    }

    /// Brings a freshly opened pool's schema up to date: the one place migrations run.
    async fn migrated(pool: SqlitePool, shown: String) -> Result<Store, StoreError> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: shown.clone(),
                source,
            })?;
        Ok(Store {
            pool,
            path: shown.into(),
            health: StoreHealth::default(),
        })
    }

    /// The store's state for /healthz.
    pub fn health(&self) -> StoreState {
        self.health.state()
    }

    /// Every store error on its way out: counted by kind, an environmental one named with the
    /// store's path and remembered for /healthz.
    pub(crate) fn fail(&self, e: impl Into<StoreError>) -> StoreError {
        let e = e.into();
        let kind = e.kind();
        crate::metrics::store_error(kind.label());
        if !kind.is_environmental() {
            return e;
        }
        let e = match e {
            StoreError::Sql(source) => StoreError::Unavailable {
                kind,
                path: self.path.to_string(),
                source,
            },
            other => other,
        };
        self.health.failed(kind, &e.to_string());
        e
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Every write transaction starts IMMEDIATE: a deferred one that reads first and writes later
    /// fails at once with "database is locked" when another connection committed in between
    /// (the busy timeout does not apply to that upgrade), which under load would count as a
    /// storage failure of an innocent mail.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}
