//! Where a verb runs: this machine's store and engine, or a running server (`--url`) through
//! its MCP tools. Both answer with the MCP result types, so one set of renderers serves both
//! and a verb cannot say one thing locally and another remotely.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use boocoder::config::Config;
use boocoder::domain::{Decider, Task, TaskState};
use boocoder::engine::GroupBy;
use boocoder::engine::{
    ClientRoots, Engine, EngineError, ListRequest, NewTask, OutputRequest, TaskUpdate,
};
use boocoder::mcp::client::{RemoteClient, RemoteError};
use boocoder::mcp::types::{
    ApplyOutcome, PermissionAnswer, RebaseOutcome, TaskLine, TaskList, TaskOutput, TaskStatus,
    UsageStats,
};
use boocoder::providers::snapshot::ProvidersSnapshot;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::render;

pub enum Target {
    /// A store client, or for `run --wait` a full engine that dispatches until the task ends.
    Local {
        engine: Engine,
        dispatching: bool,
        /// Task updates, subscribed before anything is submitted: a quick task's progress
        /// lines would otherwise be gone before the wait begins.
        updates: Option<broadcast::Receiver<TaskUpdate>>,
    },
    Remote {
        client: RemoteClient,
        /// Progress lines of the call in flight (the waited-on task's latest transcript line).
        progress: mpsc::UnboundedReceiver<String>,
        url: String,
    },
}

/// Why an apply wrote nothing.
pub enum Refusal {
    /// The checkout changed under these files: (path, reason).
    Conflict(Vec<(String, String)>),
    /// The server's tool error; it names the files in its text.
    Remote(String),
}

/// One row of `ls`: the listing line, and how long the task took when the target knows
/// (`list_tasks` carries no timings, so a remote listing cannot say).
pub struct Listed {
    pub line: TaskLine,
    pub took: Option<String>,
}

impl Target {
    pub async fn local(config: Config, dispatching: bool) -> Result<Target> {
        let engine = if dispatching {
            Engine::start(config).await?
        } else {
            Engine::open_client(config).await?
        };
        let updates = dispatching.then(|| engine.subscribe());
        Ok(Target::Local {
            engine,
            dispatching,
            updates,
        })
    }

    pub async fn remote(url: &str, token: Option<&str>) -> Result<Target> {
        let (client, progress) = RemoteClient::connect(url, token).await?;
        Ok(Target::Remote {
            client,
            progress,
            url: url.to_string(),
        })
    }

    /// Stop what the target started: the dispatching engine, or the MCP session.
    pub async fn finish(self) {
        match self {
            Target::Local {
                engine,
                dispatching: true,
                ..
            } => engine.shutdown().await,
            Target::Local { .. } => {}
            Target::Remote { client, .. } => client.close().await,
        }
    }

    /// The server answering a remote target ("name version (MCP …) at URL").
    pub fn server(&self) -> Option<String> {
        match self {
            Target::Local { .. } => None,
            Target::Remote { client, url, .. } => Some(format!("{} at {url}", client.server())),
        }
    }

    /// Whether a queued task would wait for a server to start (no node runs on this store).
    pub async fn nobody_dispatches(&self) -> Result<bool> {
        match self {
            Target::Local {
                engine,
                dispatching,
                ..
            } => Ok(!dispatching && engine.live_nodes().await?.is_empty()),
            Target::Remote { .. } => Ok(false),
        }
    }

    pub async fn submit(&self, req: NewTask) -> Result<TaskStatus> {
        match self {
            Target::Local { engine, .. } => Ok(TaskStatus::from_task(&engine.submit(req).await?)),
            Target::Remote { client, .. } => {
                let args = json!({"prompt": req.prompt, "agent": req.agent, "model": req.model,
                    "mode": req.mode, "project": req.project, "session_id": req.session_id});
                Ok(client.call("new_task", args).await?)
            }
        }
    }

