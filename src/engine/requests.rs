//! Request and result types of the engine's public operations, and their validation. Every
//! argument is checked here, before anything is written, and errors name the field.

use std::path::PathBuf;

use super::{Engine, EngineError, Result, blocking, canonical_dir};
use crate::backend::native::SamplerHandle;
use crate::domain::{PendingChange, PermissionPolicy, Task, TaskEvent, TaskState, new_id};
use crate::providers::{ProviderError, Transport};
use crate::store::{NewTaskRow, StoredEvent, TaskFilter};
use crate::worktree::{self, FileChange};

/// Largest prompt accepted; a bigger one is almost certainly a mistake.
const MAX_PROMPT_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub prompt: String,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub mode: Option<String>,
    /// `allow`, `deny` or `ask`; ACP providers only.
    pub permission: Option<String>,
    pub project: Option<String>,
    pub parent_task_id: Option<String>,
    pub session_id: Option<String>,
    pub continue_task_id: Option<String>,
    /// The submitting MCP client's sampling, when it offers it: the native loop's model when
    /// no endpoint is configured.
    pub sampler: Option<SamplerHandle>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field,
        message: message.into(),
    }
}

/// Treat `""` like an absent optional argument: LLM callers often send empty strings.
fn opt(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub(super) async fn validate_new_task(engine: &Engine, req: NewTask) -> Result<NewTaskRow> {
    if req.prompt.trim().is_empty() {
        return Err(invalid("prompt", "must not be empty"));
    }
    if req.prompt.len() > MAX_PROMPT_BYTES {
        return Err(invalid(
            "prompt",
            format!(
                "is {} bytes; the limit is {MAX_PROMPT_BYTES}",
                req.prompt.len()
            ),
        ));
    }
    let (session_id, continue_task_id) = (opt(req.session_id), opt(req.continue_task_id));
    let session_id = match (session_id, continue_task_id) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "continue_task_id",
                "give either `session_id` or `continue_task_id`, not both",
            ));
        }
        (Some(s), None) => Some(s),
        (None, Some(t)) => match engine.inner.store.task(&t).await? {
            Some(task) => Some(task.session_id),
            None => return Err(invalid("continue_task_id", format!("no task `{t}`"))),
        },
        (None, None) => None,
    };
    let session = match &session_id {
        Some(id) => match engine.inner.store.session(id).await? {
            Some(s) if s.closed => {
                return Err(invalid("session_id", format!("session `{id}` is closed")));
            }
            Some(s) => Some(s),
            None => return Err(invalid("session_id", format!("no session `{id}`"))),
        },
        None => None,
    };

    let project_path = match (&session, opt(req.project)) {
        (Some(s), Some(p)) => {
            let p = resolve_project(engine, &p).await?;
            if p.to_string_lossy() != s.project_path {
                return Err(invalid(
                    "project",
                    format!(
                        "session `{}` belongs to project `{}`, not `{}`",
                        s.id,
                        s.project_path,
                        p.display()
                    ),
                ));
            }
            s.project_path.clone()
        }
        (Some(s), None) => s.project_path.clone(),
        (None, Some(p)) => resolve_project(engine, &p)
            .await?
            .to_string_lossy()
            .into_owned(),
        (None, None) => match &engine.inner.config.default_project {
            Some(p) => resolve_project(engine, &p.to_string_lossy())
                .await?
                .to_string_lossy()
                .into_owned(),
            None => {
                return Err(invalid(
                    "project",
                    "no project given and the server has no default project (pass the path of a git repository, or start the server with --project)",
                ));
            }
        },
    };

    if let Some(parent) = opt(req.parent_task_id.clone())
        && engine.inner.store.task(&parent).await?.is_none()
    {
        return Err(invalid("parent_task_id", format!("no task `{parent}`")));
    }

    let registry = engine.registry();
    let agent = match (opt(req.agent), &session, &engine.inner.config.default_agent) {
        (Some(a), _, _) => a,
        (None, Some(s), _) => s.provider.clone(),
        (None, None, Some(d)) => d.clone(),
        // An endpoint (or a client that can sample) makes boocoder's own loop the default.
        (None, None, None) if engine.inner.config.llm.is_some() || req.sampler.is_some() => {
            "native".to_string()
        }
        (None, None, None) => {
            return Err(invalid(
                "agent",
                format!(
                    "no agent given and no default configured; choose one of: {}",
                    registry.available().join(", ")
                ),
            ));
        }
    };
    let provider = match registry.resolve(&agent) {
        Ok(p) => p,
        Err(ProviderError::NotConfigured { .. })
            if req.sampler.is_some() && engine.inner.backends.native.is_some() =>
        {
            registry
                .all()
                .find(|p| p.id == agent)
                .ok_or_else(|| invalid("agent", format!("unknown provider `{agent}`")))?
        }
        Err(e) => return Err(invalid("agent", e.to_string())),
    };
    let (model, mode) = (opt(req.model), opt(req.mode));
    let permission =
        match opt(req.permission) {
            None => None,
            Some(p) => Some(PermissionPolicy::parse(&p).ok_or_else(|| {
                invalid("permission", format!("`{p}`: use one of allow, deny, ask"))
            })?),
        };
    if let (Some(p), Transport::Cli | Transport::Native) = (permission, provider.transport) {
        return Err(invalid(
            "permission",
            format!(
                "`{}`: provider `{agent}` is not an ACP agent and asks no permissions",
                p.as_str()
            ),
        ));
    }
    if provider.transport == Transport::Cli {
        if let Some(m) = &mode {
            return Err(invalid(
                "mode",
                format!("`{m}`: provider `{agent}` is a one-shot CLI agent and has no modes"),
            ));
        }
        if model.is_some() && provider.model_args.is_empty() {
            return Err(invalid(
                "model",
                format!("provider `{agent}` takes no model (its `model_args` are not configured)"),
            ));
        }
    }

    if provider.transport == Transport::Native {
        if let Some(m) = &mode {
            return Err(invalid(
                "mode",
                format!("`{m}`: the native provider has no modes"),
            ));
        }
        // Through MCP sampling the client picks the model; an endpoint needs one named.
        let needs_model = engine
            .inner
            .config
            .llm
            .as_ref()
            .is_some_and(|l| l.model.is_none());
        if model.is_none() && needs_model {
            return Err(invalid(
                "model",
                "the native provider needs a model: pass `model`, or start boocoder with --model (BOOCODER_MODEL)",
            ));
        }
    }
    // What the provider's last probe found (ACP: the modes and models of `session/new`;
    // native: the endpoint's models). Without a probe they are checked when the turn starts
    // (an unknown one fails the task naming the valid ones).
    if let Some(probe) = engine.probe_of(&agent) {
        for (field, value, valid) in [
            ("mode", &mode, &probe.modes),
            ("model", &model, &probe.models),
        ] {
            if let Some(v) = value
                && !valid.is_empty()
                && !valid.contains(v)
            {
                return Err(invalid(
                    field,
                    format!(
                        "`{v}` is not offered by provider `{agent}`; valid {field}s: {}",
                        valid.join(", ")
                    ),
                ));
            }
        }
    }
    let (session_id, new_session_provider) = match session {
        Some(s) => (s.id, None),
        None => (new_id("s"), Some(agent.clone())),
    };
    Ok(NewTaskRow {
        id: new_id("t"),
        project_path,
        session_id,
        new_session_provider,
        parent_task_id: opt(req.parent_task_id),
        prompt: req.prompt,
        provider: agent,
        model,
        mode,
        permission,
    })
}

