use super::*;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("open");
    (dir, store)
}

fn row(id: &str, session: &str, new_session: bool) -> NewTaskRow {
    NewTaskRow {
        id: id.into(),
        project_path: "/repo".into(),
        session_id: session.into(),
        new_session_provider: new_session.then(|| "cli".to_string()),
        parent_task_id: None,
        prompt: format!("prompt {id}"),
        provider: "cli".into(),
        model: None,
        mode: None,
        permission: None,
    }
}

#[tokio::test]
async fn one_turn_per_session_is_claimed_at_a_time() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.insert_task(&row("t-2", "s-1", false)).await.expect("t2");
    s.insert_task(&row("t-3", "s-2", true)).await.expect("t3");
    assert_eq!(s.claim_next("n").await.expect("c").as_deref(), Some("t-1"));
    // t-2 shares s-1 with the running t-1, so the next claim skips to s-2.
    assert_eq!(s.claim_next("n").await.expect("c").as_deref(), Some("t-3"));
    assert_eq!(s.claim_next("n").await.expect("c"), None);
    let done = Outcome::Completed {
        summary: "ok".into(),
        final_message: "all ok".into(),
    };
    assert!(
        s.finish_task("t-1", &done, Usage::default(), &[])
            .await
            .expect("f")
    );
    assert_eq!(s.claim_next("n").await.expect("c").as_deref(), Some("t-2"));
}

#[tokio::test]
async fn finished_tasks_cannot_be_rewritten() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.claim_next("n").await.expect("c");
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
async fn orphaned_running_tasks_are_failed() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.insert_task(&row("t-2", "s-2", true)).await.expect("t2");
    s.claim_next("n").await.expect("c");
    let ids = s.fail_orphaned("server restarted").await.expect("fail");
    assert_eq!(ids, vec!["t-1".to_string()]);
    let t = s.task("t-1").await.expect("get").expect("some");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_deref(), Some("server restarted"));
    let pending = s.task("t-2").await.expect("get").expect("some");
    assert_eq!(pending.state, TaskState::Pending);
}

#[tokio::test]
async fn pending_change_is_replaced_not_duplicated() {
    let (_d, s) = store().await;
    s.insert_task(&row("t-1", "s-1", true)).await.expect("t1");
    s.replace_pending("s-1", "t-1", "abc", b"patch one", &[])
        .await
        .expect("r1");
    s.replace_pending("s-1", "t-1", "abc", b"patch two", &[])
        .await
        .expect("r2");
    let c = s.pending_change("s-1").await.expect("get").expect("some");
    assert_eq!(c.patch, b"patch two");
    s.replace_pending("s-1", "t-1", "abc", b"", &[])
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
    let all = s.events("t-1", 0, 10).await.expect("e");
    let texts: Vec<_> = all.iter().map(|e| (e.seq, e.text.as_str())).collect();
    assert_eq!(texts, vec![(1, "a"), (2, "b"), (3, "c")]);
    let page = s.events("t-1", 1, 1).await.expect("e");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].text, "b");
}
