//! Dispatch: a turn from `new_task` to completed (new session, follow-up, warm ACP agent),
//! the claim delay, and queue throughput on SQLite and PostgreSQL.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{fig, setup};
use crate::rpc::StdioClient;
use crate::{Figure, Opts};

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut truth = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        Command::new("true").status()?;
        truth.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.push(fig(
        "dispatch",
        "spawn+exit of /bin/true",
        "ms",
        truth,
        None,
    ));
    let (_data, _repo, mut args) = setup(opts, "dispatch")?;
    args.push("serve".into());
    let (c, _) = StdioClient::spawn(&opts.boocoder, &args).await?;
    let mut first = Vec::new();
    let mut warm = Vec::new();
    let mut claim = Vec::new();
    for _ in 0..opts.reps.max(3) * 2 {
        let t = Instant::now();
        let r = c
            .call("new_task", json!({"prompt": "noop", "wait_seconds": 30}))
            .await?;
        first.push(t.elapsed().as_secs_f64() * 1e3);
        let s = &r["structuredContent"];
        let sid = s["session_id"].as_str().context("session")?.to_string();
        let t = Instant::now();
        c.call(
            "new_task",
            json!({"prompt": "noop", "session_id": sid, "wait_seconds": 30}),
        )
        .await?;
        warm.push(t.elapsed().as_secs_f64() * 1e3);
        let st = c
            .call("get_task_output", json!({"task_id": s["task_id"]}))
            .await?;
        let st = &st["structuredContent"]["status"];
        if let (Some(a), Some(b)) = (st["created_at"].as_str(), st["started_at"].as_str()) {
            let p = |x: &str| chrono_ms(x);
            claim.push((p(b) - p(a)) as f64);
        }
    }
    out.push(fig(
        "dispatch",
        "new_task→completed, new session (worktree+agent+diff)",
        "ms",
        first,
        Some("spawn+exit of /bin/true"),
    ));
    out.push(fig(
        "dispatch",
        "new_task→completed, new session, --pool-size 0",
        "ms",
        new_sessions_without_pool(opts).await?,
        Some("new_task→completed, new session (worktree+agent+diff)"),
    ));
    out.push(fig(
        "dispatch",
        "new_task→completed, follow-up turn",
        "ms",
        warm,
        Some("spawn+exit of /bin/true"),
    ));
    // A warm ACP agent (the scripted fixture): the first turn starts the process, runs
    // initialize and session/new; a follow-up reuses all of it.
    let (mut cold, mut hot) = (Vec::new(), Vec::new());
    for _ in 0..opts.reps.max(3) {
        let (ms, r) = fixture_first_turn(&c).await?;
        cold.push(ms);
        let sid = r["structuredContent"]["session_id"]
            .as_str()
            .context("session")?
            .to_string();
        let t = Instant::now();
        c.call(
            "new_task",
            json!({"prompt": "say again", "session_id": sid, "wait_seconds": 30}),
        )
        .await?;
        hot.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.push(fig(
        "dispatch",
        "ACP fixture: new_task→completed, first turn",
        "ms",
        cold,
        None,
    ));
    out.push(fig(
        "dispatch",
        "ACP fixture: new_task→completed, warm follow-up",
        "ms",
        hot,
        Some("ACP fixture: new_task→completed, first turn"),
    ));
    let (prestarted, paused) = prestarted_first_turns(opts).await?;
    out.push(fig(
        "dispatch",
        "ACP fixture: follow-up after the same pause, --prestart",
        "ms",
        paused,
        Some("ACP fixture: new_task→completed, warm follow-up"),
    ));
    out.push(fig(
        "dispatch",
        "ACP fixture: first turn of a new session, --prestart",
        "ms",
        prestarted,
        Some("ACP fixture: follow-up after the same pause, --prestart"),
    ));
    out.push(fig(
        "dispatch",
        "queued→claimed (row timestamps, ms resolution)",
        "ms",
        claim,
        None,
    ));
    drop(c);

    // Queue throughput with the no-op agent.
    let n = if opts.quick { 20 } else { 200 };
    out.push(fig(
        "queue",
        format!("SQLite, 1 node, {n} tasks"),
        "tasks/s",
        vec![throughput(opts, None, 1, n).await?],
        None,
    ));
    if let Some(url) = &opts.database_url {
        out.push(fig(
            "queue",
            format!("PostgreSQL, 1 node, {n} tasks"),
            "tasks/s",
            vec![throughput(opts, Some(url), 1, n).await?],
            None,
        ));
        out.push(fig(
            "queue",
            format!("PostgreSQL, 3 nodes, {n} tasks"),
            "tasks/s",
            vec![throughput(opts, Some(url), 3, n).await?],
            None,
        ));
    }
    Ok(out)
}

