//! Real coding agents from npm, driven through boocoder over ACP, talking to a scripted model
//! server inside the test (`model_server.rs`; no internet needed once the agent is installed).
//! Ignored by default; run them with
//! `cargo nextest run --run-ignored only -E 'test(/real_agents/)' -j 1`. `cli.rs`: the one-shot
//! CLIs (`claude -p`, `codex exec`) the same way. Each agent is installed with
//! npm into `target/e2e-agents` on first use, unless its `BOOCODER_*_BIN` variable points at one.

mod cli;
mod model_server;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// How a write through boocoder's client fs handler shows in the transcript.
const CLIENT_FS_WRITE: &str = "via fs/write_text_file";
/// How a permission decision made by boocoder's policy shows in the transcript.
const POLICY_ALLOW: &str = "by policy allow";

/// One real agent: how to install and launch it offline, and what its run must show.
struct Agent {
    /// The provider id registered in the providers file.
    id: &'static str,
    /// The npm package (with version) that provides `bin`.
    package: &'static str,
    bin: &'static str,
    /// Overrides the npm install: the path of an installed `bin`.
    bin_var: &'static str,
    args: &'static [&'static str],
    /// Writes the agent's config under its `HOME` and returns its extra environment, given the
    /// model server's base URL.
    config: fn(home: &Path, base: &str) -> Value,
    /// `Some(true)`: every write must go through boocoder's `fs/write_text_file`;
    /// `Some(false)`: none may (client fs is off for it).
    client_fs: Option<bool>,
    /// Every turn must record a permission decision made by boocoder's policy.
    asks_permission: bool,
}

const AGENTS: [Agent; 4] = [
    Agent {
        id: "opencode",
        package: "opencode-ai@1.18.33",
        bin: "opencode",
        bin_var: "BOOCODER_OPENCODE_BIN",
        args: &["acp"],
        config: opencode_config,
        client_fs: None,
        asks_permission: false,
    },
    Agent {
        id: "qwen",
        package: "@qwen-code/qwen-code@0.24.4",
        bin: "qwen",
        bin_var: "BOOCODER_QWEN_BIN",
        args: &["--acp"],
        config: qwen_config,
        client_fs: Some(true),
        asks_permission: false,
    },
    Agent {
        id: "claude-code",
        package: "@zed-industries/claude-code-acp@0.16.2",
        bin: "claude-code-acp",
        bin_var: "BOOCODER_CLAUDE_CODE_ACP_BIN",
        args: &[],
        config: claude_code_config,
        client_fs: None,
        asks_permission: true,
    },
    Agent {
        id: "gemini",
        package: "@google/gemini-cli@0.61.0",
        bin: "gemini",
        bin_var: "BOOCODER_GEMINI_BIN",
        args: &["--acp"],
        config: gemini_config,
        client_fs: Some(false),
        asks_permission: false,
    },
];

/// opencode writes files itself and asks no permissions with this config.
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn opencode_edits_arrive_as_a_pending_change() {
    run("opencode").await
}

/// qwen-code writes through the client's `fs/write_text_file` and asks permission first, so
/// this exercises boocoder's fs handler and permission policy with a real agent.
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn qwen_writes_through_client_fs_and_the_edit_arrives() {
    run("qwen").await
}

/// claude-code-acp asks permission before every write and writes through the client's fs:
/// the permission policy and the fs handler meet a real agent.
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn claude_code_acp_asks_permission_and_writes_through_client_fs() {
    run("claude-code").await
}

/// gemini-cli runs with client fs off (it mishandles fs error replies) and writes itself.
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn gemini_cli_with_client_fs_off_edits_arrive() {
    run("gemini").await
}

fn opencode_config(_home: &Path, base: &str) -> Value {
    let config = json!({
        "model": "fake/fake-model", "small_model": "fake/fake-model", "autoupdate": false, "share": "disabled",
        "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("{base}/v1"), "apiKey": "fake-key"},
            "models": {"fake-model": {"tool_call": true}}}},
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"}
    });
    json!({
        "OPENCODE_CONFIG_CONTENT": config.to_string(),
        "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"
    })
}

