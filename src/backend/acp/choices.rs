//! What a session lets the client choose — modes, models, other settings — whatever shape
//! the agent uses (measured, see `notes/agents.md`): `modes` (qwen, gemini, codex-acp),
//! `configOptions` of category mode / model (opencode lists its modes there) or of any other
//! category (e.g. a thinking level), and the unstable `models.availableModels` /
//! `currentModelId` in the session's answer (gemini-cli, claude-code-acp), which the ACP crate
//! does not model and is read from the raw response. Applying a choice uses the matching
//! request: `session/set_mode`, `session/set_config_option`, or `session/set_model`.

use agent_client_protocol::UntypedMessage;
use agent_client_protocol::v1::schema as s;
use serde_json::Value;

use super::CONFIG_TIMEOUT;
use super::connection::{AgentConn, SessionState};
use crate::backend::{BackendError, EventSink, Turn, TurnEvent, emit};
use crate::domain::AgentSetting;

/// The unstable `models` field of a session's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RawModels {
    pub available: Vec<String>,
    pub current: Option<String>,
}

impl RawModels {
    /// `models.availableModels[].modelId` and `models.currentModelId` of a raw answer.
    pub(super) fn of(answer: &Value) -> Option<RawModels> {
        let m = answer.get("models")?;
        let available: Vec<String> = m
            .get("availableModels")?
            .as_array()?
            .iter()
            .filter_map(|x| x.get("modelId").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        Some(RawModels {
            available,
            current: m
                .get("currentModelId")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// Everything a session offers to choose, merged across the shapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Offer {
    pub modes: Vec<String>,
    pub current_mode: Option<String>,
    pub models: Vec<String>,
    pub current_model: Option<String>,
    pub options: Vec<AgentSetting>,
}

impl Offer {
    pub(super) fn of(session: &SessionState) -> Offer {
        let mut offer = Offer::default();
        if let Some(m) = &session.modes {
            offer
                .modes
                .extend(m.available_modes.iter().map(|x| x.id.0.to_string()));
            offer.current_mode = Some(m.current_mode_id.0.to_string());
        }
        for o in &session.config_options {
            let choice = choice_of(o);
            match o.category {
                Some(s::SessionConfigOptionCategory::Mode) => {
                    add(&mut offer.modes, choice.values);
                    offer.current_mode = offer.current_mode.or(choice.current);
                }
                Some(s::SessionConfigOptionCategory::Model) => {
                    add(&mut offer.models, choice.values);
                    offer.current_model = offer.current_model.or(choice.current);
                }
                _ => offer.options.push(choice),
            }
        }
        if let Some(raw) = &session.raw_models {
            add(&mut offer.models, raw.available.clone());
            offer.current_model = offer.current_model.or_else(|| raw.current.clone());
        }
        offer
    }
}

fn add(to: &mut Vec<String>, values: Vec<String>) {
    for v in values {
        if !to.contains(&v) {
            to.push(v);
        }
    }
}

fn choice_of(o: &s::SessionConfigOption) -> AgentSetting {
    let (values, current) = match &o.kind {
        s::SessionConfigKind::Select(sel) => {
            (select_values(sel), Some(sel.current_value.0.to_string()))
        }
        s::SessionConfigKind::Boolean(b) => (
            vec!["true".into(), "false".into()],
            Some(b.current_value.to_string()),
        ),
        _ => (Vec::new(), None),
    };
    AgentSetting {
        id: o.id.0.to_string(),
        name: o.name.clone(),
        values,
        current,
    }
}

pub(super) fn select_values(sel: &s::SessionConfigSelect) -> Vec<String> {
    match &sel.options {
        s::SessionConfigSelectOptions::Ungrouped(v) => {
            v.iter().map(|o| o.value.0.to_string()).collect()
        }
        s::SessionConfigSelectOptions::Grouped(g) => g
            .iter()
            .flat_map(|g| g.options.iter().map(|o| o.value.0.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Apply the task's mode, model and options, which only the session's answer can validate:
/// one that is not offered fails the turn naming the valid choices.
pub(super) async fn configure(
    conn: &AgentConn,
    session: &SessionState,
    turn: &Turn,
    agent: &str,
    events: &EventSink,
) -> Result<(), BackendError> {
    let offer = Offer::of(session);
    if let Some(mode) = &turn.mode {
        set_mode(conn, session, &offer, mode, agent).await?;
        emit(events, TurnEvent::Notice(format!("mode set to `{mode}`"))).await;
    }
    if let Some(model) = &turn.model {
        set_model(conn, session, &offer, model, agent).await?;
        emit(events, TurnEvent::Notice(format!("model set to `{model}`"))).await;
    }
    for (id, value) in &turn.options {
        set_choice(conn, session, id, value, agent).await?;
        emit(
            events,
            TurnEvent::Notice(format!("`{id}` set to `{value}`")),
        )
        .await;
    }
    Ok(())
}

async fn set_mode(
    conn: &AgentConn,
    session: &SessionState,
    offer: &Offer,
    mode: &str,
    agent: &str,
) -> Result<(), BackendError> {
    let in_modes = session
        .modes
        .as_ref()
        .is_some_and(|m| m.available_modes.iter().any(|x| x.id.0.as_ref() == mode));
    if in_modes {
        let req = s::SetSessionModeRequest::new(session.id.clone(), mode.to_string());
        return conn.call(req, CONFIG_TIMEOUT).await.map(drop);
    }
    match option_with(session, &s::SessionConfigOptionCategory::Mode, mode) {
        Some(o) => set_option(conn, session, o, mode).await,
        None => Err(not_offered("mode", mode, agent, &offer.modes)),
    }
}

async fn set_model(
    conn: &AgentConn,
    session: &SessionState,
    offer: &Offer,
    model: &str,
    agent: &str,
) -> Result<(), BackendError> {
    if let Some(o) = option_with(session, &s::SessionConfigOptionCategory::Model, model) {
        return set_option(conn, session, o, model).await;
    }
    let listed = session
        .raw_models
        .as_ref()
        .is_some_and(|m| m.available.iter().any(|x| x == model));
    if !listed {
        return Err(not_offered("model", model, agent, &offer.models));
    }
    // The unstable request of the agents that announce `models` (not in the ACP crate).
    let params = serde_json::json!({"sessionId": session.id.0.as_ref(), "modelId": model});
    let req = UntypedMessage::new("session/set_model", params)
        .map_err(|e| BackendError::Agent(format!("session/set_model: {e}")))?;
    conn.call(req, CONFIG_TIMEOUT).await.map(drop)
}

/// Any other setting, by its id.
async fn set_choice(
    conn: &AgentConn,
    session: &SessionState,
    id: &str,
    value: &str,
    agent: &str,
) -> Result<(), BackendError> {
    let invalid = |reason: String| BackendError::InvalidRequest {
        field: "options",
        reason,
    };
    let Some(o) = session
        .config_options
        .iter()
        .find(|o| o.id.0.as_ref() == id)
    else {
        let ids: Vec<String> = Offer::of(session)
            .options
            .into_iter()
            .map(|c| c.id)
            .collect();
        return Err(invalid(if ids.is_empty() {
            format!("`{id}`: agent `{agent}` offers no other settings")
        } else {
            format!(
                "`{id}` is not a setting of agent `{agent}`; it has {}",
                ids.join(", ")
            )
        }));
    };
    let choice = choice_of(o);
    if !choice.values.iter().any(|v| v == value) {
        return Err(invalid(format!(
            "`{id}`: `{value}` is not one of {}",
            choice.values.join(", ")
        )));
    }
    let value = match &o.kind {
        s::SessionConfigKind::Boolean(_) => s::SessionConfigOptionValue::boolean(value == "true"),
        _ => s::SessionConfigOptionValue::value_id(value.to_string()),
    };
    let req = s::SetSessionConfigOptionRequest::new(session.id.clone(), o.id.clone(), value);
    conn.call(req, CONFIG_TIMEOUT).await.map(drop)
}

/// The select option of `cat` that offers `value`.
fn option_with<'a>(
    session: &'a SessionState,
    cat: &s::SessionConfigOptionCategory,
    value: &str,
) -> Option<&'a s::SessionConfigOption> {
    session.config_options.iter().find(|o| {
        o.category.as_ref() == Some(cat)
            && matches!(&o.kind, s::SessionConfigKind::Select(sel) if select_values(sel).iter().any(|v| v == value))
    })
}

async fn set_option(
    conn: &AgentConn,
    session: &SessionState,
    opt: &s::SessionConfigOption,
    value: &str,
) -> Result<(), BackendError> {
    let req = s::SetSessionConfigOptionRequest::new(
        session.id.clone(),
        opt.id.clone(),
        s::SessionConfigOptionValue::value_id(value.to_string()),
    );
    conn.call(req, CONFIG_TIMEOUT).await.map(drop)
}

fn not_offered(field: &'static str, value: &str, agent: &str, valid: &[String]) -> BackendError {
    let reason = if valid.is_empty() {
        format!("`{value}`: agent `{agent}` offers no {field} selection")
    } else {
        format!(
            "`{value}` is not offered by agent `{agent}`; valid {field}s: {}",
            valid.join(", ")
        )
    };
    BackendError::InvalidRequest { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_models_are_read_from_the_answer() {
        let gemini = json!({"sessionId": "s", "models": {
            "availableModels": [{"modelId": "gemini-2.5-pro", "name": "Pro"},
                                {"modelId": "gemini-2.5-flash", "name": "Flash"}],
            "currentModelId": "gemini-2.5-pro"}});
        assert_eq!(
            RawModels::of(&gemini),
            Some(RawModels {
                available: vec!["gemini-2.5-pro".into(), "gemini-2.5-flash".into()],
                current: Some("gemini-2.5-pro".into())
            })
        );
        assert_eq!(RawModels::of(&json!({"sessionId": "s"})), None);
    }
}
