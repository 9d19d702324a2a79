//! Request and result types of the engine's read operations (list, output) and their
//! validation: every argument is checked before anything is read, and errors name the field.
//! A new task's checks are in `new_task.rs`.

use super::{Engine, EngineError, Result, canonical_dir};
use crate::domain::{PendingChange, Task, TaskEvent, TaskState};
use crate::store::{StoredEvent, TaskFilter};
use crate::worktree::FileChange;

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field,
        message: message.into(),
    }
}

/// Treat `""` like an absent optional argument: LLM callers often send empty strings.
pub(super) fn opt(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Any of these states (none: any state).
    pub states: Vec<TaskState>,
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
        states: req.states,
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
    /// Other sessions whose pending changes touch the same files.
    pub overlaps: Vec<super::Overlap>,
    /// Other sessions whose pending changes no longer apply cleanly after this apply.
    pub now_stale: Vec<String>,
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
