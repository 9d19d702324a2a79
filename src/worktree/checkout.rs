//! Applying a pending change to the user's checkout: the only code that writes
//! into the user's own files. It owns the promise the product rests on:
//!
//! - **Strict.** Every path the change touches is inside the project, outside
//!   `.git`, not under a symlinked or replaced parent, and exactly at the
//!   change's base version (content *and* mode) in the checkout; new paths are
//!   free. Symlinks pointing outside the project are refused. A dry run is the
//!   same check.
//! - **Serialised.** One apply per checkout at a time, across threads,
//!   processes and nodes on the host: an exclusive lock file in the checkout's
//!   git dir, held from the check to the end, so preimages are checked under
//!   the lock.
//! - **All or nothing, across crashes.** Before the first byte is written, a
//!   journal (every path, its old and new version, the temp names) is made
//!   durable in the git dir and the previous contents are kept beside it (hard
//!   links, so it costs no copy). An I/O error rolls back at once; a crash
//!   leaves the journal, and whoever takes the lock next finishes the story:
//!   rolled back unless the store says the change was applied.
//!
//! Content comes from git objects (the change's base and target trees in the
//! session's worktree repository), never from a text patch.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{DiffOptions, FileMode, ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};

use super::{ConflictFile, ConflictReport, FileChange, WorktreeError, open_worktree, project_root};

const LOCK_FILE: &str = "boocoder-apply.lock";
const JOURNAL_DIR: &str = "boocoder-apply";
const JOURNAL_FILE: &str = "journal.json";
const BACKUP_DIR: &str = "backup";

/// Where a pending change's content lives: two trees in the session's worktree
/// repository.
#[derive(Debug, Clone, Copy)]
pub struct ChangeTrees<'a> {
    pub worktree: &'a Path,
    pub base: &'a str,
    pub tree: &'a str,
}

/// The checkout's apply lock. While it is held, no other apply (in any process
/// on this host) reads or writes the checkout, and a journal found on disk
/// belongs to an apply that died.
pub struct CheckoutLock {
    root: PathBuf,
    git_dir: PathBuf,
    file_mode: bool,
    _flock: nix::fcntl::Flock<fs::File>,
}

impl std::fmt::Debug for CheckoutLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutLock")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What start-up or the next apply found of an apply that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleJournal {
    /// The caller's tag for the change (engine: the pending change's id).
    pub tag: String,
    /// Every write had landed: the change may already be recorded as applied.
    pub written: bool,
}

impl CheckoutLock {
    /// Take the lock of the checkout containing `project`, waiting up to `wait`
    /// for another apply to finish.
    pub fn acquire(project: &Path, wait: Duration) -> Result<CheckoutLock, WorktreeError> {
        let root = project_root(project)?;
        let repo = Repository::open(&root)?;
        let git_dir = repo.path().to_path_buf();
        let file_mode = repo
            .config()
            .and_then(|c| c.get_bool("core.filemode"))
            .unwrap_or(true);
        let path = git_dir.join(LOCK_FILE);
        let deadline = Instant::now() + wait;
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    return Ok(CheckoutLock {
                        root,
                        git_dir,
                        file_mode,
                        _flock: flock,
                    });
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(WorktreeError::Busy(format!(
                        "another apply to {} is still running after {} s; try again when it is done",
                        root.display(),
                        wait.as_secs()
                    )));
                }
                Err((_, errno)) => return Err(io::Error::from(errno).into()),
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn journal_dir(&self) -> PathBuf {
        self.git_dir.join(JOURNAL_DIR)
    }

    /// The journal an interrupted apply left behind, if any.
    pub fn stale_journal(&self) -> Result<Option<StaleJournal>, WorktreeError> {
        Ok(self.read_journal()?.map(|j| StaleJournal {
            tag: j.tag,
            written: j.state == JournalState::Written,
        }))
    }

