//! The one seam between the engine and whatever runs a turn. Every backend (one-shot CLI, ACP,
//! native) gets a [`Turn`], streams [`TurnEvent`]s and returns a [`TurnOutcome`] through
//! [`Backend::run`]; the engine owns persistence, worktrees and notifications.

pub mod acp;
pub mod native;
pub mod oneshot;
pub mod process;
mod shared;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{EventKind, PermissionPolicy, Usage};

pub use shared::BackendShared;

/// One agent turn: what to do and where.
#[derive(Debug, Clone)]
pub struct Turn {
    pub task_id: String,
    pub session_id: String,
    pub prompt: String,
    /// The session's worktree; the agent's working directory.
    pub cwd: PathBuf,
    pub model: Option<String>,
    pub mode: Option<String>,
    /// Per-task permission policy (ACP); `None` means the provider's.
    pub permission: Option<PermissionPolicy>,
    /// Where a question under the `ask` policy goes (`None`: nobody can answer; it times
    /// out into a rejection).
    pub asker: Option<Arc<dyn Asker>>,
    /// Other session settings the agent advertises, by id (ACP).
    pub options: std::collections::BTreeMap<String, String>,
}

/// What a backend reports while it runs. The vocabulary is shared by all backends so the
/// transcript reads the same whichever agent produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    Text(String),
    Reasoning(String),
    ToolCall {
        id: String,
        title: String,
        kind: Option<String>,
        input: Option<serde_json::Value>,
    },
    ToolUpdate {
        id: String,
        status: Option<String>,
        output: Option<String>,
    },
    Plan(Vec<String>),
    Usage(Usage),
    Commands(Vec<String>),
    Stderr(String),
    Notice(String),
    /// The agent waits on a human decision (the question); the task shows `blocked`.
    Blocked(String),
    /// The decision was made (how); the task is `running` again.
    Unblocked(String),
}

impl TurnEvent {
    /// The transcript row this event becomes: kind, one readable line, structured detail.
    pub fn into_record(self) -> (EventKind, String, Option<serde_json::Value>) {
        use serde_json::json;
        match self {
            TurnEvent::Text(t) => (EventKind::Text, t, None),
            TurnEvent::Reasoning(t) => (EventKind::Reasoning, t, None),
            TurnEvent::ToolCall {
                id,
                title,
                kind,
                input,
            } => (
                EventKind::ToolCall,
                title,
                Some(json!({"id": id, "kind": kind, "input": input})),
            ),
            TurnEvent::ToolUpdate { id, status, output } => {
                let line = match (&status, &output) {
                    (Some(s), _) => format!("{id}: {s}"),
                    (None, _) => format!("{id}: updated"),
                };
                (
                    EventKind::ToolUpdate,
                    line,
                    Some(json!({"id": id, "status": status, "output": output})),
                )
            }
            TurnEvent::Plan(entries) => (
                EventKind::Plan,
                entries.join("; "),
                Some(json!({ "entries": entries })),
            ),
            TurnEvent::Usage(u) => (EventKind::Usage, u.describe(), Some(json!(u))),
            TurnEvent::Commands(c) => (
                EventKind::Commands,
                c.join(" "),
                Some(json!({ "commands": c })),
            ),
            TurnEvent::Stderr(t) => (EventKind::Stderr, t, None),
            TurnEvent::Notice(t) => (EventKind::Notice, t, None),
            TurnEvent::Blocked(q) => (
                EventKind::Notice,
                format!("waiting for a decision: {q}"),
                None,
            ),
            TurnEvent::Unblocked(d) => (EventKind::Notice, d, None),
        }
    }
}

/// Where a backend sends its events. Bounded, so a chatty agent is slowed rather than
/// growing memory without limit.
pub type EventSink = mpsc::Sender<TurnEvent>;

/// Forward an event to the engine. A closed channel means the engine stopped listening (the
/// turn is being torn down, which the backend notices through cancellation), so the event is
/// dropped.
pub async fn emit(events: &EventSink, ev: TurnEvent) {
    if events.send(ev).await.is_err() {
        tracing::debug!("transcript closed; event dropped");
    }
}

