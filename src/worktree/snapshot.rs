//! What a session's worktree holds, as git objects: the tree a pending change
//! will write into the checkout, and moving the session's base to a tree that
//! was applied.
//!
//! A pending change is a pair of trees (base, target), not a text patch: the
//! patch text is only for people to read. Applying from trees writes exactly
//! the blobs the task produced, whatever their names (spaces, non-UTF-8) or
//! shapes (a directory replaced by a file), with no text round trip.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{
    Delta, DiffFormat, DiffOptions, Index, IndexAddOption, IndexEntry, IndexTime, ObjectType, Oid,
    Repository, Signature, Tree,
};

use super::{Diff, FileChange, FileStatus, WorktreeError, open_worktree};

const SIGNATURE_NAME: &str = "boocoder";
const SIGNATURE_EMAIL: &str = "boocoder@localhost";
const REBASELINE_MESSAGE: &str = "boocoder: applied pending change";

/// The worktree's content as a tree, with the reviewable diff from `base`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Id of the tree holding every file git does not ignore, as it is now.
    pub tree: String,
    pub diff: Diff,
}

/// Record the worktree's current content (tracked and untracked, not ignored)
/// as a tree in the worktree's repository and diff it against `base`. The
/// on-disk index is left as it was: the agent's staging area is its own.
pub fn snapshot(wt_path: &Path, base: &str) -> Result<Snapshot, WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let base_tree = repo.revparse_single(base)?.peel_to_commit()?.tree()?;
    let mut index = repo.index()?;
    let all = ["*"];
    // A repository nested in the worktree (one the agent created or cloned) reaches the
    // callback as "dir/"; adding it would fail the whole add ("invalid path"), skipping it
    // would drop it from the change unseen. It is recorded as a gitlink below.
    let mut nested: Vec<Vec<u8>> = Vec::new();
    let mut skip_dirs = |path: &Path, _: &[u8]| -> i32 {
        let bytes = path.as_os_str().as_bytes();
        match bytes.strip_suffix(b"/") {
            Some(dir) => {
                nested.push(dir.to_vec());
                1
            }
            None => 0,
        }
    };
    index.add_all(all, IndexAddOption::DEFAULT, Some(&mut skip_dirs))?;
    index.update_all(all, None)?;
    add_nested_repositories(&repo, &mut index, &nested)?;
    // `.worktreeinclude` files never flow back, even when the agent un-ignored or staged them.
    for path in super::include::recorded(wt_path) {
        let path = Path::new(OsStr::from_bytes(&path));
        index.remove_path(path)?;
        index.remove_dir(path, 0)?;
    }
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let diff = tree_diff(&repo, &base_tree, &tree)?;
    Ok(Snapshot {
        tree: tree_id.to_string(),
        diff,
    })
}

/// Record each repository nested in the worktree (the directories `add_all` was
/// told to skip) as a gitlink: the change then shows it, and apply refuses it by
/// name, instead of its content silently vanishing from the change.
fn add_nested_repositories(
    repo: &Repository,
    index: &mut Index,
    dirs: &[Vec<u8>],
) -> Result<(), WorktreeError> {
    let Some(workdir) = repo.workdir() else {
        return Ok(());
    };
    for dir in dirs {
        let abs = workdir.join(OsStr::from_bytes(dir));
        if fs::symlink_metadata(abs.join(".git")).is_err() {
            continue;
        }
        let id = Repository::open(&abs)
            .ok()
            .and_then(|r| r.head().ok().and_then(|h| h.target()))
            .map_or_else(|| Oid::hash_object(ObjectType::Blob, dir), Ok)?;
        let zero = IndexTime::new(0, 0);
        index.add(&IndexEntry {
            ctime: zero,
            mtime: zero,
            dev: 0,
            ino: 0,
            mode: 0o160000,
            uid: 0,
            gid: 0,
            file_size: 0,
            id,
            flags: 0,
            flags_extended: 0,
            path: dir.to_vec(),
        })?;
    }
    Ok(())
}

