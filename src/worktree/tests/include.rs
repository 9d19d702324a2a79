//! `.worktreeinclude`: ignored files copied into a new worktree, and never part of its change.

use super::*;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A project whose ignore rules live partly in `.git/info/exclude`, which the worktree does
/// not share: there the copied files are *not* ignored, so only the recorded list keeps them
/// out of the change.
fn project_with_includes() -> Fx {
    let fx = Fx::new();
    let p = &fx.project;
    fs::write(
        p.join(".git/info/exclude"),
        ".env\nsecrets/\nconfig/\nlink-*\n.worktreeinclude\n",
    )
    .unwrap();
    write(p, ".env", "KEY=from-checkout\n");
    write(p, "app.log", "ignored, not included\n");
    write(p, "notes.txt", "untracked, not ignored\n");
    write(p, "secrets/dev.key", "k\n");
    write(p, "config/deep/x.yml", "x: 1\n");
    write(p, "config/deep/y.txt", "not selected\n");
    write(p, "target/.env", "inside an ignored dir no pattern names\n");
    symlink("/etc/hostname", p.join("link-out")).unwrap();
    symlink(".env", p.join("link-in")).unwrap();
    symlink("/etc", p.join("secrets/escape")).unwrap();
    write(
        p,
        INCLUDE_FILE,
        "# what a session needs\n.env\nsecrets/\nconfig/*/*.yml\nlink-*\nnotes.txt\na.txt\napp.txt\n",
    );
    fx
}

#[test]
fn ignored_selected_files_are_copied_and_the_rest_is_not() {
    let fx = project_with_includes();
    fx.create();
    let included = copy_included(&fx.project, &fx.wt).unwrap();
    assert_eq!(
        included.copied,
        vec![".env", "config/deep/x.yml", "link-in", "secrets"]
    );
    let mut skipped = included.skipped.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            "link-out: a symlink leading outside the project; not copied",
            "secrets/escape: a symlink leading outside the project; not copied",
        ]
    );
    let wt = &fx.wt;
    assert_eq!(
        fs::read_to_string(wt.join(".env")).unwrap(),
        "KEY=from-checkout\n"
    );
    assert_eq!(
        fs::read_to_string(wt.join("secrets/dev.key")).unwrap(),
        "k\n"
    );
    assert_eq!(
        fs::read_to_string(wt.join("config/deep/x.yml")).unwrap(),
        "x: 1\n"
    );
    assert_eq!(
        fs::read_link(wt.join("link-in")).unwrap(),
        Path::new(".env")
    );
    for absent in [
        "app.log",
        "notes.txt",
        "config/deep/y.txt",
        "target/.env",
        "link-out",
        "secrets/escape",
    ] {
        assert!(
            fs::symlink_metadata(wt.join(absent)).is_err(),
            "{absent} was copied"
        );
    }
    // a tracked file the patterns name is just the checked-out one
    assert_eq!(
        fs::read(wt.join("a.txt")).unwrap(),
        fs::read(fx.project.join("a.txt")).unwrap()
    );
}

#[test]
fn included_files_never_reach_the_change() {
    let fx = project_with_includes();
    let info = fx.create();
    copy_included(&fx.project, &fx.wt).unwrap();
    let wt = &fx.wt;
    assert!(diff(wt, &info.base_commit).unwrap().is_empty());
    // edited, staged by the agent's own git, even un-ignored: still not part of the change
    fs::write(wt.join(".env"), "KEY=edited-by-agent\n").unwrap();
    fs::write(wt.join("secrets/new.key"), "n\n").unwrap();
    git(wt, &["add", "-f", ".env", "secrets"]);
    fs::write(wt.join("made.txt"), "real work\n").unwrap();
    let snap = super::snapshot::snapshot(wt, &info.base_commit).unwrap();
    let paths: Vec<&str> = snap.diff.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["made.txt"]);
}

#[test]
fn without_a_worktreeinclude_nothing_is_copied_or_recorded() {
    let fx = Fx::new();
    fs::write(fx.project.join("app.log"), "x\n").unwrap();
    fx.create();
    assert_eq!(
        copy_included(&fx.project, &fx.wt).unwrap(),
        Included::default()
    );
    assert!(!fx.wt.join(".git/boocoder-included").exists());
    assert!(!fx.wt.join("app.log").exists());
}
