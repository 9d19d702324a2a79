//! Retry and the inbox: a failed task runs again in its session with an amended prompt,
//! linked to the one it retries; only failed and cancelled tasks can be retried; the
//! `needs_attention` filter lists blocked and failed tasks together (tool and CLI).

use std::process::Command;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_failed_task_is_retried_with_an_amended_prompt_and_linked() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let failed = run_task(c, json!({"prompt": "write half.txt first half\nexit 3"})).await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:#?}");
    assert!(failed.next.contains("retry_task"), "{failed:#?}");
    let ok = run_task(c, json!({"prompt": "say fine"})).await;

    // the inbox holds the failed task, not the completed one
    let inbox: TaskList = call_as(c, "list_tasks", json!({"state": "needs_attention"}))
        .await
        .expect("list_tasks");
    let ids: Vec<&str> = inbox.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, vec![failed.task_id.as_str()]);

    let again: TaskStatus = call_as(
        c,
        "retry_task",
        json!({"task_id": failed.task_id, "prompt": "write half.txt first half\nappend half.txt second half\nsay done", "wait_seconds": 30}),
    )
    .await
    .expect("retry_task");
    assert_eq!(again.state, TaskState::Completed, "{again:#?}");
    assert_eq!(again.retry_of.as_deref(), Some(failed.task_id.as_str()));
    assert_eq!(again.session_id, failed.session_id);
    assert_eq!(again.agent, failed.agent);
    assert_eq!(changed(&again), vec![("half.txt".to_string(), 2, 0)]);

    // only failed or cancelled tasks
    let err = call(c, "retry_task", json!({"task_id": ok.task_id}))
        .await
        .expect_err("a completed task cannot be retried");
    assert!(
        err.contains("invalid `task_id`") && err.contains("only a failed or cancelled task"),
        "{err}"
    );
    let err = call(c, "list_tasks", json!({"state": "broken"}))
        .await
        .expect_err("unknown state");
    assert!(err.contains("needs_attention"), "{err}");
}

#[test]
fn the_cli_lists_the_inbox_and_retries() {
    let env = Env::new();
    let boocoder = |args: &[&str]| {
        Command::new(BIN)
            .args(env.args())
            .args(["--pool-size", "0"])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run boocoder")
    };
    let run = boocoder(&["run", "say trying\nexit 2", "--wait", "--json"]);
    let failed: TaskStatus = serde_json::from_slice(&run.stdout).expect("run --json");
    assert_eq!(failed.state, TaskState::Failed, "{failed:#?}");
    boocoder(&["run", "say fine", "--wait"]);

    let ls = boocoder(&["ls", "--attention", "--json"]);
    let lines: Vec<TaskLine> = serde_json::from_slice(&ls.stdout).expect("ls --json");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].task_id, failed.task_id);

    let retry = boocoder(&[
        "retry",
        &failed.task_id,
        "--prompt",
        "say fixed",
        "--wait",
        "--json",
    ]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let again: TaskStatus = serde_json::from_slice(&retry.stdout).expect("retry --json");
    assert_eq!(again.state, TaskState::Completed, "{again:#?}");
    assert_eq!(again.retry_of.as_deref(), Some(failed.task_id.as_str()));
    assert_eq!(again.summary.as_deref(), Some("fixed"));
}
