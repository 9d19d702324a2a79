//! The MCP Tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`): a client that declares
//! it gets an MCP task from `new_task` and `retry_task` instead of a status, and follows it
//! with `tasks/get`, `tasks/update` and `tasks/cancel`. The MCP task *is* the boocoder task
//! (same id, read from the store on every call), so it survives a restart and is visible to
//! every other channel; nothing about it lives in this process's memory.

use rmcp::RoleServer;
use rmcp::model::{
    CreateTaskResult, DetailedTask, ElicitRequest, InputRequest, InputRequests, InputResponses,
    JsonObject, Task as McpTask, TaskPayload, TaskStatus as McpStatus, TaskStatusNotification,
    TaskStatusNotificationParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, model::ServerNotification};

use super::McpServer;
use super::reply::Status;
use crate::domain::{Decider, Task, TaskState};

/// How often a client should poll `tasks/get`: a turn takes seconds, a question waits for a
/// person.
const POLL_MS: u64 = 1000;

/// A status message shows one transcript line, not a paragraph.
const MESSAGE_MAX: usize = 200;

/// Whether this call's client declared the extension (at `initialize`, or in the request's
/// `_meta` on the 2026-07-28 lifecycle); only then may a call answer with a task.
pub(super) fn declared(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

/// The elicitation that asks the task's open question, keyed by its request id (the key the
/// client answers under, in `tasks/update` or an MRTR retry).
pub(super) fn question_requests(task: &Task) -> Option<InputRequests> {
    let q = task.waiting_for.as_ref()?;
    let params = super::elicitation::form(q.message(&task.id, Some(&task.provider)), q)?;
    let request = InputRequest::Elicitation(ElicitRequest::new(params));
    Some(InputRequests::from([(q.request_id.clone(), request)]))
}

impl McpServer {
    /// `new_task`/`retry_task` for a client of the extension: the task, at once. A session
    /// client is also sent `notifications/tasks` as its state changes.
    pub(super) async fn created(
        &self,
        task: &Task,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CreateTaskResult, String> {
        if !super::waiting::stateless(ctx) {
            self.notify_task_changes(task, ctx.peer.clone());
        }
        let d = self.detailed(task).await?;
        Ok(CreateTaskResult::new(d.task))
    }

    /// `tasks/get`.
    pub(super) async fn task_get(&self, id: &str) -> Result<DetailedTask, ErrorData> {
        let task = self.known(id).await?;
        self.detailed(&task)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))
    }

    /// `tasks/update`: the client's answers to the task's question.
    pub(super) async fn task_update(
        &self,
        id: &str,
        answers: &InputResponses,
    ) -> Result<(), ErrorData> {
        self.known(id).await?;
        self.answer_inputs(id, answers, Decider::TaskUpdate)
            .await
            .map_err(|e| ErrorData::invalid_params(e, None))
    }

    /// `tasks/cancel`: cancels the boocoder task (a task that already ended stays as it is).
    pub(super) async fn task_cancel(&self, id: &str) -> Result<(), ErrorData> {
        let task = self.known(id).await?;
        if task.state.is_terminal() {
            return Ok(());
        }
        self.engine
            .cancel(id)
            .await
            .map(drop)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))
    }

    async fn known(&self, id: &str) -> Result<Task, ErrorData> {
        self.engine.task(id).await.map_err(|e| match e {
            crate::engine::EngineError::NotFound { .. } => {
                ErrorData::invalid_params(format!("unknown task `{id}`"), None)
            }
            other => ErrorData::internal_error(other.to_string(), None),
        })
    }

    /// The boocoder task as an MCP task: `working` (pending, running, or blocked with no
    /// question), `input_required` with the permission question as an elicitation,
    /// `completed` with what `check_task_status` answers, `failed` with the error and that
    /// status as its data, `cancelled`.
    async fn detailed(&self, task: &Task) -> Result<DetailedTask, String> {
        let payload = match task.state {
            TaskState::Completed => TaskPayload::Completed {
                result: self.final_result(task).await?,
            },
            TaskState::Failed => {
                let status = self.final_result(task).await?;
                let message = task.error.as_deref().unwrap_or("the task failed");
                let mut error = JsonObject::new();
                error.insert("code".into(), (-32000).into());
                error.insert("message".into(), format!("task failed: {message}").into());
                error.insert("data".into(), status.into());
                TaskPayload::Failed { error }
            }
            TaskState::Cancelled => TaskPayload::Cancelled,
            TaskState::Blocked => match question_requests(task) {
                Some(input_requests) => TaskPayload::InputRequired { input_requests },
                None => TaskPayload::Working,
            },
            TaskState::Pending | TaskState::Running => TaskPayload::Working,
        };
        let updated = [task.ended_at, task.started_at]
            .into_iter()
            .flatten()
            .chain([task.created_at])
            .max()
            .unwrap_or(task.created_at);
        let mut mcp = McpTask::new(
            task.id.clone(),
            McpStatus::Working,
            crate::domain::rfc3339(task.created_at),
            crate::domain::rfc3339(updated),
        )
        .with_poll_interval_ms(POLL_MS);
        if let Some(m) = self.status_message(task).await {
            mcp = mcp.with_status_message(m);
        }
        Ok(DetailedTask::new(mcp, payload))
    }

    /// The latest transcript line (the question while one is open, the error once failed,
    /// the summary once completed).
    async fn status_message(&self, task: &Task) -> Option<String> {
        let ended = match (&task.waiting_for, task.state) {
            (Some(q), _) => Some(q.question.clone()),
            (None, TaskState::Failed) => task.error.clone(),
            (None, TaskState::Completed) => task.summary.clone(),
            _ => None,
        };
        let line = match ended {
            Some(l) => l,
            None => self.engine.last_line(&task.id).await.ok().flatten()?,
        };
        let line = line.lines().next().unwrap_or("").trim().to_string();
        Some(crate::domain::head(&line, MESSAGE_MAX))
    }

    /// The `check_task_status` result, as the task's final result.
    async fn final_result(&self, task: &Task) -> Result<JsonObject, String> {
        let status = self.status_of(task).await?;
        let result = Status(status).result().map_err(|e| e.message.to_string())?;
        match serde_json::to_value(result) {
            Ok(serde_json::Value::Object(o)) => Ok(o),
            _ => Err("could not serialise the task's result".into()),
        }
    }

    /// `notifications/tasks` to a session client each time the task changes state or asks,
    /// until it ends or the client goes away.
    fn notify_task_changes(&self, task: &Task, peer: Peer<RoleServer>) {
        let server = self.clone();
        let id = task.id.clone();
        let mut seen = shown(task);
        tokio::spawn(async move {
            loop {
                let last = seen.clone();
                let changed = move |t: &Task| shown(t) != last;
                let Ok(task) = server
                    .engine
                    .wait_until(&id, crate::engine::MAX_WAIT, changed, None)
                    .await
                else {
                    return;
                };
                let now = shown(&task);
                if now != seen {
                    let Ok(d) = server.detailed(&task).await else {
                        return;
                    };
                    let n = TaskStatusNotification::new(TaskStatusNotificationParams::from(d));
                    if peer
                        .send_notification(ServerNotification::TaskStatusNotification(n))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    seen = now;
                }
                if task.state.is_terminal() || peer.is_transport_closed() {
                    return;
                }
            }
        });
    }
}

/// What a status notification reports a change of: the state and the open question.
fn shown(t: &Task) -> (TaskState, Option<String>) {
    (
        t.state,
        t.waiting_for.as_ref().map(|q| q.request_id.clone()),
    )
}