    fn read_journal(&self) -> Result<Option<Journal>, WorktreeError> {
        let path = self.journal_dir().join(JOURNAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A crash before the journal was renamed into place wrote nothing to the
                // checkout; clear what it staged.
                remove_dir_if_exists(&self.journal_dir())?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            WorktreeError::Io(io::Error::other(format!(
                "the apply journal {} is unreadable ({e}); inspect the checkout and remove it by hand",
                path.display()
            )))
        })
    }

    /// Undo an interrupted apply: the checkout returns to exactly what it was
    /// before it. Returns how many paths were restored or removed.
    pub fn roll_back(&self) -> Result<usize, WorktreeError> {
        let Some(journal) = self.read_journal()? else {
            return Ok(0);
        };
        let n = journal.roll_back(&self.root, &self.journal_dir())?;
        remove_dir_if_exists(&self.journal_dir())?;
        Ok(n)
    }

    /// The interrupted apply had finished writing and was recorded as applied:
    /// keep the checkout as it is and drop the journal.
    pub fn forget_journal(&self) -> Result<(), WorktreeError> {
        remove_dir_if_exists(&self.journal_dir())?;
        Ok(())
    }

    /// Check the change against the checkout without writing anything.
    pub fn check(&self, change: ChangeTrees<'_>) -> Result<Vec<FileChange>, WorktreeError> {
        let (_, files) = self.plan(change)?;
        Ok(files)
    }

    /// Check, journal and write the change. On success the journal stays (state
    /// `written`) until `finish`: if the process dies before the caller has
    /// recorded the change as applied, the next lock holder rolls it back. On
    /// an error the checkout is rolled back before returning.
    pub fn apply(
        &self,
        change: ChangeTrees<'_>,
        tag: &str,
    ) -> Result<Vec<FileChange>, WorktreeError> {
        if self.read_journal()?.is_some() {
            return Err(WorktreeError::Busy(
                "an interrupted apply must be recovered first".into(),
            ));
        }
        let (plan, files) = self.plan(change)?;
        if plan.ops.is_empty() {
            return Ok(files);
        }
        let repo = open_worktree(change.worktree)?;
        let mut journal = Journal::new(tag, &plan);
        let dir = self.journal_dir();
        remove_dir_if_exists(&dir)?;
        fs::create_dir_all(dir.join(BACKUP_DIR))?;
        journal.save(&dir)?;
        match journal.write(&self.root, &dir, &repo) {
            Ok(()) => {
                journal.state = JournalState::Written;
                if let Err(e) = journal.save(&dir) {
                    return Err(self.undo(&journal, e));
                }
                Ok(files)
            }
            Err(e) => Err(self.undo(&journal, e)),
        }
    }

    fn undo(&self, journal: &Journal, cause: WorktreeError) -> WorktreeError {
        let dir = self.journal_dir();
        match journal
            .roll_back(&self.root, &dir)
            .and_then(|_| remove_dir_if_exists(&dir).map_err(Into::into))
        {
            Ok(()) => cause,
            Err(e) => WorktreeError::Io(io::Error::other(format!(
                "{cause}; rolling back also failed ({e}); the journal in {} will be replayed by the next apply or start-up",
                dir.display()
            ))),
        }
    }

    /// The change is recorded as applied: drop the journal and the kept
    /// previous contents, and release the lock.
    pub fn finish(&self) -> Result<(), WorktreeError> {
        remove_dir_if_exists(&self.journal_dir())?;
        Ok(())
    }

    fn plan(&self, change: ChangeTrees<'_>) -> Result<(Plan, Vec<FileChange>), WorktreeError> {
        let repo = open_worktree(change.worktree)?;
        let base = repo
            .revparse_single(change.base)?
            .peel_to_commit()?
            .tree()?;
        let target = repo.find_tree(Oid::from_str(change.tree)?)?;
        let files = super::snapshot::tree_diff(&repo, &base, &target)?.files;
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let diff = repo.diff_tree_to_tree(Some(&base), Some(&target), Some(&mut opts))?;
        let mut ops = Vec::new();
        for delta in diff.deltas() {
            let old = delta.old_file();
            let new = delta.new_file();
            let Some(rel) = new.path_bytes().or(old.path_bytes()) else {
                continue;
            };
            let entry = |f: &git2::DiffFile<'_>| Entry {
                id: f.id(),
                kind: Kind::of(f.mode()),
            };
            let (old, new) = match delta.status() {
                git2::Delta::Added => (None, Some(entry(&new))),
                git2::Delta::Deleted => (Some(entry(&old)), None),
                _ => (Some(entry(&old)), Some(entry(&new))),
            };
            ops.push(Op {
                rel: rel.to_vec(),
                old,
                new,
            });
        }
        let checker = Checker {
            root: &self.root,
            repo: &repo,
            file_mode: self.file_mode,
            removed: ops
                .iter()
                .filter(|o| o.old.is_some())
                .map(|o| o.rel.clone())
                .collect(),
        };
        let mut conflicts = Vec::new();
        let mut created_dirs = BTreeSet::new();
        for op in &ops {
            if let Err(reason) = checker.check(op, &mut created_dirs) {
                conflicts.push(ConflictFile {
                    path: shown(&op.rel),
                    reason,
                });
            }
        }
        if !conflicts.is_empty() {
            return Err(WorktreeError::Conflict(ConflictReport { files: conflicts }));
        }
        Ok((
            Plan {
                ops,
                created_dirs: created_dirs.into_iter().collect(),
            },
            files,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    File,
    Exec,
    Link,
    /// A nested repository (submodule pointer): no file content to write.
    Gitlink,
}

impl Kind {
    fn of(mode: FileMode) -> Kind {
        match mode {
            FileMode::BlobExecutable => Kind::Exec,
            FileMode::Link => Kind::Link,
            FileMode::Commit => Kind::Gitlink,
            _ => Kind::File,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Oid,
    kind: Kind,
}

#[derive(Debug)]
struct Op {
    rel: Vec<u8>,
    /// What the checkout holds now (verified equal to the change's base).
    old: Option<Entry>,
    new: Option<Entry>,
}

struct Plan {
    ops: Vec<Op>,
    /// Parent directories the writes need that will not exist once the change's
    /// removals are done, shallowest first.
    created_dirs: Vec<Vec<u8>>,
}

struct Checker<'a> {
    root: &'a Path,
    repo: &'a Repository,
    file_mode: bool,
    /// Paths whose current file or link the change removes or replaces.
    removed: HashSet<Vec<u8>>,
}

impl Checker<'_> {
    fn check(&self, op: &Op, created_dirs: &mut BTreeSet<Vec<u8>>) -> Result<(), String> {
        check_path(&op.rel)?;
        for side in [op.old, op.new].into_iter().flatten() {
            if side.kind == Kind::Gitlink {
                return Err("is a nested git repository (a submodule or a repository the task created); \
                     boocoder cannot apply its contents: commit them as plain files or remove it from the task's worktree"
                    .into());
            }
        }
        let intact = self.check_parents(op, created_dirs)?;
        let target = self.root.join(OsStr::from_bytes(&op.rel));
        match op.old {
            Some(_) if !intact => return Err("deleted in the checkout".into()),
            Some(old) => self.check_preimage(&target, old)?,
            // Under a parent that is missing or about to be removed: free by construction.
            None if !intact => {}
            None => self.check_free(&op.rel, &target)?,
        }
        if let Some(new) = op.new
            && new.kind == Kind::Link
        {
            let blob = self.repo.find_blob(new.id).map_err(|e| e.to_string())?;
            if points_outside(&op.rel, blob.content()) {
                return Err(format!(
                    "is a symlink pointing outside the project (→ {}); boocoder does not apply such links",
                    String::from_utf8_lossy(blob.content())
                ));
            }
        }
        Ok(())
    }

    /// Every parent of the path must be a real directory in the checkout (or be
    /// missing, or be a file or link this change removes), so no write can be
    /// redirected through a symlink or trip over a file. Returns whether every
    /// parent is a directory now (so the path itself can be inspected).
    fn check_parents(&self, op: &Op, created_dirs: &mut BTreeSet<Vec<u8>>) -> Result<bool, String> {
        let mut missing = false;
        for prefix in parents(&op.rel) {
            if missing {
                if op.new.is_some() {
                    created_dirs.insert(prefix.to_vec());
                }
                continue;
            }
            let path = self.root.join(OsStr::from_bytes(prefix));
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    if !self.removed.contains(prefix) {
                        let what = if m.file_type().is_symlink() {
                            "a symlink"
                        } else {
                            "a file"
                        };
                        return Err(format!(
                            "its parent `{}` is {what} in the checkout",
                            shown(prefix)
                        ));
                    }
                    missing = true;
                    if op.new.is_some() {
                        created_dirs.insert(prefix.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    if op.new.is_some() {
                        created_dirs.insert(prefix.to_vec());
                    }
                }
                Err(e) => return Err(format!("cannot inspect `{}`: {e}", shown(prefix))),
            }
        }
        Ok(!missing)
    }

    fn check_preimage(&self, target: &Path, old: Entry) -> Result<(), String> {
        let Some((kind, id)) = current(target).map_err(|e| format!("cannot read it: {e}"))? else {
            return Err("deleted in the checkout".into());
        };
        if kind == Kind::Gitlink {
            return Err("is a directory in the checkout".into());
        }
        if id != old.id || (kind == Kind::Link) != (old.kind == Kind::Link) {
            return Err("modified in the checkout since the task started".into());
        }
        if self.file_mode && kind != old.kind {
            let now = if kind == Kind::Exec {
                "now executable"
            } else {
                "no longer executable"
            };
            return Err(format!(
                "its mode changed in the checkout since the task started ({now})"
            ));
        }
        Ok(())
    }

    /// A path the change creates must be free, or be a directory holding only
    /// files this change removes (a directory replaced by a file).
    fn check_free(&self, rel: &[u8], target: &Path) -> Result<(), String> {
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot inspect it: {e}")),
            Ok(m) if m.is_dir() => match self.foreign_entry(rel, target) {
                Ok(None) => Ok(()),
                Ok(Some(other)) => Err(format!(
                    "is a directory in the checkout holding `{}`, which the change does not remove",
                    shown(&other)
                )),
                Err(e) => Err(format!("cannot inspect it: {e}")),
            },
            Ok(_) => Err("already exists in the checkout".into()),
        }
    }

    fn foreign_entry(&self, rel: &[u8], dir: &Path) -> io::Result<Option<Vec<u8>>> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let mut child = rel.to_vec();
            child.push(b'/');
            child.extend_from_slice(entry.file_name().as_bytes());
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if let Some(found) = self.foreign_entry(&child, &entry.path())? {
                    return Ok(Some(found));
                }
            } else if !self.removed.contains(&child) {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }
}

