//! The CLI verbs for people (`run`, `ls`, `show`, `apply`, `discard`, `cancel`, `providers`,
//! `doctor`). They open the same data directory or database as the server; only `run --wait`
//! dispatches (it is a full engine until its task ends), the others are store clients.

mod flags;
mod remote;
mod render;
mod schemas;
mod serve;

use remote::run as run_remote;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use std::path::PathBuf;

use anyhow::{Context, Result};
use boocoder::config::Config;
use boocoder::domain::{Task, TaskState};
use boocoder::engine::{Engine, EngineError, ListRequest, NewTask, OutputRequest};
use boocoder::mcp::types::{TaskLine, TaskStatus};
use boocoder::providers::snapshot::Status;
use clap::{Parser, Subcommand};

use flags::Global;
use serve::ServeArgs;

/// The command line: global flags, then one verb.
#[derive(Parser)]
#[command(
    name = "boocoder",
    version,
    about = "Run coding agents in isolated git worktrees, driven over MCP"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Subcommand)]
pub enum Verb {
    /// Run the MCP server: stdio by default, Streamable HTTP with --http.
    Serve(ServeArgs),
    /// Queue a task; with --wait, run it here with live progress (Ctrl-C cancels it).
    Run {
        /// What the agent should do.
        prompt: String,
        /// Provider id (see `boocoder providers`).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        mode: Option<String>,
        /// Git repository to work on [default: --project, or the current directory].
        #[arg(long = "in", value_name = "DIR")]
        project_dir: Option<PathBuf>,
        /// Follow-up turn in this session (same worktree).
        #[arg(long)]
        session: Option<String>,
        /// Run the task now and wait for it, showing progress.
        #[arg(long)]
        wait: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    Ls {
        /// Only tasks in this state (pending, running, blocked, completed, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a task: status, transcript and diff.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Apply a task's (or session's) pending change to the project checkout.
    Apply {
        /// Task id or session id.
        id: String,
        /// Only check that it applies cleanly.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a task's (or session's) pending change and reset its worktree.
    Discard { id: String },
    /// Cancel a pending or running task.
    Cancel { id: String },
    /// Close a session: remove its worktree and branch (refused while it holds an unapplied
    /// change unless --force).
    Close {
        /// Session id, or any task id of the session.
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// The provider table: which agents this machine can run.
    Providers {
        #[arg(long)]
        json: bool,
        /// Probe every provider again instead of showing cached results.
        #[arg(long)]
        refresh: bool,
    },
    /// Check git, the data directory, the database and the providers; say what to fix.
    Doctor,
    /// Print or write the tools' JSON Schemas (tool-schemas/*.json).
    Schemas {
        /// Write one file per tool into --dir instead of printing.
        #[arg(long)]
        write: bool,
        #[arg(long, default_value = "tool-schemas")]
        dir: PathBuf,
    },
}

impl Verb {
    /// The server logs its work; verbs for people stay quiet unless something is wrong.
    pub fn log_filter(&self) -> &'static str {
        match self {
            Verb::Serve(_) => "info,sqlx=warn",
            _ => "warn",
        }
    }
}

/// Run the command line; returns the process exit code.
pub async fn main(cli: Cli) -> Result<i32> {
    let g = cli.global;
    match cli.command {
        Verb::Serve(args) => serve::run(&g, args).await,
        Verb::Schemas { write, dir } => schemas::run(write, &dir).map(|()| 0),
        verb => match &g.url {
            Some(url) => {
                let token = g.remote_token(url)?;
                run_remote(url, token.as_deref(), verb).await
            }
            None => run(g.config()?, verb).await,
        },
    }
}

pub(crate) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    // why: a closed pipe (`boocoder ls | head`) is not an error worth reporting.
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

pub(crate) fn json(v: &impl serde::Serialize) -> Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}

/// Run a verb; returns the process exit code.
pub async fn run(config: Config, verb: Verb) -> Result<i32> {
    match verb {
        Verb::Run {
            prompt,
            agent,
            model,
            mode,
            project_dir,
            session,
            wait,
            json: as_json,
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
            if wait {
                run_and_wait(config, req, as_json).await
            } else {
                let engine = Engine::open_client(config).await?;
                let task = engine.submit(req).await?;
                if as_json {
                    json(&TaskStatus::from_task(&task))?;
                } else {
                    out(&format!(
                        "queued {} (session {})\n",
                        task.id, task.session_id
                    ));
                    if engine.live_nodes().await?.is_empty() {
                        eprintln!(
                            "note: no boocoder server is running on this data; the task waits until one starts (`boocoder serve`), or use `run --wait` to run it here"
                        );
                    }
                }
                Ok(0)
            }
        }
        Verb::Ls {
            state,
            limit,
            session,
            json: as_json,
        } => {
            let engine = Engine::open_client(config).await?;
            let state = match state {
                Some(s) => Some(TaskState::parse(&s).with_context(|| {
                    format!(
                        "--state {s}: expected one of {}",
                        TaskState::ALL.map(|s| s.as_str()).join(", ")
                    )
                })?),
                None => None,
            };
            let page = engine
                .list(ListRequest {
                    state,
                    session_id: session,
                    limit: Some(limit),
                    ..Default::default()
                })
                .await?;
            if as_json {
                let lines: Vec<TaskLine> = page.tasks.iter().map(TaskLine::from_task).collect();
                return json(&lines).map(|_| 0);
            }
            if page.tasks.is_empty() {
                out("no tasks\n");
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = page
                .tasks
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.state.to_string(),
                        t.provider.clone(),
                        render::age(t.created_at),
                        render::duration(t),
                        t.files.len().to_string(),
                        result_line(t),
                    ]
                })
                .collect();
            out(&render::table(
                &["ID", "STATE", "AGENT", "AGE", "TOOK", "FILES", "SUMMARY"],
                &rows,
            ));
            Ok(0)
        }
        Verb::Show { id, json: as_json } => {
            let engine = Engine::open_client(config).await?;
            show(&engine, &id, as_json).await.map(|_| 0)
        }
        Verb::Apply { id, dry_run } => {
            let engine = Engine::open_client(config).await?;
            match engine.apply(&id, dry_run).await {
                Ok(r) => {
                    let verb = if dry_run { "would apply" } else { "applied" };
                    out(&format!(
                        "{verb} {} file(s) from session {}:\n",
                        r.files.len(),
                        r.session_id
                    ));
                    for f in &r.files {
                        out(&format!("  {}\n", file_line(f)));
                    }
                    Ok(0)
                }
                Err(EngineError::Conflict(report)) => {
                    eprintln!("refused: the checkout changed under these files:");
                    for f in &report.files {
                        eprintln!("  {}: {}", f.path, f.reason);
                    }
                    eprintln!("nothing was written");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        Verb::Discard { id } => {
            let engine = Engine::open_client(config).await?;
            let r = engine.discard(&id).await?;
            out(&format!(
                "discarded {} file(s) of session {}\n",
                r.files.len(),
                r.session_id
            ));
            Ok(0)
        }
        Verb::Cancel { id } => {
            let engine = Engine::open_client(config).await?;
            let t = engine.cancel(&id).await?;
            out(&format!("{} is {}\n", t.id, t.state));
            Ok(0)
        }
        Verb::Close { id, force } => {
            let engine = Engine::open_client(config).await?;
            let s = engine.close_session(&id, force).await?;
            out(&format!(
                "session {} closed; its worktree was removed\n",
                s.id
            ));
            Ok(0)
        }
        Verb::Providers {
            json: as_json,
            refresh,
        } => providers(config, as_json, refresh).await,
        Verb::Doctor => doctor(config).await,
        Verb::Serve(_) | Verb::Schemas { .. } => anyhow::bail!("not a verb for people"),
    }
}

fn result_line(t: &Task) -> String {
    t.error
        .as_deref()
        .or(t.summary.as_deref())
        .map(|s| {
            s.trim_start_matches('…')
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| render::clip(&t.prompt, 200))
}

pub(crate) fn file_line(f: &boocoder::worktree::FileChange) -> String {
    format!(
        "{:<9} {} (+{} -{}){}",
        format!("{:?}", f.status).to_lowercase(),
        f.path,
        f.additions,
        f.deletions,
        if f.binary { " binary" } else { "" }
    )
}

async fn run_and_wait(config: Config, req: NewTask, as_json: bool) -> Result<i32> {
    let engine = Engine::start(config).await?;
    let result = wait_loop(&engine, req).await;
    engine.shutdown().await;
    let task = result?;
    if as_json {
        json(&TaskStatus::from_task(&task))?;
    } else {
        print_result(&task);
    }
    Ok(match task.state {
        TaskState::Completed => 0,
        TaskState::Cancelled => 130,
        _ => 1,
    })
}

async fn wait_loop(engine: &Engine, req: NewTask) -> Result<Task> {
    let mut updates = engine.subscribe();
    let task = engine.submit(req).await?;
    eprintln!("task {} (session {})", task.id, task.session_id);
    let mut progress = render::Progress::new();
    let mut state = task.state;
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    let mut reread = tokio::time::interval(Duration::from_secs(1));
    let mut cancelled = false;
    loop {
        tokio::select! {
            u = updates.recv() => {
                if let Ok(u) = u && u.task_id == task.id {
                    state = u.state;
                    progress.update(state, u.message.as_deref());
                    if state.is_terminal() { break; }
                }
            }
            _ = tick.tick() => progress.update(state, None),
            _ = reread.tick() => {
                let t = engine.task(&task.id).await?;
                state = t.state;
                if state.is_terminal() { break; }
            }
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                progress.finish();
                eprintln!("cancelling {} …", task.id);
                let t = engine.cancel(&task.id).await?;
                if t.state.is_terminal() { break; }
            }
        }
    }
    progress.finish();
    Ok(engine.task(&task.id).await?)
}

fn print_result(t: &Task) {
    let took = render::duration(t);
    out(&format!("{} {} in {took}\n", t.id, t.state));
    if let Some(s) = &t.summary {
        out(&format!("\n{}\n", s.trim()));
    }
    if let Some(e) = &t.error {
        out(&format!("\nerror: {e}\n"));
    }
    if !t.files.is_empty() {
        out("\nchanged files (pending; `boocoder apply ");
        out(&format!("{}` to land them):\n", t.id));
        for f in &t.files {
            out(&format!("  {}\n", file_line(f)));
        }
    }
}

async fn show(engine: &Engine, id: &str, as_json: bool) -> Result<()> {
    let page = |after_seq: Option<i64>, diff_offset: u64| {
        engine.output(OutputRequest {
            task_id: id.to_string(),
            after_seq,
            max_events: Some(1000),
            diff_offset: Some(diff_offset),
            max_diff_bytes: Some(1 << 20),
        })
    };
    let first = page(None, 0).await?;
    let total = first.diff_total_bytes;
    let mut events = first.events;
    let mut diff = first.diff;
    let mut after = first.next_after_seq;
    while let Some(a) = after {
        let p = page(Some(a), total).await?;
        events.extend(p.events);
        after = p.next_after_seq;
    }
    let mut offset = first.next_diff_offset;
    while let Some(o) = offset {
        let p = page(Some(i64::MAX), o).await?;
        diff.push_str(&p.diff);
        offset = p.next_diff_offset;
    }
    let (task, final_message) = (first.task, first.final_message);
    let change_status = first.change.map(|c| c.status.as_str().to_string());
    if as_json {
        return json(&serde_json::json!({
            "status": TaskStatus::from_task(&task),
            "final_message": final_message,
            "transcript": events,
            "change_status": change_status,
            "diff": diff,
        }));
    }
    let colour = std::io::stdout().is_terminal();
    out(&format!(
        "task     {}\nsession  {}\nstate    {}\nagent    {}\nproject  {}\ncreated  {}\ntook     {}\n",
        task.id,
        task.session_id,
        task.state,
        task.provider,
        task.project_path,
        render::age(task.created_at),
        render::duration(&task)
    ));
    if let Some(e) = &task.error {
        out(&format!("error    {e}\n"));
    }
    out("\n── transcript ──\n");
    for e in &events {
        let text = e.text.trim_end();
        out(&format!("[{}] {}\n", e.kind.as_str(), text));
    }
    match change_status {
        Some(s) => out(&format!(
            "\n── diff ({s}) ──\n{}",
            render::diff(&diff, colour)
        )),
        None => out("\n── no file changes ──\n"),
    }
    Ok(())
}

/// The providers snapshot: cached probes of this host, with stale ones probed now.
async fn providers(config: Config, as_json: bool, refresh: bool) -> Result<i32> {
    let engine = Engine::open_client(config).await?;
    let snap = engine.probe_providers_now(refresh).await;
    if as_json {
        json(&snap)?;
        return Ok(0);
    }
    let table: Vec<Vec<String>> = snap
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
    out(&render::table(
        &["ID", "TRANSPORT", "STATUS", "VERSION", "DIAGNOSTIC"],
        &table,
    ));
    for d in &snap.diagnostics {
        eprintln!("warning: {d}");
    }
    Ok(0)
}

async fn doctor(config: Config) -> Result<i32> {
    let mut problems = 0;
    let mut check = |ok: bool, what: &str, detail: String| {
        if !ok {
            problems += 1;
        }
        out(&format!(
            "{} {what}: {detail}\n",
            if ok { "ok  " } else { "FAIL" }
        ));
    };
    match std::process::Command::new("git").arg("--version").output() {
        Ok(o) if o.status.success() => check(
            true,
            "git",
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        ),
        _ => check(false, "git", "not found on PATH: install git".into()),
    }
    let probe = config.data_dir.join(".doctor-write-test");
    let writable = std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe));
    check(
        writable.is_ok(),
        "data directory",
        match &writable {
            Ok(()) => format!("{} (writable)", config.data_dir.display()),
            Err(e) => format!("{}: {e}", config.data_dir.display()),
        },
    );
    match Engine::open_client(config.clone()).await {
        Ok(engine) => {
            let nodes = engine.live_nodes().await.unwrap_or_default();
            check(
                true,
                "database",
                format!(
                    "{} opened and migrated; {} server(s) running",
                    engine.store_backend(),
                    nodes.len()
                ),
            );
        }
        Err(e) => check(false, "database", e.to_string()),
    }
    let token_file = boocoder::mcp::http::token_path(&config.data_dir);
    match boocoder::mcp::http::read_token_file(&config.data_dir) {
        Ok(Some(_)) => check(
            true,
            "http token",
            format!(
                "{} (private; `--url` verbs on this machine send it)",
                token_file.display()
            ),
        ),
        Ok(None) => out(&format!(
            "--   http token: none yet (`serve --http` on loopback creates {})\n",
            token_file.display()
        )),
        Err(e) => check(false, "http token", e.to_string()),
    }
    match &config.default_project {
        Some(p) => check(true, "default project", p.display().to_string()),
        None => check(
            true,
            "default project",
            "none: tasks must pass `project` (or start the server with --project)".into(),
        ),
    }
    let default_agent = config.default_agent.clone();
    let snap = match Engine::open_client(config).await {
        Ok(engine) => engine.probe_providers_now(false).await,
        Err(e) => {
            check(false, "providers", format!("cannot probe: {e}"));
            return Ok(1);
        }
    };
    for d in &snap.diagnostics {
        check(false, "providers file", d.clone());
    }
    let mut ready = 0;
    for p in &snap.providers {
        let line = format!(
            "{}{}: {}",
            p.status.as_str(),
            p.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            p.diagnostic
        );
        match p.status {
            Status::Ready => {
                ready += 1;
                check(true, &format!("provider {}", p.id), line);
            }
            Status::NeedsAuth | Status::Error => out(&format!("WARN provider {}: {line}\n", p.id)),
            Status::Disabled | Status::NotInstalled | Status::Probing => {
                out(&format!("--   provider {}: {line}\n", p.id))
            }
        }
    }
    if ready == 0 {
        check(
            false,
            "providers",
            "no provider can run: install an agent (e.g. `npm i -g opencode-ai`) or add one to the providers file".into(),
        );
    }
    match default_agent {
        Some(a) => match snap.providers.iter().find(|p| p.id == a) {
            Some(p) if p.status == Status::Ready => check(true, "default agent", a.clone()),
            Some(p) => check(
                false,
                "default agent",
                format!("`{a}` is {}: {}", p.status.as_str(), p.diagnostic),
            ),
            None => check(false, "default agent", format!("unknown provider `{a}`")),
        },
        None => out("--   default agent: none (tasks must name `agent`; set --default-agent)\n"),
    }
    if problems > 0 {
        out(&format!("\n{problems} problem(s) found\n"));
        return Ok(1);
    }
    out("\nall checks passed\n");
    Ok(0)
}
