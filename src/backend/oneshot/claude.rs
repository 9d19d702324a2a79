//! `claude -p --output-format stream-json --verbose` (verified with Claude Code 2.1.197): one
//! JSON object a line —
//! `{"type":"system","subtype":"init","session_id":…,"model":…,"claude_code_version":…}`, then
//! `{"type":"assistant","message":{"content":[{"type":"text"|"thinking"|"tool_use",…}]}}` and
//! `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":…,"content":…,"is_error":…}]}}`
//! as the work goes, and last
//! `{"type":"result","subtype":"success"|"error_…","is_error":…,"result":"…","session_id":…,"total_cost_usd":…,"usage":{"input_tokens","cache_creation_input_tokens","cache_read_input_tokens","output_tokens"},"errors":[…]}`.
//! An unknown `--resume` id gives only that result line (`error_during_execution`, "No
//! conversation found …") and exit status 1.

use serde_json::Value;

use super::output::{Parsed, Plain, count, cut, str_of, tool_output, with_newline};
use crate::backend::TurnEvent;
use crate::domain::Usage;

/// System events that only say the agent is busy; the transcript skips them.
const QUIET: [&str; 13] = [
    "thinking_tokens",
    "status",
    "hook_started",
    "hook_progress",
    "hook_response",
    "session_state_changed",
    "turn_starting",
    "turn_duration",
    "commands_changed",
    "file_snapshot",
    "bridge_state",
    "bridge_status",
    "task_progress",
];

/// Line types with nothing for the transcript (we ask for no partial messages and send no
/// control requests).
const IGNORED: [&str; 7] = [
    "stream_event",
    "keep_alive",
    "control_request",
    "control_response",
    "auth_status",
    "prompt_suggestion",
    "tool_progress",
];

#[derive(Default)]
pub(in crate::backend) struct Parser {
    conversation: Option<String>,
    started: bool,
    result: Option<String>,
    last_text: Option<String>,
    usage: Usage,
    error: Option<String>,
    failed: bool,
    pub(super) plain: Plain,
}

impl Parser {
    /// The events of one JSON line; `None` for a line this parser does not know.
    pub(super) fn event(&mut self, v: &Value) -> Option<Vec<TurnEvent>> {
        match str_of(v, "type")? {
            "system" => Some(self.system(v)),
            "assistant" => Some(self.assistant(v)),
            "user" => Some(user(v)),
            "result" => {
                self.result(v);
                Some(Vec::new())
            }
            "tool_use_summary" => Some(
                str_of(v, "summary")
                    .map(|s| TurnEvent::Notice(s.to_string()))
                    .into_iter()
                    .collect(),
            ),
            "rate_limit_event" => {
                let status = v["rate_limit_info"]["status"].as_str().unwrap_or("unknown");
                Some(if status == "allowed" {
                    Vec::new()
                } else {
                    vec![TurnEvent::Notice(format!("rate limit: {status}"))]
                })
            }
            t if IGNORED.contains(&t) => Some(Vec::new()),
            _ => None,
        }
    }

    fn system(&mut self, v: &Value) -> Vec<TurnEvent> {
        let subtype = str_of(v, "subtype").unwrap_or("");
        let note = match subtype {
            "init" => {
                self.started = true;
                self.conversation = str_of(v, "session_id").map(str::to_string);
                format!(
                    "Claude Code {}: session {}, model {}",
                    str_of(v, "claude_code_version").unwrap_or("?"),
                    self.conversation.as_deref().unwrap_or("?"),
                    str_of(v, "model").unwrap_or("?")
                )
            }
            "api_retry" => format!(
                "API request failed ({}); retry {} of {}",
                v.get("error")
                    .map(|e| e.as_str().map_or(e.to_string(), str::to_string))
                    .unwrap_or_default(),
                v.get("attempt").unwrap_or(&Value::Null),
                v.get("max_retries").unwrap_or(&Value::Null)
            ),
            "compact_boundary" => "the conversation was compacted".into(),
            s if QUIET.contains(&s) => return Vec::new(),
            s => {
                let said = ["message", "content", "text", "error"]
                    .into_iter()
                    .find_map(|k| str_of(v, k));
                match said {
                    Some(m) => format!("claude {s}: {m}"),
                    None => format!("claude {s}"),
                }
            }
        };
        vec![TurnEvent::Notice(note)]
    }

    fn assistant(&mut self, v: &Value) -> Vec<TurnEvent> {
        let top_level = v.get("parent_tool_use_id").is_none_or(Value::is_null);
        let Some(blocks) = v["message"]["content"].as_array() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for b in blocks {
            match str_of(b, "type").unwrap_or("") {
                "text" => {
                    let text = str_of(b, "text").unwrap_or("");
                    if text.is_empty() {
                        continue;
                    }
                    if top_level {
                        self.last_text = Some(text.to_string());
                    }
                    events.push(TurnEvent::Text(with_newline(text)));
                }
                "thinking" => {
                    let text = str_of(b, "thinking").unwrap_or("");
                    if !text.is_empty() {
                        events.push(TurnEvent::Reasoning(with_newline(text)));
                    }
                }
                "redacted_thinking" => {}
                "tool_use" => events.extend(tool_use(b)),
                other => events.push(TurnEvent::Notice(format!("[{other}]"))),
            }
        }
        events
    }

