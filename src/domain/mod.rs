//! The engine's vocabulary: task states, tasks, transcript events, usage. Plain data, no IO,
//! so the store, the engine and the MCP edge all speak the same types.

mod choices;
pub use choices::{AgentSetting, Decider, Decision, Question, QuestionOption, check_settings};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::worktree::{FileChange, FileStatus};

/// Where a task is in its life. Stored as TEXT; `as_str`/`parse` are the only conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Queued, waiting for the dispatcher (or for an earlier turn of its session).
    Pending,
    /// An agent turn is in progress.
    Running,
    /// Running, but waiting on a human decision (a permission request).
    Blocked,
    /// The agent finished its turn; the diff (if any) is a pending change.
    Completed,
    /// The agent or the engine failed; `error` says why.
    Failed,
    /// Stopped by `cancel_task` or by server shutdown.
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Blocked,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// A task that has not ended: queued, running, or waiting on a person.
    pub const LIVE: [TaskState; 3] = [TaskState::Pending, TaskState::Running, TaskState::Blocked];

    /// A turn in flight on some node: running, or blocked on a permission question.
    pub const IN_FLIGHT: [TaskState; 2] = [TaskState::Running, TaskState::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Blocked => "blocked",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A state filter as callers write it: a state, or `needs_attention` (the inbox: tasks
    /// waiting on an answer and tasks that failed).
    pub fn parse_filter(s: &str) -> Option<Vec<TaskState>> {
        match s {
            NEEDS_ATTENTION => Some(vec![TaskState::Blocked, TaskState::Failed]),
            _ => TaskState::parse(s).map(|st| vec![st]),
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled => true,
            TaskState::Pending | TaskState::Running | TaskState::Blocked => false,
        }
    }

    /// The states a task may move to from `self`. Terminal states go nowhere: a completed
    /// task is never run again (a follow-up is a new task in the same session).
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        match self {
            Pending => matches!(next, Running | Cancelled | Failed),
            Running => matches!(next, Blocked | Completed | Failed | Cancelled),
            Blocked => matches!(next, Running | Completed | Failed | Cancelled),
            Completed | Failed | Cancelled => false,
        }
    }

    /// The states from which `next` may be entered; the store guards every transition with it.
    pub fn sources_of(next: TaskState) -> Vec<TaskState> {
        TaskState::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What boocoder answers when an ACP agent asks permission for a tool call. Every decision is
/// written to the transcript, whichever policy made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Select the agent's allow-once option. Safe enough by default: the agent works in an
    /// isolated worktree and nothing reaches the checkout before `apply_pending`.
    Allow,
    /// Reject every request.
    Deny,
    /// Mark the task `blocked` and wait for a decision; without one before the provider's
    /// timeout, deny.
    Ask,
}

impl PermissionPolicy {
    pub const ALL: [PermissionPolicy; 3] = [
        PermissionPolicy::Allow,
        PermissionPolicy::Deny,
        PermissionPolicy::Ask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PermissionPolicy::Allow => "allow",
            PermissionPolicy::Deny => "deny",
            PermissionPolicy::Ask => "ask",
        }
    }

    pub fn parse(s: &str) -> Option<PermissionPolicy> {
        PermissionPolicy::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The state filter naming blocked and failed tasks together.
pub const NEEDS_ATTENTION: &str = "needs_attention";

/// What an agent reported a turn (or a task, a session) consumed. Every field is absent when
/// the agent did not report it: an unknown is never shown as 0. Cached tokens are part of
/// the input, reasoning tokens part of the output, as the agents count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_tokens: Option<u64>,
    /// Input tokens read from the model's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cached_tokens: Option<u64>,
    /// Output tokens spent thinking.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reasoning_tokens: Option<u64>,
    /// Cost in US dollars, as the agent computed it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost_usd: Option<f64>,
    /// Tokens in the agent's context at its last report (some agents report only this).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub context_used: Option<u64>,
    /// The size of that context window.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub context_size: Option<u64>,
}

impl Usage {
    /// Input and output tokens as reported.
    pub fn tokens(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    /// Add a later report: counts and cost are summed (a side reported by either counts), the
    /// context is the latest one reported.
    pub fn add(&mut self, other: Usage) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                _ => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            }
        }
        self.input_tokens = sum(self.input_tokens, other.input_tokens);
        self.output_tokens = sum(self.output_tokens, other.output_tokens);
        self.cached_tokens = sum(self.cached_tokens, other.cached_tokens);
        self.reasoning_tokens = sum(self.reasoning_tokens, other.reasoning_tokens);
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        if other.context_used.is_some() {
            self.context_used = other.context_used;
            self.context_size = other.context_size.or(self.context_size);
        }
    }

    /// Input plus output tokens, when the agent reported either.
    pub fn total_tokens(&self) -> Option<u64> {
        match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        }
    }

    /// Nothing was reported.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// One line for people: `1200 in (800 cached) / 300 out (40 reasoning) tokens, $0.0123,
    /// context 5000/200000`; only what was reported.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.total_tokens().is_some() {
            let with = |n: Option<u64>, what: &str| match n {
                Some(n) if n > 0 => format!(" ({n} {what})"),
                _ => String::new(),
            };
            parts.push(format!(
                "{} in{} / {} out{} tokens",
                self.input_tokens.unwrap_or(0),
                with(self.cached_tokens, "cached"),
                self.output_tokens.unwrap_or(0),
                with(self.reasoning_tokens, "reasoning"),
            ));
        }
        if let Some(c) = self.cost_usd {
            parts.push(format!("${c:.4}"));
        }
        if let Some(used) = self.context_used {
            match self.context_size {
                Some(size) => parts.push(format!("context {used}/{size}")),
                None => parts.push(format!("context {used}")),
            }
        }
        parts.join(", ")
    }
}

