//! The native loop's session memory: chat messages as opaque JSON text, in order. The store
//! does not interpret them; the backend owns their shape.

use super::{Db, Result, Store};
use crate::domain::now_ms;

impl Store {
    /// Every stored message of the session, oldest first.
    pub async fn native_messages(&self, session_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, p => {
            sqlx::query_as("SELECT message FROM native_messages WHERE session_id = $1 ORDER BY seq")
                .bind(session_id)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(|(m,)| m).collect())
    }

    /// Append messages after the session's last one, in one transaction.
    pub async fn append_native_messages(
        &self,
        session_id: &str,
        task_id: &str,
        messages: &[String],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let (last,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM native_messages WHERE session_id = $1")
                .bind(session_id)
                .fetch_one(&mut *tx)
                .await?;
            for (i, m) in messages.iter().enumerate() {
                sqlx::query("INSERT INTO native_messages (session_id, seq, task_id, message, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(session_id)
                    .bind(last + 1 + i as i64)
                    .bind(task_id)
                    .bind(m)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
