//! The native backend end to end: the real binary, an MCP client, and a scripted
//! OpenAI-compatible endpoint. Edits, tool errors, multi-turn memory, usage and figures.

use serde_json::{Value, json};

use crate::support::fake_llm::{FakeLlm, text, tools};
use crate::support::*;

/// Contents of the `tool` messages of a recorded request.
pub fn tool_results(req: &Value) -> Vec<String> {
    req["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect()
}

fn roles(req: &Value) -> Vec<String> {
    req["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or("").to_string())
        .collect()
}

crate::both_stores!(native_task_reads_edits_creates_and_deletes);
async fn native_task_reads_edits_creates_and_deletes(env: Env) {
    let llm = FakeLlm::start(
        vec![
            tools(
                "Let me look around.",
                &[
                    ("read_file", json!({"path": "README.md"})),
                    ("list_dir", json!({})),
                ],
                100,
                10,
            ),
            tools(
                "",
                &[
                    (
                        "edit_file",
                        json!({"path": "README.md", "old_string": "line three", "new_string": "line 3"}),
                    ),
                    ("write_file", json!({"path": "src/new.txt", "content": "brand new\n"})),
                    ("search", json!({"pattern": "^line"})),
                ],
                200,
                20,
            ),
            tools("", &[("delete_file", json!({"path": "keep.txt"}))], 300, 30),
            text("Renamed line three, created src/new.txt and deleted keep.txt.", 400, 40),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    // No agent named and no --default-agent: the configured endpoint makes native the default.
    let id = new_task(c, json!({"prompt": "tidy the repo"}))
        .await
        .task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}\n{}", server.log());
    assert_eq!(s.agent, "native");
    assert_eq!(
        s.summary.as_deref(),
        Some("Renamed line three, created src/new.txt and deleted keep.txt.")
    );
    let mut changed = changed(&s);
    changed.sort();
    assert_eq!(
        changed,
        vec![
            ("README.md".to_string(), 1, 1),
            ("keep.txt".to_string(), 0, 1),
            ("src/new.txt".to_string(), 1, 0),
        ]
    );
    assert_eq!(s.usage, Usage::tokens(1000, 100));
    assert_eq!(
        env.read("keep.txt").as_deref(),
        Some("keep\n"),
        "checkout untouched"
    );

    let reqs = llm.requests();
    assert_eq!(reqs.len(), 4);
    for r in &reqs {
        assert_eq!(r["model"], "test-model");
        assert_eq!(r["stream"], true);
        assert_eq!(r["stream_options"]["include_usage"], true);
        let names: Vec<&str> = r["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "read_file",
                "list_dir",
                "search",
                "write_file",
                "edit_file",
                "delete_file"
            ]
        );
    }
    assert_eq!(roles(&reqs[0]), ["system", "user"]);
    let system = reqs[0]["messages"][0]["content"].as_str().expect("system");
    assert!(system.contains("isolated git worktree") && system.contains("pending change"));
    // The second request carries the assembled calls and their results.
    assert_eq!(
        roles(&reqs[1]),
        ["system", "user", "assistant", "tool", "tool"]
    );
    let asst = &reqs[1]["messages"][2];
    assert_eq!(asst["content"], "Let me look around.");
    assert_eq!(asst["tool_calls"][0]["function"]["name"], "read_file");
    assert_eq!(
        asst["tool_calls"][0]["function"]["arguments"],
        json!({"path": "README.md"}).to_string()
    );
    assert_eq!(
        asst["tool_calls"][0]["id"],
        reqs[1]["messages"][3]["tool_call_id"]
    );
    assert_eq!(
        tool_results(&reqs[1]),
        ["# demo\n\nline three\n", "README.md\nkeep.txt"]
    );
    assert_eq!(
        tool_results(&reqs[2])[2..],
        [
            "edited README.md",
            "wrote src/new.txt (10 bytes)",
            "README.md:3: line 3"
        ]
    );
    assert_eq!(tool_results(&reqs[3])[5], "deleted keep.txt");

    let out = output(c, &id, json!({})).await;
    let kinds: Vec<EventKind> = out.transcript.iter().map(|e| e.kind).collect();
    for k in [
        EventKind::Prompt,
        EventKind::Text,
        EventKind::Reasoning,
        EventKind::ToolCall,
        EventKind::ToolUpdate,
        EventKind::Usage,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }

    let gaps = llm.gaps();
    let mean = gaps.iter().sum::<std::time::Duration>() / gaps.len() as u32;
    eprintln!(
        "FIGURE native overhead per round (end of one reply to the next request, incl. tools): mean {:?}, rounds {:?}",
        mean, gaps
    );
    eprintln!(
        "FIGURE tokens per task (scripted read/edit/create/delete scenario): {} in / {} out over {} rounds",
        s.usage.input_tokens.unwrap_or(0),
        s.usage.output_tokens.unwrap_or(0),
        reqs.len()
    );
    let sizes: Vec<usize> = reqs.iter().map(|r| r.to_string().len()).collect();
    eprintln!(
        "FIGURE request bodies of that task: {:?} bytes, ~{} prompt tokens in all at 4 bytes/token (tool definitions {} bytes per request)",
        sizes,
        sizes.iter().sum::<usize>() / 4,
        reqs[0]["tools"].to_string().len()
    );
    server.stop().await;
}

#[tokio::test]
async fn ambiguous_edit_and_path_escapes_go_back_to_the_model() {
    let env = Env::new();
    let outside = env.root().join("outside.txt");
    let llm = FakeLlm::start(
        vec![
            tools(
                "",
                &[
                    (
                        "edit_file",
                        json!({"path": "README.md", "old_string": "e", "new_string": "E"}),
                    ),
                    ("read_file", json!({"path": "../data/boocoder.db"})),
                    (
                        "write_file",
                        json!({"path": outside.display().to_string(), "content": "x"}),
                    ),
                    ("read_file", json!({"path": ".git/config"})),
                    ("rm_rf", json!({"path": "/"})),
                ],
                10,
                1,
            ),
            tools(
                "",
                &[(
                    "edit_file",
                    json!({"path": "README.md", "old_string": "line three", "new_string": "line THREE"}),
                )],
                10,
                1,
            ),
            text("Fixed the edit.", 10, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "shout", "agent": "native"}))
        .await
        .task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(changed(&s), vec![("README.md".to_string(), 1, 1)]);
    assert!(!outside.exists(), "an escape must write nothing");

    let reqs = llm.requests();
    let results = tool_results(&reqs[1]);
    assert!(results[0].contains("occurs"), "{results:?}");
    assert!(results[0].contains("exactly once"), "{results:?}");
    for r in &results[1..4] {
        assert!(r.starts_with("error: refused"), "{results:?}");
    }
    assert!(
        results[4].contains("unknown variant `rm_rf`"),
        "{results:?}"
    );
    assert_eq!(tool_results(&reqs[2])[5], "edited README.md");
    server.stop().await;
}

crate::both_stores!(follow_up_turn_sends_the_prior_conversation);
async fn follow_up_turn_sends_the_prior_conversation(env: Env) {
    let llm = FakeLlm::start(
        vec![
            tools(
                "",
                &[("write_file", json!({"path": "a.txt", "content": "A\n"}))],
                10,
                1,
            ),
            text("Wrote a.txt.", 10, 1),
            text("It says A.", 10, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    let id1 = new_task(c, json!({"prompt": "create a.txt"})).await.task_id;
    assert_eq!(wait_done(c, &id1).await.state, TaskState::Completed);
    let id2 = new_task(
        c,
        json!({"prompt": "what does a.txt say?", "continue_task_id": id1, "model": "other-model"}),
    )
    .await
    .task_id;
    let s2 = wait_done(c, &id2).await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    assert_eq!(s2.summary.as_deref(), Some("It says A."));
    assert_eq!(changed(&s2), vec![("a.txt".to_string(), 1, 0)]);
    // Usage per task (one round) and per session (all three rounds).
    assert_eq!(s2.usage, Usage::tokens(10, 1));
    assert_eq!(s2.session_usage, Some(Usage::tokens(30, 3)));

    let third = &llm.requests()[2];
    assert_eq!(third["model"], "other-model", "per-task model override");
    assert_eq!(
        roles(third),
        ["system", "user", "assistant", "tool", "assistant", "user"],
        "{}",
        server.log()
    );
    let m = &third["messages"];
    assert_eq!(m[1]["content"], "create a.txt");
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "write_file");
    assert_eq!(m[3]["content"], "wrote a.txt (2 bytes)");
    assert_eq!(m[4]["content"], "Wrote a.txt.");
    assert_eq!(m[5]["content"], "what does a.txt say?");
    let log = server.log();
    assert!(
        !log.contains("could not store"),
        "nothing lost to a busy database:\n{log}"
    );
    server.stop().await;
}

#[tokio::test]
async fn native_without_an_endpoint_or_model_is_refused_at_new_task() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let err = call(
        &server.client,
        "new_task",
        json!({"prompt": "x", "agent": "native"}),
    )
    .await
    .expect_err("no endpoint");
    assert!(err.contains("invalid `agent`"), "{err}");
    assert!(err.contains("--llm-base-url"), "{err}");
    assert!(err.contains("BOOCODER_LLM_BASE_URL"), "{err}");
    server.stop().await;

    let llm = FakeLlm::start(vec![], None).await;
    let mut args = env.args();
    args.extend(["--llm-base-url".into(), llm.url.clone()]);
    let server = Server::stdio_with(&env, args, &[]).await;
    let err = call(
        &server.client,
        "new_task",
        json!({"prompt": "x", "agent": "native"}),
    )
    .await
    .expect_err("no model");
    assert!(err.contains("invalid `model`"), "{err}");
    assert!(err.contains("--model"), "{err}");
    let err = call(
        &server.client,
        "new_task",
        json!({"prompt": "x", "agent": "native", "model": "m", "mode": "plan"}),
    )
    .await
    .expect_err("no modes");
    assert!(err.contains("invalid `mode`"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn models_are_listed_from_the_endpoint() {
    use boocoder::backend::native::client::{http_client, list_models};
    let llm = FakeLlm::start(vec![], None).await;
    let mut settings = boocoder::config::LlmConfig::new(format!("{}/", llm.url));
    settings.api_key = Some("sk-test".into());
    settings.retries = 0;
    settings.retry_base = std::time::Duration::from_millis(1);
    let http = http_client(std::time::Duration::from_secs(5)).expect("client");
    assert_eq!(
        list_models(&http, &settings).await.expect("models"),
        ["test-model", "other-model"]
    );
    assert!(
        !format!("{settings:?}").contains("sk-test"),
        "the key never shows in Debug"
    );
}

#[tokio::test]
async fn without_an_endpoint_the_loop_runs_through_mcp_sampling() {
    use crate::support::sampling_client::{SamplingClient, answer};
    let env = Env::new();
    let client = SamplingClient::new(vec![
        answer(
            "Writing.",
            &[("write_file", json!({"path": "a.txt", "content": "A\n"}))],
        ),
        answer("Wrote a.txt through sampling.", &[]),
    ]);
    let mut args = env.args();
    args.truncate(args.len() - 2); // no --default-agent, no endpoint
    let server = Server::stdio_client(&env, args, &[], client.clone()).await;
    let c = &server.client;
    let id = new_task(c, json!({"prompt": "make a.txt"})).await.task_id;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}\n{}", server.log());
    assert_eq!(s.agent, "native");
    assert_eq!(s.summary.as_deref(), Some("Wrote a.txt through sampling."));
    assert_eq!(changed(&s), vec![("a.txt".to_string(), 1, 0)]);

    let reqs = client.requests();
    assert_eq!(reqs.len(), 2);
    let system = reqs[0]["systemPrompt"].as_str().expect("system prompt");
    assert!(system.contains("isolated git worktree"), "{system}");
    assert!(reqs[0]["maxTokens"].as_u64().is_some());
    assert_eq!(reqs[0]["tools"].as_array().expect("tools").len(), 6);
    let m = &reqs[1]["messages"];
    assert_eq!(m[0]["content"]["text"], "make a.txt");
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(m[2]["content"][0]["toolUseId"], "tu_0");
    assert_eq!(
        m[2]["content"][0]["content"][0]["text"],
        "wrote a.txt (2 bytes)"
    );
    server.stop().await;
}

crate::both_stores!(follow_up_drops_old_tool_results_to_fit_the_context_budget);
async fn follow_up_drops_old_tool_results_to_fit_the_context_budget(env: Env) {
    std::fs::write(env.repo.join("big.txt"), "b".repeat(8000)).expect("write");
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "big"]);
    let llm = FakeLlm::start(
        vec![
            tools("", &[("read_file", json!({"path": "big.txt"}))], 10, 1),
            text("It is all b.", 10, 1),
            text("Still all b.", 10, 1),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &["--context-tokens", "1000"]).await;
    let c = &server.client;
    let id1 = new_task(c, json!({"prompt": "read big.txt"})).await.task_id;
    assert_eq!(wait_done(c, &id1).await.state, TaskState::Completed);
    let id2 = new_task(c, json!({"prompt": "and now?", "continue_task_id": id1}))
        .await
        .task_id;
    assert_eq!(wait_done(c, &id2).await.state, TaskState::Completed);

    let reqs = llm.requests();
    // Within turn one the fresh result is sent whole, even over budget: the model asked for it.
    assert_eq!(tool_results(&reqs[1]), ["b".repeat(8000)]);
    // The follow-up keeps the earlier turn's shape but drops its bulky result.
    assert_eq!(
        roles(&reqs[2]),
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert_eq!(
        tool_results(&reqs[2]),
        ["[earlier tool result dropped to fit the context budget]"]
    );
    server.stop().await;
}
