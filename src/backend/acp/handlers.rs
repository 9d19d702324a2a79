//! The client-side handlers of an agent connection: every method boocoder advertises,
//! answered for real (fs through the path guard, terminals, permissions, session updates).
//! Requests for anything else get the SDK's method-not-found reply. Nothing here waits on the
//! agent inside the dispatch loop: permission questions and terminal waits are spawned.

use std::sync::Arc;

use agent_client_protocol::v1::{ConnectionTo, Responder, schema as s};
use agent_client_protocol::{Agent, Client};
use tokio_util::sync::CancellationToken;

use super::state::{Shared, lock};
use super::terminals::Spawn;
use super::{fs, permissions, updates, usage};
use crate::backend::TurnEvent;

/// Resolves only when the agent really cancelled the request (`$/cancel_request`).
async fn withdrawn_by_agent(c: &agent_client_protocol::RequestCancellation) {
    c.cancelled().await;
    if !c.is_cancelled() {
        std::future::pending::<()>().await;
    }
}

fn rpc_error(code: i32, msg: impl Into<String>) -> agent_client_protocol::Error {
    agent_client_protocol::Error::new(code, msg.into())
}

/// Answer a request, logging (not propagating) a failure to deliver: a handler error would
/// tear the whole connection down.
fn answer<T: agent_client_protocol::JsonRpcResponse>(
    r: Responder<T>,
    result: Result<T, agent_client_protocol::Error>,
) -> Result<(), agent_client_protocol::Error> {
    let sent = match result {
        Ok(v) => r.respond(v),
        Err(e) => r.respond_with_error(e),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "could not answer the agent");
    }
    Ok(())
}

const INVALID_PARAMS: i32 = -32602;

/// Most of an agent's message text kept as the turn's final message (the transcript has all
/// of it, in capped entries).
const FINAL_MESSAGE_CAP: usize = 1 << 20;

/// Append `chunk` to the final message while it is under [`FINAL_MESSAGE_CAP`], cut at a
/// character boundary.
fn push_capped(message: &mut String, chunk: &str) {
    let room = FINAL_MESSAGE_CAP.saturating_sub(message.len());
    let mut end = room.min(chunk.len());
    while !chunk.is_char_boundary(end) {
        end -= 1;
    }
    message.push_str(&chunk[..end]);
}

/// Registers `$on` as the handler of `$req` requests, with its own handle on the shared state.
macro_rules! on_request {
    ($builder:expr, $shared:expr, $req:ty => $on:path) => {{
        let sh = $shared.clone();
        $builder.on_receive_request(
            async move |req: $req, r, cx| $on(&sh, req, r, cx).await,
            agent_client_protocol::on_receive_request!(),
        )
    }};
}

/// The client side: every method we advertise, answered for real. Requests for anything else
/// get the SDK's method-not-found reply. The connection runs in its own task until `stop`
/// fires or the agent closes its stdout; its handle is sent back through `cx_tx`.
pub(super) fn spawn_connection(
    shared: Arc<Shared>,
    io: impl agent_client_protocol::ConnectTo<Client> + 'static,
    cx_tx: tokio::sync::oneshot::Sender<ConnectionTo<Agent>>,
    stop: CancellationToken,
) {
    let sh = shared.clone();
    let b = Client.v1().name("boocoder").on_receive_notification(
        async move |n: s::SessionNotification, _cx: ConnectionTo<Agent>| {
            on_session_update(&sh, n).await
        },
        agent_client_protocol::on_receive_notification!(),
    );
    let b = on_request!(b, shared, s::RequestPermissionRequest => on_request_permission);
    let b = on_request!(b, shared, s::ReadTextFileRequest => on_read_text_file);
    let b = on_request!(b, shared, s::WriteTextFileRequest => on_write_text_file);
    let b = on_request!(b, shared, s::CreateTerminalRequest => on_create_terminal);
    let b = on_request!(b, shared, s::TerminalOutputRequest => on_terminal_output);
    let b = on_request!(b, shared, s::WaitForTerminalExitRequest => on_wait_for_terminal_exit);
    let b = on_request!(b, shared, s::KillTerminalRequest => on_kill_terminal);
    let builder = on_request!(b, shared, s::ReleaseTerminalRequest => on_release_terminal);
    tokio::spawn(async move {
        let r = builder
            .connect_with(io, async move |cx: ConnectionTo<Agent>| {
                // why: a dropped receiver means start() gave up; the stop token ends us.
                let _ = cx_tx.send(cx.clone());
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = cx.incoming_closed() => {}
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "agent connection ended with an error");
        }
    });
}

type Answered = Result<(), agent_client_protocol::Error>;

