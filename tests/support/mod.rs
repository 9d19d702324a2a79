//! Test harness: real git repositories in temp dirs, the real `boocoder` binary as a child
//! process, and the rmcp client speaking to it over stdio or Streamable HTTP.

#![allow(dead_code)]

pub mod elicit_client;
pub mod fake_llm;
pub mod sampling_client;
pub mod tasks_client;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{Peer, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use boocoder::domain::{EventKind, TaskEvent, TaskState, Usage};
pub use boocoder::engine::RebaseState;
pub use boocoder::mcp::types::{
    ApplyOutcome, RebaseOutcome, TaskLine, TaskList, TaskOutput, TaskStatus,
};
pub use boocoder::providers::Transport;
pub use boocoder::providers::snapshot::{ProviderInfo, ProvidersSnapshot, Status};

pub const BIN: &str = env!("CARGO_BIN_EXE_boocoder");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture ACP agent (`examples/fake_acp_agent/`), built by `cargo test`/nextest.
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

/// Runs one async test body against SQLite and against PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`: the same test, not a copy.
#[macro_export]
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::support::Env::new()).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::support::Env::postgres().await).await
            }
        }
    };
}

/// Admin connection used to create one fresh database per PostgreSQL test.
pub fn pg_admin_url() -> String {
    std::env::var("BOOCODER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped (from a helper thread) when this value is.
pub struct PgDb {
    pub url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let name = format!("boocoder_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for the postgres tests (set BOOCODER_TEST_PG_URL): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("url");
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (pg_admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            })
        })
        .join();
    }
}

/// A temp area holding a git repository (`repo/`) and a data directory (`data/`), and the
/// store the servers use (SQLite in `data/` unless `pg` is set).
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub data: PathBuf,
    pub pg: Option<PgDb>,
}

impl Env {
    pub async fn postgres() -> Env {
        let mut env = Env::new();
        env.pg = Some(PgDb::create().await);
        env
    }

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
        Env {
            tmp,
            repo,
            data,
            pg: None,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.repo.parent().expect("parent").to_path_buf()
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.repo.join(rel)).ok()
    }

    /// Server arguments shared by every transport.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".into(),
            self.data.display().to_string(),
            "--project".into(),
            self.repo.display().to_string(),
            "--allow-root".into(),
            self.root().display().to_string(),
            "--default-agent".into(),
            "script".into(),
        ];
        if let Some(pg) = &self.pg {
            args.extend(["--database-url".into(), pg.url.clone()]);
        }
        args
    }
}

pub type Client = RunningService<RoleClient, ()>;

/// A running server and a connected client.
pub struct Server<H: ClientHandler = ()> {
    pub child: Child,
    pub client: RunningService<RoleClient, H>,
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
        Server::stdio_with(env, env.args(), extra).await
    }

    /// `boocoder serve` over stdio with the native provider on `llm_url` as the default agent
    /// (no `--default-agent`) and `test-model` as the default model.
    pub async fn native(env: &Env, llm_url: &str, extra: &[&str]) -> Server {
        let mut args = env.args();
        // Drop `--default-agent script`: the native provider is the default with an endpoint.
        if let Some(i) = args.iter().position(|a| a == "--default-agent") {
            args.drain(i..i + 2);
        }
        args.extend([
            "--llm-base-url".into(),
            llm_url.into(),
            "--model".into(),
            "test-model".into(),
        ]);
        Server::stdio_with(env, args, extra).await
    }

    /// `boocoder serve` over stdio with these global args.
    pub async fn stdio_with(env: &Env, args: Vec<String>, extra: &[&str]) -> Server {
        Server::stdio_client(env, args, extra, ()).await
    }
}

impl<H: ClientHandler> Server<H> {
    /// `boocoder serve` over stdio, driven by the client `handler`.
    pub async fn stdio_client(
        env: &Env,
        args: Vec<String>,
        extra: &[&str],
        handler: H,
    ) -> Server<H> {
        Server::stdio_client_env(env, args, extra, handler, &[]).await
    }

