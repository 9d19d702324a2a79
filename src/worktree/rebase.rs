//! Rebasing a pending change onto the checkout as it is now, for a change that no longer
//! applies: a three-way merge of the change with the checkout's current content of the paths
//! it touches. Nothing here writes to the checkout or the worktree's files; the only writes
//! are git objects in the worktree's repository (blobs, trees, one commit), which nothing
//! references until the caller records them.
//!
//! Three trees, all in the session's worktree repository:
//! - base `B`: what the change was made against (the session's base commit);
//! - ours `C`: `B` with every path the change touches replaced by what the checkout holds
//!   there now, read under the checkout's lock exactly as an apply's preimage check reads it;
//! - theirs `T`: the change's tree.
//!
//! `M = merge(B; C, T)`. On success `C` becomes the change's base (a commit on top of `B`) and
//! `M` its tree: the change is then `C → M`, whose preimages are what the checkout holds now.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use git2::{
    Delta, DiffOptions, FileMode, Index, IndexConflict, IndexEntry, IndexTime, Oid, Repository,
    Tree,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::apply::{check_path, parents, shown};
use super::hunks::{ConflictHunk, conflicting};
use super::snapshot::{commit_on, tree_diff};
use super::{ChangeTrees, CheckoutLock, Diff, WorktreeError, open_worktree};

const REBASE_MESSAGE: &str = "boocoder: the checkout's state of the pending change's files";

/// A rebased change: its new base commit (the checkout's state of its files), its merged
/// tree, and the review diff between them.
#[derive(Debug, Clone)]
pub struct Rebased {
    pub base: String,
    pub tree: String,
    pub diff: Diff,
}

#[derive(Debug, Clone)]
pub enum Rebase {
    Merged(Rebased),
    /// Nothing was merged; each file says why.
    Conflicts(Vec<MergeConflict>),
}

/// A file the merge could not settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MergeConflict {
    pub path: String,
    pub reason: String,
    /// For text files changed on both sides: the regions both changed, with each side's lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hunks: Vec<ConflictHunk>,
}

impl CheckoutLock {
    /// Merge the change onto the checkout's current state of its files. A merge the strict
    /// apply check would still refuse (a parent replaced by a symlink, a file the merge cannot
    /// write) is reported as a conflict too, so `Merged` means the change now applies.
    pub fn rebase(&self, change: ChangeTrees<'_>) -> Result<Rebase, WorktreeError> {
        let repo = open_worktree(change.worktree)?;
        let base_commit = repo.revparse_single(change.base)?.peel_to_commit()?;
        let base = base_commit.tree()?;
        let theirs = repo.find_tree(Oid::from_str(change.tree)?)?;
        let ours = match self.checkout_tree(&repo, &base, &theirs)? {
            Ok(tree) => tree,
            Err(refused) => return Ok(Rebase::Conflicts(refused)),
        };
        let mut index = repo.merge_trees(&base, &ours, &theirs, None)?;
        if index.has_conflicts() {
            return Ok(Rebase::Conflicts(describe(&repo, &index)?));
        }
        let merged = repo.find_tree(index.write_tree_to(&repo)?)?;
        let new_base = commit_on(&repo, &base_commit, &ours, REBASE_MESSAGE)?;
        let rebased = Rebased {
            base: new_base.to_string(),
            tree: merged.id().to_string(),
            diff: tree_diff(&repo, &ours, &merged)?,
        };
        let check = self.check(ChangeTrees {
            worktree: change.worktree,
            base: &rebased.base,
            tree: &rebased.tree,
        });
        match check {
            Ok(_) => Ok(Rebase::Merged(rebased)),
            Err(WorktreeError::Conflict(report)) => Ok(Rebase::Conflicts(
                report
                    .files
                    .into_iter()
                    .map(|f| MergeConflict {
                        path: f.path,
                        reason: format!("merged, but still refused: {}", f.reason),
                        hunks: Vec::new(),
                    })
                    .collect(),
            )),
            Err(e) => Err(e),
        }
    }

