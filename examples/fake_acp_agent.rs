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

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::v1::{ConnectionTo, Responder, schema as s};
use agent_client_protocol::{Agent, Client, Stdio};

#[derive(Debug, Clone)]
struct Session {
    cwd: PathBuf,
    mode: String,
    model: String,
    turns: u64,
    how: &'static str,
}

#[derive(Default)]
struct State {
    sessions: Mutex<HashMap<String, Session>>,
    cancelled: AtomicBool,
    next: Mutex<u64>,
}

type Res<T = ()> = Result<T, agent_client_protocol::Error>;

fn state_file(id: &str) -> PathBuf {
    let dir = std::env::var_os("FAKE_ACP_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("fake-acp-{id}.turns"))
}

fn modes(current: &str) -> s::SessionModeState {
    s::SessionModeState::new(
        current.to_string(),
        vec![
            s::SessionMode::new("code", "Code"),
            s::SessionMode::new("ask", "Ask"),
        ],
    )
}

fn models(current: &str) -> Vec<s::SessionConfigOption> {
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

fn update(cx: &ConnectionTo<Client>, sid: &s::SessionId, u: s::SessionUpdate) -> Res {
    cx.send_notification(s::SessionNotification::new(sid.clone(), u))
}

fn say(cx: &ConnectionTo<Client>, sid: &s::SessionId, text: impl Into<String>) -> Res {
    let mut t: String = text.into();
    t.push('\n');
    update(
        cx,
        sid,
        s::SessionUpdate::AgentMessageChunk(s::ContentChunk::new(t.into())),
    )
}

fn commands(cx: &ConnectionTo<Client>, sid: &s::SessionId) -> Res {
    update(
        cx,
        sid,
        s::SessionUpdate::AvailableCommandsUpdate(s::AvailableCommandsUpdate::new(vec![
            s::AvailableCommand::new("fixture-help", "list the fixture's directives"),
        ])),
    )
}

fn resolve(cwd: &Path, raw: &str) -> PathBuf {
    let p = raw.replace("{cwd}", &cwd.to_string_lossy());
    if p.starts_with('/') || p.starts_with("..") {
        PathBuf::from(p)
    } else {
        cwd.join(p)
    }
}

/// Sleep in small steps; true when cancelled meanwhile.
async fn sleep_cancellable(state: &State, ms: u64) -> bool {
    let mut left = ms;
    while left > 0 {
        if state.cancelled.load(Ordering::SeqCst) {
            return true;
        }
        let step = left.min(20);
        tokio::time::sleep(Duration::from_millis(step)).await;
        left -= step;
    }
    state.cancelled.load(Ordering::SeqCst)
}

async fn run_prompt(
    state: Arc<State>,
    cx: ConnectionTo<Client>,
    req: s::PromptRequest,
) -> Res<s::StopReason> {
    let sid = req.session_id.clone();
    let Some(mut sess) = state
        .sessions
        .lock()
        .ok()
        .and_then(|m| m.get(&sid.0.to_string()).cloned())
    else {
        return Err(agent_client_protocol::Error::invalid_params().data("unknown session"));
    };
    sess.turns += 1;
    if let Ok(mut m) = state.sessions.lock() {
        m.insert(sid.0.to_string(), sess.clone());
    }
    // why: losing the counter only weakens the `history` directive.
    let _ = std::fs::write(state_file(&sid.0), sess.turns.to_string());
    let prompt: String = req
        .prompt
        .iter()
        .filter_map(|b| match b {
            s::ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut tool_n = 0;
    for line in prompt.lines() {
        if state.cancelled.load(Ordering::SeqCst) {
            return Ok(s::StopReason::Cancelled);
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "say" => say(&cx, &sid, rest)?,
            "think" => update(
                &cx,
                &sid,
                s::SessionUpdate::AgentThoughtChunk(s::ContentChunk::new(rest.to_string().into())),
            )?,
            "plan" => update(
                &cx,
                &sid,
                s::SessionUpdate::Plan(s::Plan::new(
                    rest.split(';')
                        .map(|e| {
                            s::PlanEntry::new(
                                e.trim(),
                                s::PlanEntryPriority::Medium,
                                s::PlanEntryStatus::Pending,
                            )
                        })
                        .collect(),
                )),
            )?,
            "tool" => {
                tool_n += 1;
                let id = format!("tool-{tool_n}");
                update(
                    &cx,
                    &sid,
                    s::SessionUpdate::ToolCall(
                        s::ToolCall::new(id.clone(), rest)
                            .kind(s::ToolKind::Execute)
                            .status(s::ToolCallStatus::Pending)
                            .raw_input(serde_json::json!({"what": rest})),
                    ),
                )?;
                update(
                    &cx,
                    &sid,
                    s::SessionUpdate::ToolCallUpdate(s::ToolCallUpdate::new(
                        id,
                        s::ToolCallUpdateFields::new()
                            .status(s::ToolCallStatus::Completed)
                            .raw_output(serde_json::json!("tool ok")),
                    )),
                )?;
            }
            "write" | "perm-write" => {
                let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                if cmd == "perm-write" {
                    let resp = cx
                        .send_request(s::RequestPermissionRequest::new(
                            sid.clone(),
                            s::ToolCallUpdate::new(
                                "perm-1",
                                s::ToolCallUpdateFields::new().title(format!("write {path}")),
                            ),
                            vec![
                                s::PermissionOption::new(
                                    "allow",
                                    "Allow once",
                                    s::PermissionOptionKind::AllowOnce,
                                ),
                                s::PermissionOption::new(
                                    "reject",
                                    "Reject",
                                    s::PermissionOptionKind::RejectOnce,
                                ),
                            ],
                        ))
                        .block_task()
                        .await?;
                    let verdict = match resp.outcome {
                        s::RequestPermissionOutcome::Selected(sel)
                            if sel.option_id.0.as_ref() == "allow" =>
                        {
                            "allowed"
                        }
                        s::RequestPermissionOutcome::Selected(_) => "rejected",
                        _ => "cancelled",
                    };
                    say(&cx, &sid, format!("permission: {verdict}"))?;
                    if verdict != "allowed" {
                        continue;
                    }
                }
                let target = resolve(&sess.cwd, path);
                let r = cx
                    .send_request(s::WriteTextFileRequest::new(
                        sid.clone(),
                        target,
                        format!("{text}\n"),
                    ))
                    .block_task()
                    .await;
                match r {
                    Ok(_) => say(&cx, &sid, format!("write {path}: ok"))?,
                    Err(e) => say(&cx, &sid, format!("write {path}: error: {}", e.message))?,
                }
            }
            "read" => {
                let mut parts = rest.split(' ');
                let path = parts.next().unwrap_or("");
                let mut req = s::ReadTextFileRequest::new(sid.clone(), resolve(&sess.cwd, path));
                if let (Some(l), Some(n)) = (parts.next(), parts.next()) {
                    req = req.line(l.parse::<u32>().ok()).limit(n.parse::<u32>().ok());
                }
                match cx.send_request(req).block_task().await {
                    Ok(r) => say(&cx, &sid, format!("read {path}: {}", r.content.trim_end()))?,
                    Err(e) => say(&cx, &sid, format!("read {path}: error: {}", e.message))?,
                }
            }
            "term" => {
                let mut words = rest.split_whitespace().map(str::to_string);
                let command = words.next().unwrap_or_default();
                let args: Vec<String> = words.collect();
                let created = cx
                    .send_request(
                        s::CreateTerminalRequest::new(sid.clone(), command)
                            .args(args)
                            .output_byte_limit(4096u64),
                    )
                    .block_task()
                    .await;
                let t = match created {
                    Ok(t) => t.terminal_id,
                    Err(e) => {
                        say(&cx, &sid, format!("terminal: error: {}", e.message))?;
                        continue;
                    }
                };
                let exit = cx
                    .send_request(s::WaitForTerminalExitRequest::new(sid.clone(), t.clone()))
                    .block_task()
                    .await?;
                let out = cx
                    .send_request(s::TerminalOutputRequest::new(sid.clone(), t.clone()))
                    .block_task()
                    .await?;
                cx.send_request(s::ReleaseTerminalRequest::new(sid.clone(), t))
                    .block_task()
                    .await?;
                say(
                    &cx,
                    &sid,
                    format!(
                        "terminal exit={} output={}",
                        exit.exit_status
                            .exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "none".into()),
                        out.output.trim_end()
                    ),
                )?;
            }
            "symlink" => {
                let (name, target) = rest.split_once(' ').unwrap_or((rest, ""));
                let r = std::os::unix::fs::symlink(target, sess.cwd.join(name));
                say(&cx, &sid, format!("symlink {name}: {r:?}"))?;
            }
            "rm" => {
                // why: a missing file is fine; the directive only tidies up.
                let _ = std::fs::remove_file(sess.cwd.join(rest));
            }
            "sleep" => {
                if sleep_cancellable(&state, rest.parse().unwrap_or(0)).await {
                    return Ok(s::StopReason::Cancelled);
                }
            }
            "sleep-hard" => {
                tokio::time::sleep(Duration::from_millis(rest.parse().unwrap_or(0))).await;
            }
            "usage" => {
                let (u, sz) = rest.split_once(' ').unwrap_or(("0", "0"));
                update(
                    &cx,
                    &sid,
                    s::SessionUpdate::UsageUpdate(s::UsageUpdate::new(
                        u.parse().unwrap_or(0),
                        sz.parse().unwrap_or(0),
                    )),
                )?;
            }
            "pid" => say(&cx, &sid, format!("pid={}", std::process::id()))?,
            "unknown" => {
                let msg = agent_client_protocol::UntypedMessage::new(
                    "craft/drainMidTurnQueue",
                    serde_json::json!({"sessionId": sid.0.to_string()}),
                )?;
                match cx.send_request(msg).block_task().await {
                    Ok(v) => say(&cx, &sid, format!("unknown method answered: {v}"))?,
                    Err(e) => say(
                        &cx,
                        &sid,
                        format!("unknown method error code {}", i32::from(e.code)),
                    )?,
                }
            }
            "whoami" => say(
                &cx,
                &sid,
                format!("mode={} model={}", sess.mode, sess.model),
            )?,
            "history" => say(&cx, &sid, format!("turns={} how={}", sess.turns, sess.how))?,
            "crash" => {
                eprintln!("fixture: crashing on purpose");
                // Let the messages already sent reach the client, as a real crash would.
                tokio::time::sleep(Duration::from_millis(200)).await;
                std::process::exit(3);
            }
            "raw" => {
                // Let the messages already queued reach stdout first: the raw lines must not
                // land inside one of them.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let chunk = serde_json::json!({
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {"sessionId": sid.0.to_string(), "update": {
                        "sessionUpdate": "agent_message_chunk",
                        "content": {"type": "text", "text": "@@BAD@@\n"}
                    }}
                })
                .to_string()
                .replace("@@BAD@@", rest);
                let mut bytes = b"\xff\xfe not json \xc3\n".to_vec();
                let (head, tail) = chunk.split_once("\\n\"").unwrap_or((&chunk, ""));
                bytes.extend_from_slice(head.as_bytes());
                bytes.push(0xe9);
                bytes.extend_from_slice(b"\\n\"");
                bytes.extend_from_slice(tail.as_bytes());
                bytes.push(b'\n');
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(|_| agent_client_protocol::Error::internal_error())?;
            }
            "stderr-flood" => {
                let mb: usize = rest.parse().unwrap_or(1);
                let block = vec![b'e'; 1 << 20];
                let mut err = std::io::stderr().lock();
                for _ in 0..mb {
                    err.write_all(&block)
                        .map_err(|_| agent_client_protocol::Error::internal_error())?;
                }
                err.write_all(b"\n")
                    .and_then(|()| err.flush())
                    .map_err(|_| agent_client_protocol::Error::internal_error())?;
            }
            "detach" => {
                let (secs, pidfile) = rest.split_once(' ').unwrap_or((rest, ""));
                let child = std::process::Command::new("sleep")
                    .arg(secs)
                    .process_group(0)
                    .spawn()
                    .map_err(|_| agent_client_protocol::Error::internal_error())?;
                std::fs::write(pidfile, format!("{}\n", child.id()))
                    .map_err(|_| agent_client_protocol::Error::internal_error())?;
            }
            "exit" => std::process::exit(0),
            "" => {}
            other => say(&cx, &sid, format!("unknown directive: {other}"))?,
        }
    }
    Ok(if state.cancelled.load(Ordering::SeqCst) {
        s::StopReason::Cancelled
    } else {
        s::StopReason::EndTurn
    })
}

fn with_session(state: &State, sid: &s::SessionId, f: impl FnOnce(&mut Session)) -> Res {
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
                        Ok(stop) => r.respond(s::PromptResponse::new(stop)),
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
