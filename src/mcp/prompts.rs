//! MCP prompts, which clients offer as slash commands (Claude Code: `/mcp__boocoder__delegate`
//! …): `delegate` (the Boomerang workflow for a goal), `review` (a task's status and diff
//! embedded as resources, then what to check before applying) and `status` (what is running,
//! waiting, or holding an unapplied change). The texts name the tools this server publishes:
//! under `--tools orchestrator` the client cannot apply, so they hand that to the user.

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ContentBlock, GetPromptResult, JsonObject, ListPromptsResult, Prompt, PromptArgument,
    PromptMessage, Role,
};

use super::McpServer;
use super::resources::task_uri;
use super::types::TaskLine;
use crate::domain::{ChangeStatus, NEEDS_ATTENTION, Task, TaskState, now_ms, rfc3339};
use crate::engine::{EngineError, ListRequest, OutputRequest};

const DELEGATE: &str = "delegate";
const REVIEW: &str = "review";
const STATUS: &str = "status";

/// Most lines one section of `status` shows.
const STATUS_LINES: u32 = 10;
/// The diff resource's cap (`resources.rs` reads at most this much).
const DIFF_CAP: u64 = 1 << 20;

pub(super) fn list() -> ListPromptsResult {
    let arg = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    ListPromptsResult::with_all_items(vec![
        Prompt::new(
            DELEGATE,
            Some(
                "Split a goal into subtasks for coding agents, then review and apply their changes",
            ),
            Some(vec![arg("goal", "What should get done")]),
        )
        .with_title("Delegate a goal"),
        Prompt::new(
            REVIEW,
            Some("Review a task's diff and status before applying its change"),
            Some(vec![arg("task_id", "The task to review (t-…)")]),
        )
        .with_title("Review a task"),
        Prompt::new(
            STATUS,
            Some("What is running, blocked, or holding an unapplied change"),
            None,
        )
        .with_title("boocoder status"),
    ])
}

fn invalid(message: String) -> McpError {
    McpError::invalid_params(message, None)
}

fn internal(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// The prompt's one required string argument `name`; any other argument is refused.
fn required(args: &JsonObject, prompt: &str, name: &str) -> Result<String, McpError> {
    only(args, prompt, &[name])?;
    match args.get(name) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => Err(invalid(
            format!("missing required argument `{name}` of prompt `{prompt}`"),
        )),
        Some(_) => Err(invalid(format!("invalid `{name}`: must be a string"))),
    }
}

