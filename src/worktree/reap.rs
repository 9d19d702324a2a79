//! Reaping orphan worktrees: directories under the data dir that no session owns (a crash
//! between creating a worktree and recording it). Removed only when they hold no work.

use std::path::Path;

use super::WorktreeError;

/// Remove `wt_path` (and its registration and branch in the project it belongs to) when its
/// working directory has no changes against its HEAD. Returns whether it was removed.
pub fn remove_if_clean(wt_path: &Path) -> Result<bool, WorktreeError> {
    let repo = match git2::Repository::open(wt_path) {
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
    let branch = repo.head()?.shorthand().map(str::to_string);
    let dirty = {
        let tree = repo.head()?.peel_to_tree()?;
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true);
        let diff = repo.diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))?;
        diff.deltas().len() > 0
    };
    if dirty {
        return Ok(false);
    }
    // The worktree's common dir is the project's `.git`; its parent is the project.
    let project = repo
        .commondir()
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| WorktreeError::Io(std::io::Error::other("worktree has no project")))?;
    drop(repo);
    super::remove(&project, wt_path, branch.as_deref().unwrap_or(""))?;
    Ok(true)
}
