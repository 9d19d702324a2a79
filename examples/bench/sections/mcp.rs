//! MCP round trips over stdio and Streamable HTTP: latency percentiles and throughput with 1
//! and 8 calls in flight, against the bare rmcp echo server, plus memory after the calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{fig, setup};
use crate::rpc::{BENCH_TOKEN, Http, StdioClient, spawn_http};
use crate::{Figure, Opts, pct};

/// Sequential latencies (µs) of `calls` calls, then throughput with 1 and 8 in flight.
async fn latency<F, Fut>(calls: usize, call: F) -> Result<(Vec<f64>, f64, f64)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value>> + Send,
{
    let call = Arc::new(call);
    for _ in 0..calls / 10 {
        call().await?;
    }
    let mut lat = Vec::with_capacity(calls);
    let t0 = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        call().await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let one = calls as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let c = call.clone();
        let n = calls / 8;
        set.spawn(async move {
            for _ in 0..n {
                c().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let eight = (calls / 8 * 8) as f64 / t0.elapsed().as_secs_f64();
    Ok((lat, one, eight))
}

struct Lat {
    p50: Vec<f64>,
    p90: Vec<f64>,
    p99: Vec<f64>,
    one: Vec<f64>,
    eight: Vec<f64>,
}

impl Lat {
    fn new() -> Lat {
        Lat {
            p50: vec![],
            p90: vec![],
            p99: vec![],
            one: vec![],
            eight: vec![],
        }
    }
    fn push(&mut self, (mut lat, one, eight): (Vec<f64>, f64, f64)) {
        self.p50.push(pct(&mut lat, 50.0));
        self.p90.push(pct(&mut lat, 90.0));
        self.p99.push(pct(&mut lat, 99.0));
        self.one.push(one);
        self.eight.push(eight);
    }
    fn figures(self, label: &str, reference: Option<&str>, out: &mut Vec<Figure>) {
        let vs = |s: &str| reference.map(|r| format!("{r} {s}"));
        out.push(fig(
            "mcp",
            format!("{label} p50"),
            "µs",
            self.p50,
            vs("p50").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} p90"),
            "µs",
            self.p90,
            vs("p90").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} p99"),
            "µs",
            self.p99,
            vs("p99").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} 1 in flight"),
            "/s",
            self.one,
            vs("1 in flight").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} 8 in flight"),
            "/s",
            self.eight,
            vs("8 in flight").as_deref(),
        ));
    }
}

/// (label, program, arguments, tool to call, reference label)
type Target<'a> = (&'a str, PathBuf, Vec<String>, &'a str, Option<&'a str>);

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let (_data, _repo, args) = setup(opts, "mcp")?;
    let mut out = Vec::new();
    let serve = |extra: &[&str]| {
        let mut a = args.clone();
        a.push("serve".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // stdio: boocoder (pipes, blocking stdio) and the bare rmcp echo server.
    let stdio_targets: Vec<Target> = vec![
        (
            "echo stdio (rmcp default)",
            opts.echo.clone(),
            vec![],
            "echo",
            None,
        ),
        (
            "echo stdio (pipes)",
            opts.echo.clone(),
            vec!["--pipes".into()],
            "echo",
            None,
        ),
        (
            "boocoder stdio list_tasks",
            opts.boocoder.clone(),
            serve(&[]),
            "list_tasks",
            Some("echo stdio (pipes)"),
        ),
        (
            "boocoder stdio list_tasks, blocking stdio",
            opts.boocoder.clone(),
            serve(&["--plain-stdio"]),
            "list_tasks",
            Some("boocoder stdio list_tasks"),
        ),
        (
            "boocoder stdio check_task_status",
            opts.boocoder.clone(),
            serve(&[]),
            "check_task_status",
            Some("echo stdio (pipes)"),
        ),
    ];
    let mut rss = Vec::new();
    for (label, bin, a, tool, reference) in stdio_targets {
        let mut lat = Lat::new();
        for _ in 0..opts.reps {
            let (c, _) = StdioClient::spawn(&bin, &a).await?;
            let c = Arc::new(c);
            let call_args = match tool {
                "echo" => json!({"text": "hi"}),
                "check_task_status" => {
                    let t = c.call("new_task", json!({"prompt": "noop"})).await?;
                    let id = t["structuredContent"]["task_id"]
                        .as_str()
                        .context("task id")?
                        .to_string();
                    json!({"task_id": id})
                }
                _ => json!({}),
            };
            let tool = tool.to_string();
            let c2 = c.clone();
            lat.push(
                latency(opts.calls, move || {
                    let (c, tool, a) = (c2.clone(), tool.clone(), call_args.clone());
                    async move { c.call(&tool, a).await }
                })
                .await?,
            );
            if label == "boocoder stdio list_tasks" {
                rss.push(c.rss_kib().unwrap_or(0) as f64 / 1024.0);
            }
            if label == "echo stdio (pipes)" {
                rss.push(-(c.rss_kib().unwrap_or(0) as f64) / 1024.0);
            }
        }
        lat.figures(label, reference, &mut out);
    }
    let (b, e): (Vec<f64>, Vec<f64>) = rss.into_iter().partition(|v| *v >= 0.0);
    out.push(fig(
        "mcp",
        "echo RSS after calls",
        "MiB",
        e.into_iter().map(|v| -v).collect(),
        None,
    ));
    out.push(fig(
        "mcp",
        format!(
            "boocoder RSS after {} calls",
            opts.calls + opts.calls / 10 * 2
        ),
        "MiB",
        b,
        Some("echo RSS after calls"),
    ));

    // Streamable HTTP.
    let http_targets: Vec<Target> = vec![
        (
            "echo http",
            opts.echo.clone(),
            vec!["--http".into(), "127.0.0.1:0".into()],
            "echo",
            None,
        ),
        (
            "boocoder http list_tasks",
            opts.boocoder.clone(),
            serve(&["--http", "127.0.0.1:0", "--token", BENCH_TOKEN]),
            "list_tasks",
            Some("echo http"),
        ),
        (
            "boocoder http list_tasks, Nagle on",
            opts.boocoder.clone(),
            serve(&[
                "--http",
                "127.0.0.1:0",
                "--token",
                BENCH_TOKEN,
                "--no-nodelay",
            ]),
            "list_tasks",
            Some("boocoder http list_tasks"),
        ),
    ];
    for (label, bin, a, tool, reference) in http_targets {
        let mut lat = Lat::new();
        let calls = if label.contains("Nagle") {
            opts.calls / 10
        } else {
            opts.calls
        };
        for _ in 0..opts.reps {
            let (_child, url) = spawn_http(&bin, &a).await?;
            let h = Arc::new(Http::connect(&url).await?);
            let args = if tool == "echo" {
                json!({"text": "hi"})
            } else {
                json!({})
            };
            let tool = tool.to_string();
            lat.push(
                latency(calls, move || {
                    let (h, tool, a) = (h.clone(), tool.clone(), args.clone());
                    async move { h.call(&tool, a).await }
                })
                .await?,
            );
        }
        lat.figures(label, reference, &mut out);
    }
    Ok(out)
}
