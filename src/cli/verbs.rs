//! The verbs for people, written once against a [`Target`]: the same requests, the same
//! renderers, whether the data is here or behind `--url`.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use boocoder::domain::TaskState;
use boocoder::engine::{NewTask, OutputRequest, RebaseState};
use boocoder::mcp::types::{TaskOutput, TaskStatus};

use super::target::Target;
use super::{Verb, doctor, out, print_json, render};

/// Run a verb against `target`; returns the process exit code.
pub async fn run(target: &mut Target, verb: Verb) -> Result<i32> {
    match verb {
        Verb::Run {
            prompt,
            agent,
            model,
            mode,
            project_dir,
            session,
            wait,
            json,
        } => {
            let req = NewTask {
                prompt,
                agent,
                model,
                mode,
                project: project_dir.map(|p| p.display().to_string()),
                session_id: session,
                ..Default::default()
            };
            let task = target.submit(req).await?;
            submitted(target, task, wait, json).await
        }
        Verb::Retry {
            id,
            prompt,
            wait,
            json,
        } => {
            let task = target.retry(&id, prompt).await?;
            submitted(target, task, wait, json).await
        }
        Verb::Ls {
            state,
            attention,
            limit,
            session,
            json,
        } => {
            let state = if attention {
                Some(boocoder::domain::NEEDS_ATTENTION.to_string())
            } else {
                state
            };
            ls(target, state, limit, session, json).await
        }
        Verb::Show { id, json } => show(target, &id, json).await,
        Verb::Answer { id, option, json } => {
            let a = target.answer(&id, &option).await?;
            let text = format!("{}: {} (`{}`)\n", a.task_id, a.chosen.label, a.chosen.id);
            printed(&a, json, text)
        }
        Verb::Stats { by, since, json } => {
            let stats = target.stats(&by, since).await?;
            printed(&stats, json, render::stats(&stats))
        }
        Verb::Attach { id } => attach(target, &id).await,
        Verb::Tree { id, json } => {
            let lines = target.tree(&id).await?;
            printed(&lines, json, render::tree(&lines))
        }
        Verb::Apply { id, dry_run } => apply(target, &id, dry_run).await,
        Verb::Rebase { id, json } => rebase(target, &id, json).await,
        Verb::Discard { id } => {
            let r = target.discard(&id).await?;
            out(&format!(
                "discarded {} file(s) of session {}\n",
                r.files.len(),
                r.session_id
            ));
            Ok(0)
        }
        Verb::Cancel { id } => {
            let t = target.cancel(&id).await?;
            out(&format!("{} is {}\n", t.task_id, t.state));
            Ok(0)
        }
        Verb::Close { id, force } => {
            let session = target.close_session(&id, force).await?;
            out(&format!(
                "session {session} closed; its worktree was removed\n"
            ));
            Ok(0)
        }
        Verb::Providers { json, refresh } => providers(target, json, refresh).await,
        // Locally `cli::main` runs `doctor::run` before any target exists.
        Verb::Doctor => doctor::remote(target).await,
        Verb::Serve(_) | Verb::Schemas { .. } | Verb::Project { .. } => {
            bail!("not a verb for a target (handled before one is opened)")
        }
    }
}

/// `rebase`: exit status 1 on a conflict, which is told on stderr.
async fn rebase(target: &Target, id: &str, json: bool) -> Result<i32> {
    let r = target.rebase(id).await?;
    let code = i32::from(r.result == RebaseState::Conflict);
    if json {
        print_json(&r)?;
    } else if code == 0 {
        out(&render::rebased(&r));
    } else {
        eprint!("{}", render::rebased(&r));
    }
    Ok(code)
}

/// A result as JSON (`--json`) or as its rendered text.
fn printed<T: serde::Serialize>(value: &T, json: bool, text: String) -> Result<i32> {
    if json {
        print_json(value)?;
    } else {
        out(&text);
    }
    Ok(0)
}

/// After `run` or `retry`: wait for the task here (`--wait`), or say it is queued.
async fn submitted(target: &mut Target, task: TaskStatus, wait: bool, json: bool) -> Result<i32> {
    if wait {
        waited(target, task, json).await
    } else {
        queued(target, task, json).await
    }
}

async fn queued(target: &Target, task: TaskStatus, json: bool) -> Result<i32> {
    if json {
        print_json(&task)?;
        return Ok(0);
    }
    out(&format!(
        "queued {} (session {})\n",
        task.task_id, task.session_id
    ));
    if target.nobody_dispatches().await? {
        eprintln!(
            "note: no boocoder server is running on this data; the task waits until one starts (`boocoder serve`), or use `run --wait` to run it here"
        );
    }
    Ok(0)
}

