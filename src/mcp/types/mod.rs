//! Tool arguments and results as MCP clients see them. Doc comments become the JSON Schema
//! descriptions an LLM reads, so they say when and how to use each field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::TaskState;
use crate::engine::{ApplyResult, RebaseResult, RebaseState};
use crate::worktree::FileChange;

mod status;
use status::is_zero;
pub use status::{TaskStatus, as_text, file_entry};

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

/// Tasks, success rate, durations, tokens and cost per group, largest groups first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageStats {
    pub group_by: crate::engine::GroupBy,
    pub groups: Vec<crate::engine::StatsRow>,
    /// What the figures count (tokens and cost as agents reported them).
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
