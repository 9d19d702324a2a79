use super::*;
use crate::domain::{EventKind, Usage, now_ms};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("open");
    (dir, store)
}

fn row(id: &str, session: &str, new_session: bool) -> NewTaskRow {
    NewTaskRow {
        retry_of: None,
        budget: Default::default(),
        id: id.into(),
        project_path: "/repo".into(),
        session_id: session.into(),
        new_session_provider: new_session.then(|| "cli".to_string()),
        new_session_worktree: None,
        parent_task_id: None,
        prompt: format!("prompt {id}"),
        provider: "cli".into(),
        model: None,
        mode: None,
        permission: None,
        options: Default::default(),
    }
}

/// Claim the next task and return its id.
async fn claim(s: &Store, node: &str, host: &str) -> Option<String> {
    s.claim_next(node, host)
        .await
        .expect("claim")
        .map(|c| c.id().to_owned())
}

#[tokio::test]
async fn a_claim_returns_the_whole_running_row() {
    let (_d, s) = store().await;
    let inserted = s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    let Some(crate::store::Claimed::Task(task)) = s.claim_next("n", "h").await.expect("claim")
    else {
        panic!("no task claimed");
    };
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.project_path, inserted.project_path);
    assert_eq!(task.prompt, inserted.prompt);
    assert!(task.started_at.is_some());
    assert_eq!(task.node_id.as_deref(), Some("n"));
    assert_eq!(
        s.task("t-1").await.expect("read").map(|t| t.state),
        Some(TaskState::Running)
    );
}

#[tokio::test]
async fn one_turn_per_session_is_claimed_at_a_time() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.insert_task(&row("t-2", "s-1", false)).await.expect("t2");
    s.insert_task(&row("t-3", "s-2", true)).await.expect("t3");
    assert_eq!(claim(&s, "n", "h").await.as_deref(), Some("t-1"));
    // t-2 shares s-1 with the running t-1, so the next claim skips to s-2.
    assert_eq!(claim(&s, "n", "h").await.as_deref(), Some("t-3"));
    assert_eq!(claim(&s, "n", "h").await, None);
    let done = Outcome::Completed {
        summary: "ok".into(),
        final_message: "all ok".into(),
    };
    assert!(
        s.finish_task("t-1", &done, Usage::default(), &[])
            .await
            .expect("f")
    );
    assert_eq!(claim(&s, "n", "h").await.as_deref(), Some("t-2"));
}

#[tokio::test]
async fn finished_tasks_cannot_be_rewritten() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    claim(&s, "n", "h").await;
    let done = Outcome::Completed {
        summary: "ok".into(),
        final_message: "all ok".into(),
    };
    assert!(
        s.finish_task("t-1", &done, Usage::default(), &[])
            .await
            .expect("f")
    );
    let late = Outcome::Failed {
        error: "late".into(),
        summary: None,
    };
    assert!(
        !s.finish_task("t-1", &late, Usage::default(), &[])
            .await
            .expect("f")
    );
    assert!(!s.set_state("t-1", TaskState::Running).await.expect("s"));
    let t = s.task("t-1").await.expect("get").expect("some");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.summary.as_deref(), Some("ok"));
}

#[tokio::test]
async fn tasks_of_dead_or_silent_nodes_are_failed() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.insert_task(&row("t-2", "s-2", true)).await.expect("t2");
    s.insert_task(&row("t-3", "s-3", true)).await.expect("t3");
    s.register_node("dead", "h", 1).await.expect("node");
    s.register_node("alive", "h", 2).await.expect("node");
    assert_eq!(claim(&s, "dead", "h").await.as_deref(), Some("t-1"));
    assert_eq!(claim(&s, "alive", "h").await.as_deref(), Some("t-2"));
    let failed = s
        .fail_tasks_of_nodes(&["dead".into()], "server restarted")
        .await
        .expect("fail");
    assert_eq!(failed, vec!["t-1".to_string()]);
    let t = s.task("t-1").await.expect("get").expect("some");
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TaskState::Failed, Some("server restarted"))
    );
    // A fresh heartbeat keeps "alive"'s task; a stale cutoff after it does not.
    assert!(
        s.fail_stale(now_ms() - 60_000, "lease")
            .await
            .expect("stale")
            .is_empty()
    );
    assert_eq!(
        s.fail_stale(now_ms() + 1, "lease").await.expect("stale"),
        vec!["t-2".to_string()]
    );
    assert_eq!(
        s.task("t-3").await.expect("get").expect("some").state,
        TaskState::Pending
    );
}

#[tokio::test]
async fn sessions_are_claimed_only_on_their_host() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.set_session_worktree("s-1", Some("/wt"), Some("b"), Some("abc"), "host-a")
        .await
        .expect("wt");
    assert_eq!(claim(&s, "n", "host-b").await, None);
    assert_eq!(claim(&s, "n", "host-a").await.as_deref(), Some("t-1"));
}

#[tokio::test]
async fn cancel_requests_reach_the_running_node() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    assert!(
        !s.request_cancel("t-1")
            .await
            .expect("pending is not running")
    );
    claim(&s, "n1", "h").await;
    assert!(s.request_cancel("t-1").await.expect("req"));
    assert_eq!(
        s.cancel_requests("n1").await.expect("poll"),
        vec!["t-1".to_string()]
    );
    assert!(s.cancel_requests("n2").await.expect("poll").is_empty());
}

#[tokio::test]
async fn pending_change_is_replaced_not_duplicated() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.replace_pending("s-1", "t-1", "abc", "tree", b"patch one", &[])
        .await
        .expect("r1");
    s.replace_pending("s-1", "t-1", "abc", "tree", b"patch two", &[])
        .await
        .expect("r2");
    let c = s.pending_change("s-1").await.expect("get").expect("some");
    assert_eq!(c.patch, b"patch two");
    s.replace_pending("s-1", "t-1", "abc", "tree", b"", &[])
        .await
        .expect("r3");
    assert_eq!(s.pending_change("s-1").await.expect("get"), None);
}

#[tokio::test]
async fn insert_with_unknown_session_writes_nothing() {
    let (_d, s) = store().await;
    let err = s.insert_task(&row("t-1", "s-missing", false)).await;
    assert!(
        err.is_err(),
        "foreign key must refuse a task on a missing session"
    );
    assert_eq!(s.task("t-1").await.expect("get"), None);
}

#[tokio::test]
async fn events_are_numbered_in_order_and_paged() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    let batch = vec![
        (EventKind::Text, "a".to_string(), None),
        (EventKind::Stderr, "b".to_string(), None),
    ];
    s.append_events("t-1", &batch).await.expect("a1");
    s.append_events("t-1", &[(EventKind::Text, "c".into(), None)])
        .await
        .expect("a2");
    let all = s.events("t-1", 0, 10, 100).await.expect("e");
    let texts: Vec<_> = all
        .iter()
        .map(|e| (e.event.seq, e.event.text.as_str()))
        .collect();
    assert_eq!(texts, vec![(1, "a"), (2, "b"), (3, "c")]);
    let page = s.events("t-1", 1, 1, 100).await.expect("e");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event.text, "b");
    assert!(!page[0].text_cut);
    let big = vec![(
        EventKind::ToolUpdate,
        "é".repeat(50),
        Some(serde_json::json!({"output": "x".repeat(100)})),
    )];
    s.append_events("t-1", &big).await.expect("a3");
    let cut = s.events("t-1", 3, 1, 10).await.expect("e");
    assert_eq!(cut[0].event.text, "é".repeat(10));
    assert!(cut[0].text_cut && cut[0].data_cut && cut[0].event.data.is_none());
}
