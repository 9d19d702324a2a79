//! The native loop's guards end to end: iteration cap, doom loop, token budget, retries,
//! endpoint failures and cancellation mid-stream.

use std::time::Instant;

use serde_json::json;

use super::native::tool_results;
use crate::support::fake_llm::{FakeLlm, Reply, text, tools};
use crate::support::*;

#[tokio::test]
async fn iteration_cap_fails_the_task_with_a_summary() {
    let env = Env::new();
    let llm = FakeLlm::start(
        vec![
            tools(
                "Reading.",
                &[("read_file", json!({"path": "README.md"}))],
                1,
                1,
            ),
            tools("", &[("read_file", json!({"path": "keep.txt"}))], 1, 1),
            tools("", &[("list_dir", json!({}))], 1, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &["--max-rounds", "3"]).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "wander"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    let error = s.error.as_deref().expect("error");
    assert!(error.contains("no final answer after 3 rounds"), "{error}");
    assert!(error.contains("iteration cap"), "{error}");
    assert_eq!(
        s.summary.as_deref(),
        Some(
            "Reading.\n[3 tool calls made; last: read_file README.md, read_file keep.txt, list_dir .]"
        )
    );
    assert_eq!(llm.requests().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn repeated_identical_calls_stop_as_a_doom_loop() {
    let env = Env::new();
    let same = tools("", &[("read_file", json!({"path": "README.md"}))], 1, 1);
    let llm = FakeLlm::start(vec![], Some(same)).await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "loop"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    let error = s.error.as_deref().expect("error");
    assert!(error.contains("doom loop"), "{error}");
    assert!(error.contains("`read_file`"), "{error}");
    assert_eq!(
        llm.requests().len(),
        3,
        "stopped at the third identical call"
    );
    server.stop().await;
}

#[tokio::test]
async fn token_budget_stops_with_a_partial_summary() {
    let env = Env::new();
    let llm = FakeLlm::start(
        vec![
            tools(
                "Starting with the README.",
                &[("write_file", json!({"path": "notes.txt", "content": "n\n"}))],
                100,
                50,
            ),
            tools("", &[("read_file", json!({"path": "keep.txt"}))], 100, 50),
            text("never reached", 1, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &["--max-tokens-total", "250"]).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "spend"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    let error = s.error.as_deref().expect("error");
    assert!(
        error.contains("token budget is spent (300 of 250 tokens"),
        "{error}"
    );
    let summary = s.summary.as_deref().expect("partial summary");
    assert!(
        summary.starts_with("Starting with the README."),
        "{summary}"
    );
    assert!(summary.contains("2 tool calls made"), "{summary}");
    assert_eq!(s.usage, Usage::tokens(200, 100));
    assert_eq!(
        changed(&s),
        vec![("notes.txt".to_string(), 1, 0)],
        "partial edits stay pending"
    );
    assert_eq!(llm.requests().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_is_retried_then_succeeds() {
    let env = Env::new();
    let llm = FakeLlm::start(
        vec![
            Reply::Status(429, r#"{"error":{"message":"slow down"}}"#.into()),
            Reply::Status(503, "warming up".into()),
            text("ok", 5, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(
        &env,
        &llm.url,
        &["--llm-retry-ms", "10", "--llm-api-key", "sk-very-secret"],
    )
    .await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "hi"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(s.summary.as_deref(), Some("ok"));
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(
        llm.auth_headers(),
        vec![Some("Bearer sk-very-secret".to_string()); 3]
    );
    let log = server.log();
    assert!(log.contains("retrying"), "{log}");
    assert!(!log.contains("sk-very-secret"), "the key is never logged");
    server.stop().await;
}

#[tokio::test]
async fn server_error_forever_fails_quoting_the_server() {
    let env = Env::new();
    let boom = Reply::Status(
        500,
        r#"{"error":{"message":"backend exploded","type":"server_error"}}"#.into(),
    );
    let llm = FakeLlm::start(vec![], Some(boom)).await;
    let server = Server::native(
        &env,
        &llm.url,
        &["--llm-retries", "2", "--llm-retry-ms", "10"],
    )
    .await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "hi"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    assert_eq!(
        s.error.as_deref(),
        Some("the model endpoint answered HTTP 500: backend exploded")
    );
    assert_eq!(llm.requests().len(), 3, "first attempt and two retries");
    server.stop().await;
}

#[tokio::test]
async fn cancel_mid_stream_stops_at_once() {
    let env = Env::new();
    let hang = Reply::Hang(vec![
        json!({"choices":[{"index":0,"delta":{"content":"Thinking very hard"}}]}),
    ]);
    let llm = FakeLlm::start(vec![hang], None).await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "think"})).await.task_id;
    llm.wait_requests(1).await;
    wait_state(c, &id, TaskState::Running).await;
    let t0 = Instant::now();
    let s: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id}))
        .await
        .expect("cancel");
    let took = t0.elapsed();
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    eprintln!("FIGURE native cancel mid-stream: cancel_task returned in {took:?}");
    let out = output(c, &id, json!({})).await;
    let text: Vec<&str> = out
        .transcript
        .iter()
        .filter(|e| e.kind == EventKind::Text)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(text, ["Thinking very hard"], "streamed text was kept");
    assert!(tool_results(&llm.requests()[0]).is_empty());
    server.stop().await;
}
