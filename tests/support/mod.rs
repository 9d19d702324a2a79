//! Test harness: real git repositories in temp dirs, the real `boocoder` binary as a child
//! process, and the rmcp client speaking to it over stdio or Streamable HTTP.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_boocoder");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture ACP agent (`examples/fake_acp_agent.rs`), built by `cargo test`/nextest.
pub fn fake_acp_agent() -> PathBuf {
    let p = Path::new(BIN)
        .parent()
        .expect("bin dir")
        .join("examples/fake_acp_agent");
    assert!(
        p.exists(),
        "fixture agent missing at {}: build it with `cargo build --examples` (cargo test does)",
        p.display()
    );
    p
}

/// Run git with an argument vector; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temp area holding a git repository (`repo/`) and a data directory (`data/`).
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub data: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canon");
        let repo = root.join("repo");
        let data = root.join("data");
        std::fs::create_dir_all(&repo).expect("mkdir repo");
        std::fs::create_dir_all(&data).expect("mkdir data");
        git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("README.md"), "# demo\n\nline three\n").expect("write");
        std::fs::write(repo.join("keep.txt"), "keep\n").expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        let state = root.join("acp-state");
        std::fs::create_dir_all(&state).expect("mkdir acp-state");
        let fake_env = json!({"FAKE_ACP_STATE": state});
        let providers = json!({"providers": {
            "script": {"extends": "cli", "command": [fixture("script-agent.sh")], "prompt": "stdin", "label": "Script agent"},
            "script-arg": {"extends": "cli", "command": [fixture("script-agent.sh"), "--prompt-arg"], "prompt": "arg"},
            "fake": {"extends": "acp", "command": [fake_acp_agent()], "env": fake_env,
                     "label": "Fixture ACP agent", "permission_timeout_secs": 1},
            "fake-deny": {"extends": "acp", "command": [fake_acp_agent()], "env": fake_env, "permission": "deny"},
            "fake-ask": {"extends": "acp", "command": [fake_acp_agent()], "env": fake_env, "permission": "ask",
                         "permission_timeout_secs": 300}
        }});
        std::fs::write(data.join("providers.json"), providers.to_string()).expect("providers");
        Env { tmp, repo, data }
    }

    pub fn root(&self) -> PathBuf {
        self.repo.parent().expect("parent").to_path_buf()
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.repo.join(rel)).ok()
    }

    /// Server arguments shared by every transport.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--data-dir".into(),
            self.data.display().to_string(),
            "--project".into(),
            self.repo.display().to_string(),
            "--allow-root".into(),
            self.root().display().to_string(),
            "--default-agent".into(),
            "script".into(),
        ]
    }
}

pub type Client = RunningService<RoleClient, ()>;

/// A running server and a connected client.
pub struct Server {
    pub child: Child,
    pub client: Client,
    pub log: PathBuf,
}

fn log_path(env: &Env) -> PathBuf {
    let n = std::fs::read_dir(env.root())
        .map(|d| d.count())
        .unwrap_or(0);
    env.root().join(format!("server-{n}.log"))
}

impl Server {
    /// `boocoder serve` over stdio, with extra args appended.
    pub async fn stdio(env: &Env, extra: &[&str]) -> Server {
        let log = log_path(env);
        let mut child = Command::new(BIN)
            .args(env.args())
            .arg("serve")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn boocoder");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let client = ().serve((stdout, stdin)).await.expect("MCP handshake over stdio");
        Server { child, client, log }
    }

    /// `boocoder serve --http 127.0.0.1:0`; returns the server and its URL.
    pub async fn http(env: &Env, extra: &[&str]) -> (Child, String, PathBuf) {
        let log = log_path(env);
        let mut child = Command::new(BIN)
            .args(env.args())
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn boocoder");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut logfile = std::fs::File::create(&log).expect("log");
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("server start timed out")
                .expect("read stderr")
                .expect("server exited before listening");
            use std::io::Write;
            writeln!(logfile, "{line}").expect("log");
            if let Some(url) = line.strip_prefix("boocoder: listening on ") {
                break url.trim().to_string();
            }
        };
        tokio::spawn(async move {
            use std::io::Write;
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(logfile, "{line}");
            }
        });
        (child, url, log)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Close the client (stdin EOF) and wait for the server to exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        drop(self.client);
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("server did not exit after stdin EOF")
            .expect("wait")
    }
}

/// Call a tool; `Ok(structured)` on success, `Err(text)` when the tool reported an error.
pub async fn call(client: &Client, tool: &str, args: Value) -> Result<Value, String> {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().expect("object args"));
    let r: CallToolResult = client
        .call_tool(params)
        .await
        .expect("tools/call transport");
    if r.is_error == Some(true) {
        return Err(text_of(&r));
    }
    Ok(r.structured_content.clone().unwrap_or(Value::Null))
}

pub fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Poll `check_task_status` with long-polls until the task is terminal.
pub async fn wait_done(client: &Client, task_id: &str) -> Value {
    for _ in 0..30 {
        let s = call(
            client,
            "check_task_status",
            json!({"task_id": task_id, "wait_seconds": 5}),
        )
        .await
        .expect("check_task_status");
        if ["completed", "failed", "cancelled"].contains(&s["state"].as_str().unwrap_or("")) {
            return s;
        }
    }
    panic!("task {task_id} did not finish");
}

/// Poll until the task is in `state`.
pub async fn wait_state(client: &Client, task_id: &str, state: &str) -> Value {
    for _ in 0..300 {
        let s = call(client, "check_task_status", json!({"task_id": task_id}))
            .await
            .expect("check_task_status");
        if s["state"] == state {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task_id} never reached {state}");
}

pub fn files(status: &Value) -> Vec<(String, u64, u64)> {
    status["files_changed"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["additions"].as_u64().unwrap_or(0),
                f["deletions"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
