//! The warm worktree pool end to end: after a session of a project starts, spares are made
//! and prepared in the background; the next new session takes one (its first turn shows what
//! was prepared ahead); a spare behind a moved HEAD is not handed out; an idle project's
//! spares are dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// The spares on offer in the data directory's pool (each a token `spare-<session id>` in the
/// project's pool directory, its worktree at `worktrees/<session id>`), and which are ready.
fn spares(data: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    for project in std::fs::read_dir(data.join("pool"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for spare in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = spare.file_name().to_string_lossy().into_owned();
            if let Some(sid) = name.strip_prefix("spare-") {
                let p = data.join("worktrees").join(sid);
                let ready = p.join(".git/boocoder-spare-ready").exists();
                out.push((p, ready));
            }
        }
    }
    out
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_new_session_takes_a_prepared_spare_and_a_moved_head_is_respected() {
    let env = Env::new();
    let counter = env.root().join("setup-runs");
    let projects = json!({"projects": {env.repo.display().to_string(): {
        "setup": ["sh", "-c", format!("echo run >> '{}'", counter.display())]
    }}});
    std::fs::write(env.data.join("projects.json"), projects.to_string()).expect("write");
    let server = Server::stdio(&env, &["--pool-size", "1"]).await;
    let c = &server.client;

    let a = run_task(c, json!({"prompt": "say first"})).await;
    assert_eq!(a.state, TaskState::Completed, "{a:#?}");
    let text = transcript_text(c, &a.task_id).await;
    assert!(!text.contains("ahead of need"), "{text}");
    // the first session ran its setup; then one spare was made and prepared (setup again)
    until("a spare is ready", || {
        spares(&env.data).iter().filter(|(_, r)| *r).count() == 1
    })
    .await;
    assert_eq!(runs(&counter), 2);
    let (spare, _) = spares(&env.data).remove(0);

    let b = run_task(c, json!({"prompt": "run git rev-parse HEAD"})).await;
    assert_eq!(b.state, TaskState::Completed, "{b:#?}");
    // the spare became the session's worktree where it stood, its id the session's
    assert_eq!(spare, env.data.join("worktrees").join(&b.session_id));
    assert!(spares(&env.data).iter().all(|(p, _)| *p != spare));
    let text = transcript_text(c, &b.task_id).await;
    assert!(
        text.contains("made ready ahead of need (worktree pool)") && text.contains("finished"),
        "{text}"
    );
    let head = git(&env.repo, &["rev-parse", "HEAD"]);
    assert!(text.contains(head.trim()), "{text}");

    // HEAD moves: the next spare (made after b took one) is behind it and not handed out
    until("the pool is refilled", || {
        spares(&env.data).iter().filter(|(_, r)| *r).count() == 1
    })
    .await;
    std::fs::write(env.repo.join("moved.txt"), "new commit\n").expect("write");
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "moved"]);
    let new_head = git(&env.repo, &["rev-parse", "HEAD"]);
    let d = run_task(
        c,
        json!({"prompt": "run git rev-parse HEAD; cat moved.txt"}),
    )
    .await;
    assert_eq!(d.state, TaskState::Completed, "{d:#?}");
    let text = transcript_text(c, &d.task_id).await;
    assert!(text.contains(new_head.trim()), "{text}");
    assert!(text.contains("new commit"), "{text}");
}

#[tokio::test]
async fn an_idle_project_s_spares_are_dropped_leaving_nothing_behind() {
    let env = Env::new();
    let server = Server::stdio(
        &env,
        &[
            "--pool-size",
            "2",
            "--pool-ttl-secs",
            "1",
            "--reap-secs",
            "1",
        ],
    )
    .await;
    let c = &server.client;
    let a = run_task(c, json!({"prompt": "say hi"})).await;
    assert_eq!(a.state, TaskState::Completed, "{a:#?}");
    until("two spares exist", || spares(&env.data).len() == 2).await;
    until("the idle project's pool is gone", || {
        std::fs::read_dir(env.data.join("pool"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    })
    .await;
    // only the session's own worktree and hidden ref are left
    let left: Vec<_> = std::fs::read_dir(env.data.join("worktrees"))
        .expect("worktrees")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![a.session_id.clone()]);
    let refs = git(
        &env.repo,
        &["for-each-ref", "--format=%(refname)", "refs/boocoder"],
    );
    assert_eq!(refs.lines().count(), 1, "{refs}");
}

#[tokio::test]
async fn two_servers_on_one_data_directory_never_hand_out_the_same_spare() {
    let env = Env::new();
    // a setup command, so a spare's first turn says it was made ready ahead of need
    let projects = json!({"projects": {env.repo.display().to_string(): {"setup": ["true"]}}});
    std::fs::write(env.data.join("projects.json"), projects.to_string()).expect("write");
    let one = Server::stdio(&env, &["--pool-size", "2"]).await;
    let two = Server::stdio(&env, &["--pool-size", "2"]).await;
    let a = run_task(&one.client, json!({"prompt": "say warm up"})).await;
    assert_eq!(a.state, TaskState::Completed, "{a:#?}");
    until("two spares are ready", || {
        spares(&env.data).iter().filter(|(_, r)| *r).count() == 2
    })
    .await;
    let before: Vec<PathBuf> = spares(&env.data).into_iter().map(|(p, _)| p).collect();

    // Both servers start new sessions at once; each turn prints its worktree.
    let peers = [one.client.peer().clone(), two.client.peer().clone()];
    let mut handles = Vec::new();
    for i in 0..6 {
        let c = peers[i % 2].clone();
        handles.push(tokio::spawn(async move {
            new_task(&c, json!({"prompt": "run pwd"})).await.task_id
        }));
    }
    let mut worktrees = Vec::new();
    let mut from_pool = 0;
    for h in handles {
        let id = h.await.expect("join");
        let done = wait_done(&one.client, &id).await;
        assert_eq!(done.state, TaskState::Completed, "{done:#?}");
        let text = transcript_text(&one.client, &id).await;
        if text.contains("made ready ahead of need (worktree pool)") {
            from_pool += 1;
        }
        let wt = text
            .lines()
            .find(|l| l.contains("/worktrees/"))
            .unwrap_or_else(|| panic!("no worktree path in {text}"))
            .trim()
            .to_string();
        worktrees.push(wt);
    }
    let mut distinct = worktrees.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        6,
        "two sessions shared a worktree: {worktrees:#?}"
    );
    assert!(from_pool >= 1, "no session took a spare: {worktrees:#?}");
    assert!(from_pool <= 6);
    // a spare handed out is its session's worktree, at most once
    for spare in before {
        let name = spare
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let users = worktrees.iter().filter(|w| w.ends_with(&name)).count();
        assert!(
            users <= 1,
            "a spare went to {users} sessions: {worktrees:#?}"
        );
    }
}