fn qwen_config(home: &Path, base: &str) -> Value {
    let settings = json!({"general": {"enableAutoUpdate": false, "disableAutoUpdate": true},
        "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
        "security": {"auth": {"selectedType": "openai"}}, "model": {"name": "fake-model"}});
    write_settings(&home.join(".qwen/settings.json"), &settings);
    json!({"OPENAI_API_KEY": "fake-key", "OPENAI_BASE_URL": format!("{base}/v1"), "OPENAI_MODEL": "fake-model"})
}

fn claude_code_config(_home: &Path, base: &str) -> Value {
    json!({
        "ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": "fake-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
        // Claude Code refuses to run as root outside a declared sandbox (CI containers are).
        "IS_SANDBOX": "1"
    })
}

fn gemini_config(home: &Path, base: &str) -> Value {
    let settings = json!({"general": {"disableAutoUpdate": true, "disableUpdateNag": true},
        "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}}});
    write_settings(&home.join(".gemini/settings.json"), &settings);
    json!({"GEMINI_API_KEY": "fake-key", "GOOGLE_GEMINI_BASE_URL": base})
}

fn write_settings(path: &Path, settings: &Value) {
    std::fs::create_dir_all(path.parent().expect("settings dir")).expect("mkdir settings");
    std::fs::write(path, settings.to_string()).expect("settings");
}

/// The agent's launcher: `$bin_var` if set, else installed with npm under target/e2e-agents.
fn agent_bin(agent: &Agent) -> PathBuf {
    npm_bin(agent.package, agent.bin, agent.bin_var)
}

/// `bin` of the npm `package`: `$bin_var` if set, else installed under target/e2e-agents.
fn npm_bin(package: &str, bin: &str, bin_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(bin_var) {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-agents");
    let path = dir.join("node_modules/.bin").join(bin);
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("mkdir e2e-agents");
        let st = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(package)
            .status()
            .expect("run npm");
        assert!(st.success(), "npm install {package} failed");
    }
    path
}

/// Register `agent` in the providers file with `command` and `env`.
fn register(env: &Env, agent: &str, command: Value, agent_env: Value) {
    let file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("providers")).expect("json");
    providers["providers"][agent] = json!({"command": command, "env": agent_env});
    std::fs::write(&file, providers.to_string()).expect("write providers");
}

/// A pre-started agent (`--prestart`) serves a new session: its first turn takes the parked
/// process, and the edit must land in the session's worktree although the process was started
/// elsewhere (the agent works in the session's `cwd`, not its own).
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn opencode_pre_started_serves_a_new_session() {
    run_prestarted("opencode").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn qwen_pre_started_serves_a_new_session() {
    run_prestarted("qwen").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn claude_code_pre_started_serves_a_new_session() {
    run_prestarted("claude-code").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn gemini_pre_started_serves_a_new_session() {
    run_prestarted("gemini").await
}

async fn run_prestarted(id: &str) {
    let (env, script) = install(id).await;
    let park = env.data.join("prestart").join(id);
    let transcripts = two_turns(&env, id, &script, &["--prestart", id], Some(&park)).await;
    assert!(
        transcripts[0].contains(&format!("pre-started agent `{id}`")),
        "{}",
        transcripts[0]
    );
}

/// Install and register the agent, run two turns, and check what its table row expects.
async fn run(id: &str) {
    let agent = AGENTS.iter().find(|a| a.id == id).expect("agent in table");
    let (env, script) = install(id).await;
    let transcripts = two_turns(&env, agent.id, &script, &[], None).await;
    for t in &transcripts {
        if let Some(client_fs) = agent.client_fs {
            assert_eq!(
                t.contains(CLIENT_FS_WRITE),
                client_fs,
                "{}: expected writes through client fs: {client_fs}\n{t}",
                agent.id
            );
        }
        if agent.asks_permission {
            assert!(
                t.contains(POLICY_ALLOW),
                "no recorded permission decision:\n{t}"
            );
        }
    }
}

/// Install the agent, start the scripted model server, and register the agent against it.
async fn install(id: &str) -> (Env, model_server::Script) {
    let agent = AGENTS.iter().find(|a| a.id == id).expect("agent in table");
    let bin = agent_bin(agent);
    let env = Env::new();
    let (base, script) = model_server::start(&env).await;
    let home = env.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut agent_env = (agent.config)(&home, &base);
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    agent_env["HOME"] = json!(home);
    agent_env["PATH"] = json!(path);
    agent_env["DO_NOT_TRACK"] = json!("1");
    let mut command = vec![bin.display().to_string()];
    command.extend(agent.args.iter().map(|a| a.to_string()));
    register(&env, agent.id, json!(command), agent_env);
    (env, script)
}

/// First update and end of a turn, in ms after its start, and its permission decisions.
fn figures(s: &TaskStatus, events: &[TaskEvent]) -> (i64, i64, usize) {
    let ms = |t: &Option<String>| {
        let t = t.as_deref().expect("timestamp");
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("rfc3339")
            .timestamp_millis()
    };
    let (start, end) = (ms(&s.started_at), ms(&s.ended_at));
    let first = events
        .iter()
        .find(|e| {
            matches!(
                e.kind,
                EventKind::Text | EventKind::Reasoning | EventKind::ToolCall
            )
        })
        .map_or(start, |e| e.at);
    let permissions = events
        .iter()
        .filter(|e| e.text.starts_with("permission for"))
        .count();
    (first - start, end - start, permissions)
}

/// Two turns in one session, each writing a file; prints (first update, done) per turn.
/// Returns the transcripts.
async fn two_turns(
    env: &Env,
    agent: &str,
    script: &model_server::Script,
    extra: &[&str],
    parked_in: Option<&Path>,
) -> Vec<String> {
    let server = Server::stdio(env, extra).await;
    let c = &server.client;
    if let Some(dir) = parked_in {
        wait_parked(&server, dir).await;
    }
    let mut figs = Vec::new();
    let mut transcripts = Vec::new();
    let mut session: Option<String> = None;
    for (file, text) in [
        ("hello.txt", "hello from the agent"),
        ("second.txt", "second turn"),
    ] {
        let mut args =
            json!({"prompt": format!("Create the file. FILE={file} TEXT={text}"), "agent": agent});
        if let Some(s) = &session {
            args["session_id"] = json!(s);
        }
        let t = new_task(c, args).await;
        session = Some(t.session_id);
        let s = wait_done_long(c, &t.task_id).await;
        let out = output(c, &t.task_id, json!({})).await;
        assert_eq!(
            s.state,
            TaskState::Completed,
            "{s:#?}\n{out:#?}\n{}",
            server.log()
        );
        assert!(out.diff.contains(&format!("+{text}")), "{out:#?}");
        transcripts.push(
            out.transcript
                .iter()
                .map(|e| format!("[{}] {}", e.kind.as_str(), e.text))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        figs.push(figures(&s, &out.transcript));
    }
    eprintln!(
        "FIGURES {agent}{} first turn: first update {} ms, done {} ms; second (warm) turn: first update {} ms, done {} ms; permission decisions {}+{}; model requests {}",
        if parked_in.is_some() {
            " (pre-started)"
        } else {
            ""
        },
        figs[0].0,
        figs[0].1,
        figs[1].0,
        figs[1].1,
        figs[0].2,
        figs[1].2,
        script.request_count()
    );
    server.stop().await;
    transcripts
}

/// Until the server says it parked an initialized agent (started in `dir`).
async fn wait_parked(server: &Server, dir: &Path) {
    for _ in 0..1200 {
        if server.log().contains("agent pre-started") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no agent was parked in {}:\n{}",
        dir.display(),
        server.log()
    );
}
