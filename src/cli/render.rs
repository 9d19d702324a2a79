//! Terminal rendering for the CLI verbs, local and remote alike (both hand over the MCP
//! result types): tables that fit the terminal, a colourised diff, and a one-line live
//! progress display. Plain text when stdout/stderr are not terminals.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use boocoder::domain::{Task, TaskState, now_ms};
use boocoder::engine::RebaseState;
use boocoder::mcp::types::{
    ApplyOutcome, RebaseOutcome, TaskLine, TaskOutput, TaskStatus, UsageStats,
};
use boocoder::providers::snapshot::ProvidersSnapshot;
use boocoder::worktree::FileChange;

use super::target::{Listed, Refusal};

pub fn width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .unwrap_or(120)
        .max(40)
}

/// Cut `s` to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max <= 1 {
        return "…".into();
    }
    format!("{}…", s.chars().take(max - 1).collect::<String>())
}

/// A table whose last column takes the remaining width.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fixed: usize = widths[..n - 1].iter().map(|w| w + 2).sum();
    widths[n - 1] = widths[n - 1].min(width().saturating_sub(fixed).max(10));
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let c = clip(c, widths[i]);
            if i + 1 == n {
                out.push_str(&c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn age(ms: i64) -> String {
    human(Duration::from_millis((now_ms() - ms).max(0) as u64)) + " ago"
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn duration(t: &Task) -> String {
    match (t.started_at, t.ended_at) {
        (Some(s), Some(e)) => human(Duration::from_millis((e - s).max(0) as u64)),
        (Some(s), None) => human(Duration::from_millis((now_ms() - s).max(0) as u64)) + "…",
        _ => "-".into(),
    }
}

/// A unified diff, with colour when writing to a terminal.
pub fn diff(text: &str, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    text.lines()
        .map(|l| {
            let code = if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff ") {
                "1"
            } else if l.starts_with('+') {
                "32"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                format!("{l}\n")
            } else {
                format!("\x1b[{code}m{l}\x1b[0m\n")
            }
        })
        .collect()
}

/// Live progress on stderr: a spinner line on a terminal, plain lines otherwise.
pub struct Progress {
    tty: bool,
    start: Instant,
    frame: usize,
    last: String,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            frame: 0,
            last: String::new(),
        }
    }

    /// Show the state and the latest transcript line.
    pub fn update(&mut self, state: TaskState, line: Option<&str>) {
        let line = line.map(str::trim).filter(|l| !l.is_empty());
        let mut err = std::io::stderr();
        if self.tty {
            const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            self.frame = (self.frame + 1) % FRAMES.len();
            if let Some(l) = line {
                self.last = l.to_string();
            }
            let head = format!(
                "{} {:>6} {:<9} ",
                FRAMES[self.frame],
                human(self.start.elapsed()),
                state.as_str()
            );
            let room = width().saturating_sub(head.chars().count() + 1);
            let _ = write!(err, "\r\x1b[2K{head}{}", clip(&self.last, room));
        } else if let Some(l) = line
            && l != self.last
        {
            self.last = l.to_string();
            let _ = writeln!(
                err,
                "[{} {}] {l}",
                human(self.start.elapsed()),
                state.as_str()
            );
        }
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// How long a task took by its status (`…` while it runs), as `duration` says for a `Task`.
pub fn took(s: &TaskStatus) -> String {
    match s.duration_seconds {
        Some(d) if s.ended_at.is_some() => human(Duration::from_secs_f64(d.max(0.0))),
        Some(d) => human(Duration::from_secs_f64(d.max(0.0))) + "…",
        None => "-".into(),
    }
}

/// The age of an RFC 3339 timestamp (as the MCP results carry them).
pub fn age_of(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => age(t.timestamp_millis()),
        Err(_) => rfc3339.to_string(),
    }
}

pub fn file_line(f: &FileChange) -> String {
    format!(
        "{:<9} {} (+{} -{}){}",
        format!("{:?}", f.status).to_lowercase(),
        f.path,
        f.additions,
        f.deletions,
        if f.binary { " binary" } else { "" }
    )
}

fn file_lines(files: &[FileChange]) -> String {
    files
        .iter()
        .map(|f| format!("  {}\n", file_line(f)))
        .collect()
}

/// A finished (or waited-on) task: state, time, summary, error and its pending `files` (all of
/// them; the status names only the largest).
pub fn result(s: &TaskStatus, files: &[FileChange]) -> String {
    let mut out = format!("{} {} in {}\n", s.task_id, s.state, took(s));
    if let Some(summary) = &s.summary {
        out += &format!("\n{}\n", summary.trim());
    }
    if let Some(e) = &s.error {
        out += &format!("\nerror: {e}\n");
    }
    if !s.usage.is_empty() {
        out += &format!("\nusage: {}\n", s.usage.describe());
    }
    if !files.is_empty() {
        out += &format!(
            "\nchanged files (pending; `boocoder apply {}` to land them):\n",
            s.task_id
        );
        out += &file_lines(files);
    }
    out
}

/// The `ls` table.
pub fn tasks(rows: &[Listed]) -> String {
    if rows.is_empty() {
        return "no tasks\n".into();
    }
    // The cost column only when some agent reported one.
    let costs = rows.iter().any(|r| r.line.cost_usd.is_some());
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let l = &r.line;
            let mut row = vec![
                l.task_id.clone(),
                l.state.to_string(),
                l.agent.clone(),
                age_of(&l.created_at),
                r.took.clone().unwrap_or_else(|| "-".into()),
                l.files_changed.to_string(),
            ];
            if costs {
                row.push(dollars(l.cost_usd));
            }
            let summary = match &l.question {
                Some(q) => format!("asks: {q}"),
                None => l.result.clone().unwrap_or_else(|| l.prompt.clone()),
            };
            row.push(summary);
            row
        })
        .collect();
    let mut headers = vec!["ID", "STATE", "AGENT", "AGE", "TOOK", "FILES"];
    if costs {
        headers.push("COST");
    }
    headers.push("SUMMARY");
    table(&headers, &rows)
}

