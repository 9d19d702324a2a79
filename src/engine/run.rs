//! THE run path: every turn, whatever its backend, goes through `execute`. It prepares the
//! session's worktree, runs the backend, persists the transcript as it streams, queues the
//! diff as the session's pending change and records exactly one terminal state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Inner, Running, blocking};
use crate::backend::{BackendError, Turn, TurnEvent};
use crate::domain::{EventKind, Session, Task, TaskState, Usage, summarize};
use crate::store::{Claimed, Outcome};
use crate::worktree;

impl Inner {
    pub(super) fn register_running(&self, id: &str) -> CancellationToken {
        let token = self.shutdown.child_token();
        let mut map = match self.running.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.insert(
            id.to_string(),
            Running {
                token: token.clone(),
                reason: Arc::new(Mutex::new(None)),
            },
        );
        token
    }

    fn cancel_reason(&self, id: &str) -> String {
        let map = match self.running.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(id)
            .and_then(|r| r.reason.lock().ok().and_then(|s| s.clone()))
            .unwrap_or_else(|| "cancelled: the server shut down".into())
    }

    fn unregister(&self, id: &str) {
        if let Ok(mut m) = self.running.lock() {
            m.remove(id);
        }
    }
}

/// Run one claimed task to a terminal state. Never returns early without recording one: panics
/// and errors in the turn become `failed`.
#[tracing::instrument(skip_all, fields(task_id = %claimed.id()))]
pub(super) async fn execute(inner: &Arc<Inner>, claimed: Claimed, cancel: CancellationToken) {
    let task = match claimed {
        Claimed::Task(task) => *task,
        Claimed::Unreadable { id, error } => return fail_unreadable(inner, &id, &error).await,
    };
    let id = task.id.as_str();
    inner.publish(
        id,
        TaskState::Running,
        Some(format!("started on {}", task.provider)),
    );
    let began = std::time::Instant::now();
    let lock = inner.session_lock(&task.session_id);
    let _guard = lock.lock().await;

    // The session, read once per turn; creating its worktree fills in what it records.
    let mut session = match inner.store.session(&task.session_id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(format!("session `{}` is missing", task.session_id)),
        Err(e) => Err(e.to_string()),
    };
    let first_turn = session.as_ref().is_ok_and(|s| s.worktree_path.is_none());
    let usage = Arc::new(Mutex::new(Usage::default()));
    let turn = std::panic::AssertUnwindSafe(run_turn(
        inner,
        &task,
        &mut session,
        cancel.clone(),
        usage.clone(),
    ))
    .catch_unwind()
    .await;
    let usage = usage.lock().map(|u| *u).unwrap_or_default();
    // Whatever happened, the worktree is the truth: queue its cumulative diff.
    let ran = began.elapsed();
    let files = queue_diff_or_warn(inner, id, &session).await;
    let diffed = began.elapsed();
    let outcome = outcome_of(inner, id, turn, &cancel);
    record(inner, id, outcome, usage, &files).await;
    // Where a turn's time goes, for tuning (`RUST_LOG=boocoder=debug`).
    tracing::debug!(
        turn_ms = ran.as_secs_f64() * 1e3,
        diff_ms = (diffed - ran).as_secs_f64() * 1e3,
        record_ms = (began.elapsed() - diffed).as_secs_f64() * 1e3,
        first_turn,
        "turn timings"
    );
    if let Ok(s) = &session
        && first_turn
        && s.worktree_path.is_some()
    {
        // after the turn, so making the next spare does not slow this one down
        inner.session_started(Path::new(&s.project_path));
    }
    // why: a turn that failed before its backend ran never took its sampler.
    drop(inner.backends.samplers.take(id));
    inner.questions.forget(id);
    inner.unregister(id);
}

/// A claimed row that cannot be read still ends `failed`, so it is not claimed forever.
async fn fail_unreadable(inner: &Inner, id: &str, error: &crate::store::StoreError) {
    tracing::error!(%error, "claimed task cannot be read");
    let outcome = Outcome::Failed {
        error: "internal error: the claimed task could not be read".into(),
        summary: None,
    };
    record(inner, id, outcome, Usage::default(), &[]).await;
    inner.unregister(id);
}

/// The session's pending change after the turn; a failure to compute it is logged, and the
/// turn's outcome is recorded all the same.
async fn queue_diff_or_warn(
    inner: &Inner,
    id: &str,
    session: &Result<Session, String>,
) -> Vec<crate::domain::FileChange> {
    let Ok(session) = session else {
        return Vec::new();
    };
    match queue_diff(inner, id, session).await {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "could not compute the pending change");
            Vec::new()
        }
    }
}

