//! Every task reaches a terminal state: cancellation, agent failure, server death, shutdown.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

crate::both_stores!(cancel_stops_a_running_agent);
async fn cancel_stops_a_running_agent(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(c, json!({"prompt": "write partial.txt before sleeping\nsay sleeping\nsleep 60\nwrite never.txt x"}))
        .await;
    let id = t.task_id;
    wait_state(c, &id, TaskState::Running).await;
    // Let the agent get past its first directive so the partial edit exists.
    for _ in 0..100 {
        if std::fs::read_dir(env.data.join("worktrees"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("partial.txt"))
                        .is_ok_and(|t| t.ends_with('\n'))
                })
            })
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id}))
        .await
        .expect("cancel");
    assert_eq!(
        s.state,
        TaskState::Cancelled,
        "cancel_task returns once the agent is stopped: {s:#?}"
    );
    assert_eq!(s.error.as_deref(), Some("cancelled by request"));
    assert_eq!(
        changed(&s),
        vec![("partial.txt".to_string(), 1, 0)],
        "partial edits are kept as a pending change"
    );
    let again = call(c, "cancel_task", json!({"task_id": id}))
        .await
        .expect_err("already cancelled");
    assert!(again.contains("already cancelled"), "{again}");
    server.stop().await;
}

crate::both_stores!(cancel_a_pending_task_and_sessions_run_one_turn_at_a_time);
async fn cancel_a_pending_task_and_sessions_run_one_turn_at_a_time(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t1 = new_task(c, json!({"prompt": "sleep 60"})).await;
    let t2 = new_task(
        c,
        json!({"prompt": "say second", "session_id": t1.session_id}),
    )
    .await;
    let (id1, id2) = (t1.task_id, t2.task_id);
    wait_state(c, &id1, TaskState::Running).await;
    // The second turn of the same session waits for the first.
    assert_eq!(task_status(c, &id2).await.state, TaskState::Pending);
    let s2: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id2}))
        .await
        .expect("cancel pending");
    assert_eq!(s2.state, TaskState::Cancelled);
    let s1: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id1}))
        .await
        .expect("cancel running");
    assert_eq!(s1.state, TaskState::Cancelled);
    server.stop().await;
}

crate::both_stores!(failing_agent_fails_the_task_with_its_stderr);
async fn failing_agent_fails_the_task_with_its_stderr(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(c, json!({"prompt": "warn first-marker\nwarn boom-marker: disk on fire\nexit 3", "wait_seconds": 30}))
        .await;
    assert_eq!(t.state, TaskState::Failed, "{t:#?}");
    let err = t.error.as_deref().expect("error");
    assert!(err.contains("exit status 3"), "{err}");
    assert!(err.contains("boom-marker: disk on fire"), "{err}");
    // The server and other tasks carry on.
    let ok = new_task(c, json!({"prompt": "say still alive", "wait_seconds": 30})).await;
    assert_eq!(ok.state, TaskState::Completed);
    let out = output(c, &t.task_id, json!({})).await;
    let stderr: Vec<&str> = out
        .transcript
        .iter()
        .filter(|e| e.kind == EventKind::Stderr)
        .map(|e| e.text.as_str())
        .collect();
    assert!(stderr.concat().contains("first-marker"), "{stderr:?}");
    server.stop().await;
}

