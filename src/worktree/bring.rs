//! Heavy ignored directories (`node_modules`, `target`, `.venv`) brought from the checkout into
//! a new worktree so the agent's first build does not start cold: a reflink clone where the
//! filesystem can (copy-on-write, near free), else the project's chosen strategy — a plain
//! copy, or a symlink to the checkout's directory for read-mostly caches (writes through it
//! land in the checkout: the project chose that). Only directories git ignores qualify, and
//! what is brought is recorded like `.worktreeinclude` files, so it never reaches a change.

use std::path::{Component, Path};
use std::process::{Command, Stdio};
use std::time::Instant;

use git2::Repository;

use super::include::record;
use super::{GIT_REDIRECTS, WorktreeError};

/// How a directory is brought when the filesystem cannot clone it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BringStrategy {
    Copy,
    Symlink,
}

/// What happened to one named directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brought {
    pub path: String,
    /// `reflink`, `copy` or `symlink`; `None` when it was skipped (see `note`).
    pub how: Option<&'static str>,
    pub millis: u128,
    /// Why it was skipped (not in the checkout, not ignored, an error).
    pub note: Option<String>,
}

/// Bring each `(path, strategy)` from the checkout of `project` into the worktree `wt`.
/// Errors cost only their directory; the worktree is usable either way.
pub fn bring(
    project: &Path,
    wt: &Path,
    dirs: &[(String, BringStrategy)],
) -> Result<Vec<Brought>, WorktreeError> {
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let repo = Repository::open(project)?;
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut done = Vec::new();
    for (path, strategy) in dirs {
        let t0 = Instant::now();
        let result = check(&repo, &root, wt, path)
            .and_then(|()| bring_one(&root.join(path), &wt.join(path), *strategy));
        let millis = t0.elapsed().as_millis();
        match result {
            Ok(how) => {
                done.push(path.clone());
                out.push(Brought {
                    path: path.clone(),
                    how: Some(how),
                    millis,
                    note: None,
                });
            }
            Err(note) => out.push(Brought {
                path: path.clone(),
                how: None,
                millis,
                note: Some(note),
            }),
        }
    }
    record(wt, &done)?;
    Ok(out)
}

/// A relative path of plain components, a real directory in the checkout that git ignores,
/// and nothing at its place in the worktree (or on the way there through a symlink).
fn check(repo: &Repository, root: &Path, wt: &Path, rel: &str) -> Result<(), String> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("not a plain relative path".into());
    }
    match std::fs::symlink_metadata(root.join(p)) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err("not a directory in the checkout".into()),
        Err(_) => return Err("not in the checkout".into()),
    }
    if !repo.status_should_ignore(p).map_err(|e| e.to_string())? {
        return Err("git does not ignore it; only ignored directories are brought".into());
    }
    let dst = wt.join(p);
    let mut at = wt.to_path_buf();
    for c in p.components() {
        at.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&at)
            && (at == dst || !m.is_dir())
        {
            return Err("something is at that path in the worktree already".into());
        }
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn bring_one(src: &Path, dst: &Path, strategy: BringStrategy) -> Result<&'static str, String> {
    if cp(&["-a", "--reflink=always"], src, dst).is_ok() {
        return Ok("reflink");
    }
    // A failed clone can leave part of the tree behind.
    let _ = super::remove_all(dst);
    match strategy {
        BringStrategy::Copy => cp(&["-a"], src, dst).map(|()| "copy"),
        BringStrategy::Symlink => std::os::unix::fs::symlink(src, dst)
            .map(|()| "symlink")
            .map_err(|e| e.to_string()),
    }
    .inspect_err(|_| {
        let _ = super::remove_all(dst);
    })
}

/// GNU `cp` with these flags (argument vector; `--` before the paths).
fn cp(flags: &[&str], src: &Path, dst: &Path) -> Result<(), String> {
    let mut cmd = Command::new("cp");
    cmd.args(flags).arg("--").arg(src).arg(dst);
    for var in GIT_REDIRECTS {
        cmd.env_remove(var);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
