//! The store: the only module that speaks SQL. Tasks, sessions, transcripts and pending changes
//! live here so a killed server loses nothing that was committed.
//!
//! The pool sits behind [`Db`], an enum of typed pools (SQLite embedded by default, PostgreSQL
//! for several nodes on one queue). SQL is written once with `$n` placeholders (SQLite accepts
//! them too) and `on_pool!` runs the same body against whichever pool is open; only claiming
//! and wake-ups differ per backend.

mod changes;
mod conversation;
mod nodes;
mod probe_cache;
mod questions;
mod rows;
mod sessions;
mod tasks;
mod transcript;
mod wakeups;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::{ChangeStatus, TaskState};
pub use changes::{SiblingChange, UnappliedChange};
pub use rows::StoredEvent;
pub use tasks::{Claimed, NewTaskRow, NewWorktree, Outcome, StatRow, TaskFilter};
pub use wakeups::Wakeup;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// NOTIFY channels: queue changes (insert, finish) and cancel requests (payload: task id).
const CHANNEL_TASKS: &str = "boocoder_tasks";
const CHANNEL_CANCEL: &str = "boocoder_cancel";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
enum Db {
    /// SQLite allows one writer at a time even in WAL mode: writes go through a one-connection
    /// pool (they queue in-process instead of spinning on SQLITE_BUSY), reads through several.
    Sqlite {
        read: sqlx::SqlitePool,
        write: sqlx::SqlitePool,
    },
    Postgres {
        pool: sqlx::PgPool,
        url: String,
    },
}

/// Runs `$body` with `$p` bound to a pool for reading, whatever the backend.
macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.db {
            Db::Sqlite { read: $p, .. } => $body,
            Db::Postgres { pool: $p, .. } => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` with `$p` bound to the pool that writes (SQLite's single writer).
macro_rules! on_write {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.db {
            Db::Sqlite { write: $p, .. } => $body,
            Db::Postgres { pool: $p, .. } => $body,
        }
    };
}
pub(crate) use on_write;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

/// Task states and change statuses as SQL literals, spelled by the domain: the one way they
/// enter a query, so a renamed or added state cannot leave a stale literal behind.
pub(super) struct StateSql {
    pub(super) pending: String,
    pub(super) running: String,
    pub(super) failed: String,
    pub(super) cancelled: String,
    /// Not ended: `TaskState::LIVE`.
    pub(super) live: String,
    /// On a node now: `TaskState::IN_FLIGHT`.
    pub(super) in_flight: String,
    /// A change awaiting apply or discard.
    pub(super) change_pending: String,
}

pub(super) static SQL: std::sync::LazyLock<StateSql> = std::sync::LazyLock::new(|| StateSql {
    pending: states_sql(&[TaskState::Pending]),
    running: states_sql(&[TaskState::Running]),
    failed: states_sql(&[TaskState::Failed]),
    cancelled: states_sql(&[TaskState::Cancelled]),
    live: states_sql(&TaskState::LIVE),
    in_flight: states_sql(&TaskState::IN_FLIGHT),
    change_pending: format!("'{}'", ChangeStatus::Pending.as_str()),
});

/// `'a', 'b'`: a list of states for `IN (…)` or `=`.
pub(super) fn states_sql(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
impl Store {
    /// Open (creating if needed) the SQLite database at `path` and run migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        SQLITE_MIGRATOR.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        Ok(Store {
            db: Db::Sqlite { read, write },
        })
    }

    /// Connect to PostgreSQL and run its migrations (sqlx serialises concurrent runs from
    /// several nodes with an advisory lock).
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        PG_MIGRATOR.run(&pool).await?;
        Ok(Store {
            db: Db::Postgres {
                pool,
                url: url.to_string(),
            },
        })
    }

    /// Open whichever store `url` names: `postgres://…` or a SQLite file path.
    pub async fn open(database_url: Option<&str>, sqlite_path: &Path) -> Result<Store> {
        match database_url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Store::open_postgres(u).await
            }
            Some(u) => Store::open_sqlite(Path::new(u.trim_start_matches("sqlite://"))).await,
            None => Store::open_sqlite(sqlite_path).await,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match &self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    /// Close the pool. Wake-up listeners must be stopped first: `close` waits for every
    /// connection, and a listener holds one for as long as it lives.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres { pool, .. } => pool.close().await,
        }
    }

    /// Tell other nodes something changed (PostgreSQL only; SQLite nodes poll).
    async fn notify(&self, channel: &str, payload: &str) {
        if let Db::Postgres { pool, .. } = &self.db
            && let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(pool)
                .await
        {
            tracing::warn!(error = %e, channel, "NOTIFY failed; other nodes will poll");
        }
    }
}

#[cfg(test)]
mod tests;
