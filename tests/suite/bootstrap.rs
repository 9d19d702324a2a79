//! A session worktree made ready to build: `.worktreeinclude` files copied from the checkout,
//! and the project's setup command run once per session before its first turn (a failure
//! fails the turn and the next turn tries again).

use serde_json::json;

use crate::support::*;

fn set_setup(env: &Env, argv: &[&str]) {
    let projects = json!({"projects": {env.repo.display().to_string(): {"setup": argv}}});
    std::fs::write(env.data.join("projects.json"), projects.to_string()).expect("projects.json");
}

fn runs(counter: &std::path::Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn include_files_arrive_setup_runs_once_and_neither_reaches_the_change() {
    let env = Env::new();
    std::fs::write(env.repo.join(".gitignore"), ".env\n").expect("write");
    std::fs::write(env.repo.join(".worktreeinclude"), ".env\n").expect("write");
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "include"]);
    std::fs::write(env.repo.join(".env"), "API_KEY=local-only\n").expect("write");
    let counter = env.root().join("setup-runs");
    let script = format!(
        "echo run >> '{}' && echo generated > generated.txt && echo setup says hello",
        counter.display()
    );
    set_setup(&env, &["sh", "-c", &script]);
    let server = Server::stdio(&env, &["--pool-size", "0"]).await;
    let c = &server.client;

    let s1 = run_task(
        c,
        json!({"prompt": "run cat .env generated.txt > seen.txt"}),
    )
    .await;
    assert_eq!(s1.state, TaskState::Completed, "{s1:#?}");
    assert_eq!(runs(&counter), 1);
    let text = transcript_text(c, &s1.task_id).await;
    assert!(
        text.contains(".worktreeinclude: copied .env from the checkout"),
        "{text}"
    );
    assert!(text.contains("(from projects.json) finished"), "{text}");
    assert!(text.contains("setup says hello"), "{text}");
    // the agent saw the copied file and what setup generated; the pending change holds only
    // what the agent made (generated.txt is the setup's, but it is a file like any other)
    let changed: Vec<String> = changed(&s1).into_iter().map(|f| f.0).collect();
    assert!(changed.contains(&"seen.txt".to_string()), "{s1:#?}");
    assert!(!changed.contains(&".env".to_string()), "{s1:#?}");

    let s2 = run_task(
        c,
        json!({"prompt": "say again", "session_id": s1.session_id}),
    )
    .await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    assert_eq!(runs(&counter), 1, "setup ran again on a follow-up");
    let text = transcript_text(c, &s2.task_id).await;
    assert!(!text.contains("setup "), "{text}");

    call(c, "apply_pending", json!({"session_id": s1.session_id}))
        .await
        .expect("apply");
    assert_eq!(
        env.read("seen.txt").as_deref(),
        Some("API_KEY=local-only\ngenerated\n")
    );
    assert_eq!(env.read(".env").as_deref(), Some("API_KEY=local-only\n"));
}

#[tokio::test]
async fn a_failing_setup_fails_the_turn_and_the_next_turn_runs_it_again() {
    let env = Env::new();
    let counter = env.root().join("setup-runs");
    let failing = format!(
        "echo run >> '{}'; echo missing-dependency-xyz >&2; exit 3",
        counter.display()
    );
    set_setup(&env, &["sh", "-c", &failing]);
    let server = Server::stdio(&env, &["--pool-size", "0"]).await;
    let c = &server.client;

    let s1 = run_task(c, json!({"prompt": "write made.txt never"})).await;
    assert_eq!(s1.state, TaskState::Failed, "{s1:#?}");
    let error = s1.error.as_deref().unwrap_or("");
    assert!(
        error.contains("the project's setup `sh -c")
            && error.contains("failed with exit status: 3")
            && error.contains("missing-dependency-xyz"),
        "{error}"
    );
    assert_eq!(runs(&counter), 1);
    assert!(s1.files_changed.is_empty(), "{s1:#?}");

    let fixed = format!("echo run >> '{}'", counter.display());
    set_setup(&env, &["sh", "-c", &fixed]);
    let s2 = run_task(
        c,
        json!({"prompt": "write made.txt now", "session_id": s1.session_id}),
    )
    .await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    assert_eq!(runs(&counter), 2);
    let s3 = run_task(
        c,
        json!({"prompt": "say done", "session_id": s1.session_id}),
    )
    .await;
    assert_eq!(s3.state, TaskState::Completed, "{s3:#?}");
    assert_eq!(runs(&counter), 2);
}
