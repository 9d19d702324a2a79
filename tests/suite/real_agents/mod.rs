//! Real coding agents from npm, driven through boocoder over ACP, talking to a scripted model
//! server inside the test (`model_server.rs`; no internet needed once the agent is installed).
//! Per agent: its edits arrive over two warm turns, each turn's `usage` in `check_task_status`
//! is what the agent really reports (the `Shows` of its table row, measured), `list_providers`
//! shows its models, modes and other settings, and a turn on a chosen model reaches the model
//! server under that model's name. `FIGURE` lines print what was shown.
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
    /// Not a built-in provider: registered as a custom ACP agent.
    custom: bool,
    /// What boocoder shows of the agent's usage and choices (measured).
    shows: Shows,
}

/// What `check_task_status` and `list_providers` show for an agent, as measured against the
/// scripted model server (which reports usage in every answer).
struct Shows {
    /// Exactly the `usage` fields a turn's status reports.
    usage: &'static [&'static str],
    /// The input and output tokens each turn reports: every request answers 10 in (4 cached)
    /// and 5 out (2 reasoning), and a turn makes two (the write, then the final answer).
    tokens: Option<(u64, u64)>,
    /// `models` is not empty and `default_model` is one of them.
    models: bool,
    /// Exactly the `modes` listed.
    modes: &'static [&'static str],
    /// Exactly the ids of the other settings (`options`) listed.
    options: &'static [&'static str],
    /// A listed, non-default model to run a turn on, and what the name the model server then
    /// sees contains.
    switch_to: Option<(&'static str, &'static str)>,
}