    /// Returns once `id` has probably changed (a new transcript line or state): a running
    /// server's progress notification (`--url`), or a short pause for a store shared with
    /// another process.
    pub async fn until_changed(&mut self, id: &str) -> Result<()> {
        match self {
            Target::Local { .. } => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                Ok(())
            }
            Target::Remote {
                client, progress, ..
            } => {
                let wait = client.call::<TaskStatus>(
                    "check_task_status",
                    json!({"task_id": id, "wait_seconds": 20}),
                );
                tokio::select! {
                    s = wait => { s?; }
                    Some(_) = progress.recv() => {}
                }
                Ok(())
            }
        }
    }

    /// Usage statistics grouped by `by` (`agent`, `project`, `day`, `parent`).
    pub async fn stats(&self, by: &str, since: Option<String>) -> Result<UsageStats> {
        match self {
            Target::Local { engine, .. } => {
                let group_by: GroupBy = serde_json::from_value(json!(by))?;
                let groups = engine.usage_stats(group_by, since.as_deref()).await?;
                Ok(UsageStats {
                    group_by,
                    groups,
                    note: boocoder::mcp::USAGE_NOTE.into(),
                })
            }
            Target::Remote { client, .. } => {
                let args = json!({"group_by": by, "since": since});
                Ok(client.call("usage_stats", args).await?)
            }
        }
    }

    /// A task and everything delegated under it, in reading order, with depths.
    pub async fn tree(&self, id: &str) -> Result<Vec<TaskLine>> {
        match self {
            Target::Local { engine, .. } => Ok(TaskList::from_tree(&engine.tree(id).await?).tasks),
            Target::Remote { client, .. } => {
                let args = json!({"parent_task_id": id, "tree": true});
                let list: TaskList = client.call("list_tasks", args).await?;
                Ok(list.tasks)
            }
        }
    }

    /// Run a failed or cancelled task again (optionally with an amended prompt).
    pub async fn retry(&self, id: &str, prompt: Option<String>) -> Result<TaskStatus> {
        match self {
            Target::Local { engine, .. } => Ok(TaskStatus::from_task(
                &engine.retry(id, prompt, Default::default()).await?,
            )),
            Target::Remote { client, .. } => {
                let args = json!({"task_id": id, "prompt": prompt});
                Ok(client.call("retry_task", args).await?)
            }
        }
    }

    /// Wait until `task` ends, showing progress on stderr; Ctrl-C cancels it.
    pub async fn wait(&mut self, task: &TaskStatus) -> Result<TaskStatus> {
        match self {
            Target::Local {
                engine, updates, ..
            } => {
                let updates = updates.take().unwrap_or_else(|| engine.subscribe());
                Ok(TaskStatus::from_task(
                    &wait_local(engine, updates, task).await?,
                ))
            }
            Target::Remote {
                client, progress, ..
            } => wait_remote(client, &task.task_id, progress).await,
        }
    }

    pub async fn list(
        &self,
        states: Vec<TaskState>,
        limit: u32,
        session: Option<String>,
    ) -> Result<Vec<Listed>> {
        match self {
            Target::Local { engine, .. } => {
                let page = engine
                    .list(ListRequest {
                        states,
                        session_id: session,
                        limit: Some(limit),
                        ..Default::default()
                    })
                    .await?;
                Ok(page
                    .tasks
                    .iter()
                    .map(|t| Listed {
                        line: TaskLine::from_task(t),
                        took: Some(render::duration(t)),
                    })
                    .collect())
            }
            Target::Remote { client, .. } => {
                // the server reads `needs_attention` as blocked and failed, as here
                let state = match states.as_slice() {
                    [] => None,
                    [one] => Some(one.as_str()),
                    _ => Some(boocoder::domain::NEEDS_ATTENTION),
                };
                let args = json!({"state": state, "limit": limit, "session_id": session});
                let page: TaskList = client.call("list_tasks", args).await?;
                Ok(page
                    .tasks
                    .into_iter()
                    .map(|line| Listed { line, took: None })
                    .collect())
            }
        }
    }

    /// One page of a task's output.
    pub async fn output(&self, req: OutputRequest) -> Result<TaskOutput> {
        match self {
            Target::Local { engine, .. } => Ok(TaskOutput::from_page(engine.output(req).await?)),
            Target::Remote { client, .. } => {
                let args = json!({"task_id": req.task_id, "after_seq": req.after_seq,
                    "max_events": req.max_events, "diff_offset": req.diff_offset,
                    "max_diff_bytes": req.max_diff_bytes});
                Ok(client.call("get_task_output", args).await?)
            }
        }
    }

    /// Every file a task's status counts (the status names only the largest).
    pub async fn files(&self, id: &str) -> Result<Vec<boocoder::domain::FileChange>> {
        let o = self
            .output(OutputRequest {
                task_id: id.to_string(),
                after_seq: Some(i64::MAX),
                max_events: Some(1),
                max_diff_bytes: Some(0),
                ..Default::default()
            })
            .await?;
        Ok(o.files)
    }

    /// Apply (or with `dry_run` check) a task's or session's pending change.
    pub async fn apply(&self, id: &str, dry_run: bool) -> Result<Result<ApplyOutcome, Refusal>> {
        match self {
            Target::Local { engine, .. } => {
                match engine.apply(id, dry_run, &ClientRoots::default()).await {
                    Ok(r) => {
                        let result = if r.dry_run { "would_apply" } else { "applied" };
                        Ok(Ok(ApplyOutcome::new(r, result)))
                    }
                    Err(EngineError::Conflict(report)) => Ok(Err(Refusal::Conflict(
                        report
                            .files
                            .into_iter()
                            .map(|f| (f.path, f.reason))
                            .collect(),
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
            Target::Remote { client, .. } => {
                let mut args = change_target(id);
                args["dry_run"] = json!(dry_run);
                match client.call("apply_pending", args).await {
                    Ok(o) => Ok(Ok(o)),
                    Err(RemoteError::Tool(msg)) => Ok(Err(Refusal::Remote(msg))),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Merge a session's pending change onto the checkout's current files.
    pub async fn rebase(&self, id: &str) -> Result<RebaseOutcome> {
        match self {
            Target::Local { engine, .. } => Ok(RebaseOutcome::new(
                engine.rebase(id, &ClientRoots::default()).await?,
            )),
            Target::Remote { client, .. } => {
                Ok(client.call("rebase_pending", change_target(id)).await?)
            }
        }
    }

    pub async fn discard(&self, id: &str) -> Result<ApplyOutcome> {
        match self {
            Target::Local { engine, .. } => {
                Ok(ApplyOutcome::new(engine.discard(id).await?, "discarded"))
            }
            Target::Remote { client, .. } => {
                Ok(client.call("discard_pending", change_target(id)).await?)
            }
        }
    }

    /// Answer task `id`'s open permission question with the option whose id, label or kind
    /// is `choice`.
    pub async fn answer(&self, id: &str, choice: &str) -> Result<PermissionAnswer> {
        let q = match self {
            Target::Local { engine, .. } => engine.task(id).await?.waiting_for,
            Target::Remote { client, .. } => {
                let s: TaskStatus = client
                    .call("check_task_status", json!({"task_id": id}))
                    .await?;
                s.waiting_for
            }
        };
        let Some(q) = q else {
            bail!("task {id} is not waiting for a permission answer");
        };
        let wanted = choice.trim().to_lowercase();
        let Some(option) = q
            .options
            .iter()
            .find(|o| o.id == choice || o.label.to_lowercase() == wanted || o.kind == wanted)
        else {
            let offered: Vec<_> = q
                .options
                .iter()
                .map(|o| format!("{} ({})", o.id, o.label))
                .collect();
            bail!(
                "`{choice}` is not an option; choose one of {}",
                offered.join(", ")
            );
        };
        match self {
            Target::Local { engine, .. } => Ok(PermissionAnswer::from(
                engine
                    .answer_permission(id, &q.request_id, &option.id, Decider::Cli)
                    .await?,
            )),
            Target::Remote { client, .. } => Ok(client
                .call(
                    "answer_permission",
                    json!({"task_id": id, "request_id": q.request_id, "option_id": option.id}),
                )
                .await?),
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<TaskStatus> {
        match self {
            Target::Local { engine, .. } => Ok(TaskStatus::from_task(&engine.cancel(id).await?)),
            Target::Remote { client, .. } => {
                Ok(client.call("cancel_task", json!({"task_id": id})).await?)
            }
        }
    }

    /// Close a session; returns its id.
    pub async fn close_session(&self, id: &str, force: bool) -> Result<String> {
        match self {
            Target::Local { engine, .. } => Ok(engine.close_session(id, force).await?.id),
            Target::Remote { .. } => bail!(
                "`close` runs on the server's machine; remotely, use `apply`/`discard` and then close there"
            ),
        }
    }

    /// The provider table; `refresh` probes every provider again.
    pub async fn providers(&self, refresh: bool) -> Result<ProvidersSnapshot> {
        match self {
            Target::Local { engine, .. } => Ok(engine.probe_providers_now(refresh).await),
            Target::Remote { client, .. } => {
                let tool = if refresh {
                    "refresh_providers"
                } else {
                    "list_providers"
                };
                Ok(client.call(tool, json!({})).await?)
            }
        }
    }
}

/// `apply_pending`/`rebase_pending`/`discard_pending` name a change by session id or by any
/// task id.
fn change_target(id: &str) -> Value {
    if id.starts_with("s-") {
        json!({ "session_id": id })
    } else {
        json!({ "task_id": id })
    }
}

async fn wait_local(
    engine: &Engine,
    mut updates: broadcast::Receiver<TaskUpdate>,
    task: &TaskStatus,
) -> Result<Task> {
    let id = &task.task_id;
    let mut progress = render::Progress::new();
    let mut state = task.state;
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    let mut reread = tokio::time::interval(Duration::from_secs(1));
    let mut cancelled = false;
    let mut interrupt = super::interrupts()?;
    loop {
        tokio::select! {
            u = updates.recv() => {
                if let Ok(u) = u && &u.task_id == id {
                    state = u.state;
                    progress.update(state, u.message.as_deref());
                    if state.is_terminal() { break; }
                }
            }
            _ = tick.tick() => progress.update(state, None),
            _ = reread.tick() => {
                state = engine.task(id).await?.state;
                if state.is_terminal() { break; }
            }
            _ = interrupt.recv(), if !cancelled => {
                cancelled = true;
                progress.finish();
                eprintln!("cancelling {id} …");
                if engine.cancel(id).await?.state.is_terminal() { break; }
            }
        }
    }
    progress.finish();
    Ok(engine.task(id).await?)
}

async fn wait_remote(
    client: &RemoteClient,
    id: &str,
    progress: &mut mpsc::UnboundedReceiver<String>,
) -> Result<TaskStatus> {
    let mut display = render::Progress::new();
    let mut cancelled = false;
    let mut interrupt = super::interrupts()?;
    loop {
        let call = client.call::<TaskStatus>(
            "check_task_status",
            json!({"task_id": id, "wait_seconds": 20}),
        );
        tokio::pin!(call);
        let status = loop {
            tokio::select! {
                s = &mut call => break s?,
                Some(line) = progress.recv() => display.update(TaskState::Running, Some(&line)),
                _ = tokio::time::sleep(Duration::from_millis(120)) => display.update(TaskState::Running, None),
                _ = interrupt.recv(), if !cancelled => {
                    cancelled = true;
                    display.finish();
                    eprintln!("cancelling {id} …");
                    client.call::<TaskStatus>("cancel_task", json!({"task_id": id})).await?;
                }
            }
        };
        if status.state.is_terminal() {
            display.finish();
            let _ = std::io::stderr().flush();
            return Ok(status);
        }
    }
}
