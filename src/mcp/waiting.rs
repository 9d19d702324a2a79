//! How tool handlers wait and answer: a submitted task's status (now, or when it ends within
//! `wait_seconds`, with progress notifications meanwhile; an MCP task for clients of the Tasks
//! extension; a permission question by MRTR for 2026-07-28 clients, answered by their retry),
//! and closing a session after an apply or discard.

use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    ElicitResult, InputRequiredResult, InputResponses, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::RequestContext;

use super::elicitation::Answer;
use super::reply::Reply;
use super::types::{ApplyOutcome, TaskStatus};
use super::{McpServer, StatusResult, fail};
use crate::domain::Decider;
use crate::engine::{EngineError, MAX_WAIT};

/// `wait_seconds` of a task tool: no wait when absent or 0, else capped at [`MAX_WAIT`].
pub(super) fn wait_for(seconds: Option<u32>) -> Option<Duration> {
    seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)).min(MAX_WAIT))
}

/// The `requestState` of an MRTR round: names the task whose question the client is asked.
/// It comes back from the client, so it is only a handle: the task and its open question are
/// looked up again, and answering grants nothing `answer_permission` would not.
const STATE_PREFIX: &str = "boocoder-task:";

/// Whether this call's client is asked for input by MRTR while it waits: a 2026-07-28 client
/// (no server-to-client requests) that declared elicitation.
fn asks_by_retry(ctx: &RequestContext<RoleServer>) -> bool {
    stateless(ctx)
        && ctx
            .client_capabilities()
            .is_some_and(|c| c.elicitation.is_some())
}

/// A call on the 2026-07-28 lifecycle: no session, so no server-to-client requests or
/// notifications outside a subscription.
pub(super) fn stateless(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

impl McpServer {
    /// A task just queued (`new_task`, `retry_task`): an MCP task for a client of the Tasks
    /// extension, else its status now, or once it ended when the caller waits
    /// (`wait_seconds`).
    pub(super) async fn submitted(
        &self,
        task: crate::domain::Task,
        wait_seconds: Option<u32>,
        ctx: &RequestContext<RoleServer>,
    ) -> StatusResult {
        if super::tasks::declared(ctx) {
            return Ok(Reply::Task(self.created(&task, ctx).await?));
        }
        match wait_for(wait_seconds) {
            Some(d) => {
                self.wait_reply(&task.id, d, ctx, |t| t.state.is_terminal())
                    .await
            }
            None => Ok(TaskStatus::from_task(&task).into()),
        }
    }

    /// Wait until `done`, then the task's status; a 2026-07-28 client is instead asked the
    /// task's permission question as soon as one is open (MRTR), and answers by retrying.
    pub(super) async fn wait_reply(
        &self,
        id: &str,
        timeout: Duration,
        ctx: &RequestContext<RoleServer>,
        done: impl Fn(&crate::domain::Task) -> bool,
    ) -> StatusResult {
        let retry = asks_by_retry(ctx);
        let task = self
            .wait_with_progress(id, timeout, ctx, |t| {
                done(t) || (retry && t.waiting_for.is_some())
            })
            .await
            .map_err(fail)?;
        if retry && let Some(input_requests) = super::tasks::question_requests(&task) {
            let state = format!("{STATE_PREFIX}{}", task.id);
            return Ok(Reply::Input(InputRequiredResult::new(
                Some(input_requests),
                Some(state),
            )));
        }
        Ok(self.status_of(&task).await?.into())
    }

    /// An MRTR retry of `new_task`/`retry_task`: the task the first round queued (named by
    /// `requestState`), with the client's answers applied, instead of queuing another.
    pub(super) async fn resumed(
        &self,
        state: Option<&str>,
        answers: Option<&InputResponses>,
    ) -> Result<Option<crate::domain::Task>, String> {
        let Some(state) = state else {
            return Ok(None);
        };
        let id = self.retried_task(state).await?;
        if let Some(answers) = answers {
            self.answer_inputs(&id, answers, Decider::Retry).await?;
        }
        self.engine.task(&id).await.map(Some).map_err(fail)
    }

    /// The task a `requestState` names.
    pub(super) async fn retried_task(&self, state: &str) -> Result<String, String> {
        let id = state
            .strip_prefix(STATE_PREFIX)
            .filter(|id| !id.is_empty())
            .ok_or("invalid `requestState`: not one this server sent")?;
        self.engine.task(id).await.map_err(fail)?;
        Ok(id.to_string())
    }

    /// Answers to a task's question, from `tasks/update` or an MRTR retry: an accepted form
    /// chooses its option, a declined or cancelled one rejects. An answer that lost the race
    /// to another channel is not an error (the first answer wins).
    pub(super) async fn answer_inputs(
        &self,
        task_id: &str,
        answers: &InputResponses,
        by: Decider,
    ) -> Result<(), String> {
        for (request_id, value) in answers {
            let r: ElicitResult = serde_json::from_value(value.clone()).map_err(|e| {
                format!(
                    "invalid `inputResponses`: `{request_id}` is not an elicitation result: {e}"
                )
            })?;
            let chosen = match super::elicitation::answer_of(&r) {
                Answer::Chosen(id) => Some(id.to_string()),
                Answer::Declined => None,
                Answer::Empty => {
                    return Err(format!(
                        "invalid `inputResponses`: `{request_id}` accepts without a `decision`"
                    ));
                }
            };
            let answered = match chosen {
                Some(option) => self
                    .engine
                    .answer_permission(task_id, request_id, &option, by)
                    .await
                    .map(drop),
                None => {
                    self.engine
                        .decline_permission(task_id, request_id, by)
                        .await
                }
            };
            match answered {
                Ok(()) | Err(EngineError::State(_)) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    /// A task's whole status: with its session's usage, its descendants by state and the
    /// paths a stale change conflicts on.
    pub(super) async fn status_of(&self, task: &crate::domain::Task) -> Result<TaskStatus, String> {
        let mut status = TaskStatus::from_task(task);
        status.set_session_usage(
            self.engine
                .session_usage(&task.session_id)
                .await
                .map_err(fail)?,
        );
        let counts = self
            .engine
            .descendant_counts(&task.id)
            .await
            .map_err(fail)?;
        status.descendants = (!counts.is_empty()).then_some(counts);
        status.set_stale(
            self.engine
                .stale_against_checkout(&task.session_id)
                .await
                .map_err(fail)?,
        );
        Ok(status)
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
