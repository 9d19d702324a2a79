//! `codex exec --json` (verified with codex-cli 0.171.0): one JSON event a line —
//! `{"type":"thread.started","thread_id":…}`, `{"type":"turn.started"}`,
//! `{"type":"item.started"|"item.updated"|"item.completed","item":{"id":…,"type":…}}` with
//! items `agent_message {text}`, `reasoning {text}`,
//! `command_execution {command, aggregated_output, exit_code, status}`,
//! `file_change {changes:[{path,kind}], status}`,
//! `mcp_tool_call {server, tool, arguments, result, error, status}`, `web_search {query}`,
//! `todo_list {items:[{text,completed}]}`, `error {message}`; then
//! `{"type":"turn.completed","usage":{"input_tokens","cached_input_tokens","output_tokens","reasoning_output_tokens",…}}`
//! or `{"type":"turn.failed","error":{"message"}}`, and `{"type":"error","message"}` on the
//! way. The usage counts the whole thread: a resumed thread's report includes its earlier
//! turns (measured), so a turn's share is the difference ([`turn_share`]). An unknown
//! `exec resume` id prints nothing on stdout ("no rollout found for thread id …" on stderr)
//! and exits with status 1.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::output::{Parsed, Plain, count, str_of, tool_output, with_newline};
use crate::backend::TurnEvent;
use crate::domain::Usage;

#[derive(Default)]
pub(in crate::backend) struct Parser {
    conversation: Option<String>,
    started: bool,
    last_message: Option<String>,
    usage: Usage,
    error: Option<String>,
    failed: bool,
    /// Items whose call is in the transcript already (from `item.started`).
    announced: HashSet<String>,
    pub(super) plain: Plain,
}

impl Parser {
    /// The events of one JSON line; `None` for a line this parser does not know.
    pub(super) fn event(&mut self, v: &Value) -> Option<Vec<TurnEvent>> {
        let events = match str_of(v, "type")? {
            "thread.started" => {
                self.started = true;
                self.conversation = str_of(v, "thread_id").map(str::to_string);
                vec![TurnEvent::Notice(format!(
                    "codex thread {}",
                    self.conversation.as_deref().unwrap_or("?")
                ))]
            }
            "turn.started" => Vec::new(),
            "turn.completed" => {
                self.usage = usage(&v["usage"]);
                Vec::new()
            }
            "turn.failed" => {
                let message = str_of(&v["error"], "message").unwrap_or("the turn failed");
                self.failed = true;
                self.error = Some(message.to_string());
                vec![TurnEvent::Notice(format!("turn failed: {message}"))]
            }
            // Also transient trouble (a reconnecting stream): told, and quoted if the run
            // fails, but not a failure by itself.
            "error" => {
                let message = str_of(v, "message").unwrap_or("error");
                if !self.failed {
                    self.error = Some(message.to_string());
                }
                vec![TurnEvent::Notice(message.to_string())]
            }
            "item.started" => self.item(&v["item"], Phase::Started),
            "item.updated" => self.item(&v["item"], Phase::Updated),
            "item.completed" => self.item(&v["item"], Phase::Completed),
            _ => return None,
        };
        Some(events)
    }

    fn item(&mut self, item: &Value, phase: Phase) -> Vec<TurnEvent> {
        let id = str_of(item, "id").unwrap_or("").to_string();
        let kind = str_of(item, "type").unwrap_or("");
        match (kind, phase) {
            ("agent_message", Phase::Completed) => {
                let text = str_of(item, "text").unwrap_or("");
                self.last_message = Some(text.to_string());
                vec![TurnEvent::Text(with_newline(text))]
            }
            ("reasoning", Phase::Completed) => {
                vec![TurnEvent::Reasoning(with_newline(
                    str_of(item, "text").unwrap_or(""),
                ))]
            }
            ("todo_list", _) => vec![plan(item)],
            ("error", _) => vec![TurnEvent::Notice(
                str_of(item, "message").unwrap_or("error").to_string(),
            )],
            ("command_execution" | "file_change" | "mcp_tool_call" | "web_search", _) => {
                self.tool(id, item, phase)
            }
            (_, Phase::Completed) => vec![TurnEvent::Notice(format!("codex {kind}"))],
            _ => Vec::new(),
        }
    }