/// A project is a git repository with at least one commit, inside an allowed root. Both the
/// directory named and the work tree it resolves to are checked: `Repository::discover` walks
/// up from a plain subdirectory to a repository that may lie outside every root, and a git
/// directory's `core.worktree` can point anywhere, while `apply_pending` writes into that
/// work tree. The server's own `--project` is exempt: the operator named it.
async fn resolve_project(engine: &Engine, raw: &str) -> Result<PathBuf> {
    let dir = canonical_dir("project", raw)?;
    let config = &engine.inner.config;
    let roots = &config.allowed_roots;
    if !within_roots(roots, &dir) {
        return Err(outside_roots("project", &dir, None, roots));
    }
    let asked = dir.clone();
    let root = blocking(move || worktree::project_root(&asked))
        .await
        .map_err(|e| invalid("project", e.to_string()))?;
    let named_by_operator = config.default_project.as_deref() == Some(dir.as_path());
    if !named_by_operator && !within_roots(roots, &root) {
        return Err(outside_roots("project", &dir, Some(&root), roots));
    }
    Ok(root)
}

/// An apply writes into the session's project: refuse it when the project is no longer inside
/// the allowed roots (a session created under a wider `--allow-root`).
pub(super) fn check_project_still_allowed(
    engine: &Engine,
    project: &std::path::Path,
) -> Result<()> {
    let config = &engine.inner.config;
    let named_by_operator = config.default_project.as_deref() == Some(project);
    if named_by_operator || within_roots(&config.allowed_roots, project) {
        return Ok(());
    }
    Err(EngineError::State(format!(
        "the session's project `{}` is outside the allowed roots ({}); start the server with --allow-root to permit it",
        project.display(),
        config
            .allowed_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Whether `path` (canonical) lies in one of the allowed roots; no roots means no limit.
fn within_roots(roots: &[PathBuf], path: &std::path::Path) -> bool {
    roots.is_empty() || roots.iter().any(|r| path.starts_with(r))
}

fn outside_roots(
    field: &'static str,
    dir: &std::path::Path,
    work_tree: Option<&std::path::Path>,
    roots: &[PathBuf],
) -> EngineError {
    let roots = roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let what = match work_tree {
        None => format!("`{}` is outside the allowed roots ({roots})", dir.display()),
        Some(wt) => format!(
            "`{}` belongs to the git work tree `{}`, which is outside the allowed roots ({roots})",
            dir.display(),
            wt.display()
        ),
    };
    invalid(
        field,
        format!("{what}; start the server with --allow-root to permit it"),
    )
}

#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub state: Option<TaskState>,
    pub project: Option<String>,
    pub parent_task_id: Option<String>,
    pub session_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

pub struct TaskListPage {
    pub tasks: Vec<Task>,
    /// Pass back as `cursor` for the next (older) page.
    pub next_cursor: Option<String>,
}

const DEFAULT_LIST_LIMIT: u32 = 20;
const MAX_LIST_LIMIT: u32 = 200;

pub(super) async fn list(engine: &Engine, req: ListRequest) -> Result<TaskListPage> {
    let limit = req.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(invalid(
            "limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let before = match opt(req.cursor) {
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| {
            invalid(
                "cursor",
                "not a cursor returned by list_tasks (pass `next_cursor` unchanged)",
            )
        })?),
        None => None,
    };
    let project_path = match opt(req.project) {
        Some(p) => Some(canonical_dir("project", &p)?.to_string_lossy().into_owned()),
        None => None,
    };
    let filter = TaskFilter {
        state: req.state,
        project_path,
        parent_task_id: opt(req.parent_task_id),
        session_id: opt(req.session_id),
        before,
        limit: limit + 1,
    };
    let mut tasks = engine.inner.store.list_tasks(&filter).await?;
    let next_cursor = if tasks.len() > limit as usize {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| format!("{}:{}", t.created_at, t.id))
    } else {
        None
    };
    Ok(TaskListPage { tasks, next_cursor })
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, id) = c.split_once(':')?;
    let at = at.parse().ok()?;
    (!id.is_empty()).then(|| (at, id.to_string()))
}

#[derive(Debug, Clone, Default)]
pub struct OutputRequest {
    pub task_id: String,
    /// Return transcript entries after this sequence number.
    pub after_seq: Option<i64>,
    pub max_events: Option<u32>,
    /// Byte offset into the unified diff.
    pub diff_offset: Option<u64>,
    pub max_diff_bytes: Option<u64>,
}

pub struct OutputPage {
    pub task: Task,
    pub final_message: Option<String>,
    pub events: Vec<TaskEvent>,
    pub next_after_seq: Option<i64>,
    /// The session's change this task produced or last saw.
    pub change: Option<PendingChange>,
    pub diff: String,
    pub diff_total_bytes: u64,
    pub next_diff_offset: Option<u64>,
}

const DEFAULT_EVENTS: u32 = 200;
/// Most transcript bytes (text plus detail) one page returns. A page ends before the entry
/// that would pass it; stored entries are capped well below this, so each fits a page whole.
const PAGE_BYTES: usize = 256 << 10;
/// Rows read per query while filling a page.
const PAGE_READ_ROWS: usize = 32;
const MAX_EVENTS: u32 = 1000;
const DEFAULT_DIFF_BYTES: u64 = 64 << 10;
const MAX_DIFF_BYTES: u64 = 1 << 20;

pub(super) async fn output(engine: &Engine, req: OutputRequest) -> Result<OutputPage> {
    let max_events = req.max_events.unwrap_or(DEFAULT_EVENTS);
    if max_events > MAX_EVENTS {
        return Err(invalid("max_events", format!("at most {MAX_EVENTS}")));
    }
    let max_diff = req.max_diff_bytes.unwrap_or(DEFAULT_DIFF_BYTES);
    if max_diff > MAX_DIFF_BYTES {
        return Err(invalid(
            "max_diff_bytes",
            format!("at most {MAX_DIFF_BYTES}"),
        ));
    }
    let after = req.after_seq.unwrap_or(0);
    if after < 0 {
        return Err(invalid("after_seq", "must not be negative"));
    }
    let task = engine.task(&req.task_id).await?;
    let (events, next_after_seq) = transcript_page(engine, &task.id, after, max_events).await?;
    let change = match engine.inner.store.pending_change(&task.session_id).await? {
        Some(c) => Some(c),
        None => engine.inner.store.latest_change(&task.session_id).await?,
    };
    let patch: &[u8] = change.as_ref().map(|c| c.patch.as_slice()).unwrap_or(&[]);
    let total = patch.len() as u64;
    let offset = req.diff_offset.unwrap_or(0);
    if offset > total {
        return Err(invalid(
            "diff_offset",
            format!("is past the end of the diff ({total} bytes)"),
        ));
    }
    let end = (offset + max_diff).min(total);
    let (start, end) = (
        char_floor(patch, offset as usize),
        char_floor(patch, end as usize),
    );
    let diff = String::from_utf8_lossy(&patch[start..end]).into_owned();
    let next_diff_offset = ((end as u64) < total).then_some(end as u64);
    let final_message = engine.inner.store.final_message(&task.id).await?;
    Ok(OutputPage {
        task,
        final_message,
        events,
        next_after_seq,
        change,
        diff,
        diff_total_bytes: total,
        next_diff_offset,
    })
}

/// Entries after `after` up to `max_events` and [`PAGE_BYTES`], and the `after_seq` of the next
/// page when there is more. Read a few rows at a time, each cut to the page size in SQL, so a
/// page of big entries costs a bounded amount of memory.
async fn transcript_page(
    engine: &Engine,
    task_id: &str,
    mut after: i64,
    max_events: u32,
) -> Result<(Vec<TaskEvent>, Option<i64>)> {
    let mut events: Vec<TaskEvent> = Vec::new();
    if max_events == 0 {
        return Ok((events, None));
    }
    let mut used = 0usize;
    loop {
        let want = (max_events as usize - events.len()).min(PAGE_READ_ROWS) + 1;
        let rows = engine
            .inner
            .store
            .events(task_id, after, want as u32, PAGE_BYTES as u32)
            .await?;
        let ended = rows.len() < want;
        for row in rows {
            let event = fit_page(row);
            let size = event.text.len() + event.data.as_ref().map_or(0, |d| d.to_string().len());
            // The first entry always goes in (cut to the page size), so paging moves on.
            if events.len() == max_events as usize
                || (!events.is_empty() && used + size > PAGE_BYTES)
            {
                return Ok((events, Some(after)));
            }
            used += size;
            after = event.seq;
            events.push(event);
        }
        if ended {
            return Ok((events, None));
        }
    }
}

/// An entry as one page can hold it (at most [`PAGE_BYTES`] of text and detail): text cut with
/// a note, detail that does not fit replaced by one. Only rows stored before entries were
/// capped are this large.
fn fit_page(row: StoredEvent) -> TaskEvent {
    const NOTE_ROOM: usize = 256;
    let mut event = row.event;
    if row.text_cut || event.text.len() > PAGE_BYTES - NOTE_ROOM {
        let mut end = event.text.len().min(PAGE_BYTES - NOTE_ROOM);
        while !event.text.is_char_boundary(end) {
            end -= 1;
        }
        event.text.truncate(end);
        event
            .text
            .push_str(" [… the rest of this entry is larger than a page and not shown]");
    }
    let data_len = event.data.as_ref().map_or(0, |d| d.to_string().len());
    if row.data_cut || event.text.len() + data_len > PAGE_BYTES {
        event.data = Some(serde_json::json!({
            "not_shown": "this entry's detail is larger than a page"
        }));
    }
    event
}

/// Move a byte offset back to a UTF-8 boundary so pages never split a character.
fn char_floor(bytes: &[u8], mut i: usize) -> usize {
    while i > 0 && i < bytes.len() && (bytes[i] & 0b1100_0000) == 0b1000_0000 {
        i -= 1;
    }
    i
}

pub struct ApplyResult {
    pub session_id: String,
    pub task_id: String,
    pub dry_run: bool,
    pub files: Vec<FileChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        assert_eq!(parse_cursor("123:t-abc"), Some((123, "t-abc".into())));
        assert_eq!(parse_cursor("x:t-abc"), None);
        assert_eq!(parse_cursor("123:"), None);
        assert_eq!(parse_cursor("nocolon"), None);
    }

    #[test]
    fn pages_never_split_a_character() {
        let s = "aé".as_bytes(); // 'é' is two bytes at 1..3
        assert_eq!(char_floor(s, 2), 1);
        assert_eq!(char_floor(s, 3), 3);
    }
}
