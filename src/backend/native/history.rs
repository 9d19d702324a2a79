//! The conversation the model sees: OpenAI chat messages, how a session's earlier turns are
//! kept (as JSON rows in the store), and how the whole is trimmed to a context budget.

use serde::{Deserialize, Serialize};

/// One chat message in the OpenAI wire shape, so it serialises straight into a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        /// `null` rather than `""` when the model only called tools: some servers reject
        /// an empty string next to tool calls.
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<WireCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool call as the model made it: `arguments` is the raw JSON text it produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The wire form of [`ToolCall`] inside an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: WireFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFunction {
    pub name: String,
    pub arguments: String,
}

impl From<&ToolCall> for WireCall {
    fn from(c: &ToolCall) -> WireCall {
        WireCall {
            id: c.id.clone(),
            kind: "function".into(),
            function: WireFunction {
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            },
        }
    }
}

/// What stands in for a tool result dropped to fit the context budget.
pub const DROPPED: &str = "[earlier tool result dropped to fit the context budget]";

impl Message {
    /// A rough size in characters; four characters to a token is close enough to budget by.
    fn weight(&self) -> usize {
        match self {
            Message::System { content } | Message::User { content } => content.len(),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                content.as_ref().map_or(0, String::len)
                    + tool_calls
                        .iter()
                        .map(|c| c.function.name.len() + c.function.arguments.len() + 16)
                        .sum::<usize>()
            }
            Message::Tool { content, .. } => content.len() + 16,
        }
    }
}

/// Characters per token, for budgeting without a tokenizer.
pub const CHARS_PER_TOKEN: usize = 4;

/// Fit `messages` into `budget_tokens`. Index 0 (system) and the current turn (from
/// `keep_from` on) are never removed. First the oldest tool results are replaced by a short
/// note, in earlier turns and in this one, except the results of the latest round, which the
/// model has not seen yet; if that is not enough, the oldest earlier turns are dropped whole
/// (a turn starts at a user message) so no tool result is left without its call.
pub fn trim(messages: &mut Vec<Message>, keep_from: usize, budget_tokens: usize) {
    let budget = budget_tokens.saturating_mul(CHARS_PER_TOKEN);
    let total = |m: &[Message]| m.iter().map(Message::weight).sum::<usize>();
    let mut size = total(messages);
    if size <= budget {
        return;
    }
    let mut keep_from = keep_from.min(messages.len());
    let latest = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
        .unwrap_or(0);
    for m in messages.iter_mut().take(latest).skip(1) {
        if size <= budget {
            return;
        }
        if let Message::Tool { content, .. } = m
            && content != DROPPED
        {
            size -= content.len();
            *content = DROPPED.to_string();
            size += DROPPED.len();
        }
    }
    while size > budget && keep_from > 1 {
        // Drop from index 1 up to the next user message (the start of the next turn).
        let end = messages[2..keep_from]
            .iter()
            .position(|m| matches!(m, Message::User { .. }))
            .map_or(keep_from, |p| p + 2);
        let removed: Vec<Message> = messages.drain(1..end).collect();
        size -= total(&removed);
        keep_from -= removed.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Message {
        Message::User { content: s.into() }
    }
    fn tool(s: &str) -> Message {
        Message::Tool {
            tool_call_id: "c".into(),
            content: s.into(),
        }
    }
    fn asst(s: &str) -> Message {
        Message::Assistant {
            content: Some(s.into()),
            tool_calls: vec![],
        }
    }

    #[test]
    fn fits_unchanged_when_under_budget() {
        let mut m = vec![
            Message::System {
                content: "sys".into(),
            },
            user("hi"),
        ];
        let before = m.clone();
        trim(&mut m, 1, 100);
        assert_eq!(m, before);
    }

    #[test]
    fn oldest_tool_results_go_first_then_whole_turns() {
        let big = "x".repeat(400);
        let sys = Message::System {
            content: "sys".into(),
        };
        let base = vec![
            sys.clone(),
            user("one"),
            tool(&big),
            asst("a1"),
            user("two"),
            tool(&big),
            asst("a2"),
            user("now"),
        ];
        // Room for one big result: only the oldest is dropped.
        let mut m = base.clone();
        trim(&mut m, 7, 150);
        assert_eq!(m[2], tool(DROPPED));
        assert_eq!(m[5], tool(&big));

        // Room for nothing big: both results dropped, turns kept.
        let mut m = base.clone();
        trim(&mut m, 7, 40);
        assert_eq!(m[2], tool(DROPPED));
        assert_eq!(m[5], tool(DROPPED));
        assert_eq!(m.len(), 8);

        // Tiny budget: earlier turns dropped whole; system and the current prompt stay.
        let mut m = base;
        trim(&mut m, 7, 1);
        assert_eq!(m, vec![sys, user("now")]);
    }

    #[test]
    fn long_turns_shed_their_own_old_results_but_not_the_latest() {
        let big = "y".repeat(400);
        let call = |id: &str| Message::Assistant {
            content: None,
            tool_calls: vec![WireCall::from(&ToolCall {
                id: id.into(),
                name: "read_file".into(),
                arguments: "{}".into(),
            })],
        };
        let sys = Message::System {
            content: "sys".into(),
        };
        let mut m = vec![
            sys,
            user("now"),
            call("1"),
            tool(&big),
            call("2"),
            tool(&big),
        ];
        trim(&mut m, 1, 150);
        assert_eq!(m[3], tool(DROPPED));
        assert_eq!(
            m[5],
            tool(&big),
            "the latest result is what the model asked for"
        );
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn messages_serialise_in_the_openai_shape() {
        let m = Message::Assistant {
            content: None,
            tool_calls: vec![WireCall::from(&ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: "{}".into(),
            })],
        };
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            serde_json::json!({"role":"assistant","content":null,"tool_calls":[
                {"id":"c1","type":"function","function":{"name":"read_file","arguments":"{}"}}]})
        );
        let back: Message =
            serde_json::from_value(serde_json::to_value(&m).expect("json")).expect("parse");
        assert_eq!(back, m);
    }
}
