//! Rebasing a change onto a checkout that moved: merged edits of other lines (and the
//! worktree following, redoably), conflicts named by line with nothing written.

use super::*;

fn lock(fx: &Fx) -> CheckoutLock {
    CheckoutLock::acquire(&fx.project, std::time::Duration::from_secs(5)).unwrap()
}

fn merged(r: Rebase) -> Rebased {
    match r {
        Rebase::Merged(r) => r,
        Rebase::Conflicts(c) => panic!("expected a merge, got {c:?}"),
    }
}

#[test]
fn edits_of_other_lines_merge_and_the_worktree_follows() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("a.txt"), "one\ntwo\nthree\nfour\nFIVE\n").unwrap();
    fs::write(fx.wt.join("new.txt"), "new\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    fs::write(fx.project.join("a.txt"), "ONE\ntwo\nthree\nfour\nfive\n").unwrap();
    conflict_of(apply(&fx.project, &d, true).unwrap_err());

    let r = merged(lock(&fx).rebase(trees(&d)).unwrap());
    let text = String::from_utf8_lossy(&r.diff.patch).into_owned();
    assert!(
        text.contains("-five\n+FIVE") && !text.contains("ONE\n+"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(fx.wt.join("a.txt")).unwrap(),
        "one\ntwo\nthree\nfour\nFIVE\n",
        "the merge itself writes no file"
    );

    let marker = RebaseMarker {
        new_base: r.base.clone(),
        from_tree: d.snap.tree.clone(),
        to_tree: r.tree.clone(),
    };
    begin_rebase(&fx.wt, &marker).unwrap();
    assert_eq!(interrupted_rebase(&fx.wt).unwrap(), Some(marker.clone()));
    finish_rebase(&fx.wt, &marker).unwrap();
    // Redone after an interruption: the same result.
    finish_rebase(&fx.wt, &marker).unwrap();
    assert_eq!(interrupted_rebase(&fx.wt).unwrap(), None);
    assert_eq!(
        fs::read_to_string(fx.wt.join("a.txt")).unwrap(),
        "ONE\ntwo\nthree\nfour\nFIVE\n"
    );
    assert_eq!(git(&fx.wt, &["rev-parse", "HEAD"]).trim(), r.base);
    let again = diff(&fx.wt, &r.base).unwrap();
    assert_eq!(
        again.snap.tree, r.tree,
        "the next diff is the rebased change"
    );

    apply(&fx.project, &again, false).unwrap();
    assert_eq!(
        fs::read_to_string(fx.project.join("a.txt")).unwrap(),
        "ONE\ntwo\nthree\nfour\nFIVE\n"
    );
    assert_eq!(
        fs::read_to_string(fx.project.join("new.txt")).unwrap(),
        "new\n"
    );
}

#[test]
fn overlapping_edits_are_named_by_line_and_nothing_is_written() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(
        fx.wt.join("a.txt"),
        "one\ntwo\nthree by the session\nfour\nfive\n",
    )
    .unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    fs::write(
        fx.project.join("a.txt"),
        "one\ntwo\nthree by the user\nfour\nfive\n",
    )
    .unwrap();
    let before_wt = snapshot(&fx.wt);
    let before = snapshot(&fx.project);

    let conflicts = match lock(&fx).rebase(trees(&d)).unwrap() {
        Rebase::Conflicts(c) => c,
        Rebase::Merged(r) => panic!("expected a conflict, merged {r:?}"),
    };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path, "a.txt");
    assert_eq!(conflicts[0].reason, "changed on both sides");
    let h = &conflicts[0].hunks;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].base, LineSpan { start: 3, count: 1 });
    assert_eq!(h[0].checkout_lines, vec!["three by the user"]);
    assert_eq!(h[0].session_lines, vec!["three by the session"]);
    assert_eq!(snapshot(&fx.wt), before_wt);
    assert_eq!(snapshot(&fx.project), before);
    assert_eq!(interrupted_rebase(&fx.wt).unwrap(), None);
}

#[test]
fn a_file_deleted_in_the_checkout_conflicts_and_markers_can_be_dropped() {
    let fx = Fx::new();
    let info = fx.create();
    fs::write(fx.wt.join("del.txt"), "changed by the session\n").unwrap();
    let d = diff(&fx.wt, &info.base_commit).unwrap();
    fs::remove_file(fx.project.join("del.txt")).unwrap();
    let conflicts = match lock(&fx).rebase(trees(&d)).unwrap() {
        Rebase::Conflicts(c) => c,
        Rebase::Merged(r) => panic!("expected a conflict, merged {r:?}"),
    };
    assert_eq!(conflicts[0].path, "del.txt");
    assert!(
        conflicts[0].reason.contains("deleted in the checkout"),
        "{conflicts:?}"
    );

    let marker = RebaseMarker {
        new_base: info.base_commit.clone(),
        from_tree: d.snap.tree.clone(),
        to_tree: d.snap.tree.clone(),
    };
    begin_rebase(&fx.wt, &marker).unwrap();
    abandon_rebase(&fx.wt).unwrap();
    assert_eq!(interrupted_rebase(&fx.wt).unwrap(), None);
}