    /// Like `stdio_client`, with extra environment variables for the server (e.g. `PATH`).
    pub async fn stdio_client_env(
        env: &Env,
        args: Vec<String>,
        extra: &[&str],
        handler: H,
        vars: &[(&str, String)],
    ) -> Server<H> {
        let log = log_path(env);
        let mut child = Command::new(BIN)
            .args(args)
            .arg("serve")
            .args(extra)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn boocoder");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let client = handler
            .serve((stdout, stdin))
            .await
            .expect("MCP handshake over stdio");
        Server { child, client, log }
    }
}

/// The 2026-07-28 lifecycle (`server/discover`, per-request `_meta`).
pub fn discover() -> rmcp::ClientLifecycleMode {
    rmcp::ClientLifecycleMode::Discover {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
    }
}

/// `boocoder serve` over stdio, driven by `handler` on the 2026-07-28 lifecycle; the child
/// is killed when dropped.
pub async fn discover_stdio<H: ClientHandler>(
    env: &Env,
    handler: H,
) -> (Child, RunningService<RoleClient, H>) {
    use rmcp::ClientServiceExt;
    let mut child = Command::new(BIN)
        .args(env.args())
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn boocoder");
    let io = (
        child.stdout.take().expect("stdout"),
        child.stdin.take().expect("stdin"),
    );
    let client = handler
        .serve_with_lifecycle(io, discover())
        .await
        .expect("discover over stdio");
    (child, client)
}

impl Server {
    /// `boocoder serve --http 127.0.0.1:0`; returns the server and its URL.
    pub async fn http(env: &Env, extra: &[&str]) -> (Child, String, PathBuf) {
        Server::http_with(env, env.args(), extra).await
    }

    /// `boocoder serve --http 127.0.0.1:0` with these global args, started in `env`'s root
    /// (no git repository: without `--project` the server has no default project).
    pub async fn http_with(
        env: &Env,
        args: Vec<String>,
        extra: &[&str],
    ) -> (Child, String, PathBuf) {
        let log = log_path(env);
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(env.root())
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
}

/// The bearer token a `Server::http` started without `--token` generated in `env`'s data
/// directory.
pub fn http_token(env: &Env) -> String {
    let text = std::fs::read_to_string(env.data.join("http-token")).expect("generated token");
    text.trim_end().to_string()
}

/// The client config for `url` with `env`'s generated token.
pub fn http_config(
    env: &Env,
    url: &str,
) -> rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig {
    rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
        url.to_string(),
    )
    .auth_header(http_token(env))
}

/// An MCP client connected to the Streamable HTTP server at `url` with `env`'s generated token.
pub async fn http_client(env: &Env, url: &str) -> Client {
    ().serve(rmcp::transport::StreamableHttpClientTransport::from_config(
        http_config(env, url),
    ))
    .await
    .expect("connect over HTTP with the generated token")
}

impl<H: ClientHandler> Server<H> {
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
pub async fn call(client: &Peer<RoleClient>, tool: &str, args: Value) -> Result<Value, String> {
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

/// Decode a tool result into the type the server serialised it from; panics with the JSON.
pub fn typed<T: DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value.clone()) {
        Ok(t) => t,
        Err(e) => panic!("decode {}: {e}\n{value:#}", std::any::type_name::<T>()),
    }
}

