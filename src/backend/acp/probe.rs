//! Probe: start an agent in a scratch directory, run `initialize` + `session/new`, and report
//! what it offers (agent info, auth methods, modes, models, slash commands). The providers
//! snapshot builds on it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_client_protocol::v1::schema as s;

use super::connection::{AgentConn, Launch};
use crate::backend::BackendError;

/// How long to wait after `session/new` for the agent's slash commands (sent as an update).
const COMMANDS_WAIT: Duration = Duration::from_millis(500);

/// What an agent reported about itself.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProbeReport {
    pub agent_name: Option<String>,
    pub agent_version: Option<String>,
    pub protocol_version: String,
    pub auth_methods: Vec<String>,
    pub load_session: bool,
    pub modes: Vec<String>,
    pub current_mode: Option<String>,
    pub models: Vec<String>,
    pub current_model: Option<String>,
    /// Other settings (`new_task`'s `options`).
    pub options: Vec<crate::domain::AgentSetting>,
    pub commands: Vec<String>,
    pub initialize_ms: u128,
    pub session_new_ms: u128,
    /// `session/new` failed (often: the agent wants a login first); the rest of the report is
    /// what `initialize` said.
    pub session_error: Option<String>,
}

/// Run the handshake against `command` in `scratch` (which must exist) and stop the agent.
/// `Err` when the agent cannot be started or initialised; a failed `session/new` is reported
/// in `session_error` so the caller still learns the agent's auth methods.
pub async fn probe(
    command: &[String],
    env: &BTreeMap<String, String>,
    client_fs: bool,
    scratch: &Path,
) -> Result<ProbeReport, BackendError> {
    let launch = Launch {
        command: command.to_vec(),
        env: env.clone(),
        client_fs,
    };
    let conn = AgentConn::start(&launch, scratch).await?;
    let t = Instant::now();
    let session = match conn.open_session(None).await {
        Ok(s) => s,
        Err(e) => {
            let init = &conn.init;
            let report = ProbeReport {
                agent_name: init.agent_info.as_ref().map(|i| i.name.clone()),
                agent_version: init.agent_info.as_ref().map(|i| i.version.clone()),
                auth_methods: init.auth_methods.iter().map(auth_name).collect(),
                load_session: init.agent_capabilities.load_session,
                initialize_ms: conn.init_time.as_millis(),
                session_error: Some(e.to_string()),
                ..ProbeReport::default()
            };
            conn.close().await;
            return Ok(report);
        }
    };
    let session_new_ms = t.elapsed().as_millis();
    let deadline = Instant::now() + COMMANDS_WAIT;
    while Instant::now() < deadline
        && conn
            .shared
            .commands
            .lock()
            .map(|c| c.is_empty())
            .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let commands = conn
        .shared
        .commands
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let init = &conn.init;
    let offer = super::choices::Offer::of(&session);
    let report = ProbeReport {
        agent_name: init.agent_info.as_ref().map(|i| i.name.clone()),
        agent_version: init.agent_info.as_ref().map(|i| i.version.clone()),
        protocol_version: serde_json::to_value(init.protocol_version)
            .map(|v| v.to_string())
            .unwrap_or_default(),
        auth_methods: init.auth_methods.iter().map(auth_name).collect(),
        load_session: init.agent_capabilities.load_session,
        modes: offer.modes,
        current_mode: offer.current_mode,
        models: offer.models,
        current_model: offer.current_model,
        options: offer.options,
        commands,
        initialize_ms: conn.init_time.as_millis(),
        session_new_ms,
        session_error: None,
    };
    conn.close().await;
    Ok(report)
}

fn auth_name(m: &s::AuthMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