/// A task row as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub project_path: String,
    pub session_id: String,
    pub parent_task_id: Option<String>,
    pub prompt: String,
    pub provider: String,
    pub model: Option<String>,
    pub mode: Option<String>,
    /// Per-task permission policy for ACP agents; `None` means the provider's.
    pub permission: Option<PermissionPolicy>,
    pub state: TaskState,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub usage: Usage,
    /// Files changed in the session's pending change when this turn ended.
    pub files: Vec<FileChange>,
    /// The boocoder process that ran (or runs) the turn.
    pub node_id: Option<String>,
    /// The failed or cancelled task this one runs again (`retry_task`).
    pub retry_of: Option<String>,
    pub budget: Budget,
    /// The permission question the task is blocked on, while one is open.
    pub waiting_for: Option<Question>,
    /// Agent settings by id (`new_task`'s `options`).
    pub options: std::collections::BTreeMap<String, String>,
}

/// Limits on one task, and on everything delegated under it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    /// Input plus output tokens, as the agent reports them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_tokens: Option<u64>,
    /// US dollars, as the agent reports its cost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_cost_usd: Option<f64>,
    /// Wall-clock minutes of running.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_minutes: Option<u64>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none() && self.max_cost_usd.is_none() && self.max_minutes.is_none()
    }
}

/// A session groups the turns that share one worktree (and, for ACP agents, one warm agent).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub project_path: String,
    pub provider: String,
    pub worktree_path: Option<String>,
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    pub closed: bool,
    /// The machine holding the worktree.
    pub host: Option<String>,
}

/// What one transcript entry is. Stored as TEXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The prompt the turn was given.
    Prompt,
    /// Agent message text.
    Text,
    /// Agent thinking.
    Reasoning,
    /// A tool call started.
    ToolCall,
    /// A tool call progressed or finished.
    ToolUpdate,
    /// The agent's plan.
    Plan,
    /// Token usage reported by the agent.
    Usage,
    /// Slash commands the agent offers.
    Commands,
    /// The agent's stderr.
    Stderr,
    /// A decision or notice from boocoder itself (permission decisions, cancellation, mode).
    Notice,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Prompt,
        EventKind::Text,
        EventKind::Reasoning,
        EventKind::ToolCall,
        EventKind::ToolUpdate,
        EventKind::Plan,
        EventKind::Usage,
        EventKind::Commands,
        EventKind::Stderr,
        EventKind::Notice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prompt => "prompt",
            EventKind::Text => "text",
            EventKind::Reasoning => "reasoning",
            EventKind::ToolCall => "tool_call",
            EventKind::ToolUpdate => "tool_update",
            EventKind::Plan => "plan",
            EventKind::Usage => "usage",
            EventKind::Commands => "commands",
            EventKind::Stderr => "stderr",
            EventKind::Notice => "notice",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One persisted transcript entry. `text` is the human-readable line; `data` carries
/// structured detail (tool input, plan entries) when the backend has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskEvent {
    pub seq: i64,
    pub kind: EventKind,
    /// Unix milliseconds.
    pub at: i64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Status of a session's pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Pending,
    Applied,
    Discarded,
}

