//! `session/update` → [`TurnEvent`]: every update kind the agent can send becomes a transcript
//! entry in the shared vocabulary, so an ACP transcript reads like any other backend's.

use agent_client_protocol::v1::schema as s;

use crate::backend::TurnEvent;

/// Most characters of a tool's raw output kept in one transcript entry.
const TOOL_OUTPUT_MAX: usize = 4000;

/// The events one update becomes (usually one; none for the echo of our own prompt).
pub(super) fn map_update(update: s::SessionUpdate) -> Vec<TurnEvent> {
    match update {
        // The agent echoing the user's prompt (or replaying history) adds nothing new.
        s::SessionUpdate::UserMessageChunk(_) => Vec::new(),
        s::SessionUpdate::AgentMessageChunk(c) => vec![TurnEvent::Text(content_text(&c.content))],
        s::SessionUpdate::AgentThoughtChunk(c) => {
            vec![TurnEvent::Reasoning(content_text(&c.content))]
        }
        s::SessionUpdate::ToolCall(tc) => {
            let mut out = vec![TurnEvent::ToolCall {
                id: tc.tool_call_id.0.to_string(),
                title: tc.title,
                kind: Some(enum_name(&tc.kind)),
                input: tc.raw_input,
            }];
            // A tool call may arrive already finished (agents that report after the fact).
            if matches!(
                tc.status,
                s::ToolCallStatus::Completed | s::ToolCallStatus::Failed
            ) {
                out.push(TurnEvent::ToolUpdate {
                    id: tc.tool_call_id.0.to_string(),
                    status: Some(enum_name(&tc.status)),
                    output: tool_output(&tc.content, tc.raw_output.as_ref()),
                });
            }
            out
        }
        s::SessionUpdate::ToolCallUpdate(u) => {
            let f = u.fields;
            let output = tool_output(f.content.as_deref().unwrap_or(&[]), f.raw_output.as_ref());
            vec![TurnEvent::ToolUpdate {
                id: u.tool_call_id.0.to_string(),
                status: f.status.map(|st| enum_name(&st)),
                output,
            }]
        }
        s::SessionUpdate::Plan(p) => vec![TurnEvent::Plan(
            p.entries
                .iter()
                .map(|e| format!("[{}] {}", enum_name(&e.status), e.content))
                .collect(),
        )],
        s::SessionUpdate::AvailableCommandsUpdate(c) => vec![TurnEvent::Commands(
            c.available_commands
                .iter()
                .map(|c| format!("/{}", c.name))
                .collect(),
        )],
        s::SessionUpdate::CurrentModeUpdate(m) => vec![TurnEvent::Notice(format!(
            "agent mode is now `{}`",
            m.current_mode_id.0
        ))],
        s::SessionUpdate::ConfigOptionUpdate(c) => vec![TurnEvent::Notice(format!(
            "agent settings: {}",
            c.config_options
                .iter()
                .map(describe_option)
                .collect::<Vec<_>>()
                .join(", ")
        ))],
        s::SessionUpdate::SessionInfoUpdate(i) => match i.title {
            agent_client_protocol::schema::MaybeUndefined::Value(t) => {
                vec![TurnEvent::Notice(format!("session title: {t}"))]
            }
            _ => Vec::new(),
        },
        // Context and a cost in dollars become the turn's usage (`usage.rs`); another unit
        // of cost is only told.
        s::SessionUpdate::UsageUpdate(u) => match u.cost {
            Some(c) if !c.currency.eq_ignore_ascii_case("USD") => vec![TurnEvent::Notice(format!(
                "session cost so far: {} {}",
                c.amount, c.currency
            ))],
            _ => Vec::new(),
        },
        s::SessionUpdate::Notice(n) => vec![TurnEvent::Notice(match n.description {
            Some(d) => format!("{}: {d}", n.title),
            None => n.title,
        })],
        s::SessionUpdate::CompactionUpdate(c) => vec![TurnEvent::Notice(format!(
            "context compaction {}",
            enum_name(&c.status)
        ))],
        s::SessionUpdate::CompactionSummaryChunk(c) => {
            vec![TurnEvent::Reasoning(content_text(&c.content))]
        }
        other => vec![TurnEvent::Notice(format!(
            "unrecognised session update: {}",
            serde_json::to_string(&other).unwrap_or_default()
        ))],
    }
}

/// Readable text of a content block; non-text blocks are named, not dumped.
pub(super) fn content_text(c: &s::ContentBlock) -> String {
    match c {
        s::ContentBlock::Text(t) => t.text.clone(),
        s::ContentBlock::Image(i) => format!("[image {}]", i.mime_type),
        s::ContentBlock::Audio(a) => format!("[audio {}]", a.mime_type),
        s::ContentBlock::ResourceLink(l) => format!("[{}]({})", l.name, l.uri),
        s::ContentBlock::Resource(_) => "[embedded resource]".into(),
        _ => "[content]".into(),
    }
}

