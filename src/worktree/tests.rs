//! Tests for the worktree module against real repositories in temp dirs; the
//! git CLI is used only to build fixtures and to cross-check patches.

use super::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
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

#[test]
fn project_root_reports_repo_problems() {
    let fx = Fx::new();
    assert_eq!(project_root(&fx.project.join("src")).unwrap(), fx.project);

    let plain = fx.dir.path().join("plain");
    fs::create_dir_all(&plain).unwrap();
    let err = project_root(&plain).unwrap_err();
    assert!(matches!(err, WorktreeError::NotARepo { .. }), "{err:?}");

    let empty = fx.dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    let err = project_root(&empty).unwrap_err();
    assert!(matches!(err, WorktreeError::NoCommits { .. }), "{err:?}");

    let bare = fx.dir.path().join("bare.git");
    fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let err = project_root(&bare).unwrap_err();
    assert!(matches!(err, WorktreeError::BareRepo { .. }), "{err:?}");
}

#[test]
fn create_checks_out_head_on_new_branch() {
    let fx = Fx::new();
    let marker = fx.dir.path().join("hook-ran");
    let hook = fx.project.join(".git/hooks/post-checkout");
    fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let info = fx.create();
    assert!(!marker.exists(), "the user's hooks do not run");
    assert_eq!(info.path, fx.wt);
    assert_eq!(info.base_commit, fx.head());
    assert_eq!(info.branch, fx.branch);
    assert_eq!(snapshot(&fx.wt), snapshot(&fx.project));
    assert_eq!(
        git(&fx.wt, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/boocoder/task-1"
    );
    // A repository of its own, borrowing the project's objects; the project only gains the
    // hidden ref that keeps the base commit from its gc (no registration, no branch).
    assert!(fx.wt.join(".git").is_dir());
    assert_eq!(
        fs::read_to_string(fx.wt.join(".git/objects/info/alternates")).unwrap(),
        format!("{}\n", fx.project.join(".git/objects").display())
    );
    assert!(!fx.project.join(".git/worktrees/task-1").exists());
    assert!(git(&fx.project, &["branch", "--list", &fx.branch]).is_empty());
    assert_eq!(
        git(&fx.project, &["rev-parse", "refs/boocoder/task-1"]).trim(),
        fx.head()
    );
    let hooks: Vec<_> = fs::read_dir(fx.wt.join(".git/hooks"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        hooks
            .iter()
            .all(|h| h.to_string_lossy().ends_with(".sample")),
        "no hooks copied: {hooks:?}"
    );
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
    // The project checkout itself stays on its branch.
    assert_eq!(
        git(&fx.project, &["branch", "--show-current"]).trim(),
        "main"
    );
}

#[test]
fn diff_covers_every_kind_of_change_and_applies_byte_for_byte() {
    let fx = Fx::new();
    let info = fx.create();
    let wt = &fx.wt;
    fs::write(wt.join("a.txt"), "one\nTWO\nthree\nfour\nfive\nsix\n").unwrap();
    fs::remove_file(wt.join("del.txt")).unwrap();
    fs::create_dir_all(wt.join("nested/deep")).unwrap();
    fs::write(wt.join("nested/deep/new.txt"), "hello\nworld\n").unwrap();
    fs::write(wt.join("nested/.hidden"), "dot\n").unwrap();
    fs::write(wt.join("bin2.dat"), [9u8, 0, 9, 0, 1]).unwrap();
    let mut bin = BIN.to_vec();
    bin.extend_from_slice(&[0, 0, 5]);
    fs::write(wt.join("bin.dat"), &bin).unwrap();
    fs::write(
        wt.join("noeol.txt"),
        "first\nchanged last, still no newline",
    )
    .unwrap();
    fs::write(wt.join("new-noeol.txt"), "no newline here").unwrap();
    fs::write(wt.join("gains-eol.txt"), "x\ny\n").unwrap();
    fs::write(wt.join("loses-eol.txt"), "x\ny").unwrap();
    fs::write(wt.join("src/lib.rs"), "fn main() { staged(); }\n").unwrap();
    git(wt, &["add", "src/lib.rs"]);
    fs::write(wt.join("debug.log"), "ignored\n").unwrap();
    fs::create_dir_all(wt.join("target")).unwrap();
    fs::write(wt.join("target/out"), "ignored\n").unwrap();

    let d = diff(wt, &info.base_commit).unwrap();
    let text = String::from_utf8_lossy(&d.patch);
    assert!(text.contains("GIT binary patch"), "{text}");
    assert!(text.contains("\\ No newline at end of file"), "{text}");
    assert!(!text.contains("debug.log") && !text.contains("target/out"));

    let a = find(&d.files, "a.txt");
    assert_eq!(
        (a.status.clone(), a.additions, a.deletions),
        (FileStatus::Modified, 2, 1)
    );
    let del = find(&d.files, "del.txt");
    assert_eq!(
        (del.status.clone(), del.deletions),
        (FileStatus::Deleted, 1)
    );
    let new = find(&d.files, "nested/deep/new.txt");
    assert_eq!((new.status.clone(), new.additions), (FileStatus::Added, 2));
    assert_eq!(find(&d.files, "nested/.hidden").status, FileStatus::Added);
    let b2 = find(&d.files, "bin2.dat");
    assert!(b2.binary && b2.status == FileStatus::Added);
    assert!(find(&d.files, "bin.dat").binary);
    let ne = find(&d.files, "noeol.txt");
    assert_eq!((ne.additions, ne.deletions), (1, 1));
    assert_eq!(find(&d.files, "src/lib.rs").status, FileStatus::Modified);
    for eol in ["gains-eol.txt", "loses-eol.txt"] {
        let f = find(&d.files, eol);
        assert_eq!((f.additions, f.deletions), (1, 1), "{eol}");
    }
    assert_eq!(d.files.len(), 11, "{:?}", d.files);

    git_apply_check(&fx, &d.patch, &info.base_commit);

    let applied = apply(&fx.project, &d, false).unwrap();
    assert_eq!(applied, d.files);
    let mut expected = snapshot(wt);
    expected.remove("debug.log");
    expected.remove("target/out");
    assert_eq!(snapshot(&fx.project), expected);
}

#[test]
fn conflict_names_the_file_and_leaves_the_checkout_untouched() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("a.txt"), "agent edit\n").unwrap();
    fs::write(fx.wt.join("src/lib.rs"), "agent lib\n").unwrap();
    fs::write(fx.wt.join("added.txt"), "agent new\n").unwrap();
    fs::remove_file(fx.wt.join("del.txt")).unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();

    fs::write(fx.project.join("a.txt"), "user edit\n").unwrap();
    fs::remove_file(fx.project.join("del.txt")).unwrap();
    let before = snapshot(&fx.project);
    let report = conflict_of(apply(&fx.project, &d, false).unwrap_err());
    let mut named: Vec<_> = report
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.reason.as_str()))
        .collect();
    named.sort();
    assert_eq!(
        named,
        vec![
            ("a.txt", "modified in the checkout since the task started"),
            ("del.txt", "deleted in the checkout"),
        ]
    );
    assert_eq!(snapshot(&fx.project), before);
}

