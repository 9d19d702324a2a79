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
//! usage USED SIZE [COST]   a usage update (COST: the session's cumulative cost in USD)
//! tokens IN OUT            the turn's usage in the prompt response (gemini-tokens: in its
//!                          `_meta.quota`; qwen-tokens: on a message chunk's `_meta.usage`)
//! pid                      says `pid=<process id>`
//! env NAME…                says `NAME=<value>` (or `NAME=<unset>`) for each name
//! whoami                   says `mode=<mode> model=<model> thinking=<level>`
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
//! `$FAKE_ACP_SHAPE` (`gemini`, `opencode`) changes how modes and models are offered (raw.rs).
//! Sessions are persisted under `$FAKE_ACP_STATE` (default: the temp dir) so a restarted agent
//! can `session/load` them.

mod directives;
mod raw;
mod session;
mod turn;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agent_client_protocol::v1::{ConnectionTo, Responder, schema as s};
use agent_client_protocol::{Agent, Client, Stdio};

use raw::{Raw, SESSION, SET_MODEL, shape};
use serde_json::Value;
use session::{Res, State, commands, open_session, settings, update, with_session};
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
            async move |req: Raw<SESSION>, r: Responder<Value>, cx: ConnectionTo<Client>| {
                let (answer, sid) = open_session(&st1, &req, &cx)?;
                r.respond(answer)?;
                match sid {
                    Some(sid) => commands(&cx, &sid),
                    None => Ok(()),
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: Raw<SET_MODEL>, r: Responder<Value>, _cx: ConnectionTo<Client>| {
                let sid = req.params["sessionId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let model = req.params["modelId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                with_session(&st2, &s::SessionId::new(sid), |s| s.model = model.clone())?;
                r.respond(serde_json::json!({}))
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
                let value = match &req.value {
                    v if v.as_value_id().is_some() => {
                        v.as_value_id().map(|v| v.0.to_string()).unwrap_or_default()
                    }
                    other => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.get("value").map(|b| b.to_string()))
                        .unwrap_or_default(),
                };
                let id = req.config_id.0.to_string();
                let sess = with_session(&st4, &req.session_id, |s| match id.as_str() {
                    "thinking" => s.thinking = value.clone(),
                    "mode" => s.mode = value.clone(),
                    _ => s.model = value.clone(),
                })?;
                r.respond(s::SetSessionConfigOptionResponse::new(settings(
                    &sess,
                    shape(),
                )))
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
