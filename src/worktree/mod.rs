//! Git worktree plumbing for agent tasks: creating an isolated worktree per
//! task, turning its cumulative work into a patch, applying that patch to the
//! user's checkout strictly and atomically, and cleaning up afterwards.
//!
//! Writing into the checkout lives in `checkout.rs`, path containment in
//! `guard.rs`. Everything goes through libgit2 (no git CLI, no shell).
//! `Repository` is `Send` but not `Sync`, so every function opens the
//! repositories it needs and returns owned data; callers run these inside
//! `spawn_blocking`.

mod checkout;
pub mod guard;
mod journal;
mod reap;
mod snapshot;
pub use reap::remove_if_clean;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub use checkout::{ChangeTrees, CheckoutLock, StaleJournal};
pub use snapshot::{Snapshot, rebaseline, snapshot, tree_from_patch};

use git2::{
    BranchType, Delta, ErrorCode, ObjectType, Oid, Repository, ResetType, StatusOptions,
    WorktreeAddOptions, WorktreePruneOptions, build::CheckoutBuilder,
};

#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("{path} is not inside a git repository")]
    NotARepo { path: String },
    #[error("{path} is a bare repository; a working directory is required")]
    BareRepo { path: String },
    #[error("repository at {path} has no commits yet; commit something first")]
    NoCommits { path: String },
    #[error("worktree path {path} has no usable final component to name it by")]
    InvalidWorktreePath { path: String },
    #[error("{path} exists and is not a boocoder worktree; refusing to touch it")]
    PathInUse { path: String },
    #[error("worktree name {name} is already registered for another path ({path})")]
    NameTaken { name: String, path: String },
    #[error("patch conflicts with the checkout: {0}")]
    Conflict(ConflictReport),
    /// The checkout is held by another apply (or needs an interrupted one recovered).
    #[error("{0}")]
    Busy(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct WorktreeInfo {
    pub path: PathBuf,
    pub branch: String,
    pub base_commit: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
    TypeChange,
}

#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct FileChange {
    pub path: String,
    pub old_path: Option<String>,
    pub status: FileStatus,
    pub additions: u32,
    pub deletions: u32,
    pub binary: bool,
}

#[derive(Debug, Clone)]
pub struct Diff {
    pub patch: Vec<u8>,
    pub files: Vec<FileChange>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ConflictFile {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ConflictReport {
    pub files: Vec<ConflictFile>,
}

impl fmt::Display for ConflictReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, file) in self.files.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", file.path, file.reason)?;
        }
        Ok(())
    }
}