/// Call a tool and decode its structured result.
pub async fn call_as<T: DeserializeOwned>(
    client: &Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<T, String> {
    call(client, tool, args).await.map(typed)
}

/// `new_task` that must be accepted.
pub async fn new_task(client: &Peer<RoleClient>, args: Value) -> TaskStatus {
    call_as(client, "new_task", args).await.expect("new_task")
}

/// `check_task_status` of one task, right now.
pub async fn task_status(client: &Peer<RoleClient>, task_id: &str) -> TaskStatus {
    call_as(client, "check_task_status", json!({"task_id": task_id}))
        .await
        .expect("check_task_status")
}

/// `get_task_output` with extra arguments (paging) merged in.
pub async fn output(client: &Peer<RoleClient>, task_id: &str, extra: Value) -> TaskOutput {
    let mut args = json!({"task_id": task_id});
    if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    call_as(client, "get_task_output", args)
        .await
        .expect("get_task_output")
}

/// `new_task`, then wait until the task is terminal.
pub async fn run_task(client: &Peer<RoleClient>, args: Value) -> TaskStatus {
    let t = new_task(client, args).await;
    wait_done(client, &t.task_id).await
}

/// The texts of a task's transcript (first page), one entry a line.
pub async fn transcript_text(client: &Peer<RoleClient>, task_id: &str) -> String {
    let out = output(client, task_id, json!({})).await;
    out.transcript
        .iter()
        .map(|e| e.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Call `check_task_status` up to `rounds` times until `done` holds: long-polls of
/// `wait_seconds`, or immediate answers 50 ms apart.
async fn poll(
    client: &Peer<RoleClient>,
    task_id: &str,
    rounds: usize,
    wait_seconds: Option<u64>,
    done: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let mut args = json!({"task_id": task_id});
    if let Some(w) = wait_seconds {
        args["wait_seconds"] = json!(w);
    }
    for _ in 0..rounds {
        let s = call(client, "check_task_status", args.clone())
            .await
            .expect("check_task_status");
        if done(&s) {
            return Some(s);
        }
        if wait_seconds.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    None
}

fn terminal(s: &Value) -> bool {
    ["completed", "failed", "cancelled"].contains(&s["state"].as_str().unwrap_or(""))
}

/// Poll `check_task_status` with long-polls until the task is terminal (150 s at most).
pub async fn wait_done(client: &Peer<RoleClient>, task_id: &str) -> TaskStatus {
    match poll(client, task_id, 30, Some(5), terminal).await {
        Some(s) => typed(s),
        None => panic!("task {task_id} did not finish"),
    }
}

/// Like `wait_done`, for slow agents: up to 300 s.
pub async fn wait_done_long(client: &Peer<RoleClient>, task_id: &str) -> TaskStatus {
    match poll(client, task_id, 60, Some(5), terminal).await {
        Some(s) => typed(s),
        None => panic!("task {task_id} did not finish in 300 s"),
    }
}

/// Poll until the task is in `state`.
pub async fn wait_state(client: &Peer<RoleClient>, task_id: &str, state: TaskState) -> TaskStatus {
    match poll(client, task_id, 300, None, |s| s["state"] == state.as_str()).await {
        Some(s) => typed(s),
        None => panic!("task {task_id} never reached {state}"),
    }
}

/// `(path, additions, deletions)` of each changed file, read from the status' short entries
/// (`M src/a.rs +3 -1`, largest first); the status must name them all (at most ten).
pub fn changed(status: &TaskStatus) -> Vec<(String, u32, u32)> {
    let files: Vec<(String, u32, u32)> = status
        .files_changed
        .iter()
        .map(|entry| {
            let parsed = entry.rsplit_once(" -").and_then(|(rest, dels)| {
                let (rest, adds) = rest.rsplit_once(" +")?;
                let (_, path) = rest.split_once(' ')?;
                Some((path.to_string(), adds.parse().ok()?, dels.parse().ok()?))
            });
            parsed.unwrap_or_else(|| panic!("not a file entry: {entry:?}"))
        })
        .collect();
    assert_eq!(
        status.files_total,
        files.len() as u64,
        "the status names every file: {status:#?}"
    );
    let sum =
        |f: fn(&(String, u32, u32)) -> u32| files.iter().map(|x| u64::from(f(x))).sum::<u64>();
    assert_eq!(status.additions_total, sum(|f| f.1), "{status:#?}");
    assert_eq!(status.deletions_total, sum(|f| f.2), "{status:#?}");
    files
}
