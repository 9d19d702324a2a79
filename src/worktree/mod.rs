//! Git worktree plumbing for agent tasks: creating an isolated worktree per
//! task, turning its cumulative work into a patch, applying that patch to the
//! user's checkout strictly and atomically, and cleaning up afterwards.
//!
//! A session's worktree is a repository of its own whose objects are borrowed
//! from the project (see `create`): the agent can use git freely in it without
//! touching the user's config, hooks, refs or stash.
//!
//! Creating lives in `create.rs` (the private repository in `private_repo.rs`),
//! removing in `remove.rs`, reaping in `reap.rs`, dropping work in `reset.rs`,
//! the worktree's content and its diff in `snapshot.rs`, the project's
//! `.worktreeinclude` files in `include.rs`, heavy ignored directories in
//! `bring.rs`, writing into the
//! checkout in `apply.rs`, merging a pending change onto the checkout in `rebase.rs` (its
//! conflicts in lines in `hunks.rs`, the worktree following it in `follow.rs`), path
//! containment in `guard.rs`. Everything goes through libgit2 except a new worktree's checkout
//! (git's parallel checkout, an argument vector; libgit2 when git is missing).
//! `Repository` is `Send` but not `Sync`, so every function opens the
//! repositories it needs and returns owned data; callers run these inside
//! `spawn_blocking`.

mod apply;
mod bring;
mod create;
mod follow;
pub mod guard;
mod hunks;
mod include;
mod journal;
mod pool;
mod private_repo;
mod reap;
mod rebase;
mod remove;
mod reset;
mod snapshot;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository};

pub use apply::{ChangeTrees, CheckoutLock, StaleJournal};
pub use bring::{BringStrategy, Brought, bring};
pub use create::create;
pub use follow::{RebaseMarker, abandon_rebase, begin_rebase, finish_rebase, interrupted_rebase};
pub use hunks::{ConflictHunk, LineSpan};
pub use include::{INCLUDE_FILE, Included, copy_included};
pub use pool::{
    Forward, PoolUse, Spare, Taken, bring_forward, claims, disk_use, drop_pool, drop_spare,
    end_claim, give_back, head_commit, is_pooled, make_spare, mark_ready, pool_dir,
    pooled_projects, settle_taken, spares, take_spare, token_age,
};
pub use reap::{remove_closed, remove_if_clean};
pub use rebase::{MergeConflict, Rebase, Rebased};
pub use remove::remove;
use remove::{is_trash, remove_all, remove_worktree_dir};
pub use reset::reset;
pub use snapshot::{Snapshot, rebaseline, snapshot, tree_from_patch};

/// Environment variables that make git work on a repository other than the one in its cwd:
/// cleared for every git and agent process, so whatever environment boocoder was started in
/// cannot point them at the user's repository.
pub const GIT_REDIRECTS: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
];

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
    #[error("{path} is not a boocoder worktree: its repository or work tree lies elsewhere")]
    Foreign { path: String },
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

/// Open a session's worktree repository. Its config is the agent's to edit, so the
/// repository is accepted only when it is that directory's own: a `core.worktree` or a
/// `.git` link pointing at the user's checkout would otherwise have `reset` and
/// `rebaseline` work on the user's files and refs. Worktrees of earlier versions (linked
/// worktrees of the project) are still accepted.
fn open_worktree(wt_path: &Path) -> Result<Repository, WorktreeError> {
    let shown = || wt_path.display().to_string();
    let repo = Repository::open(wt_path).map_err(|e| match e.code() {
        ErrorCode::NotFound => WorktreeError::NotARepo { path: shown() },
        _ => WorktreeError::Git(e),
    })?;
    let Some(workdir) = repo.workdir() else {
        return Err(WorktreeError::BareRepo { path: shown() });
    };
    let own = fs::canonicalize(wt_path)?;
    let same_workdir = fs::canonicalize(workdir)? == own;
    let own_git_dir = repo.is_worktree() || fs::canonicalize(repo.path())? == own.join(".git");
    if !(same_workdir && own_git_dir) {
        return Err(WorktreeError::Foreign { path: shown() });
    }
    Ok(repo)
}

/// A stable hex digest (git's blob hash) of some bytes, for names that must not
/// reveal what they name.
pub fn digest(bytes: &[u8]) -> String {
    Oid::hash_object(ObjectType::Blob, bytes)
        .map(|o| o.to_string())
        .unwrap_or_default()
}