/// The terminal state a turn's result (or panic) maps to.
fn outcome_of(
    inner: &Inner,
    id: &str,
    turn: std::thread::Result<Result<String, BackendError>>,
    cancel: &CancellationToken,
) -> Outcome {
    match turn {
        // why: a cancel that raced the turn's end wins; the caller was told it would stop.
        Ok(Ok(_)) if cancel.is_cancelled() => Outcome::Cancelled {
            reason: inner.cancel_reason(id),
        },
        Ok(Ok(message)) => Outcome::Completed {
            summary: summarize(&message),
            final_message: message,
        },
        Ok(Err(BackendError::Cancelled)) => Outcome::Cancelled {
            reason: inner.cancel_reason(id),
        },
        Ok(Err(e)) if cancel.is_cancelled() => {
            tracing::debug!(error = %e, "turn ended with an error after cancellation");
            Outcome::Cancelled {
                reason: inner.cancel_reason(id),
            }
        }
        Ok(Err(BackendError::Stopped { reason, partial })) => Outcome::Failed {
            error: reason,
            summary: (!partial.trim().is_empty()).then(|| summarize(&partial)),
        },
        Ok(Err(e)) => Outcome::Failed {
            error: e.to_string(),
            summary: None,
        },
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, "turn panicked");
            Outcome::Failed {
                error: format!("internal error while running the turn: {what}"),
                summary: None,
            }
        }
    }
}