#[test]
fn added_file_already_in_checkout_conflicts() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("fresh.txt"), "agent\n").unwrap();
    fs::write(fx.wt.join("a.txt"), "agent edit\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    fs::write(fx.project.join("fresh.txt"), "user\n").unwrap();
    let before = snapshot(&fx.project);
    let report = conflict_of(apply(&fx.project, &d, false).unwrap_err());
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].path, "fresh.txt");
    assert_eq!(report.files[0].reason, "already exists in the checkout");
    assert!(report.to_string().contains("fresh.txt"));
    assert_eq!(snapshot(&fx.project), before);
}

#[test]
fn dry_run_writes_nothing() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("a.txt"), "agent edit\n").unwrap();
    fs::write(fx.wt.join("new.txt"), "new\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    let before = snapshot(&fx.project);
    let files = apply(&fx.project, &d, true).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(snapshot(&fx.project), before);
}

#[test]
fn writes_through_a_symlinked_parent_are_refused() {
    let fx = Fx::new();
    let info = fx.create();
    let outside = fx.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(fx.wt.join("link-out")).unwrap();
    fs::write(fx.wt.join("link-out/evil.txt"), "pwned\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    symlink(&outside, fx.project.join("link-out")).unwrap();
    let before = snapshot(&fx.project);
    let report = conflict_of(apply(&fx.project, &d, false).unwrap_err());
    assert_eq!(report.files[0].path, "link-out/evil.txt");
    assert!(
        report.files[0]
            .reason
            .contains("parent `link-out` is a symlink")
    );
    assert_eq!(snapshot(&fx.project), before);
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn rebaseline_makes_next_diff_contain_only_new_work() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("a.txt"), "first round\n").unwrap();
    fs::write(fx.wt.join("round1.txt"), "r1\n").unwrap();
    fs::remove_file(fx.wt.join("del.txt")).unwrap();
    fs::write(fx.wt.join("skip.log"), "ignored\n").unwrap();
    let d1 = diff(&fx.wt, &info.base_commit).unwrap();
    apply(&fx.project, &d1, false).unwrap();

    let base2 = rebaseline_to(&d1);
    assert_ne!(base2, info.base_commit);
    assert!(diff(&fx.wt, &base2).unwrap().is_empty());
    assert_eq!(git(&fx.wt, &["rev-parse", "HEAD"]).trim(), base2);
    let log = git(&fx.wt, &["log", "-1", "--format=%an <%ae>|%s"]);
    assert_eq!(
        log.trim(),
        "boocoder <boocoder@localhost>|boocoder: applied pending change"
    );
    assert!(git(&fx.wt, &["ls-files", "skip.log"]).is_empty());

    fs::write(fx.wt.join("round2.txt"), "r2\n").unwrap();
    let d2 = diff(&fx.wt, &base2).unwrap();
    assert_eq!(d2.files.len(), 1);
    assert_eq!(d2.files[0].path, "round2.txt");
    apply(&fx.project, &d2, false).unwrap();
    assert_eq!(fs::read(fx.project.join("round2.txt")).unwrap(), b"r2\n");
    // Nothing new: rebaseline is a no-op returning the same base.
    let base3 = rebaseline_to(&d2);
    assert_eq!(rebaseline(&fx.wt, &base3, &d2.snap.tree).unwrap(), base3);
}

