//! Spare worktrees: taken by rename, brought forward when HEAD moves, never handed out twice.

use super::*;

fn pool(fx: &Fx) -> PathBuf {
    fx.dir.path().join("pool")
}

fn refs(project: &Path) -> String {
    git(
        project,
        &["for-each-ref", "--format=%(refname)", "refs/boocoder"],
    )
}

#[test]
fn a_ready_spare_becomes_the_session_worktree() {
    let fx = Fx::new();
    let root = pool(&fx);
    let a = make_spare(&fx.project, &root).unwrap();
    let b = make_spare(&fx.project, &root).unwrap();
    assert_eq!(spares(&fx.project, &root).unwrap().len(), 2);
    mark_ready(&b).unwrap();

    let info = take_spare(&fx.project, &root, &fx.wt, &fx.branch)
        .unwrap()
        .expect("a ready spare");
    assert_eq!(info.path, fx.wt);
    assert_eq!(info.base_commit, fx.head());
    assert!(!b.exists() && a.exists(), "the ready one was taken");
    assert_eq!(snapshot(&fx.wt), snapshot(&fx.project));
    assert_eq!(
        git(&fx.wt, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/boocoder/task-1"
    );
    assert_eq!(
        git(
            &fx.wt,
            &["for-each-ref", "--format=%(refname)", "refs/heads"]
        )
        .trim(),
        "refs/heads/boocoder/task-1"
    );
    let names = refs(&fx.project);
    assert!(names.contains("refs/boocoder/task-1"), "{names}");
    assert!(!names.contains(&format!(
        "refs/boocoder/{}",
        b.file_name().unwrap().to_string_lossy()
    )));
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
    // the only other spare is not ready: nothing to take
    let other = fx.wt.parent().unwrap().join("task-2");
    assert!(
        take_spare(&fx.project, &root, &other, "boocoder/task-2")
            .unwrap()
            .is_none()
    );
    // removal as for any worktree
    remove(&fx.project, &fx.wt, &fx.branch).unwrap();
    drop_spare(&fx.project, &a).unwrap();
    assert!(!a.exists());
    assert_eq!(refs(&fx.project).trim(), "");
}

#[test]
fn a_spare_behind_head_is_not_taken_until_brought_forward() {
    let fx = Fx::new();
    let root = pool(&fx);
    let spare = make_spare(&fx.project, &root).unwrap();
    mark_ready(&spare).unwrap();
    fs::write(fx.project.join("a.txt"), "changed upstream\n").unwrap();
    fs::write(fx.project.join("new.txt"), "new\n").unwrap();
    git(&fx.project, &["add", "-A"]);
    git(&fx.project, &["commit", "-q", "-m", "move"]);
    assert!(
        take_spare(&fx.project, &root, &fx.wt, &fx.branch)
            .unwrap()
            .is_none()
    );

    let untouched = fs::metadata(spare.join("src/lib.rs"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(bring_forward(&fx.project, &spare).unwrap());
    // moved, it waits to be prepared again
    assert!(
        take_spare(&fx.project, &root, &fx.wt, &fx.branch)
            .unwrap()
            .is_none()
    );
    mark_ready(&spare).unwrap();
    assert_eq!(
        fs::metadata(spare.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap(),
        untouched,
        "only changed files are rewritten"
    );
    let info = take_spare(&fx.project, &root, &fx.wt, &fx.branch)
        .unwrap()
        .expect("brought forward");
    assert_eq!(info.base_commit, fx.head());
    assert_eq!(snapshot(&fx.wt), snapshot(&fx.project));
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
}

#[test]
fn concurrent_takers_never_share_a_spare() {
    let fx = Fx::new();
    let root = pool(&fx);
    let spare = make_spare(&fx.project, &root).unwrap();
    mark_ready(&spare).unwrap();
    let parent = fx.wt.parent().unwrap().to_path_buf();
    let takers: Vec<_> = (0..4)
        .map(|i| {
            let (project, root, wt) = (
                fx.project.clone(),
                root.clone(),
                parent.join(format!("s-{i}")),
            );
            std::thread::spawn(move || {
                take_spare(&project, &root, &wt, &format!("boocoder/s-{i}"))
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let taken = takers
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|took| *took)
        .count();
    assert_eq!(taken, 1);
}