fn chrono_ms(rfc: &str) -> i64 {
    // "2026-11-23T01:02:03.456Z": only the time of day matters for differences within a run.
    let t = rfc.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: i64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let m: i64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let s: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (h * 3600 + m * 60) * 1000 + (s * 1000.0) as i64
}

async fn throughput(opts: &Opts, db: Option<&str>, nodes: usize, n: usize) -> Result<f64> {
    let (_data, _repo, mut args) = setup(opts, &format!("queue-{}-{nodes}", db.is_some()))?;
    if let Some(u) = db {
        args.extend(["--database-url".into(), u.to_string()]);
    }
    args.push("serve".into());
    let mut clients = Vec::new();
    for _ in 0..nodes {
        clients.push(StdioClient::spawn(&opts.boocoder, &args).await?.0);
    }
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let r = clients[i % nodes]
            .call("new_task", json!({"prompt": "noop"}))
            .await?;
        ids.push(
            r["structuredContent"]["task_id"]
                .as_str()
                .context("id")?
                .to_string(),
        );
    }
    for id in &ids {
        loop {
            let s = clients[0]
                .call(
                    "check_task_status",
                    json!({"task_id": id, "wait_seconds": 10}),
                )
                .await?;
            if s["structuredContent"]["state"] == "completed" {
                break;
            }
            if s["structuredContent"]["state"] == "failed" {
                bail!("task failed: {s}");
            }
        }
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// New sessions on a server without the worktree pool: each creates its worktree on the
/// request path (the reference for what the pool saves).
async fn new_sessions_without_pool(opts: &Opts) -> Result<Vec<f64>> {
    let (_data, _repo, mut args) = setup(opts, "dispatch-nopool")?;
    args.extend(["--pool-size".into(), "0".into(), "serve".into()]);
    let (c, _) = StdioClient::spawn(&opts.boocoder, &args).await?;
    let mut out = Vec::new();
    for _ in 0..opts.reps.max(3) * 2 {
        let t = Instant::now();
        c.call("new_task", json!({"prompt": "noop", "wait_seconds": 30}))
            .await?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// First turns of new sessions with the fixture agent pre-started (`--prestart fixture`): the
/// turn only opens its ACP session in the parked process. A pause between sessions lets the
/// replacement be parked, as it would be between a person's tasks; each session then gets a
/// follow-up after the same pause, the like-for-like reference (the warm follow-up above
/// comes straight after a turn, with every cache and thread still hot).
async fn prestarted_first_turns(opts: &Opts) -> Result<(Vec<f64>, Vec<f64>)> {
    let (_data, _repo, mut args) = setup(opts, "dispatch-prestart")?;
    args.extend(["--prestart".into(), "fixture".into(), "serve".into()]);
    let (c, _) = StdioClient::spawn(&opts.boocoder, &args).await?;
    let pause = std::time::Duration::from_millis(300);
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for _ in 0..opts.reps.max(3) * 2 {
        tokio::time::sleep(pause).await;
        let (ms, r) = fixture_first_turn(&c).await?;
        first.push(ms);
        let sid = r["structuredContent"]["session_id"]
            .as_str()
            .context("session")?
            .to_string();
        tokio::time::sleep(pause).await;
        let t = Instant::now();
        c.call(
            "new_task",
            json!({"prompt": "say again", "session_id": sid, "wait_seconds": 30}),
        )
        .await?;
        again.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((first, again))
}

/// A new session's first turn with the fixture agent: its round trip in ms, and the result.
async fn fixture_first_turn(c: &StdioClient) -> Result<(f64, serde_json::Value)> {
    let t = Instant::now();
    let r = c
        .call(
            "new_task",
            json!({"prompt": "say hi", "agent": "fixture", "wait_seconds": 30}),
        )
        .await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        r["structuredContent"]["state"] == "completed",
        "fixture turn: {r}"
    );
    Ok((ms, r))
}
