//! Tests for the worktree module against real repositories in temp dirs; the
//! git CLI is used only to build fixtures and to cross-check patches.

mod bring;
mod include;
mod lifecycle;
mod pool;
mod rebase;
mod refusals;
mod round_trip;

use super::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(["-c", "init.defaultBranch=main", "-c", "core.autocrlf=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const BIN: &[u8] = &[0, 1, 2, 3, 255, 254, 0, 0, 7, 8, 9, 10, 0, 42];

struct Fx {
    dir: tempfile::TempDir,
    project: PathBuf,
    wt: PathBuf,
    branch: String,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let project = fs::canonicalize(dir.path()).unwrap().join("project");
        fs::create_dir_all(project.join("src")).unwrap();
        fs::write(project.join("a.txt"), "one\ntwo\nthree\nfour\nfive\n").unwrap();
        fs::write(project.join("del.txt"), "to be deleted\n").unwrap();
        fs::write(project.join("noeol.txt"), "first\nlast without newline").unwrap();
        fs::write(project.join("src/lib.rs"), "fn main() {}\n").unwrap();
        fs::write(project.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::write(project.join("bin.dat"), BIN).unwrap();
        fs::write(project.join("gains-eol.txt"), "x\ny").unwrap();
        fs::write(project.join("loses-eol.txt"), "x\ny\n").unwrap();
        fs::write(project.join(".gitignore"), "*.log\ntarget/\n").unwrap();
        git(&project, &["init", "-q"]);
        git(&project, &["add", "-A"]);
        git(&project, &["commit", "-q", "-m", "init"]);
        let wt = project.parent().unwrap().join("wts/task-1");
        Fx {
            dir,
            project,
            wt,
            branch: "boocoder/task-1".to_owned(),
        }
    }

    fn create(&self) -> WorktreeInfo {
        create(&self.project, &self.wt, &self.branch).unwrap()
    }

    fn head(&self) -> String {
        git(&self.project, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

/// Every non-.git file under `dir`, with symlinks recorded by target.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() == ".git" {
                continue;
            }
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, (target.as_os_str().as_bytes().to_vec(), 0o120000));
            } else if meta.is_dir() {
                walk(base, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o111;
                out.insert(rel, (fs::read(&path).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn find<'a>(files: &'a [FileChange], path: &str) -> &'a FileChange {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in {files:?}"))
}

fn conflict_of(err: WorktreeError) -> ConflictReport {
    match err {
        WorktreeError::Conflict(report) => report,
        other => panic!("expected conflict, got {other:?}"),
    }
}

/// A worktree's pending change as the engine queues it: its snapshot tree and
/// the diff shown for review.
#[derive(Debug)]
struct Pending {
    wt: PathBuf,
    base: String,
    snap: Snapshot,
}

impl std::ops::Deref for Pending {
    type Target = Diff;
    fn deref(&self) -> &Diff {
        &self.snap.diff
    }
}

fn diff(wt: &Path, base: &str) -> Result<Pending, WorktreeError> {
    Ok(Pending {
        wt: wt.to_path_buf(),
        base: base.to_owned(),
        snap: super::snapshot(wt, base)?,
    })
}

fn trees(d: &Pending) -> ChangeTrees<'_> {
    ChangeTrees {
        worktree: &d.wt,
        base: &d.base,
        tree: &d.snap.tree,
    }
}

/// What the engine does: lock, check or journal + write, finish.
fn apply(project: &Path, d: &Pending, dry_run: bool) -> Result<Vec<FileChange>, WorktreeError> {
    let lock = CheckoutLock::acquire(project, std::time::Duration::from_secs(5))?;
    if dry_run {
        return lock.check(trees(d));
    }
    let files = lock.apply(trees(d), "test")?;
    lock.finish()?;
    Ok(files)
}

/// The base after applying `d`.
fn rebaseline_to(d: &Pending) -> String {
    rebaseline(&d.wt, &d.base, &d.snap.tree).unwrap()
}

/// `git apply --check --binary` in a fresh clone at `base`.
fn git_apply_check(fx: &Fx, patch: &[u8], base: &str) {
    let clone = fx.dir.path().join(format!("clone-{base}"));
    let clone_s = clone.to_str().unwrap();
    git(&fx.project, &["clone", "-q", ".", clone_s]);
    git(&clone, &["checkout", "-q", base]);
    let patch_file = fx.dir.path().join("check.patch");
    fs::write(&patch_file, patch).unwrap();
    git(
        &clone,
        &["apply", "--check", "--binary", patch_file.to_str().unwrap()],
    );
    git(&clone, &["apply", "--binary", patch_file.to_str().unwrap()]);
    let mut expected = snapshot(&fx.wt);
    expected.retain(|path, _| !path.ends_with(".log") && !path.starts_with("target/"));
    assert_eq!(snapshot(&clone), expected, "git apply result differs");
}