async fn waited(target: &mut Target, task: TaskStatus, json: bool) -> Result<i32> {
    eprintln!("task {} (session {})", task.task_id, task.session_id);
    let task = target.wait(&task).await?;
    if json {
        print_json(&task)?;
    } else {
        let files = if task.files_total > 0 {
            target.files(&task.task_id).await?
        } else {
            Vec::new()
        };
        out(&render::result(&task, &files));
    }
    Ok(exit_code(&task))
}

fn exit_code(t: &TaskStatus) -> i32 {
    match t.state {
        TaskState::Completed => 0,
        TaskState::Cancelled => 130,
        _ => 1,
    }
}

async fn ls(
    target: &Target,
    state: Option<String>,
    limit: u32,
    session: Option<String>,
    json: bool,
) -> Result<i32> {
    let states = match state {
        Some(s) => TaskState::parse_filter(&s).with_context(|| {
            format!(
                "--state {s}: expected one of {}, {}",
                TaskState::ALL.map(|s| s.as_str()).join(", "),
                boocoder::domain::NEEDS_ATTENTION
            )
        })?,
        None => Vec::new(),
    };
    let rows = target.list(states, limit, session).await?;
    if json {
        let lines: Vec<_> = rows.into_iter().map(|r| r.line).collect();
        print_json(&lines)?;
    } else {
        out(&render::tasks(&rows));
    }
    Ok(0)
}

async fn show(target: &Target, id: &str, json: bool) -> Result<i32> {
    let o = whole_output(target, id).await?;
    if json {
        print_json(&serde_json::json!({
            "status": o.status,
            "files": o.files,
            "error": o.error,
            "waiting_for": o.waiting_for,
            "final_message": o.final_message,
            "transcript": o.transcript,
            "change_status": o.change_status,
            "diff": o.diff,
        }))?;
    } else {
        out(&render::output(&o, std::io::stdout().is_terminal()));
    }
    Ok(0)
}

/// A task's output with every transcript page and the whole diff gathered into one.
async fn whole_output(target: &Target, id: &str) -> Result<TaskOutput> {
    let page = |after_seq: Option<i64>, diff_offset: u64| {
        target.output(OutputRequest {
            task_id: id.to_string(),
            after_seq,
            max_events: Some(1000),
            diff_offset: Some(diff_offset),
            max_diff_bytes: Some(1 << 20),
        })
    };
    let mut o = page(None, 0).await?;
    while let Some(after) = o.next_after_seq {
        // why: the diff was read from 0 on the first page; these pages read past its end.
        let p = page(Some(after), o.diff_total_bytes).await?;
        o.transcript.extend(p.transcript);
        o.next_after_seq = p.next_after_seq;
    }
    while let Some(offset) = o.next_diff_offset {
        let p = page(Some(i64::MAX), offset).await?;
        o.diff.push_str(&p.diff);
        o.next_diff_offset = p.next_diff_offset;
    }
    Ok(o)
}

async fn apply(target: &Target, id: &str, dry_run: bool) -> Result<i32> {
    match target.apply(id, dry_run).await? {
        Ok(outcome) => {
            out(&render::applied(&outcome));
            Ok(0)
        }
        Err(refusal) => {
            eprint!("{}", render::refusal(&refusal));
            Ok(1)
        }
    }
}

async fn providers(target: &Target, json: bool, refresh: bool) -> Result<i32> {
    let snap = target.providers(refresh).await?;
    if json {
        print_json(&snap)?;
        return Ok(0);
    }
    out(&render::providers(&snap));
    for d in &snap.diagnostics {
        eprintln!("warning: {d}");
    }
    Ok(0)
}

/// `attach`: print the transcript as it grows until the task ends (then its result), or until
/// Ctrl-C, which only detaches.
async fn attach(target: &mut Target, id: &str) -> Result<i32> {
    let mut interrupt = super::interrupts()?;
    let mut after_seq = None;
    loop {
        // Everything written so far, page by page.
        let (status, files) = loop {
            let page = target
                .output(OutputRequest {
                    task_id: id.to_string(),
                    after_seq,
                    max_events: Some(200),
                    max_diff_bytes: Some(0),
                    ..Default::default()
                })
                .await?;
            for e in &page.transcript {
                out(&format!("[{}] {}\n", e.kind.as_str(), e.text.trim_end()));
            }
            if let Some(last) = page.transcript.last() {
                after_seq = Some(last.seq);
            }
            if page.next_after_seq.is_none() {
                break (page.status, page.files);
            }
        };
        if status.state.is_terminal() {
            out(&format!("\n{}", render::result(&status, &files)));
            return Ok(exit_code(&status));
        }
        tokio::select! {
            changed = target.until_changed(id) => changed?,
            _ = interrupt.recv() => {
                eprintln!("detached from {id}; it keeps running (`boocoder attach {id}` to follow it again)");
                return Ok(0);
            }
        }
    }
}
