//! The ticket store: SQLite through sqlx, schema in `migrations/`, run at start-up.
//!
//! Durability: WAL with `synchronous = FULL`, so every commit fsyncs the WAL before it returns.
//! Ingestion commits a batch of mails in one transaction and only then touches the source
//! mails, so a mail leaves the server only after its ticket is on disk.

mod find;
mod ingest;
mod outbox;
mod query;
mod raw;
pub mod synthetic;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use sqlx::SqlitePool;

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
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
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
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: shown,
                source,
            })?;
        Ok(Store { pool })
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
