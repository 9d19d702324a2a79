//! The apply journal: what an apply is about to do to the checkout, made durable
//! before it starts, with the previous contents kept beside it, so that an apply
//! interrupted at any instruction can be rolled back by whoever comes next.
//!
//! Kept previous contents are hard links to the original inodes (an apply only
//! renames over or unlinks a checkout file, never writes into it), so keeping
//! them costs no copy. Durability is against a killed process: the journal is
//! fsynced; the files it describes are not (a power cut may lose them, as it may
//! lose any recent write).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use git2::{FileMode, ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};

use super::WorktreeError;

pub(super) const JOURNAL_FILE: &str = "journal.json";
pub(super) const BACKUP_DIR: &str = "backup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    File,
    Exec,
    Link,
    /// A nested repository (submodule pointer): no file content to write.
    Gitlink,
}

impl Kind {
    pub(super) fn of(mode: FileMode) -> Kind {
        match mode {
            FileMode::BlobExecutable => Kind::Exec,
            FileMode::Link => Kind::Link,
            FileMode::Commit => Kind::Gitlink,
            _ => Kind::File,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) id: Oid,
    pub(super) kind: Kind,
}

/// One path of a change: what the checkout holds there now (verified equal to
/// the change's base) and what the change puts there.
#[derive(Debug)]
pub(super) struct Op {
    pub(super) rel: Vec<u8>,
    pub(super) old: Option<Entry>,
    pub(super) new: Option<Entry>,
}

/// What a checkout path holds, as git would record it. A directory is
/// reported as `Gitlink` (not a blob).
pub(super) fn current(path: &Path) -> io::Result<Option<(Kind, Oid)>> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum JournalState {
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
pub(super) struct Journal {
    version: u32,
    pub(super) tag: String,
    /// Unique per apply: names the temp files, so no two applies (or a retry
    /// after a crash) ever share one.
    id: String,
    pub(super) state: JournalState,
    ops: Vec<JOp>,
    created_dirs: Vec<JPath>,
}

impl Journal {
    pub(super) fn new(tag: &str, ops: &[Op], created_dirs: &[Vec<u8>]) -> Journal {
        let jentry = |e: &Entry| JEntry {
            id: e.id.to_string(),
            kind: e.kind,
        };
        Journal {
            version: 1,
            tag: tag.to_owned(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            state: JournalState::Prepared,
            ops: ops
                .iter()
                .map(|o| JOp {
                    path: JPath::from(&o.rel),
                    old: o.old.as_ref().map(jentry),
                    new: o.new.as_ref().map(jentry),
                })
                .collect(),
            created_dirs: created_dirs.iter().map(|d| JPath::from(d)).collect(),
        }
    }

    /// Durable before anything it describes happens: temp file, fsync, rename,
    /// fsync of the directory.
    pub(super) fn save(&self, dir: &Path) -> Result<(), WorktreeError> {
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
    pub(super) fn write(
        &self,
        root: &Path,
        dir: &Path,
        repo: &Repository,
    ) -> Result<(), WorktreeError> {
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
    pub(super) fn roll_back(&self, root: &Path, dir: &Path) -> Result<usize, WorktreeError> {
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
pub(super) fn stage(
    tmp: &Path,
    content: &[u8],
    kind: Kind,
    previous: Option<&Path>,
) -> io::Result<()> {
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
pub(super) fn remove_empty_dirs(dir: &Path) -> io::Result<()> {
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
pub(super) fn prune_empty_parents(root: &Path, path: &Path) {
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
    fn journal_paths_round_trip_any_bytes() {
        for p in [&b"plain/name"[..], b"with space", b"bad\xff\xfename"] {
            let j = JPath::from(p);
            let back: JPath = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
            assert_eq!(back.bytes(), p);
        }
    }
}