/// Tree paths come from an agent's worktree: only plain components, and never
/// anything inside a `.git` directory at any depth.
fn check_path(rel: &[u8]) -> Result<(), String> {
    let path = Path::new(OsStr::from_bytes(rel));
    if rel.is_empty()
        || rel.contains(&0)
        || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err("path escapes the project root".into());
    }
    if path
        .components()
        .any(|c| c.as_os_str().eq_ignore_ascii_case(".git"))
    {
        return Err("path is inside a .git directory".into());
    }
    Ok(())
}

/// The proper prefixes of a slash-separated path, shallowest first.
fn parents(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| &rel[..i])
}

/// Whether a link at `rel` with `target` leaves the project: absolute targets
/// do, and relative ones whose `..` climb above the root.
fn points_outside(rel: &[u8], target: &[u8]) -> bool {
    if target.first() == Some(&b'/') || target.is_empty() {
        return true;
    }
    let mut depth: usize = rel.iter().filter(|b| **b == b'/').count();
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// What a checkout path holds, as git would record it. A directory is
/// reported as `Gitlink` (not a blob).
fn current(path: &Path) -> io::Result<Option<(Kind, Oid)>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let git = |e: git2::Error| io::Error::other(e.message().to_owned());
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        let id = Oid::hash_object(ObjectType::Blob, target.as_os_str().as_bytes()).map_err(git)?;
        return Ok(Some((Kind::Link, id)));
    }
    if meta.is_dir() {
        return Ok(Some((Kind::Gitlink, Oid::ZERO_SHA1)));
    }
    let kind = if meta.permissions().mode() & 0o111 != 0 {
        Kind::Exec
    } else {
        Kind::File
    };
    Ok(Some((
        kind,
        Oid::hash_file(ObjectType::Blob, path).map_err(git)?,
    )))
}

