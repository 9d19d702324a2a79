//! The transcript: each task's numbered events, appended as a turn streams and read back in
//! pages.

use super::rows::{EventRow, StoredEvent};
use super::{Db, Result, Store, on_pool, on_write};
use crate::domain::{EventKind, now_ms};

impl Store {
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
}
