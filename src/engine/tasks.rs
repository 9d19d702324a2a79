//! Reading and stopping tasks: get, wait, list, output pages and cancel.

use std::time::Duration;

use tokio::sync::broadcast;

use super::requests::{self, ListRequest};
use super::{Engine, EngineError, MAX_WAIT, OutputPage, OutputRequest, Result, TaskListPage};
use crate::domain::{Task, TaskState};

impl Engine {
    pub async fn task(&self, id: &str) -> Result<Task> {
        self.inner
            .store
            .task(id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "task",
                id: id.into(),
            })
    }

    /// The task's latest transcript line a person would read as progress (text, tool call,
    /// plan or notice).
    pub async fn last_line(&self, id: &str) -> Result<Option<String>> {
        Ok(self.inner.store.last_event_text(id).await?)
    }

    /// Block until `done(task)` holds or `timeout` passes; returns the latest row either way.
    /// Progress lines are forwarded to `progress` as they arrive.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Task) -> bool,
        progress: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Task> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let task = self.task(id).await?;
            if done(&task) || tokio::time::Instant::now() >= deadline {
                return Ok(task);
            }
            // Re-read the row on every update of this task, and every second as a safety net
            // (updates from other processes do not arrive here).
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    u = rx.recv() => match u {
                        Ok(u) if u.task_id == id => {
                            if let (Some(p), Some(m)) = (progress, u.message) {
                                // why: a gone receiver means the caller stopped listening.
                                let _ = p.send(m);
                            }
                            break;
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = &mut tick => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    pub async fn list(&self, req: ListRequest) -> Result<TaskListPage> {
        requests::list(self, req).await
    }

    /// Stop a pending or running task. Returns the task once it is terminal (or after a short
    /// grace if the agent is slow to stop).
    pub async fn cancel(&self, id: &str) -> Result<Task> {
        let task = self.task(id).await?;
        if task.state.is_terminal() {
            return Err(EngineError::State(format!(
                "task `{id}` is already {}; nothing to cancel",
                task.state
            )));
        }
        if self
            .inner
            .store
            .cancel_pending(id, "cancelled by request")
            .await?
        {
            self.inner.publish(id, TaskState::Cancelled, None);
            return self.task(id).await;
        }
        // Running (or claimed a moment ago): signal its token; the run path records the end.
        // When another process runs it, leave a request that process picks up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.inner.signal_cancel(id, "cancelled by request")
                || self.inner.store.request_cancel(id).await?
            {
                break;
            }
            let t = self.task(id).await?;
            if t.state.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_until(id, Duration::from_secs(5), |t| t.state.is_terminal(), None)
            .await
    }

    pub async fn output(&self, req: OutputRequest) -> Result<OutputPage> {
        requests::output(self, req).await
    }
}
