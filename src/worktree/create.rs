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
///
/// For a session's worktree the checkout runs outside the project's worktree lock, so the
/// worktrees of a burst of new sessions are made side by side: nothing removes a session's
/// directory while its creation runs (its session exists and has a turn running, which
/// `close` refuses and the reaper skips).
pub fn create(project: &Path, wt_path: &Path, branch: &str) -> Result<WorktreeInfo, WorktreeError> {
    create_with(project, wt_path, branch, Checkout::Unlocked)
}

/// How the checkout of a new worktree runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checkout {
    /// git's parallel `read-tree -u`, outside the lock (a session's worktree).
    Unlocked,
    /// git's parallel `read-tree -u`, under the lock: a spare, which the pool of another
    /// process may drop at any time (it takes the lock to do so).
    Locked,
    /// libgit2's checkout, under the lock (the fallback, compared in tests).
    Libgit2,
}

pub(super) fn create_with(
    project: &Path,
    wt_path: &Path,
    branch: &str,
    checkout: Checkout,
) -> Result<WorktreeInfo, WorktreeError> {
    let root = project_root(project)?;
    let name = worktree_name(wt_path)?;
    let wt_abs = absolute_worktree_path(wt_path, &name)?;
    let repo = Repository::open(&root)?;
    let mut lock = Some(lock_worktrees(&repo)?);
    let base = match reserve(&repo, &name, &wt_abs) {
        Ok(base) => base,
        Err(first) => {
            if !clean_up(&repo, &name, &wt_abs, branch)? {
                return Err(first);
            }
            reserve(&repo, &name, &wt_abs)?
        }
    };
    if checkout == Checkout::Unlocked {
        // why: the name is ours now (its directory and the ref holding its base exist), and
        // the checkout touches nothing outside the new directory.
        lock = None;
    }
    let use_cli = checkout != Checkout::Libgit2;
    if let Err(e) = init_private(&repo, &wt_abs, branch, base, use_cli) {
        // Leave nothing behind for an error that is not about debris (permissions, disk
        // full): the next creation of this name would trip over it.
        let _lock = lock.or_else(|| lock_worktrees(&repo).ok());
        let _ = remove_tree(&wt_abs);
        if let Ok(mut r) = repo.find_reference(&base_ref(&name)) {
            let _ = r.delete();
        }
        return Err(e);
    }
    drop(lock);
    Ok(WorktreeInfo {
        // already canonical: its parent was canonicalized, and the name is one component
        path: wt_abs,
        branch: branch.to_owned(),
        base_commit: base.to_string(),
    })
}

/// Claim the name under the project's worktree lock: its directory (an existing one is
/// debris, or someone else's: the caller decides) and the project ref that keeps the base
/// commit alive. Returns the base: the project's HEAD commit.
fn reserve(repo: &Repository, name: &str, wt_abs: &Path) -> Result<git2::Oid, WorktreeError> {
    let base = repo.head()?.peel_to_commit()?.id();
    fs::create_dir(wt_abs)?;
    if let Err(e) = repo.reference(&base_ref(name), base, true, "boocoder: session base") {
        let _ = fs::remove_dir(wt_abs);
        return Err(e.into());
    }
    Ok(base)
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

/// Serialise claiming a worktree name and removing one on a repository across threads and
/// processes, so a creation retrying over debris never races a removal of the same name (the
/// project ref and the directory are checked and changed as one step). A session's checkout
/// into its claimed directory runs outside it (see [`create`]).
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
