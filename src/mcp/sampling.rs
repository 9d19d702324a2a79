//! MCP sampling as the native loop's model: when no endpoint is configured and the client
//! declared `sampling` with tools (2025-11-25 clients), each round becomes a
//! `sampling/createMessage` request to that client. Conversions go through the wire JSON so
//! they follow the spec's shape rather than the SDK's constructors.
#![allow(deprecated)] // why: rmcp marks sampling deprecated (SEP-2577); 2025-11-25 clients use it

use serde_json::{Value, json};

use rmcp::RoleServer;
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult};
use rmcp::service::Peer;

use crate::backend::BoxFuture;
use crate::backend::native::client::Completion;
use crate::backend::native::history::{Message, ToolCall};
use crate::backend::native::{SampleRequest, Sampler, SamplerHandle};

/// The sampler of a client that can run tools in sampling, if this one can. Clients on the
/// stateless 2026-07-28 lifecycle never qualify: they cannot receive server requests.
pub fn sampler_for(peer: &Peer<RoleServer>) -> Option<SamplerHandle> {
    peer.supports_sampling_tools()
        .then(|| SamplerHandle(std::sync::Arc::new(McpSampler { peer: peer.clone() })))
}

struct McpSampler {
    peer: Peer<RoleServer>,
}

impl Sampler for McpSampler {
    fn sample<'a>(&'a self, req: SampleRequest) -> BoxFuture<'a, Result<Completion, String>> {
        Box::pin(async move {
            let params: CreateMessageRequestParams = serde_json::from_value(request_json(&req))
                .map_err(|e| format!("could not build the sampling request: {e}"))?;
            // The caller bounds this with its own timeout (a silent client must not hang a task).
            let result = self
                .peer
                .create_message(params)
                .await
                .map_err(|e| e.to_string())?;
            completion_of(&result)
        })
    }
}

/// A [`SampleRequest`] as `sampling/createMessage` params: tool results become user messages
/// of `tool_result` blocks (consecutive ones merged), assistant tool calls `tool_use` blocks.
pub fn request_json(req: &SampleRequest) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m {
            Message::System { content } | Message::User { content } => {
                messages
                    .push(json!({"role": "user", "content": {"type": "text", "text": content}}));
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(t) = content.as_ref().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": t}));
                }
                for c in tool_calls {
                    let input = serde_json::from_str::<Value>(&c.function.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.function.name, "input": input}));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": ""}));
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                let block = json!({"type": "tool_result", "toolUseId": tool_call_id,
                    "content": [{"type": "text", "text": content}]});
                let merged = messages.last_mut().is_some_and(|last| {
                    let is_results = last["role"] == "user"
                        && last["content"]
                            .as_array()
                            .is_some_and(|b| b.iter().all(|b| b["type"] == "tool_result"));
                    if is_results && let Some(b) = last["content"].as_array_mut() {
                        b.push(block.clone());
                    }
                    is_results
                });
                if !merged {
                    messages.push(json!({"role": "user", "content": [block]}));
                }
            }
        }
    }
    let tools: Vec<Value> = req
        .tools
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let f = &t["function"];
            json!({"name": f["name"], "description": f["description"], "inputSchema": f["parameters"]})
        })
        .collect();
    let mut params = json!({
        "messages": messages,
        "systemPrompt": req.system,
        "maxTokens": req.max_tokens,
        "tools": tools,
    });
    if let Some(m) = &req.model_hint {
        params["modelPreferences"] = json!({"hints": [{"name": m}]});
    }
    params
}

/// The client's answer as one round: its text and tool calls.
pub fn completion_of(result: &CreateMessageResult) -> Result<Completion, String> {
    let v = serde_json::to_value(result).map_err(|e| e.to_string())?;
    let blocks = match &v["content"] {
        Value::Array(b) => b.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    let mut done = Completion {
        finish_reason: v["stopReason"].as_str().map(str::to_string),
        ..Completion::default()
    };
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("text") => done.text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => done.tool_calls.push(ToolCall {
                id: b["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| format!("call_{i}"), str::to_string),
                name: b["name"].as_str().unwrap_or("").to_string(),
                arguments: b["input"].to_string(),
            }),
            _ => {}
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::native::history::WireCall;

    #[test]
    fn rounds_convert_to_sampling_messages_and_back() {
        let req = SampleRequest {
            system: "sys".into(),
            messages: vec![
                Message::User {
                    content: "go".into(),
                },
                Message::Assistant {
                    content: Some("looking".into()),
                    tool_calls: vec![
                        WireCall::from(&ToolCall {
                            id: "a".into(),
                            name: "read_file".into(),
                            arguments: r#"{"path":"x"}"#.into(),
                        }),
                        WireCall::from(&ToolCall {
                            id: "b".into(),
                            name: "list_dir".into(),
                            arguments: "{}".into(),
                        }),
                    ],
                },
                Message::Tool {
                    tool_call_id: "a".into(),
                    content: "X".into(),
                },
                Message::Tool {
                    tool_call_id: "b".into(),
                    content: "x".into(),
                },
            ],
            tools: crate::backend::native::tools::definitions(),
            max_tokens: 100,
            model_hint: Some("m".into()),
        };
        let v = request_json(&req);
        let params: CreateMessageRequestParams =
            serde_json::from_value(v.clone()).expect("valid params");
        params.validate().expect("balanced tool use");
        assert_eq!(v["messages"].as_array().expect("messages").len(), 3);
        assert_eq!(v["messages"][2]["content"][1]["toolUseId"], "b");
        assert_eq!(v["tools"][0]["name"], "read_file");

        let result: CreateMessageResult = serde_json::from_value(json!({
            "role": "assistant", "model": "m", "stopReason": "toolUse",
            "content": [{"type": "text", "text": "ok"},
                        {"type": "tool_use", "id": "c", "name": "write_file", "input": {"path": "p", "content": "q"}}]
        }))
        .expect("result");
        let done = completion_of(&result).expect("completion");
        assert_eq!(done.text, "ok");
        assert_eq!(done.tool_calls[0].name, "write_file");
        assert_eq!(
            serde_json::from_str::<Value>(&done.tool_calls[0].arguments).expect("json"),
            json!({"path": "p", "content": "q"})
        );
    }
}
