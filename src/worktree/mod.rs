//! Git worktree plumbing for agent tasks: creating an isolated worktree per
//! task, turning its cumulative work into a patch, applying that patch to the
//! user's checkout strictly and atomically, and cleaning up afterwards.
//!
//! A session's worktree is a repository of its own whose objects are borrowed
//! from the project (see `create`): the agent can use git freely in it without
//! touching the user's config, hooks, refs or stash.
//!
//! Writing into the checkout lives in `apply.rs`, path containment in
//! `guard.rs`. Everything goes through libgit2 except a new worktree's checkout
//! (git's parallel checkout, an argument vector; libgit2 when git is missing).
//! `Repository` is `Send` but not `Sync`, so every function opens the
//! repositories it needs and returns owned data; callers run these inside
//! `spawn_blocking`.

mod apply;
pub mod guard;
mod journal;
mod reap;
mod snapshot;
pub use reap::{remove_closed, remove_if_clean};
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub use apply::{ChangeTrees, CheckoutLock, StaleJournal};
pub use snapshot::{Snapshot, rebaseline, snapshot, tree_from_patch};

use git2::{
    BranchType, Delta, ErrorCode, ObjectType, Oid, Repository, ResetType, StatusOptions,
    WorktreePruneOptions, build::CheckoutBuilder,
};

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

/// The project ref that keeps a session's base commit, and so every project object its
/// private repository borrows, safe from the project's `git gc`: the project cannot see what
/// a repository borrowing its objects still needs. Outside `refs/heads` and `refs/tags`, so
/// `git branch` and `git tag` do not list it.
fn base_ref(name: &str) -> String {
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

/// Make `wt_abs` a repository whose objects are the project's, on `branch` at `base`, and
/// check it out. Nothing of the user's repository is copied (no hooks, no config) except
/// facts: what the project's git found out about the filesystem (`core.filemode` and the
/// like), the shallow boundary (without it, history walks fail on a shallow clone's missing
/// parents) and where Git LFS keeps file contents (without it, the smudge filter looks in
/// the empty private store and fails the checkout). The git directory is written directly
/// (it is a handful of files in git's documented layout): libgit2's init probes the
/// filesystem and costs about 10 ms, half of a new session's dispatch.
fn init_private(
    project: &Repository,
    wt_abs: &Path,
    branch: &str,
    base: git2::Oid,
    use_cli: bool,
) -> Result<(), WorktreeError> {
    let head_ref = format!("refs/heads/{branch}");
    if !git2::Reference::is_valid_name(&head_ref) {
        return Err(git2::Error::from_str(&format!("invalid branch name `{branch}`")).into());
    }
    let git_dir = wt_abs.join(".git");
    let info = git_dir.join("objects").join("info");
    for dir in [
        &info,
        &git_dir.join("objects/pack"),
        &git_dir.join("refs/tags"),
    ] {
        fs::create_dir_all(dir)?;
    }
    let mut config = String::from(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tlogallrefupdates = true\n",
    );
    let project_config = project.config()?;
    for key in ["filemode", "symlinks", "ignorecase", "precomposeunicode"] {
        if let Ok(v) = project_config.get_bool(&format!("core.{key}")) {
            config.push_str(&format!("\t{key} = {v}\n"));
        }
    }
    let lfs = project.commondir().join("lfs");
    if lfs.is_dir() {
        let lfs = fs::canonicalize(lfs)?.to_string_lossy().into_owned();
        let quoted = lfs.replace('\\', "\\\\").replace('"', "\\\"");
        config.push_str(&format!("[lfs]\n\tstorage = \"{quoted}\"\n"));
    }
    fs::write(git_dir.join("config"), config)?;
    let objects = fs::canonicalize(project.commondir().join("objects"))?;
    let mut line = objects.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    fs::write(info.join("alternates"), line)?;
    if project.is_shallow() {
        fs::copy(project.commondir().join("shallow"), git_dir.join("shallow"))?;
    }
    let ref_file = git_dir.join(&head_ref);
    if let Some(parent) = ref_file.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(ref_file, format!("{base}\n"))?;
    fs::write(git_dir.join("HEAD"), format!("ref: {head_ref}\n"))?;
    if use_cli && git_cli_checkout(wt_abs)? {
        return Ok(());
    }
    let private = Repository::open(wt_abs)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    private.checkout_head(Some(&mut checkout))?;
    Ok(())
}

/// `git read-tree -u` with parallel checkout: 3–6× faster than libgit2's single-threaded
/// checkout on large trees (measured in notes/perf.md and by the bench). Hooks are disabled
/// (the private repository has none, but a global `core.hooksPath` would apply). Returns
/// `Ok(false)` when no git binary is available (the caller falls back to libgit2).
fn git_cli_checkout(wt_abs: &Path) -> Result<bool, WorktreeError> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C").arg(wt_abs).args([
        "-c",
        "checkout.workers=0",
        "-c",
        "core.hooksPath=/dev/null",
        "read-tree",
        "--reset",
        "-u",
        "HEAD",
    ]);
    // The repository is the one in `wt_abs`, whatever environment boocoder was started in.
    for var in GIT_REDIRECTS {
        cmd.env_remove(var);
    }
    match cmd.stdin(std::process::Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
        Ok(o) if o.status.success() => Ok(true),
        Ok(o) => Err(WorktreeError::Io(std::io::Error::other(format!(
            "git read-tree failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))),
    }
}

/// A stable name lets a restarted process find the worktree (and its project ref) again.
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

/// Remove the directory, the project ref and any earlier-layout registration and branch of a
/// worktree. Returns whether anything existed. A registration of the same name for a
/// different live path is someone else's and left alone.
fn clean_up(
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
fn remove_worktree_dir(wt_abs: &Path) -> Result<bool, WorktreeError> {
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
fn remove_tree(wt_abs: &Path) -> Result<(), WorktreeError> {
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
fn is_trash(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".removing"))
}

/// `remove_dir_all` that treats an absent directory as done, and retries once: a removal
/// racing another (a close and the reaper) can see entries vanish under it.
fn remove_all(path: &Path) -> Result<bool, WorktreeError> {
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

/// Serialise worktree creation and removal on one repository across threads and processes,
/// so a creation retrying over debris never races a removal of the same name (the project
/// ref and the directory are checked and changed as one step).
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