crate::both_stores!(killed_server_leaves_no_task_running_after_restart);
async fn killed_server_leaves_no_task_running_after_restart(env: Env) {
    let mut server = Server::stdio(&env, &[]).await;
    let marks = env.root().join("agent.pid");
    let prompt = format!("mark {}\nsleep 60", marks.display());
    let id = new_task(&server.client, json!({"prompt": prompt}))
        .await
        .task_id;
    wait_state(&server.client, &id, TaskState::Running).await;
    let mut agent_pid = None;
    for _ in 0..200 {
        let line = std::fs::read_to_string(&marks).unwrap_or_default();
        if line.ends_with('\n') {
            agent_pid = line.split_whitespace().nth(1).map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agent = format!("/proc/{}", agent_pid.expect("the agent wrote its pid"));
    server.child.start_kill().expect("kill -9");
    server.child.wait().await.expect("reap");
    assert!(
        std::path::Path::new(&agent).exists(),
        "a SIGKILLed server cannot take its agent along"
    );

    let server = Server::stdio(&env, &[]).await;
    // The restarted server stops what the dead one left running.
    let gone = |p: &str| {
        std::fs::read_to_string(format!("{p}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    };
    for _ in 0..100 {
        if gone(&agent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(&agent), "the orphaned agent {agent} was not stopped");
    let s = task_status(&server.client, &id).await;
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(
        s.error.as_deref(),
        Some("server restarted while the task was running")
    );
    let running: TaskList = call_as(&server.client, "list_tasks", json!({"state": "running"}))
        .await
        .expect("list");
    assert_eq!(running.tasks, vec![]);
    server.stop().await;
}

crate::both_stores!(stdin_eof_cancels_in_flight_turns_and_exits);
async fn stdin_eof_cancels_in_flight_turns_and_exits(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let id = new_task(&server.client, json!({"prompt": "sleep 60"}))
        .await
        .task_id;
    wait_state(&server.client, &id, TaskState::Running).await;
    let status = server.stop().await;
    assert!(status.success(), "{status:?}");

    let server = Server::stdio(&env, &[]).await;
    let s = task_status(&server.client, &id).await;
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    assert_eq!(s.error.as_deref(), Some("cancelled: the server shut down"));
    server.stop().await;
}

crate::both_stores!(wait_seconds_returns_the_running_state_when_time_runs_out);
async fn wait_seconds_returns_the_running_state_when_time_runs_out(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let t = new_task(
        &server.client,
        json!({"prompt": "sleep 60", "wait_seconds": 1}),
    )
    .await;
    assert!(
        [TaskState::Pending, TaskState::Running].contains(&t.state),
        "{t:#?}"
    );
    assert!(t.next.contains("check_task_status"), "{}", t.next);
    call(&server.client, "cancel_task", json!({"task_id": t.task_id}))
        .await
        .expect("cancel");
    server.stop().await;
}

#[tokio::test]
async fn sigterm_stops_claiming_cancels_in_flight_turns_and_exits() {
    let env = Env::new();
    let (mut child, url, _log) = Server::http(&env, &[]).await;
    let client = http_client(&env, &url).await;
    let id = new_task(&client, json!({"prompt": "sleep 60"}))
        .await
        .task_id;
    wait_state(&client, &id, TaskState::Running).await;
    let pid = child.id().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    drop(client);
    let server = Server::stdio(&env, &[]).await;
    let s = task_status(&server.client, &id).await;
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    assert_eq!(s.error.as_deref(), Some("cancelled: the server shut down"));
    server.stop().await;
}

#[tokio::test]
async fn orphan_worktrees_are_reaped_at_start_unless_young_dirty_or_owned() {
    let env = Env::new();
    let wts = env.data.join("worktrees");
    std::fs::create_dir_all(&wts).expect("mkdir");
    let add = |name: &str| {
        let path = wts.join(name);
        git(
            &env.repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("boocoder/{name}"),
                &path.display().to_string(),
            ],
        );
        path
    };
    let old = |p: &std::path::Path| {
        let o = std::process::Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(p)
            .output()
            .expect("touch");
        assert!(o.status.success());
    };
    let clean_old = add("s-orphan0clean");
    old(&clean_old);
    let dirty_old = add("s-orphan0dirty");
    std::fs::write(dirty_old.join("unsaved.txt"), "work\n").expect("write");
    old(&dirty_old);
    let young = add("s-orphan0young");

    let server = Server::stdio(&env, &[]).await;
    assert!(
        !clean_old.exists(),
        "a clean, old, unowned worktree is reaped"
    );
    let branches = git(&env.repo, &["branch", "--list", "boocoder/s-orphan0clean"]);
    assert!(
        branches.trim().is_empty(),
        "its branch is deleted too: {branches}"
    );
    assert!(
        dirty_old.join("unsaved.txt").exists(),
        "unsaved work is never reaped"
    );
    assert!(
        young.exists(),
        "a young directory may belong to a worktree being created"
    );
    server.stop().await;
}