fn shown(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

fn remove_dir_if_exists(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JournalState {
    /// Writing may have started: roll back.
    Prepared,
    /// Every write landed; the change may or may not be recorded as applied.
    Written,
}

/// A path's bytes in JSON: the string itself when it is UTF-8, else hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JPath {
    Utf8(String),
    Hex(String),
}

impl JPath {
    fn from(bytes: &[u8]) -> JPath {
        match std::str::from_utf8(bytes) {
            Ok(s) => JPath::Utf8(s.to_owned()),
            Err(_) => JPath::Hex(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            JPath::Utf8(s) => s.as_bytes().to_vec(),
            JPath::Hex(h) => h
                .as_bytes()
                .chunks(2)
                .filter_map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JEntry {
    id: String,
    kind: Kind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JOp {
    path: JPath,
    old: Option<JEntry>,
    new: Option<JEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    version: u32,
    tag: String,
    /// Unique per apply: names the temp files, so no two applies (or a retry
    /// after a crash) ever share one.
    id: String,
    state: JournalState,
    ops: Vec<JOp>,
    created_dirs: Vec<JPath>,
}

impl Journal {
    fn new(tag: &str, plan: &Plan) -> Journal {
        let jentry = |e: &Entry| JEntry {
            id: e.id.to_string(),
            kind: e.kind,
        };
        Journal {
            version: 1,
            tag: tag.to_owned(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            state: JournalState::Prepared,
            ops: plan
                .ops
                .iter()
                .map(|o| JOp {
                    path: JPath::from(&o.rel),
                    old: o.old.as_ref().map(jentry),
                    new: o.new.as_ref().map(jentry),
                })
                .collect(),
            created_dirs: plan.created_dirs.iter().map(|d| JPath::from(d)).collect(),
        }
    }

    /// Durable before anything it describes happens: temp file, fsync, rename,
    /// fsync of the directory.
    fn save(&self, dir: &Path) -> Result<(), WorktreeError> {
        let bytes = serde_json::to_vec(self).map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!("{JOURNAL_FILE}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(JOURNAL_FILE))?;
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn temp_for(&self, target: &Path) -> PathBuf {
        let name = target.file_name().unwrap_or_else(|| OsStr::new("file"));
        let mut tmp = OsStr::new(".").to_os_string();
        tmp.push(name);
        tmp.push(format!(".boocoder-{}", self.id));
        target.with_file_name(tmp)
    }

    /// Keep the previous contents, remove, create directories, write. Each new
    /// file lands by rename, so no file is ever seen half-written.
    fn write(&self, root: &Path, dir: &Path, repo: &Repository) -> Result<(), WorktreeError> {
        let backups = dir.join(BACKUP_DIR);
        for (i, op) in self.ops.iter().enumerate() {
            if op.old.is_some() {
                let target = root.join(OsStr::from_bytes(&op.path.bytes()));
                keep(&target, &backups.join(i.to_string()))?;
            }
        }
        for op in &self.ops {
            if op.old.is_some() {
                let target = root.join(OsStr::from_bytes(&op.path.bytes()));
                match fs::remove_file(&target) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        for d in &self.created_dirs {
            let path = root.join(OsStr::from_bytes(&d.bytes()));
            match fs::create_dir(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
        }
        for (i, op) in self.ops.iter().enumerate() {
            let Some(new) = &op.new else { continue };
            let target = root.join(OsStr::from_bytes(&op.path.bytes()));
            let blob = repo.find_blob(Oid::from_str(&new.id)?)?;
            let tmp = self.temp_for(&target);
            let kept = op.old.as_ref().map(|_| backups.join(i.to_string()));
            stage(&tmp, blob.content(), new.kind, kept.as_deref())?;
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                // A directory replaced by a file: the check proved it holds
                // nothing but files this change removed, now gone.
                remove_empty_dirs(&target)?;
            }
            fs::rename(&tmp, &target)?;
        }
        for op in &self.ops {
            if op.old.is_some() && op.new.is_none() {
                prune_empty_parents(root, &root.join(OsStr::from_bytes(&op.path.bytes())));
            }
        }
        Ok(())
    }

    /// Put back what was there before: remove what this apply wrote (and only
    /// that), remove the directories it created, restore the kept files.
    fn roll_back(&self, root: &Path, dir: &Path) -> Result<usize, WorktreeError> {
        let backups = dir.join(BACKUP_DIR);
        let mut touched = 0;
        for op in &self.ops {
            let target = root.join(OsStr::from_bytes(&op.path.bytes()));
            match fs::remove_file(self.temp_for(&target)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            let Some(new) = &op.new else { continue };
            // Ours when it holds the content this apply wrote (the check proved
            // nothing of that content was there before, unless it was the old side).
            let ours = current(&target)?.is_some_and(|(kind, id)| {
                (kind == Kind::Link) == (new.kind == Kind::Link) && id.to_string() == new.id
            });
            if ours {
                fs::remove_file(&target)?;
                touched += 1;
            }
        }
        for d in self.created_dirs.iter().rev() {
            // why: a directory that is not empty holds something that is not ours.
            let _ = fs::remove_dir(root.join(OsStr::from_bytes(&d.bytes())));
        }
        for (i, op) in self.ops.iter().enumerate() {
            if op.old.is_none() {
                continue;
            }
            let kept = backups.join(i.to_string());
            if fs::symlink_metadata(&kept).is_err() {
                continue; // Never kept, so never touched.
            }
            let target = root.join(OsStr::from_bytes(&op.path.bytes()));
            let untouched = op.old.as_ref().is_some_and(|old| {
                current(&target)
                    .ok()
                    .flatten()
                    .is_some_and(|(kind, id)| kind == old.kind && id.to_string() == old.id)
            });
            if untouched {
                continue; // Still the old version (e.g. the write that failed was this one).
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                remove_empty_dirs(&target)?;
            }
            fs::rename(&kept, &target)?;
            touched += 1;
        }
        Ok(touched)
    }
}

/// Keep the checkout's current file at `kept`: a hard link (the apply only
/// renames over or unlinks the original, so the old inode stays intact), a
/// copy where links are not possible, the link itself for a symlink.
fn keep(target: &Path, kept: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(target)?;
    if meta.file_type().is_symlink() {
        return symlink(fs::read_link(target)?, kept);
    }
    if fs::hard_link(target, kept).is_ok() {
        return Ok(());
    }
    fs::copy(target, kept)?;
    fs::set_permissions(kept, meta.permissions())
}

/// Write a new version beside its target, with the previous version's
/// permissions (exec bit per the change) or the umask's for a new file.
fn stage(tmp: &Path, content: &[u8], kind: Kind, previous: Option<&Path>) -> io::Result<()> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if kind == Kind::Link {
        return symlink(OsStr::from_bytes(content), tmp);
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    f.write_all(content)?;
    drop(f);
    let base = match previous.map(fs::symlink_metadata) {
        Some(Ok(m)) if m.is_file() => m.permissions().mode() & 0o7777,
        _ => fs::metadata(tmp)?.permissions().mode() & 0o7777,
    };
    let mode = if kind == Kind::Exec {
        // Grant execute wherever read is granted, as git does.
        base | ((base & 0o444) >> 2)
    } else {
        base & !0o111
    };
    fs::set_permissions(tmp, fs::Permissions::from_mode(mode))
}

/// Remove a tree of empty directories; fails (touching nothing more) if any
/// file is inside.
fn remove_empty_dirs(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_dirs(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// git leaves no empty directories behind when it deletes the last file in
/// them; neither do we.
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_leaving_the_project_are_recognised() {
        assert!(points_outside(b"a", b"/etc/passwd"));
        assert!(points_outside(b"a", b"../x"));
        assert!(points_outside(b"d/a", b"../../x"));
        assert!(points_outside(b"d/a", b"x/../../../y"));
        assert!(!points_outside(b"d/a", b"../x"));
        assert!(!points_outside(b"a", b"./b/../c"));
        assert!(!points_outside(b"d/e/a", b"../../f"));
    }

    #[test]
    fn parents_are_listed_shallowest_first() {
        let got: Vec<&[u8]> = parents(b"a/b/c").collect();
        assert_eq!(got, vec![&b"a"[..], &b"a/b"[..]]);
        assert_eq!(parents(b"top").count(), 0);
    }

    #[test]
    fn journal_paths_round_trip_any_bytes() {
        for p in [&b"plain/name"[..], b"with space", b"bad\xff\xfename"] {
            let j = JPath::from(p);
            let back: JPath = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
            assert_eq!(back.bytes(), p);
        }
    }

    #[test]
    fn git_dirs_and_escapes_are_refused() {
        assert!(check_path(b"../x").is_err());
        assert!(check_path(b"/abs").is_err());
        assert!(check_path(b".git/config").is_err());
        assert!(check_path(b"sub/.GIT/hooks/pre-commit").is_err());
        assert!(check_path(b"ok/dir file").is_ok());
    }
}