/// Open the repo containing `path` and return its canonical work-dir root.
/// Errors clearly when not a git repo / bare / no commits, because every
/// later step (worktree at HEAD, apply to the checkout) needs all three.
pub fn project_root(path: &Path) -> Result<PathBuf, WorktreeError> {
    let shown = path.display().to_string();
    let repo = Repository::discover(path).map_err(|e| match e.code() {
        ErrorCode::NotFound => WorktreeError::NotARepo {
            path: shown.clone(),
        },
        _ => WorktreeError::Git(e),
    })?;
    let Some(workdir) = repo.workdir() else {
        return Err(WorktreeError::BareRepo { path: shown });
    };
    match repo.head().and_then(|h| h.peel_to_commit()) {
        Ok(_) => {}
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
            return Err(WorktreeError::NoCommits { path: shown });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(fs::canonicalize(workdir)?)
}

/// Create a worktree at `wt_path` on a NEW branch `branch` at the project's
/// HEAD commit. A crash can leave a registration, directory or branch behind
/// under the same name; those are cleaned up and the creation retried once,
/// so a restarted task does not wedge on its own debris.
pub fn create(project: &Path, wt_path: &Path, branch: &str) -> Result<WorktreeInfo, WorktreeError> {
    create_with(project, wt_path, branch, true)
}

fn create_with(
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
            if !clean_up(&repo, &name, &wt_abs, branch, true)? {
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
    let head = repo.head()?.peel_to_commit()?;
    if use_cli
        && let Some(workdir) = repo.workdir()
        && git_cli_add(workdir, wt_abs, branch, &head.id().to_string())?
    {
        return Ok(WorktreeInfo {
            path: fs::canonicalize(wt_abs)?,
            branch: branch.to_owned(),
            base_commit: head.id().to_string(),
        });
    }
    let mut branch_ref = repo.branch(branch, &head, false)?;
    let added = {
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(branch_ref.get()));
        repo.worktree(name, wt_abs, Some(&opts)).map(|_| ())
    };
    if let Err(e) = added {
        // Do not leave a branch behind for an error that is not about debris
        // (permissions, disk full): the caller would trip over it next time.
        let _ = branch_ref.delete();
        return Err(e.into());
    }
    Ok(WorktreeInfo {
        path: fs::canonicalize(wt_abs)?,
        branch: branch.to_owned(),
        base_commit: head.id().to_string(),
    })
}

/// `git worktree add` with parallel checkout: 3–6× faster than libgit2's single-threaded
/// checkout on large trees (measured in notes/perf.md and by the bench). Hooks are disabled:
/// the user's post-checkout hooks must not run in our worktrees. Returns `Ok(false)` when no
/// git binary is available (the caller falls back to libgit2).
fn git_cli_add(
    workdir: &Path,
    wt_abs: &Path,
    branch: &str,
    commit: &str,
) -> Result<bool, WorktreeError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args([
            "-c",
            "checkout.workers=0",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
            "worktree",
            "add",
            "--quiet",
            "-b",
            branch,
        ])
        .arg(wt_abs)
        .arg(commit)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
        Ok(o) if o.status.success() => Ok(true),
        Ok(o) => Err(WorktreeError::Io(std::io::Error::other(format!(
            "git worktree add failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))),
    }
}

/// The .git/worktrees entry may not contain '/', and a stable name lets a
/// restarted process find the registration again.
fn worktree_name(wt_path: &Path) -> Result<String, WorktreeError> {
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

/// libgit2 records the path as given; a canonical absolute one keeps the
/// registration valid whatever the caller's cwd or symlinked temp dirs.
fn absolute_worktree_path(wt_path: &Path, name: &str) -> Result<PathBuf, WorktreeError> {
    let parent = match wt_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    Ok(fs::canonicalize(parent)?.join(name))
}

/// Remove registration, directory and branch of a worktree. Returns whether
/// anything existed. With `strict`, a registration of the same name for a
/// different live path is an error (create must not reuse it); otherwise it
/// is someone else's and left alone.
fn clean_up(
    repo: &Repository,
    name: &str,
    wt_abs: &Path,
    branch: &str,
    strict: bool,
) -> Result<bool, WorktreeError> {
    let mut found = false;
    match repo.find_worktree(name) {
        Ok(wt) => {
            let ours = same_path(wt.path(), wt_abs);
            let live = wt.validate().is_ok();
            if ours || !live {
                let mut opts = WorktreePruneOptions::new();
                opts.valid(true).locked(true).working_tree(ours);
                wt.prune(Some(&mut opts))?;
                found = true;
            } else if strict {
                return Err(WorktreeError::NameTaken {
                    name: name.to_owned(),
                    path: wt.path().display().to_string(),
                });
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
    match fs::symlink_metadata(wt_abs) {
        Ok(meta) if meta.is_dir() => {
            let is_worktree = fs::symlink_metadata(wt_abs.join(".git")).is_ok_and(|m| m.is_file());
            let is_empty = fs::read_dir(wt_abs)?.next().is_none();
            if !is_worktree && !is_empty {
                return Err(WorktreeError::PathInUse {
                    path: wt_abs.display().to_string(),
                });
            }
            fs::remove_dir_all(wt_abs)?;
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
    match repo.find_branch(branch, BranchType::Local) {
        Ok(mut b) => {
            b.delete()?;
            found = true;
        }
        Err(e) if e.code() == ErrorCode::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(found)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.components().eq(b.components()),
    }
}

fn open_worktree(wt_path: &Path) -> Result<Repository, WorktreeError> {
    let repo = Repository::open(wt_path).map_err(|e| match e.code() {
        ErrorCode::NotFound => WorktreeError::NotARepo {
            path: wt_path.display().to_string(),
        },
        _ => WorktreeError::Git(e),
    })?;
    if repo.workdir().is_none() {
        return Err(WorktreeError::BareRepo {
            path: wt_path.display().to_string(),
        });
    }
    Ok(repo)
}

/// Per-file summary of a diff (generated or parsed). A type change arrives as
/// a deletion plus an addition of the same path (that is how git and libgit2
/// write it so that `git apply` accepts it); it is reported as one entry.
fn file_changes(diff: &git2::Diff<'_>) -> Result<Vec<FileChange>, WorktreeError> {
    let mut files: Vec<FileChange> = Vec::new();
    for idx in 0..diff.deltas().len() {
        let patch = git2::Patch::from_diff(diff, idx)?;
        let (additions, deletions) = match &patch {
            Some(p) => {
                let (_, add, del) = p.line_stats()?;
                (clamp(add), clamp(del))
            }
            None => (0, 0),
        };
        // Patch generation loads the content, which is what sets the binary
        // flag; read the delta afterwards.
        let Some(delta) = diff.get_delta(idx) else {
            continue;
        };
        let status = match delta.status() {
            Delta::Added | Delta::Untracked | Delta::Copied => FileStatus::Added,
            Delta::Deleted => FileStatus::Deleted,
            Delta::Renamed => FileStatus::Renamed,
            Delta::Typechange => FileStatus::TypeChange,
            Delta::Unmodified | Delta::Ignored => continue,
            _ => FileStatus::Modified,
        };
        let old = path_string(delta.old_file().path_bytes());
        let new = path_string(delta.new_file().path_bytes());
        let path = if status == FileStatus::Deleted {
            old.clone()
        } else {
            new.or_else(|| old.clone())
        }
        .unwrap_or_default();
        let binary = delta.flags().is_binary()
            || delta.old_file().is_binary()
            || delta.new_file().is_binary();
        if status == FileStatus::Added
            && let Some(prev) = files
                .iter_mut()
                .find(|f| f.path == path && f.status == FileStatus::Deleted)
        {
            prev.status = FileStatus::TypeChange;
            prev.additions = prev.additions.saturating_add(additions);
            prev.binary |= binary;
            continue;
        }
        files.push(FileChange {
            path,
            old_path: if status == FileStatus::Renamed {
                old
            } else {
                None
            },
            status,
            additions,
            deletions,
            binary,
        });
    }
    Ok(files)
}

/// A stable hex digest (git's blob hash) of some bytes, for names that must not
/// reveal what they name.
pub fn digest(bytes: &[u8]) -> String {
    Oid::hash_object(ObjectType::Blob, bytes)
        .map(|o| o.to_string())
        .unwrap_or_default()
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn path_string(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

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
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
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

/// Remove the worktree directory, prune its registration and delete its
/// branch. Idempotent, because it runs on task cleanup paths that may be
/// retried after partial failures.
pub fn remove(project: &Path, wt_path: &Path, branch: &str) -> Result<(), WorktreeError> {
    let root = project_root(project)?;
    let repo = Repository::open(&root)?;
    let name = worktree_name(wt_path)?;
    let wt_abs = match wt_path.parent() {
        Some(parent) if parent.exists() => fs::canonicalize(parent)?.join(&name),
        _ => wt_path.to_path_buf(),
    };
    let _lock = lock_worktrees(&repo)?;
    clean_up(&repo, &name, &wt_abs, branch, false)?;
    Ok(())
}

/// Serialise worktree creation and removal on one repository across threads and processes:
/// `git worktree add` reads every registered worktree and fails ("failed to read
/// .git/worktrees/…") when another one is being written at that moment, which several
/// sessions (or several boocoder nodes) starting at once would otherwise hit.
fn lock_worktrees(repo: &Repository) -> Result<nix::fcntl::Flock<fs::File>, WorktreeError> {
    let path = repo.commondir().join("boocoder-worktrees.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| WorktreeError::Io(std::io::Error::from(errno)))
}
