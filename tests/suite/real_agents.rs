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

/// An agent's launcher: `$var` if set, else installed with npm under target/e2e-agents.
fn agent_bin(var: &str, bin: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-agents");
    let path = dir.join("node_modules/.bin").join(bin);
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("mkdir e2e-agents");
        let st = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(package)
            .status()
            .expect("run npm");
        assert!(st.success(), "npm install {package} failed");
    }
    path
}

/// What the scripted model saw (one entry per request) and which files it already wrote.
#[derive(Clone, Default)]
struct Script {
    requests: Arc<Mutex<Vec<Value>>>,
    written: Arc<Mutex<Vec<String>>>,
    /// `DATA/worktrees/`: the session's worktree is found in the agent's system prompt.
    worktrees: String,
}

/// The write tool the agent offers and how it names the path argument.
fn write_tool(req: &Value) -> Option<(String, String)> {
    req["tools"].as_array()?.iter().find_map(|t| {
        let f = &t["function"];
        let name = f["name"].as_str()?;
        if !matches!(name, "write" | "write_file") {
            return None;
        }
        let props = f["parameters"]["properties"].as_object()?;
        let arg = ["filePath", "file_path", "path"]
            .into_iter()
            .find(|k| props.contains_key(*k))?;
        Some((name.to_string(), arg.to_string()))
    })
}

