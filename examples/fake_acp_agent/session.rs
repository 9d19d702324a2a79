//! The agent's sessions (in memory, with a turn counter on disk so a restarted agent can load
//! them), the modes and models it offers, and the updates it sends about a session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use agent_client_protocol::Client;
use agent_client_protocol::v1::{ConnectionTo, schema as s};

#[derive(Debug, Clone)]
pub struct Session {
    pub cwd: PathBuf,
    pub mode: String,
    pub model: String,
    pub turns: u64,
    pub how: &'static str,
}

#[derive(Default)]
pub struct State {
    pub sessions: Mutex<HashMap<String, Session>>,
    pub cancelled: AtomicBool,
    pub next: Mutex<u64>,
}

pub type Res<T = ()> = Result<T, agent_client_protocol::Error>;

pub fn state_file(id: &str) -> PathBuf {
    let dir = std::env::var_os("FAKE_ACP_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("fake-acp-{id}.turns"))
}

pub fn modes(current: &str) -> s::SessionModeState {
    s::SessionModeState::new(
        current.to_string(),
        vec![
            s::SessionMode::new("code", "Code"),
            s::SessionMode::new("ask", "Ask"),
        ],
    )
}

pub fn models(current: &str) -> Vec<s::SessionConfigOption> {
    vec![
        s::SessionConfigOption::select(
            "model",
            "Model",
            current.to_string(),
            vec![
                s::SessionConfigSelectOption::new("fake-small", "Small"),
                s::SessionConfigSelectOption::new("fake-large", "Large"),
            ],
        )
        .category(s::SessionConfigOptionCategory::Model),
    ]
}

pub fn update(cx: &ConnectionTo<Client>, sid: &s::SessionId, u: s::SessionUpdate) -> Res {
    cx.send_notification(s::SessionNotification::new(sid.clone(), u))
}

pub fn say(cx: &ConnectionTo<Client>, sid: &s::SessionId, text: impl Into<String>) -> Res {
    let mut t: String = text.into();
    t.push('\n');
    update(
        cx,
        sid,
        s::SessionUpdate::AgentMessageChunk(s::ContentChunk::new(t.into())),
    )
}

pub fn commands(cx: &ConnectionTo<Client>, sid: &s::SessionId) -> Res {
    update(
        cx,
        sid,
        s::SessionUpdate::AvailableCommandsUpdate(s::AvailableCommandsUpdate::new(vec![
            s::AvailableCommand::new("fixture-help", "list the fixture's directives"),
        ])),
    )
}

pub fn with_session(state: &State, sid: &s::SessionId, f: impl FnOnce(&mut Session)) -> Res {
    let mut m = state
        .sessions
        .lock()
        .map_err(|_| agent_client_protocol::Error::internal_error())?;
    let sess = m
        .get_mut(sid.0.as_ref())
        .ok_or_else(|| agent_client_protocol::Error::invalid_params().data("unknown session"))?;
    f(sess);
    Ok(())
}
