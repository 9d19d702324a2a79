//! Creating a session's worktree: a stable name from its path, the project ref that keeps
//! its base alive, retrying once over a crash's debris, all under the per-repository lock
//! that creation and removal share.

use std::fs;
use std::path::{Component, Path, PathBuf};

use git2::Repository;

use super::private_repo::init_private;
use super::remove::{clean_up, remove_tree};
use super::{WorktreeError, WorktreeInfo, project_root};

/// The project ref that keeps a session's base commit, and so every project object its
/// private repository borrows, safe from the project's `git gc`: the project cannot see what
/// a repository borrowing its objects still needs. Outside `refs/heads` and `refs/tags`, so
/// `git branch` and `git tag` do not list it.
pub(super) fn base_ref(name: &str) -> String {
    format!("refs/boocoder/{name}")
}

/// Create the worktree at `wt_path`: a repository of its own (git dir `wt_path/.git`) on a
/// new branch `branch` at the project's HEAD commit. Its config, hooks, refs, stash and index
/// are private, so what an agent does with git inside it (`git config core.hooksPath`,
/// `git stash`, `git branch -D`) never reaches the user's repository; its object store
/// borrows the project's (`objects/info/alternates`), so creating it costs a checkout, not a
/// copy. The project gains only `refs/boocoder/<name>`. A crash can leave the directory, the
/// ref, or (from the linked-worktree layout of earlier versions) a registration and branch
/// behind under the same name; those are cleaned up and the creation retried once, so a
/// restarted task does not wedge on its own debris.
pub fn create(project: &Path, wt_path: &Path, branch: &str) -> Result<WorktreeInfo, WorktreeError> {
    create_with(project, wt_path, branch, true)
}

pub(super) fn create_with(
    project: &Path,
    wt_path: &Path,
    branch: &str,
    use_cli: bool,
) -> Result<WorktreeInfo, WorktreeError> {
    let root = project_root(project)?;
    let name = worktree_name(wt_path)?;
    let wt_abs = absolute_worktree_path(wt_path, &name)?;
    let repo = Repository::open(&root)?;
    let _lock = lock_worktrees(&repo)?;
    match try_create(&repo, &name, &wt_abs, branch, use_cli) {
        Ok(info) => Ok(info),
        Err(first) => {
            if !clean_up(&repo, &name, &wt_abs, branch)? {
                return Err(first);
            }
            try_create(&repo, &name, &wt_abs, branch, use_cli)
        }
    }
}

fn try_create(
    repo: &Repository,
    name: &str,
    wt_abs: &Path,
    branch: &str,
    use_cli: bool,
) -> Result<WorktreeInfo, WorktreeError> {
    let base = repo.head()?.peel_to_commit()?.id();
    // An existing directory is debris (or someone else's): the caller decides.
    fs::create_dir(wt_abs)?;
    let made = repo
        .reference(&base_ref(name), base, true, "boocoder: session base")
        .map_err(WorktreeError::from)
        .and_then(|_| init_private(repo, wt_abs, branch, base, use_cli));
    if let Err(e) = made {
        // Leave nothing behind for an error that is not about debris (permissions, disk
        // full): the caller would trip over it next time.
        let _ = remove_tree(wt_abs);
        if let Ok(mut r) = repo.find_reference(&base_ref(name)) {
            let _ = r.delete();
        }
        return Err(e);
    }
    Ok(WorktreeInfo {
        path: fs::canonicalize(wt_abs)?,
        branch: branch.to_owned(),
        base_commit: base.to_string(),
    })
}

/// A stable name lets a restarted process find the worktree (and its project ref) again.
pub(super) fn worktree_name(wt_path: &Path) -> Result<String, WorktreeError> {
    match wt_path.components().next_back() {
        Some(Component::Normal(name)) => name
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_wt_path(wt_path)),
        _ => Err(invalid_wt_path(wt_path)),
    }
}

fn invalid_wt_path(wt_path: &Path) -> WorktreeError {
    WorktreeError::InvalidWorktreePath {
        path: wt_path.display().to_string(),
    }
}

/// A canonical absolute path keeps the alternates and comparisons valid whatever the
/// caller's cwd or symlinked temp dirs.
fn absolute_worktree_path(wt_path: &Path, name: &str) -> Result<PathBuf, WorktreeError> {
    let parent = match wt_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    Ok(fs::canonicalize(parent)?.join(name))
}

/// Serialise worktree creation and removal on one repository across threads and processes,
/// so a creation retrying over debris never races a removal of the same name (the project
/// ref and the directory are checked and changed as one step).
pub(super) fn lock_worktrees(
    repo: &Repository,
) -> Result<nix::fcntl::Flock<fs::File>, WorktreeError> {
    let path = repo.commondir().join("boocoder-worktrees.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| WorktreeError::Io(std::io::Error::from(errno)))
}
