//! MCP prompts, end to end through the real binary and rmcp's client: `delegate`, `review`
//! (the task's status and diff embedded as resources) and `status`.

use rmcp::ErrorData;
use rmcp::model::{
    ContentBlock, ErrorCode, GetPromptRequestParams, GetPromptResult, ResourceContents,
};
use rmcp::service::ServiceError;
use serde_json::json;

use crate::support::*;

async fn get(
    c: &Client,
    name: &str,
    args: serde_json::Value,
) -> Result<GetPromptResult, ErrorData> {
    let mut params = GetPromptRequestParams::new(name);
    if let Some(a) = args.as_object().filter(|a| !a.is_empty()) {
        params = params.with_arguments(a.clone());
    }
    match c.get_prompt(params).await {
        Ok(r) => Ok(r),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("prompts/get {name}: {e}"),
    }
}

fn invalid_params(e: ErrorData, naming: &str) {
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
    assert!(e.message.contains(naming), "{e:?}");
}

/// Every message's text, embedded resources' text included.
fn texts(r: &GetPromptResult) -> Vec<String> {
    r.messages
        .iter()
        .map(|m| match &m.content {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Resource(e) => e.get_text(),
            other => panic!("unexpected content {other:?}"),
        })
        .collect()
}

/// `(uri, mime type, text)` of an embedded text resource.
fn embedded(content: &ContentBlock) -> (String, Option<String>, String) {
    match content {
        ContentBlock::Resource(e) => match &e.resource {
            ResourceContents::TextResourceContents {
                uri,
                mime_type,
                text,
                ..
            } => (uri.clone(), mime_type.clone(), text.clone()),
            other => panic!("not text: {other:?}"),
        },
        other => panic!("not an embedded resource: {other:?}"),
    }
}

