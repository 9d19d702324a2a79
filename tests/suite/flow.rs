//! The main path: new_task → status → output → apply, follow-ups, conflicts, discard.

use serde_json::json;

use crate::support::*;

/// The whole round trip; shared by the stdio and HTTP tests.
pub async fn round_trip(client: &Client, env: &Env) {
    let prompt = "write src/new.txt brand new\nappend README.md appended line\ndelete keep.txt\nsay all three edits done";
    let t = new_task(client, json!({"prompt": prompt})).await;
    assert_eq!(t.state, TaskState::Pending);
    let id = t.task_id;
    assert!(t.session_id.starts_with("s-"), "{}", t.session_id);

    let s = wait_done(client, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(s.summary.as_deref(), Some("all three edits done"));
    let mut files = changed(&s);
    files.sort();
    assert_eq!(
        files,
        vec![
            ("README.md".to_string(), 1, 0),
            ("keep.txt".to_string(), 0, 1),
            ("src/new.txt".to_string(), 1, 0),
        ]
    );
    // Nothing has touched the checkout yet.
    assert_eq!(env.read("src/new.txt"), None);
    assert_eq!(env.read("keep.txt").as_deref(), Some("keep\n"));

    let out = output(client, &id, json!({})).await;
    let kinds: Vec<EventKind> = out.transcript.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::Prompt));
    assert!(kinds.contains(&EventKind::Text), "{kinds:?}");
    assert_eq!(out.final_message.as_deref(), Some("all three edits done"));
    let diff = &out.diff;
    assert!(diff.contains("+++ b/src/new.txt"), "{diff}");
    assert!(diff.contains("+appended line"), "{diff}");
    assert!(diff.contains("--- a/keep.txt"), "{diff}");
    assert_eq!(out.change_status.as_deref(), Some("pending"));

    let dry: ApplyOutcome = call_as(
        client,
        "apply_pending",
        json!({"task_id": id, "dry_run": true}),
    )
    .await
    .expect("dry run");
    assert_eq!(dry.result, "would_apply");
    assert_eq!(env.read("src/new.txt"), None, "dry run must write nothing");

    let applied: ApplyOutcome = call_as(client, "apply_pending", json!({"task_id": id}))
        .await
        .expect("apply");
    assert_eq!(applied.result, "applied");
    assert_eq!(env.read("src/new.txt").as_deref(), Some("brand new\n"));
    assert_eq!(
        env.read("README.md").as_deref(),
        Some("# demo\n\nline three\nappended line\n")
    );
    assert_eq!(env.read("keep.txt"), None);

    let again = call(client, "apply_pending", json!({"task_id": id}))
        .await
        .expect_err("second apply");
    assert!(again.contains("already applied"), "{again}");
}

crate::both_stores!(round_trip_over_stdio);
async fn round_trip_over_stdio(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    round_trip(&server.client, &env).await;
    let status = server.stop().await;
    assert!(status.success(), "server exit: {status:?}");
}

crate::both_stores!(follow_up_turns_accumulate_and_apply_rebaselines);
async fn follow_up_turns_accumulate_and_apply_rebaselines(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t1 = new_task(c, json!({"prompt": "write one.txt first"})).await;
    let session = t1.session_id;
    assert_eq!(wait_done(c, &t1.task_id).await.state, TaskState::Completed);

    // Second turn in the same session sees the first turn's file and adds another.
    let t2 = new_task(
        c,
        json!({"prompt": "append one.txt more\nwrite two.txt second", "session_id": session}),
    )
    .await;
    assert_eq!(t2.session_id, session);
    let id2 = t2.task_id;
    let s2 = wait_done(c, &id2).await;
    let mut f2 = changed(&s2);
    f2.sort();
    assert_eq!(
        f2,
        vec![("one.txt".to_string(), 2, 0), ("two.txt".to_string(), 1, 0)]
    );

    call(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("apply");
    assert_eq!(env.read("one.txt").as_deref(), Some("first\nmore\n"));

    // After applying, the next turn's diff holds only its own work.
    let t3 = new_task(
        c,
        json!({"prompt": "write three.txt third", "continue_task_id": id2}),
    )
    .await;
    let s3 = wait_done(c, &t3.task_id).await;
    assert_eq!(changed(&s3), vec![("three.txt".to_string(), 1, 0)]);
    server.stop().await;
}

crate::both_stores!(conflicting_local_edit_refuses_and_touches_nothing);
async fn conflicting_local_edit_refuses_and_touches_nothing(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(c, json!({"prompt": "write fresh.txt new file\nappend README.md from agent", "wait_seconds": 30}))
        .await;
    assert_eq!(t.state, TaskState::Completed, "{t:#?}");
    std::fs::write(env.repo.join("README.md"), "# demo\n\nuser changed this\n")
        .expect("local edit");

    let err = call(c, "apply_pending", json!({"task_id": t.task_id}))
        .await
        .expect_err("conflict");
    assert!(err.contains("README.md"), "{err}");
    assert!(
        !err.contains("fresh.txt"),
        "only the conflicting file is named: {err}"
    );
    assert_eq!(
        env.read("fresh.txt"),
        None,
        "no file of the change may be written"
    );
    assert_eq!(
        env.read("README.md").as_deref(),
        Some("# demo\n\nuser changed this\n")
    );
    let dry = call(
        c,
        "apply_pending",
        json!({"task_id": t.task_id, "dry_run": true}),
    )
    .await
    .expect_err("dry conflict");
    assert!(dry.contains("README.md"), "{dry}");
    server.stop().await;
}

crate::both_stores!(discard_drops_the_change_and_resets_the_worktree);
async fn discard_drops_the_change_and_resets_the_worktree(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "write junk.txt unwanted", "wait_seconds": 30}),
    )
    .await;
    let session = t.session_id;
    let d: ApplyOutcome = call_as(c, "discard_pending", json!({"task_id": t.task_id}))
        .await
        .expect("discard");
    assert_eq!(d.result, "discarded");
    let err = call(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect_err("nothing left");
    assert!(err.contains("discarded"), "{err}");
    // The next turn starts clean: its change does not resurrect the discarded file.
    let t2 = new_task(
        c,
        json!({"prompt": "write keep2.txt wanted", "session_id": session, "wait_seconds": 30}),
    )
    .await;
    assert_eq!(changed(&t2), vec![("keep2.txt".to_string(), 1, 0)]);
    server.stop().await;
}