async fn record(
    inner: &Inner,
    id: &str,
    outcome: Outcome,
    usage: Usage,
    files: &[crate::domain::FileChange],
) {
    let state = match &outcome {
        Outcome::Completed { .. } => TaskState::Completed,
        Outcome::Failed { .. } => TaskState::Failed,
        Outcome::Cancelled { .. } => TaskState::Cancelled,
    };
    // The final write is retried: a task must not stay `running` because of a busy database.
    for attempt in 0..5u32 {
        match inner.store.finish_task(id, &outcome, usage, files).await {
            Ok(true) => {
                tracing::info!(state = %state, "task finished");
                inner.publish(id, state, Some(format!("task {state}")));
                return;
            }
            Ok(false) => {
                tracing::warn!("task was already terminal; outcome not recorded");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "recording the task outcome failed");
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    tracing::error!("could not record the task outcome; start-up recovery will fail it");
}

/// Prepare the worktree and run the backend; returns the agent's final message.
async fn run_turn(
    inner: &Arc<Inner>,
    task: &Task,
    session: &mut Result<Session, String>,
    cancel: CancellationToken,
    usage: Arc<Mutex<Usage>>,
) -> Result<String, BackendError> {
    let session = session
        .as_mut()
        .map_err(|e| BackendError::internal("could not read the session", e.clone()))?;
    let began = std::time::Instant::now();
    let cwd = ensure_worktree(inner, session).await?;
    let worktree_ms = began.elapsed().as_secs_f64() * 1e3;
    let backend = inner
        .registry()
        .backend(&task.provider, &inner.backends)
        .map_err(|e| BackendError::Misconfigured(e.to_string()))?;

    let (tx, rx) = mpsc::channel(256);
    let persister = tokio::spawn(persist_events(
        inner.clone(),
        task.id.clone(),
        rx,
        usage.clone(),
    ));
    if let Err(e) = inner
        .store
        .append_events(&task.id, &[(EventKind::Prompt, task.prompt.clone(), None)])
        .await
    {
        tracing::warn!(error = %e, "could not record the prompt");
    }
    let project = PathBuf::from(&session.project_path);
    super::bootstrap::prepare(inner, &task.id, &project, &cwd, &cancel).await?;
    let prepared_ms = began.elapsed().as_secs_f64() * 1e3;
    let turn = Turn {
        task_id: task.id.clone(),
        session_id: task.session_id.clone(),
        prompt: task.prompt.clone(),
        cwd,
        model: task.model.clone(),
        mode: task.mode.clone(),
        permission: task.permission,
        asker: Some(Arc::new(super::questions::EngineAsker(inner.clone()))),
        options: task.options.clone(),
    };
    // Past its budget the turn is stopped like a cancel, but fails (its edits are kept).
    let stop = cancel.child_token();
    let (result, over) = super::budget::bounded(
        task.budget,
        usage.clone(),
        &stop,
        backend.run(turn, tx, stop.clone()),
    )
    .await;
    let backend_ms = began.elapsed().as_secs_f64() * 1e3;
    // The sender is gone with the backend's future; wait for the last events to be stored.
    if let Err(e) = persister.await {
        tracing::warn!(error = %e, "transcript writer failed");
    }
    tracing::debug!(
        worktree_ms,
        prepared_ms,
        backend_ms,
        events_ms = began.elapsed().as_secs_f64() * 1e3,
        "turn steps"
    );
    if let Some(reason) = over
        && !cancel.is_cancelled()
    {
        let partial = match result {
            Ok(o) => o.final_message,
            Err(BackendError::Stopped { partial, .. }) => partial,
            Err(_) => String::new(),
        };
        return Err(BackendError::Stopped { reason, partial });
    }
    let outcome = result?;
    if let Ok(mut u) = usage.lock()
        && *u == Usage::default()
    {
        *u = outcome.usage;
    }
    Ok(outcome.final_message)
}

/// The session's worktree, created on its first turn (and recorded in `session` too).
async fn ensure_worktree(
    inner: &Arc<Inner>,
    session: &mut Session,
) -> Result<PathBuf, BackendError> {
    if let Some(path) = &session.worktree_path {
        let path = PathBuf::from(path);
        if path.is_dir() {
            inner.settle_rebase(session).await.map_err(|e| {
                BackendError::internal("could not finish the session's interrupted rebase", e)
            })?;
            return Ok(path);
        }
        return Err(BackendError::WorktreeGone(path));
    }
    let project = PathBuf::from(&session.project_path);
    let wt = inner.config.worktrees_dir().join(&session.id);
    let branch = format!("boocoder/{}", session.id);
    // (a spare from the pool is taken when the session is submitted, not here: its id is the
    // session's)
    let (p, w, b) = (project.clone(), wt.clone(), branch.clone());
    let info = blocking(move || worktree::create(&p, &w, &b))
        .await
        .map_err(|e| BackendError::internal("could not create the worktree", e))?;
    let path = info.path.to_string_lossy().into_owned();
    inner
        .store
        .set_session_worktree(
            &session.id,
            Some(&path),
            Some(&info.branch),
            Some(&info.base_commit),
            &inner.config.host,
        )
        .await
        .map_err(|e| BackendError::internal("could not record the session's worktree", e))?;
    session.worktree_path = Some(path);
    session.branch = Some(info.branch);
    session.base_commit = Some(info.base_commit);
    session.host = Some(inner.config.host.clone());
    Ok(info.path)
}

/// Snapshot the worktree against the session base and make it the session's pending change.
/// Every end of a turn comes here (completed, failed, cancelled, or crashed and recovered), so
/// whatever the agent wrote is offered for review and never silently lost.
pub(super) async fn queue_diff(
    inner: &Inner,
    task_id: &str,
    session: &Session,
) -> Result<Vec<crate::domain::FileChange>, Box<dyn std::error::Error + Send + Sync>> {
    let (Some(wt), Some(base)) = (&session.worktree_path, &session.base_commit) else {
        return Ok(Vec::new());
    };
    let wt = PathBuf::from(wt);
    if !wt.is_dir() {
        return Ok(Vec::new());
    }
    // A worktree half way to a rebased change is no state to snapshot.
    inner.settle_rebase(session).await?;
    let b2 = base.clone();
    let snap = blocking(move || worktree::snapshot(&wt, &b2)).await?;
    inner
        .store
        .replace_pending(
            &session.id,
            task_id,
            base,
            &snap.tree,
            &snap.diff.patch,
            &snap.diff.files,
        )
        .await?;
    Ok(snap.diff.files)
}

/// Drain backend events into the transcript, merging adjacent chunks of the same kind so a
/// token-streaming agent produces readable rows, not one row per token.
async fn persist_events(
    inner: Arc<Inner>,
    task_id: String,
    mut rx: mpsc::Receiver<TurnEvent>,
    usage: Arc<Mutex<Usage>>,
) {
    let mut batch: Vec<(EventKind, String, Option<serde_json::Value>)> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < 256 {
            match rx.try_recv() {
                Ok(ev) => pending.push(ev),
                Err(_) => break,
            }
        }
        for ev in pending {
            match &ev {
                TurnEvent::Blocked(_) => set_blocked(&inner, &task_id, true).await,
                TurnEvent::Unblocked(_) => set_blocked(&inner, &task_id, false).await,
                _ => {}
            }
            if let TurnEvent::Usage(u) = &ev
                && let Ok(mut total) = usage.lock()
            {
                total.add(*u);
            }
            let (kind, text, data) = ev.into_record();
            let data = data.map(cap_data);
            let flowing = data.is_none()
                && matches!(
                    kind,
                    EventKind::Text | EventKind::Reasoning | EventKind::Stderr
                );
            if !flowing {
                batch.push((kind, cap_text(text), data));
                continue;
            }
            // Streamed text fills the previous entry of its kind up to the cap and goes on
            // in new entries: nothing is lost, and no entry outgrows a page.
            let mut rest = text.as_str();
            if let Some((k, t, None)) = batch.last_mut()
                && *k == kind
            {
                let (head, tail) = split_at_most(rest, ENTRY_CAP.saturating_sub(t.len()));
                t.push_str(head);
                rest = tail;
            }
            while !rest.is_empty() {
                let (head, tail) = split_at_most(rest, ENTRY_CAP);
                batch.push((kind, head.to_string(), None));
                rest = tail;
            }
        }
        let progress = batch
            .iter()
            .rev()
            .find(|(k, _, _)| {
                matches!(
                    k,
                    EventKind::Text | EventKind::ToolCall | EventKind::Plan | EventKind::Notice
                )
            })
            .and_then(|(_, t, _)| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            });
        if let Err(e) = inner.store.append_events(&task_id, &batch).await {
            tracing::warn!(error = %e, "could not store transcript entries");
        }
        batch.clear();
        if let Some(line) = progress {
            inner.publish(&task_id, TaskState::Running, Some(line));
        }
    }
}

