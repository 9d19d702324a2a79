//! What an agent asks and offers: permission questions (how each channel shows them, who
//! settled them) and the session settings besides mode and model, checked against a probe.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A permission question an agent asked under the `ask` policy, as every channel offers it
/// (elicitation form, `waiting_for` in statuses, `answer_permission`, `boocoder answer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Question {
    /// Pass to `answer_permission` with one option's `id`.
    pub request_id: String,
    /// What the agent wants to do, in one line.
    pub question: String,
    /// The agent's own options.
    pub options: Vec<QuestionOption>,
    /// Files the action touches.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub paths: Vec<String>,
    /// For an edit: the start of its diff.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub preview: Option<String>,
}

impl Question {
    /// What a person is shown (an elicitation form, a Tasks input request): the task, its
    /// agent, and the question with its paths and preview.
    pub fn message(&self, task_id: &str, agent: Option<&str>) -> String {
        let agent = agent.map(|a| format!(" ({a})")).unwrap_or_default();
        let mut m = format!("Task {task_id}{agent} asks permission: {}", self.question);
        if !self.paths.is_empty() {
            m += &format!("\nFiles: {}", self.paths.join(", "));
        }
        if let Some(p) = &self.preview {
            m += &format!("\n\n{p}");
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuestionOption {
    pub id: String,
    pub label: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

/// A session setting an agent offers besides mode and model (e.g. a thinking level); set
/// with `new_task`'s `options`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSetting {
    pub id: String,
    pub name: String,
    /// The values it accepts (`true`/`false` for a toggle).
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub current: Option<String>,
}

/// Settings as `new_task` gives them, checked against what a probe saw (`None` when no
/// probe ran: the turn checks against the live session).
pub fn check_settings(
    given: &std::collections::BTreeMap<String, String>,
    offered: Option<&[AgentSetting]>,
    agent: &str,
) -> Result<(), String> {
    let Some(offered) = offered else {
        return Ok(());
    };
    for (id, value) in given {
        let Some(c) = offered.iter().find(|c| c.id == *id) else {
            let ids: Vec<&str> = offered.iter().map(|c| c.id.as_str()).collect();
            return Err(if ids.is_empty() {
                format!("`{id}`: agent `{agent}` offers no other settings")
            } else {
                format!(
                    "`{id}` is not a setting of agent `{agent}`; it has {}",
                    ids.join(", ")
                )
            });
        };
        if !c.values.iter().any(|v| v == value) {
            return Err(format!(
                "`{id}`: `{value}` is not one of {}",
                c.values.join(", ")
            ));
        }
    }
    Ok(())
}

/// Who settled a permission question (recorded in the transcript).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// The caller's elicitation form.
    Form,
    /// The `answer_permission` tool.
    Tool,
    /// The client's `tasks/update` (MCP Tasks extension).
    TaskUpdate,
    /// The client's retry of the waiting tool call with its input responses (MRTR).
    Retry,
    /// `boocoder answer`.
    Cli,
    /// Nobody answered in time: rejected.
    Timeout,
    /// The task was cancelled: the question was withdrawn.
    Cancelled,
}

impl Decider {
    pub fn as_str(self) -> &'static str {
        match self {
            Decider::Form => "form",
            Decider::Tool => "tool",
            Decider::TaskUpdate => "task_update",
            Decider::Retry => "retry",
            Decider::Cli => "cli",
            Decider::Timeout => "timeout",
            Decider::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Decider> {
        [
            Decider::Form,
            Decider::Tool,
            Decider::TaskUpdate,
            Decider::Retry,
            Decider::Cli,
            Decider::Timeout,
            Decider::Cancelled,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// How a permission question ended: the chosen option (`None`: rejected or withdrawn).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub option_id: Option<String>,
    pub by: Decider,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_against_the_probe() {
        let offered = vec![AgentSetting {
            id: "thinking".into(),
            name: "Thinking".into(),
            values: vec!["low".into(), "high".into()],
            current: Some("low".into()),
        }];
        let ok = std::collections::BTreeMap::from([("thinking".to_string(), "high".to_string())]);
        assert_eq!(check_settings(&ok, Some(&offered), "a"), Ok(()));
        let bad = std::collections::BTreeMap::from([("thinking".to_string(), "max".to_string())]);
        assert_eq!(
            check_settings(&bad, Some(&offered), "a"),
            Err("`thinking`: `max` is not one of low, high".into())
        );
        let unknown = std::collections::BTreeMap::from([("speed".to_string(), "x".to_string())]);
        assert!(
            check_settings(&unknown, Some(&offered), "a")
                .unwrap_err()
                .contains("it has thinking")
        );
        assert_eq!(check_settings(&unknown, None, "a"), Ok(()), "no probe yet");
    }
}
