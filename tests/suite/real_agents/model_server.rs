//! The scripted model server real agents talk to, in the four wire formats they speak:
//! OpenAI chat completions (opencode, qwen-code), Anthropic Messages (claude-code-acp,
//! `claude -p`), the Gemini API (gemini-cli) and OpenAI Responses (`codex exec`).
//! `FILE=name TEXT=words` in a prompt makes the model write that file with the agent's own
//! write tool, once per file. Every answer reports the same usage in its format's own terms
//! (10 input tokens, 4 of them cached, 5 output, 2 of them reasoning where the format has it:
//! Anthropic counts cache reads beside its `input_tokens`, Gemini thoughts beside its
//! candidates), and the server records which models the requests named.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::Env;

/// How many requests the scripted model answered, the models they named, and which files it
/// already wrote.
#[derive(Clone, Default)]
pub struct Script {
    requests: Arc<AtomicUsize>,
    models: Arc<Mutex<Vec<String>>>,
    written: Arc<Mutex<Vec<String>>>,
    /// `DATA/worktrees/`: the session's worktree is found in the agent's system prompt.
    worktrees: String,
}

impl Script {
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The distinct model names the requests asked for, in order of first use.
    pub fn models(&self) -> Vec<String> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Count a request for `model` (the body's `model`, or the Gemini API's path).
    fn record(&self, model: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.models.lock()
            && !m.iter().any(|x| x == model)
        {
            m.push(model.to_string());
        }
    }

    /// Whether `name` was not written yet; `claim` marks it written (agents make background
    /// calls that quote the conversation, and those must not write again).
    fn fresh(&self, name: &str, claim: bool) -> bool {
        self.written
            .lock()
            .map(|mut w| {
                let new = !w.iter().any(|n| n == name);
                if new && claim {
                    w.push(name.to_string());
                }
                new
            })
            .unwrap_or(false)
    }
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
    script.record(req["model"].as_str().unwrap_or(""));
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
    let claim = has_tools && last_role.as_deref() == Some("user");
    let fresh = directive.filter(|(name, _)| script.fresh(name, claim));
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
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                   "prompt_tokens_details": {"cached_tokens": 4},
                   "completion_tokens_details": {"reasoning_tokens": 2}}})
    ));
    ([("content-type", "text/event-stream")], sse).into_response()
}

/// The Anthropic Messages API flavour of the same script (claude-code-acp), streamed as SSE.
async fn messages(State(script): State<Script>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    script.record(req["model"].as_str().unwrap_or(""));
    let cwd = find_cwd(&body, &script.worktrees);
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    // `claude -p` (2.1.197) sends a trailing `system` message (its agent list) after the user's
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user" || m["role"] == "assistant")
        .cloned()
        .unwrap_or(Value::Null);
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
        Some(_) if last["role"] == "user" => {
            parse_directive(&texts).filter(|(name, _)| script.fresh(name, true))
        }
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
            "usage": {"input_tokens": 6, "cache_read_input_tokens": 4, "output_tokens": 1}}}),
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
    script.record(spec.split(':').next().unwrap_or(""));
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
        parse_directive(&texts).filter(|(name, _)| script.fresh(name, true))
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
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 15,
            "cachedContentTokenCount": 4, "thoughtsTokenCount": 2},
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

/// The OpenAI Responses flavour of the script (`codex exec`, streamed as SSE): a directive in
/// the latest user message runs codex's `exec_command` tool to write the file (in the turn's
/// working directory, the worktree); after the tool's output it says it is done. Usage is
/// reported with cached and reasoning parts.
async fn responses(State(script): State<Script>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    script.record(req["model"].as_str().unwrap_or(""));
    let input = req["input"].as_array().cloned().unwrap_or_default();
    let last = input.last().cloned().unwrap_or(Value::Null);
    let has_exec = req["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == "exec_command"));
    let after_tool = last["type"] == "function_call_output";
    let fresh = if has_exec && last["role"] == "user" {
        parse_directive(&last["content"].to_string()).filter(|(name, _)| script.fresh(name, true))
    } else {
        None
    };
    let item = match fresh {
        Some((name, text)) => {
            json!({"type": "function_call", "id": "fc_1", "call_id": format!("call_{name}"),
            "name": "exec_command", "status": "completed",
            "arguments": json!({"cmd": format!("printf '%s\\n' '{text}' > '{name}'")}).to_string()})
        }
        None => {
            json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "annotations": [],
                "text": if after_tool { "done: the file is written" } else { "scripted reply" }}]})
        }
    };
    let events = [
        json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [item],
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}}}),
    ];
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!(
            "event: {}\ndata: {e}\n\n",
            e["type"].as_str().unwrap_or("")
        ));
    }
    ([("content-type", "text/event-stream")], sse).into_response()
}

/// Start the server for `env`'s worktrees; returns its base URL and what it records.
pub async fn start(env: &Env) -> (String, Script) {
    let script = Script {
        worktrees: format!("{}/", env.data.join("worktrees").display()),
        ..Script::default()
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .route("/v1/messages", axum::routing::post(messages))
        .route("/v1/responses", axum::routing::post(responses))
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
