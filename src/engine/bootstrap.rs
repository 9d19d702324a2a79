//! Making a session worktree ready to build before the agent works in it: the project's
//! `.worktreeinclude` files and heavy directories brought from the checkout (once per
//! worktree), then its setup command (once per session: a failed setup fails the turn, and the
//! session's next turn tries again). Markers in the worktree's git directory say what is done,
//! so a restarted server neither repeats a finished setup nor skips an unfinished one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use super::{Inner, blocking};
use crate::backend::BackendError;
use crate::backend::process::{
    LINE_CAP, PIPE_DRAIN, Tail, agent_command, capped_text, read_line_capped, spawn,
};
use crate::config::Config;
use crate::domain::EventKind;
use crate::projects::{Bootstrap, Setup};
use crate::worktree;

/// Include files and heavy directories are in place.
const PREPARED: &str = "boocoder-prepared";
/// The setup command succeeded in this worktree.
pub(super) const SET_UP: &str = "boocoder-setup-done";
/// Notes of a preparation no transcript has shown yet (a spare prepared ahead of need).
const NOTES: &str = "boocoder-notes";
/// What a setup's output keeps for the transcript and the error.
const OUTPUT_TAIL: usize = 16 << 10;

type Event = (EventKind, String, Option<serde_json::Value>);

/// Prepare the worktree `wt` of a session on `project` for the turn `task_id`; notices go to
/// that turn's transcript (with those of a preparation done ahead, for a pooled worktree).
pub(super) async fn prepare(
    inner: &Inner,
    task_id: &str,
    project: &Path,
    wt: &Path,
    cancel: &CancellationToken,
) -> Result<(), BackendError> {
    let git_dir = wt.join(".git");
    let mut notes = Vec::new();
    if let Ok(ahead) = std::fs::read_to_string(git_dir.join(NOTES)) {
        let _ = std::fs::remove_file(git_dir.join(NOTES));
        if !ahead.trim().is_empty() {
            notes.push(format!(
                "this worktree was made ready ahead of need (worktree pool):\n{}",
                ahead.trim_end()
            ));
        }
    }
    let done = prepare_worktree(&inner.config, project, wt, cancel, &mut notes).await;
    let events: Vec<Event> = notes
        .into_iter()
        .map(|n| (EventKind::Notice, n, None))
        .collect();
    note(inner, task_id, events).await;
    done
}

/// Prepare a spare worktree ahead of need; its notes wait in the worktree for the turn that
/// takes it. `Err` when it could not be made ready (the spare is dropped).
pub(super) async fn prepare_spare(
    config: &Config,
    project: &Path,
    spare: &Path,
    cancel: &CancellationToken,
) -> Result<(), BackendError> {
    let mut notes = Vec::new();
    prepare_worktree(config, project, spare, cancel, &mut notes).await?;
    let mut text = notes.join("\n");
    text.push('\n');
    std::fs::write(spare.join(".git").join(NOTES), text).map_err(BackendError::Io)
}

/// The steps not done yet in `wt`: include files and heavy directories once per worktree,
/// then the setup command until it succeeds once.
async fn prepare_worktree(
    config: &Config,
    project: &Path,
    wt: &Path,
    cancel: &CancellationToken,
    notes: &mut Vec<String>,
) -> Result<(), BackendError> {
    let git_dir = wt.join(".git");
    // A small file read: not worth a blocking thread.
    let settings = crate::projects::bootstrap(&config.data_dir, project, config.trust_repo_setup)
        .map_err(|e| stopped(format!("project settings: {e}")))?;
    if !git_dir.join(PREPARED).exists() {
        notes.extend(bring_in(project, wt, &settings).await?);
        mark(&git_dir.join(PREPARED))?;
    }
    let Some(setup) = &settings.setup else {
        return Ok(());
    };
    if git_dir.join(SET_UP).exists() {
        return Ok(());
    }
    let ran = run_setup(setup, wt, cancel).await;
    notes.push(ran.describe(setup));
    match ran.outcome {
        SetupOutcome::Succeeded => mark(&git_dir.join(SET_UP)),
        SetupOutcome::Cancelled => Err(BackendError::Cancelled),
        _ => Err(stopped(ran.error(setup))),
    }
}

/// Copy the `.worktreeinclude` files and bring the heavy directories; the notices say what
/// came in, what did not and why, and how long it took.
async fn bring_in(
    project: &Path,
    wt: &Path,
    settings: &Bootstrap,
) -> Result<Vec<String>, BackendError> {
    let (p, w, dirs) = (
        project.to_path_buf(),
        wt.to_path_buf(),
        settings.bring.clone(),
    );
    let (included, brought) = blocking(move || {
        let t0 = Instant::now();
        let included = worktree::copy_included(&p, &w)?;
        let took = t0.elapsed();
        let brought = worktree::bring(&p, &w, &dirs)?;
        Ok::<_, worktree::WorktreeError>(((included, took), brought))
    })
    .await
    .map_err(|e| stopped(format!("preparing the worktree: {e}")))?;
    let mut events = Vec::new();
    let ((included, took), brought) = (included, brought);
    if !included.copied.is_empty() || !included.skipped.is_empty() {
        let mut text = format!(
            "{}: copied {} from the checkout in {} ms",
            worktree::INCLUDE_FILE,
            list(&included.copied),
            took.as_millis()
        );
        if !included.skipped.is_empty() {
            text.push_str(&format!("; skipped {}", included.skipped.join("; ")));
        }
        events.push(text);
    }
    for b in brought {
        let text = match (b.how, b.note) {
            (Some(how), _) => format!(
                "brought {} from the checkout ({how}, {} ms)",
                b.path, b.millis
            ),
            (None, note) => format!("did not bring {}: {}", b.path, note.unwrap_or_default()),
        };
        events.push(text);
    }
    Ok(events)
}