crate::both_stores!(list_tasks_filters_and_pages);
async fn list_tasks_filters_and_pages(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let parent = new_task(c, json!({"prompt": "say parent", "wait_seconds": 30})).await;
    let pid = parent.task_id;
    let mut kids = Vec::new();
    for i in 0..3 {
        let k = new_task(c, json!({"prompt": format!("say child {i}"), "parent_task_id": pid, "agent": "script-arg"}))
            .await;
        kids.push(k.task_id);
    }
    for k in &kids {
        assert_eq!(wait_done(c, k).await.state, TaskState::Completed);
    }
    let ids = |l: &TaskList| {
        l.tasks
            .iter()
            .map(|t| t.task_id.clone())
            .collect::<Vec<_>>()
    };
    let page1: TaskList = call_as(c, "list_tasks", json!({"parent_task_id": pid, "limit": 2}))
        .await
        .expect("list");
    assert_eq!(
        ids(&page1),
        vec![kids[2].clone(), kids[1].clone()],
        "newest first"
    );
    let cursor = page1.next_cursor.expect("cursor");
    let page2: TaskList = call_as(
        c,
        "list_tasks",
        json!({"parent_task_id": pid, "limit": 2, "cursor": cursor}),
    )
    .await
    .expect("page 2");
    assert_eq!(ids(&page2), vec![kids[0].clone()]);
    assert_eq!(page2.next_cursor, None);
    let all: TaskList = call_as(c, "list_tasks", json!({"state": "completed"}))
        .await
        .expect("by state");
    assert_eq!(all.tasks.len(), 4);
    assert_eq!(all.tasks[0].result.as_deref(), Some("child 2"));
    server.stop().await;
}

crate::both_stores!(closing_a_session_removes_its_worktree_and_refuses_more_turns);
async fn closing_a_session_removes_its_worktree_and_refuses_more_turns(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "write done.txt yes", "wait_seconds": 30}),
    )
    .await;
    let session = t.session_id;
    let wt = env.data.join("worktrees").join(&session);
    assert!(wt.is_dir());
    let dry = call(
        c,
        "apply_pending",
        json!({"session_id": session, "dry_run": true, "close_session": true}),
    )
    .await
    .expect_err("dry run cannot close");
    assert!(dry.contains("invalid `close_session`"), "{dry}");
    let r: ApplyOutcome = call_as(
        c,
        "apply_pending",
        json!({"session_id": session, "close_session": true}),
    )
    .await
    .expect("apply+close");
    assert!(r.session_closed, "{r:#?}");
    assert_eq!(env.read("done.txt").as_deref(), Some("yes\n"));
    assert!(!wt.exists(), "the worktree is removed");
    let refs = git(&env.repo, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        !refs.contains(&session),
        "no branch or ref of the session is left in the project: {refs}"
    );
    let err = call(
        c,
        "new_task",
        json!({"prompt": "say more", "session_id": session}),
    )
    .await
    .expect_err("closed");
    assert!(err.contains("is closed"), "{err}");
    // A session with an unapplied change is not closed silently.
    let t2 = new_task(
        c,
        json!({"prompt": "write keep.txt changed", "wait_seconds": 30}),
    )
    .await;
    let out = std::process::Command::new(BIN)
        .args(env.args())
        .args(["close", &t2.session_id])
        .output()
        .expect("close verb");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unapplied change"));
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_reaped_but_unapplied_work_is_kept() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--session-ttl-secs", "1"]).await;
    let c = &server.client;
    let idle = new_task(
        c,
        json!({"prompt": "say nothing to keep", "wait_seconds": 30}),
    )
    .await;
    let busy = new_task(
        c,
        json!({"prompt": "write w.txt unapplied", "wait_seconds": 30}),
    )
    .await;
    let wt = |t: &TaskStatus| env.data.join("worktrees").join(&t.session_id);
    for _ in 0..100 {
        if !wt(&idle).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !wt(&idle).exists(),
        "an idle session with nothing pending is closed"
    );
    assert!(
        wt(&busy).exists(),
        "a session holding an unapplied change is kept"
    );
    server.stop().await;
}