#[test]
fn reset_drops_edits_and_untracked_files_but_keeps_ignored() {
    let fx = Fx::new();
    let info = fx.create();
    let pristine = snapshot(&fx.wt);
    fs::write(fx.wt.join("a.txt"), "edit\n").unwrap();
    fs::remove_file(fx.wt.join("del.txt")).unwrap();
    fs::create_dir_all(fx.wt.join("newdir/sub")).unwrap();
    fs::write(fx.wt.join("newdir/sub/x.txt"), "x\n").unwrap();
    fs::write(fx.wt.join("src/lib.rs"), "staged\n").unwrap();
    git(&fx.wt, &["add", "-A"]);
    fs::write(fx.wt.join("loose.txt"), "loose\n").unwrap();
    fs::create_dir_all(fx.wt.join("target")).unwrap();
    fs::write(fx.wt.join("target/keep"), "cache\n").unwrap();
    fs::write(fx.wt.join("keep.log"), "log\n").unwrap();

    reset(&fx.wt, &info.base_commit).unwrap();
    let mut after = snapshot(&fx.wt);
    assert!(after.remove("target/keep").is_some());
    assert!(after.remove("keep.log").is_some());
    assert_eq!(after, pristine);
    assert!(!fx.wt.join("newdir").exists());
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
}

#[test]
fn remove_is_idempotent_and_deletes_the_private_repo_and_the_ref() {
    let fx = Fx::new();
    fx.create();
    fs::write(fx.wt.join("work.txt"), "w\n").unwrap();
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    assert!(!fx.wt.exists());
    assert!(git(&fx.project, &["for-each-ref", "refs/boocoder"]).is_empty());
    let left: Vec<_> = fs::read_dir(fx.wt.parent().unwrap()).unwrap().collect();
    assert!(left.is_empty(), "nothing left beside it: {left:?}");
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    fs::remove_dir_all(fx.wt.parent().unwrap()).unwrap();
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    assert!(git(&fx.project, &["worktree", "list"]).lines().count() == 1);
}

#[test]
fn remove_still_deletes_the_worktree_of_a_deleted_project() {
    let fx = Fx::new();
    fx.create();
    fs::remove_dir_all(&fx.project).unwrap();
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    assert!(!fx.wt.exists());
}

