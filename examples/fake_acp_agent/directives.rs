//! The directives that take more than a line: each sends what a real agent would (updates,
//! client requests) or misbehaves the way one might (bytes that are not UTF-8 on stdout, a
//! flood on stderr, a child that outlives it).

use std::io::Write;
use std::os::unix::process::CommandExt;

use agent_client_protocol::v1::schema as s;

use crate::session::{Res, say, update};
use crate::turn::{Turn, resolve};

pub fn plan(t: &Turn, rest: &str) -> Res {
    update(
        &t.cx,
        &t.sid,
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
    )
}

/// A tool call (pending) and its completion update.
pub fn tool(t: &mut Turn, rest: &str) -> Res {
    t.tool_n += 1;
    let id = format!("tool-{}", t.tool_n);
    update(
        &t.cx,
        &t.sid,
        s::SessionUpdate::ToolCall(
            s::ToolCall::new(id.clone(), rest)
                .kind(s::ToolKind::Execute)
                .status(s::ToolCallStatus::Pending)
                .raw_input(serde_json::json!({"what": rest})),
        ),
    )?;
    update(
        &t.cx,
        &t.sid,
        s::SessionUpdate::ToolCallUpdate(s::ToolCallUpdate::new(
            id,
            s::ToolCallUpdateFields::new()
                .status(s::ToolCallStatus::Completed)
                .raw_output(serde_json::json!("tool ok")),
        )),
    )
}

/// Ask to write the path `rest` starts with (an edit with its diff, as real agents ask) and
/// say the verdict; true when allowed.
pub async fn ask_permission(t: &Turn, rest: &str) -> Res<bool> {
    let (path, content) = rest.split_once(' ').unwrap_or((rest, ""));
    let target = resolve(&t.sess.cwd, path);
    let resp =
        t.cx.send_request(s::RequestPermissionRequest::new(
            t.sid.clone(),
            s::ToolCallUpdate::new(
                "perm-1",
                s::ToolCallUpdateFields::new()
                    .title(format!("write {path}"))
                    .kind(s::ToolKind::Edit)
                    .locations(vec![s::ToolCallLocation::new(target.clone())])
                    .content(vec![s::ToolCallContent::Diff(s::Diff::new(
                        target,
                        content.to_string(),
                    ))]),
            ),
            vec![
                s::PermissionOption::new("allow", "Allow once", s::PermissionOptionKind::AllowOnce),
                s::PermissionOption::new(
                    "always",
                    "Always allow",
                    s::PermissionOptionKind::AllowAlways,
                ),
                s::PermissionOption::new("reject", "Reject", s::PermissionOptionKind::RejectOnce),
            ],
        ))
        .block_task()
        .await?;
    let verdict = match resp.outcome {
        s::RequestPermissionOutcome::Selected(sel)
            if matches!(sel.option_id.0.as_ref(), "allow" | "always") =>
        {
            "allowed"
        }
        s::RequestPermissionOutcome::Selected(_) => "rejected",
        _ => "cancelled",
    };
    say(&t.cx, &t.sid, format!("permission: {verdict}"))?;
    Ok(verdict == "allowed")
}

/// `fs/write_text_file` of `PATH TEXT`, then says how it went.
pub async fn write(t: &Turn, rest: &str) -> Res {
    let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let target = resolve(&t.sess.cwd, path);
    let r =
        t.cx.send_request(s::WriteTextFileRequest::new(
            t.sid.clone(),
            target,
            format!("{text}\n"),
        ))
        .block_task()
        .await;
    match r {
        Ok(_) => say(&t.cx, &t.sid, format!("write {path}: ok")),
        Err(e) => say(&t.cx, &t.sid, format!("write {path}: error: {}", e.message)),
    }
}

/// `fs/read_text_file` of `PATH [LINE LIMIT]`, then says the content.
pub async fn read(t: &Turn, rest: &str) -> Res {
    let mut parts = rest.split(' ');
    let path = parts.next().unwrap_or("");
    let mut req = s::ReadTextFileRequest::new(t.sid.clone(), resolve(&t.sess.cwd, path));
    if let (Some(l), Some(n)) = (parts.next(), parts.next()) {
        req = req.line(l.parse::<u32>().ok()).limit(n.parse::<u32>().ok());
    }
    match t.cx.send_request(req).block_task().await {
        Ok(r) => say(
            &t.cx,
            &t.sid,
            format!("read {path}: {}", r.content.trim_end()),
        ),
        Err(e) => say(&t.cx, &t.sid, format!("read {path}: error: {}", e.message)),
    }
}