/// `$0.0123`, or `-` when not reported.
fn dollars(c: Option<f64>) -> String {
    c.map_or("-".into(), |c| format!("${c:.4}"))
}

/// `stats`: one row per group.
pub fn stats(s: &UsageStats) -> String {
    if s.groups.is_empty() {
        return "no tasks\n".into();
    }
    let secs = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}s"));
    let rows: Vec<Vec<String>> = s
        .groups
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                g.tasks.to_string(),
                g.completed.to_string(),
                g.failed.to_string(),
                g.cancelled.to_string(),
                g.success_rate
                    .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
                secs(g.median_seconds),
                secs(g.p90_seconds),
                g.input_tokens.to_string(),
                g.output_tokens.to_string(),
                dollars(g.cost_usd),
            ]
        })
        .collect();
    let by = serde_json::to_value(s.group_by)
        .ok()
        .and_then(|v| v.as_str().map(str::to_uppercase))
        .unwrap_or_default();
    table(
        &[
            &by,
            "TASKS",
            "DONE",
            "FAILED",
            "CANCELLED",
            "SUCCESS",
            "MEDIAN",
            "P90",
            "IN TOKENS",
            "OUT TOKENS",
            "COST",
        ],
        &rows,
    ) + &format!("({})\n", s.note)
}

/// `tree`: one line per task, indented under the task that delegated it.
pub fn tree(lines: &[TaskLine]) -> String {
    let mut out = String::new();
    // For each open level: whether a later sibling still follows (draw `│`).
    let mut open: Vec<bool> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let depth = l.depth.unwrap_or(0) as usize;
        let later_sibling = lines[i + 1..]
            .iter()
            .map(|n| n.depth.unwrap_or(0) as usize)
            .take_while(|d| *d >= depth)
            .any(|d| d == depth);
        open.truncate(depth.saturating_sub(1));
        let mut prefix: String = open
            .iter()
            .map(|more| if *more { "│  " } else { "   " })
            .collect();
        if depth > 0 {
            prefix += if later_sibling { "├─ " } else { "└─ " };
            open.push(later_sibling);
        }
        let what = l.result.clone().unwrap_or_else(|| l.prompt.clone());
        out += &format!("{prefix}{} {} {} {what}\n", l.task_id, l.state, l.agent);
    }
    out
}