#[test]
fn remove_cleans_worktrees_of_the_linked_layout() {
    let fx = Fx::new();
    fs::create_dir_all(fx.wt.parent().unwrap()).unwrap();
    let wt = fx.wt.display().to_string();
    git(
        &fx.project,
        &["worktree", "add", "-q", "-b", &fx.branch, &wt],
    );
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    assert!(!fx.wt.exists());
    assert!(!fx.project.join(".git/worktrees/task-1").exists());
    assert!(git(&fx.project, &["branch", "--list", &fx.branch]).is_empty());
}

#[test]
fn an_interrupted_removal_is_finished_later() {
    let fx = Fx::new();
    fx.create();
    // A removal that stopped after renaming the worktree aside, half-way through deleting it.
    let trash = fx.wt.with_file_name(".task-1.removing");
    fs::rename(&fx.wt, &trash).unwrap();
    fs::remove_dir_all(trash.join(".git")).unwrap();
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    assert!(!trash.exists());
    assert!(git(&fx.project, &["for-each-ref", "refs/boocoder"]).is_empty());
    // The reaper finishes one on its own, too.
    fs::create_dir_all(trash.join("left")).unwrap();
    assert!(remove_if_clean(&trash).unwrap());
    assert!(!trash.exists());
}

#[test]
fn create_recovers_from_stale_debris() {
    let fx = Fx::new();
    fx.create();
    // Crash leftovers, variant 1: directory and ref remain.
    let info = fx.create();
    assert_eq!(info.base_commit, fx.head());
    // Variant 2: the directory vanished but the ref remains.
    fs::remove_dir_all(&fx.wt).unwrap();
    let info = fx.create();
    assert!(fx.wt.join("a.txt").is_file());
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
    // Variant 3: a linked worktree of the earlier layout, registration and branch.
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    let wt = fx.wt.display().to_string();
    git(
        &fx.project,
        &["worktree", "add", "-q", "-b", &fx.branch, &wt],
    );
    fx.create();
    assert!(fx.wt.join(".git").is_dir());
    assert!(!fx.project.join(".git/worktrees/task-1").exists());
    assert!(git(&fx.project, &["branch", "--list", &fx.branch]).is_empty());
    git(&fx.wt, &["status", "--short"]);
}

#[test]
fn a_worktree_pointed_elsewhere_is_refused() {
    let fx = Fx::new();
    let info = fx.create();
    // The agent owns the private config; a work tree redirected at the user's checkout must
    // not make reset or rebaseline work there.
    let project = fx.project.display().to_string();
    git(&fx.wt, &["config", "core.worktree", &project]);
    fs::write(fx.project.join("a.txt"), "user edit\n").unwrap();
    let err = reset(&fx.wt, &info.base_commit).unwrap_err();
    assert!(matches!(err, WorktreeError::Foreign { .. }), "{err:?}");
    let tree = git(&fx.project, &["rev-parse", "HEAD^{tree}"]);
    let err = rebaseline(&fx.wt, &info.base_commit, tree.trim()).unwrap_err();
    assert!(matches!(err, WorktreeError::Foreign { .. }), "{err:?}");
    let err = super::snapshot(&fx.wt, &info.base_commit).unwrap_err();
    assert!(matches!(err, WorktreeError::Foreign { .. }), "{err:?}");
    assert_eq!(fs::read(fx.project.join("a.txt")).unwrap(), b"user edit\n");
    assert_eq!(
        git(&fx.project, &["rev-parse", "HEAD"]).trim(),
        info.base_commit
    );
}

#[test]
fn a_shallow_projects_boundary_and_lfs_store_are_shared() {
    let fx = Fx::new();
    git(
        &fx.project,
        &["commit", "-q", "--allow-empty", "-m", "second"],
    );
    let clone = fx.dir.path().join("shallow");
    let url = format!("file://{}", fx.project.display());
    git(
        fx.dir.path(),
        &["clone", "-q", "--depth", "1", &url, clone.to_str().unwrap()],
    );
    fs::create_dir_all(clone.join(".git/lfs")).unwrap();
    let wt = fx.dir.path().join("wts/shallow-1");
    create(&clone, &wt, "boocoder/shallow-1").unwrap();
    assert_eq!(git(&wt, &["log", "--format=%s"]).trim(), "second");
    assert_eq!(
        git(&wt, &["config", "lfs.storage"]).trim(),
        clone.join(".git/lfs").display().to_string()
    );
}

