//! The compact status of a task (`new_task`, `check_task_status` and the others that answer
//! with one): what a delegating model needs in a few hundred bytes, cut step by step so it fits
//! whatever the task, and its text form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{TaskState, Usage, rfc3339};
use crate::worktree::FileChange;

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

pub(super) fn is_zero(n: &u64) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::*;
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
