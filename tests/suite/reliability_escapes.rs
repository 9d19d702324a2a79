//! Issue 11, escapes: a project outside the allowed roots (item 6), an agent reaching the
//! user's repository through git (item 8), worktrees leaked by sessions closed in a crash
//! (item 15).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    Env, Server, TaskList, TaskState, TaskStatus, call, call_as, changed, git, new_task, run_task,
};

/// Server arguments without the harness's `--project` and `--allow-root`.
fn args_with_roots(env: &Env, roots: &[&Path]) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_string(),
        env.data.display().to_string(),
        "--default-agent".into(),
        "script".into(),
    ];
    for r in roots {
        args.extend(["--allow-root".into(), r.display().to_string()]);
    }
    args
}

#[tokio::test]
async fn item6_a_project_whose_work_tree_is_outside_the_allowed_roots_is_refused() {
    let env = Env::new();
    // A plain directory inside the allowed root, in a repository whose root is outside it.
    let sub = env.repo.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(sub.join("notes.txt"), "n\n").expect("write");
    // A git directory inside the allowed root whose work tree (`core.worktree`) is outside.
    let allowed = env.root().join("allowed");
    let gitdir_proj = allowed.join("proj");
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&gitdir_proj).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    git(&gitdir_proj, &["init", "-q"]);
    git(
        &gitdir_proj,
        &["config", "core.worktree", &outside.display().to_string()],
    );
    std::fs::write(outside.join("victim.txt"), "v\n").expect("write");
    git(&gitdir_proj, &["add", "-A"]);
    git(&gitdir_proj, &["commit", "-q", "-m", "init"]);
    // A repository wholly inside an allowed root is still fine.
    let inside = allowed.join("ok");
    std::fs::create_dir_all(&inside).expect("mkdir");
    git(&inside, &["init", "-q"]);
    std::fs::write(inside.join("a.txt"), "a\n").expect("write");
    git(&inside, &["add", "-A"]);
    git(&inside, &["commit", "-q", "-m", "init"]);

    let server = Server::stdio_with(&env, args_with_roots(&env, &[&sub, &allowed]), &[]).await;
    let c = &server.client;
    for (project, work_tree) in [(&sub, &env.repo), (&gitdir_proj, &outside)] {
        let err = call(
            c,
            "new_task",
            json!({"prompt": "write escaped.txt yes", "project": project}),
        )
        .await
        .expect_err("a project whose work tree is outside the roots is refused");
        assert!(err.contains("invalid `project`"), "{err}");
        assert!(err.contains(&project.display().to_string()), "{err}");
        assert!(err.contains(&work_tree.display().to_string()), "{err}");
        assert!(err.contains(&sub.display().to_string()), "{err}");
        assert!(err.contains("outside the allowed roots"), "{err}");
    }
    let t: TaskStatus = call_as(
        c,
        "new_task",
        json!({"prompt": "write b.txt b", "project": inside, "wait_seconds": 30}),
    )
    .await
    .expect("a repository inside the roots is accepted");
    assert_eq!(t.state, TaskState::Completed, "{t:#?}");
    let listed: TaskList = call_as(c, "list_tasks", json!({})).await.expect("list");
    assert_eq!(listed.tasks.len(), 1, "{listed:#?}");
    server.stop().await;
    assert!(!env.repo.join("escaped.txt").exists());
    assert!(!outside.join("escaped.txt").exists());
}

/// Everything of the user's repository an agent could change through git: config, hooks,
/// refs (branches, tags, HEAD) and the stash.
fn repo_state(repo: &Path) -> String {
    let config = std::fs::read_to_string(repo.join(".git/config")).expect("config");
    let mut hooks: Vec<String> = std::fs::read_dir(repo.join(".git/hooks"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    hooks.sort();
    let refs = git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
            "refs/stash",
        ],
    );
    let head = git(repo, &["symbolic-ref", "HEAD"]);
    let stash = git(repo, &["stash", "list"]);
    format!("config:\n{config}\nhooks: {hooks:?}\nrefs:\n{refs}\nHEAD: {head}\nstash:\n{stash}")
}