/// How a turn ended well.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOutcome {
    /// The agent's final message (the engine trims it to a summary).
    pub final_message: String,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent exited with {status}{}", stderr_suffix(.stderr_tail))]
    Exited { status: String, stderr_tail: String },
    #[error("agent timed out after {secs} s{}", stderr_suffix(.stderr_tail))]
    Timeout { secs: u64, stderr_tail: String },
    /// The agent sent nothing for the stall limit while a turn ran (and waited on nothing of
    /// ours); it was cancelled and stopped.
    #[error("agent stalled for {secs} s (nothing received from it){}", stderr_suffix(.stderr_tail))]
    Stalled { secs: u64, stderr_tail: String },
    #[error("cancelled")]
    Cancelled,
    /// The agent answered a protocol request with an error, or broke the protocol.
    #[error("agent error: {0}")]
    Agent(String),
    /// The task asked for something this backend cannot do; `field` names the argument.
    #[error("invalid `{field}`: {reason}")]
    InvalidRequest { field: &'static str, reason: String },
    /// The provider cannot run as set up (its command, its endpoint, the registry's refusal).
    #[error("{0}")]
    Misconfigured(String),
    /// boocoder's own machinery failed around the turn (store, worktree); `context` says
    /// what it was doing.
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The session's worktree vanished from disk; its turns cannot run any more.
    #[error("the session's worktree `{}` is gone; start a new session", .0.display())]
    WorktreeGone(PathBuf),
    /// The native loop could not read the session's stored conversation.
    #[error("could not load the conversation: {0}")]
    Conversation(String),
    /// The model endpoint failed for good (after retries); the message quotes the server.
    #[error("{0}")]
    Endpoint(String),
    /// The backend stopped the turn on purpose (a guard tripped): `reason` becomes the task
    /// error and `partial` what was achieved so far, so the caller gets a summary anyway.
    #[error("{reason}")]
    Stopped { reason: String, partial: String },
    #[error("agent I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl BackendError {
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BackendError {
        BackendError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub(crate) fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; last stderr lines:\n{tail}")
    }
}

/// What a backend may remember about a session between its turns (the native loop keeps its
/// conversation here). The engine implements it over the store, so backends never see SQL.
pub trait SessionMemory: Send + Sync {
    /// Items recorded for the session so far, oldest first.
    fn load<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<serde_json::Value>, String>>;
    /// Append items produced by `task_id`.
    fn append<'a>(
        &'a self,
        session_id: &'a str,
        task_id: &'a str,
        items: Vec<serde_json::Value>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// The conversation the session's agent of `provider_id` last had: an ACP agent's session
    /// id, or what a CLI agent keeps of its conversation (JSON). It outlives the process: a
    /// restarted server's agent loads or resumes it.
    fn acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    fn set_acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
        acp_session: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine's side of a permission question: recorded (`open`, before the task shows
/// `blocked`, so whoever sees it blocked sees the question), then offered at once on every
/// channel the task's caller has, settled by the first answer, rejected after `timeout`,
/// withdrawn when `cancel` fires. Never blocks anything but the asking agent request.
pub trait Asker: Send + Sync + std::fmt::Debug {
    /// Record the question; an error means nobody can see it (the caller rejects at once).
    fn open<'a>(
        &'a self,
        task_id: &'a str,
        question: &'a crate::domain::Question,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Offer the opened question and wait for its decision.
    fn ask<'a>(
        &'a self,
        task_id: &'a str,
        question: crate::domain::Question,
        timeout: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'a, crate::domain::Decision>;
}

/// Runs turns: the one seam the engine calls, whichever transport the provider uses. Each
/// backend owns only its transport; it must return promptly once `cancel` fires (with
/// [`BackendError::Cancelled`]) and leave no process behind.
/// How long work made ahead of need (a spare worktree, a pre-started agent) waits after the
/// turn that used the previous one: on a small machine starting it at once competes with that
/// turn's last steps (its diff, its answer to the caller) for the CPU.
pub const YIELD_TO_CALLER: std::time::Duration = std::time::Duration::from_millis(25);

pub enum Backend {
    Cli(oneshot::OneShotBackend),
    Acp(acp::AcpBackend),
    Native(native::NativeBackend),
}

impl Backend {
    pub async fn run(
        &self,
        turn: Turn,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<TurnOutcome, BackendError> {
        match self {
            Backend::Cli(b) => b.run(turn, events, cancel).await,
            Backend::Acp(b) => b.run(turn, events, cancel).await,
            Backend::Native(b) => b.run(turn, events, cancel).await,
        }
    }
}