/// `session/update`: remembered commands, and the running turn's transcript and final text.
async fn on_session_update(sh: &Shared, n: s::SessionNotification) -> Answered {
    if let s::SessionUpdate::AvailableCommandsUpdate(c) = &n.update {
        *lock(&sh.commands) = c
            .available_commands
            .iter()
            .map(|c| format!("/{}", c.name))
            .collect();
    }
    // The cost baseline moves even between turns (a loaded session replays its history).
    let reported = usage::of_update(&n.update, |c| lock(&sh.cost).advance(c));
    let Some(turn) = sh.turn() else {
        return Ok(());
    };
    let usage = reported.map(TurnEvent::Usage);
    for ev in usage.into_iter().chain(updates::map_update(n.update)) {
        if let TurnEvent::Text(t) = &ev {
            push_capped(&mut lock(&turn.text), t);
        }
        // Waits only on our own transcript writer, never on the agent.
        if turn.perm.events.send(ev).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// `session/request_permission`: decided in a spawned task (an `ask` waits on a human), or
/// answered `cancelled` when the agent withdraws the request.
async fn on_request_permission(
    sh: &Shared,
    req: s::RequestPermissionRequest,
    r: Responder<s::RequestPermissionResponse>,
    cx: ConnectionTo<Agent>,
) -> Answered {
    let ctx = sh.turn().map(|t| t.perm);
    let withdrawn = r.cancellation();
    let hold = sh.activity.hold();
    cx.spawn(async move {
        let _hold = hold;
        let outcome = tokio::select! {
            o = permissions::decide(ctx.clone(), &req) => o,
            () = withdrawn_by_agent(&withdrawn) => {
                if let Some(c) = &ctx {
                    // why: a closed transcript only means the turn already ended.
                    let _ = c.events.try_send(TurnEvent::Unblocked("the agent withdrew its permission request".into()));
                }
                s::RequestPermissionOutcome::Cancelled
            }
        };
        answer(r, Ok(s::RequestPermissionResponse::new(outcome)))
    })
}

/// `fs/read_text_file` through the path guard; a refusal is noted in the transcript.
async fn on_read_text_file(
    sh: &Shared,
    req: s::ReadTextFileRequest,
    r: Responder<s::ReadTextFileResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    if !sh.client_fs {
        return answer(r, Err(agent_client_protocol::Error::method_not_found()));
    }
    let res = fs::read(&sh.root(), &req.path, req.line, req.limit).await;
    let res = res.map(s::ReadTextFileResponse::new);
    answer(r, res.map_err(|e| fs_error(sh, "read", &req.path, e)))
}

/// `fs/write_text_file` through the path guard; the write (or its refusal) is noted in the
/// transcript, like the agent's own tool calls.
async fn on_write_text_file(
    sh: &Shared,
    req: s::WriteTextFileRequest,
    r: Responder<s::WriteTextFileResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    if !sh.client_fs {
        return answer(r, Err(agent_client_protocol::Error::method_not_found()));
    }
    let root = sh.root();
    let res = fs::write(&root, &req.path, &req.content).await;
    if res.is_ok() {
        let rel = req.path.strip_prefix(&root).unwrap_or(&req.path);
        sh.notice(format!(
            "wrote {} ({} bytes) via fs/write_text_file",
            rel.display(),
            req.content.len()
        ));
    }
    let res = res.map(|()| s::WriteTextFileResponse::new());
    answer(r, res.map_err(|e| fs_error(sh, "write", &req.path, e)))
}

/// The agent's error for a failed fs call; a refusal by the guard is noted in the transcript.
fn fs_error(
    sh: &Shared,
    op: &str,
    path: &std::path::Path,
    e: fs::FsError,
) -> agent_client_protocol::Error {
    if e.is_refusal() {
        sh.notice(format!("refused fs/{op}_text_file {}: {e}", path.display()));
    }
    rpc_error(e.code(), e.to_string())
}

/// `terminal/create`: an argv process in the worktree, noted in the transcript.
async fn on_create_terminal(
    sh: &Shared,
    req: s::CreateTerminalRequest,
    r: Responder<s::CreateTerminalResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    let env = req
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    let res = sh.terminals.create(Spawn {
        command: &req.command,
        args: &req.args,
        env,
        cwd: req.cwd.as_deref(),
        output_byte_limit: req.output_byte_limit,
    });
    match &res {
        Ok(id) => sh.notice(format!("terminal {id}: {} {:?}", req.command, req.args)),
        Err(e) => sh.notice(format!("terminal refused: {e}")),
    }
    let res = res.map(s::CreateTerminalResponse::new);
    answer(r, res.map_err(invalid_params))
}

async fn on_terminal_output(
    sh: &Shared,
    req: s::TerminalOutputRequest,
    r: Responder<s::TerminalOutputResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    let res = sh
        .terminals
        .output(&req.terminal_id.0)
        .map(|(out, truncated, exit)| {
            s::TerminalOutputResponse::new(out, truncated).exit_status(exit.map(exit_status))
        });
    answer(r, res.map_err(invalid_params))
}

/// `terminal/wait_for_exit`: the wait runs in a spawned task, never in the dispatch loop.
async fn on_wait_for_terminal_exit(
    sh: &Shared,
    req: s::WaitForTerminalExitRequest,
    r: Responder<s::WaitForTerminalExitResponse>,
    cx: ConnectionTo<Agent>,
) -> Answered {
    match sh.terminals.waiter(&req.terminal_id.0) {
        Ok(w) => {
            let hold = sh.activity.hold();
            cx.spawn(async move {
                let _hold = hold;
                let exit = w.await;
                let resp = s::WaitForTerminalExitResponse::new(exit_status(exit));
                answer(r, Ok(resp))
            })
        }
        Err(e) => answer(r, Err(invalid_params(e))),
    }
}

async fn on_kill_terminal(
    sh: &Shared,
    req: s::KillTerminalRequest,
    r: Responder<s::KillTerminalResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    let res = sh.terminals.kill(&req.terminal_id.0);
    let res = res.map(|()| s::KillTerminalResponse::new());
    answer(r, res.map_err(invalid_params))
}

async fn on_release_terminal(
    sh: &Shared,
    req: s::ReleaseTerminalRequest,
    r: Responder<s::ReleaseTerminalResponse>,
    _cx: ConnectionTo<Agent>,
) -> Answered {
    let res = sh.terminals.release(&req.terminal_id.0);
    let res = res.map(|()| s::ReleaseTerminalResponse::new());
    answer(r, res.map_err(invalid_params))
}

fn invalid_params(e: impl std::fmt::Display) -> agent_client_protocol::Error {
    rpc_error(INVALID_PARAMS, e.to_string())
}

fn exit_status(e: super::terminals::ExitInfo) -> s::TerminalExitStatus {
    s::TerminalExitStatus::new()
        .exit_code(e.code)
        .signal(e.signal)
}
