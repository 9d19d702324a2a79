//! Applying a pending change to the user's checkout. This is the only code
//! that writes into the user's own files, so it owns the strictness rules:
//! every touched path must be inside the project and exactly at its base
//! version, and nothing is written until the whole patch is known to apply.
//!
//! libgit2's `apply` to the work dir reads a symlink's preimage through the
//! link (it hashes the target file's content), so it cannot delete or change
//! a tracked symlink. The patch is therefore applied in memory with
//! `apply_to_tree` against a tree built from the checkout's current content,
//! and the resulting files are written here.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use git2::{
    ApplyOptions, Delta, DiffDelta, FileMode, Index, IndexEntry, IndexTime, Oid, Repository,
};

use super::{
    ConflictFile, ConflictReport, FileChange, WorktreeError, file_changes, guard, path_string,
    project_root,
};

const MODE_LINK: u32 = 0o120000;
const MODE_EXEC: u32 = 0o100755;
const MODE_GITLINK: u32 = 0o160000;

/// Apply `patch` (produced by `diff`) to the project's working directory.
/// Strict, so the user's own edits are never merged over or lost; atomic in
/// the sense that every check and the whole in-memory application succeed
/// before the first byte is written. Only an I/O failure while writing can
/// leave a partial result.
pub fn apply(
    project: &Path,
    patch: &[u8],
    dry_run: bool,
) -> Result<Vec<FileChange>, WorktreeError> {
    let root = project_root(project)?;
    let repo = Repository::open(&root)?;
    let parsed = git2::Diff::from_buffer(patch)?;
    let files = file_changes(&parsed)?;
    let plan = plan(&repo, &root, &parsed)?;
    if !dry_run {
        execute(&root, plan)?;
    }
    Ok(files)
}

struct Write {
    target: PathBuf,
    content: Vec<u8>,
    mode: u32,
}

struct Plan {
    removals: Vec<PathBuf>,
    writes: Vec<Write>,
}