/// `FILE=name TEXT=words` in the latest user message makes the model call the agent's write
/// tool, once per file (agents make background calls that quote the conversation); after a
/// tool result it says it is done; anything else (titles, summaries) gets plain text.
async fn completions(State(script): State<Script>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Ok(mut r) = script.requests.lock() {
        r.push(req.clone());
    }
    let cwd = find_cwd(&body, &script.worktrees);
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
    let directive = parse_directive(&last_user);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let fresh = directive.filter(|(name, _)| {
        script
            .written
            .lock()
            .map(|mut w| {
                let new = !w.contains(name);
                if new && has_tools && last_role.as_deref() == Some("user") {
                    w.push(name.clone());
                }
                new
            })
            .unwrap_or(false)
    });
    let events = match (write_tool(&req), last_role.as_deref(), fresh) {
        (Some((tool, arg)), Some("user"), Some((name, text))) => {
            let path = cwd.as_ref().map_or(name.clone(), |c| format!("{c}/{name}"));
            let mut args = serde_json::Map::new();
            args.insert(arg, json!(path));
            args.insert("content".into(), json!(format!("{text}\n")));
            vec![
                chunk(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_{name}"), "type": "function",
                        "function": {"name": tool, "arguments": Value::Object(args).to_string()}}]}),
                    Value::Null,
                ),
                chunk(json!({}), json!("tool_calls")),
            ]
        }
        (Some(_), Some("tool"), _) => vec![
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

/// The Anthropic Messages API flavour of the same script (claude-code-acp), streamed as SSE.
async fn messages(State(script): State<Script>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Ok(mut r) = script.requests.lock() {
        r.push(req.clone());
    }
    let cwd = find_cwd(&body, &script.worktrees);
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    // Claude Code merges a new prompt into the user message that carries the last tool
    // result, so look at the text blocks for a directive before treating it as a result.
    let blocks = last["content"].as_array().cloned().unwrap_or_default();
    let texts: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let after_tool = blocks.iter().any(|b| b["type"] == "tool_result");
    let tool = req["tools"].as_array().and_then(|tools| {
        tools.iter().find_map(|t| {
            let name = t["name"].as_str()?;
            (matches!(name, "mcp__acp__Write" | "Write")
                && t["input_schema"]["properties"]["file_path"].is_object())
            .then(|| name.to_string())
        })
    });
    let fresh = match &tool {
        Some(_) if last["role"] == "user" => parse_directive(&texts).filter(|(name, _)| {
            script
                .written
                .lock()
                .map(|mut w| {
                    let new = !w.contains(name);
                    if new {
                        w.push(name.clone());
                    }
                    new
                })
                .unwrap_or(false)
        }),
        _ => None,
    };
    let (block, delta, stop) = match (tool, fresh) {
        (Some(tool), Some((name, text))) => {
            let path = cwd.as_ref().map_or(name.clone(), |c| format!("{c}/{name}"));
            let input = json!({"file_path": path, "content": format!("{text}\n")});
            (
                json!({"type": "tool_use", "id": format!("toolu_{}", name.replace('.', "_")), "name": tool, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                "tool_use",
            )
        }
        _ => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": if after_tool { "done: the file is written" } else { "scripted title" }}),
            "end_turn",
        ),
    };
    let model = req["model"].as_str().unwrap_or("claude-fake").to_string();
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 5}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut sse = String::new();
    for (name, data) in events {
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    ([("content-type", "text/event-stream")], sse).into_response()
}

/// The session worktree named in the agent's system prompt (`DATA/worktrees/s-…`).
fn find_cwd(body: &str, worktrees: &str) -> Option<String> {
    body.find(worktrees).map(|at| {
        let rest = &body[at..];
        let end = rest[worktrees.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(rest.len(), |e| e + worktrees.len());
        rest[..end].to_string()
    })
}

/// `FILE=name TEXT=words` in a message.
fn parse_directive(text: &str) -> Option<(String, String)> {
    text.find("FILE=").map(|at| {
        let rest = &text[at + 5..];
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
    })
}

/// Schema-valid JSON for gemini-cli's structured side calls (its model router).
fn synth(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let ty = schema["type"].as_str().unwrap_or("").to_ascii_lowercase();
    match ty.as_str() {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .map(|p| p.iter().map(|(k, v)| (k.clone(), synth(v))).collect())
                .unwrap_or_default(),
        ),
        "array" => json!([]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        _ => json!("simple"),
    }
}

/// The Gemini API flavour of the script (gemini-cli): `models/{model}:{action}`.
async fn gemini(
    State(script): State<Script>,
    axum::extract::Path(spec): axum::extract::Path<String>,
    body: String,
) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if spec.ends_with(":countTokens") {
        return (
            [("content-type", "application/json")],
            json!({"totalTokens": 10}).to_string(),
        )
            .into_response();
    }
    if let Ok(mut r) = script.requests.lock() {
        r.push(req.clone());
    }
    let cwd = find_cwd(&body, &script.worktrees);
    let config = &req["generationConfig"];
    let schema = [&config["responseJsonSchema"], &config["responseSchema"]]
        .into_iter()
        .find(|s| s.is_object())
        .cloned();
    let last = req["contents"]
        .as_array()
        .and_then(|c| c.last())
        .cloned()
        .unwrap_or(Value::Null);
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    let texts: String = parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let after_tool = parts.iter().any(|p| p["functionResponse"].is_object());
    let has_write = req["tools"].as_array().is_some_and(|tools| {
        tools.iter().any(|t| {
            t["functionDeclarations"]
                .as_array()
                .is_some_and(|d| d.iter().any(|f| f["name"] == "write_file"))
        })
    });
    let fresh = if has_write && last["role"] == "user" {
        parse_directive(&texts).filter(|(name, _)| {
            script
                .written
                .lock()
                .map(|mut w| {
                    let new = !w.contains(name);
                    if new {
                        w.push(name.clone());
                    }
                    new
                })
                .unwrap_or(false)
        })
    } else {
        None
    };
    let part = match (schema, fresh) {
        (Some(schema), _) => json!({"text": synth(&schema).to_string()}),
        (None, Some((name, text))) => {
            let path = cwd.as_ref().map_or(name.clone(), |c| format!("{c}/{name}"));
            json!({"functionCall": {"name": "write_file", "args": {"file_path": path, "content": format!("{text}\n")}}})
        }
        (None, None) if after_tool => json!({"text": "done: the file is written"}),
        (None, None) => json!({"text": "scripted title"}),
    };
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "gemini-fake"
    });
    if spec.ends_with(":streamGenerateContent") {
        (
            [("content-type", "text/event-stream")],
            format!("data: {response}\n\n"),
        )
            .into_response()
    } else {
        ([("content-type", "application/json")], response.to_string()).into_response()
    }
}

