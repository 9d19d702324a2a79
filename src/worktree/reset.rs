//! Dropping a turn's work: the worktree back at its base, untracked files removed, ignored
//! ones kept.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{ObjectType, Repository, ResetType, StatusOptions, build::CheckoutBuilder};

use super::{WorktreeError, guard, open_worktree};

/// Drop all work in the worktree: hard reset to `base` and remove untracked,
/// non-ignored files. Ignored files (build output, dependency caches) are
/// kept because they are expensive to rebuild and never part of a diff.
pub fn reset(wt_path: &Path, base: &str) -> Result<(), WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let target = repo.revparse_single(base)?.peel(ObjectType::Commit)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    repo.reset(&target, ResetType::Hard, Some(&mut checkout))?;

    let root = match repo.workdir() {
        Some(w) => fs::canonicalize(w)?,
        None => return Ok(()),
    };
    let statuses = untracked_statuses(&repo)?;
    let mut parents = Vec::new();
    for entry in statuses.iter() {
        if !entry.status().is_wt_new() {
            continue;
        }
        let rel = Path::new(std::ffi::OsStr::from_bytes(entry.path_bytes()));
        let path = root.join(rel);
        let Some(parent) = path.parent() else {
            continue;
        };
        // Never delete through a symlinked directory into somewhere else.
        if !guard::is_within(&root, parent) {
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.is_dir() {
            // A nested repository shows up as one untracked directory.
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        parents.push(parent.to_path_buf());
    }
    drop(statuses);
    // Untracked directories emptied above would linger; git cannot see them,
    // but the agent would. Non-empty ones (ignored files) stay.
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in parents {
        let mut dir = dir.as_path();
        while dir != root && dir.starts_with(&root) && fs::remove_dir(dir).is_ok() {
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
    Ok(())
}

/// Every path git sees in the worktree, untracked ones file by file (a nested repository
/// shows as its directory, `dir/`), ignored ones left out.
fn untracked_statuses(repo: &Repository) -> Result<git2::Statuses<'_>, WorktreeError> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    Ok(repo.statuses(Some(&mut opts))?)
}