fn only(args: &JsonObject, prompt: &str, known: &[&str]) -> Result<(), McpError> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) if known.is_empty() => Err(invalid(format!(
            "unknown argument `{k}`: prompt `{prompt}` takes none"
        ))),
        Some(k) => Err(invalid(format!(
            "unknown argument `{k}`: prompt `{prompt}` takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn user_text(text: String) -> PromptMessage {
    PromptMessage::new_text(Role::User, text)
}

impl McpServer {
    /// `prompts/get`.
    pub(super) async fn prompt_get(
        &self,
        name: &str,
        args: Option<JsonObject>,
    ) -> Result<GetPromptResult, McpError> {
        let args = args.unwrap_or_default();
        // Under `--tools orchestrator` the client has no apply_pending: the user applies.
        let full = self.tool_router.has_route("apply_pending");
        match name {
            DELEGATE => {
                let goal = required(&args, name, "goal")?;
                Ok(GetPromptResult::new(vec![user_text(delegate(&goal, full))])
                    .with_description("Delegate a goal through boocoder"))
            }
            REVIEW => {
                let id = required(&args, name, "task_id")?;
                self.review(&id, full).await
            }
            STATUS => {
                only(&args, name, &[])?;
                self.status(full).await
            }
            other => Err(invalid(format!(
                "unknown prompt `{other}`; boocoder has {DELEGATE}, {REVIEW}, {STATUS}"
            ))),
        }
    }

    async fn review(&self, id: &str, full: bool) -> Result<GetPromptResult, McpError> {
        let task = self.engine.task(id).await.map_err(|e| match e {
            EngineError::NotFound { .. } => invalid(format!("invalid `task_id`: no task `{id}`")),
            e => internal(e),
        })?;
        // The change's facts without its patch (the diff resource below carries that).
        let page = self
            .engine
            .output(OutputRequest {
                task_id: task.id.clone(),
                max_events: Some(0),
                max_diff_bytes: Some(0),
                ..Default::default()
            })
            .await
            .map_err(internal)?;
        let stale = self
            .engine
            .stale_against_checkout(&task.session_id)
            .await
            .map_err(internal)?;
        let uri = task_uri(&task.id);
        let mut embed = vec![uri.clone()];
        if page.change.is_some() {
            embed.push(format!("{uri}/diff"));
        }
        let mut messages = Vec::new();
        for uri in embed {
            for contents in self.resource_read(&uri).await?.contents {
                messages.push(PromptMessage::new(
                    Role::User,
                    ContentBlock::resource(contents),
                ));
            }
        }
        let change = page
            .change
            .as_ref()
            .map(|c| (c.status, c.task_id.as_str(), c.files.len()));
        let text = review_text(&task, change, page.diff_total_bytes, stale.as_deref(), full);
        messages.push(user_text(text));
        Ok(GetPromptResult::new(messages).with_description(format!("Review task {id}")))
    }

    async fn status(&self, full: bool) -> Result<GetPromptResult, McpError> {
        let list = |states: Vec<TaskState>| {
            self.engine.list(ListRequest {
                states,
                limit: Some(STATUS_LINES),
                ..Default::default()
            })
        };
        let active = list(vec![TaskState::Running, TaskState::Pending])
            .await
            .map_err(internal)?;
        let attention = list(TaskState::parse_filter(NEEDS_ATTENTION).unwrap_or_default())
            .await
            .map_err(internal)?;
        let changes = self
            .engine
            .unapplied_changes(STATUS_LINES + 1)
            .await
            .map_err(internal)?;
        let now = now_ms();
        let mut out = format!("boocoder status at {}\n", rfc3339(now));

        out.push_str("\nRunning or queued:\n");
        for t in &active.tasks {
            let since = t.started_at.unwrap_or(t.created_at);
            out.push_str(&format!(
                "- {} {} {} · {} · {}\n",
                t.id,
                t.state,
                span(now - since),
                t.provider,
                quoted(t)
            ));
        }
        section_end(
            &mut out,
            active.tasks.is_empty(),
            active.next_cursor.is_some(),
        );

        out.push_str("\nNeeds attention (blocked on a permission question, or failed):\n");
        for t in &attention.tasks {
            let line = TaskLine::from_task(t);
            let why = match line.question {
                Some(q) => format!(" — asks: {q}"),
                None => line.result.map(|r| format!(" — {r}")).unwrap_or_default(),
            };
            out.push_str(&format!(
                "- {} {} · {} · {}{why}\n",
                t.id,
                t.state,
                t.provider,
                quoted(t)
            ));
        }
        section_end(
            &mut out,
            attention.tasks.is_empty(),
            attention.next_cursor.is_some(),
        );

        out.push_str("\nUnapplied changes (a session holding a pending change):\n");
        let more = changes.len() > STATUS_LINES as usize;
        for c in changes.iter().take(STATUS_LINES as usize) {
            let prompt = match self.engine.task(&c.task_id).await {
                Ok(t) => quoted(&t),
                Err(_) => String::new(),
            };
            let files: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).take(3).collect();
            let more = if c.files.len() > 3 { ", …" } else { "" };
            let files = format!(
                "{} ({}{more})",
                plural(c.files.len(), "file"),
                files.join(", ")
            );
            let stale = match &c.stale_files {
                Some(f) => format!(" · STALE, no longer applies: {}", f.join(", ")),
                None => String::new(),
            };
            out.push_str(&format!(
                "- {} (task {}) · {files} · {prompt}{stale}\n",
                c.session_id, c.task_id
            ));
        }
        section_end(&mut out, changes.is_empty(), more);

        out.push_str(&status_next(
            !active.tasks.is_empty(),
            &attention.tasks,
            !changes.is_empty(),
            full,
        ));
        Ok(GetPromptResult::new(vec![user_text(out)]).with_description("boocoder status"))
    }
}

/// Most of a task's prompt `review` quotes.
const ASKED_CHARS: usize = 4000;

/// A task's prompt as a quote, cut at [`ASKED_CHARS`].
fn asked(prompt: &str) -> String {
    let mut quote: String = prompt.trim().chars().take(ASKED_CHARS).collect();
    if prompt.trim().chars().count() > ASKED_CHARS {
        quote.push_str(" […]");
    }
    quote
        .lines()
        .map(|l| format!("> {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first line of the task's prompt, quoted.
fn quoted(t: &Task) -> String {
    format!("\"{}\"", TaskLine::from_task(t).prompt)
}

fn section_end(out: &mut String, empty: bool, more: bool) {
    if empty {
        out.push_str("(none)\n");
    } else if more {
        out.push_str("(more: list_tasks shows all)\n");
    }
}

/// `45s`, `3m12s`, `2h05m`.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn status_next(active: bool, attention: &[Task], changes: bool, full: bool) -> String {
    let mut next = Vec::new();
    if attention.iter().any(|t| t.state == TaskState::Blocked) {
        next.push(if full {
            "A blocked task waits on an agent's permission question (its line above; \
             check_task_status shows `waiting_for` with the options): answer with \
             answer_permission(task_id, request_id, option_id), or cancel_task; unanswered, it \
             is rejected when the provider's timeout ends."
        } else {
            "A blocked task waits on an agent's permission question (its line above; \
             check_task_status shows `waiting_for` with the options): answer with \
             answer_permission(task_id, request_id, option_id); unanswered, it is rejected when \
             the provider's timeout ends."
        });
    }
    if attention.iter().any(|t| t.state == TaskState::Failed) {
        next.push(if full {
            "A failed task: read its `error` (check_task_status), then retry_task, with an amended \
             `prompt` when the cause was the instruction."
        } else {
            "A failed task: read its `error` (check_task_status); a follow-up new_task with its \
             session_id can redo the work in the same worktree."
        });
    }
    if changes {
        next.push(if full {
            "An unapplied change: review it (the `review` prompt, or get_task_output), then \
             apply_pending with dry_run first, one session at a time, or discard_pending. A STALE \
             one no longer applies on the files named: discard it and redo the work."
        } else {
            "An unapplied change: review it (the `review` prompt, or get_task_output); the user \
             applies it with `boocoder apply ID` or drops it with `boocoder discard ID`."
        });
    }
    if active {
        next.push(
            "Running tasks: check_task_status with wait_seconds (up to 50) returns when one \
             changes state; do not poll without it.",
        );
    }
    if next.is_empty() {
        return "\nNothing is running, waiting on a question, or unapplied.\n".into();
    }
    let mut out = String::from("\nNext:\n");
    for n in next {
        out.push_str(&format!("- {n}\n"));
    }
    out
}

fn review_text(
    task: &Task,
    change: Option<(ChangeStatus, &str, usize)>,
    diff_bytes: u64,
    stale: Option<&[String]>,
    full: bool,
) -> String {
    let (id, sid) = (task.id.as_str(), task.session_id.as_str());
    let uri = task_uri(id);
    let mut out = format!(
        "Review boocoder task {id} (session {sid}, state {}) before its change lands in the \
         checkout. Above: its status ({uri})",
        task.state
    );
    match change {
        Some(_) => out.push_str(&format!(" and its session's diff ({uri}/diff).\n")),
        None => out.push_str(".\n"),
    }
    out.push_str(&format!("\nThe task asked:\n{}\n", asked(&task.prompt)));
    if !task.state.is_terminal() {
        out.push_str(&format!(
            "\nThe task is still {}: wait with check_task_status(task_id=\"{id}\", \
             wait_seconds=50) and review once it has ended.\n",
            task.state
        ));
    }
    let Some((status, change_task, files)) = change else {
        out.push_str(
            "\nThe session has no change: the task edited no files. Check that its summary \
             explains why; nothing is to be applied.\n",
        );
        return out;
    };
    let from = if change_task == id {
        String::new()
    } else {
        format!(" (from task {change_task}, another turn of the session)")
    };
    match status {
        ChangeStatus::Pending => out.push_str(&format!(
            "\nThe diff is the session's pending change{from}: {}, cumulative over its turns.\n",
            plural(files, "file")
        )),
        ChangeStatus::Applied | ChangeStatus::Discarded => {
            out.push_str(&format!(
                "\nThe session's change{from} was already {}; nothing is pending.\n",
                status.as_str()
            ));
            return out;
        }
    }
    if diff_bytes > DIFF_CAP {
        out.push_str(&format!(
            "The embedded diff stops at 1 MiB of {diff_bytes} bytes; get_task_output pages the rest.\n"
        ));
    }
    if let Some(files) = stale {
        out.push_str(&format!(
            "STALE: another session's apply changed these files; the change no longer applies \
             to them: {}. Redo them in a new session, or discard.\n",
            files.join(", ")
        ));
    }
    out.push_str(&format!(
        "\nCheck:\n\
         1. Does the diff do what the task asked, all of it? Compare it with the prompt and \
         summary; trust the diff over the summary.\n\
         2. Scope creep: edits nobody asked for (unrelated files, reformatting, renames, new \
         dependencies, weakened or deleted tests, debug leftovers).\n\
         3. Tests: are there tests for the change, and did the agent run them and see them pass? \
         get_task_output(task_id=\"{id}\") has the transcript.\n\
         4. Conflicts: stale_against_checkout (check_task_status) lists files that no longer \
         apply; a dry run fails naming files changed in the checkout, and names other sessions \
         whose pending changes touch the same files (`overlapping`).\n"
    ));
    if full {
        out.push_str(&format!(
            "\nThen one of:\n\
             - apply_pending(task_id=\"{id}\", dry_run=true), then apply_pending(task_id=\"{id}\") \
             to land it (every file or none; close_session=true when the session is done);\n\
             - new_task(session_id=\"{sid}\", prompt=\"…\") to fix what is wrong in a follow-up \
             turn in the same worktree, then review again;\n\
             - discard_pending(task_id=\"{id}\") to drop it.\n\
             Say what you decided and why."
        ));
    } else {
        out.push_str(&format!(
            "\nThis server publishes no apply_pending (--tools orchestrator). Give the user your \
             verdict: they apply with `boocoder apply {id}` (`--dry-run` checks first) or drop it \
             with `boocoder discard {id}`; to fix something, new_task(session_id=\"{sid}\", \
             prompt=\"…\") runs a follow-up turn in the same worktree."
        ));
    }
    out
}

fn delegate(goal: &str, full: bool) -> String {
    let retry = if full {
        "A failed subtask: read its `error`, then retry_task(task_id, prompt=<amended>) runs it \
         again in the same session, on top of its edits."
    } else {
        "A failed subtask: read its `error`, then new_task(session_id=<its session>, \
         prompt=<amended>) runs it again in the same worktree."
    };
    let apply = if full {
        "5. Apply, one at a time. For each completed subtask: apply_pending(task_id, dry_run=true) \
         writes nothing: it fails naming files the checkout changed under them, and \
         `overlapping` names other sessions touching the same files; then apply_pending(task_id). After each apply, \
         `now_stale` names sessions whose change no longer applies (check_task_status shows their \
         stale_against_checkout): discard_pending them and delegate that work again. A new \
         session starts from the checkout's HEAD commit, so it lacks applied but uncommitted work; \
         ask the user to commit first when the redo builds on it. Not right? \
         new_task(session_id=<its session>, prompt=<what to fix>) for a follow-up turn in the same \
         worktree, or discard_pending."
    } else {
        "5. Hand over. This server publishes no apply_pending (--tools orchestrator): leave the \
         changes pending; the user applies each with `boocoder apply ID` (one at a time, \
         `--dry-run` first). Not right? new_task(session_id=<its session>, prompt=<what to fix>) \
         for a follow-up turn in the same worktree."
    };
    let report = if full {
        "6. Report: what was applied (task ids, files), what was discarded or failed and why, \
         what is left."
    } else {
        "6. Report: each finished subtask's task_id, session_id and files, your verdict on it, \
         what failed and why, what is left."
    };
    let role = if full {
        "you plan, wait, review and apply"
    } else {
        "you plan, wait and review; the user applies"
    };
    format!(
        "Goal: {goal}\n\n\
         Get this done through boocoder: coding agents work in isolated git worktrees; {role}. \
         Nothing reaches the checkout before an apply.\n\n\
         1. Plan. Split the goal into the fewest self-contained subtasks that can each be done \
         and checked alone. Keep them on separate files where you can: two sessions editing one \
         file conflict at apply. Order subtasks that depend on each other.\n\
         2. Delegate. One new_task per subtask, each a new session (no session_id), so each gets \
         its own worktree. Its `prompt` is all the agent sees: the outcome, the files or area, \
         constraints, and how to verify (which tests to run). Link them with `parent_task_id`: \
         your own task id if you run inside a boocoder task (BOOCODER_TASK_ID), else the first \
         subtask's task_id on every later one. Leave `agent` and `model` to the server's default \
         unless the user chose (list_providers shows what is ready).\n\
         3. Wait. check_task_status(task_id, wait_seconds=50) returns as soon as the state \
         changes; list_tasks(parent_task_id=<root>, tree=true) shows the whole tree. Never poll \
         without wait_seconds. {retry}\n\
         4. Read each finished task's `summary` and `files_changed`; get_task_output (transcript, \
         diff) only when they do not settle it.\n\
         {apply}\n\
         {report}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(45_900), "45s");
        assert_eq!(span(192_000), "3m12s");
        assert_eq!(span(7_500_000), "2h05m");
        assert_eq!(span(-5), "0s");
    }

    #[test]
    fn arguments_are_named_when_missing_or_unknown() {
        let args: JsonObject = serde_json::from_value(serde_json::json!({"goal": "  "})).unwrap();
        let e = required(&args, DELEGATE, "goal").unwrap_err();
        assert!(e.message.contains("`goal`"), "{e:?}");
        let args: JsonObject = serde_json::from_value(serde_json::json!({"x": "1"})).unwrap();
        let e = only(&args, STATUS, &[]).unwrap_err();
        assert!(e.message.contains("`x`"), "{e:?}");
    }
}