async fn fake_llm(env: &Env) -> (String, Script) {
    let script = Script {
        worktrees: format!("{}/", env.data.join("worktrees").display()),
        ..Script::default()
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .route("/v1/messages", axum::routing::post(messages))
        .route("/v1beta/models/{spec}", axum::routing::post(gemini))
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

/// Register `agent` in the providers file with `command` and `env`.
fn register(env: &Env, agent: &str, command: Value, agent_env: Value) {
    let file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("providers")).expect("json");
    providers["providers"][agent] = json!({"command": command, "env": agent_env});
    std::fs::write(&file, providers.to_string()).expect("write providers");
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Two turns in one session, each writing a file; prints (first update, done) per turn.
/// Returns the transcripts.
async fn two_turns(env: &Env, agent: &str, script: &Script) -> Vec<String> {
    let server = Server::stdio(env, &[]).await;
    let c = &server.client;
    let mut figures = Vec::new();
    let mut transcripts = Vec::new();
    let mut session: Option<String> = None;
    for (file, text) in [
        ("hello.txt", "hello from the agent"),
        ("second.txt", "second turn"),
    ] {
        let mut args =
            json!({"prompt": format!("Create the file. FILE={file} TEXT={text}"), "agent": agent});
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
        assert_eq!(s["state"], "completed", "{s:#}\n{out:#}\n{}", server.log());
        assert!(
            out["diff"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("+{text}")),
            "{out:#}"
        );
        let events = out["transcript"].as_array().cloned().unwrap_or_default();
        transcripts.push(
            events
                .iter()
                .map(|e| {
                    format!(
                        "[{}] {}",
                        e["kind"].as_str().unwrap_or(""),
                        e["text"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let permissions = events
            .iter()
            .filter(|e| {
                e["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("permission for"))
            })
            .count();
        let ms = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
                .expect("rfc")
                .timestamp_millis()
        };
        let (start, end) = (ms(&s["started_at"]), ms(&s["ended_at"]));
        let first = events
            .iter()
            .find(|e| matches!(e["kind"].as_str(), Some("text" | "reasoning" | "tool_call")))
            .and_then(|e| e["at"].as_i64())
            .unwrap_or(start);
        figures.push((first - start, end - start, permissions));
    }
    eprintln!(
        "FIGURES {agent} first turn: first update {} ms, done {} ms; second (warm) turn: first update {} ms, done {} ms; permission decisions {}+{}; model requests {}",
        figures[0].0,
        figures[0].1,
        figures[1].0,
        figures[1].1,
        figures[0].2,
        figures[1].2,
        script.requests.lock().map(|r| r.len()).unwrap_or(0)
    );
    server.stop().await;
    transcripts
}

/// opencode writes files itself and asks no permissions with this config.
#[tokio::test]
async fn opencode_edits_arrive_as_a_pending_change() {
    if !enabled() {
        eprintln!("skipped: set BOOCODER_E2E_REAL_AGENTS=1 to run real agents");
        return;
    }
    let bin = agent_bin("BOOCODER_OPENCODE_BIN", "opencode", "opencode-ai@1.18.33");
    let env = Env::new();
    let (base, script) = fake_llm(&env).await;
    let home = env.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let config = json!({
        "model": "fake/fake-model", "small_model": "fake/fake-model", "autoupdate": false, "share": "disabled",
        "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("{base}/v1"), "apiKey": "fake-key"},
            "models": {"fake-model": {"tool_call": true}}}},
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"}
    });
    register(
        &env,
        "opencode",
        json!([bin, "acp"]),
        json!({
            "HOME": home, "PATH": path_with(&bin), "DO_NOT_TRACK": "1",
            "OPENCODE_CONFIG_CONTENT": config.to_string(),
            "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"
        }),
    );
    two_turns(&env, "opencode", &script).await;
}

/// qwen-code writes through the client's `fs/write_text_file` and asks permission first, so
/// this exercises boocoder's fs handler and permission policy with a real agent.
#[tokio::test]
async fn qwen_writes_through_client_fs_and_the_edit_arrives() {
    if !enabled() {
        eprintln!("skipped: set BOOCODER_E2E_REAL_AGENTS=1 to run real agents");
        return;
    }
    let bin = agent_bin("BOOCODER_QWEN_BIN", "qwen", "@qwen-code/qwen-code@0.24.4");
    let env = Env::new();
    let (base, script) = fake_llm(&env).await;
    let home = env.root().join("home");
    std::fs::create_dir_all(home.join(".qwen")).expect("home");
    let settings = json!({"general": {"enableAutoUpdate": false, "disableAutoUpdate": true},
        "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
        "security": {"auth": {"selectedType": "openai"}}, "model": {"name": "fake-model"}});
    std::fs::write(home.join(".qwen/settings.json"), settings.to_string()).expect("settings");
    register(
        &env,
        "qwen",
        json!([bin, "--acp"]),
        json!({
            "HOME": home, "PATH": path_with(&bin), "DO_NOT_TRACK": "1",
            "OPENAI_API_KEY": "fake-key", "OPENAI_BASE_URL": format!("{base}/v1"), "OPENAI_MODEL": "fake-model"
        }),
    );
    let transcripts = two_turns(&env, "qwen", &script).await;
    for t in &transcripts {
        assert!(
            t.contains("via fs/write_text_file"),
            "qwen did not write through the client:\n{t}"
        );
    }
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

/// claude-code-acp asks permission before every write and writes through the client's fs:
/// the permission policy and the fs handler meet a real agent.
#[tokio::test]
async fn claude_code_acp_asks_permission_and_writes_through_client_fs() {
    if !enabled() {
        eprintln!("skipped: set BOOCODER_E2E_REAL_AGENTS=1 to run real agents");
        return;
    }
    let bin = agent_bin(
        "BOOCODER_CLAUDE_CODE_ACP_BIN",
        "claude-code-acp",
        "@zed-industries/claude-code-acp@0.16.2",
    );
    let env = Env::new();
    let (base, script) = fake_llm(&env).await;
    let home = env.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    register(
        &env,
        "claude-code",
        json!([bin]),
        json!({
            "HOME": home, "PATH": path_with(&bin), "DO_NOT_TRACK": "1",
            "ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": "fake-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
        // Claude Code refuses to run as root outside a declared sandbox (CI containers are).
        "IS_SANDBOX": "1"
        }),
    );
    let transcripts = two_turns(&env, "claude-code", &script).await;
    for t in &transcripts {
        assert!(
            t.contains("by policy allow"),
            "no recorded permission decision:\n{t}"
        );
    }
}

/// gemini-cli runs with client fs off (it mishandles fs error replies) and writes itself.
#[tokio::test]
async fn gemini_cli_with_client_fs_off_edits_arrive() {
    if !enabled() {
        eprintln!("skipped: set BOOCODER_E2E_REAL_AGENTS=1 to run real agents");
        return;
    }
    let bin = agent_bin("BOOCODER_GEMINI_BIN", "gemini", "@google/gemini-cli@0.61.0");
    let env = Env::new();
    let (base, script) = fake_llm(&env).await;
    let home = env.root().join("home");
    std::fs::create_dir_all(home.join(".gemini")).expect("home");
    let settings = json!({"general": {"disableAutoUpdate": true, "disableUpdateNag": true},
        "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}}});
    std::fs::write(home.join(".gemini/settings.json"), settings.to_string()).expect("settings");
    register(
        &env,
        "gemini",
        json!([bin, "--acp"]),
        json!({
            "HOME": home, "PATH": path_with(&bin), "DO_NOT_TRACK": "1",
            "GEMINI_API_KEY": "fake-key", "GOOGLE_GEMINI_BASE_URL": base
        }),
    );
    let transcripts = two_turns(&env, "gemini", &script).await;
    for t in &transcripts {
        assert!(
            !t.contains("via fs/write_text_file"),
            "client fs must be off for gemini:\n{t}"
        );
    }
}
