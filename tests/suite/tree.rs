//! Task trees: `list_tasks {parent_task_id, tree: true}` returns the whole subtree in reading
//! order with depths, a parent's status counts its descendants by state, and `boocoder tree`
//! draws it.

use std::process::Command;

use serde_json::json;

use crate::support::*;

crate::both_stores!(a_three_level_tree_is_listed_counted_and_drawn);
async fn a_three_level_tree_is_listed_counted_and_drawn(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let root = run_task(c, json!({"prompt": "say root"})).await;
    let a = run_task(
        c,
        json!({"prompt": "say child a", "parent_task_id": root.task_id}),
    )
    .await;
    let b = run_task(
        c,
        json!({"prompt": "say child b\nexit 1", "parent_task_id": root.task_id}),
    )
    .await;
    let g = run_task(
        c,
        json!({"prompt": "say grandchild", "parent_task_id": a.task_id}),
    )
    .await;
    // unrelated work stays out of the tree
    run_task(c, json!({"prompt": "say elsewhere"})).await;

    let tree: TaskList = call_as(
        c,
        "list_tasks",
        json!({"parent_task_id": root.task_id, "tree": true}),
    )
    .await
    .expect("list_tasks tree");
    let got: Vec<(String, Option<u32>)> = tree
        .tasks
        .iter()
        .map(|l| (l.task_id.clone(), l.depth))
        .collect();
    assert_eq!(
        got,
        vec![
            (root.task_id.clone(), Some(0)),
            (a.task_id.clone(), Some(1)),
            (g.task_id.clone(), Some(2)),
            (b.task_id.clone(), Some(1)),
        ]
    );

    let status: TaskStatus = call_as(c, "check_task_status", json!({"task_id": root.task_id}))
        .await
        .expect("status");
    let counts = status.descendants.expect("descendants");
    assert_eq!(counts.get("completed"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("failed"), Some(&1), "{counts:?}");
    let leaf: TaskStatus = call_as(c, "check_task_status", json!({"task_id": g.task_id}))
        .await
        .expect("status");
    assert_eq!(leaf.descendants, None);

    let err = call(c, "list_tasks", json!({"tree": true}))
        .await
        .expect_err("tree without a root");
    assert!(err.contains("invalid `tree`"), "{err}");

    let drawn = Command::new(BIN)
        .args(env.args())
        .args(["tree", &root.task_id])
        .env("NO_COLOR", "1")
        .output()
        .expect("boocoder tree");
    let text = String::from_utf8_lossy(&drawn.stdout);
    let expected = format!(
        "{} completed script root\n├─ {} completed script child a\n│  └─ {} completed script grandchild\n└─ {} failed script ",
        root.task_id, a.task_id, g.task_id, b.task_id
    );
    assert!(text.starts_with(&expected), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}
