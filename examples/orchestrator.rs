//! A small Boomerang-style orchestrator that drives boocoder as an MCP client: it delegates
//! subtasks in parallel with `new_task`, polls `check_task_status`, reads only the summaries,
//! and applies the pending changes one after another.
//!
//! ```sh
//! cargo run --example orchestrator -- --boocoder target/debug/boocoder --project ~/src/app \
//!     --agent claude "add a --verbose flag to the CLI" "document --verbose in README.md"
//! ```
//! Extra arguments after `--` are passed to `boocoder serve` (e.g. `--data-dir`).

#![allow(clippy::print_stdout)] // an example program for people: stdout is its output

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

struct Args {
    boocoder: PathBuf,
    project: String,
    agent: Option<String>,
    subtasks: Vec<String>,
    serve_args: Vec<String>,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut boocoder = PathBuf::from("boocoder");
    let mut project = None;
    let mut agent = None;
    let mut subtasks = Vec::new();
    let mut serve_args = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--boocoder" => boocoder = it.next().context("--boocoder needs a path")?.into(),
            "--project" => project = Some(it.next().context("--project needs a path")?),
            "--agent" => agent = Some(it.next().context("--agent needs a provider id")?),
            "--" => serve_args.extend(it.by_ref()),
            _ => subtasks.push(a),
        }
    }
    if subtasks.len() < 2 {
        bail!("give at least two subtask prompts");
    }
    Ok(Args {
        boocoder,
        project: project.context("--project is required")?,
        agent,
        subtasks,
        serve_args,
    })
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn call(client: &Client, tool: &str, args: Value) -> Result<Value> {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let r = client.call_tool(params).await?;
    if r.is_error == Some(true) {
        let text: Vec<String> = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        bail!("{tool}: {}", text.join("\n"));
    }
    r.structured_content.context("no structured result")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let mut cmd = tokio::process::Command::new(&args.boocoder);
    cmd.args(&args.serve_args)
        .arg("serve")
        .arg("--tools")
        .arg("full");
    let transport = rmcp::transport::TokioChildProcess::new(cmd)?;
    let client: Client = ().serve(transport).await.context("starting boocoder")?;

    // Delegate every subtask at once; each gets its own session and worktree.
    let mut ids = Vec::new();
    for prompt in &args.subtasks {
        let mut req = json!({"prompt": prompt, "project": args.project});
        if let Some(a) = &args.agent {
            req["agent"] = json!(a);
        }
        let t = call(&client, "new_task", req).await?;
        println!(
            "delegated {} ← {}",
            t["task_id"].as_str().unwrap_or("?"),
            first_line(prompt)
        );
        ids.push(t["task_id"].as_str().unwrap_or_default().to_string());
    }

    // Poll until all are done, reading only the compact status.
    let mut results = Vec::new();
    for id in &ids {
        let status = loop {
            let s = call(
                &client,
                "check_task_status",
                json!({"task_id": id, "wait_seconds": 20}),
            )
            .await?;
            if matches!(
                s["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                break s;
            }
        };
        println!(
            "{id} {}: {}",
            status["state"].as_str().unwrap_or("?"),
            first_line(
                status["summary"]
                    .as_str()
                    .or(status["error"].as_str())
                    .unwrap_or("")
            )
        );
        results.push(status);
    }

    // Land the changes one after another; a conflict stops nothing else.
    let mut failed = 0;
    for s in &results {
        let id = s["task_id"].as_str().unwrap_or_default();
        if s["state"] != "completed" || s["files_changed"].as_array().is_none_or(|f| f.is_empty()) {
            continue;
        }
        match call(&client, "apply_pending", json!({"task_id": id})).await {
            Ok(r) => println!(
                "applied {id}: {} file(s)",
                r["files"].as_array().map_or(0, |f| f.len())
            ),
            Err(e) => {
                failed += 1;
                println!("could not apply {id}: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.cancel().await?;
    if failed > 0 || results.iter().any(|s| s["state"] != "completed") {
        std::process::exit(1);
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