    fn result(&mut self, v: &Value) {
        if self.started
            && let Some(id) = str_of(v, "session_id")
        {
            self.conversation = Some(id.to_string());
        }
        self.usage = usage(v);
        let failed = v["is_error"].as_bool().unwrap_or(false)
            || str_of(v, "subtype").is_some_and(|s| s != "success");
        if failed {
            self.failed = true;
            let errors: Vec<&str> = v["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            self.error = Some(if !errors.is_empty() {
                errors.join("; ")
            } else if let Some(r) = str_of(v, "result").filter(|r| !r.is_empty()) {
                r.to_string()
            } else {
                format!(
                    "claude ended with `{}`",
                    str_of(v, "subtype").unwrap_or("?")
                )
            });
        } else {
            self.result = str_of(v, "result").map(str::to_string);
        }
    }

    pub(super) fn finish(self) -> Parsed {
        let final_message = match (self.result, self.last_text) {
            (Some(r), _) => r.trim().to_string(),
            (None, Some(t)) => t.trim().to_string(),
            (None, None) => self.plain.into_message(),
        };
        Parsed {
            final_message,
            conversation: self.conversation,
            usage: self.usage,
            error: self.error,
            failed: self.failed,
            started: self.started,
        }
    }
}

/// The result's usage: input counts every token the model read (fresh, written to the cache
/// and read from it — Claude reports the three apart), `cached_tokens` the cache reads.
fn usage(v: &Value) -> Usage {
    let u = &v["usage"];
    let (input, created, read, output) = (
        count(u, "input_tokens"),
        count(u, "cache_creation_input_tokens"),
        count(u, "cache_read_input_tokens"),
        count(u, "output_tokens"),
    );
    let any_input = input.is_some() || created.is_some() || read.is_some();
    Usage {
        input_tokens: any_input.then(|| {
            input
                .unwrap_or(0)
                .saturating_add(created.unwrap_or(0))
                .saturating_add(read.unwrap_or(0))
        }),
        output_tokens: output,
        cached_tokens: read,
        cost_usd: v["total_cost_usd"].as_f64(),
        ..Usage::default()
    }
}

/// A `tool_use` block: the call, and for `TodoWrite` the plan it sets.
fn tool_use(b: &Value) -> Vec<TurnEvent> {
    let name = str_of(b, "name").unwrap_or("tool");
    let input = b.get("input").cloned();
    let mut events = vec![TurnEvent::ToolCall {
        id: str_of(b, "id").unwrap_or("").to_string(),
        title: tool_title(name, input.as_ref()),
        kind: Some(tool_kind(name).to_string()),
        input: input.clone(),
    }];
    if name == "TodoWrite"
        && let Some(todos) = input.as_ref().and_then(|i| i["todos"].as_array())
    {
        events.push(TurnEvent::Plan(
            todos
                .iter()
                .map(|t| {
                    format!(
                        "[{}] {}",
                        str_of(t, "status").unwrap_or("pending"),
                        str_of(t, "content").unwrap_or("")
                    )
                })
                .collect(),
        ));
    }
    events
}

/// `Name: its main argument` (first line, bounded), or the name alone.
fn tool_title(name: &str, input: Option<&Value>) -> String {
    const MAIN: [&str; 8] = [
        "command",
        "file_path",
        "notebook_path",
        "path",
        "pattern",
        "url",
        "query",
        "description",
    ];
    let arg = input.and_then(|i| MAIN.into_iter().find_map(|k| str_of(i, k)));
    match arg {
        Some(a) => format!("{name}: {}", cut(a.lines().next().unwrap_or(""), 200)),
        None => name.to_string(),
    }
}

/// The ACP tool kind closest to a Claude Code tool.
fn tool_kind(name: &str) -> &'static str {
    match name {
        "Bash" | "BashOutput" | "KillShell" | "KillBash" => "execute",
        "Edit" | "MultiEdit" | "Write" | "NotebookEdit" => "edit",
        "Read" => "read",
        "Grep" | "Glob" | "LS" => "search",
        "WebFetch" | "WebSearch" => "fetch",
        "TodoWrite" => "think",
        _ => "other",
    }
}

/// A `user` line: the results of tool calls (the prompt itself is not echoed).
fn user(v: &Value) -> Vec<TurnEvent> {
    let Some(blocks) = v["message"]["content"].as_array() else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter(|b| str_of(b, "type") == Some("tool_result"))
        .map(|b| {
            let failed = b["is_error"].as_bool().unwrap_or(false);
            TurnEvent::ToolUpdate {
                id: str_of(b, "tool_use_id").unwrap_or("").to_string(),
                status: Some(if failed { "failed" } else { "completed" }.into()),
                output: tool_output(&result_text(&b["content"])),
            }
        })
        .collect()
}

/// A tool result's content: a string, or blocks of which the texts are kept.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match str_of(b, "type") {
                Some("text") => str_of(b, "text").unwrap_or("").to_string(),
                Some(other) => format!("[{other}]"),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
