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
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{DiffOptions, Oid, Repository};

use super::journal::{BACKUP_DIR, Entry, JOURNAL_FILE, Journal, JournalState, Kind, Op, current};
use super::{
    ConflictFile, ConflictReport, FileChange, WorktreeError, open_worktree, project_root,
    remove_all,
};

const LOCK_FILE: &str = "boocoder-apply.lock";
const JOURNAL_DIR: &str = "boocoder-apply";

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

    /// Whether the checkout records the executable bit (`core.filemode`).
    pub(super) fn file_mode(&self) -> bool {
        self.file_mode
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
                remove_all(&self.journal_dir())?;
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
        remove_all(&self.journal_dir())?;
        Ok(n)
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
        let mut journal = Journal::new(tag, &plan.ops, &plan.created_dirs);
        let dir = self.journal_dir();
        remove_all(&dir)?;
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
            .and_then(|_| remove_all(&dir).map(|_| ()))
        {
            Ok(()) => cause,
            Err(e) => WorktreeError::Io(io::Error::other(format!(
                "{cause}; rolling back also failed ({e}); the journal in {} will be replayed by the next apply or start-up",
                dir.display()
            ))),
        }
    }

    /// The change (this apply's, or an interrupted one's) is recorded as applied:
    /// keep the checkout as it is, drop the journal and the kept previous contents.
    pub fn finish(&self) -> Result<(), WorktreeError> {
        remove_all(&self.journal_dir())?;
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
pub(super) fn check_path(rel: &[u8]) -> Result<(), String> {
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
pub(super) fn parents(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
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

pub(super) fn shown(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
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
    fn git_dirs_and_escapes_are_refused() {
        assert!(check_path(b"../x").is_err());
        assert!(check_path(b"/abs").is_err());
        assert!(check_path(b".git/config").is_err());
        assert!(check_path(b"sub/.GIT/hooks/pre-commit").is_err());
        assert!(check_path(b"ok/dir file").is_ok());
    }
}