/// The target tree of a change stored before changes carried one: its patch
/// applied in memory to the base it was made against (an exact preimage).
pub fn tree_from_patch(wt_path: &Path, base: &str, patch: &[u8]) -> Result<String, WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let base_tree = repo.revparse_single(base)?.peel_to_commit()?.tree()?;
    if patch.is_empty() {
        return Ok(base_tree.id().to_string());
    }
    let parsed = git2::Diff::from_buffer(patch)?;
    let mut index = repo.apply_to_tree(&base_tree, &parsed, None)?;
    Ok(index.write_tree_to(&repo)?.to_string())
}

/// Patch text and per-file summary of `base` → `target`, for people and LLMs to
/// review. Full ids on the "index" lines; type changes as delete + add pairs,
/// which is how `git apply` expects them.
pub(super) fn tree_diff(
    repo: &Repository,
    base: &Tree<'_>,
    target: &Tree<'_>,
) -> Result<Diff, WorktreeError> {
    let mut opts = DiffOptions::new();
    opts.show_binary(true)
        .include_typechange(false)
        .id_abbrev(40);
    let gdiff = repo.diff_tree_to_tree(Some(base), Some(target), Some(&mut opts))?;
    let mut patch = Vec::new();
    gdiff.print(DiffFormat::Patch, |_, _, line| {
        // libgit2 hands content lines without their prefix; the EOF-newline
        // markers ('=', '>', '<') already carry "\n\\ No newline..." text.
        let origin = line.origin();
        if matches!(origin, '+' | '-' | ' ') {
            patch.push(origin as u8);
        }
        patch.extend_from_slice(line.content());
        true
    })?;
    let files = file_changes(&gdiff)?;
    Ok(Diff { patch, files })
}

/// Make `tree` (a change that was just applied) the session's new base: a
/// commit of exactly that tree on top of `base`. Only what was applied enters
/// the base; edits the worktree holds beyond it stay visible to the next diff.
/// HEAD (its branch, or HEAD itself when detached) moves to the new commit and
/// the index is set to the tree, keeping its stat cache for unchanged files.
pub fn rebaseline(wt_path: &Path, base: &str, tree: &str) -> Result<String, WorktreeError> {
    let repo = open_worktree(wt_path)?;
    let parent = repo.revparse_single(base)?.peel_to_commit()?;
    let tree = repo.find_tree(Oid::from_str(tree)?)?;
    let id = commit_on(&repo, &parent, &tree, REBASELINE_MESSAGE)?;
    move_head(&repo, id, &tree, REBASELINE_MESSAGE)?;
    Ok(id.to_string())
}

/// A commit of `tree` on top of `parent` (`parent` itself when it already holds that tree),
/// referenced by nothing yet.
pub(super) fn commit_on(
    repo: &Repository,
    parent: &git2::Commit<'_>,
    tree: &Tree<'_>,
    message: &str,
) -> Result<Oid, WorktreeError> {
    if parent.tree_id() == tree.id() {
        return Ok(parent.id());
    }
    let sig = Signature::now(SIGNATURE_NAME, SIGNATURE_EMAIL)?;
    Ok(repo.commit(None, &sig, &sig, message, tree, &[parent])?)
}

/// HEAD (its branch, or HEAD itself when detached) to the commit `id`, and the index to its
/// `tree`, keeping the index's stat cache for unchanged files.
pub(super) fn move_head(
    repo: &Repository,
    id: Oid,
    tree: &Tree<'_>,
    message: &str,
) -> Result<(), WorktreeError> {
    let head = repo.find_reference("HEAD")?;
    match head.symbolic_target()? {
        Some(branch) => {
            repo.reference(branch, id, true, message)?;
        }
        None => repo.set_head_detached(id)?,
    }
    let mut index = repo.index()?;
    index.read_tree(tree)?;
    index.write()?;
    Ok(())
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

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn path_string(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}
