//! Spare worktrees: made at the path their session keeps, claimed by renaming a token, brought
//! forward when HEAD moves, never handed out twice, never removed once taken.

use super::*;

fn pool(fx: &Fx) -> PathBuf {
    fx.dir.path().join("pool")
}

fn wts(fx: &Fx) -> PathBuf {
    fx.dir.path().join("worktrees")
}

fn refs(project: &Path) -> String {
    git(
        project,
        &["for-each-ref", "--format=%(refname)", "refs/boocoder"],
    )
}

fn offered(fx: &Fx, path: &Path) -> Spare {
    spares(&fx.project, &pool(fx), &wts(fx))
        .unwrap()
        .into_iter()
        .find(|s| s.path == path)
        .expect("on offer")
}

#[test]
fn a_ready_spare_is_taken_where_it_stands() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    let b = make_spare(&fx.project, &root, &w, "s-b").unwrap();
    assert_eq!(spares(&fx.project, &root, &w).unwrap().len(), 2);
    mark_ready(&b).unwrap();

    let taken = take_spare(&fx.project, &root, &w, None)
        .unwrap()
        .expect("a ready spare");
    assert_eq!(taken.session_id, "s-b");
    assert_eq!(taken.info.path, b.canonicalize().unwrap());
    assert_eq!(taken.info.branch, "boocoder/s-b");
    assert_eq!(taken.info.base_commit, fx.head());
    assert_eq!(snapshot(&b), snapshot(&fx.project));
    assert_eq!(
        git(&b, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/boocoder/s-b"
    );
    assert!(refs(&fx.project).contains("refs/boocoder/s-b"));
    assert!(!b.join(".git").join(crate::worktree::pool::SPARE).exists());
    assert!(diff(&b, &taken.info.base_commit).unwrap().is_empty());
    // taken, it is no longer on offer, and a claim is pending until settled
    assert_eq!(spares(&fx.project, &root, &w).unwrap().len(), 1);
    assert!(is_pooled(&root, "s-b"));
    settle_taken(&taken).unwrap();
    assert!(!is_pooled(&root, "s-b"));
    assert!(is_pooled(&root, "s-a"));
    // the only other spare is not ready: nothing to take
    assert!(take_spare(&fx.project, &root, &w, None).unwrap().is_none());
    // the pool dropped whole leaves the taken worktree alone
    drop_pool(&fx.project, &pool_dir(&root, &fx.project), &w).unwrap();
    assert!(!a.exists() && b.exists());
    remove(&fx.project, &b, "").unwrap();
    assert_eq!(refs(&fx.project).trim(), "");
}

#[test]
fn the_preferred_spare_goes_first_and_a_given_back_one_is_offered_again() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    let b = make_spare(&fx.project, &root, &w, "s-b").unwrap();
    mark_ready(&a).unwrap();
    mark_ready(&b).unwrap();
    let taken = take_spare(&fx.project, &root, &w, Some(&b))
        .unwrap()
        .expect("ready");
    assert_eq!(taken.session_id, "s-b");
    give_back(&taken).unwrap();
    assert!(offered(&fx, &b).ready);
    assert!(b.join(".git").join(crate::worktree::pool::SPARE).exists());
    assert!(claims(&fx.project, &root, &w).is_empty());
}

#[test]
fn a_taken_spare_is_neither_moved_nor_dropped_by_a_stale_listing() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&a).unwrap();
    let stale = offered(&fx, &a);
    let taken = take_spare(&fx.project, &root, &w, None)
        .unwrap()
        .expect("ready");
    fs::write(a.join("work.txt"), "an agent's work\n").unwrap();
    fs::write(fx.project.join("a.txt"), "changed upstream\n").unwrap();
    git(&fx.project, &["commit", "-qam", "move"]);
    assert_eq!(bring_forward(&fx.project, &stale).unwrap(), Forward::Gone);
    drop_spare(&fx.project, &stale).unwrap();
    assert!(a.join("work.txt").exists());
    assert_eq!(
        git(&a, &["rev-parse", "HEAD"]).trim(),
        taken.info.base_commit
    );
    // the claim's process died before recording the session: the claim is dropped
    let pending = claims(&fx.project, &root, &w);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, "s-a");
    end_claim(&fx.project, &root, &w, "s-a", true).unwrap();
    assert!(!a.exists() && claims(&fx.project, &root, &w).is_empty());
}

#[test]
fn an_unclaimed_spare_with_brought_files_is_reaped() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    fs::write(a.join("brought.txt"), "from the checkout\n").unwrap();
    // its token is gone (a drop that died after claiming it): nobody owns it
    fs::remove_file(pool_dir(&root, &fx.project).join("spare-s-a")).unwrap();
    assert!(!is_pooled(&root, "s-a"));
    assert!(remove_if_clean(&a).unwrap());
    assert!(!a.exists());
}

#[test]
fn a_spare_behind_head_is_not_taken_until_brought_forward() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let spare = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&spare).unwrap();
    fs::write(fx.project.join("a.txt"), "changed upstream\n").unwrap();
    fs::write(fx.project.join("new.txt"), "new\n").unwrap();
    git(&fx.project, &["add", "-A"]);
    git(&fx.project, &["commit", "-q", "-m", "move"]);
    assert!(take_spare(&fx.project, &root, &w, None).unwrap().is_none());

    let untouched = fs::metadata(spare.join("src/lib.rs"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        bring_forward(&fx.project, &offered(&fx, &spare)).unwrap(),
        Forward::Moved
    );
    // moved, it waits to be prepared again
    assert!(take_spare(&fx.project, &root, &w, None).unwrap().is_none());
    mark_ready(&spare).unwrap();
    assert_eq!(
        fs::metadata(spare.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap(),
        untouched,
        "only changed files are rewritten"
    );
    let taken = take_spare(&fx.project, &root, &w, None)
        .unwrap()
        .expect("brought forward");
    assert_eq!(taken.info.base_commit, fx.head());
    assert_eq!(snapshot(&spare), snapshot(&fx.project));
    assert!(diff(&spare, &taken.info.base_commit).unwrap().is_empty());
}

#[test]
fn concurrent_takers_never_share_a_spare() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let spare = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&spare).unwrap();
    let takers: Vec<_> = (0..4)
        .map(|_| {
            let (project, root, w) = (fx.project.clone(), root.clone(), w.clone());
            std::thread::spawn(move || take_spare(&project, &root, &w, None).unwrap().is_some())
        })
        .collect();
    let taken = takers
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|took| *took)
        .count();
    assert_eq!(taken, 1);
}