#[test]
fn the_base_survives_the_projects_gc() {
    let fx = Fx::new();
    let info = fx.create();
    // The project moves on and forgets the base: only the hidden ref still reaches it.
    git(&fx.project, &["checkout", "-q", "--orphan", "other"]);
    git(&fx.project, &["commit", "-q", "-m", "unrelated"]);
    git(&fx.project, &["branch", "-D", "main"]);
    git(&fx.project, &["reflog", "expire", "--expire=now", "--all"]);
    git(&fx.project, &["gc", "-q", "--prune=now"]);
    fs::write(fx.wt.join("a.txt"), "changed\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    assert_eq!(d.files.len(), 1, "{:?}", d.files);
}

#[test]
fn create_refuses_to_clobber_a_foreign_directory() {
    let fx = Fx::new();
    fs::create_dir_all(&fx.wt).unwrap();
    fs::write(fx.wt.join("precious"), "user data\n").unwrap();
    let err = create(&fx.project, &fx.wt, &fx.branch).unwrap_err();
    assert!(matches!(err, WorktreeError::PathInUse { .. }), "{err:?}");
    assert_eq!(fs::read(fx.wt.join("precious")).unwrap(), b"user data\n");
}

#[test]
fn executable_bit_survives_diff_and_apply() {
    let fx = Fx::new();
    let info = fx.create();
    let exec = fs::Permissions::from_mode(0o755);
    fs::set_permissions(fx.wt.join("script.sh"), exec.clone()).unwrap();
    fs::write(fx.wt.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(fx.wt.join("run.sh"), exec).unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    let text = String::from_utf8_lossy(&d.patch);
    assert!(text.contains("old mode 100644\nnew mode 100755"), "{text}");
    assert!(text.contains("new file mode 100755"), "{text}");
    assert_eq!(find(&d.files, "script.sh").status, FileStatus::Modified);
    git_apply_check(&fx, &d.patch, &info.base_commit);
    apply(&fx.project, &d, false).unwrap();
    for f in ["script.sh", "run.sh"] {
        let mode = fs::metadata(fx.project.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{f}");
    }
}

#[test]
fn symlinks_are_diffed_and_applied_as_links() {
    let fx = Fx::new();
    let info = fx.create();
    symlink("a.txt", fx.wt.join("link")).unwrap();
    symlink("../outside/target", fx.wt.join("src/out-link")).unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    let text = String::from_utf8_lossy(&d.patch);
    assert!(text.contains("new file mode 120000"), "{text}");
    assert_eq!(find(&d.files, "link").status, FileStatus::Added);
    git_apply_check(&fx, &d.patch, &info.base_commit);
    apply(&fx.project, &d, false).unwrap();
    assert_eq!(
        fs::read_link(fx.project.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        fs::read_link(fx.project.join("src/out-link")).unwrap(),
        Path::new("../outside/target")
    );

    // Later the agent retargets one tracked symlink and deletes the other:
    // the preimage is the link text, never the file it points to.
    let base2 = rebaseline_to(&d);
    fs::remove_file(fx.wt.join("link")).unwrap();
    symlink("src/lib.rs", fx.wt.join("link")).unwrap();
    fs::remove_file(fx.wt.join("src/out-link")).unwrap();
    let d2 = diff(&fx.wt, &base2).unwrap();
    assert_eq!(find(&d2.files, "link").status, FileStatus::Modified);
    assert_eq!(find(&d2.files, "src/out-link").status, FileStatus::Deleted);
    apply(&fx.project, &d2, false).unwrap();
    assert_eq!(
        fs::read_link(fx.project.join("link")).unwrap(),
        Path::new("src/lib.rs")
    );
    assert!(fs::symlink_metadata(fx.project.join("src/out-link")).is_err());
    assert_eq!(snapshot(&fx.project), snapshot(&fx.wt));
}

#[test]
fn file_replaced_by_symlink_is_a_typechange() {
    let fx = Fx::new();
    let info = fx.create();
    fs::remove_file(fx.wt.join("del.txt")).unwrap();
    symlink("a.txt", fx.wt.join("del.txt")).unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    assert_eq!(find(&d.files, "del.txt").status, FileStatus::TypeChange);
    git_apply_check(&fx, &d.patch, &info.base_commit);
    apply(&fx.project, &d, false).unwrap();
    assert_eq!(
        fs::read_link(fx.project.join("del.txt")).unwrap(),
        Path::new("a.txt")
    );
}

#[test]
fn symlink_replaced_by_file_round_trips() {
    let fx = Fx::new();
    symlink("a.txt", fx.project.join("ln")).unwrap();
    git(&fx.project, &["add", "ln"]);
    git(&fx.project, &["commit", "-q", "-m", "link"]);
    let info = fx.create();
    fs::remove_file(fx.wt.join("ln")).unwrap();
    fs::write(fx.wt.join("ln"), "now a file\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    let ln = find(&d.files, "ln");
    assert_eq!(
        (ln.status.clone(), ln.additions, ln.deletions),
        (FileStatus::TypeChange, 1, 1)
    );
    git_apply_check(&fx, &d.patch, &info.base_commit);
    apply(&fx.project, &d, false).unwrap();
    assert_eq!(fs::read(fx.project.join("ln")).unwrap(), b"now a file\n");
}

#[test]
fn later_rounds_can_delete_files_applied_earlier_but_not_committed() {
    let fx = Fx::new();
    let info = fx.create();
    fs::create_dir_all(fx.wt.join("gen/sub")).unwrap();
    fs::write(fx.wt.join("gen/sub/tmp.txt"), "temporary\n").unwrap();
    fs::write(fx.wt.join("keep.txt"), "v1\n").unwrap();
    let d1 = diff(&fx.wt, &info.base_commit).unwrap();
    apply(&fx.project, &d1, false).unwrap();
    let base2 = rebaseline_to(&d1);

    fs::remove_dir_all(fx.wt.join("gen")).unwrap();
    fs::write(fx.wt.join("keep.txt"), "v2\n").unwrap();
    let d2 = diff(&fx.wt, &base2).unwrap();
    apply(&fx.project, &d2, false).unwrap();
    assert!(!fx.project.join("gen").exists(), "emptied dirs are pruned");
    assert_eq!(fs::read(fx.project.join("keep.txt")).unwrap(), b"v2\n");
    assert_eq!(snapshot(&fx.project), snapshot(&fx.wt));
}

#[test]
fn garbage_patches_and_bad_ids_do_not_panic_or_write() {
    let fx = Fx::new();
    let info = fx.create();
    let before = snapshot(&fx.project);
    let tree = tree_from_patch(&fx.wt, &info.base_commit, b"").unwrap();
    let empty = Pending {
        wt: fx.wt.clone(),
        base: info.base_commit.clone(),
        snap: Snapshot {
            tree,
            diff: Diff {
                patch: Vec::new(),
                files: Vec::new(),
            },
        },
    };
    assert_eq!(apply(&fx.project, &empty, false).unwrap(), Vec::new());
    for junk in [
        &b"not a patch at all\n"[..],
        b"diff --git a/x b/x\n\xff\x00\xfe@@ nonsense @@\n",
        b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n",
    ] {
        let _ = tree_from_patch(&fx.wt, &info.base_commit, junk);
    }
    assert_eq!(snapshot(&fx.project), before);
    let err = diff(&fx.project, "not-a-commit").unwrap_err();
    assert!(matches!(err, WorktreeError::Git(_)), "{err:?}");
}

#[test]
fn git_cli_and_libgit2_checkouts_are_identical() {
    let fx = Fx::new();
    let mut perms = fs::metadata(fx.project.join("script.sh"))
        .unwrap()
        .permissions();
    perms.set_mode(0o755);
    fs::set_permissions(fx.project.join("script.sh"), perms).unwrap();
    symlink("src/lib.rs", fx.project.join("link-to-lib")).unwrap();
    symlink("../a.txt", fx.project.join("src/up-link")).unwrap();
    git(&fx.project, &["add", "-A"]);
    git(&fx.project, &["commit", "-q", "-m", "modes and links"]);
    let cli = create_with(&fx.project, &fx.wt, &fx.branch, true).unwrap();
    let lib_wt = fx.project.parent().unwrap().join("wts/task-2");
    let lib = create_with(&fx.project, &lib_wt, "boocoder/task-2", false).unwrap();
    assert_eq!(cli.base_commit, lib.base_commit);
    let a = snapshot(&cli.path);
    assert_eq!(a, snapshot(&lib.path));
    assert_eq!(a["script.sh"].1, 0o111, "executable bit checked out");
    assert_eq!(a["link-to-lib"], (b"src/lib.rs".to_vec(), 0o120000));
    assert_eq!(a["src/up-link"], (b"../a.txt".to_vec(), 0o120000));
    let branch = git(&cli.path, &["rev-parse", "--abbrev-ref", "HEAD"]);
    assert_eq!(branch.trim(), fx.branch);
}

#[test]
fn awkward_names_and_tree_shapes_apply_byte_for_byte() {
    let fx = Fx::new();
    fs::create_dir_all(fx.project.join("docs")).unwrap();
    fs::write(fx.project.join("docs/a.md"), "a\n").unwrap();
    fs::create_dir_all(fx.project.join("tools")).unwrap();
    fs::write(fx.project.join("tools/x.sh"), "x\n").unwrap();
    git(&fx.project, &["add", "-A"]);
    git(&fx.project, &["commit", "-q", "-m", "dirs"]);
    let info = fx.create();
    let wt = &fx.wt;
    fs::create_dir_all(wt.join("dir with space")).unwrap();
    fs::write(wt.join("dir with space/new file.txt"), "spaced\n").unwrap();
    fs::write(wt.join(OsStr::from_bytes(b"caf\xe9.txt")), "latin1\n").unwrap();
    fs::remove_dir_all(wt.join("docs")).unwrap();
    fs::write(wt.join("docs"), "now a file\n").unwrap();
    fs::remove_dir_all(wt.join("tools")).unwrap();
    symlink("a.txt", wt.join("tools")).unwrap();
    fs::create_dir_all(wt.join("moved dir")).unwrap();
    fs::rename(wt.join("del.txt"), wt.join("moved dir/re named.txt")).unwrap();
    fs::remove_file(wt.join("src/lib.rs")).unwrap();
    fs::remove_dir(wt.join("src")).unwrap();
    fs::create_dir_all(wt.join("src/lib.rs")).unwrap();
    fs::write(wt.join("src/lib.rs/mod.rs"), "file became dir\n").unwrap();
    let d = diff(wt, &info.base_commit).unwrap();
    let dry = apply(&fx.project, &d, true).unwrap();
    assert_eq!(apply(&fx.project, &d, false).unwrap(), dry);
    assert_eq!(snapshot(&fx.project), snapshot(wt));
    assert!(fx.project.join(OsStr::from_bytes(b"caf\xe9.txt")).is_file());
}

#[test]
fn nested_repositories_are_in_the_change_and_refused_by_name() {
    let fx = Fx::new();
    // A submodule in the project is left alone by changes that do not touch it.
    let sub = fx.dir.path().join("sub-origin");
    fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q"]);
    fs::write(sub.join("s.txt"), "s\n").unwrap();
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-q", "-m", "s"]);
    git(
        &fx.project,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            sub.to_str().unwrap(),
            "vendor/sub",
        ],
    );
    git(&fx.project, &["commit", "-q", "-m", "submodule"]);
    let info = fx.create();
    fs::write(fx.wt.join("a.txt"), "edited\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    assert_eq!(d.files.len(), 1, "{:?}", d.files);
    apply(&fx.project, &d, false).unwrap();
    let base = rebaseline_to(&d);

    // A repository the agent creates inside the worktree is part of the change, by name.
    let nested = fx.wt.join("tools/nested");
    fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    fs::write(nested.join("n.txt"), "n\n").unwrap();
    git(&nested, &["add", "-A"]);
    git(&nested, &["commit", "-q", "-m", "n"]);
    fs::create_dir_all(fx.wt.join("empty-repo")).unwrap();
    git(&fx.wt.join("empty-repo"), &["init", "-q"]);
    fs::write(fx.wt.join("empty-repo/uncommitted.txt"), "u\n").unwrap();
    fs::write(fx.wt.join("plain.txt"), "plain\n").unwrap();
    let d = diff(&fx.wt, &base).unwrap();
    let mut paths: Vec<_> = d.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["empty-repo", "plain.txt", "tools/nested"]);
    let before = snapshot(&fx.project);
    for dry_run in [true, false] {
        let report = conflict_of(apply(&fx.project, &d, dry_run).unwrap_err());
        let named: Vec<_> = report.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(named, vec!["empty-repo", "tools/nested"]);
        assert!(report.files[0].reason.contains("nested git repository"));
    }
    assert_eq!(snapshot(&fx.project), before);
}