/// What an agent does with git in its worktree: it edits config and hooks, stashes an edit,
/// deletes and moves branches, tags; then makes the edit it keeps.
const GIT_AGENT: &str = r#"set -u
git config core.hooksPath /tmp/boocoder-evil-hooks
git config user.name agent
git config user.email agent@example.com
hooks=$(git rev-parse --git-path hooks)
mkdir -p "$hooks"
printf '#!/bin/sh\nexit 1\n' > "$hooks/pre-commit"
chmod +x "$hooks/pre-commit"
printf 'stashed edit\n' >> README.md
git stash
git branch -D feature
git update-ref refs/heads/main "$(git commit-tree 'HEAD^{tree}' -m evil)"
git tag agent-tag
printf 'kept\n' > second.txt
echo done
"#;

crate::both_stores!(item8_git_in_the_worktree_cannot_change_the_users_repository);
async fn item8_git_in_the_worktree_cannot_change_the_users_repository(env: Env) {
    git(&env.repo, &["branch", "feature"]);
    let providers_file = env.data.join("providers.json");
    let mut providers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&providers_file).expect("read"))
            .expect("json");
    providers["providers"]["git-agent"] = json!({
        "extends": "cli", "command": ["sh", "-c", GIT_AGENT], "prompt": "stdin"
    });
    std::fs::write(&providers_file, providers.to_string()).expect("write");
    let before = repo_state(&env.repo);

    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = run_task(c, json!({"prompt": "use git", "agent": "git-agent"})).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(
        repo_state(&env.repo),
        before,
        "the user's repository is untouched"
    );
    // The stashed edit left the worktree; the edit made after it is the pending change.
    let paths: Vec<String> = changed(&s).into_iter().map(|f| f.0).collect();
    assert_eq!(paths, ["second.txt"], "{s:#?}");
    server.stop().await;
}

/// Mark a session closed in the store with its worktree still on disk, as a crash can leave
/// it (a worktree created but never recorded is not removed when its session closes).
async fn close_in_store(env: &Env, session: &str) {
    use sqlx::Connection;
    let sql = "UPDATE sessions SET closed = 1, worktree_path = NULL WHERE id = $1";
    match &env.pg {
        Some(pg) => {
            let mut conn = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
            sqlx::query(sql)
                .bind(session)
                .execute(&mut conn)
                .await
                .expect("update");
        }
        None => {
            let url = format!("sqlite://{}", env.data.join("boocoder.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query(sql)
                .bind(session)
                .execute(&mut conn)
                .await
                .expect("update");
        }
    }
}

crate::both_stores!(item15_a_running_server_reaps_worktrees_leaked_by_closed_sessions);
async fn item15_a_running_server_reaps_worktrees_leaked_by_closed_sessions(env: Env) {
    let server = Server::stdio(&env, &["--reap-secs", "1"]).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "write unapplied.txt left behind", "wait_seconds": 30}),
    )
    .await;
    assert_eq!(t.state, TaskState::Completed, "{t:#?}");
    let session = t.session_id;
    let wt = env.data.join("worktrees").join(&session);
    assert!(wt.join("unapplied.txt").is_file());

    // After start-up, while the server runs: the session is closed, its worktree leaked.
    close_in_store(&env, &session).await;
    let ours = |r: &str| r.contains(&session);
    let mut gone = false;
    for _ in 0..100 {
        let refs = git(&env.repo, &["for-each-ref", "--format=%(refname)"]);
        if !wt.exists() && !refs.lines().any(ours) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the leaked worktree and its ref are reaped while the server runs; log:\n{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains("removed the worktree a closed session left behind"),
        "{}",
        server.log()
    );
    // The server carries on.
    let t2 = new_task(
        c,
        json!({"prompt": "write next.txt fine", "wait_seconds": 30}),
    )
    .await;
    assert_eq!(t2.state, TaskState::Completed, "{t2:#?}");
    assert_eq!(
        env.read("unapplied.txt"),
        None,
        "the checkout never saw the change"
    );
    server.stop().await;
}