#[test]
fn a_spare_being_moved_is_not_taken_and_a_dead_move_is_dropped() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&a).unwrap();
    let listed = offered(&fx, &a);
    // a mover claims it as `bring_forward` does, then its process dies
    let dir = pool_dir(&root, &fx.project);
    fs::rename(dir.join("spare-s-a"), dir.join("moving-s-a")).unwrap();
    assert!(take_spare(&fx.project, &root, &w, None).unwrap().is_none());
    assert_eq!(
        bring_forward(&fx.project, &listed).unwrap(),
        Forward::Gone,
        "claimed by the mover"
    );
    assert!(is_pooled(&root, "s-a"), "the reaper leaves it to the pool");
    let moving = offered(&fx, &a);
    assert!(moving.moving && !moving.ready);
    // whoever holds the project's worktree lock next knows the mover is gone
    drop_spare(&fx.project, &moving).unwrap();
    assert!(!a.exists() && !is_pooled(&root, "s-a"));
    assert_eq!(refs(&fx.project).trim(), "");
}

#[test]
fn a_moved_spare_is_back_on_offer_and_taken_once_prepared_while_others_are_made() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&a).unwrap();
    fs::write(fx.project.join("a.txt"), "changed upstream\n").unwrap();
    git(&fx.project, &["commit", "-qam", "move"]);
    assert_eq!(
        bring_forward(&fx.project, &offered(&fx, &a)).unwrap(),
        Forward::Moved
    );
    let back = offered(&fx, &a);
    assert!(!back.moving && !back.ready);
    // a taker does not wait for the lock a worktree being made holds
    let repo = git2::Repository::open(&fx.project).unwrap();
    let held = crate::worktree::create::lock_worktrees(&repo).unwrap();
    mark_ready(&a).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (project, r, w2) = (fx.project.clone(), root.clone(), w.clone());
    std::thread::spawn(move || tx.send(take_spare(&project, &r, &w2, None).unwrap()));
    let taken = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the taker waited for the lock")
        .expect("ready at HEAD");
    drop(held);
    assert_eq!(taken.info.base_commit, fx.head());
    assert_eq!(snapshot(&a), snapshot(&fx.project));
}

#[test]
fn a_stale_listing_leaves_a_spare_another_process_moved_as_it_is() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    let a = make_spare(&fx.project, &root, &w, "s-a").unwrap();
    mark_ready(&a).unwrap();
    let stale = offered(&fx, &a);
    fs::write(fx.project.join("a.txt"), "changed upstream\n").unwrap();
    git(&fx.project, &["commit", "-qam", "move"]);
    // one process moves it and makes it ready again (its setup done)...
    assert_eq!(
        bring_forward(&fx.project, &offered(&fx, &a)).unwrap(),
        Forward::Moved
    );
    mark_ready(&a).unwrap();
    // ...another, with its listing from before, finds it at HEAD and leaves it on offer
    assert_eq!(bring_forward(&fx.project, &stale).unwrap(), Forward::AtHead);
    let now = offered(&fx, &a);
    assert!(now.ready && now.base == fx.head() && !now.moving);
    assert!(take_spare(&fx.project, &root, &w, None).unwrap().is_some());
}

#[test]
fn takers_racing_a_move_only_ever_get_a_spare_whole_at_head() {
    let fx = Fx::new();
    let (root, w) = (pool(&fx), wts(&fx));
    for round in 0..4 {
        let sid = format!("s-{round}");
        let spare = make_spare(&fx.project, &root, &w, &sid).unwrap();
        mark_ready(&spare).unwrap();
        let listed = offered(&fx, &spare);
        fs::write(fx.project.join("a.txt"), format!("round {round}\n")).unwrap();
        git(&fx.project, &["commit", "-qam", "move"]);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mover = {
            let (project, done, spare) = (fx.project.clone(), done.clone(), spare.clone());
            std::thread::spawn(move || {
                let moved = bring_forward(&project, &listed).unwrap();
                if moved == Forward::Moved {
                    mark_ready(&spare).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let (project, root, w, done) =
                    (fx.project.clone(), root.clone(), w.clone(), done.clone());
                std::thread::spawn(move || {
                    loop {
                        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                        if let Some(t) = take_spare(&project, &root, &w, None).unwrap() {
                            return Some(t);
                        }
                        if finished {
                            return None;
                        }
                    }
                })
            })
            .collect();
        mover.join().unwrap();
        let taken: Vec<Taken> = takers
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(
            taken.len(),
            1,
            "round {round}: one taker gets the moved spare"
        );
        let t = &taken[0];
        assert_eq!(t.info.base_commit, fx.head());
        assert_eq!(git(&spare, &["rev-parse", "HEAD"]).trim(), fx.head());
        assert_eq!(snapshot(&spare), snapshot(&fx.project));
        settle_taken(t).unwrap();
    }
}
