//! Pending changes: a session's unapplied work (one live row per session), and settling it
//! as applied or discarded together with the session's new base.

use super::rows::ChangeRow;
use super::{Db, Result, SQL, Store, StoreError, on_pool, on_write};
use crate::domain::{ChangeStatus, FileChange, PendingChange, now_ms};

const CHANGE_COLUMNS: &str =
    "id, session_id, task_id, base_commit, patch, files, status, updated_at, tree";

impl Store {
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

    /// A rebased pending change: its new base, tree, patch and files replace the old ones, its
    /// stale mark is cleared and the session's base moves, in one transaction (an empty patch
    /// drops the change: the checkout already holds all of it). False when the change was
    /// settled or replaced meanwhile: then nothing changed.
    pub async fn rebase_change(
        &self,
        change_id: i64,
        session_id: &str,
        new_base: &str,
        tree: &str,
        patch: &[u8],
        files: &[FileChange],
    ) -> Result<bool> {
        let now = now_ms();
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        let done = on_write!(self, p => {
            let mut tx = p.begin().await?;
            let n = if patch.is_empty() {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM pending_changes WHERE id = $1 AND status = {}",
                    SQL.change_pending
                )))
                .bind(change_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE pending_changes SET base_commit = $1, tree = $2, patch = $3, files = $4, \
                     stale_files = NULL, updated_at = $5 WHERE id = $6 AND status = {}",
                    SQL.change_pending
                )))
                .bind(new_base)
                .bind(tree)
                .bind(patch)
                .bind(&files)
                .bind(now)
                .bind(change_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            };
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
}

/// A session's live pending change, as a one-line listing shows it (no patch).
#[derive(Debug, Clone)]
pub struct UnappliedChange {
    pub session_id: String,
    /// The turn whose cumulative change it is.
    pub task_id: String,
    pub files: Vec<FileChange>,
    /// Files found not to apply cleanly any more (after another session's apply).
    pub stale_files: Option<Vec<String>>,
}

impl Store {
    /// The live pending changes of open sessions, newest first, at most `limit`.
    pub async fn unapplied_changes(&self, limit: u32) -> Result<Vec<UnappliedChange>> {
        // session, task, files, stale files
        type Row = (String, String, String, Option<String>);
        let rows: Vec<Row> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT c.session_id, c.task_id, c.files, c.stale_files \
                 FROM pending_changes c JOIN sessions s ON s.id = c.session_id \
                 WHERE c.status = {} AND s.closed = 0 ORDER BY c.updated_at DESC, c.id DESC LIMIT $1",
                SQL.change_pending
            )))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(session_id, task_id, files, stale)| {
                let files = serde_json::from_str(&files).map_err(|e| StoreError::Corrupt {
                    table: "pending_changes",
                    detail: format!("files: {e}"),
                })?;
                Ok(UnappliedChange {
                    session_id,
                    task_id,
                    files,
                    stale_files: stale.and_then(|f| serde_json::from_str(&f).ok()),
                })
            })
            .collect()
    }
}

/// Another session's live pending change on the same project.
#[derive(Debug, Clone)]
pub struct SiblingChange {
    pub change: PendingChange,
    pub worktree_path: Option<String>,
}

impl Store {
    /// The live pending changes of every open session of `project_path` except `session_id`.
    pub async fn sibling_changes(
        &self,
        project_path: &str,
        session_id: &str,
    ) -> Result<Vec<SiblingChange>> {
        let rows: Vec<(String,)> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT c.session_id FROM pending_changes c JOIN sessions s ON s.id = c.session_id \
                 JOIN projects p ON p.id = s.project_id \
                 WHERE p.path = $1 AND c.session_id <> $2 AND c.status = {} AND s.closed = 0",
                SQL.change_pending
            )))
            .bind(project_path)
            .bind(session_id)
            .fetch_all(p)
            .await?
        });
        let mut out = Vec::new();
        for (sid,) in rows {
            let Some(change) = self.pending_change(&sid).await? else {
                continue;
            };
            let worktree_path = self.session(&sid).await?.and_then(|s| s.worktree_path);
            out.push(SiblingChange {
                change,
                worktree_path,
            });
        }
        Ok(out)
    }

    /// Record which files of a pending change no longer apply cleanly (`None`: it applies).
    pub async fn mark_stale(&self, change_id: i64, files: Option<&[String]>) -> Result<()> {
        let files = files.map(|f| serde_json::to_string(f).unwrap_or_else(|_| "[]".into()));
        on_write!(self, p => {
            sqlx::query("UPDATE pending_changes SET stale_files = $1 WHERE id = $2")
                .bind(&files)
                .bind(change_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The files of the session's live pending change found not to apply cleanly any more.
    pub async fn stale_files(&self, session_id: &str) -> Result<Option<Vec<String>>> {
        let row: Option<(Option<String>,)> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT stale_files FROM pending_changes WHERE session_id = $1 AND status = {}",
                SQL.change_pending
            )))
            .bind(session_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row
            .and_then(|(f,)| f)
            .and_then(|f| serde_json::from_str(&f).ok()))
    }
}
