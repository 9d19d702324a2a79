//! How tool handlers wait and answer: a submitted task's status (now, or when it ends within
//! `wait_seconds`, with progress notifications meanwhile), and closing a session after an
//! apply or discard.

use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;

use super::types::{ApplyOutcome, TaskStatus};
use super::{McpServer, StatusResult, fail};
use crate::engine::{EngineError, MAX_WAIT};

/// `wait_seconds` of a task tool: no wait when absent or 0, else capped at [`MAX_WAIT`].
pub(super) fn wait_for(seconds: Option<u32>) -> Option<Duration> {
    seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)).min(MAX_WAIT))
}

impl McpServer {
    /// A task just queued (`new_task`, `retry_task`): its status now, or once it ended when
    /// the caller waits (`wait_seconds`).
    pub(super) async fn submitted(
        &self,
        task: crate::domain::Task,
        wait_seconds: Option<u32>,
        ctx: &RequestContext<RoleServer>,
    ) -> StatusResult {
        let task = match wait_for(wait_seconds) {
            Some(d) => self
                .wait_with_progress(&task.id, d, ctx, |t| t.state.is_terminal())
                .await
                .map_err(fail)?,
            None => task,
        };
        Ok(super::reply::Status(TaskStatus::from_task(&task)))
    }

    /// `close_session: true` after an apply or discard: the change already landed (or was
    /// dropped), so a failed close says so rather than hiding what happened.
    pub(super) async fn close_after(
        &self,
        out: &mut ApplyOutcome,
        close: bool,
        done: &str,
    ) -> Result<(), String> {
        if close {
            self.engine
                .close_session(&out.session_id, false)
                .await
                .map_err(|e| format!("{done}, but the session was not closed: {e}"))?;
            out.session_closed = true;
        }
        Ok(())
    }

    /// Wait on the engine while forwarding progress lines as MCP progress notifications, when
    /// the client asked for them with a progress token.
    pub(super) async fn wait_with_progress(
        &self,
        id: &str,
        timeout: Duration,
        ctx: &RequestContext<RoleServer>,
        done: impl Fn(&crate::domain::Task) -> bool,
    ) -> Result<crate::domain::Task, EngineError> {
        let Some(token) = ctx.meta.get_progress_token() else {
            return self.engine.wait_until(id, timeout, done, None).await;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let peer = ctx.peer.clone();
        let forward = tokio::spawn(async move {
            let mut n = 0.0;
            while let Some(line) = rx.recv().await {
                n += 1.0;
                let param = ProgressNotificationParam::new(token.clone(), n).with_message(line);
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        let r = self.engine.wait_until(id, timeout, done, Some(&tx)).await;
        drop(tx);
        // why: the forwarder only ends early when the client went away.
        let _ = forward.await;
        r
    }
}
