//! Worktrees: creating one, its pending diff and applying it to the checkout, against
//! `git worktree add`, `git diff --binary` and `git apply --binary`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use super::{fig, git, synthetic_repo};
use crate::{Figure, Opts};

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let sizes: &[usize] = if opts.quick { &[1000] } else { &[1000, 10_000] };
    let mut out = Vec::new();
    for &files in sizes {
        let base = opts.work.path().join(format!("wt-{files}"));
        std::fs::create_dir_all(&base)?;
        let repo = synthetic_repo(&base, files)?;
        let (mut ours, mut theirs, mut diff_ours, mut diff_git) = (vec![], vec![], vec![], vec![]);
        let (mut apply_ours, mut apply_git) = (vec![], vec![]);
        let (mut pooled, mut git_fast) = (vec![], vec![]);
        for rep in 0..opts.reps {
            // The pool: a spare made and marked ready ahead (untimed), then taken as a
            // session's worktree; against `git worktree add` the way boocoder runs git
            // (parallel checkout, hooks off).
            let pool = base.join("pool");
            let pooled_wts = base.join("pooled");
            let (r, p, w) = (repo.clone(), pool.clone(), pooled_wts.clone());
            let spare = tokio::task::spawn_blocking(move || {
                boocoder::worktree::make_spare(&r, &p, &w, &format!("pooled-{rep}"))
            })
            .await??;
            boocoder::worktree::mark_ready(&spare)?;
            let t = Instant::now();
            let (r, p, w) = (repo.clone(), pool.clone(), pooled_wts.clone());
            let got = tokio::task::spawn_blocking(move || {
                let taken = boocoder::worktree::take_spare(&r, &p, &w, None)?;
                if let Some(t) = &taken {
                    boocoder::worktree::settle_taken(t)?;
                }
                Ok::<_, boocoder::worktree::WorktreeError>(taken)
            })
            .await??;
            pooled.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(got.is_some(), "the ready spare was not taken");
            let fast = base.join(format!("git-fast-{rep}"));
            let t = Instant::now();
            git(
                &repo,
                &[
                    "-c",
                    "checkout.workers=0",
                    "-c",
                    "core.hooksPath=/dev/null",
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    &format!("bench/git-fast-{rep}"),
                    &fast.display().to_string(),
                ],
            )?;
            git_fast.push(t.elapsed().as_secs_f64() * 1e3);

            let wt = base.join(format!("ours-{rep}"));
            let t = Instant::now();
            let (r, w) = (repo.clone(), wt.clone());
            let info = tokio::task::spawn_blocking(move || {
                boocoder::worktree::create(&r, &w, &format!("bench/ours-{rep}"))
            })
            .await??;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            let plain = base.join(format!("git-{rep}"));
            let t = Instant::now();
            git(
                &repo,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    &format!("bench/git-{rep}"),
                    &plain.display().to_string(),
                ],
            )?;
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            for dir in [&info.path, &plain] {
                for i in 0..20 {
                    let f = dir.join(format!(
                        "d{:03}/f{}.txt",
                        (i * 37 % files) / 100,
                        i * 37 % files
                    ));
                    std::fs::write(&f, format!("changed {i}\n"))?;
                }
                std::fs::write(dir.join("new-file.txt"), "untracked\n")?;
            }
            let t = Instant::now();
            let (p, b) = (info.path.clone(), info.base_commit.clone());
            let snap =
                tokio::task::spawn_blocking(move || boocoder::worktree::snapshot(&p, &b)).await??;
            diff_ours.push(t.elapsed().as_secs_f64() * 1e3);
            let d = &snap.diff;
            anyhow::ensure!(
                d.files.len() == 21,
                "expected 21 changed files, got {}",
                d.files.len()
            );
            let t = Instant::now();
            git(&plain, &["add", "-N", "."])?;
            let o = Command::new("git")
                .args(["diff", "--binary", &info.base_commit])
                .current_dir(&plain)
                .output()?;
            anyhow::ensure!(o.status.success());
            diff_git.push(t.elapsed().as_secs_f64() * 1e3);

            // The same change applied to the checkout: ours (lock, check every preimage,
            // durable journal, previous contents kept, write, drop the journal) against
            // `git apply --binary` of its patch. The checkout is reset between the two.
            let (r, w, b, tree) = (
                repo.clone(),
                info.path.clone(),
                info.base_commit.clone(),
                snap.tree.clone(),
            );
            let t = Instant::now();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let lock = boocoder::worktree::CheckoutLock::acquire(
                    &r,
                    std::time::Duration::from_secs(10),
                )?;
                let trees = boocoder::worktree::ChangeTrees {
                    worktree: &w,
                    base: &b,
                    tree: &tree,
                };
                lock.apply(trees, "bench")?;
                lock.finish()?;
                Ok(())
            })
            .await??;
            apply_ours.push(t.elapsed().as_secs_f64() * 1e3);
            reset_checkout(&repo)?;
            let patch = base.join(format!("change-{rep}.patch"));
            std::fs::write(&patch, &d.patch)?;
            let t = Instant::now();
            git(&repo, &["apply", "--binary", &patch.display().to_string()])?;
            apply_git.push(t.elapsed().as_secs_f64() * 1e3);
            reset_checkout(&repo)?;
        }
        let gw = format!("git worktree add, {files} files");
        out.push(fig("worktree", gw.clone(), "ms", theirs, None));
        out.push(fig(
            "worktree",
            format!("boocoder worktree ready, {files} files"),
            "ms",
            ours,
            Some(&gw),
        ));
        let gf = format!("git worktree add (parallel checkout, hooks off), {files} files");
        out.push(fig("worktree", gf.clone(), "ms", git_fast, None));
        out.push(fig(
            "worktree",
            format!("boocoder worktree from the pool (take a spare), {files} files"),
            "ms",
            pooled,
            Some(&gf),
        ));
        let gd = format!("git add -N + diff --binary, {files} files");
        out.push(fig("worktree", gd.clone(), "ms", diff_git, None));
        out.push(fig(
            "worktree",
            format!("boocoder pending diff, {files} files"),
            "ms",
            diff_ours,
            Some(&gd),
        ));
        let ga = "git apply --binary, 21 changed files".to_string();
        out.push(fig("worktree", ga.clone(), "ms", apply_git, None));
        out.push(fig(
            "worktree",
            format!("boocoder apply_pending, 21 of {files} files (journaled)"),
            "ms",
            apply_ours,
            Some(&ga),
        ));
    }
    Ok(out)
}

/// Put the benchmark's checkout back at its commit.
fn reset_checkout(repo: &Path) -> Result<()> {
    git(repo, &["checkout", "-q", "--", "."])?;
    git(repo, &["clean", "-fdq"])
}
