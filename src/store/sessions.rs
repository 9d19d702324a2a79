//! Sessions: the worktree a session keeps between turns, closing, and the questions the
//! liveness loop and the engine ask about a session (idle, busy, tokens used).

use super::rows::SessionRow;
use super::{Db, Result, SQL, Store, on_pool, on_write};
use crate::domain::{Session, Usage, now_ms};

const SESSION_COLUMNS: &str = "s.id, p.path AS project_path, s.provider, s.worktree_path, s.branch, \
     s.base_commit, s.closed, s.host";

impl Store {
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

    /// What the session's turns reported, summed (the context as of the latest report).
    pub async fn session_usage(&self, session_id: &str) -> Result<Usage> {
        let rows: Vec<(String, Option<String>, i64, i64)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT id, usage, input_tokens, output_tokens FROM tasks \
                 WHERE session_id = $1 ORDER BY created_at, id",
            )
            .bind(session_id)
            .fetch_all(p)
            .await?
        });
        let mut total = Usage::default();
        for (id, json, input, output) in rows {
            total.add(super::rows::usage_of(&id, json.as_deref(), input, output)?);
        }
        Ok(total)
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
