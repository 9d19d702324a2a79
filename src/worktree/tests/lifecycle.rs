//! Creating, opening, resetting and removing worktrees, and the private repository each
//! one is.

use super::*;
use crate::worktree::create::{Checkout, create_with};

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
fn create_refuses_to_clobber_a_foreign_directory() {
    let fx = Fx::new();
    fs::create_dir_all(&fx.wt).unwrap();
    fs::write(fx.wt.join("precious"), "user data\n").unwrap();
    let err = create(&fx.project, &fx.wt, &fx.branch).unwrap_err();
    assert!(matches!(err, WorktreeError::PathInUse { .. }), "{err:?}");
    assert_eq!(fs::read(fx.wt.join("precious")).unwrap(), b"user data\n");
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
    let cli = create_with(&fx.project, &fx.wt, &fx.branch, Checkout::Unlocked).unwrap();
    let lib_wt = fx.project.parent().unwrap().join("wts/task-2");
    let lib = create_with(&fx.project, &lib_wt, "boocoder/task-2", Checkout::Libgit2).unwrap();
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
    let err = crate::worktree::snapshot(&fx.wt, &info.base_commit).unwrap_err();
    assert!(matches!(err, WorktreeError::Foreign { .. }), "{err:?}");
    assert_eq!(fs::read(fx.project.join("a.txt")).unwrap(), b"user edit\n");
    assert_eq!(
        git(&fx.project, &["rev-parse", "HEAD"]).trim(),
        info.base_commit
    );
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
fn worktrees_of_one_project_are_made_side_by_side() {
    let fx = Fx::new();
    let dir = fx.dir.path().join("side");
    let makers: Vec<_> = (0..4)
        .map(|i| {
            let (project, wt) = (fx.project.clone(), dir.join(format!("s-{i}")));
            std::thread::spawn(move || {
                create(&project, &wt, &format!("boocoder/s-{i}")).map(|info| (wt, info))
            })
        })
        .collect();
    for m in makers {
        let (wt, info) = m.join().unwrap().unwrap();
        assert_eq!(info.base_commit, fx.head());
        assert_eq!(snapshot(&wt), snapshot(&fx.project));
        assert!(diff(&wt, &info.base_commit).unwrap().is_empty());
    }
    let refs = git(
        &fx.project,
        &["for-each-ref", "--format=%(refname)", "refs/boocoder"],
    );
    assert_eq!(refs.lines().count(), 4, "{refs}");
}

#[test]
fn a_failed_checkout_leaves_neither_directory_nor_ref() {
    let fx = Fx::new();
    let err = create(&fx.project, &fx.wt, "bad..branch").unwrap_err();
    assert!(err.to_string().contains("invalid branch name"), "{err}");
    assert!(!fx.wt.exists());
    let refs = git(
        &fx.project,
        &["for-each-ref", "--format=%(refname)", "refs/boocoder"],
    );
    assert_eq!(refs.trim(), "");
    // and the name is free for the next creation
    fx.create();
}
