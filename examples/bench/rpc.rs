//! Minimal raw JSON-RPC clients for MCP over stdio and Streamable HTTP: no SDK in the measured
//! path, so both boocoder and the reference server are timed by exactly the same code.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, oneshot};

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A server on stdio with a background reader matching responses to request ids.
pub struct StdioClient {
    pub child: Child,
    stdin: Mutex<ChildStdin>,
    waiters: Waiters,
    next: std::sync::atomic::AtomicU64,
}

pub fn init_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "boocoder-bench", "version": "0"}}})
}

impl StdioClient {
    /// Spawn and complete the MCP handshake; returns the client and spawn→initialized time.
    pub async fn spawn(program: &Path, args: &[String]) -> Result<(StdioClient, Duration)> {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", program.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stdin = child.stdin.take().context("stdin")?;
        let waiters: Waiters = Arc::default();
        let w2 = waiters.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64)
                    && let Some(tx) = w2.lock().await.remove(&id)
                {
                    let _ = tx.send(v);
                }
            }
        });
        let c = StdioClient {
            child,
            stdin: Mutex::new(stdin),
            waiters,
            next: 1.into(),
        };
        c.send_raw(init_request(), 0).await?;
        c.notify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok((c, started.elapsed()))
    }

    async fn send_raw(&self, msg: Value, id: u64) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().await.insert(id, tx);
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        {
            let mut w = self.stdin.lock().await;
            w.write_all(&line).await?;
            w.flush().await?;
        }
        let v = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .context("response timeout")??;
        if v.get("error").is_some() {
            bail!("error response: {v}");
        }
        Ok(v)
    }

    async fn notify(&self, msg: Value) -> Result<()> {
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        let mut w = self.stdin.lock().await;
        w.write_all(&line).await?;
        Ok(w.flush().await?)
    }

    pub async fn call(&self, tool: &str, args: Value) -> Result<Value> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
        let v = self.send_raw(msg, id).await?;
        Ok(v["result"].clone())
    }

    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }
}

/// The bearer token the benchmark's HTTP servers are started with (boocoder requires one;
/// the echo server ignores it).
pub const BENCH_TOKEN: &str = "bench-token";

/// A Streamable HTTP session.
pub struct Http {
    client: reqwest::Client,
    url: String,
    session: String,
    next: std::sync::atomic::AtomicU64,
}

impl Http {
    pub async fn connect(url: &str) -> Result<Http> {
        let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let resp = client
            .post(url)
            .bearer_auth(BENCH_TOKEN)
            .header("Accept", "application/json, text/event-stream")
            .json(&init_request())
            .send()
            .await?;
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("no mcp-session-id")?
            .to_string();
        let _ = resp.text().await?;
        let h = Http {
            client,
            url: url.into(),
            session,
            next: 1.into(),
        };
        h.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(h)
    }

    async fn post(&self, msg: Value) -> Result<String> {
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(BENCH_TOKEN)
            .header("Accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&msg)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status());
        }
        Ok(resp.text().await?)
    }

    pub async fn call(&self, tool: &str, args: Value) -> Result<Value> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
            .await?;
        let data = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.starts_with('{'))
            .unwrap_or(body.trim());
        let v: Value = serde_json::from_str(data).with_context(|| format!("bad body: {body}"))?;
        Ok(v["result"].clone())
    }
}

/// Start a server that prints `boocoder: listening on URL` on stderr; returns it and the URL.
pub async fn spawn_http(program: &Path, args: &[String]) -> Result<(Child, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("server exited before listening")?;
        if let Some(u) = line.strip_prefix("boocoder: listening on ") {
            break u.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}