crate::both_stores!(prompts_are_listed_and_got_with_their_arguments);
async fn prompts_are_listed_and_got_with_their_arguments(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let info = c.peer_info().expect("initialize result");
    assert!(info.capabilities.prompts.is_some(), "{info:?}");

    let listed = c.list_all_prompts().await.expect("prompts/list");
    type Shape = (String, Vec<(String, Option<bool>)>);
    let shapes: Vec<Shape> = listed
        .iter()
        .map(|p| {
            assert!(
                p.description.as_deref().is_some_and(|d| !d.is_empty()),
                "{p:?}"
            );
            let args = p.arguments.iter().flatten();
            (
                p.name.clone(),
                args.map(|a| (a.name.clone(), a.required)).collect(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            (
                "delegate".to_string(),
                vec![("goal".to_string(), Some(true))]
            ),
            (
                "review".to_string(),
                vec![("task_id".to_string(), Some(true))]
            ),
            ("status".to_string(), vec![]),
        ]
    );

    // delegate: the goal in a workflow naming the tools as published
    let goal = "add a --verbose flag to the CLI";
    let d = get(c, "delegate", json!({"goal": goal}))
        .await
        .expect("delegate");
    assert_eq!(d.messages.len(), 1);
    let text = texts(&d).join("\n");
    for needle in [
        goal,
        "new_task",
        "parent_task_id",
        "wait_seconds",
        "dry_run=true",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    invalid_params(
        get(c, "delegate", json!({})).await.expect_err("no goal"),
        "`goal`",
    );

    // review: status and diff embedded as the resources serve them, then the checklist
    let done = run_task(c, json!({"prompt": "write res.txt hello\nsay wrote it"})).await;
    assert_eq!(done.state, TaskState::Completed, "{done:#?}");
    let r = get(c, "review", json!({"task_id": done.task_id}))
        .await
        .expect("review");
    assert_eq!(r.messages.len(), 3, "{r:#?}");
    let uri = format!("boocoder://tasks/{}", done.task_id);
    let (status_uri, mime, status) = embedded(&r.messages[0].content);
    assert_eq!(
        (status_uri, mime.as_deref()),
        (uri.clone(), Some("application/json"))
    );
    let status: TaskStatus = serde_json::from_str(&status).expect("status json");
    assert_eq!(status.task_id, done.task_id);
    assert_eq!(status.state, TaskState::Completed);
    let (diff_uri, mime, diff) = embedded(&r.messages[1].content);
    assert_eq!(
        (diff_uri, mime.as_deref()),
        (format!("{uri}/diff"), Some("text/x-diff"))
    );
    assert!(diff.contains("+hello"), "{diff}");
    let checklist = texts(&r).pop().expect("text");
    for needle in [
        "Scope",
        "Tests",
        "stale_against_checkout",
        "apply_pending",
        "discard_pending",
    ] {
        assert!(checklist.contains(needle), "no {needle:?} in:\n{checklist}");
    }
    assert!(
        checklist.contains(&format!("new_task(session_id=\"{}\"", done.session_id)),
        "{checklist}"
    );
    invalid_params(
        get(c, "review", json!({"task_id": "t-000000000000"}))
            .await
            .expect_err("unknown task"),
        "`task_id`",
    );
    invalid_params(
        get(c, "review", json!({})).await.expect_err("no id"),
        "`task_id`",
    );

    // status: the session holding the unapplied change, by id
    let s = get(c, "status", json!({})).await.expect("status");
    let text = texts(&s).join("\n");
    let line = text
        .lines()
        .find(|l| l.contains(&done.session_id))
        .unwrap_or_else(|| panic!("no line for {} in:\n{text}", done.session_id));
    assert!(
        line.contains(&done.task_id) && line.contains("res.txt"),
        "{line}"
    );
    assert!(text.contains("apply_pending"), "{text}");

    // once applied it is gone from the list
    call(c, "apply_pending", json!({"task_id": done.task_id}))
        .await
        .expect("apply");
    let text = texts(&get(c, "status", json!({})).await.expect("status")).join("\n");
    assert!(!text.contains(&done.session_id), "{text}");
    assert!(text.contains("Nothing is running"), "{text}");

    invalid_params(
        get(c, "nope", json!({})).await.expect_err("unknown"),
        "`nope`",
    );
    invalid_params(
        get(c, "status", json!({"x": "1"}))
            .await
            .expect_err("stray arg"),
        "`x`",
    );
    server.stop().await;
}

#[tokio::test]
async fn status_shows_running_and_blocked_tasks() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let running = new_task(c, json!({"prompt": "sleep 60"})).await;
    wait_state(c, &running.task_id, TaskState::Running).await;
    let blocked = new_task(
        c,
        json!({"prompt": "perm-write asked.txt maybe", "agent": "fake-ask"}),
    )
    .await;
    wait_state(c, &blocked.task_id, TaskState::Blocked).await;

    let text = texts(&get(c, "status", json!({})).await.expect("status")).join("\n");
    let (active, rest) = text.split_once("Needs attention").expect("sections");
    assert!(
        active.contains(&format!("{} running", running.task_id)),
        "{text}"
    );
    assert!(
        rest.contains(&format!("{} blocked", blocked.task_id)),
        "{text}"
    );
    assert!(text.contains("permission question"), "{text}");

    for t in [&running, &blocked] {
        call(c, "cancel_task", json!({"task_id": t.task_id}))
            .await
            .expect("cancel");
    }
    server.stop().await;
}

#[tokio::test]
async fn orchestrator_profile_hands_applying_to_the_user() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--tools", "orchestrator"]).await;
    let c = &server.client;
    assert_eq!(c.list_all_prompts().await.expect("list").len(), 3);
    let text = texts(
        &get(c, "delegate", json!({"goal": "g"}))
            .await
            .expect("delegate"),
    )
    .join("");
    assert!(text.contains("boocoder apply ID"), "{text}");
    assert!(!text.contains("retry_task"), "{text}");
    server.stop().await;
}
