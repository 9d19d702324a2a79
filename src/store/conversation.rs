//! What backends remember of a session between turns: the native loop's chat messages (opaque
//! JSON text, in order; the backend owns their shape) and each ACP agent's last session id.

use super::{Db, Result, Store, on_pool, on_write};
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
        on_write!(self, p => {
            // why: each row is one INSERT … SELECT so the write lock is taken before the read
            // of MAX(seq); a SELECT-then-INSERT transaction fails with SQLITE_BUSY at once
            // when another connection wrote in between (the busy timeout does not apply).
            let mut tx = p.begin().await?;
            for m in messages {
                sqlx::query(
                    "INSERT INTO native_messages (session_id, seq, task_id, message, created_at) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM native_messages WHERE session_id = $1",
                )
                .bind(session_id)
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

impl Store {
    /// The ACP session id an agent of this session last had, if any.
    pub async fn acp_session(&self, session_id: &str, provider_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT acp_session FROM acp_sessions WHERE session_id = $1 AND provider_id = $2",
            )
            .bind(session_id)
            .bind(provider_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Remember the ACP session an agent of this session now has.
    pub async fn set_acp_session(
        &self,
        session_id: &str,
        provider_id: &str,
        acp_session: &str,
    ) -> Result<()> {
        let now = now_ms();
        on_write!(self, p => {
            sqlx::query(
                "INSERT INTO acp_sessions (session_id, provider_id, acp_session, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (session_id, provider_id) \
                 DO UPDATE SET acp_session = excluded.acp_session, updated_at = excluded.updated_at",
            )
            .bind(session_id)
            .bind(provider_id)
            .bind(acp_session)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(())
    }
}
