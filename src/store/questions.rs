//! Permission questions: a row per question, decided at most once by a conditional update, so
//! the first answer wins whichever process or node gives it (the asking turn, a tool call on
//! another server, `boocoder answer` in a terminal).

use super::{Db, Result, Store, StoreError, on_pool, on_write};
use crate::domain::{Decider, Decision, Question, now_ms};

impl Store {
    /// Record an open question of `task_id`.
    pub async fn open_question(&self, task_id: &str, q: &Question) -> Result<()> {
        let json = serde_json::to_string(q).map_err(|e| StoreError::Corrupt {
            table: "permission_questions",
            detail: e.to_string(),
        })?;
        on_write!(self, p => {
            sqlx::query(
                "INSERT INTO permission_questions (request_id, task_id, question, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&q.request_id)
            .bind(task_id)
            .bind(&json)
            .bind(now_ms())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// Settle the question unless it is already settled; true when this call decided it.
    pub async fn decide_question(&self, request_id: &str, d: &Decision) -> Result<bool> {
        let done = on_write!(self, p => {
            sqlx::query(
                "UPDATE permission_questions SET chosen = $1, decided_by = $2, decided_at = $3 \
                 WHERE request_id = $4 AND decided_by IS NULL",
            )
            .bind(d.option_id.as_deref())
            .bind(d.by.as_str())
            .bind(now_ms())
            .bind(request_id)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// A question: its task, what was asked, and how it was decided (`None` while open).
    pub async fn question(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, Question, Option<Decision>)>> {
        type Row = (String, String, Option<String>, Option<String>);
        let row: Option<Row> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT task_id, question, chosen, decided_by FROM permission_questions \
                 WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_optional(p)
            .await?
        });
        let Some((task_id, json, chosen, by)) = row else {
            return Ok(None);
        };
        let q: Question = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            table: "permission_questions",
            detail: format!("question {request_id}: {e}"),
        })?;
        let decision = match by {
            None => None,
            Some(by) => Some(Decision {
                option_id: chosen,
                by: Decider::parse(by.as_str()).ok_or_else(|| StoreError::Corrupt {
                    table: "permission_questions",
                    detail: format!("question {request_id} decided by {by:?}"),
                })?,
            }),
        };
        Ok(Some((task_id, q, decision)))
    }
}
