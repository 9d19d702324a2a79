//! Row types as the database returns them, and their checked conversion into domain types.

use crate::domain::{
    ChangeStatus, EventKind, PendingChange, PermissionPolicy, Session, Task, TaskEvent, TaskState,
    Usage,
};

use super::{Result, StoreError};

#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
    id: String,
    project_path: String,
    session_id: String,
    parent_task_id: Option<String>,
    prompt: String,
    provider: String,
    model: Option<String>,
    mode: Option<String>,
    permission: Option<String>,
    state: String,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    summary: Option<String>,
    error: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    files: String,
    node_id: Option<String>,
    retry_of: Option<String>,
    max_tokens: Option<i64>,
    max_minutes: Option<i64>,
    usage: Option<String>,
    max_cost_usd: Option<f64>,
    options: Option<String>,
    waiting_for: Option<String>,
}

impl TaskRow {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn into_task(self) -> Result<Task> {
        let state = TaskState::parse(&self.state).ok_or_else(|| StoreError::Corrupt {
            table: "tasks",
            detail: format!("task {} has unknown state {:?}", self.id, self.state),
        })?;
        let permission = match &self.permission {
            None => None,
            Some(p) => Some(
                PermissionPolicy::parse(p).ok_or_else(|| StoreError::Corrupt {
                    table: "tasks",
                    detail: format!("task {} has unknown permission {p:?}", self.id),
                })?,
            ),
        };
        let files = serde_json::from_str(&self.files).map_err(|e| StoreError::Corrupt {
            table: "tasks",
            detail: format!("task {} files: {e}", self.id),
        })?;
        let usage = usage_of(
            &self.id,
            self.usage.as_deref(),
            self.input_tokens,
            self.output_tokens,
        )?;
        // An unreadable question only hides the question, never the task.
        let waiting_for = self
            .waiting_for
            .as_deref()
            .and_then(|q| serde_json::from_str(q).ok());
        let options = match &self.options {
            None => Default::default(),
            Some(o) => serde_json::from_str(o).map_err(|e| StoreError::Corrupt {
                table: "tasks",
                detail: format!("task {} options: {e}", self.id),
            })?,
        };
        Ok(Task {
            options,
            waiting_for,
            id: self.id,
            project_path: self.project_path,
            session_id: self.session_id,
            parent_task_id: self.parent_task_id,
            prompt: self.prompt,
            provider: self.provider,
            model: self.model,
            mode: self.mode,
            permission,
            state,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            summary: self.summary,
            error: self.error,
            usage,
            files,
            node_id: self.node_id,
            retry_of: self.retry_of,
            budget: crate::domain::Budget {
                max_tokens: self.max_tokens.map(|v| v.max(0) as u64),
                max_minutes: self.max_minutes.map(|v| v.max(0) as u64),
                max_cost_usd: self.max_cost_usd,
            },
        })
    }
}

/// A task's usage: the JSON column when the turn recorded one; before it existed (migration
/// 0010) only the two counts were kept, and 0 / 0 meant nothing was reported.
pub(super) fn usage_of(id: &str, json: Option<&str>, input: i64, output: i64) -> Result<Usage> {
    match json {
        Some(j) => serde_json::from_str(j).map_err(|e| StoreError::Corrupt {
            table: "tasks",
            detail: format!("task {id} usage: {e}"),
        }),
        None if input > 0 || output > 0 => {
            Ok(Usage::tokens(input.max(0) as u64, output.max(0) as u64))
        }
        None => Ok(Usage::default()),
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: String,
    project_path: String,
    provider: String,
    worktree_path: Option<String>,
    branch: Option<String>,
    base_commit: Option<String>,
    closed: i64,
    host: Option<String>,
}

impl SessionRow {
    pub(super) fn into_session(self) -> Session {
        Session {
            id: self.id,
            project_path: self.project_path,
            provider: self.provider,
            worktree_path: self.worktree_path,
            branch: self.branch,
            base_commit: self.base_commit,
            closed: self.closed != 0,
            host: self.host,
        }
    }
}

/// A transcript row read with its text cut to a prefix (and its detail left out when longer
/// than that), plus the full lengths, so a huge row never has to be loaded whole.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    seq: i64,
    kind: String,
    at: i64,
    text: String,
    text_chars: i64,
    data: Option<String>,
    data_chars: Option<i64>,
}

impl EventRow {
    pub(super) fn into_event(self) -> Result<StoredEvent> {
        let kind = EventKind::parse(&self.kind).ok_or_else(|| StoreError::Corrupt {
            table: "task_events",
            detail: format!("unknown event kind {:?}", self.kind),
        })?;
        let text_cut =
            usize::try_from(self.text_chars).is_ok_and(|n| n > self.text.chars().count());
        let data_cut = self.data.is_none() && self.data_chars.is_some();
        Ok(StoredEvent {
            event: TaskEvent {
                seq: self.seq,
                kind,
                at: self.at,
                text: self.text,
                data: self.data.and_then(|d| serde_json::from_str(&d).ok()),
            },
            text_cut,
            data_cut,
        })
    }
}

/// A transcript entry as [`crate::store::Store::events`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: TaskEvent,
    /// The text is only the row's first characters.
    pub text_cut: bool,
    /// The row's detail was too long to read and is left out.
    pub data_cut: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct ChangeRow {
    id: i64,
    session_id: String,
    task_id: String,
    base_commit: String,
    patch: Vec<u8>,
    files: String,
    status: String,
    updated_at: i64,
    tree: Option<String>,
}

impl ChangeRow {
    pub(super) fn into_change(self) -> Result<PendingChange> {
        let status = ChangeStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            table: "pending_changes",
            detail: format!("unknown status {:?}", self.status),
        })?;
        let files = serde_json::from_str(&self.files).map_err(|e| StoreError::Corrupt {
            table: "pending_changes",
            detail: format!("files: {e}"),
        })?;
        Ok(PendingChange {
            id: self.id,
            session_id: self.session_id,
            task_id: self.task_id,
            base_commit: self.base_commit,
            patch: self.patch,
            tree: self.tree,
            files,
            status,
            updated_at: self.updated_at,
        })
    }
}
