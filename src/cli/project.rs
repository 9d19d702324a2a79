//! `boocoder project …`: the server's per-project settings (`DATA_DIR/projects.json`) — the
//! setup command each new session worktree runs once, the ignored directories brought into
//! it, and whether the repository's own `.boocoder/project.json` is trusted. They edit this
//! machine's data directory, so they run where the server runs (not with `--url`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use boocoder::config::Config;
use boocoder::projects::{self, BringEntry, ProjectSettings};
use boocoder::worktree::{self, BringStrategy};
use clap::Subcommand;
use serde_json::json;

use super::{out, print_json};

#[derive(Subcommand)]
pub enum ProjectVerb {
    /// Show a project's settings, the repository's file, and what a new worktree gets.
    Show {
        /// The project's checkout [default: --project, or the current directory].
        project: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Set the command run once in each new session worktree before its first turn
    /// (an argument vector after `--`, run in the worktree; no shell unless you name one).
    SetSetup {
        project: PathBuf,
        /// Fail the turn when setup runs longer than this [default: 600].
        #[arg(long)]
        timeout_secs: Option<u64>,
        #[arg(last = true, required = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
    /// Remove the setup command.
    ClearSetup { project: PathBuf },
    /// Bring an ignored directory of the checkout into each new worktree: a reflink clone
    /// where the filesystem can, else this strategy.
    Bring {
        project: PathBuf,
        /// Relative to the checkout's root, e.g. `node_modules`.
        path: String,
        #[arg(long, value_parser = ["copy", "symlink"], default_value = "copy")]
        strategy: String,
    },
    /// Stop bringing a directory.
    Unbring { project: PathBuf, path: String },
    /// Read the repository's committed `.boocoder/project.json` for this project (its setup
    /// command is code from whoever can push); `--off` stops reading it.
    Trust {
        project: PathBuf,
        #[arg(long)]
        off: bool,
    },
}

pub fn run(config: &Config, verb: ProjectVerb) -> Result<i32> {
    let data = &config.data_dir;
    let edit = |project: &Path, change: &dyn Fn(&mut ProjectSettings)| -> Result<i32> {
        let root = checkout(project)?;
        let saved = projects::edit(data, &root, |s| change(s))?;
        out(&format!(
            "saved {}\n",
            projects::server_file(data).display()
        ));
        show_entry(&root, &saved);
        Ok(0)
    };
    match verb {
        ProjectVerb::Show { project, json } => {
            let project = project
                .or_else(|| config.default_project.clone())
                .context("name a project (or pass --project)")?;
            show(config, &checkout(&project)?, json)
        }
        ProjectVerb::SetSetup {
            project,
            timeout_secs,
            argv,
        } => edit(&project, &|s| {
            s.setup = argv.clone();
            s.setup_timeout_secs = timeout_secs;
        }),
        ProjectVerb::ClearSetup { project } => edit(&project, &|s| {
            s.setup.clear();
            s.setup_timeout_secs = None;
        }),
        ProjectVerb::Bring {
            project,
            path,
            strategy,
        } => {
            let strategy = match strategy.as_str() {
                "symlink" => BringStrategy::Symlink,
                _ => BringStrategy::Copy,
            };
            let path = path.trim_end_matches('/').to_string();
            edit(&project, &|s| {
                s.bring.retain(|b| b.path != path);
                s.bring.push(BringEntry {
                    path: path.clone(),
                    strategy,
                });
            })
        }
        ProjectVerb::Unbring { project, path } => {
            let path = path.trim_end_matches('/').to_string();
            let root = checkout(&project)?;
            let entry = projects::server_entry(data, &root)?;
            if !entry.bring.iter().any(|b| b.path == path) {
                bail!("`{path}` is not brought into {}", root.display());
            }
            edit(&root, &|s| s.bring.retain(|b| b.path != path))
        }
        ProjectVerb::Trust { project, off } => edit(&project, &|s| s.trust_repo_file = !off),
    }
}

/// The checkout root a path belongs to: the key the server files settings under.
fn checkout(project: &Path) -> Result<PathBuf> {
    worktree::project_root(project)
        .with_context(|| format!("{} is not inside a git checkout", project.display()))
}

fn show_entry(root: &Path, s: &ProjectSettings) {
    out(&format!("project {}\n", root.display()));
    match s.setup.as_slice() {
        [] => out("  setup: none\n"),
        argv => out(&format!(
            "  setup: {} (timeout {} s)\n",
            shown_argv(argv),
            s.setup_timeout_secs
                .unwrap_or(projects::DEFAULT_SETUP_TIMEOUT.as_secs())
        )),
    }
    for b in &s.bring {
        out(&format!(
            "  bring: {} (reflink, else {})\n",
            b.path,
            strategy_name(b.strategy)
        ));
    }
    out(&format!(
        "  repository file {}: {}\n",
        projects::REPO_FILE,
        if s.trust_repo_file {
            "trusted"
        } else {
            "not trusted"
        }
    ));
}

fn show(config: &Config, root: &Path, as_json: bool) -> Result<i32> {
    let entry = projects::server_entry(&config.data_dir, root)?;
    let effective = projects::bootstrap(&config.data_dir, root, config.trust_repo_setup);
    let repo_file = root.join(projects::REPO_FILE).exists();
    let trusted = config.trust_repo_setup || entry.trust_repo_file;
    let pool = worktree::disk_use(&config.pool_dir(), &config.worktrees_dir())
        .into_iter()
        .find(|p| p.project == root);
    let (spares, bytes) = pool.map_or((0, 0), |p| (p.spares, p.bytes));
    if as_json {
        let effective = match &effective {
            Ok(b) => json!({
                "setup": b.setup.as_ref().map(|s| json!({
                    "argv": s.argv, "timeout_secs": s.timeout.as_secs(), "source": s.source,
                })),
                "bring": b.bring.iter().map(|(p, s)| json!({"path": p, "strategy": s}))
                    .collect::<Vec<_>>(),
            }),
            Err(e) => json!({"error": e.to_string()}),
        };
        print_json(&json!({
            "project": root,
            "entry": entry,
            "repository_file": {"present": repo_file, "trusted": trusted},
            "new_worktree_gets": effective,
            "pool": {"spares": spares, "bytes": bytes},
        }))?;
        return Ok(0);
    }
    show_entry(root, &entry);
    out(&format!(
        "  repository file present: {}{}\n",
        if repo_file { "yes" } else { "no" },
        match (repo_file, trusted) {
            (true, false) => " (ignored: `boocoder project trust` or --trust-repo-setup reads it)",
            (true, true) => " (read)",
            _ => "",
        }
    ));
    out("a new worktree gets:\n");
    match effective {
        Ok(b) => {
            match &b.setup {
                Some(s) => out(&format!(
                    "  setup: {} from {}, timeout {} s\n",
                    shown_argv(&s.argv),
                    s.source,
                    s.timeout.as_secs()
                )),
                None => out("  setup: none\n"),
            }
            for (p, s) in &b.bring {
                out(&format!(
                    "  bring: {p} (reflink, else {})\n",
                    strategy_name(*s)
                ));
            }
            if let Ok(include) = std::fs::read_to_string(root.join(worktree::INCLUDE_FILE)) {
                let n = include
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .count();
                out(&format!(
                    "  ignored files matching {} ({n} pattern(s))\n",
                    worktree::INCLUDE_FILE
                ));
            }
        }
        Err(e) => out(&format!("  nothing: {e}\n")),
    }
    out(&format!(
        "pool: {spares} spare worktree(s), {}\n",
        human_bytes(bytes)
    ));
    Ok(0)
}

fn strategy_name(s: BringStrategy) -> &'static str {
    match s {
        BringStrategy::Copy => "copy",
        BringStrategy::Symlink => "symlink",
    }
}

/// An argument vector as a person would type it (quoted where needed), for display only.
fn shown_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", n as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}