fn conflict(path: &str, reason: &str) -> ConflictFile {
    ConflictFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn creates(status: Delta) -> bool {
    matches!(status, Delta::Added | Delta::Untracked | Delta::Copied)
}

fn plan(repo: &Repository, root: &Path, diff: &git2::Diff<'_>) -> Result<Plan, WorktreeError> {
    // Paths this patch removes may be re-added by it (a type change).
    let vacated: HashSet<String> = diff
        .deltas()
        .filter(|d| matches!(d.status(), Delta::Deleted | Delta::Renamed))
        .filter_map(|d| path_string(d.old_file().path_bytes()))
        .collect();

    let mut conflicts = Vec::new();
    let mut targets: BTreeMap<String, PathBuf> = BTreeMap::new();
    for delta in diff.deltas() {
        check_delta(root, &delta, &vacated, &mut targets, &mut conflicts);
    }
    if !conflicts.is_empty() {
        return Err(WorktreeError::Conflict(ConflictReport { files: conflicts }));
    }

    let preimage = preimage_tree(repo, diff, &targets)?;
    let postimage = apply_in_memory(repo, &preimage, diff)?;

    let mut plan = Plan {
        removals: Vec::new(),
        writes: Vec::new(),
    };
    for delta in diff.deltas() {
        let old = path_string(delta.old_file().path_bytes());
        let new = path_string(delta.new_file().path_bytes());
        let status = delta.status();
        if let (Some(old), true) = (&old, status == Delta::Deleted || status == Delta::Renamed)
            && let Some(target) = targets.get(old)
        {
            plan.removals.push(target.clone());
        }
        if status == Delta::Deleted {
            continue;
        }
        let (Some(new), Some(target)) = (&new, new.as_ref().and_then(|n| targets.get(n))) else {
            continue;
        };
        let Some(entry) = postimage.get_path(Path::new(new), 0) else {
            return Err(WorktreeError::Conflict(ConflictReport {
                files: vec![conflict(new, "patch produced no content for this path")],
            }));
        };
        if entry.mode == MODE_GITLINK {
            continue; // Submodule pointers have no file content to write.
        }
        let content = repo.find_blob(entry.id)?.content().to_vec();
        plan.writes.push(Write {
            target: target.clone(),
            content,
            mode: entry.mode,
        });
    }
    Ok(plan)
}

/// Check one delta's paths and preimage, recording the guarded target path
/// of every path it touches.
fn check_delta(
    root: &Path,
    delta: &DiffDelta<'_>,
    vacated: &HashSet<String>,
    targets: &mut BTreeMap<String, PathBuf>,
    out: &mut Vec<ConflictFile>,
) {
    let status = delta.status();
    let old = delta.old_file();
    let old_path = path_string(old.path_bytes());
    let new_path = path_string(delta.new_file().path_bytes());
    let Some(any_path) = new_path.clone().or_else(|| old_path.clone()) else {
        return out.push(conflict("<unknown>", "patch entry has no path"));
    };
    let old_path = old_path.unwrap_or_else(|| any_path.clone());
    let new_path = new_path.unwrap_or_else(|| any_path.clone());

    for p in [&old_path, &new_path] {
        match safe_target(root, p) {
            Ok(target) => {
                targets.insert(p.clone(), target);
            }
            Err(reason) => return out.push(conflict(p, &reason)),
        }
    }

    if !creates(status) {
        match checkout_blob_id(&root.join(&old_path)) {
            Ok(None) => out.push(conflict(&old_path, "deleted in the checkout")),
            Ok(Some(have)) if matches_preimage(old.id(), have) => {}
            Ok(Some(_)) | Err(_) => out.push(conflict(
                &old_path,
                "modified in the checkout since the task started",
            )),
        }
    }
    let moves = status == Delta::Renamed && old_path != new_path;
    if (creates(status) && !vacated.contains(&new_path) || moves)
        && fs::symlink_metadata(root.join(&new_path)).is_ok()
    {
        out.push(conflict(&new_path, "already exists in the checkout"));
    }
}

/// Patch paths come from an agent's worktree; make sure neither `..`, an
/// absolute path, a symlinked parent directory nor `.git` can redirect the
/// write. The final component itself may be a symlink (the patch may be
/// replacing it), so only the parent is resolved.
fn safe_target(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let escape = || "path escapes the project root".to_owned();
    let path = Path::new(rel);
    if rel.is_empty() || rel.contains('\0') {
        return Err(escape());
    }
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(escape());
    }
    if path
        .components()
        .next()
        .is_some_and(|c| c.as_os_str().eq_ignore_ascii_case(".git"))
    {
        return Err("path is inside the repository's .git directory".to_owned());
    }
    let Some(name) = path.file_name() else {
        return Err(escape());
    };
    let parent = match path.parent().and_then(Path::to_str) {
        Some("") | None => fs::canonicalize(root).map_err(|e| e.to_string())?,
        Some(parent) => guard::resolve(root, parent).map_err(|e| match e {
            guard::PathError::Io { source, .. } => source.to_string(),
            _ => escape(),
        })?,
    };
    Ok(parent.join(name))
}

/// Current content of a checkout path as git would store it: symlinks by
/// their target text. `None` when nothing is there.
fn checkout_content(path: &Path) -> io::Result<Option<(Vec<u8>, u32)>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        return Ok(Some((target.as_os_str().as_bytes().to_vec(), MODE_LINK)));
    }
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        MODE_EXEC
    } else {
        u32::from(FileMode::Blob)
    };
    Ok(Some((fs::read(path)?, mode)))
}

fn checkout_blob_id(path: &Path) -> Result<Option<Oid>, WorktreeError> {
    match checkout_content(path)? {
        Some((bytes, _)) => Ok(Some(Oid::hash_object(git2::ObjectType::Blob, &bytes)?)),
        None => Ok(None),
    }
}