    /// `C`: the base tree with each path the change touches as the checkout holds it now, or
    /// the paths whose state in the checkout cannot be taken as a file (`Err`).
    fn checkout_tree<'r>(
        &self,
        repo: &'r Repository,
        base: &Tree<'_>,
        theirs: &Tree<'_>,
    ) -> Result<Result<Tree<'r>, Vec<MergeConflict>>, WorktreeError> {
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let diff = repo.diff_tree_to_tree(Some(base), Some(theirs), Some(&mut opts))?;
        let mut index = Index::new()?;
        index.read_tree(base)?;
        let mut refused = Vec::new();
        for delta in diff.deltas() {
            let (old, new) = (delta.old_file(), delta.new_file());
            let Some(rel) = new.path_bytes().or(old.path_bytes()) else {
                continue;
            };
            let base_mode = (delta.status() != Delta::Added).then(|| old.mode());
            match self.read_path(repo, rel, base_mode) {
                Ok(Some(entry)) => index.add(&entry)?,
                Ok(None) if base_mode.is_some() => {
                    index.remove(Path::new(OsStr::from_bytes(rel)), 0)?
                }
                Ok(None) => {}
                Err(reason) => refused.push(MergeConflict {
                    path: shown(rel),
                    reason,
                    hunks: Vec::new(),
                }),
            }
        }
        if !refused.is_empty() {
            return Ok(Err(refused));
        }
        let id = index.write_tree_to(repo)?;
        Ok(Ok(repo.find_tree(id)?))
    }

    /// What the checkout holds at `rel` as an index entry (its content written as a blob), or
    /// `None` when nothing is there. A path under something that is not a directory holds
    /// nothing (nothing is read through a symlink); a directory cannot be merged as a file.
    fn read_path(
        &self,
        repo: &Repository,
        rel: &[u8],
        base_mode: Option<FileMode>,
    ) -> Result<Option<IndexEntry>, String> {
        check_path(rel)?;
        for prefix in parents(rel) {
            match fs::symlink_metadata(self.root().join(OsStr::from_bytes(prefix))) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("cannot inspect `{}`: {e}", shown(prefix))),
            }
        }
        let path = self.root().join(OsStr::from_bytes(rel));
        let cannot = |e: io::Error| format!("cannot read it in the checkout: {e}");
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cannot(e)),
        };
        let (content, mode) = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(cannot)?;
            (target.as_os_str().as_bytes().to_vec(), FileMode::Link)
        } else if meta.is_dir() {
            return Err("is a directory in the checkout".into());
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mode = match base_mode {
                // Without core.filemode the checkout's bits mean nothing: keep the base's.
                Some(m @ (FileMode::Blob | FileMode::BlobExecutable)) if !self.file_mode() => m,
                _ if exec => FileMode::BlobExecutable,
                _ => FileMode::Blob,
            };
            (fs::read(&path).map_err(cannot)?, mode)
        };
        let id = repo.blob(&content).map_err(|e| e.message().to_owned())?;
        Ok(Some(entry(rel, id, mode)))
    }
}

fn entry(rel: &[u8], id: Oid, mode: FileMode) -> IndexEntry {
    let zero = IndexTime::new(0, 0);
    IndexEntry {
        ctime: zero,
        mtime: zero,
        dev: 0,
        ino: 0,
        mode: u32::from(mode),
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: rel.to_vec(),
    }
}

/// Each conflict of a merge, with the hunks of text files changed on both sides.
fn describe(repo: &Repository, index: &Index) -> Result<Vec<MergeConflict>, WorktreeError> {
    let mut out = Vec::new();
    for conflict in index.conflicts()? {
        let conflict = conflict?;
        let path = [&conflict.their, &conflict.our, &conflict.ancestor]
            .into_iter()
            .find_map(|e| e.as_ref().map(|e| shown(&e.path)))
            .unwrap_or_default();
        let (reason, hunks) = explain(repo, &conflict)?;
        out.push(MergeConflict {
            path,
            reason: reason.into(),
            hunks,
        });
    }
    Ok(out)
}

fn explain(
    repo: &Repository,
    c: &IndexConflict,
) -> Result<(&'static str, Vec<ConflictHunk>), WorktreeError> {
    let (ours, theirs) = match (&c.our, &c.their) {
        (None, Some(_)) => return Ok(("deleted in the checkout; the session changed it", vec![])),
        (Some(_), None) => return Ok(("changed in the checkout; the session deleted it", vec![])),
        (None, None) => return Ok(("changed on both sides", vec![])),
        (Some(o), Some(t)) => (o, t),
    };
    let text = |e: &IndexEntry| {
        e.mode == u32::from(FileMode::Blob) || e.mode == u32::from(FileMode::BlobExecutable)
    };
    let ancestor = c.ancestor.as_ref();
    if !text(ours) || !text(theirs) || ancestor.is_some_and(|a| !text(a)) {
        return Ok((
            "changed on both sides (a link or a nested repository)",
            vec![],
        ));
    }
    let blob = |e: &IndexEntry| repo.find_blob(e.id);
    let (o, t) = (blob(ours)?, blob(theirs)?);
    let a = ancestor.map(blob).transpose()?;
    if o.is_binary() || t.is_binary() || a.as_ref().is_some_and(|a| a.is_binary()) {
        return Ok(("binary file changed on both sides", vec![]));
    }
    let base = a.as_ref().map_or(&[][..], |a| a.content());
    let hunks = conflicting(base, o.content(), t.content())?;
    let reason = if a.is_some() {
        "changed on both sides"
    } else {
        "added on both sides with different contents"
    };
    Ok((reason, hunks))
}
