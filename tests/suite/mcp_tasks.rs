//! The MCP Tasks extension (SEP-2663) and MRTR: a client that declares the extension gets an
//! MCP task from `new_task` (the boocoder task, by id) and follows it with `tasks/get`,
//! `tasks/update` (answers to a permission question) and `tasks/cancel`, on a 2025-11-25
//! session and on the 2026-07-28 lifecycle; the task outlives the server. A 2026-07-28 client
//! that waits in `new_task` is asked the permission question by MRTR and answers by retrying.

use std::collections::BTreeMap;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, DetailedTask, GetTaskParams,
    InputRequest, TaskPayload, TaskStatus as McpStatus, UpdateTaskParams,
};
use rmcp::service::Peer;
use serde_json::{Value, json};

use crate::support::tasks_client::TasksClient;
use crate::support::*;

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().expect("object"))
}

/// `new_task` for a client of the extension: the MCP task it answers with.
async fn create(c: &Peer<RoleClient>, args: Value) -> String {
    match c
        .call_tool_once(params("new_task", args))
        .await
        .expect("tools/call")
    {
        CallToolResponse::Task(t) => {
            assert_eq!(t.task.status, McpStatus::Working, "{t:#?}");
            assert!(t.task.poll_interval_ms.is_some());
            t.task.task_id
        }
        other => panic!("expected a task, got {other:#?}"),
    }
}

async fn get(c: &Peer<RoleClient>, id: &str) -> DetailedTask {
    c.get_task(GetTaskParams::new(id))
        .await
        .expect("tasks/get")
        .task
}

/// Poll `tasks/get` until `done`.
async fn until(
    c: &Peer<RoleClient>,
    id: &str,
    done: impl Fn(&DetailedTask) -> bool,
) -> DetailedTask {
    for _ in 0..600 {
        let t = get(c, id).await;
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never got there: {:#?}", get(c, id).await);
}

/// The completed task's result: what `check_task_status` answers.
fn result_status(t: &DetailedTask) -> TaskStatus {
    match &t.payload {
        TaskPayload::Completed { result } => typed(result["structuredContent"].clone()),
        other => panic!("not completed: {other:#?}"),
    }
}

/// The one permission question of an `input_required` task: its key and option ids.
fn question(t: &DetailedTask) -> (String, Vec<String>) {
    let TaskPayload::InputRequired { input_requests } = &t.payload else {
        panic!("not input_required: {t:#?}");
    };
    assert_eq!(input_requests.len(), 1, "{input_requests:#?}");
    let (key, req) = input_requests.iter().next().expect("one");
    let InputRequest::Elicitation(e) = req else {
        panic!("not an elicitation: {req:#?}");
    };
    let form = serde_json::to_value(e).expect("json");
    let options = form["params"]["requestedSchema"]["properties"]["decision"]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("no decision choices: {form:#}"))
        .iter()
        .filter_map(|v| v["const"].as_str().map(str::to_string))
        .collect();
    (key.clone(), options)
}

fn accept(key: &str, option: &str) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        key.to_string(),
        json!({"action": "accept", "content": {"decision": option}}),
    )])
}