/// A terminal's whole life: create, wait for exit, output, release; then says the result.
pub async fn term(t: &Turn, rest: &str) -> Res {
    let (cx, sid) = (&t.cx, &t.sid);
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
    let id = match created {
        Ok(c) => c.terminal_id,
        Err(e) => return say(cx, sid, format!("terminal: error: {}", e.message)),
    };
    let exit = cx
        .send_request(s::WaitForTerminalExitRequest::new(sid.clone(), id.clone()))
        .block_task()
        .await?;
    let out = cx
        .send_request(s::TerminalOutputRequest::new(sid.clone(), id.clone()))
        .block_task()
        .await?;
    cx.send_request(s::ReleaseTerminalRequest::new(sid.clone(), id))
        .block_task()
        .await?;
    say(
        cx,
        sid,
        format!(
            "terminal exit={} output={}",
            exit.exit_status
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into()),
            out.output.trim_end()
        ),
    )
}

/// A request no agent protocol defines (as qwen's `craft/drainMidTurnQueue`); says the answer.
pub async fn unknown(t: &Turn) -> Res {
    let msg = agent_client_protocol::UntypedMessage::new(
        "craft/drainMidTurnQueue",
        serde_json::json!({"sessionId": t.sid.0.to_string()}),
    )?;
    match t.cx.send_request(msg).block_task().await {
        Ok(v) => say(&t.cx, &t.sid, format!("unknown method answered: {v}")),
        Err(e) => say(
            &t.cx,
            &t.sid,
            format!("unknown method error code {}", i32::from(e.code)),
        ),
    }
}

/// A line of bytes that are not UTF-8, then an agent message chunk with one such byte in it,
/// straight onto stdout.
pub async fn raw(t: &Turn, rest: &str) -> Res {
    // Let the messages already queued reach stdout first: the raw lines must not
    // land inside one of them.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let chunk = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {"sessionId": t.sid.0.to_string(), "update": {
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
        .map_err(|_| agent_client_protocol::Error::internal_error())
}

/// One stderr line of `rest` megabytes.
pub fn stderr_flood(rest: &str) -> Res {
    let mb: usize = rest.parse().unwrap_or(1);
    let block = vec![b'e'; 1 << 20];
    let mut err = std::io::stderr().lock();
    for _ in 0..mb {
        err.write_all(&block)
            .map_err(|_| agent_client_protocol::Error::internal_error())?;
    }
    err.write_all(b"\n")
        .and_then(|()| err.flush())
        .map_err(|_| agent_client_protocol::Error::internal_error())
}

/// `sleep SECS` in a process group of its own that shares the agent's stdout and stderr;
/// its pid goes to PIDFILE.
pub fn detach(rest: &str) -> Res {
    let (secs, pidfile) = rest.split_once(' ').unwrap_or((rest, ""));
    let child = std::process::Command::new("sleep")
        .arg(secs)
        .process_group(0)
        .spawn()
        .map_err(|_| agent_client_protocol::Error::internal_error())?;
    std::fs::write(pidfile, format!("{}\n", child.id()))
        .map_err(|_| agent_client_protocol::Error::internal_error())
}

/// `env NAME…`: what this agent's environment holds for each name (`NAME=<unset>` if absent),
/// so tests can see what the client passed to it.
pub fn env(names: &str) -> String {
    names
        .split_whitespace()
        .map(|n| match std::env::var(n) {
            Ok(v) => format!("{n}={v}"),
            Err(_) => format!("{n}=<unset>"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `usage USED SIZE [COST]`: a `usage_update` (context, and the session's cumulative cost in
/// USD when given), as codex-acp and claude-agent-acp send.
pub fn usage_update(t: &Turn, rest: &str) -> Res {
    let mut it = rest.split_whitespace();
    let mut n = || it.next().and_then(|v| v.parse::<f64>().ok());
    let (used, size, cost) = (n().unwrap_or(0.0), n().unwrap_or(0.0), n());
    let mut u = s::UsageUpdate::new(used as u64, size as u64);
    if let Some(c) = cost {
        u = u.cost(s::Cost::new(c, "USD"));
    }
    update(&t.cx, &t.sid, s::SessionUpdate::UsageUpdate(u))
}

/// `tokens IN OUT`: the turn's usage in the prompt response (opencode's way);
/// `gemini-tokens IN OUT`: in its `_meta.quota`; `qwen-tokens IN OUT`: on an empty agent
/// message chunk's `_meta.usage`, sent now.
pub fn tokens(t: &mut Turn, how: &str, rest: &str) -> Res {
    let (i, o) = rest.split_once(' ').unwrap_or((rest, "0"));
    let (input, output): (u64, u64) = (i.parse().unwrap_or(0), o.trim().parse().unwrap_or(0));
    match how {
        "gemini-tokens" => {
            let meta = serde_json::json!({"quota": {"token_count":
                {"input_tokens": input, "output_tokens": output}, "model_usage": []}});
            t.meta = meta.as_object().cloned();
            Ok(())
        }
        "qwen-tokens" => {
            let meta = serde_json::json!({"usage": {"inputTokens": input, "outputTokens": output}});
            let chunk = s::ContentChunk::new(String::new().into()).meta(meta.as_object().cloned());
            update(&t.cx, &t.sid, s::SessionUpdate::AgentMessageChunk(chunk))
        }
        _ => {
            t.usage = Some(s::Usage::new(input + output, input, output));
            Ok(())
        }
    }
}
