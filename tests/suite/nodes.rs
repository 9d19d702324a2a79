//! Several boocoder processes on one PostgreSQL queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

async fn completed(c: &Client, n: usize) -> Vec<TaskLine> {
    for _ in 0..600 {
        let page: TaskList = call_as(c, "list_tasks", json!({"state": "completed", "limit": 200}))
            .await
            .expect("list");
        if page.tasks.len() >= n {
            return page.tasks;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let others: TaskList = call_as(c, "list_tasks", json!({"limit": 200}))
        .await
        .expect("list");
    let stuck: Vec<String> = others
        .tasks
        .iter()
        .filter(|t| t.state != TaskState::Completed)
        .map(|t| format!("{} {} {:?}", t.task_id, t.state, t.result))
        .collect();
    panic!("fewer than {n} tasks completed; others: {stuck:#?}");
}

#[tokio::test]
async fn three_nodes_take_200_tasks_with_none_run_twice_or_lost() {
    let env = Env::postgres().await;
    let nodes = [
        Server::stdio(&env, &[]).await,
        Server::stdio(&env, &[]).await,
        Server::stdio(&env, &[]).await,
    ];
    let marks = env.root().join("marks.log");
    let started = std::time::Instant::now();
    let mut ids = BTreeSet::new();
    for i in 0..200 {
        let node = &nodes[i % 3].client;
        let t = new_task(node, json!({"prompt": format!("mark {}", marks.display())})).await;
        ids.insert(t.task_id);
    }
    let done = completed(&nodes[1].client, 200).await;
    eprintln!(
        "figure: 200 tasks through 3 PostgreSQL nodes in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let ran: Vec<String> = std::fs::read_to_string(&marks)
        .expect("marks")
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(ran.len(), 200, "every task ran exactly once");
    assert_eq!(
        ran.iter().cloned().collect::<BTreeSet<_>>(),
        ids,
        "no task lost or run twice"
    );
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for t in &done {
        *per_node
            .entry(t.node.clone().unwrap_or_else(|| "?".into()))
            .or_default() += 1;
    }
    eprintln!("figure: tasks per node {per_node:?}");
    assert!(per_node.len() >= 2, "the queue is shared: {per_node:?}");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_dead_nodes_tasks_are_failed_after_its_lease() {
    let env = Env::postgres().await;
    let a = Server::stdio(&env, &["--host-id", "machine-a", "--lease-secs", "2"]).await;
    let b = Server::stdio(&env, &["--host-id", "machine-b", "--lease-secs", "2"]).await;
    // Queue on a; both may claim a new session, so pin the turn to a with a session it owns.
    let first = new_task(
        &a.client,
        json!({"prompt": "say setup", "wait_seconds": 30}),
    )
    .await;
    let session = first.session_id;
    let host_of_first = first.node.unwrap_or_default();
    let (mut owner, other) = if host_of_first.starts_with("machine-a") {
        (a, b)
    } else {
        (b, a)
    };
    let id = new_task(
        &owner.client,
        json!({"prompt": "sleep 8", "session_id": session}),
    )
    .await
    .task_id;
    wait_state(&owner.client, &id, TaskState::Running).await;
    owner.child.start_kill().expect("kill -9");
    owner.child.wait().await.expect("reap");
    let s = wait_done(&other.client, &id).await;
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(
        s.error.as_deref(),
        Some("the boocoder node running the task stopped (no heartbeat for 2 s)")
    );
    other.stop().await;
}

#[tokio::test]
async fn a_node_without_notifications_still_finds_work_by_polling() {
    let env = Env::postgres().await;
    let busy = Server::stdio(&env, &["--max-concurrent", "1"]).await;
    let long_id = new_task(&busy.client, json!({"prompt": "sleep 5"}))
        .await
        .task_id;
    wait_state(&busy.client, &long_id, TaskState::Running).await;
    let long_node = task_status(&busy.client, &long_id).await.node;
    // The busy node's only slot is taken, so only the poller can run the next task, and it
    // hears no NOTIFY: it must find the task by polling.
    let poller = Server::stdio(&env, &["--no-listen", "--poll-secs", "0.3"]).await;
    let quick = new_task(&busy.client, json!({"prompt": "say polled"})).await;
    let s = wait_done(&busy.client, &quick.task_id).await;
    assert_eq!(s.state, TaskState::Completed);
    assert_ne!(s.node, long_node, "the polling node ran it");
    call(&busy.client, "cancel_task", json!({"task_id": long_id}))
        .await
        .expect("cancel");
    busy.stop().await;
    poller.stop().await;
}
