//! The task queue: inserting a turn, reading and listing tasks, claiming the next one, and
//! every state transition up to the recorded outcome.

use super::rows::TaskRow;
use super::{CHANNEL_TASKS, Db, Result, SQL, Store, StoreError, on_pool, on_write, states_sql};
use crate::domain::{FileChange, Task, TaskState, Usage, new_id, now_ms};

/// Everything `insert_task` needs; a new session is created in the same transaction when given.
#[derive(Debug, Clone)]
pub struct NewTaskRow {
    pub id: String,
    pub project_path: String,
    pub session_id: String,
    /// `Some(provider)` to create the session together with the task.
    pub new_session_provider: Option<String>,
    /// A new session's worktree when it is known at once (a spare taken from the pool).
    pub new_session_worktree: Option<NewWorktree>,
    pub parent_task_id: Option<String>,
    pub prompt: String,
    pub provider: String,
    pub model: Option<String>,
    pub mode: Option<String>,
    pub permission: Option<crate::domain::PermissionPolicy>,
    pub retry_of: Option<String>,
    pub budget: crate::domain::Budget,
    pub options: std::collections::BTreeMap<String, String>,
}

/// A new session's worktree, recorded with the session row.
#[derive(Debug, Clone)]
pub struct NewWorktree {
    pub path: String,
    pub branch: String,
    pub base_commit: String,
    pub host: String,
}

/// Filters for `list_tasks`; `None` (or no states) means any.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Any of these states.
    pub states: Vec<TaskState>,
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

const TASK_COLUMNS: &str = "t.id, p.path AS project_path, t.session_id, t.parent_task_id, t.prompt, t.provider, \
     t.model, t.mode, t.permission, t.state, t.created_at, t.started_at, t.ended_at, t.summary, t.error, \
     t.input_tokens, t.output_tokens, t.files, t.node_id, t.retry_of, t.max_tokens, t.max_minutes, t.usage, t.max_cost_usd, t.options, \
     (SELECT q.question FROM permission_questions q WHERE q.task_id = t.id AND q.decided_by IS NULL \
      ORDER BY q.created_at DESC LIMIT 1) AS waiting_for";

/// The open question's column of [`TASK_COLUMNS`] (a task just claimed has none).
const WAITING_FOR: &str = "(SELECT q.question FROM permission_questions q WHERE q.task_id = t.id AND q.decided_by IS NULL \
      ORDER BY q.created_at DESC LIMIT 1) AS waiting_for";

impl Store {
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
                let wt = row.new_session_worktree.as_ref();
                sqlx::query("INSERT INTO sessions (id, project_id, provider, created_at, updated_at, worktree_path, branch, base_commit, host) VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)")
                    .bind(&row.session_id)
                    .bind(&project_id)
                    .bind(provider)
                    .bind(now)
                    .bind(wt.map(|w| w.path.as_str()))
                    .bind(wt.map(|w| w.branch.as_str()))
                    .bind(wt.map(|w| w.base_commit.as_str()))
                    .bind(wt.map(|w| w.host.as_str()))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO tasks (id, project_id, session_id, parent_task_id, prompt, provider, model, mode, permission, state, created_at, retry_of, max_tokens, max_minutes, max_cost_usd, options) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {}, $10, $11, $12, $13, $14, $15)",
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
            .bind(&row.retry_of)
            .bind(row.budget.max_tokens.map(|v| v.min(i64::MAX as u64) as i64))
            .bind(row.budget.max_minutes.map(|v| v.min(i64::MAX as u64) as i64))
            .bind(row.budget.max_cost_usd)
            .bind(
                (!row.options.is_empty())
                    .then(|| serde_json::to_string(&row.options).ok())
                    .flatten(),
            )
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
        if !f.states.is_empty() {
            sql.push_str(&format!(
                " AND t.state IN ({})",
                super::states_sql(&f.states)
            ));
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
        let returning = TASK_COLUMNS
            .replace(WAITING_FOR, "NULL AS waiting_for")
            .replace("t.", "")
            .replace(
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
        let usage_json = (!usage.is_empty())
            .then(|| serde_json::to_string(&usage).ok())
            .flatten();
        let done = on_write!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET state = $1, ended_at = $2, summary = $3, error = $4, \
                 input_tokens = $5, output_tokens = $6, files = $7, final_message = $8, usage = $9 \
                 WHERE id = $10 AND state IN ({})",
                SQL.live
            )))
            .bind(state.as_str())
            .bind(now_ms())
            .bind(summary)
            .bind(error)
            .bind(usage.input_tokens.unwrap_or(0).min(i64::MAX as u64) as i64)
            .bind(usage.output_tokens.unwrap_or(0).min(i64::MAX as u64) as i64)
            .bind(files)
            .bind(message)
            .bind(usage_json)
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
}

/// Most tasks a tree listing returns (a runaway delegation loop cannot flood the caller).
pub const MAX_TREE: i64 = 1000;

impl Store {
    /// `root` and every task delegated under it (`parent_task_id`, transitively), each with
    /// its depth below `root`, in no particular order.
    pub async fn subtree(&self, root: &str) -> Result<Vec<(Task, u32)>> {
        const SUB: &str = "WITH RECURSIVE sub(id, depth) AS ( \
             SELECT id, CAST(0 AS BIGINT) FROM tasks WHERE id = $1 \
             UNION ALL \
             SELECT t.id, sub.depth + 1 FROM tasks t JOIN sub ON t.parent_task_id = sub.id \
             WHERE sub.depth < 64) ";
        let depths: Vec<(String, i64)> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUB} SELECT id, depth FROM sub LIMIT $2")))
                .bind(root)
                .bind(MAX_TREE)
                .fetch_all(p)
                .await?
        });
        let rows: Vec<TaskRow> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SUB} SELECT {TASK_COLUMNS} FROM tasks t JOIN projects p ON p.id = t.project_id \
                 WHERE t.id IN (SELECT id FROM sub LIMIT $2)"
            )))
            .bind(root)
            .bind(MAX_TREE)
            .fetch_all(p)
            .await?
        });
        let depth: std::collections::HashMap<String, i64> = depths.into_iter().collect();
        rows.into_iter()
            .map(|r| {
                let d = depth.get(r.id()).copied().unwrap_or(0).max(0) as u32;
                r.into_task().map(|t| (t, d))
            })
            .collect()
    }
}

/// What usage statistics need of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct StatRow {
    pub project_path: String,
    pub provider: String,
    pub parent_task_id: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub usage: Usage,
}

impl Store {
    /// Every task created at or after `since` (Unix ms), with what statistics need.
    pub async fn stat_rows(&self, since: i64) -> Result<Vec<StatRow>> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            i64,
            i64,
        );
        let rows: Vec<Row> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT t.id, p.path, t.provider, t.parent_task_id, t.state, t.created_at, \
                 t.started_at, t.ended_at, t.usage, t.input_tokens, t.output_tokens \
                 FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.created_at >= $1",
            )
            .bind(since)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(StatRow {
                    usage: super::rows::usage_of(&r.0, r.8.as_deref(), r.9, r.10)?,
                    project_path: r.1,
                    provider: r.2,
                    parent_task_id: r.3,
                    state: r.4,
                    created_at: r.5,
                    started_at: r.6,
                    ended_at: r.7,
                })
            })
            .collect()
    }
}