#[tokio::test]
async fn a_task_is_created_followed_completed_and_outlives_the_server() {
    let env = Env::new();
    let client = TasksClient::new();
    let server = Server::stdio_client(&env, env.args(), &[], client.clone()).await;
    let c = &server.client;
    let id = create(
        c,
        json!({"prompt": "write a.txt hello", "wait_seconds": 30}),
    )
    .await;
    assert!(id.starts_with("t-"), "{id}");
    let done = until(c, &id, |t| t.status() == McpStatus::Completed).await;
    let status = result_status(&done);
    assert_eq!(status.task_id, id);
    assert_eq!(status.state, TaskState::Completed);
    assert!(done.task.status_message.is_some(), "{done:#?}");
    // The same task through the polling tools.
    assert_eq!(task_status(c, &id).await.state, TaskState::Completed);
    // notifications/tasks followed it to the end.
    for _ in 0..100 {
        if client
            .notes()
            .iter()
            .any(|(t, s)| *t == id && s == "completed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client
            .notes()
            .iter()
            .any(|(t, s)| *t == id && s == "completed"),
        "{:?}",
        client.notes()
    );
    server.stop().await;

    let server = Server::stdio_client(&env, env.args(), &[], TasksClient::new()).await;
    let c = &server.client;
    let again = get(c, &id).await;
    assert_eq!(again.status(), McpStatus::Completed);
    assert_eq!(result_status(&again).task_id, id);
    let listed: boocoder::mcp::types::TaskList = call_as(c, "list_tasks", json!({}))
        .await
        .expect("list_tasks");
    assert!(listed.tasks.iter().any(|t| t.task_id == id));
    let err = c
        .get_task(GetTaskParams::new("t-nope"))
        .await
        .expect_err("unknown");
    assert!(err.to_string().contains("unknown task `t-nope`"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn tasks_cancel_cancels_and_clients_without_the_extension_are_unchanged() {
    let env = Env::new();
    let server = Server::stdio_client(&env, env.args(), &[], TasksClient::new()).await;
    let c = &server.client;
    let id = create(c, json!({"prompt": "sleep 30000", "agent": "fake"})).await;
    until(c, &id, |t| {
        t.task.status_message.is_some() || t.status() != McpStatus::Working
    })
    .await;
    c.cancel_task(CancelTaskParams::new(&id))
        .await
        .expect("tasks/cancel");
    let t = until(c, &id, |t| t.status().is_terminal()).await;
    assert_eq!(t.status(), McpStatus::Cancelled, "{t:#?}");
    server.stop().await;

    // A client that did not declare the extension: a status, and no tasks/* methods.
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = new_task(c, json!({"prompt": "write b.txt hi"})).await;
    assert!(s.task_id.starts_with("t-"));
    let err = c
        .get_task(GetTaskParams::new(&s.task_id))
        .await
        .expect_err("not declared");
    assert!(
        err.to_string().contains("-32021") || err.to_string().to_lowercase().contains("capab"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_permission_question_is_input_required_and_answered_by_tasks_update() {
    let env = Env::new();
    let server = Server::stdio_client(&env, env.args(), &[], TasksClient::new()).await;
    let c = &server.client;
    let id = create(
        c,
        json!({"prompt": "perm-write granted.txt yes", "agent": "fake-ask"}),
    )
    .await;
    let asking = until(c, &id, |t| t.status() == McpStatus::InputRequired).await;
    let (key, options) = question(&asking);
    assert!(options.contains(&"allow".to_string()), "{options:?}");
    assert!(
        asking
            .task
            .status_message
            .as_deref()
            .unwrap_or("")
            .contains("granted.txt"),
        "{asking:#?}"
    );
    // A wrong option is refused and changes nothing.
    let bad = c
        .update_task(UpdateTaskParams::new(&id, accept(&key, "nope")))
        .await
        .expect_err("bad option");
    assert!(bad.to_string().contains("option_id"), "{bad}");
    c.update_task(UpdateTaskParams::new(&id, accept(&key, "allow")))
        .await
        .expect("tasks/update");
    let done = until(c, &id, |t| t.status().is_terminal()).await;
    let status = result_status(&done);
    assert_eq!(changed(&status), vec![("granted.txt".to_string(), 1, 0)]);
    let text = transcript_text(c, &id).await;
    assert!(text.contains("by the caller's tasks/update"), "{text}");

    // A declined form rejects: no edit, and the task still ends.
    let id = create(
        c,
        json!({"prompt": "perm-write refused.txt no", "agent": "fake-ask"}),
    )
    .await;
    let asking = until(c, &id, |t| t.status() == McpStatus::InputRequired).await;
    let (key, _) = question(&asking);
    let declined = BTreeMap::from([(key, json!({"action": "decline"}))]);
    c.update_task(UpdateTaskParams::new(&id, declined))
        .await
        .expect("tasks/update");
    let done = until(c, &id, |t| t.status().is_terminal()).await;
    assert_ne!(done.status(), McpStatus::InputRequired);
    if let TaskPayload::Completed { .. } = &done.payload {
        assert!(changed(&result_status(&done)).is_empty(), "{done:#?}");
    }
    let text = transcript_text(c, &id).await;
    assert!(
        text.lines()
            .any(|l| l.contains("rejected") && l.ends_with("by the caller's tasks/update")),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_2026_lifecycle_gets_tasks_and_mrtr_questions() {
    let env = Env::new();
    // Tasks on the 2026-07-28 lifecycle, declared per request.
    let (_child, client) = discover_stdio(&env, TasksClient::new()).await;
    let c = client.peer();
    let id = create(
        c,
        json!({"prompt": "perm-write tasks.txt yes", "agent": "fake-ask"}),
    )
    .await;
    let asking = until(c, &id, |t| t.status() == McpStatus::InputRequired).await;
    let (key, _) = question(&asking);
    c.update_task(UpdateTaskParams::new(&id, accept(&key, "allow")))
        .await
        .expect("tasks/update");
    let done = until(c, &id, |t| t.status().is_terminal()).await;
    assert_eq!(result_status(&done).state, TaskState::Completed);
    drop(client);

    // MRTR: a client without the extension waits in new_task and is asked the question.
    let mrtr = TasksClient {
        elicitation: true,
        no_tasks: true,
        ..TasksClient::new()
    };
    let (_child, client) = discover_stdio(&env, mrtr).await;
    let c = client.peer();
    let args =
        json!({"prompt": "perm-write mrtr.txt yes", "agent": "fake-ask", "wait_seconds": 60});
    let first = c
        .call_tool_once(params("new_task", args.clone()))
        .await
        .expect("call");
    let CallToolResponse::InputRequired(input) = first else {
        panic!("expected input_required, got {first:#?}");
    };
    let state = input.request_state.clone().expect("requestState");
    let requests = input.input_requests.clone().expect("inputRequests");
    let (key, req) = requests.iter().next().expect("one question");
    assert!(matches!(req, InputRequest::Elicitation(_)), "{req:#?}");
    let mut retry = params("new_task", args);
    retry.input_responses = Some(accept(key, "allow"));
    retry.request_state = Some(state);
    let second = c.call_tool_once(retry).await.expect("retry");
    let CallToolResponse::Complete(r) = second else {
        panic!("expected the result, got {second:#?}");
    };
    let status: TaskStatus = typed(r.structured_content.clone().expect("structured"));
    assert_eq!(status.state, TaskState::Completed, "{status:#?}");
    assert_eq!(changed(&status), vec![("mrtr.txt".to_string(), 1, 0)]);
    // The retry answered the first task; it did not queue another.
    let list: boocoder::mcp::types::TaskList = call_as(c, "list_tasks", json!({}))
        .await
        .expect("list_tasks");
    assert_eq!(list.tasks.len(), 2, "{list:#?}");
    let text = transcript_text(c, &status.task_id).await;
    assert!(text.contains("by the caller's retry"), "{text}");
    // A requestState this server did not send is refused.
    let mut forged = params("new_task", json!({"prompt": "x"}));
    forged.request_state = Some("t-elsewhere".into());
    let r = c.call_tool_once(forged).await.expect("call");
    let CallToolResponse::Complete(r) = r else {
        panic!("{r:#?}")
    };
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("requestState"), "{}", text_of(&r));

    // The same through check_task_status: queued without waiting, asked while it waits,
    // answered (declined) by its retry; a requestState naming another task is refused.
    let queued = c
        .call_tool_once(params(
            "new_task",
            json!({"prompt": "perm-write later.txt no", "agent": "fake-ask"}),
        ))
        .await
        .expect("call");
    let CallToolResponse::Complete(queued) = queued else {
        panic!("{queued:#?}")
    };
    let queued: TaskStatus = typed(queued.structured_content.clone().expect("structured"));
    let wait = json!({"task_id": queued.task_id, "wait_seconds": 60});
    let mut asked = None;
    for _ in 0..5 {
        match c
            .call_tool_once(params("check_task_status", wait.clone()))
            .await
            .expect("call")
        {
            CallToolResponse::InputRequired(i) => {
                asked = Some(i);
                break;
            }
            CallToolResponse::Complete(r) => {
                let s: TaskStatus = typed(r.structured_content.clone().expect("structured"));
                assert!(!s.state.is_terminal(), "ended without asking: {s:#?}");
            }
            other => panic!("{other:#?}"),
        }
    }
    let asked = asked.expect("check_task_status asked the question");
    let (key, _) = asked
        .input_requests
        .as_ref()
        .and_then(|r| r.iter().next())
        .expect("one");
    let declined = BTreeMap::from([(key.clone(), json!({"action": "decline"}))]);
    let mut other = params("check_task_status", wait.clone());
    other.input_responses = Some(declined.clone());
    other.request_state = Some(format!("boocoder-task:{}", status.task_id));
    let r = c.call_tool_once(other).await.expect("call");
    let CallToolResponse::Complete(r) = r else {
        panic!("{r:#?}")
    };
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("another task"), "{}", text_of(&r));
    let mut retry = params("check_task_status", wait);
    retry.input_responses = Some(declined);
    retry.request_state = asked.request_state.clone();
    let r = c.call_tool_once(retry).await.expect("retry");
    let CallToolResponse::Complete(r) = r else {
        panic!("{r:#?}")
    };
    let s: TaskStatus = typed(r.structured_content.clone().expect("structured"));
    assert_ne!(s.state, TaskState::Blocked, "{s:#?}");
    let s = wait_done(c, &queued.task_id).await;
    assert!(changed(&s).is_empty(), "{s:#?}");
    let text = transcript_text(c, &queued.task_id).await;
    assert!(
        text.lines()
            .any(|l| l.contains("rejected")
                && l.ends_with("by the caller's retry (input responses)")),
        "{text}"
    );
}
