//! Requests answered as raw JSON, for the shapes the ACP crate does not model: the unstable
//! `models` field that gemini-cli and claude-code-acp put in a session's answer, and their
//! `session/set_model`. `$FAKE_ACP_SHAPE` picks how the fixture offers its choices:
//! unset → `modes` plus a model select option; `gemini` → `modes` plus the raw `models`;
//! `opencode` → modes and models both as select options.

use agent_client_protocol::{JsonRpcMessage, JsonRpcRequest, UntypedMessage};
use serde_json::Value;

/// A request kept as its method and raw params.
#[derive(Debug, Clone)]
pub struct Raw<const M: u8> {
    pub method: String,
    pub params: Value,
}

/// `session/new` and `session/load`.
pub const SESSION: u8 = 0;
/// `session/set_model`.
pub const SET_MODEL: u8 = 1;

impl<const M: u8> JsonRpcMessage for Raw<M> {
    fn matches_method(method: &str) -> bool {
        match M {
            SESSION => matches!(method, "session/new" | "session/load"),
            _ => method == "session/set_model",
        }
    }

    fn method(&self) -> &str {
        &self.method
    }

    fn to_untyped_message(&self) -> Result<UntypedMessage, agent_client_protocol::Error> {
        UntypedMessage::new(&self.method, &self.params)
    }

    fn parse_message(method: &str, params: &Value) -> Result<Self, agent_client_protocol::Error> {
        Ok(Raw {
            method: method.to_string(),
            params: params.clone(),
        })
    }
}

impl<const M: u8> JsonRpcRequest for Raw<M> {
    type Response = Value;
}

/// How this fixture offers its choices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Plain,
    Gemini,
    Opencode,
}

pub fn shape() -> Shape {
    match std::env::var("FAKE_ACP_SHAPE").as_deref() {
        Ok("gemini") => Shape::Gemini,
        Ok("opencode") => Shape::Opencode,
        _ => Shape::Plain,
    }
}

/// The unstable `models` field, as gemini-cli sends it.
pub fn models_field(current: &str) -> Value {
    serde_json::json!({
        "availableModels": [
            {"modelId": "fake-small", "name": "Small"},
            {"modelId": "fake-pro", "name": "Pro"}
        ],
        "currentModelId": current
    })
}
