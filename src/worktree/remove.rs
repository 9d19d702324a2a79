//! Removing a worktree: its directory (renamed aside first, so an interrupted removal is
//! finished later), the project ref to its base, and the registration and branch of the
//! earlier linked-worktree layout.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{BranchType, ErrorCode, Repository, WorktreePruneOptions};

use super::WorktreeError;
use super::create::{base_ref, lock_worktrees, worktree_name};

/// Remove the worktree directory and the project's ref to its base (and, for a worktree of
/// the earlier layout, its registration and branch). Idempotent, because it runs on cleanup
/// paths that may be retried after partial failures. `project` is the project's work tree
/// or git directory; when it no longer exists, the worktree directory is still removed.
pub fn remove(project: &Path, wt_path: &Path, branch: &str) -> Result<(), WorktreeError> {
    let name = worktree_name(wt_path)?;
    let wt_abs = match wt_path.parent() {
        Some(parent) if parent.exists() => fs::canonicalize(parent)?.join(&name),
        _ => wt_path.to_path_buf(),
    };
    let repo = match Repository::open(project) {
        Ok(repo) => repo,
        Err(e) if e.code() == ErrorCode::NotFound => {
            remove_worktree_dir(&wt_abs)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = lock_worktrees(&repo)?;
    clean_up(&repo, &name, &wt_abs, branch)?;
    Ok(())
}

/// Remove the directory, the project ref and any earlier-layout registration and branch of a
/// worktree. Returns whether anything existed. A registration of the same name for a
/// different live path is someone else's and left alone.
pub(super) fn clean_up(
    repo: &Repository,
    name: &str,
    wt_abs: &Path,
    branch: &str,
) -> Result<bool, WorktreeError> {
    let mut found = false;
    match repo.find_worktree(name) {
        Ok(wt) => {
            if same_path(wt.path(), wt_abs) || wt.validate().is_err() {
                let mut opts = WorktreePruneOptions::new();
                opts.valid(true).locked(true).working_tree(false);
                wt.prune(Some(&mut opts))?;
                found = true;
            }
        }
        Err(_) => {
            // A half-written registration cannot be opened by libgit2; its
            // directory is ours to delete since the name is ours.
            let reg = repo.commondir().join("worktrees").join(name);
            if reg.is_dir() {
                fs::remove_dir_all(&reg)?;
                found = true;
            }
        }
    }
    found |= remove_worktree_dir(wt_abs)?;
    match repo.find_reference(&base_ref(name)) {
        Ok(mut r) => {
            r.delete()?;
            found = true;
        }
        Err(e) if e.code() == ErrorCode::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // Earlier versions created the session branch in the project itself. Only boocoder's
    // own namespace is touched: the name may come from a worktree's HEAD, which its agent
    // could have pointed at any branch.
    if branch.starts_with("boocoder/") {
        match repo.find_branch(branch, BranchType::Local) {
            Ok(mut b) => {
                b.delete()?;
                found = true;
            }
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// Delete the worktree directory (and what an interrupted earlier removal left of it), but
/// only when it is one: a directory with a `.git` entry (a private repository, or the link
/// file of the earlier layout), or an empty one. Returns whether anything existed.
pub(super) fn remove_worktree_dir(wt_abs: &Path) -> Result<bool, WorktreeError> {
    let trash = trash_path(wt_abs);
    let mut found = remove_all(&trash)?;
    match fs::symlink_metadata(wt_abs) {
        Ok(meta) if meta.is_dir() => {
            let is_worktree = fs::symlink_metadata(wt_abs.join(".git")).is_ok();
            let is_empty = fs::read_dir(wt_abs)?.next().is_none();
            if !is_worktree && !is_empty {
                return Err(WorktreeError::PathInUse {
                    path: wt_abs.display().to_string(),
                });
            }
            remove_tree(wt_abs)?;
            found = true;
        }
        Ok(_) => {
            return Err(WorktreeError::PathInUse {
                path: wt_abs.display().to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(found)
}

/// Delete a worktree directory by renaming it aside first: an interrupted delete leaves a
/// `.NAME.removing` directory that the next removal or the reaper finishes, never a
/// half-emptied worktree that no longer looks like one (and so would be refused forever).
pub(super) fn remove_tree(wt_abs: &Path) -> Result<(), WorktreeError> {
    let trash = trash_path(wt_abs);
    remove_all(&trash)?;
    match fs::rename(wt_abs, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    remove_all(&trash)?;
    Ok(())
}

fn trash_path(wt_abs: &Path) -> PathBuf {
    let name = wt_abs.file_name().unwrap_or_default().to_string_lossy();
    wt_abs.with_file_name(format!(".{name}.removing"))
}

/// Whether `path` is what an interrupted removal left behind.
pub(super) fn is_trash(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".removing"))
}

/// `remove_dir_all` that treats an absent directory as done, and retries once: a removal
/// racing another (a close and the reaper) can see entries vanish under it.
pub(super) fn remove_all(path: &Path) -> Result<bool, WorktreeError> {
    for attempt in 0..2 {
        match fs::remove_dir_all(path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(attempt > 0),
            Err(e) if attempt > 0 => return Err(e.into()),
            Err(_) => {}
        }
    }
    Ok(true)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.components().eq(b.components()),
    }
}