    /// A tool item: the call when it starts (or when it is only reported done), its status
    /// and output when it completes.
    fn tool(&mut self, id: String, item: &Value, phase: Phase) -> Vec<TurnEvent> {
        let mut events = Vec::new();
        if phase != Phase::Updated && self.announced.insert(id.clone()) {
            let (title, kind, input) = call(item);
            events.push(TurnEvent::ToolCall {
                id: id.clone(),
                title,
                kind: Some(kind.into()),
                input,
            });
        }
        if phase == Phase::Completed {
            events.push(TurnEvent::ToolUpdate {
                id,
                status: Some(str_of(item, "status").unwrap_or("completed").to_string()),
                output: tool_result(item),
            });
        }
        events
    }

    pub(super) fn finish(self) -> Parsed {
        Parsed {
            final_message: match self.last_message {
                Some(m) => m.trim().to_string(),
                None => self.plain.into_message(),
            },
            conversation: self.conversation,
            usage: self.usage,
            error: self.error,
            failed: self.failed,
            started: self.started,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

/// `turn.completed`'s counts (the thread's so far).
fn usage(u: &Value) -> Usage {
    Usage {
        input_tokens: count(u, "input_tokens"),
        cached_tokens: count(u, "cached_input_tokens"),
        output_tokens: count(u, "output_tokens"),
        reasoning_tokens: count(u, "reasoning_output_tokens"),
        ..Usage::default()
    }
}

/// This turn's share of a thread's totals, given the totals after the previous turn: each
/// count less what it was, or the whole count when it went down (a thread that started
/// counting again).
pub(super) fn turn_share(total: &Usage, before: Option<&Usage>) -> Usage {
    let Some(before) = before else {
        return *total;
    };
    let less = |now: Option<u64>, was: Option<u64>| match (now, was) {
        (Some(n), Some(w)) if n >= w => Some(n - w),
        (n, _) => n,
    };
    Usage {
        input_tokens: less(total.input_tokens, before.input_tokens),
        cached_tokens: less(total.cached_tokens, before.cached_tokens),
        output_tokens: less(total.output_tokens, before.output_tokens),
        reasoning_tokens: less(total.reasoning_tokens, before.reasoning_tokens),
        ..*total
    }
}

/// A tool item's title, ACP kind and input.
fn call(item: &Value) -> (String, &'static str, Option<Value>) {
    match str_of(item, "type").unwrap_or("") {
        "command_execution" => {
            let command = str_of(item, "command").unwrap_or("");
            (
                command.to_string(),
                "execute",
                Some(json!({ "command": command })),
            )
        }
        "file_change" => {
            let paths: Vec<&str> = item["changes"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| str_of(c, "path")).collect())
                .unwrap_or_default();
            (
                format!("edit {}", paths.join(", ")),
                "edit",
                item.get("changes").cloned(),
            )
        }
        "mcp_tool_call" => (
            format!(
                "{}.{}",
                str_of(item, "server").unwrap_or("mcp"),
                str_of(item, "tool").unwrap_or("tool")
            ),
            "other",
            item.get("arguments").cloned(),
        ),
        _ => (
            format!("web search: {}", str_of(item, "query").unwrap_or("")),
            "fetch",
            None,
        ),
    }
}

/// What a finished tool item produced.
fn tool_result(item: &Value) -> Option<String> {
    match str_of(item, "type").unwrap_or("") {
        "command_execution" => {
            let out = str_of(item, "aggregated_output").unwrap_or("");
            match item["exit_code"].as_i64() {
                Some(code) if code != 0 => {
                    let out = out.trim_end();
                    let sep = if out.is_empty() { "" } else { "\n" };
                    tool_output(&format!("{out}{sep}[exit code {code}]"))
                }
                _ => tool_output(out),
            }
        }
        "file_change" => tool_output(
            &item["changes"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| {
                            format!(
                                "{} {}",
                                str_of(c, "kind").unwrap_or("update"),
                                str_of(c, "path").unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
        ),
        "mcp_tool_call" => match str_of(&item["error"], "message") {
            Some(e) => tool_output(e),
            None => {
                let blocks = item["result"]["content"].as_array();
                tool_output(
                    &blocks
                        .map(|b| {
                            b.iter()
                                .filter_map(|b| str_of(b, "text"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default(),
                )
            }
        },
        _ => None,
    }
}

/// A todo list as a plan: `[x] done`, `[ ] to do`.
fn plan(item: &Value) -> TurnEvent {
    TurnEvent::Plan(
        item["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|t| {
                        let mark = if t["completed"].as_bool().unwrap_or(false) {
                            "x"
                        } else {
                            " "
                        };
                        format!("[{mark}] {}", str_of(t, "text").unwrap_or(""))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}
