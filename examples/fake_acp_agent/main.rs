//! A deterministic ACP agent for boocoder's tests and demos, scripted by its prompt. Each line
//! of the prompt is one directive:
//!
//! ```text
//! say TEXT                 agent message chunk
//! think TEXT               thought chunk
//! plan A; B                a plan with two entries
//! tool TITLE               a tool call (pending) and its completion update
//! write PATH TEXT          fs/write_text_file (PATH: `{cwd}` is replaced by the session cwd;
//!                          relative paths not starting with `..` are joined to it)
//! read PATH [LINE LIMIT]   fs/read_text_file, then says the content
//! perm-write PATH TEXT     asks permission first; writes only when allowed
//! term CMD [ARGS…]         terminal/create, wait_for_exit, output, release; says the result
//! symlink NAME TARGET      creates a symlink in the cwd itself (to test escapes)
//! rm NAME                  removes a file in the cwd itself
//! sleep MS                 sleeps, returning `cancelled` as soon as session/cancel arrives
//! sleep-hard MS            sleeps and ignores session/cancel
//! usage USED SIZE          a usage update
//! pid                      says `pid=<process id>`
//! env NAME…                says `NAME=<value>` (or `NAME=<unset>`) for each name
//! whoami                   says `mode=<mode> model=<model>`
//! history                  says `turns=<prompts in this session> how=<new|loaded>`
//! unknown                  sends a non-standard request (as qwen's `craft/drainMidTurnQueue`)
//!                          and says the error code it got back
//! crash                    writes to stderr and exits with status 3
//! raw TEXT                 writes a line of bytes that are not UTF-8, then an agent message
//!                          chunk `TEXT` with one such byte in it, straight onto stdout
//! stderr-flood MB          writes one stderr line of MB megabytes
//! detach SECS PIDFILE      starts `sleep SECS` in a process group of its own that shares
//!                          the agent's stdout and stderr, and writes its pid to PIDFILE
//! exit                     exits at once with status 0
//! ```
//!
//! Sessions are persisted under `$FAKE_ACP_STATE` (default: the temp dir) so a restarted agent
//! can `session/load` them.

mod directives;
mod session;
mod turn;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agent_client_protocol::v1::{ConnectionTo, Responder, schema as s};
use agent_client_protocol::{Agent, Client, Stdio};

use session::{Res, Session, State, commands, models, modes, state_file, update, with_session};
use turn::run_prompt;

#[tokio::main]
async fn main() -> Res {
    let state = Arc::new(State::default());
    let (st1, st2, st3, st4, st5, st6) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state,
    );
    Agent
        .v1()
        .name("fake-acp-agent")
        .on_receive_request(
            async |req: s::InitializeRequest,
                   r: Responder<s::InitializeResponse>,
                   _cx: ConnectionTo<Client>| {
                r.respond(
                    s::InitializeResponse::new(req.protocol_version)
                        .agent_capabilities(s::AgentCapabilities::new().load_session(true))
                        .agent_info(s::Implementation::new("fake-acp-agent", "1.0.0")),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::NewSessionRequest,
                        r: Responder<s::NewSessionResponse>,
                        cx: ConnectionTo<Client>| {
                let n = {
                    let mut n = st1
                        .next
                        .lock()
                        .map_err(|_| agent_client_protocol::Error::internal_error())?;
                    *n += 1;
                    *n
                };
                let id = format!("fake-{}-{n}", std::process::id());
                let sess = Session {
                    cwd: req.cwd,
                    mode: "code".into(),
                    model: "fake-small".into(),
                    turns: 0,
                    how: "new",
                };
                if let Ok(mut m) = st1.sessions.lock() {
                    m.insert(id.clone(), sess);
                }
                let sid = s::SessionId::new(id.clone());
                r.respond(
                    s::NewSessionResponse::new(id)
                        .modes(modes("code"))
                        .config_options(models("fake-small")),
                )?;
                commands(&cx, &sid)
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::LoadSessionRequest,
                        r: Responder<s::LoadSessionResponse>,
                        cx: ConnectionTo<Client>| {
                let turns: u64 = std::fs::read_to_string(state_file(&req.session_id.0))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| {
                        agent_client_protocol::Error::invalid_params().data("no such session")
                    })?;
                // Replay the history as the protocol asks, before answering.
                for i in 0..turns {
                    update(
                        &cx,
                        &req.session_id,
                        s::SessionUpdate::UserMessageChunk(s::ContentChunk::new(
                            format!("turn {}", i + 1).into(),
                        )),
                    )?;
                }
                let sess = Session {
                    cwd: req.cwd,
                    mode: "code".into(),
                    model: "fake-small".into(),
                    turns,
                    how: "loaded",
                };
                if let Ok(mut m) = st2.sessions.lock() {
                    m.insert(req.session_id.0.to_string(), sess);
                }
                r.respond(
                    s::LoadSessionResponse::new()
                        .modes(modes("code"))
                        .config_options(models("fake-small")),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::SetSessionModeRequest,
                        r: Responder<s::SetSessionModeResponse>,
                        cx: ConnectionTo<Client>| {
                with_session(&st3, &req.session_id, |s| {
                    s.mode = req.mode_id.0.to_string()
                })?;
                r.respond(s::SetSessionModeResponse::new())?;
                update(
                    &cx,
                    &req.session_id,
                    s::SessionUpdate::CurrentModeUpdate(s::CurrentModeUpdate::new(req.mode_id)),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::SetSessionConfigOptionRequest,
                        r: Responder<s::SetSessionConfigOptionResponse>,
                        _cx: ConnectionTo<Client>| {
                let value = req
                    .value
                    .as_value_id()
                    .map(|v| v.0.to_string())
                    .unwrap_or_default();
                with_session(&st4, &req.session_id, |s| s.model = value.clone())?;
                r.respond(s::SetSessionConfigOptionResponse::new(models(&value)))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::PromptRequest,
                        r: Responder<s::PromptResponse>,
                        cx: ConnectionTo<Client>| {
                st5.cancelled.store(false, Ordering::SeqCst);
                let (st, cx2) = (st5.clone(), cx.clone());
                cx.spawn(async move {
                    match run_prompt(st, cx2, req).await {
                        Ok(resp) => r.respond(resp),
                        Err(e) => r.respond_with_error(e),
                    }
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |_n: s::CancelNotification, _cx: ConnectionTo<Client>| {
                st6.cancelled.store(true, Ordering::SeqCst);
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(Stdio::new())
        .await
}
