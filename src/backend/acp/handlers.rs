//! The client-side handlers of an agent connection: every method boocoder advertises,
//! answered for real (fs through the path guard, terminals, permissions, session updates).
//! Requests for anything else get the SDK's method-not-found reply. Nothing here waits on the
//! agent inside the dispatch loop: permission questions and terminal waits are spawned.

use std::sync::Arc;

use agent_client_protocol::v1::{ConnectionTo, Responder, schema as s};
use agent_client_protocol::{Agent, Client};
use tokio_util::sync::CancellationToken;

use super::connection::{Shared, lock};
use super::terminals::Spawn;
use super::{fs, permissions, updates};
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

/// The client side: every method we advertise, answered for real. Requests for anything else
/// get the SDK's method-not-found reply. The connection runs in its own task until `stop`
/// fires or the agent closes its stdout; its handle is sent back through `cx_tx`.
pub(super) fn spawn_connection(
    shared: Arc<Shared>,
    io: impl agent_client_protocol::ConnectTo<Client> + 'static,
    cx_tx: tokio::sync::oneshot::Sender<ConnectionTo<Agent>>,
    stop: CancellationToken,
) {
    let (sh1, sh2, sh3, sh4, sh5, sh6, sh7, sh8, sh9) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared,
    );
    let builder = Client
        .v1()
        .name("boocoder")
        .on_receive_notification(
            async move |n: s::SessionNotification, _cx: ConnectionTo<Agent>| {
                if let s::SessionUpdate::AvailableCommandsUpdate(c) = &n.update {
                    *lock(&sh1.commands) = c
                        .available_commands
                        .iter()
                        .map(|c| format!("/{}", c.name))
                        .collect();
                }
                let Some(turn) = sh1.turn() else {
                    return Ok(());
                };
                for ev in updates::map_update(n.update) {
                    if let TurnEvent::Text(t) = &ev {
                        push_capped(&mut lock(&turn.text), t);
                    }
                    // Waits only on our own transcript writer, never on the agent.
                    if turn.perm.events.send(ev).await.is_err() {
                        break;
                    }
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |req: s::RequestPermissionRequest,
                        r: Responder<s::RequestPermissionResponse>,
                        cx: ConnectionTo<Agent>| {
                let ctx = sh2.turn().map(|t| t.perm);
                let withdrawn = r.cancellation();
                cx.spawn(async move {
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
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::ReadTextFileRequest,
                        r: Responder<s::ReadTextFileResponse>,
                        _cx: ConnectionTo<Agent>| {
                if !sh3.client_fs {
                    return answer(r, Err(agent_client_protocol::Error::method_not_found()));
                }
                let res = fs::read(&sh3.root, &req.path, req.line, req.limit).await;
                answer(
                    r,
                    res.map(s::ReadTextFileResponse::new).map_err(|e| {
                        if e.is_refusal() {
                            sh3.notice(format!(
                                "refused fs/read_text_file {}: {e}",
                                req.path.display()
                            ));
                        }
                        rpc_error(e.code(), e.to_string())
                    }),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::WriteTextFileRequest,
                        r: Responder<s::WriteTextFileResponse>,
                        _cx: ConnectionTo<Agent>| {
                if !sh4.client_fs {
                    return answer(r, Err(agent_client_protocol::Error::method_not_found()));
                }
                let res = fs::write(&sh4.root, &req.path, &req.content).await;
                if res.is_ok() {
                    // The agent's edits through us are part of the record, like its tool calls.
                    let rel = req.path.strip_prefix(&sh4.root).unwrap_or(&req.path);
                    sh4.notice(format!(
                        "wrote {} ({} bytes) via fs/write_text_file",
                        rel.display(),
                        req.content.len()
                    ));
                }
                answer(
                    r,
                    res.map(|()| s::WriteTextFileResponse::new()).map_err(|e| {
                        if e.is_refusal() {
                            sh4.notice(format!(
                                "refused fs/write_text_file {}: {e}",
                                req.path.display()
                            ));
                        }
                        rpc_error(e.code(), e.to_string())
                    }),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::CreateTerminalRequest,
                        r: Responder<s::CreateTerminalResponse>,
                        _cx: ConnectionTo<Agent>| {
                let env = req
                    .env
                    .iter()
                    .map(|e| (e.name.clone(), e.value.clone()))
                    .collect();
                let res = sh5.terminals.create(Spawn {
                    command: &req.command,
                    args: &req.args,
                    env,
                    cwd: req.cwd.as_deref(),
                    output_byte_limit: req.output_byte_limit,
                });
                match &res {
                    Ok(id) => sh5.notice(format!("terminal {id}: {} {:?}", req.command, req.args)),
                    Err(e) => sh5.notice(format!("terminal refused: {e}")),
                }
                answer(
                    r,
                    res.map(s::CreateTerminalResponse::new)
                        .map_err(|e| rpc_error(INVALID_PARAMS, e.to_string())),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::TerminalOutputRequest,
                        r: Responder<s::TerminalOutputResponse>,
                        _cx: ConnectionTo<Agent>| {
                let res = sh6
                    .terminals
                    .output(&req.terminal_id.0)
                    .map(|(out, truncated, exit)| {
                        s::TerminalOutputResponse::new(out, truncated)
                            .exit_status(exit.map(exit_status))
                    });
                answer(r, res.map_err(|e| rpc_error(INVALID_PARAMS, e.to_string())))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::WaitForTerminalExitRequest,
                        r: Responder<s::WaitForTerminalExitResponse>,
                        cx: ConnectionTo<Agent>| {
                match sh7.terminals.waiter(&req.terminal_id.0) {
                    Ok(w) => cx.spawn(async move {
                        let exit = w.await;
                        answer(
                            r,
                            Ok(s::WaitForTerminalExitResponse::new(exit_status(exit))),
                        )
                    }),
                    Err(e) => answer(r, Err(rpc_error(INVALID_PARAMS, e.to_string()))),
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::KillTerminalRequest,
                        r: Responder<s::KillTerminalResponse>,
                        _cx: ConnectionTo<Agent>| {
                let res = sh8
                    .terminals
                    .kill(&req.terminal_id.0)
                    .map(|()| s::KillTerminalResponse::new());
                answer(r, res.map_err(|e| rpc_error(INVALID_PARAMS, e.to_string())))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: s::ReleaseTerminalRequest,
                        r: Responder<s::ReleaseTerminalResponse>,
                        _cx: ConnectionTo<Agent>| {
                let res = sh9
                    .terminals
                    .release(&req.terminal_id.0)
                    .map(|()| s::ReleaseTerminalResponse::new());
                answer(r, res.map_err(|e| rpc_error(INVALID_PARAMS, e.to_string())))
            },
            agent_client_protocol::on_receive_request!(),
        );
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

fn exit_status(e: super::terminals::ExitInfo) -> s::TerminalExitStatus {
    s::TerminalExitStatus::new()
        .exit_code(e.code)
        .signal(e.signal)
}