/// Largest transcript entry text, in bytes: streamed text continues in the next entry, other
/// text is cut with a note. `get_task_output` pages by bytes, and an entry must fit a page.
const ENTRY_CAP: usize = 64 << 10;
/// Longest string kept inside an entry's structured detail, and the most detail kept at all.
const DATA_STRING_CAP: usize = 16 << 10;

/// `text` split at a character boundary so the head has at most `max` bytes (and, when `max`
/// is smaller than the first character, is empty).
fn split_at_most(text: &str, max: usize) -> (&str, &str) {
    if text.len() <= max {
        return (text, "");
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.split_at(at)
}

fn cap_text(text: String) -> String {
    if text.len() <= ENTRY_CAP {
        return text;
    }
    let (head, tail) = split_at_most(&text, ENTRY_CAP);
    format!("{head} [… {} more bytes not stored]", tail.len())
}

/// Structured detail (tool input and output) within bounds: long strings are cut, and detail
/// that is still too large is replaced by its size.
fn cap_data(data: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn shrink(v: &mut Value) {
        match v {
            Value::String(s) if s.len() > DATA_STRING_CAP => {
                let (head, tail) = split_at_most(s, DATA_STRING_CAP);
                *s = format!("{head} [… {} more bytes not stored]", tail.len());
            }
            Value::Array(items) => items.iter_mut().for_each(shrink),
            Value::Object(map) => map.values_mut().for_each(shrink),
            _ => {}
        }
    }
    let size = data.to_string().len();
    if size <= ENTRY_CAP {
        return data;
    }
    let mut data = data;
    shrink(&mut data);
    if data.to_string().len() <= ENTRY_CAP {
        data
    } else {
        serde_json::json!({ "not_stored": format!("{size} bytes of detail") })
    }
}

/// A permission question waits on a human: the task shows `blocked` until it is answered.
async fn set_blocked(inner: &Inner, task_id: &str, blocked: bool) {
    let to = if blocked {
        TaskState::Blocked
    } else {
        TaskState::Running
    };
    match inner.store.set_state(task_id, to).await {
        Ok(true) => inner.publish(task_id, to, None),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not record the blocked state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_capped_by_bytes() {
        let (head, tail) = split_at_most("aé", 2);
        assert_eq!((head, tail), ("a", "é"));
        let cut = cap_text("x".repeat(ENTRY_CAP + 10));
        assert!(cut.len() < ENTRY_CAP + 64 && cut.ends_with("[… 10 more bytes not stored]"));
        let data = cap_data(serde_json::json!({"id": "t", "output": "y".repeat(200 << 10)}));
        assert!(data.to_string().len() <= ENTRY_CAP);
        assert_eq!(data["id"], "t");
        let many: Vec<String> = (0..100).map(|_| "z".repeat(10 << 10)).collect();
        let data = cap_data(serde_json::json!(many));
        assert!(
            data.to_string().len() <= ENTRY_CAP,
            "{}",
            data.to_string().len()
        );
    }
}
