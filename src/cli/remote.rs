//! The CLI verbs against a running server (`--url`): the same verbs, through the MCP tools.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use boocoder::domain::TaskState;
use boocoder::mcp::client::{RemoteClient, RemoteError};
use serde_json::{Value, json};

use super::{Verb, json as print_json, out, render};

fn target(id: &str) -> Value {
    if id.starts_with("s-") {
        json!({ "session_id": id })
    } else {
        json!({ "task_id": id })
    }
}

fn state_of(v: &Value) -> TaskState {
    v["state"]
        .as_str()
        .and_then(TaskState::parse)
        .unwrap_or(TaskState::Pending)
}

/// The server's file list, rendered as the local verbs render theirs.
fn files_lines(v: &Value) -> Vec<String> {
    serde_json::from_value::<Vec<boocoder::worktree::FileChange>>(v.clone())
        .unwrap_or_default()
        .iter()
        .map(super::file_line)
        .collect()
}

pub async fn run(url: &str, token: Option<&str>, verb: Verb) -> Result<i32> {
    let (client, mut progress) = RemoteClient::connect(url, token).await?;
    let code = match verb {
        Verb::Run {
            prompt,
            agent,
            model,
            mode,
            project_dir,
            session,
            wait,
            json: as_json,
        } => {
            let args = json!({"prompt": prompt, "agent": agent, "model": model, "mode": mode,
                "project": project_dir.map(|p| p.display().to_string()), "session_id": session});
            let t = client.call("new_task", args).await?;
            let id = t["task_id"].as_str().unwrap_or_default().to_string();
            if !wait {
                if as_json {
                    print_json(&t)?;
                } else {
                    out(&format!(
                        "queued {id} (session {})\n",
                        t["session_id"].as_str().unwrap_or("?")
                    ));
                }
                0
            } else {
                let status = wait_remote(&client, &id, &mut progress).await?;
                if as_json {
                    print_json(&status)?;
                } else {
                    print_status(&status);
                }
                match state_of(&status) {
                    TaskState::Completed => 0,
                    TaskState::Cancelled => 130,
                    _ => 1,
                }
            }
        }
        Verb::Ls {
            state,
            limit,
            session,
            json: as_json,
        } => {
            let page = client
                .call(
                    "list_tasks",
                    json!({"state": state, "limit": limit, "session_id": session}),
                )
                .await?;
            let tasks = page["tasks"].as_array().cloned().unwrap_or_default();
            if as_json {
                print_json(&tasks)?;
            } else if tasks.is_empty() {
                out("no tasks\n");
            } else {
                let rows: Vec<Vec<String>> = tasks
                    .iter()
                    .map(|t| {
                        vec![
                            t["task_id"].as_str().unwrap_or("").into(),
                            t["state"].as_str().unwrap_or("").into(),
                            t["agent"].as_str().unwrap_or("").into(),
                            t["created_at"].as_str().unwrap_or("").into(),
                            t["files_changed"].to_string(),
                            t["result"]
                                .as_str()
                                .or(t["prompt"].as_str())
                                .unwrap_or("")
                                .into(),
                        ]
                    })
                    .collect();
                out(&render::table(
                    &["ID", "STATE", "AGENT", "CREATED", "FILES", "SUMMARY"],
                    &rows,
                ));
            }
            0
        }
        Verb::Show { id, json: as_json } => {
            let mut page = client
                .call(
                    "get_task_output",
                    json!({"task_id": id, "max_events": 1000}),
                )
                .await?;
            let mut events = page["transcript"].as_array().cloned().unwrap_or_default();
            let mut diff = page["diff"].as_str().unwrap_or("").to_string();
            while let Some(after) = page["next_after_seq"].as_i64() {
                page = client
                    .call("get_task_output", json!({"task_id": id, "after_seq": after, "max_events": 1000, "max_diff_bytes": 0}))
                    .await?;
                events.extend(page["transcript"].as_array().cloned().unwrap_or_default());
            }
            let mut offset = page["next_diff_offset"].as_u64();
            while let Some(o) = offset {
                let p = client
                    .call("get_task_output", json!({"task_id": id, "after_seq": i64::MAX, "diff_offset": o, "max_diff_bytes": 1 << 20}))
                    .await?;
                diff.push_str(p["diff"].as_str().unwrap_or(""));
                offset = p["next_diff_offset"].as_u64();
            }
            if as_json {
                page["transcript"] = Value::Array(events);
                page["diff"] = Value::String(diff);
                print_json(&page)?;
            } else {
                print_status(&page["status"]);
                out("\n── transcript ──\n");
                for e in &events {
                    out(&format!(
                        "[{}] {}\n",
                        e["kind"].as_str().unwrap_or("?"),
                        e["text"].as_str().unwrap_or("").trim_end()
                    ));
                }
                if !diff.is_empty() {
                    use std::io::IsTerminal;
                    out(&format!(
                        "\n── diff ──\n{}",
                        render::diff(&diff, std::io::stdout().is_terminal())
                    ));
                }
            }
            0
        }
        Verb::Apply { id, dry_run } => {
            let mut args = target(&id);
            args["dry_run"] = json!(dry_run);
            match client.call("apply_pending", args).await {
                Ok(r) => {
                    let files = files_lines(&r["files"]);
                    let verb = if dry_run { "would apply" } else { "applied" };
                    out(&format!(
                        "{verb} {} file(s) from session {}:\n",
                        files.len(),
                        r["session_id"].as_str().unwrap_or("?")
                    ));
                    for f in files {
                        out(&format!("  {f}\n"));
                    }
                    0
                }
                Err(RemoteError::Tool(msg)) => {
                    eprintln!("refused: {msg}");
                    1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Verb::Discard { id } => {
            let r = client.call("discard_pending", target(&id)).await?;
            out(&format!(
                "discarded {} file(s) of session {}\n",
                files_lines(&r["files"]).len(),
                r["session_id"].as_str().unwrap_or("?")
            ));
            0
        }
        Verb::Cancel { id } => {
            let r = client.call("cancel_task", json!({"task_id": id})).await?;
            out(&format!(
                "{} is {}\n",
                id,
                r["state"].as_str().unwrap_or("?")
            ));
            0
        }
        Verb::Close { .. } => {
            bail!(
                "`close` runs on the server's machine; remotely, use `apply`/`discard` and then close there"
            )
        }
        Verb::Providers {
            json: as_json,
            refresh,
        } => {
            let tool = if refresh {
                "refresh_providers"
            } else {
                "list_providers"
            };
            let r = client.call(tool, json!({})).await?;
            if as_json {
                print_json(&r)?;
            } else {
                let rows: Vec<Vec<String>> = r["providers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
                        vec![
                            s("id"),
                            s("transport"),
                            s("status"),
                            s("version"),
                            s("diagnostic"),
                        ]
                    })
                    .collect();
                out(&render::table(
                    &["ID", "TRANSPORT", "STATUS", "VERSION", "DIAGNOSTIC"],
                    &rows,
                ));
            }
            0
        }
        Verb::Serve(_) | Verb::Schemas { .. } => bail!("not a verb for people"),
        Verb::Doctor => {
            out(&format!("ok   server: {} at {url}\n", client.server()));
            let t = client.call("list_tasks", json!({"limit": 1})).await?;
            out(&format!(
                "ok   tools answer (list_tasks: {} task(s) on the first page)\n",
                t["tasks"].as_array().map_or(0, |a| a.len())
            ));
            0
        }
    };
    client.close().await;
    Ok(code)
}

async fn wait_remote(
    client: &RemoteClient,
    id: &str,
    progress: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Result<Value> {
    let mut display = render::Progress::new();
    let mut cancelled = false;
    loop {
        let call = client.call(
            "check_task_status",
            json!({"task_id": id, "wait_seconds": 20}),
        );
        tokio::pin!(call);
        let status = loop {
            tokio::select! {
                s = &mut call => break s?,
                Some(line) = progress.recv() => display.update(TaskState::Running, Some(&line)),
                _ = tokio::time::sleep(Duration::from_millis(120)) => display.update(TaskState::Running, None),
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    cancelled = true;
                    display.finish();
                    eprintln!("cancelling {id} …");
                    client.call("cancel_task", json!({"task_id": id})).await?;
                }
            }
        };
        if state_of(&status).is_terminal() {
            display.finish();
            let _ = std::io::stderr().flush();
            return Ok(status);
        }
    }
}

fn print_status(s: &Value) {
    out(&format!(
        "{} {} ({}s)\n",
        s["task_id"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        s["duration_seconds"]
            .as_f64()
            .map(|d| format!("{d:.1}"))
            .unwrap_or_else(|| "-".into())
    ));
    if let Some(summary) = s["summary"].as_str() {
        out(&format!("\n{}\n", summary.trim()));
    }
    if let Some(e) = s["error"].as_str() {
        out(&format!("\nerror: {e}\n"));
    }
    let files = files_lines(&s["files_changed"]);
    if !files.is_empty() {
        out("\nchanged files (pending):\n");
        for f in files {
            out(&format!("  {f}\n"));
        }
    }
}
