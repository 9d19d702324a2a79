//! Tool arguments and results as MCP clients see them. Doc comments become the JSON Schema
//! descriptions an LLM reads, so they say when and how to use each field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{TaskState, Usage, rfc3339};
use crate::engine::{ApplyResult, RebaseResult, RebaseState};
use crate::worktree::FileChange;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskParams {
    /// The complete, self-contained instruction (the agent sees nothing of your conversation).
    pub prompt: String,
    /// Provider id (see `list_providers`); default: the session's agent, else the server's.
    #[serde(default)]
    pub agent: Option<String>,
    /// Model id (see `list_providers`); one the agent does not offer fails, naming valid ones.
    #[serde(default)]
    pub model: Option<String>,
    /// ACP agents: the agent's mode, e.g. "code" or "ask" (see `list_providers`).
    #[serde(default)]
    pub mode: Option<String>,
    /// ACP agents: allow, deny or ask (blocks until `answer_permission`; denied on timeout).
    #[serde(default)]
    #[schemars(with = "Option<crate::domain::PermissionPolicy>")]
    pub permission: Option<String>,
    /// Absolute path of the git repository; default: the server's project.
    #[serde(default)]
    pub project: Option<String>,
    /// The task delegating this one (builds a task tree).
    #[serde(default)]
    pub parent_task_id: Option<String>,
    /// Run as a follow-up turn of this session: same worktree and agent, edits accumulate.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Like `session_id`, naming a task of the session.
    #[serde(default)]
    pub continue_task_id: Option<String>,
    /// Wait up to this many seconds (max 50) and return the result if the task ends in time.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
    /// Stop after this many reported tokens (input + output); bounds subtasks too.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Agent settings (list_providers' `options`), e.g. {"thinking": "high"}.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// Stop at this cost in USD, as the agent reports it; bounds subtasks too.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Stop after this many minutes of running; bounds subtasks too.
    #[serde(default)]
    pub max_minutes: Option<u64>,
}

