//! Reaping worktrees nobody will use again: directories under the data dir that no session
//! owns (a crash between creating a worktree and recording it), worktrees closed sessions
//! left behind (the same crash, then the session closed), and what an interrupted removal
//! left behind.

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository};

use super::WorktreeError;

/// Remove `wt_path` (and its project ref, or for the earlier layout its registration and
/// branch) when its working directory has no changes against its HEAD, or when it is an
/// unclaimed spare (the caller checked that neither a session nor the pool owns it). Returns
/// whether it was removed.
pub fn remove_if_clean(wt_path: &Path) -> Result<bool, WorktreeError> {
    if super::is_trash(wt_path) {
        super::remove_all(wt_path)?;
        return Ok(true);
    }
    let repo = match Repository::open(wt_path) {
        Ok(r) => r,
        // Not a worktree at all (an interrupted creation left an empty or partial directory).
        Err(_) => {
            let empty = std::fs::read_dir(wt_path)?.next().is_none();
            if empty {
                std::fs::remove_dir(wt_path)?;
            }
            return Ok(empty);
        }
    };
    // A spare no session took (a crash between claiming or dropping it and recording that)
    // never had an agent in it: what is there was brought in by the pool.
    let spare = repo.path().join(super::pool::SPARE).exists();
    if !spare && holds_work(&repo)? {
        return Ok(false);
    }
    let owner = owner(&repo, wt_path);
    drop(repo);
    match owner {
        Some((project, branch)) => super::remove(&project, wt_path, &branch)?,
        // A creation interrupted before it linked the objects: no project to clean.
        None => {
            super::remove_worktree_dir(wt_path)?;
        }
    }
    Ok(true)
}

/// Remove the worktree a closed session left behind, even with changes in it: closing is
/// refused while a change is pending (unless forced), so whatever is there was discarded or
/// abandoned by whoever closed the session. Returns whether it held changes, for the log.
pub fn remove_closed(project: &Path, wt_path: &Path, branch: &str) -> Result<bool, WorktreeError> {
    let dirty = match Repository::open(wt_path) {
        Ok(repo) => holds_work(&repo).unwrap_or(true),
        Err(_) => false,
    };
    super::remove(project, wt_path, branch)?;
    Ok(dirty)
}

/// Whether the working directory differs from HEAD (untracked files included). A HEAD that
/// was never written (an interrupted creation) counts every file as work.
fn holds_work(repo: &Repository) -> Result<bool, WorktreeError> {
    let tree = match repo.head().and_then(|h| h.peel_to_tree()) {
        Ok(t) => Some(t),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    let diff = repo.diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut opts))?;
    Ok(diff.deltas().len() > 0)
}

/// The project a worktree belongs to (its git directory) and the branch to delete there. A
/// private repository names the project only through its alternates and has no branch in it;
/// a linked worktree of the earlier layout shares the project's git directory.
fn owner(repo: &Repository, wt_path: &Path) -> Option<(PathBuf, String)> {
    if wt_path.join(".git").is_dir() {
        let alternates = repo.path().join("objects").join("info").join("alternates");
        let text = std::fs::read_to_string(alternates).ok()?;
        let objects = PathBuf::from(text.lines().next()?.trim());
        return Some((objects.parent()?.to_path_buf(), String::new()));
    }
    let head = repo.head().ok()?;
    let branch = head.shorthand().ok()?.to_string();
    Some((repo.commondir().to_path_buf(), branch))
}
