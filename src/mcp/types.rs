//! Tool arguments and results as MCP clients see them. Doc comments become the JSON Schema
//! descriptions an LLM reads, so they say when and how to use each field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{TaskState, Usage, rfc3339};
use crate::engine::ApplyResult;
use crate::worktree::FileChange;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskParams {
    /// The complete, self-contained instruction (the agent sees nothing of your conversation).
    pub prompt: String,
    /// Provider id (see `list_providers`); default: the session's agent, else the server's.
    #[serde(default)]
    pub agent: Option<String>,
    /// Model id, for agents that take one; an id the agent does not offer fails the task, naming
    /// the valid ones.
    #[serde(default)]
    pub model: Option<String>,
    /// ACP agents: the agent's mode, e.g. "code" or "ask" (see `list_providers`).
    #[serde(default)]
    pub mode: Option<String>,
    /// ACP agents: how to answer permission requests; `ask` blocks the task until
    /// `answer_permission` (denied after the provider's timeout). Default: the provider's policy.
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
    /// Stop after this many tokens (input + output, as the agent reports them); bounds subtasks
    /// too.
    #[serde(default)]
    pub max_tokens: Option<u64>,
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

/// The compact status of one task: what a delegating model needs, never the transcript.
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
    /// The tail of the agent's final message (at most ~1.5 KB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why the task failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files in the session's pending change when this turn ended.
    pub files_changed: Vec<FileChange>,
    /// Tokens, cost and context as the agent reported them; absent when it reported nothing.
    #[serde(skip_serializing_if = "Usage::is_empty", default)]
    pub usage: Usage,
    /// Tokens of all the session's turns so far (present when the session has more than this
    /// one or when asked through check_task_status).
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
    /// session's change was applied; a follow-up turn can redo them. Absent when it applies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stale_against_checkout: Option<Vec<String>>,
    /// While `blocked`: the agent's permission question; answer with `answer_permission`.
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

impl TaskStatus {
    pub fn from_task(t: &crate::domain::Task) -> TaskStatus {
        let end = t.ended_at.unwrap_or_else(crate::domain::now_ms);
        let next = match t.state {
            TaskState::Blocked if t.waiting_for.is_some() => format!(
                "blocked on the agent's permission question (waiting_for): answer_permission(task_id=\"{}\", request_id, option_id), or cancel_task",
                t.id
            ),
            TaskState::Pending | TaskState::Running | TaskState::Blocked => format!(
                "still {}; poll check_task_status with wait_seconds, or cancel_task",
                t.state
            ),
            TaskState::Completed if t.files.is_empty() => {
                "completed without file changes; read the summary (get_task_output for the full transcript)".into()
            }
            TaskState::Completed => format!(
                "review with get_task_output if needed, then apply_pending(task_id=\"{}\") to land the change, or discard_pending; follow up with new_task(session_id=\"{}\")",
                t.id, t.session_id
            ),
            TaskState::Failed | TaskState::Cancelled if !t.files.is_empty() => format!(
                "{}; the worktree's partial edits are a pending change (apply_pending or discard_pending); retry_task(task_id=\"{}\") runs it again on top of them",
                t.state, t.id
            ),
            TaskState::Failed | TaskState::Cancelled => format!(
                "{}; see `error`, or get_task_output for the transcript; retry_task(task_id=\"{}\") runs it again",
                t.state, t.id
            ),
        };
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
            summary: t.summary.clone(),
            error: t.error.clone(),
            files_changed: t.files.clone(),
            usage: t.usage,
            session_usage: None,
            node: t.node_id.clone(),
            retry_of: t.retry_of.clone(),
            descendants: None,
            stale_against_checkout: None,
            waiting_for: t.waiting_for.clone(),
            budget: (!t.budget.is_empty()).then_some(t.budget),
            budget_note: budget_note(t),
            next,
        }
    }
}

/// One task in a listing: a single compact line of fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskLine {
    pub task_id: String,
    pub state: TaskState,
    pub agent: String,
    pub session_id: String,
    pub created_at: String,
    pub files_changed: usize,
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
    /// While `blocked`: the permission question, its request id and option ids.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub question: Option<String>,
}

/// Lines joined with single spaces.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(max).collect::<String>())
    }
}

impl TaskLine {
    pub fn from_task(t: &crate::domain::Task) -> TaskLine {
        TaskLine {
            task_id: t.id.clone(),
            state: t.state,
            agent: t.provider.clone(),
            session_id: t.session_id.clone(),
            created_at: rfc3339(t.created_at),
            files_changed: t.files.len(),
            node: t.node_id.clone(),
            prompt: first_line(&t.prompt, 80),
            // Errors quote stderr on the following lines: fold them so the line says why.
            result: t
                .error
                .as_deref()
                .or(t.summary.as_deref())
                .map(|s| first_line(&fold(s.trim_start_matches('…')), 100)),
            depth: None,
            cost_usd: t.usage.cost_usd,
            question: t.waiting_for.as_ref().map(|q| {
                let ids: Vec<_> = q.options.iter().map(|o| o.id.as_str()).collect();
                format!(
                    "{} [{}] ({})",
                    first_line(&q.question, 80),
                    ids.join("|"),
                    q.request_id
                )
            }),
        }
    }
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
                .map(|(t, d)| TaskLine {
                    depth: Some(*d),
                    ..TaskLine::from_task(t)
                })
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
        TaskOutput {
            status: TaskStatus::from_task(&page.task),
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
