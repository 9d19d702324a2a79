//! The CLI verbs for people (`run`, `ls`, `show`, `apply`, `rebase`, `discard`, `cancel`, `close`,
//! `providers`, `doctor`, `project`), plus `serve` and `schemas`. Locally they open the same data
//! directory or database as the server; only `run --wait` dispatches (it is a full engine until
//! its task ends), the others are store clients. With `--url` they call a running server's
//! MCP tools instead; either way through one [`Target`].

mod doctor;
mod flags;
mod project;
mod render;
mod schemas;
mod serve;
mod target;
mod verbs;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use flags::Global;
use serve::ServeArgs;
use target::Target;

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
    /// Run a failed or cancelled task again in its session (same agent, model and mode).
    Retry {
        /// The failed or cancelled task.
        id: String,
        /// A new prompt instead of the original.
        #[arg(long)]
        prompt: Option<String>,
        /// Run it now and wait for it, showing progress.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Answer a blocked task's permission question (`boocoder ls` shows it).
    Answer {
        /// The blocked task.
        id: String,
        /// The option: its id, its label (e.g. "Allow once") or its kind (e.g. allow_once).
        option: String,
        #[arg(long)]
        json: bool,
    },
    /// Tasks, success rate, durations and tokens grouped by agent, project, day or parent.
    Stats {
        #[arg(long, value_parser = ["agent", "project", "day", "parent"], default_value = "agent")]
        by: String,
        /// Only tasks created since: `7d`, `12h`, `30m`, or a date `2026-11-01`.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Follow a task live: its transcript as it is written, then the result. Ctrl-C detaches
    /// and leaves the task running.
    Attach { id: String },
    /// A task and everything delegated under it (`parent_task_id`), drawn as a tree.
    Tree {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    Ls {
        /// Only tasks in this state (pending, running, blocked, completed, failed, cancelled,
        /// or needs_attention: blocked and failed).
        #[arg(long)]
        state: Option<String>,
        /// The inbox: blocked and failed tasks (`--state needs_attention`).
        #[arg(long, conflicts_with = "state")]
        attention: bool,
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
    /// Merge a session's stale pending change onto the checkout's current files (three-way);
    /// on a conflict nothing changes and the conflicting lines are shown (exit status 1).
    Rebase {
        /// Session id, or any task id of the session.
        id: String,
        #[arg(long)]
        json: bool,
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
    /// A project's settings: setup command, directories brought into new worktrees, trust.
    Project {
        #[command(subcommand)]
        verb: project::ProjectVerb,
    },
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
    let (mut target, verb) = match (cli.command, &g.url) {
        (Verb::Serve(args), _) => return serve::run(&g, args).await,
        (Verb::Schemas { write, dir }, _) => return schemas::run(write, &dir).map(|()| 0),
        (Verb::Doctor, None) => return doctor::run(g.config()?).await,
        (Verb::Project { verb }, None) => return project::run(&g.config()?, verb),
        (Verb::Project { .. }, Some(_)) => anyhow::bail!(
            "`project` edits this machine's data directory: run it where the server runs, without --url"
        ),
        (verb, Some(url)) => (
            Target::remote(url, g.remote_token(url)?.as_deref()).await?,
            verb,
        ),
        (verb, None) => {
            let dispatching = matches!(
                verb,
                Verb::Run { wait: true, .. } | Verb::Retry { wait: true, .. }
            );
            (Target::local(g.config()?, dispatching).await?, verb)
        }
    };
    let code = verbs::run(&mut target, verb).await;
    target.finish().await;
    code
}

/// Ctrl-C for the whole of a verb. One stream, made before the verb's first wait, keeps a
/// signal that arrives while the verb is busy elsewhere (a `ctrl_c()` future made per wait
/// would miss it, and the verb would go on as if nothing was pressed).
pub(crate) fn interrupts() -> Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::interrupt(),
    )?)
}

pub(crate) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    // why: a closed pipe (`boocoder ls | head`) is not an error worth reporting.
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}