fn list(paths: &[String]) -> String {
    if paths.is_empty() {
        "nothing".into()
    } else {
        paths.join(", ")
    }
}

enum SetupOutcome {
    Succeeded,
    Failed(String),
    TimedOut,
    Cancelled,
    NotStarted(String),
}

struct SetupRun {
    outcome: SetupOutcome,
    output: String,
    took: Duration,
}

impl SetupRun {
    fn describe(&self, setup: &Setup) -> String {
        let what = match &self.outcome {
            SetupOutcome::Succeeded => "finished".to_string(),
            SetupOutcome::Failed(status) => format!("failed ({status})"),
            SetupOutcome::TimedOut => format!("timed out after {} s", setup.timeout.as_secs()),
            SetupOutcome::Cancelled => "cancelled".to_string(),
            SetupOutcome::NotStarted(e) => format!("could not start: {e}"),
        };
        let mut text = format!(
            "setup {} (from {}) {what} in {:.1} s",
            shown(&setup.argv),
            setup.source,
            self.took.as_secs_f64()
        );
        if !self.output.is_empty() {
            text.push_str(&format!("; output:\n{}", self.output));
        }
        text
    }

    fn error(&self, setup: &Setup) -> String {
        let what = match &self.outcome {
            SetupOutcome::Failed(status) => format!("failed with {status}"),
            SetupOutcome::TimedOut => format!("timed out after {} s", setup.timeout.as_secs()),
            SetupOutcome::NotStarted(e) => format!("could not start: {e}"),
            SetupOutcome::Succeeded | SetupOutcome::Cancelled => "ended".into(),
        };
        let last: Vec<&str> = self.output.lines().rev().take(20).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        let mut msg = format!(
            "the project's setup {} {what}; the session's next turn runs it again",
            shown(&setup.argv)
        );
        if !last.is_empty() {
            msg.push_str(&format!("; last lines:\n{}", last.join("\n")));
        }
        msg
    }
}

fn shown(argv: &[String]) -> String {
    format!("`{}`", argv.join(" "))
}

/// Run the setup argv in the worktree the way agents run (own process group, boocoder's own
/// variables removed), keeping the tail of its output, within its timeout.
async fn run_setup(setup: &Setup, wt: &Path, cancel: &CancellationToken) -> SetupRun {
    let t0 = Instant::now();
    let tail = Arc::new(Mutex::new(Tail::new(OUTPUT_TAIL)));
    let run = |outcome| SetupRun {
        outcome,
        output: String::new(),
        took: t0.elapsed(),
    };
    let Some((program, args)) = setup.argv.split_first() else {
        return run(SetupOutcome::NotStarted("empty command".into()));
    };
    let mut cmd = agent_command(program, wt);
    cmd.args(args).stdin(std::process::Stdio::null());
    let (mut child, group) = match spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => return run(SetupOutcome::NotStarted(e.to_string())),
    };
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(BufReader::new(out), tail.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(BufReader::new(err), tail.clone())));
    }
    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(s) if s.success() => SetupOutcome::Succeeded,
            Ok(s) => SetupOutcome::Failed(s.to_string()),
            Err(e) => SetupOutcome::Failed(e.to_string()),
        },
        () = tokio::time::sleep(setup.timeout) => SetupOutcome::TimedOut,
        () = cancel.cancelled() => SetupOutcome::Cancelled,
    };
    group.kill_all();
    let _ = child.wait().await;
    let _ = tokio::time::timeout(PIPE_DRAIN, futures::future::join_all(readers)).await;
    let output = tail.lock().map(|t| t.last_lines(200)).unwrap_or_default();
    SetupRun {
        outcome,
        output,
        took: t0.elapsed(),
    }
}

async fn pump<R: tokio::io::AsyncBufRead + Unpin>(mut r: R, tail: Arc<Mutex<Tail>>) {
    let mut line = Vec::new();
    while let Ok(Some(skipped)) = read_line_capped(&mut r, LINE_CAP, &mut line).await {
        if let Ok(mut t) = tail.lock() {
            t.push(capped_text(&line, skipped).as_bytes());
        }
    }
}

async fn note(inner: &Inner, task_id: &str, events: Vec<Event>) {
    if let Err(e) = inner.store.append_events(task_id, &events).await {
        tracing::warn!(error = %e, "could not record the worktree preparation");
    }
}

fn mark(path: &PathBuf) -> Result<(), BackendError> {
    std::fs::write(path, b"").map_err(BackendError::Io)
}

fn stopped(reason: String) -> BackendError {
    BackendError::Stopped {
        reason,
        partial: String::new(),
    }
}