impl ChangeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Pending => "pending",
            ChangeStatus::Applied => "applied",
            ChangeStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeStatus> {
        [
            ChangeStatus::Pending,
            ChangeStatus::Applied,
            ChangeStatus::Discarded,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// The cumulative diff of a session's worktree against its base, as the last turn left it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChange {
    pub id: i64,
    pub session_id: String,
    pub task_id: String,
    pub base_commit: String,
    pub patch: Vec<u8>,
    /// The worktree's tree when the change was queued (what apply writes); `None` for
    /// changes stored before trees were recorded.
    pub tree: Option<String>,
    pub files: Vec<FileChange>,
    pub status: ChangeStatus,
    pub updated_at: i64,
}

/// Milliseconds since the Unix epoch, the one clock every row uses.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 rendering of a stored timestamp, for humans and MCP results.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Summaries are for a delegating model's context: the tail of the agent's final message, at
/// most this many bytes, the `…` that marks a cut included.
pub const SUMMARY_MAX: usize = 700;

/// The tail of an agent's final message, at most [`SUMMARY_MAX`] bytes.
pub fn summarize(message: &str) -> String {
    tail(message.trim(), SUMMARY_MAX)
}

const CUT: &str = "…";
/// How far a cut moves to fall between words rather than inside one.
const WORD_SLACK: usize = 16;

/// `s` when it fits in `max` bytes, else `…` and its last bytes, `max` in all (cut at a
/// character boundary).
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max.saturating_sub(CUT.len());
    while !s.is_char_boundary(start) {
        start += 1;
    }
    // Rather a whole first word, when one ends close by.
    if let Some(space) = s[start..]
        .find(char::is_whitespace)
        .filter(|i| *i < WORD_SLACK)
    {
        start += space;
    }
    format!("{CUT}{}", s[start..].trim_start())
}

/// `s` when it fits in `max` bytes, else its first bytes and `…`, `max` in all.
pub fn head(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(CUT.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // Rather a whole last word, when one starts close by.
    if let Some(space) = s[..end]
        .rfind(char::is_whitespace)
        .filter(|i| *i > 0 && end - i < WORD_SLACK)
    {
        end = space;
    }
    format!("{}{CUT}", s[..end].trim_end())
}

/// `s` when it fits in `max` bytes, else its start, ` … ` and its end, `max` in all: for
/// errors, which say what failed first and quote the last stderr lines last.
pub fn middle(s: &str, max: usize) -> String {
    const SEP: &str = " … ";
    if s.len() <= max {
        return s.to_string();
    }
    let room = max.saturating_sub(SEP.len());
    let mut front = room * 2 / 5;
    while !s.is_char_boundary(front) {
        front -= 1;
    }
    let mut back = s.len() - (room - front);
    while !s.is_char_boundary(back) {
        back += 1;
    }
    format!("{}{SEP}{}", &s[..front], &s[back..])
}

/// Short random ids (`t-3f2a9c1b7d04`): LLM callers copy them into later calls, so they are
/// kept short; 48 random bits make a collision across one store vanishingly unlikely.
pub fn new_id(prefix: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &hex[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_keep_to_their_bytes_on_char_boundaries() {
        let long = format!("{}END", "é".repeat(2000));
        let s = summarize(&long);
        assert!(s.ends_with("END") && s.starts_with('…'), "{s}");
        assert!(s.len() <= SUMMARY_MAX, "{}", s.len());
        assert_eq!(summarize("  short  "), "short");
        assert_eq!(head("abcdef", 6), "abcdef");
        assert_eq!(head("abcdefg", 6), "abc…");
        assert_eq!(tail("abcdefg", 6), "…efg");
        assert_eq!(head("one two three four", 14), "one two…");
        assert_eq!(tail("one two three four", 14), "…three four");
        for max in [10, 11, 12, 13, 40] {
            let m = middle(&"ü".repeat(50), max);
            assert!(m.len() <= max && m.contains(" … "), "{max}: {m}");
            assert!(head(&"ü".repeat(50), max).len() <= max);
            assert!(tail(&"ü".repeat(50), max).len() <= max);
        }
        assert_eq!(middle("0123456789abcdef", 15), "0123 … abcdef");
    }

    #[test]
    fn terminal_states_never_move() {
        for from in [
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Cancelled,
        ] {
            for to in TaskState::ALL {
                assert!(!from.can_become(to), "{from} -> {to} must be refused");
            }
        }
    }

    #[test]
    fn lifecycle_edges() {
        assert!(TaskState::Pending.can_become(TaskState::Running));
        assert!(TaskState::Pending.can_become(TaskState::Cancelled));
        assert!(!TaskState::Pending.can_become(TaskState::Completed));
        assert!(TaskState::Running.can_become(TaskState::Blocked));
        assert!(TaskState::Blocked.can_become(TaskState::Running));
        assert!(!TaskState::Running.can_become(TaskState::Pending));
        assert_eq!(
            TaskState::sources_of(TaskState::Running),
            vec![TaskState::Pending, TaskState::Blocked]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(TaskState::parse("done"), None);
        for p in PermissionPolicy::ALL {
            assert_eq!(PermissionPolicy::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn ids_are_short_and_prefixed() {
        let id = new_id("t");
        assert_eq!(id.len(), 14);
        assert!(id.starts_with("t-"));
        assert_ne!(new_id("t"), new_id("t"));
    }
}