/// `show`: the task's fields, its transcript and the session's diff.
pub fn output(o: &TaskOutput, colour: bool) -> String {
    let s = &o.status;
    let mut out = format!(
        "task     {}\nsession  {}\nstate    {}\nagent    {}\nproject  {}\ncreated  {}\ntook     {}\n",
        s.task_id,
        s.session_id,
        s.state,
        s.agent,
        s.project,
        age_of(&s.created_at),
        took(s)
    );
    if let Some(e) = &s.error {
        out += &format!("error    {e}\n");
    }
    out += "\n── transcript ──\n";
    for e in &o.transcript {
        out += &format!("[{}] {}\n", e.kind.as_str(), e.text.trim_end());
    }
    match &o.change_status {
        Some(c) => out += &format!("\n── diff ({c}) ──\n{}", diff(&o.diff, colour)),
        None => out += "\n── no file changes ──\n",
    }
    out
}

/// What `apply` (or its dry run) wrote.
pub fn applied(o: &ApplyOutcome) -> String {
    let verb = if o.dry_run { "would apply" } else { "applied" };
    let mut out = format!(
        "{verb} {} file(s) from session {}:\n{}",
        o.files.len(),
        o.session_id,
        file_lines(&o.files)
    );
    for ov in &o.overlapping {
        out += &format!(
            "note: session {} (task {}) also changes {}\n",
            ov.session_id,
            ov.task_id,
            ov.files.join(", ")
        );
    }
    for s in &o.now_stale {
        out += &format!("note: session {s}'s pending change no longer applies cleanly\n");
    }
    out
}

/// What `rebase` did; on a conflict, each file with the lines both sides changed.
pub fn rebased(r: &RebaseOutcome) -> String {
    let mut out = match r.result {
        RebaseState::Merged => format!(
            "rebased session {} onto the checkout; its change now applies ({} file(s)):\n{}",
            r.session_id,
            r.files.len(),
            file_lines(&r.files)
        ),
        RebaseState::UpToDate => format!(
            "session {}'s change already applies to the checkout; nothing to rebase\n",
            r.session_id
        ),
        RebaseState::Conflict => format!(
            "conflict: session {}'s change and the checkout changed the same lines:\n",
            r.session_id
        ),
    };
    for c in &r.conflicts {
        out += &format!("  {}: {}\n", c.path, c.reason);
        for h in &c.hunks {
            out += &format!("    checkout {}:\n", h.checkout);
            for l in &h.checkout_lines {
                out += &format!("      {l}\n");
            }
            out += &format!("    session {}:\n", h.session);
            for l in &h.session_lines {
                out += &format!("      {l}\n");
            }
        }
    }
    if r.result == RebaseState::Conflict {
        out += &format!("{}\n", r.hint);
    }
    out
}

/// Why `apply` wrote nothing (for stderr).
pub fn refusal(r: &Refusal) -> String {
    match r {
        Refusal::Conflict(files) => {
            let mut out = "refused: the checkout changed under these files:\n".to_string();
            for (path, reason) in files {
                out += &format!("  {path}: {reason}\n");
            }
            out + "nothing was written\n"
        }
        Refusal::Remote(msg) => format!("refused: {msg}\n"),
    }
}

/// The provider table.
pub fn providers(snap: &ProvidersSnapshot) -> String {
    let rows: Vec<Vec<String>> = snap
        .providers
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.transport.as_str().to_string(),
                p.status.as_str().to_string(),
                p.version.clone().unwrap_or_default(),
                p.diagnostic.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "TRANSPORT", "STATUS", "VERSION", "DIAGNOSTIC"],
        &rows,
    )
}
