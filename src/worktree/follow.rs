//! Bringing a session's worktree to its rebased change, redoably.
//!
//! A rebase changes two things that cannot share a transaction: the store (the change's base
//! and tree, the session's base) and the worktree (its files, HEAD, index). The store is the
//! commit point; the worktree follows it and can be brought there again at any time:
//!
//! 1. `begin`: a marker naming the rebase (new base, tree before, tree after) is made durable
//!    in the worktree's git dir;
//! 2. the caller records the rebase in the store (one transaction);
//! 3. `finish`: the worktree's files go from the tree before to the tree after, HEAD and the
//!    index move to the new base, and the marker is removed.
//!
//! Whoever next touches the worktree (a turn, a snapshot, an apply, a discard, a rebase) first
//! settles a marker it finds: the store recorded the rebase → `finish` (again: every step is
//! idempotent); it did not → `abandon` (the files were never touched before step 2).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, Oid, Repository};
use serde::{Deserialize, Serialize};

use super::apply::{check_path, parents, shown};
use super::journal::{Kind, prune_empty_parents, remove_empty_dirs, stage};
use super::snapshot::move_head;
use super::{WorktreeError, open_worktree};

const MARKER: &str = "boocoder-rebase.json";
const MOVE_MESSAGE: &str = "boocoder: rebased onto the checkout";

/// A rebase whose worktree side may not be done yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebaseMarker {
    /// The session's base once the rebase is recorded.
    pub new_base: String,
    /// The change's tree before (what the worktree holds until `finish`).
    pub from_tree: String,
    /// The change's tree after (what the worktree holds after `finish`).
    pub to_tree: String,
}

fn marker_path(repo: &Repository) -> PathBuf {
    repo.path().join(MARKER)
}

/// Step 1: the marker, durable (temp file, fsync, rename, fsync of the directory).
pub fn begin_rebase(wt_path: &Path, marker: &RebaseMarker) -> Result<(), WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let path = marker_path(&repo);
    let bytes = serde_json::to_vec(marker).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    fs::File::open(repo.path())?.sync_all()?;
    Ok(())
}

/// The marker a rebase left, if any (none for a worktree that is gone).
pub fn interrupted_rebase(wt_path: &Path) -> Result<Option<RebaseMarker>, WorktreeError> {
    if !wt_path.is_dir() {
        return Ok(None);
    }
    let repo = open_worktree(wt_path)?;
    let path = marker_path(&repo);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        WorktreeError::Io(io::Error::other(format!(
            "the rebase marker {} is unreadable ({e}); remove it by hand",
            path.display()
        )))
    })
}

/// The store never recorded the rebase: drop the marker (the worktree was not touched).
pub fn abandon_rebase(wt_path: &Path) -> Result<(), WorktreeError> {
    let repo = open_worktree(wt_path)?;
    remove_marker(&repo)
}

fn remove_marker(repo: &Repository) -> Result<(), WorktreeError> {
    match fs::remove_file(marker_path(repo)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Step 3: the worktree's files from `from_tree` to `to_tree` (removals first, then writes,
/// each landing by rename), HEAD and the index to `new_base`, then the marker removed.
pub fn finish_rebase(wt_path: &Path, marker: &RebaseMarker) -> Result<(), WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let root = fs::canonicalize(wt_path)?;
    let from = repo.find_tree(Oid::from_str(&marker.from_tree)?)?;
    let to = repo.find_tree(Oid::from_str(&marker.to_tree)?)?;
    let mut opts = DiffOptions::new();
    opts.include_typechange(true);
    let diff = repo.diff_tree_to_tree(Some(&from), Some(&to), Some(&mut opts))?;
    let mut writes = Vec::new();
    for delta in diff.deltas() {
        let (old, new) = (delta.old_file(), delta.new_file());
        let Some(rel) = new.path_bytes().or(old.path_bytes()) else {
            continue;
        };
        check_path(rel).map_err(|why| refuse(rel, &why))?;
        match delta.status() {
            Delta::Deleted => remove(&root, rel)?,
            Delta::Added | Delta::Modified | Delta::Typechange => {
                writes.push((rel.to_vec(), new.id(), Kind::of(new.mode())));
            }
            _ => {}
        }
    }
    for (rel, id, kind) in writes {
        // A nested repository has no content to write; a merge never produces a new one.
        if kind != Kind::Gitlink {
            write(&repo, &root, &rel, id, kind)?;
        }
    }
    let base = repo.find_commit(Oid::from_str(&marker.new_base)?)?;
    move_head(&repo, base.id(), &base.tree()?, MOVE_MESSAGE)?;
    remove_marker(&repo)
}

fn refuse(rel: &[u8], why: &str) -> WorktreeError {
    WorktreeError::Io(io::Error::other(format!(
        "cannot bring `{}` in the worktree to the rebased change: {why}",
        shown(rel)
    )))
}

/// Whether every parent of `rel` is a real directory (`Ok(false)`: one is missing). A parent
/// that is a symlink or a file is refused: nothing is written or removed through it.
fn parents_are_dirs(root: &Path, rel: &[u8]) -> Result<bool, WorktreeError> {
    for prefix in parents(rel) {
        match fs::symlink_metadata(root.join(OsStr::from_bytes(prefix))) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refuse(
                    rel,
                    &format!("its parent `{}` is not a directory", shown(prefix)),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn remove(root: &Path, rel: &[u8]) -> Result<(), WorktreeError> {
    if !parents_are_dirs(root, rel)? {
        return Ok(());
    }
    let target = root.join(OsStr::from_bytes(rel));
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => remove_empty_dirs(&target)?,
        Ok(_) => fs::remove_file(&target)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    prune_empty_parents(root, &target);
    Ok(())
}

fn write(
    repo: &Repository,
    root: &Path,
    rel: &[u8],
    id: Oid,
    kind: Kind,
) -> Result<(), WorktreeError> {
    if !parents_are_dirs(root, rel)? {
        for prefix in parents(rel) {
            match fs::create_dir(root.join(OsStr::from_bytes(prefix))) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
        }
        // Created by us just now, or by a concurrent redo: directories either way.
        parents_are_dirs(root, rel)?;
    }
    let target = root.join(OsStr::from_bytes(rel));
    let blob = repo.find_blob(id)?;
    let name = target.file_name().unwrap_or_else(|| OsStr::new("file"));
    let mut tmp = OsStr::new(".").to_os_string();
    tmp.push(name);
    tmp.push(format!(".boocoder-{}", uuid::Uuid::new_v4().simple()));
    let tmp = target.with_file_name(tmp);
    let previous = fs::symlink_metadata(&target)
        .is_ok()
        .then_some(target.as_path());
    stage(&tmp, blob.content(), kind, previous)?;
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        // A directory replaced by a file: its files were removed above.
        if let Err(e) = remove_empty_dirs(&target) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}