const AGENTS: [Agent; 5] = [
    Agent {
        id: "opencode",
        package: "opencode-ai@1.18.33",
        bin: "opencode",
        bin_var: "BOOCODER_OPENCODE_BIN",
        args: &["acp"],
        config: opencode_config,
        client_fs: None,
        asks_permission: false,
        custom: false,
        shows: Shows {
            // the ACP prompt response's `usage`: of the turn's last model call only
            usage: &[
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "reasoning_tokens",
            ],
            tokens: Some((10, 5)),
            models: true,
            modes: &["build", "plan"],
            options: &[],
            switch_to: Some(("fake/fake-other", "fake-other")),
        },
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
        custom: false,
        shows: Shows {
            // `_meta.usage` on message chunks, one per model call
            usage: &[
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "reasoning_tokens",
            ],
            tokens: Some((20, 10)),
            models: true,
            modes: &["plan", "default", "auto-edit", "auto", "yolo"],
            options: &[],
            switch_to: None,
        },
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
        custom: false,
        shows: Shows {
            // claude-code-acp 0.16.2 reports no usage at all
            usage: &[],
            tokens: None,
            models: true,
            modes: &[
                "default",
                "acceptEdits",
                "plan",
                "dontAsk",
                "bypassPermissions",
            ],
            options: &[],
            switch_to: Some(("opus", "opus")),
        },
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
        custom: false,
        shows: Shows {
            // `_meta.quota.token_count`: the main model's calls, not the router's; no cached or
            // thought counts, and the output leaves the thoughts out
            usage: &["input_tokens", "output_tokens"],
            tokens: Some((20, 6)),
            models: true,
            modes: &["default", "autoEdit", "yolo", "plan"],
            options: &[],
            switch_to: Some(("gemini-2.5-pro", "gemini-2.5-pro")),
        },
    },
    Agent {
        id: "codex-acp",
        package: "@zed-industries/codex-acp@0.16.0",
        bin: "codex-acp",
        bin_var: "BOOCODER_CODEX_ACP_BIN",
        args: &[],
        config: codex_acp_config,
        client_fs: None,
        asks_permission: false,
        custom: true,
        shows: Shows {
            // `usage_update`: the context (the last call's 15 tokens of 258400), no counts, no cost
            usage: &["context_used", "context_size"],
            tokens: None,
            models: true,
            modes: &["read-only", "auto", "full-access"],
            options: &["reasoning_effort"],
            switch_to: Some(("gpt-5.4", "gpt-5.4")),
        },
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

/// codex-acp runs its commands itself (the model writes the file with `exec_command`).
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn codex_acp_edits_arrive() {
    run("codex-acp").await
}

/// gemini-cli runs with client fs off (it mishandles fs error replies) and writes itself.
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn gemini_cli_with_client_fs_off_edits_arrive() {
    run("gemini").await
}

/// A turn on a model chosen from the ones the agent lists: opencode's and codex-acp's model is a
/// select option (`session/set_config_option`), gemini-cli's and claude-code-acp's a raw
/// `models` entry (`session/set_model`).
#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn opencode_runs_a_turn_on_a_chosen_model() {
    run_on_other_model("opencode").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn gemini_cli_runs_a_turn_on_a_chosen_model() {
    run_on_other_model("gemini").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn codex_acp_runs_a_turn_on_a_chosen_model() {
    run_on_other_model("codex-acp").await
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn claude_code_acp_runs_a_turn_on_a_chosen_model() {
    run_on_other_model("claude-code").await
}

/// opencode's provider offers a second model to choose.
fn opencode_config(_home: &Path, base: &str) -> Value {
    let config = json!({
        "model": "fake/fake-model", "small_model": "fake/fake-model", "autoupdate": false, "share": "disabled",
        "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("{base}/v1"), "apiKey": "fake-key"},
            "models": {"fake-model": {"tool_call": true}, "fake-other": {"tool_call": true}}}},
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

/// codex-acp against the model server's Responses API, on a model slug codex knows (an unknown
/// one makes it print a warning into the agent's messages), with no approvals or sandbox.
fn codex_acp_config(home: &Path, base: &str) -> Value {
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).expect("mkdir codex home");
    let config = format!(
        "model = \"gpt-5.5\"\nmodel_provider = \"fake\"\napproval_policy = \"never\"\nsandbox_mode = \"danger-full-access\"\ncheck_for_update_on_startup = false\n\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{base}/v1\"\nenv_key = \"FAKE_API_KEY\"\nwire_api = \"responses\"\n\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n"
    );
    std::fs::write(codex_home.join("config.toml"), config).expect("codex config");
    json!({"CODEX_HOME": codex_home, "FAKE_API_KEY": "fake-key"})
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

/// Register `agent` in the providers file with `command` and `env` (overriding the built-in
/// of that id, or as a custom ACP agent).
fn register(env: &Env, agent: &Agent, command: Value, agent_env: Value) {
    let file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("providers")).expect("json");
    let mut entry = json!({"command": command, "env": agent_env});
    if agent.custom {
        entry["extends"] = json!("acp");
    }
    providers["providers"][agent.id] = entry;
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
    let turns = two_turns(&env, id, &script, &["--prestart", id], Some(&park)).await;
    eprintln!(
        "FIGURE {id} pre-started first turn:\n{}",
        turns[0].transcript
    );
    assert!(
        turns[0]
            .transcript
            .contains(&format!("pre-started agent `{id}`")),
        "{}",
        turns[0].transcript
    );
}

/// Install and register the agent, run two turns, and check what its table row expects: the
/// writes and permissions, the usage each turn reports and the choices `list_providers` shows.
async fn run(id: &str) {
    let agent = AGENTS.iter().find(|a| a.id == id).expect("agent in table");
    let (env, script) = install(id).await;
    let turns = two_turns(&env, agent.id, &script, &[], None).await;
    for t in &turns {
        if let Some(client_fs) = agent.client_fs {
            assert_eq!(
                t.transcript.contains(CLIENT_FS_WRITE),
                client_fs,
                "{}: expected writes through client fs: {client_fs}\n{}",
                agent.id,
                t.transcript
            );
        }
        if agent.asks_permission {
            assert!(
                t.transcript.contains(POLICY_ALLOW),
                "no recorded permission decision:\n{}",
                t.transcript
            );
        }
    }
    let info = turns[0].provider.as_ref().expect("provider info");
    eprintln!(
        "FIGURE {id} {}: usage {} then {}; models {:?} (default {:?}); modes {:?} (default {:?}); options {}; model requests named {:?}",
        info.version.as_deref().unwrap_or("?"),
        json!(turns[0].usage),
        json!(turns[1].usage),
        info.models,
        info.default_model,
        info.modes,
        info.default_mode,
        json!(info.options),
        script.models()
    );
    let shows = &agent.shows;
    let mut expected: Vec<&str> = shows.usage.to_vec();
    expected.sort_unstable();
    for t in &turns {
        assert_eq!(
            usage_fields(&t.usage),
            expected,
            "{id}: usage fields {:?}\n{}",
            t.usage,
            t.transcript
        );
        if let Some((input, output)) = shows.tokens {
            assert_eq!(
                (t.usage.input_tokens, t.usage.output_tokens),
                (Some(input), Some(output)),
                "{id}: {:?}",
                t.usage
            );
        }
    }
    assert_eq!(!info.models.is_empty(), shows.models, "{id}: {info:#?}");
    if shows.models {
        let default = info.default_model.as_ref().expect("a default model");
        assert!(info.models.contains(default), "{id}: {info:#?}");
    }
    assert_eq!(info.modes, shows.modes, "{id}: {info:#?}");
    let options: Vec<&str> = info.options.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(options, shows.options, "{id}: {info:#?}");
}

/// The fields a usage report has (those serialised: the reported ones), sorted.
fn usage_fields(u: &Usage) -> Vec<String> {
    let mut fields: Vec<String> = json!(u)
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    fields.sort_unstable();
    fields
}

/// A turn on a listed model other than the default: the transcript says the model was set
/// and the model server is asked for it.
async fn run_on_other_model(id: &str) {
    let agent = AGENTS.iter().find(|a| a.id == id).expect("agent in table");
    let (model, wire) = agent.shows.switch_to.expect("a model to switch to");
    let (env, script) = install(id).await;
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let info = provider(c, id).await;
    assert!(info.models.iter().any(|m| m == model), "{info:#?}");
    assert_ne!(info.default_model.as_deref(), Some(model), "{info:#?}");
    let t = new_task(
        c,
        json!({"prompt": "Create the file. FILE=chosen.txt TEXT=on the chosen model", "agent": id, "model": model}),
    )
    .await;
    let s = wait_done_long(c, &t.task_id).await;
    let out = output(c, &t.task_id, json!({})).await;
    let transcript = transcript_of(&out.transcript);
    assert_eq!(
        s.state,
        TaskState::Completed,
        "{s:#?}\n{transcript}\n{}",
        server.log()
    );
    assert!(
        transcript.contains(&format!("model set to `{model}`")),
        "{transcript}"
    );
    assert!(out.diff.contains("+on the chosen model"), "{out:#?}");
    eprintln!(
        "FIGURE {id} model switch to {model}: model requests named {:?}",
        script.models()
    );
    assert!(
        script.models().iter().any(|m| m.contains(wire)),
        "{id}: the model server saw {:?}, not {wire}",
        script.models()
    );
    server.stop().await;
}

/// The agent as `list_providers` shows it once its probe has finished.
async fn provider(c: &rmcp::service::Peer<rmcp::RoleClient>, id: &str) -> ProviderInfo {
    for _ in 0..10 {
        let snap: ProvidersSnapshot = call_as(c, "list_providers", json!({"wait_seconds": 60}))
            .await
            .expect("list_providers");
        let info = snap
            .providers
            .into_iter()
            .find(|p| p.id == id)
            .expect("provider listed");
        if info.status != Status::Probing {
            assert_eq!(info.status, Status::Ready, "{info:#?}");
            return info;
        }
    }
    panic!("the probe of {id} did not finish");
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
    register(&env, agent, json!(command), agent_env);
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

/// One finished turn: its transcript (one line per event), the usage its status reports, and
/// (first turn only) the agent as `list_providers` showed it.
struct TurnSeen {
    transcript: String,
    usage: Usage,
    provider: Option<ProviderInfo>,
}

fn transcript_of(events: &[TaskEvent]) -> String {
    events
        .iter()
        .map(|e| format!("[{}] {}", e.kind.as_str(), e.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two turns in one session, each writing a file; prints (first update, done) per turn.
async fn two_turns(
    env: &Env,
    agent: &str,
    script: &model_server::Script,
    extra: &[&str],
    parked_in: Option<&Path>,
) -> Vec<TurnSeen> {
    let server = Server::stdio(env, extra).await;
    let c = &server.client;
    if let Some(dir) = parked_in {
        wait_parked(&server, dir).await;
        // A session of the project makes it one the pool keeps spares for; the parked agent
        // then opens its session in one, and the measured session below is a new session
        // as it comes once a project is in use.
        let warm = json!({"prompt": "Create the file. FILE=warm.txt TEXT=warm up", "agent": agent});
        let t = new_task(c, warm).await;
        wait_done_long(c, &t.task_id).await;
        wait_log(&server, "opened its session ahead of need").await;
    }
    let mut figs = Vec::new();
    let mut turns = Vec::new();
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
        figs.push(figures(&s, &out.transcript));
        let provider = if turns.is_empty() {
            Some(provider(c, agent).await)
        } else {
            None
        };
        turns.push(TurnSeen {
            transcript: transcript_of(&out.transcript),
            usage: s.usage,
            provider,
        });
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
    turns
}

/// Until the server says it parked an initialized agent (started in `dir`).
async fn wait_log(server: &Server, line: &str) {
    for _ in 0..1200 {
        if server.log().contains(line) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the server never logged `{line}`:\n{}", server.log());
}

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
