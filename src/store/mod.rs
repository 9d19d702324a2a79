//! The store: the only module that speaks SQL. Tasks, sessions, transcripts and pending changes
//! live here so a killed server loses nothing that was committed.
//!
//! The pool sits behind [`Db`], an enum of typed pools (SQLite embedded by default, PostgreSQL
//! for several nodes on one queue). SQL is written once with `$n` placeholders (SQLite accepts
//! them too) and `on_pool!` runs the same body against whichever pool is open; only claiming
//! and wake-ups differ per backend.

mod nodes;
mod probe_cache;
mod rows;
mod wakeups;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::{
    ChangeStatus, EventKind, FileChange, PendingChange, Session, Task, TaskState, Usage, new_id,
    now_ms,
};
pub use rows::StoredEvent;
use rows::{ChangeRow, EventRow, SessionRow, TaskRow};

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

/// Everything `insert_task` needs; a new session is created in the same transaction when given.
#[derive(Debug, Clone)]
pub struct NewTaskRow {
    pub id: String,
    pub project_path: String,
    pub session_id: String,
    /// `Some(provider)` to create the session together with the task.
    pub new_session_provider: Option<String>,
    pub parent_task_id: Option<String>,
    pub prompt: String,
    pub provider: String,
    pub model: Option<String>,
    pub mode: Option<String>,
    pub permission: Option<crate::domain::PermissionPolicy>,
}

/// Filters for `list_tasks`; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub project_path: Option<String>,
    pub parent_task_id: Option<String>,
    pub session_id: Option<String>,
    /// Return tasks strictly older than this (created_at, id) position.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// What a claim took. A row that cannot be decoded is still marked running, so the claimer
/// must end it.
#[derive(Debug)]
pub enum Claimed {
    Task(Box<Task>),
    Unreadable { id: String, error: StoreError },
}

impl Claimed {
    pub fn id(&self) -> &str {
        match self {
            Claimed::Task(t) => &t.id,
            Claimed::Unreadable { id, .. } => id,
        }
    }
}

/// How a turn ended, as the store records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed {
        summary: String,
        final_message: String,
    },
    Failed {
        error: String,
        summary: Option<String>,
    },
    Cancelled {
        reason: String,
    },
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

const SESSION_COLUMNS: &str = "s.id, p.path AS project_path, s.provider, s.worktree_path, s.branch, \
     s.base_commit, s.closed, s.host";

const CHANGE_COLUMNS: &str =
    "id, session_id, task_id, base_commit, patch, files, status, updated_at, tree";

