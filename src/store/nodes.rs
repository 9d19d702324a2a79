//! Node liveness and cross-process control: each boocoder process registers itself and
//! heartbeats; a running task whose node is gone is failed by whoever notices first; a cancel
//! request for a task running in another process is a flag that process polls (and, on
//! PostgreSQL, is woken for by NOTIFY).

use super::{CHANNEL_CANCEL, Db, Result, SQL, Store, on_pool, on_write};
use crate::domain::now_ms;

impl Store {
    /// Record this process as alive.
    pub async fn register_node(&self, id: &str, host: &str, pid: u32) -> Result<()> {
        let now = now_ms();
        on_write!(self, p => {
            sqlx::query(
                "INSERT INTO nodes (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, started_at = $4, heartbeat_at = $4",
            )
            .bind(id)
            .bind(host)
            .bind(i64::from(pid))
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    pub async fn heartbeat(&self, id: &str) -> Result<()> {
        on_write!(self, p => {
            sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    pub async fn remove_node(&self, id: &str) -> Result<()> {
        on_write!(self, p => {
            sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// Other registered processes on `host` as (node id, pid), to check their liveness locally.
    pub async fn nodes_on_host(&self, host: &str, except: &str) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, p => {
            sqlx::query_as("SELECT id, pid FROM nodes WHERE host = $1 AND id <> $2")
                .bind(host)
                .bind(except)
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    /// Fail the running or blocked tasks of the given (dead) nodes, and forget those nodes.
    pub async fn fail_tasks_of_nodes(&self, nodes: &[String], reason: &str) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for node in nodes {
            let ids: Vec<(String,)> = on_write!(self, p => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE tasks SET state = {}, ended_at = $1, error = $2 \
                     WHERE state IN ({}) AND node_id = $3 RETURNING id",
                    SQL.failed, SQL.in_flight
                )))
                .bind(now_ms())
                .bind(reason)
                .bind(node)
                .fetch_all(p)
                .await?
            });
            failed.extend(ids.into_iter().map(|(id,)| id));
            self.remove_node(node).await?;
        }
        Ok(failed)
    }

    /// Fail running or blocked tasks whose node has not heartbeated since `stale_before`
    /// (or is unknown). Returns (task id, node id) pairs.
    pub async fn fail_stale(&self, stale_before: i64, reason: &str) -> Result<Vec<String>> {
        let ids: Vec<(String,)> = on_write!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET state = {}, ended_at = $1, error = $2 \
                 WHERE state IN ({}) AND NOT EXISTS \
                   (SELECT 1 FROM nodes n WHERE n.id = tasks.node_id AND n.heartbeat_at >= $3) \
                 RETURNING id",
                SQL.failed, SQL.in_flight
            )))
            .bind(now_ms())
            .bind(reason)
            .bind(stale_before)
            .fetch_all(p)
            .await?
        });
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Ask whichever process runs `id` to cancel it. Returns false when it is not running.
    pub async fn request_cancel(&self, id: &str) -> Result<bool> {
        let n = on_write!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET cancel_requested = 1 WHERE id = $1 AND state IN ({})",
                SQL.in_flight
            )))
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        if n == 1 {
            self.notify(CHANNEL_CANCEL, id).await;
        }
        Ok(n == 1)
    }

    /// Tasks this node runs that another process asked to cancel.
    pub async fn cancel_requests(&self, node_id: &str) -> Result<Vec<String>> {
        let ids: Vec<(String,)> = on_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM tasks WHERE node_id = $1 AND cancel_requested = 1 AND state IN ({})",
                SQL.in_flight
            )))
            .bind(node_id)
            .fetch_all(p)
            .await?
        });
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Nodes that heartbeated at or after `since`.
    pub async fn live_nodes(&self, since: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, p => {
            sqlx::query_as("SELECT id FROM nodes WHERE heartbeat_at >= $1 ORDER BY id")
                .bind(since)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Whether a PostgreSQL pool is open (several nodes may share the queue).
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Db::Postgres { .. })
    }
}
