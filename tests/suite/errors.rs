//! Bad input gets a clear error naming the field, and writes nothing.

use serde_json::json;

use crate::support::*;

crate::both_stores!(invalid_new_task_arguments_name_the_field_and_write_nothing);
async fn invalid_new_task_arguments_name_the_field_and_write_nothing(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let not_repo = env.root().join("plain");
    std::fs::create_dir_all(&not_repo).expect("mkdir");
    let outside = tempfile::tempdir().expect("outside");
    let outside_repo = outside.path().join("r");
    std::fs::create_dir_all(&outside_repo).expect("mkdir");
    git(&outside_repo, &["init", "-q"]);

    let cases = [
        (json!({}), "prompt"),
        (json!({"prompt": "   "}), "invalid `prompt`"),
        (
            json!({"prompt": "x", "agent": "nope"}),
            "unknown provider `nope`; available: fake, fake-ask, fake-deny, script, script-arg",
        ),
        (
            json!({"prompt": "x", "project": not_repo}),
            "invalid `project`",
        ),
        (
            json!({"prompt": "x", "project": env.root().join("missing")}),
            "invalid `project`",
        ),
        (
            json!({"prompt": "x", "project": outside_repo}),
            "outside the allowed roots",
        ),
        (
            json!({"prompt": "x", "session_id": "s-000000000000"}),
            "invalid `session_id`",
        ),
        (
            json!({"prompt": "x", "continue_task_id": "t-000000000000"}),
            "invalid `continue_task_id`",
        ),
        (
            json!({"prompt": "x", "parent_task_id": "t-000000000000"}),
            "invalid `parent_task_id`",
        ),
        (json!({"prompt": "x", "mode": "code"}), "invalid `mode`"),
        (json!({"prompt": "x", "bogus": 1}), "bogus"),
    ];
    for (args, expect) in cases {
        let err = call(c, "new_task", args.clone())
            .await
            .expect_err(&format!("{args} must fail"));
        assert!(err.contains(expect), "{args}: {err}");
    }
    let none: TaskList = call_as(c, "list_tasks", json!({})).await.expect("list");
    assert_eq!(none.tasks, vec![], "no task row may be written");
    server.stop().await;
}

crate::both_stores!(other_tools_validate_their_arguments);
async fn other_tools_validate_their_arguments(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let err = call(c, "check_task_status", json!({"task_id": "t-000000000000"}))
        .await
        .expect_err("missing");
    assert!(err.contains("task `t-000000000000` not found"), "{err}");
    let err = call(c, "list_tasks", json!({"limit": 0}))
        .await
        .expect_err("limit");
    assert!(err.contains("invalid `limit`"), "{err}");
    let err = call(c, "list_tasks", json!({"cursor": "garbage"}))
        .await
        .expect_err("cursor");
    assert!(err.contains("invalid `cursor`"), "{err}");
    let err = call(c, "list_tasks", json!({"state": "done"}))
        .await
        .expect_err("state");
    assert!(err.contains("state"), "{err}");
    let err = call(c, "apply_pending", json!({}))
        .await
        .expect_err("target");
    assert!(err.contains("task_id"), "{err}");
    let err = call(c, "apply_pending", json!({"session_id": "t-1"}))
        .await
        .expect_err("not a session");
    assert!(err.contains("invalid `session_id`"), "{err}");
    let t = new_task(
        c,
        json!({"prompt": "say nothing changed", "wait_seconds": 30}),
    )
    .await;
    let err = call(c, "apply_pending", json!({"task_id": t.task_id}))
        .await
        .expect_err("no change");
    assert!(err.contains("changed no files"), "{err}");
    let err = call(
        c,
        "get_task_output",
        json!({"task_id": t.task_id, "max_events": 5000}),
    )
    .await
    .expect_err("cap");
    assert!(err.contains("invalid `max_events`"), "{err}");
    server.stop().await;
}

crate::both_stores!(bad_providers_file_keeps_builtins_and_custom_cli_providers_work);
async fn bad_providers_file_keeps_builtins_and_custom_cli_providers_work(env: Env) {
    std::fs::write(env.data.join("providers.json"), "{ not json").expect("corrupt");
    let server = Server::stdio(&env, &[]).await;
    let err = call(
        &server.client,
        "new_task",
        json!({"prompt": "x", "agent": "script"}),
    )
    .await
    .expect_err("gone");
    assert!(err.contains("unknown provider `script`"), "{err}");
    let log = server.log();
    assert!(log.contains("invalid providers file at line 1"), "{log}");
    server.stop().await;
}