/// The values `list_tasks`' `state` accepts (its schema; the engine parses the string).
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // why: describes the wire format only, never built
enum StateFilter {
    Pending,
    Running,
    Blocked,
    Completed,
    Failed,
    Cancelled,
    NeedsAttention,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasksParams {
    /// Only this state; `needs_attention` is blocked or failed (the inbox).
    #[serde(default)]
    #[schemars(with = "Option<StateFilter>")]
    pub state: Option<String>,
    /// Only this project (repository path).
    #[serde(default)]
    pub project: Option<String>,
    /// Only subtasks of this task.
    #[serde(default)]
    pub parent_task_id: Option<String>,
    /// Only turns of this session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// With `parent_task_id`: its whole subtree in order, with `depth` (no other filter or paging).
    #[serde(default)]
    pub tree: bool,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckTaskStatusParams {
    /// The task id from `new_task`.
    pub task_id: String,
    /// Long-poll: wait up to this many seconds (max 50) for the state to change.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageStatsParams {
    /// Default `agent`; `day` is the UTC day of creation, `parent` the delegating task.
    #[serde(default)]
    pub group_by: Option<crate::engine::GroupBy>,
    /// Only tasks created since a duration back (`7d`, `12h`, `30m`) or a date (`2026-11-01`).
    #[serde(default)]
    pub since: Option<String>,
}

/// Tasks, success rate, durations and tokens per group, largest groups first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageStats {
    pub group_by: crate::engine::GroupBy,
    pub groups: Vec<crate::engine::StatsRow>,
    /// Cost is not among the figures yet: agents' reported costs are not recorded.
    pub note: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryTaskParams {
    /// A failed or cancelled task.
    pub task_id: String,
    /// A new prompt instead of the original.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Wait up to this many seconds (max 50) and return the result if the task ends in time.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerPermissionParams {
    /// The blocked task.
    pub task_id: String,
    /// `waiting_for.request_id` of its status.
    pub request_id: String,
    /// One of `waiting_for.options[].id`.
    pub option_id: String,
}

/// A permission question settled by `answer_permission`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PermissionAnswer {
    pub task_id: String,
    pub request_id: String,
    pub chosen: crate::domain::QuestionOption,
    pub next: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskIdParams {
    /// The task id from `new_task`.
    pub task_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetTaskOutputParams {
    /// The task id from `new_task`.
    pub task_id: String,
    /// Transcript page: entries after this `seq` (`next_after_seq`).
    #[serde(default)]
    pub after_seq: Option<i64>,
    /// Most transcript entries (default 200, max 1000).
    #[serde(default)]
    pub max_events: Option<u32>,
    /// Diff page: byte offset (`next_diff_offset`).
    #[serde(default)]
    pub diff_offset: Option<u64>,
    /// Most diff bytes (default 65536, max 1048576).
    #[serde(default)]
    pub max_diff_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPendingParams {
    /// Apply the change of this task's session (or give `session_id`).
    #[serde(default)]
    pub task_id: Option<String>,
    /// Apply this session's change (or give `task_id`).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Only check that it applies cleanly; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Afterwards remove the session's worktree and branch (no more follow-up turns).
    #[serde(default)]
    pub close_session: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebasePendingParams {
    /// The session (or give `task_id`).
    #[serde(default)]
    pub session_id: Option<String>,
    /// A task of the session (or give `session_id`).
    #[serde(default)]
    pub task_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardPendingParams {
    /// Discard the change of this task's session (or give `session_id`).
    #[serde(default)]
    pub task_id: Option<String>,
    /// Discard this session's change (or give `task_id`).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Also remove the session's worktree and branch (no more follow-up turns).
    #[serde(default)]
    pub close_session: bool,
}

/// The compact status of one task: what a delegating model needs, never the transcript, and
/// small whatever the task (see [`TaskStatus::fit`]). `get_task_output` has everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStatus {
    pub task_id: String,
    pub session_id: String,
    pub state: TaskState,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Seconds from start to end (or to now while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// The end of the agent's final message (at most 700 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why the task failed or was cancelled; a long one keeps its start and end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files in the session's pending change when this turn ended; absent when none.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub files_total: u64,
    /// Lines those files add, in all.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub additions_total: u64,
    /// Lines those files delete, in all.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub deletions_total: u64,
    /// The largest of those files (most lines changed first), at most 10, one short entry each:
    /// `M src/a.rs +3 -1` (Added, Modified, Deleted, Renamed, Type change; `binary` instead of
    /// line counts). `get_task_output` lists them all.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub files_changed: Vec<String>,
    /// Tokens, cost and context as the agent reported them; absent when it reported nothing.
    #[serde(skip_serializing_if = "Usage::is_empty", default)]
    pub usage: Usage,
    /// Usage of all the session's turns (check_task_status; absent when it equals `usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_usage: Option<Usage>,
    /// The boocoder node (host-pid) that ran the turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The failed or cancelled task this one runs again (`retry_task`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_of: Option<String>,
    /// The tasks delegated under this one (`parent_task_id`, transitively), counted by state;
    /// absent when it delegated nothing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub descendants: Option<std::collections::BTreeMap<String, u32>>,
    /// Files of the session's pending change that no longer apply cleanly, found when another
    /// session's change was applied (at most 10 named); a follow-up turn can redo them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stale_against_checkout: Option<Vec<String>>,
    /// While `blocked`: the agent's permission question (its preview shortened; the whole one
    /// in `get_task_output`); answer with `answer_permission`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_for: Option<crate::domain::Question>,
    /// The task's limits (`max_tokens`, `max_cost_usd`, `max_minutes`), when it has any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget: Option<crate::domain::Budget>,
    /// What the budget cannot see: set when `max_tokens` or `max_cost_usd` is given and the
    /// agent has reported no tokens or no cost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget_note: Option<String>,
    /// What to do next.
    pub next: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// File entries a status names; `get_task_output` lists every file.
pub const FILES_SHOWN: usize = 10;
/// Bytes of a status' JSON and of its text that [`TaskStatus::fit`] keeps within.
pub const STATUS_JSON_MAX: usize = 2000;
pub const STATUS_TEXT_MAX: usize = 1500;
/// Caps on single fields of a status, in bytes (paths and lists in entries).
const ERROR_MAX: usize = 400;
const PATH_MAX: usize = 60;
const QUESTION_MAX: usize = 200;
const LABEL_MAX: usize = 40;
const PREVIEW_MAX: usize = 300;
const LIST_MAX: usize = 10;

/// `M src/a.rs +3 -1`: the change's letter, its path (a long one keeps its end) and the lines
/// it adds and deletes, or `binary`.
pub fn file_entry(f: &FileChange) -> String {
    use crate::worktree::FileStatus;
    let letter = match f.status {
        FileStatus::Added => "A",
        FileStatus::Modified => "M",
        FileStatus::Deleted => "D",
        FileStatus::Renamed => "R",
        FileStatus::TypeChange => "T",
    };
    let path = match &f.old_path {
        Some(old) if f.status == FileStatus::Renamed => format!("{old} -> {}", f.path),
        _ => f.path.clone(),
    };
    let path = crate::domain::tail(&path, PATH_MAX);
    if f.binary {
        format!("{letter} {path} binary")
    } else {
        format!("{letter} {path} +{} -{}", f.additions, f.deletions)
    }
}

/// Entries for the `n` files with the most lines changed, largest first (ties in diff order).
fn largest(files: &[FileChange], n: usize) -> Vec<String> {
    let mut order: Vec<&FileChange> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(u64::from(f.additions) + u64::from(f.deletions)));
    order.into_iter().take(n).map(file_entry).collect()
}

/// At most [`LIST_MAX`] paths (a long one keeps its end), the rest counted in a last item.
fn capped(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = items
        .iter()
        .map(|p| crate::domain::tail(p, PATH_MAX))
        .collect();
    keep_counted(&mut out, LIST_MAX);
    out
}

/// At most `n` items of `v`, those left out counted in a last `… N more` (which an earlier
/// cut may have added already).
fn keep_counted(v: &mut Vec<String>, n: usize) {
    let counted = v.last().and_then(|l| {
        l.strip_prefix("… ")?
            .strip_suffix(" more")?
            .parse::<usize>()
            .ok()
    });
    if counted.is_some() {
        v.pop();
    }
    let hidden = counted.unwrap_or(0) + v.len().saturating_sub(n);
    v.truncate(n);
    if hidden > 0 {
        v.push(format!("… {hidden} more"));
    }
}

/// A permission question short enough for a status: its one line, labels and preview cut,
/// at most ten paths. Ids are never cut: they are what `answer_permission` takes.
fn brief_question(q: &crate::domain::Question) -> crate::domain::Question {
    use crate::domain::{QuestionOption, head};
    crate::domain::Question {
        request_id: q.request_id.clone(),
        question: head(&q.question, QUESTION_MAX),
        options: q
            .options
            .iter()
            .map(|o| QuestionOption {
                label: head(&o.label, LABEL_MAX),
                ..o.clone()
            })
            .collect(),
        paths: capped(&q.paths),
        preview: q.preview.as_deref().map(|p| head(p, PREVIEW_MAX)),
    }
}

impl TaskStatus {
    pub fn from_task(t: &crate::domain::Task) -> TaskStatus {
        let end = t.ended_at.unwrap_or_else(crate::domain::now_ms);
        let next = match t.state {
            TaskState::Blocked if t.waiting_for.is_some() => {
                "answer waiting_for with answer_permission, or cancel_task".into()
            }
            TaskState::Pending | TaskState::Running | TaskState::Blocked => format!(
                "still {}: check_task_status with wait_seconds, or cancel_task",
                t.state
            ),
            TaskState::Completed if t.files.is_empty() => {
                "no file changes; get_task_output has the transcript".into()
            }
            TaskState::Completed => "apply_pending lands the change (get_task_output has every file and the diff), discard_pending drops it; follow up with new_task(session_id)".into(),
            TaskState::Failed | TaskState::Cancelled if !t.files.is_empty() => format!(
                "{}; its partial edits are pending (apply_pending or discard_pending); retry_task runs it again on top of them",
                t.state
            ),
            TaskState::Failed | TaskState::Cancelled => format!(
                "{}; see error (get_task_output has the transcript); retry_task runs it again",
                t.state
            ),
        };
        let sum = |f: fn(&FileChange) -> u32| t.files.iter().map(|c| u64::from(f(c))).sum();
        TaskStatus {
            task_id: t.id.clone(),
            session_id: t.session_id.clone(),
            state: t.state,
            agent: t.provider.clone(),
            model: t.model.clone(),
            project: t.project_path.clone(),
            parent_task_id: t.parent_task_id.clone(),
            created_at: rfc3339(t.created_at),
            started_at: t.started_at.map(rfc3339),
            ended_at: t.ended_at.map(rfc3339),
            duration_seconds: t.started_at.map(|s| (end - s).max(0) as f64 / 1000.0),
            // why: summaries stored before they were capped at 700 bytes are cut here.
            summary: t.summary.as_deref().map(crate::domain::summarize),
            error: t
                .error
                .as_deref()
                .map(|e| crate::domain::middle(e, ERROR_MAX)),
            files_total: t.files.len() as u64,
            additions_total: sum(|c| c.additions),
            deletions_total: sum(|c| c.deletions),
            files_changed: largest(&t.files, FILES_SHOWN),
            usage: t.usage,
            session_usage: None,
            node: t.node_id.clone(),
            retry_of: t.retry_of.clone(),
            descendants: None,
            stale_against_checkout: None,
            waiting_for: t.waiting_for.as_ref().map(brief_question),
            budget: (!t.budget.is_empty()).then_some(t.budget),
            budget_note: budget_note(t),
            next,
        }
    }

    /// Usage of the whole session, shown when it says more than `usage`.
    pub fn set_session_usage(&mut self, session: Usage) {
        self.session_usage = (!session.is_empty() && session != self.usage).then_some(session);
    }

    /// Files that no longer apply, at most ten named.
    pub fn set_stale(&mut self, files: Option<Vec<String>>) {
        self.stale_against_checkout = files.map(|f| capped(&f));
    }

    /// The status within [`STATUS_JSON_MAX`] bytes of JSON and [`STATUS_TEXT_MAX`] of text.
    /// The caps on each field keep a task there; should one still pass them (many fields at
    /// their longest at once), detail goes step by step until it fits: file entries beyond
    /// three, the question's preview, most of the summary and error, stale paths and question
    /// paths beyond three, file entries beyond one, then shorter texts still.
    pub fn fit(mut self) -> TaskStatus {
        use crate::domain::{head, middle, tail};
        type Step = fn(&mut TaskStatus);
        let steps: [Step; 9] = [
            |s| s.files_changed.truncate(3),
            |s| {
                if let Some(q) = &mut s.waiting_for {
                    q.preview = None;
                }
            },
            |s| s.summary = s.summary.as_deref().map(|t| tail(t, 300)),
            |s| s.error = s.error.as_deref().map(|e| middle(e, 200)),
            |s| {
                if let Some(stale) = &mut s.stale_against_checkout {
                    keep_counted(stale, 3);
                }
            },
            |s| {
                if let Some(q) = &mut s.waiting_for {
                    keep_counted(&mut q.paths, 3);
                }
            },
            |s| s.files_changed.truncate(1),
            |s| {
                s.summary = s.summary.as_deref().map(|t| tail(t, 120));
                s.error = s.error.as_deref().map(|e| middle(e, 120));
                if let Some(q) = &mut s.waiting_for {
                    q.question = head(&q.question, 60);
                    keep_counted(&mut q.paths, 1);
                    for o in &mut q.options {
                        o.label = head(&o.label, 12);
                    }
                }
            },
            // The timestamps last: duration_seconds says how long it ran.
            |s| {
                s.started_at = None;
                s.ended_at = None;
            },
        ];
        let over = |s: &TaskStatus| {
            serde_json::to_string(s).map_or(0, |j| j.len()) > STATUS_JSON_MAX
                || s.text().len() > STATUS_TEXT_MAX
        };
        for step in steps {
            if !over(&self) {
                break;
            }
            step(&mut self);
        }
        self
    }

    /// The status as a model reads it: one `key: value` line per field (no timestamps: the
    /// duration says enough), files the status leaves out counted.
    pub fn text(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in ["created_at", "started_at", "ended_at"] {
                o.shift_remove(k);
            }
            let more = (self.files_total as usize).saturating_sub(self.files_changed.len());
            if more > 0
                && let Some(serde_json::Value::Array(files)) = o.get_mut("files_changed")
            {
                files.push(format!("… {more} more (get_task_output lists all)").into());
            }
        }
        as_text(&v)
    }
}

/// A JSON value as lines of `key: value`: a nested object on its key's line as
/// `k=v; k=v`, lists of plain values joined with `, `, lists of objects as compact JSON,
/// continuation lines of a multi-line string indented.
pub fn as_text(value: &serde_json::Value) -> String {
    use serde_json::Value;
    fn plain(v: &Value) -> String {
        match v {
            Value::String(s) => s.trim_end().to_string(),
            Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
                items.iter().map(plain).collect::<Vec<_>>().join(", ")
            }
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| format!("{k}={}", plain(v)))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }
    match value {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", plain(v).replace('\n', "\n  ")))
            .collect(),
        other => plain(other),
    }
}

/// One task in a listing: a single short row, at most [`ROW_MAX`] bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskLine {
    pub task_id: String,
    pub state: TaskState,
    pub agent: String,
    /// To the second.
    pub created_at: String,
    /// Files in its pending change; absent when none.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The first line of the prompt, shortened.
    pub prompt: String,
    /// The first line of the summary or error, shortened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// With `tree: true`: how far below the listed root (0 for the root itself).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub depth: Option<u32>,
    /// US dollars, when the agent reported a cost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost_usd: Option<f64>,
    /// While `blocked`: the permission question, its option ids (left to the status when the
    /// row is tight) and request id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub question: Option<String>,
}

/// Bytes of JSON a listing row keeps within.
pub const ROW_MAX: usize = 250;

/// Lines joined with single spaces.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first line of `s`, at most `max` bytes.
fn first_line(s: &str, max: usize) -> String {
    let line = s.trim().lines().next().unwrap_or("").trim();
    crate::domain::head(line, max)
}

impl TaskLine {
    pub fn from_task(t: &crate::domain::Task) -> TaskLine {
        TaskLine::within(t, None, ROW_MAX)
    }

    /// The row of `t` (at `depth` in a tree), shortened until it fits `max` bytes: the prompt
    /// first (what came of a task says more than what it was asked), then the longer of result
    /// and question, each to a few words, then fewer; for long agent or node names at last the
    /// node (to its start) and the question's option ids (its status lists them). The task and
    /// request ids are never cut.
    fn within(t: &crate::domain::Task, depth: Option<u32>, max: usize) -> TaskLine {
        const FLOORS: [(usize, usize); 2] = [(32, 24), (12, 12)];
        const NODE_MAX: usize = 20;
        // Errors quote stderr on the following lines: fold them so the line says why.
        let result = t
            .error
            .as_deref()
            .or(t.summary.as_deref())
            .map(|s| fold(s.trim_start_matches('…')));
        let (mut prompt_max, mut result_max, mut question_max) = (80, 100, 80);
        let (mut node_max, mut option_ids) = (usize::MAX, true);
        loop {
            let asked = t.waiting_for.as_ref().map(|q| {
                let text = first_line(&q.question, question_max);
                let ids: Vec<_> = q.options.iter().map(|o| o.id.as_str()).collect();
                let line = if option_ids {
                    format!("{text} [{}] ({})", ids.join("|"), q.request_id)
                } else {
                    format!("{text} ({})", q.request_id)
                };
                (line, text.len())
            });
            let line = TaskLine {
                task_id: t.id.clone(),
                state: t.state,
                agent: t.provider.clone(),
                created_at: rfc3339_secs(t.created_at),
                files_changed: t.files.len() as u64,
                node: t
                    .node_id
                    .as_deref()
                    .map(|n| crate::domain::head(n, node_max)),
                prompt: first_line(&t.prompt, prompt_max),
                result: result.as_deref().map(|s| first_line(s, result_max)),
                depth,
                // To a hundredth of a cent, as `ls` shows it.
                cost_usd: t.usage.cost_usd.map(|c| (c * 1e4).round() / 1e4),
                question: asked.as_ref().map(|(q, _)| q.clone()),
            };
            let len = serde_json::to_string(&line).map_or(0, |j| j.len());
            if len <= max {
                return line;
            }
            let over = len - max;
            let prompt = line.prompt.len();
            let result = line.result.as_ref().map_or(0, String::len);
            let asked = asked.map_or(0, |(_, n)| n);
            let shorter = |n: usize, floor: usize| n.saturating_sub(over).max(floor);
            let texts = FLOORS
                .into_iter()
                .find(|(p, r)| prompt > *p || result.max(asked) > *r);
            match texts {
                Some((p, _)) if prompt > p => prompt_max = shorter(prompt, p),
                Some((_, r)) if result >= asked => result_max = shorter(result, r),
                Some((_, r)) => question_max = shorter(asked, r),
                None if node_max > NODE_MAX && line.node.is_some() => node_max = NODE_MAX,
                None if option_ids && line.question.is_some() => option_ids = false,
                None => return line,
            }
        }
    }
}

/// RFC 3339 to the second, as listings show times.
fn rfc3339_secs(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskLine>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl TaskList {
    /// A subtree in reading order, each line with its depth.
    pub fn from_tree(tree: &[(crate::domain::Task, u32)]) -> TaskList {
        TaskList {
            tasks: tree
                .iter()
                .map(|(t, d)| TaskLine::within(t, Some(*d), ROW_MAX))
                .collect(),
            next_cursor: None,
        }
    }

    pub fn from_page(page: &crate::engine::TaskListPage) -> TaskList {
        TaskList {
            tasks: page.tasks.iter().map(TaskLine::from_task).collect(),
            next_cursor: page.next_cursor.clone(),
        }
    }
}

/// The full result of a task, paged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskOutput {
    pub status: TaskStatus,
    /// Every file of the session's pending change when this turn ended (the status names the
    /// largest ten).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub files: Vec<FileChange>,
    /// The whole error, when the status' is shortened.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The whole permission question, when the status' is shortened.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_for: Option<crate::domain::Question>,
    /// The agent's whole final message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_message: Option<String>,
    pub transcript: Vec<crate::domain::TaskEvent>,
    /// Pass as `after_seq` for more transcript; absent when this page reached the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_seq: Option<i64>,
    /// The session's change: `pending`, `applied` or `discarded`; absent when no files changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_status: Option<String>,
    /// The task whose turn produced that change (a later turn's cumulative diff supersedes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_task_id: Option<String>,
    /// A page of the unified diff (`git apply` format).
    pub diff: String,
    pub diff_total_bytes: u64,
    /// Pass as `diff_offset` for the rest of the diff; absent when this page reached the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_diff_offset: Option<u64>,
}

impl TaskOutput {
    pub fn from_page(page: crate::engine::OutputPage) -> TaskOutput {
        let status = TaskStatus::from_task(&page.task).fit();
        let whole = |short: &Option<String>, all: &Option<String>| {
            (short != all).then(|| all.clone()).flatten()
        };
        TaskOutput {
            error: whole(&status.error, &page.task.error),
            waiting_for: (status.waiting_for != page.task.waiting_for)
                .then(|| page.task.waiting_for.clone())
                .flatten(),
            files: page.task.files,
            status,
            final_message: page.final_message,
            transcript: page.events,
            next_after_seq: page.next_after_seq,
            change_status: page.change.as_ref().map(|c| c.status.as_str().to_string()),
            change_task_id: page.change.as_ref().map(|c| c.task_id.clone()),
            diff: page.diff,
            diff_total_bytes: page.diff_total_bytes,
            next_diff_offset: page.next_diff_offset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyOutcome {
    pub session_id: String,
    /// The turn whose cumulative diff this was.
    pub task_id: String,
    pub dry_run: bool,
    /// `applied`, `would_apply` (dry run) or `discarded`.
    pub result: String,
    /// Whether the session was closed (its worktree removed).
    pub session_closed: bool,
    pub files: Vec<FileChange>,
    /// Other sessions whose pending changes touch the same files (they may not apply after
    /// this one).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub overlapping: Vec<crate::engine::Overlap>,
    /// Other sessions whose pending changes no longer apply cleanly after this apply
    /// (`check_task_status` shows their `stale_against_checkout`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub now_stale: Vec<String>,
}

impl ApplyOutcome {
    pub fn new(r: ApplyResult, result: &str) -> ApplyOutcome {
        ApplyOutcome {
            session_id: r.session_id,
            task_id: r.task_id,
            dry_run: r.dry_run,
            result: result.into(),
            session_closed: false,
            files: r.files,
            overlapping: r.overlaps,
            now_stale: r.now_stale,
        }
    }
}

/// What a task's budget cannot see: limits on usage its agent did not report.
fn budget_note(t: &crate::domain::Task) -> Option<String> {
    let b = &t.budget;
    if b.max_tokens.is_none() && b.max_cost_usd.is_none() {
        return None;
    }
    if t.ended_at.is_none() {
        return (t.provider != crate::providers::Provider::NATIVE_ID).then(|| {
            format!(
                "`{}` may report usage only at the end of a turn, or not at all: token and cost limits apply to what it reports, max_minutes always",
                t.provider
            )
        });
    }
    let mut blind = Vec::new();
    if b.max_tokens.is_some() && t.usage.total_tokens().is_none() {
        blind.push(("token usage", "max_tokens"));
    }
    if b.max_cost_usd.is_some() && t.usage.cost_usd.is_none() {
        blind.push(("cost", "max_cost_usd"));
    }
    (!blind.is_empty()).then(|| {
        let what: Vec<_> = blind.iter().map(|(w, _)| *w).collect();
        let limits: Vec<_> = blind.iter().map(|(_, l)| *l).collect();
        format!(
            "`{}` reported no {}: {} is not enforced, only max_minutes",
            t.provider,
            what.join(" and no "),
            limits.join(" and ")
        )
    })
}

impl From<crate::engine::Answered> for PermissionAnswer {
    fn from(a: crate::engine::Answered) -> PermissionAnswer {
        PermissionAnswer {
            next: format!(
                "the agent goes on; poll check_task_status(task_id=\"{}\")",
                a.task_id
            ),
            task_id: a.task_id,
            request_id: a.request_id,
            chosen: a.chosen,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RebaseOutcome {
    pub session_id: String,
    /// The turn whose cumulative change this is.
    pub task_id: String,
    /// `merged` (the change now applies to the checkout as it is), `up_to_date` (it already
    /// did; nothing changed) or `conflict` (nothing changed; see `conflicts`).
    pub result: RebaseState,
    /// The pending change's files: after the merge, or as they were.
    pub files: Vec<FileChange>,
    /// Each file both sides changed in ways that do not merge, with the regions of lines
    /// (base, checkout, session) and each side's lines there.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub conflicts: Vec<crate::worktree::MergeConflict>,
    /// What to do next.
    pub hint: String,
}

impl RebaseOutcome {
    pub fn new(r: RebaseResult) -> RebaseOutcome {
        let hint = match r.state {
            RebaseState::Merged => {
                "the session's worktree and pending change now build on the checkout's \
                 current files; review the new diff (get_task_output), then apply_pending"
                    .to_string()
            }
            RebaseState::UpToDate => {
                "the change already applies to the checkout; nothing was changed".to_string()
            }
            RebaseState::Conflict => format!(
                "nothing was changed. To resolve, ask a follow-up turn (new_task with session_id \
                 `{}`) to make its version of these lines agree with the checkout's while keeping \
                 its intent, then call rebase_pending again; or discard_pending the change",
                r.session_id
            ),
        };
        RebaseOutcome {
            session_id: r.session_id,
            task_id: r.task_id,
            result: r.state,
            files: r.files,
            conflicts: r.conflicts,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Budget, Question, QuestionOption, Task};
    use crate::worktree::FileStatus;

    /// A task with every field at its longest: hundreds of files with long paths, a long
    /// message and error, a long question with many paths, usage and a budget.
    fn worst() -> Task {
        let long = |c: &str, n: usize| c.repeat(n);
        Task {
            id: "t-3f2a9c1b7d04".into(),
            project_path: format!("/home/someone/{}/repo", long("p", 60)),
            session_id: "s-3f2a9c1b7d04".into(),
            parent_task_id: Some("t-000000000001".into()),
            prompt: long("ü", 500),
            provider: "claude-code".into(),
            model: Some("claude-sonnet-4-5-20250929".into()),
            mode: None,
            permission: None,
            state: TaskState::Blocked,
            created_at: 1_800_000_000_000,
            started_at: Some(1_800_000_000_000),
            ended_at: Some(1_800_000_100_000),
            summary: Some(long("word ", 400)),
            error: Some(format!(
                "agent exited with exit status: 1; last stderr lines:\n{}",
                long("a long stderr line\n", 200)
            )),
            usage: crate::domain::Usage {
                cached_tokens: Some(123_456_789),
                reasoning_tokens: Some(123_456_789),
                cost_usd: Some(1_234.567_891),
                context_used: Some(123_456_789),
                context_size: Some(123_456_789),
                ..crate::domain::Usage::tokens(123_456_789, 123_456_789)
            },
            files: (0..400)
                .map(|i| FileChange {
                    path: format!("src/{}/file-{i}.rs", long("deep/", 30)),
                    old_path: Some(format!("src/{}/old-{i}.rs", long("deep/", 30))),
                    status: FileStatus::Renamed,
                    additions: 1_000_000 + i,
                    deletions: 1_000_000,
                    binary: false,
                })
                .collect(),
            node_id: Some("build-server-17.example.com-123456".into()),
            retry_of: Some("t-000000000002".into()),
            budget: Budget {
                max_tokens: Some(1_000_000_000),
                max_cost_usd: Some(1000.5),
                max_minutes: Some(100_000),
            },
            waiting_for: Some(Question {
                request_id: "q-3f2a9c1b7d04".into(),
                question: long("é", 400),
                options: ["allow_once", "allow_always", "reject_once", "reject_always"]
                    .iter()
                    .map(|k| QuestionOption {
                        id: format!("{k}-1"),
                        label: long("l", 200),
                        kind: k.to_string(),
                    })
                    .collect(),
                paths: (0..50)
                    .map(|i| format!("/{}/{i}", long("x", 100)))
                    .collect(),
                preview: Some(long("+ line\n", 300)),
            }),
            options: Default::default(),
        }
    }

    /// Every field a task can have at once at its longest: a failed one (summary, error,
    /// files; no question) and a blocked one (question; no summary, error or files yet).
    fn worst_cases() -> [Task; 2] {
        let failed = Task {
            state: TaskState::Failed,
            waiting_for: None,
            ..worst()
        };
        let blocked = Task {
            summary: None,
            error: None,
            files: Vec::new(),
            ended_at: None,
            ..worst()
        };
        [failed, blocked]
    }

    #[test]
    fn any_task_fits_its_status_and_its_row() {
        for t in worst_cases() {
            fits(&t);
        }
    }

    fn fits(t: &Task) {
        let mut status = TaskStatus::from_task(t);
        status.set_session_usage(crate::domain::Usage::tokens(1, 1));
        status.descendants = Some(
            TaskState::ALL
                .iter()
                .map(|s| (s.to_string(), 1_000_000))
                .collect(),
        );
        status.set_stale(Some((0..50).map(|i| format!("src/{i}.rs")).collect()));
        let status = status.fit();
        let json = serde_json::to_string(&status).expect("json");
        assert!(json.len() <= STATUS_JSON_MAX, "{} B: {json}", json.len());
        let text = status.text();
        assert!(text.len() <= STATUS_TEXT_MAX, "{} B:\n{text}", text.len());
        if let Some(largest) = t.files.last() {
            assert_eq!(status.files_total, 400);
            assert_eq!(
                status.files_changed[0],
                file_entry(largest),
                "largest first"
            );
        }
        if let Some(q) = &status.waiting_for {
            assert!(q.options.iter().all(|o| o.id.ends_with("-1")), "ids whole");
            assert_eq!(q.request_id, "q-3f2a9c1b7d04");
        }
        for line in [
            TaskLine::from_task(t),
            TaskLine::within(t, Some(3), ROW_MAX),
        ] {
            let row = serde_json::to_string(&line).expect("json");
            assert!(row.len() <= ROW_MAX, "{} B: {row}", row.len());
        }
    }

    #[test]
    fn entries_and_text() {
        let f = |status, binary| FileChange {
            path: "src/a.rs".into(),
            old_path: Some("src/b.rs".into()),
            status,
            additions: 3,
            deletions: 1,
            binary,
        };
        assert_eq!(
            file_entry(&f(FileStatus::Modified, false)),
            "M src/a.rs +3 -1"
        );
        assert_eq!(file_entry(&f(FileStatus::Added, true)), "A src/a.rs binary");
        assert_eq!(
            file_entry(&f(FileStatus::Renamed, false)),
            "R src/b.rs -> src/a.rs +3 -1"
        );
        let v =
            serde_json::json!({"a": "x\ny", "b": [1, "two"], "c": {"d": true}, "e": [{"f": 1}]});
        assert_eq!(
            as_text(&v),
            "a: x\n  y\nb: 1, two\nc: d=true\ne: [{\"f\":1}]\n"
        );
        let mut v: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        keep_counted(&mut v, 3);
        keep_counted(&mut v, 1);
        assert_eq!(v, ["0", "… 4 more"]);
    }
}