const TASK_COLUMNS: &str = "t.id, p.path AS project_path, t.session_id, t.parent_task_id, t.prompt, t.provider, \
     t.model, t.mode, t.permission, t.state, t.created_at, t.started_at, t.ended_at, t.summary, t.error, \
     t.input_tokens, t.output_tokens, t.files, t.node_id";

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

    /// Insert a task (and its project, and its session when new) in one transaction, so a
    /// failure leaves no half-written rows.
    pub async fn insert_task(&self, row: &NewTaskRow) -> Result<Task> {
        let now = now_ms();
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO projects (id, path, created_at) VALUES ($1, $2, $3) ON CONFLICT (path) DO NOTHING")
                .bind(new_id("p"))
                .bind(&row.project_path)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (project_id,): (String,) = sqlx::query_as("SELECT id FROM projects WHERE path = $1")
                .bind(&row.project_path)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(provider) = &row.new_session_provider {
                sqlx::query("INSERT INTO sessions (id, project_id, provider, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
                    .bind(&row.session_id)
                    .bind(&project_id)
                    .bind(provider)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO tasks (id, project_id, session_id, parent_task_id, prompt, provider, model, mode, permission, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {}, $10)",
                SQL.pending
            )))
            .bind(&row.id)
            .bind(&project_id)
            .bind(&row.session_id)
            .bind(&row.parent_task_id)
            .bind(&row.prompt)
            .bind(&row.provider)
            .bind(&row.model)
            .bind(&row.mode)
            .bind(row.permission.map(|p| p.as_str()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        // Read the row back before waking other nodes, so the caller sees it as queued.
        let task = self.task(&row.id).await?.ok_or(StoreError::Corrupt {
            table: "tasks",
            detail: format!("task {} vanished after insert", row.id),
        })?;
        self.notify(CHANNEL_TASKS, &row.id).await;
        Ok(task)
    }

    pub async fn task(&self, id: &str) -> Result<Option<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.id = $1"
        );
        let row: Option<TaskRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?
        });
        row.map(TaskRow::into_task).transpose()
    }

    /// Newest first, paged by (created_at, id).
    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>> {
        let mut sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN projects p ON p.id = t.project_id WHERE 1=1"
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if f.state.is_some() {
            sql.push_str(&format!(" AND t.state = ${}", next()));
        }
        if f.project_path.is_some() {
            sql.push_str(&format!(" AND p.path = ${}", next()));
        }
        if f.parent_task_id.is_some() {
            sql.push_str(&format!(" AND t.parent_task_id = ${}", next()));
        }
        if f.session_id.is_some() {
            sql.push_str(&format!(" AND t.session_id = ${}", next()));
        }
        if f.before.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (t.created_at < ${a} OR (t.created_at = ${b} AND t.id < ${c}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY t.created_at DESC, t.id DESC LIMIT ${}",
            next()
        ));
        let rows: Vec<TaskRow> = on_pool!(self, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            if let Some(s) = f.state {
                q = q.bind(s.as_str());
            }
            if let Some(v) = &f.project_path {
                q = q.bind(v);
            }
            if let Some(v) = &f.parent_task_id {
                q = q.bind(v);
            }
            if let Some(v) = &f.session_id {
                q = q.bind(v);
            }
            if let Some((at, id)) = &f.before {
                q = q.bind(*at).bind(*at).bind(id);
            }
            q.bind(i64::from(f.limit)).fetch_all(p).await?
        });
        rows.into_iter().map(TaskRow::into_task).collect()
    }

    /// Claim the oldest pending task whose session has no turn in flight and whose worktree
    /// (if any) lives on `host`, marking it running so no two claimers take the same task.
    /// Returns the claimed row as it is now, so the caller need not read it again.
    pub async fn claim_next(&self, node_id: &str, host: &str) -> Result<Option<Claimed>> {
        let (pending, running) = (&SQL.pending, &SQL.running);
        let pick = format!(
            "SELECT c.id FROM tasks c JOIN sessions s ON s.id = c.session_id \
             WHERE c.state = {pending} AND (s.host IS NULL OR s.host = $3) AND NOT EXISTS \
               (SELECT 1 FROM tasks r WHERE r.session_id = c.session_id AND r.state IN ({})) \
             ORDER BY c.created_at, c.id LIMIT 1",
            SQL.in_flight
        );
        // RETURNING cannot join: the project's path comes from a scalar subquery.
        // and SQLite's RETURNING takes no table-qualified names.
        let returning = TASK_COLUMNS.replace("t.", "").replace(
            "p.path AS project_path",
            "(SELECT path FROM projects WHERE projects.id = tasks.project_id) AS project_path",
        );
        let now = now_ms();
        let row: Option<TaskRow> = match &self.db {
            // SQLite has one writer: a single UPDATE … WHERE id = (SELECT …) is atomic.
            Db::Sqlite { write: p, .. } => {
                let sql = format!(
                    "UPDATE tasks SET state = {running}, started_at = $1, node_id = $2 \
                     WHERE id = ({pick}) AND state = {pending} RETURNING {returning}"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(node_id)
                    .bind(host)
                    .fetch_optional(p)
                    .await?
            }
            // On PostgreSQL, SKIP LOCKED keeps claimers off each other's rows, but the
            // one-turn-per-session rule reads *other* rows (the session's running turn), which a
            // concurrent claimer may be committing right now. A transaction-scoped advisory lock
            // serialises the pick-and-mark step (a few ms) across nodes so that check is exact.
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7355608)")
                    .execute(&mut *tx)
                    .await?;
                let sql = format!(
                    "UPDATE tasks SET state = {running}, started_at = $1, node_id = $2 \
                     WHERE id = ({pick} FOR UPDATE OF c SKIP LOCKED) AND state = {pending} \
                     RETURNING {returning}"
                );
                let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(node_id)
                    .bind(host)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
        };
        Ok(row.map(|r| {
            let id = r.id().to_owned();
            match r.into_task() {
                Ok(task) => Claimed::Task(Box::new(task)),
                Err(error) => Claimed::Unreadable { id, error },
            }
        }))
    }

    /// Move a task to `to` if its current state allows it; returns whether it moved.
    pub async fn set_state(&self, id: &str, to: TaskState) -> Result<bool> {
        let list = states_sql(&TaskState::sources_of(to));
        let sql = format!("UPDATE tasks SET state = $1 WHERE id = $2 AND state IN ({list})");
        let done = on_write!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to.as_str()).bind(id).execute(p).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Record the end of a turn in one write. Refused (returns false) when the task is already
    /// terminal, so a late writer can never resurrect or overwrite a finished task.
    pub async fn finish_task(
        &self,
        id: &str,
        outcome: &Outcome,
        usage: Usage,
        files: &[FileChange],
    ) -> Result<bool> {
        let (state, summary, error, message) = match outcome {
            Outcome::Completed {
                summary,
                final_message,
            } => (
                TaskState::Completed,
                Some(summary.clone()),
                None,
                Some(final_message.clone()),
            ),
            Outcome::Failed { error, summary } => (
                TaskState::Failed,
                summary.clone(),
                Some(error.clone()),
                None,
            ),
            Outcome::Cancelled { reason } => {
                (TaskState::Cancelled, None, Some(reason.clone()), None)
            }
        };
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        let done = on_write!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET state = $1, ended_at = $2, summary = $3, error = $4, \
                 input_tokens = $5, output_tokens = $6, files = $7, final_message = $8 \
                 WHERE id = $9 AND state IN ({})",
                SQL.live
            )))
            .bind(state.as_str())
            .bind(now_ms())
            .bind(summary)
            .bind(error)
            .bind(usage.input_tokens as i64)
            .bind(usage.output_tokens as i64)
            .bind(files)
            .bind(message)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected()
        });
        if done == 1 {
            // A finished turn may unblock its session's next turn on another node.
            self.notify(CHANNEL_TASKS, id).await;
        }
        Ok(done == 1)
    }

    /// The agent's whole final message (the task row keeps only a summary in listings).
    pub async fn final_message(&self, id: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_pool!(self, p => {
            sqlx::query_as("SELECT final_message FROM tasks WHERE id = $1").bind(id).fetch_optional(p).await?
        });
        Ok(row.and_then(|(m,)| m))
    }

    /// Pending tasks are cancelled at once (no agent to stop); returns whether it happened.
    pub async fn cancel_pending(&self, id: &str, reason: &str) -> Result<bool> {
        let done = on_write!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET state = {}, ended_at = $1, error = $2 WHERE id = $3 AND state = {}",
                SQL.cancelled, SQL.pending
            )))
                .bind(now_ms())
                .bind(reason)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        let row: Option<SessionRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN projects p ON p.id = s.project_id WHERE s.id = $1"
            )))
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(SessionRow::into_session))
    }

    /// Every session that still has a worktree on disk (for the orphan reaper).
    pub async fn sessions_with_worktrees(&self) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN projects p ON p.id = s.project_id WHERE s.worktree_path IS NOT NULL"
            )))
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(SessionRow::into_session).collect())
    }

    pub async fn set_session_worktree(
        &self,
        id: &str,
        worktree_path: Option<&str>,
        branch: Option<&str>,
        base_commit: Option<&str>,
        host: &str,
    ) -> Result<()> {
        on_write!(self, p => {
            sqlx::query("UPDATE sessions SET worktree_path = $1, branch = $2, base_commit = $3, updated_at = $4, host = $5 WHERE id = $6")
                .bind(worktree_path)
                .bind(branch)
                .bind(base_commit)
                .bind(now_ms())
                .bind(host)
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    pub async fn close_session(&self, id: &str) -> Result<()> {
        on_write!(self, p => {
            sqlx::query("UPDATE sessions SET closed = 1, worktree_path = NULL, updated_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Append transcript entries, numbering them after the task's last one.
    pub async fn append_events(
        &self,
        task_id: &str,
        events: &[(EventKind, String, Option<serde_json::Value>)],
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_write!(self, p => {
            // why: INSERT … SELECT takes the write lock before reading MAX(seq); a separate
            // SELECT first makes the transaction a reader that fails with SQLITE_BUSY at once
            // when it must upgrade after another connection wrote (no busy wait applies).
            let mut tx = p.begin().await?;
            for (kind, text, data) in events {
                sqlx::query(
                    "INSERT INTO task_events (task_id, seq, kind, at, text, data) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM task_events WHERE task_id = $1",
                )
                    .bind(task_id)
                    .bind(kind.as_str())
                    .bind(now)
                    .bind(text)
                    .bind(data.as_ref().map(|d| d.to_string()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Transcript entries after `after_seq`, oldest first, each with at most `max_chars`
    /// characters of its text and its detail only when no longer than that (rows written
    /// before entries were capped can be hundreds of megabytes).
    pub async fn events(
        &self,
        task_id: &str,
        after_seq: i64,
        limit: u32,
        max_chars: u32,
    ) -> Result<Vec<StoredEvent>> {
        let max_chars = i32::try_from(max_chars).unwrap_or(i32::MAX);
        let rows: Vec<EventRow> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT seq, kind, at, substr(text, 1, $4) AS text, \
                        CAST(length(text) AS BIGINT) AS text_chars, \
                        CASE WHEN length(data) > $4 THEN NULL ELSE data END AS data, \
                        CAST(length(data) AS BIGINT) AS data_chars \
                 FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
                .bind(task_id)
                .bind(after_seq)
                .bind(i64::from(limit))
                .bind(max_chars)
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The latest transcript line of a kind a human would want as a progress message.
    pub async fn last_event_text(&self, task_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT text FROM task_events WHERE task_id = $1 AND kind IN ('text', 'tool_call', 'plan', 'notice') \
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(task_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(t,)| t))
    }

    /// Replace the session's live pending change with `patch` (or drop it when the diff is
    /// empty). One transaction: the old row is never gone without the new one in place.
    pub async fn replace_pending(
        &self,
        session_id: &str,
        task_id: &str,
        base_commit: &str,
        tree: &str,
        patch: &[u8],
        files: &[FileChange],
    ) -> Result<()> {
        let now = now_ms();
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM pending_changes WHERE session_id = $1 AND status = {}",
                SQL.change_pending
            )))
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
            if !patch.is_empty() {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO pending_changes (session_id, task_id, base_commit, patch, files, status, created_at, updated_at, tree) \
                     VALUES ($1, $2, $3, $4, $5, {}, $6, $6, $7)",
                    SQL.change_pending
                )))
                .bind(session_id)
                .bind(task_id)
                .bind(base_commit)
                .bind(patch)
                .bind(&files)
                .bind(now)
                .bind(tree)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session's live pending change, if any.
    pub async fn pending_change(&self, session_id: &str) -> Result<Option<PendingChange>> {
        let row: Option<ChangeRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CHANGE_COLUMNS} FROM pending_changes WHERE session_id = $1 AND status = {}",
                SQL.change_pending
            )))
            .bind(session_id)
            .fetch_optional(p)
            .await?
        });
        row.map(ChangeRow::into_change).transpose()
    }

    /// The most recent change of a session whatever its status (to explain "already applied").
    pub async fn latest_change(&self, session_id: &str) -> Result<Option<PendingChange>> {
        let row: Option<ChangeRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CHANGE_COLUMNS} FROM pending_changes WHERE session_id = $1 ORDER BY id DESC LIMIT 1"
            )))
            .bind(session_id)
            .fetch_optional(p)
            .await?
        });
        row.map(ChangeRow::into_change).transpose()
    }

    /// Mark a pending change applied or discarded and move the session's base in one
    /// transaction, so the store never says "applied" with the old base still recorded.
    pub async fn settle_change(
        &self,
        change_id: i64,
        status: ChangeStatus,
        session_id: &str,
        new_base: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let done = on_write!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE pending_changes SET status = $1, updated_at = $2 WHERE id = $3 AND status = {}",
                SQL.change_pending
            )))
                .bind(status.as_str())
                .bind(now)
                .bind(change_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Another process settled it first: its base stands.
            if n == 1 {
                sqlx::query("UPDATE sessions SET base_commit = $1, updated_at = $2 WHERE id = $3")
                    .bind(new_base)
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        Ok(done == 1)
    }

    /// The files of a turn whose outcome was recorded without them (a crashed turn's edits,
    /// kept at recovery).
    pub async fn set_task_files(&self, task_id: &str, files: &[FileChange]) -> Result<()> {
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        on_write!(self, p => {
            sqlx::query("UPDATE tasks SET files = $1 WHERE id = $2")
                .bind(&files)
                .bind(task_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The status of one change by id (to settle an apply a crash interrupted).
    pub async fn change_status(&self, change_id: i64) -> Result<Option<ChangeStatus>> {
        let row: Option<(String,)> = on_pool!(self, p => {
            sqlx::query_as("SELECT status FROM pending_changes WHERE id = $1")
                .bind(change_id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.and_then(|(s,)| ChangeStatus::parse(&s)))
    }

    /// Open sessions on `host` with a worktree, untouched since `before`, with no pending change
    /// and no turn queued or in flight.
    pub async fn idle_sessions(&self, before: i64, host: &str) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN projects p ON p.id = s.project_id \
                 WHERE s.closed = 0 AND s.worktree_path IS NOT NULL AND s.host = $1 AND s.updated_at < $2 \
                   AND NOT EXISTS (SELECT 1 FROM pending_changes c WHERE c.session_id = s.id AND c.status = {}) \
                   AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.session_id = s.id AND (t.state IN ({}) OR t.ended_at >= $2))",
                SQL.change_pending, SQL.live
            )))
            .bind(host)
            .bind(before)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(SessionRow::into_session).collect())
    }

    /// Tokens summed over the session's turns.
    pub async fn session_usage(&self, session_id: &str) -> Result<Usage> {
        let (input, output): (i64, i64) = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) \
                 FROM tasks WHERE session_id = $1",
            )
            .bind(session_id)
            .fetch_one(p)
            .await?
        });
        Ok(Usage {
            input_tokens: input.max(0) as u64,
            output_tokens: output.max(0) as u64,
        })
    }

    /// Whether the session has a turn queued or in flight.
    pub async fn session_busy(&self, session_id: &str) -> Result<bool> {
        let (n,): (i64,) = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM tasks WHERE session_id = $1 AND state IN ({})",
                SQL.live
            )))
                .bind(session_id)
                .fetch_one(p)
                .await?
        });
        Ok(n > 0)
    }
}

mod conversation;
#[cfg(test)]
mod tests;
