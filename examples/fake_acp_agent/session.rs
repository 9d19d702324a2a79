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
    pub thinking: String,
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

/// Every `session/new` as a line `<pid> <cwd>` in `FAKE_ACP_STATE/session-new.log`, so tests
/// can tell which process opened which session, and when.
fn log_new_session(cwd: &std::path::Path) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("FAKE_ACP_STATE") else {
        return;
    };
    let line = format!("{} {}\n", std::process::id(), cwd.display());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(dir).join("session-new.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn modes(current: &str) -> s::SessionModeState {
    // (plain and gemini shapes: modes in `modes`)
    s::SessionModeState::new(
        current.to_string(),
        vec![
            s::SessionMode::new("code", "Code"),
            s::SessionMode::new("ask", "Ask"),
        ],
    )
}

/// The session's select options for the shape: a model select (not for gemini, which sends
/// the raw `models`), a thinking level, and for opencode the mode too.
pub fn settings(sess: &Session, shape: crate::raw::Shape) -> Vec<s::SessionConfigOption> {
    let select = |id: &str, name: &str, current: &str, values: &[(&str, &str)]| {
        s::SessionConfigOption::select(
            id.to_string(),
            name.to_string(),
            current.to_string(),
            values
                .iter()
                .map(|(v, n)| s::SessionConfigSelectOption::new(v.to_string(), n.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    let mut out = Vec::new();
    if shape == crate::raw::Shape::Opencode {
        out.push(
            select(
                "mode",
                "Mode",
                &sess.mode,
                &[("code", "Code"), ("ask", "Ask")],
            )
            .category(s::SessionConfigOptionCategory::Mode),
        );
    }
    if shape != crate::raw::Shape::Gemini {
        out.push(
            select(
                "model",
                "Model",
                &sess.model,
                &[("fake-small", "Small"), ("fake-large", "Large")],
            )
            .category(s::SessionConfigOptionCategory::Model),
        );
    }
    out.push(
        select(
            "thinking",
            "Thinking",
            &sess.thinking,
            &[("low", "Low"), ("high", "High")],
        )
        .category(s::SessionConfigOptionCategory::ThoughtLevel),
    );
    out
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

pub fn with_session(
    state: &State,
    sid: &s::SessionId,
    f: impl FnOnce(&mut Session),
) -> Res<Session> {
    let mut m = state
        .sessions
        .lock()
        .map_err(|_| agent_client_protocol::Error::internal_error())?;
    let sess = m
        .get_mut(sid.0.as_ref())
        .ok_or_else(|| agent_client_protocol::Error::invalid_params().data("unknown session"))?;
    f(sess);
    Ok(sess.clone())
}

/// `session/new` or `session/load` (replaying the history first), answered in the shape
/// `$FAKE_ACP_SHAPE` asks for; returns the answer and, for a new session, its id.
pub fn open_session(
    state: &State,
    req: &crate::raw::Raw<{ crate::raw::SESSION }>,
    cx: &ConnectionTo<Client>,
) -> Res<(serde_json::Value, Option<s::SessionId>)> {
    let bad =
        |e: serde_json::Error| agent_client_protocol::Error::invalid_params().data(e.to_string());
    let shape = crate::raw::shape();
    let (id, sess, new) = if req.method == "session/new" {
        let r: s::NewSessionRequest = serde_json::from_value(req.params.clone()).map_err(bad)?;
        let n = {
            let mut n = state
                .next
                .lock()
                .map_err(|_| agent_client_protocol::Error::internal_error())?;
            *n += 1;
            *n
        };
        let id = format!("fake-{}-{n}", std::process::id());
        log_new_session(&r.cwd);
        (id, fresh(r.cwd, 0, "new"), true)
    } else {
        let r: s::LoadSessionRequest = serde_json::from_value(req.params.clone()).map_err(bad)?;
        let turns: u64 = std::fs::read_to_string(state_file(&r.session_id.0))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                agent_client_protocol::Error::invalid_params().data("no such session")
            })?;
        // Replay the history as the protocol asks, before answering.
        for i in 0..turns {
            update(
                cx,
                &r.session_id,
                s::SessionUpdate::UserMessageChunk(s::ContentChunk::new(
                    format!("turn {}", i + 1).into(),
                )),
            )?;
        }
        (
            r.session_id.0.to_string(),
            fresh(r.cwd, turns, "loaded"),
            false,
        )
    };
    if let Ok(mut m) = state.sessions.lock() {
        m.insert(id.clone(), sess.clone());
    }
    let options = settings(&sess, shape);
    let mut answer = if new {
        let mut r = s::NewSessionResponse::new(id.clone()).config_options(options);
        if shape != crate::raw::Shape::Opencode {
            r = r.modes(modes(&sess.mode));
        }
        serde_json::to_value(r)
    } else {
        let mut r = s::LoadSessionResponse::new().config_options(options);
        if shape != crate::raw::Shape::Opencode {
            r = r.modes(modes(&sess.mode));
        }
        serde_json::to_value(r)
    }
    .map_err(|_| agent_client_protocol::Error::internal_error())?;
    if shape == crate::raw::Shape::Gemini {
        answer["models"] = crate::raw::models_field(&sess.model);
    }
    Ok((answer, new.then(|| s::SessionId::new(id))))
}

fn fresh(cwd: PathBuf, turns: u64, how: &'static str) -> Session {
    Session {
        cwd,
        mode: "code".into(),
        model: "fake-small".into(),
        thinking: "low".into(),
        turns,
        how,
    }
}