fn tool_output(content: &[s::ToolCallContent], raw: Option<&serde_json::Value>) -> Option<String> {
    let mut parts = Vec::new();
    for c in content {
        match c {
            s::ToolCallContent::Content(c) => parts.push(content_text(&c.content)),
            s::ToolCallContent::Diff(d) => parts.push(format!("[diff of {}]", d.path.display())),
            s::ToolCallContent::Terminal(t) => {
                parts.push(format!("[terminal {}]", t.terminal_id.0))
            }
            _ => {}
        }
    }
    if parts.is_empty()
        && let Some(r) = raw
    {
        parts.push(match r {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    if parts.is_empty() {
        return None;
    }
    let mut text = parts.join("\n");
    if text.len() > TOOL_OUTPUT_MAX {
        let mut end = TOOL_OUTPUT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("…[truncated]");
    }
    Some(text)
}

fn describe_option(o: &s::SessionConfigOption) -> String {
    match &o.kind {
        s::SessionConfigKind::Select(sel) => format!("{}={}", o.id.0, sel.current_value.0),
        s::SessionConfigKind::Boolean(b) => format!("{}={}", o.id.0, b.current_value),
        _ => o.id.0.to_string(),
    }
}

/// The wire name of a unit enum value (`in_progress`, `edit`), for stable transcript text.
pub(super) fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_thought_and_tool_updates_map() {
        let text = map_update(s::SessionUpdate::AgentMessageChunk(s::ContentChunk::new(
            "hello".into(),
        )));
        assert_eq!(text, vec![TurnEvent::Text("hello".into())]);
        let thought = map_update(s::SessionUpdate::AgentThoughtChunk(s::ContentChunk::new(
            "hmm".into(),
        )));
        assert_eq!(thought, vec![TurnEvent::Reasoning("hmm".into())]);
        let call = map_update(s::SessionUpdate::ToolCall(
            s::ToolCall::new("tc1", "write a.txt")
                .kind(s::ToolKind::Edit)
                .status(s::ToolCallStatus::Pending),
        ));
        assert_eq!(
            call,
            vec![TurnEvent::ToolCall {
                id: "tc1".into(),
                title: "write a.txt".into(),
                kind: Some("edit".into()),
                input: None
            }]
        );
        let upd = map_update(s::SessionUpdate::ToolCallUpdate(s::ToolCallUpdate::new(
            "tc1",
            s::ToolCallUpdateFields::new()
                .status(s::ToolCallStatus::InProgress)
                .raw_output(serde_json::json!("done")),
        )));
        assert_eq!(
            upd,
            vec![TurnEvent::ToolUpdate {
                id: "tc1".into(),
                status: Some("in_progress".into()),
                output: Some("done".into())
            }]
        );
    }

    #[test]
    fn plan_commands_mode_and_usage_map() {
        let plan = map_update(s::SessionUpdate::Plan(s::Plan::new(vec![
            s::PlanEntry::new(
                "step one",
                s::PlanEntryPriority::High,
                s::PlanEntryStatus::InProgress,
            ),
        ])));
        assert_eq!(
            plan,
            vec![TurnEvent::Plan(vec!["[in_progress] step one".into()])]
        );
        let cmds = map_update(s::SessionUpdate::AvailableCommandsUpdate(
            s::AvailableCommandsUpdate::new(vec![s::AvailableCommand::new("init", "set up")]),
        ));
        assert_eq!(cmds, vec![TurnEvent::Commands(vec!["/init".into()])]);
        let mode = map_update(s::SessionUpdate::CurrentModeUpdate(
            s::CurrentModeUpdate::new("ask"),
        ));
        assert_eq!(
            mode,
            vec![TurnEvent::Notice("agent mode is now `ask`".into())]
        );
        let usage = map_update(s::SessionUpdate::UsageUpdate(s::UsageUpdate::new(10, 100)));
        assert_eq!(usage, vec![], "the turn's usage, not a notice");
        let credits = map_update(s::SessionUpdate::UsageUpdate(
            s::UsageUpdate::new(10, 100).cost(s::Cost::new(3.0, "credits")),
        ));
        assert_eq!(
            credits,
            vec![TurnEvent::Notice("session cost so far: 3 credits".into())]
        );
        assert!(
            map_update(s::SessionUpdate::UserMessageChunk(s::ContentChunk::new(
                "echo".into()
            )))
            .is_empty()
        );
    }
}
