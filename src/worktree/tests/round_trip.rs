//! Diffs that apply byte for byte: every kind of change, modes, links, awkward names,
//! nested repositories, and the base moving after an apply.

use super::*;

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