/// Patches from `diff` carry full ids; a hand-made patch may carry an
/// abbreviated one, which libgit2 parses zero-padded. A zero id (e.g. a
/// mode-only change has no "index" line) means there is nothing to compare.
fn matches_preimage(expected: Oid, have: Oid) -> bool {
    let want = expected.to_string();
    let prefix = want.trim_end_matches('0');
    prefix.is_empty() || have.to_string().starts_with(prefix)
}

/// A tree holding exactly the checkout's current version of every path the
/// patch reads. The checks above proved these equal the patch's preimages.
fn preimage_tree<'r>(
    repo: &'r Repository,
    diff: &git2::Diff<'_>,
    targets: &BTreeMap<String, PathBuf>,
) -> Result<git2::Tree<'r>, WorktreeError> {
    let mut index = Index::new()?;
    for delta in diff.deltas() {
        if creates(delta.status()) {
            continue;
        }
        let Some(old) = path_string(delta.old_file().path_bytes()) else {
            continue;
        };
        let Some((content, mode)) = targets
            .get(&old)
            .map(|t| checkout_content(t))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        let zero = IndexTime::new(0, 0);
        index.add(&IndexEntry {
            ctime: zero,
            mtime: zero,
            dev: 0,
            ino: 0,
            mode,
            uid: 0,
            gid: 0,
            file_size: u32::try_from(content.len()).unwrap_or(u32::MAX),
            id: repo.blob(&content)?,
            flags: 0,
            flags_extended: 0,
            path: old.into_bytes(),
        })?;
    }
    let tree_id = index.write_tree_to(repo)?;
    Ok(repo.find_tree(tree_id)?)
}

fn apply_in_memory(
    repo: &Repository,
    preimage: &git2::Tree<'_>,
    diff: &git2::Diff<'_>,
) -> Result<Index, WorktreeError> {
    let mut last: Option<String> = None;
    let result = {
        let mut opts = ApplyOptions::new();
        opts.delta_callback(|delta| {
            if let Some(d) = delta {
                last = path_string(d.new_file().path_bytes().or(d.old_file().path_bytes()));
            }
            true
        });
        repo.apply_to_tree(preimage, diff, Some(&mut opts))
    };
    result.map_err(|e| {
        // libgit2 stops at the failing delta, so the last one visited names it.
        WorktreeError::Conflict(ConflictReport {
            files: vec![conflict(
                last.as_deref().unwrap_or("<unknown>"),
                &format!("patch does not apply: {}", e.message()),
            )],
        })
    })
}

/// Removals first, so a path that changes type or a file that becomes a
/// directory is free before it is written. Each write lands via a rename so
/// no file is ever seen half-written.
fn execute(root: &Path, plan: Plan) -> Result<(), WorktreeError> {
    for path in &plan.removals {
        match fs::remove_file(path) {
            Ok(()) => prune_empty_parents(root, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    for write in plan.writes {
        let (Some(parent), Some(name)) = (write.target.parent(), write.target.file_name()) else {
            continue;
        };
        fs::create_dir_all(parent)?;
        let mut tmp_name = OsStr::new(".").to_os_string();
        tmp_name.push(name);
        tmp_name.push(".boocoder-tmp");
        let tmp = parent.join(tmp_name);
        let _ = fs::remove_file(&tmp);
        if write.mode == MODE_LINK {
            symlink(OsStr::from_bytes(&write.content), &tmp)?;
        } else {
            fs::write(&tmp, &write.content)?;
            let mut perms = fs::metadata(&tmp)?.permissions();
            let mode = perms.mode();
            let exec = if write.mode == MODE_EXEC {
                // Grant execute wherever read is granted, as git does.
                mode | ((mode & 0o444) >> 2)
            } else {
                mode & !0o111
            };
            perms.set_mode(exec);
            fs::set_permissions(&tmp, perms)?;
        }
        if let Err(e) = fs::rename(&tmp, &write.target) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    Ok(())
}

/// git apply leaves no empty directories behind when it deletes the last
/// file in them; neither do we.
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
