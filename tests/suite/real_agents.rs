//! Opt-in: real coding agents from npm, driven through boocoder over ACP, talking to a scripted
//! OpenAI-compatible model server that runs inside the test (no internet needed once the agent
//! is installed). Enable with `BOOCODER_E2E_REAL_AGENTS=1`; the agent is installed with npm
//! into `target/e2e-agents` on first use (or point `BOOCODER_OPENCODE_BIN` at an `opencode`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::*;

fn enabled() -> bool {
    std::env::var("BOOCODER_E2E_REAL_AGENTS").is_ok_and(|v| v == "1")
}

/// The `opencode` launcher: from the environment, or installed with npm under target/.
fn opencode_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BOOCODER_OPENCODE_BIN") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-agents");
    let bin = dir.join("node_modules/.bin/opencode");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).expect("mkdir e2e-agents");
        let st = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("opencode-ai@1.18.33")
            .status()
            .expect("run npm");
        assert!(st.success(), "npm install opencode-ai failed");
    }
    bin
}

/// What the scripted model saw: one entry per request (for the figures and debugging).
#[derive(Clone, Default)]
struct Script {
    requests: Arc<Mutex<Vec<Value>>>,
}

/// `FILE=name TEXT=words` in the latest user message makes the model call the `write` tool;
/// after a tool result it says it is done; anything else (titles, summaries) gets plain text.
async fn completions(State(script): State<Script>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Ok(mut r) = script.requests.lock() {
        r.push(req.clone());
    }
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
    let last_role = messages
        .last()
        .map(|m| m["role"].as_str().unwrap_or("").to_string());
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].to_string())
        .unwrap_or_default();
    let directive = last_user.find("FILE=").map(|at| {
        let rest = &last_user[at + 5..];
        let name: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\\')
            .collect();
        let text = rest
            .find("TEXT=")
            .map(|t| {
                rest[t + 5..]
                    .chars()
                    .take_while(|c| *c != '"' && *c != '\\')
                    .collect::<String>()
            })
            .unwrap_or_default();
        (name, text)
    });
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = match (has_tools, last_role.as_deref(), directive) {
        (true, Some("user"), Some((name, text))) => vec![
            chunk(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_{name}"), "type": "function",
                "function": {"name": "write", "arguments": json!({"filePath": name, "content": format!("{text}\n")}).to_string()}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ],
        (true, Some("tool"), _) => vec![
            chunk(
                json!({"role": "assistant", "content": "done: the file is written"}),
                Value::Null,
            ),
            chunk(json!({}), json!("stop")),
        ],
        _ => vec![
            chunk(
                json!({"role": "assistant", "content": "scripted title"}),
                Value::Null,
            ),
            chunk(json!({}), json!("stop")),
        ],
    };
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!("data: {e}\n\n"));
    }
    sse.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    ));
    ([("content-type", "text/event-stream")], sse).into_response()
}

async fn fake_llm() -> (String, Script) {
    let script = Script::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("fake llm stopped: {e}");
        }
    });
    (format!("http://{addr}"), script)
}

#[tokio::test]
async fn opencode_edits_arrive_as_a_pending_change() {
    if !enabled() {
        eprintln!("skipped: set BOOCODER_E2E_REAL_AGENTS=1 to run real agents");
        return;
    }
    let bin = opencode_bin();
    let (base, script) = fake_llm().await;
    let env = Env::new();
    let home = env.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let config = json!({
        "model": "fake/fake-model", "small_model": "fake/fake-model", "autoupdate": false, "share": "disabled",
        "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("{base}/v1"), "apiKey": "fake-key"},
            "models": {"fake-model": {"tool_call": true}}}},
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"}
    });
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let providers_file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&providers_file).expect("providers"))
            .expect("json");
    providers["providers"]["opencode"] = json!({
        "command": [bin, "acp"],
        "env": {"HOME": home, "PATH": path, "DO_NOT_TRACK": "1",
                "OPENCODE_CONFIG_CONTENT": config.to_string(),
                "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
                "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"}
    });
    std::fs::write(&providers_file, providers.to_string()).expect("write providers");

    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let mut figures = Vec::new();
    let mut session: Option<String> = None;
    for (file, text) in [
        ("hello.txt", "hello from opencode"),
        ("second.txt", "second turn"),
    ] {
        let mut args = json!({"prompt": format!("Create the file. FILE={file} TEXT={text}"), "agent": "opencode"});
        if let Some(s) = &session {
            args["session_id"] = json!(s);
        }
        let t = call(c, "new_task", args).await.expect("new_task");
        let id = t["task_id"].as_str().expect("id").to_string();
        session = t["session_id"].as_str().map(str::to_string);
        let s = wait_long(c, &id).await;
        let out = call(c, "get_task_output", json!({"task_id": id}))
            .await
            .expect("output");
        assert_eq!(s["state"], "completed", "{s:#}\n{out:#}");
        assert!(
            out["diff"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("+{text}")),
            "{out:#}"
        );
        let events = out["transcript"].as_array().cloned().unwrap_or_default();
        let start = chrono::DateTime::parse_from_rfc3339(s["started_at"].as_str().expect("start"))
            .expect("rfc")
            .timestamp_millis();
        let end = chrono::DateTime::parse_from_rfc3339(s["ended_at"].as_str().expect("end"))
            .expect("rfc")
            .timestamp_millis();
        let first = events
            .iter()
            .find(|e| matches!(e["kind"].as_str(), Some("text" | "reasoning" | "tool_call")))
            .and_then(|e| e["at"].as_i64())
            .unwrap_or(start);
        figures.push((first - start, end - start));
    }
    eprintln!(
        "FIGURES opencode first turn: first update {} ms, done {} ms; second (warm) turn: first update {} ms, done {} ms; model requests {}",
        figures[0].0,
        figures[0].1,
        figures[1].0,
        figures[1].1,
        script.requests.lock().map(|r| r.len()).unwrap_or(0)
    );
    server.stop().await;
}

async fn wait_long(c: &Client, id: &str) -> Value {
    for _ in 0..60 {
        let s = call(
            c,
            "check_task_status",
            json!({"task_id": id, "wait_seconds": 5}),
        )
        .await
        .expect("status");
        if ["completed", "failed", "cancelled"].contains(&s["state"].as_str().unwrap_or("")) {
            return s;
        }
    }
    panic!("task {id} did not finish in 300 s");
}
