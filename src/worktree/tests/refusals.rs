//! Applies that must not write: conflicts, dry runs, escapes through links, garbage input.

use super::*;

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
