//! The real one-shot CLIs — `claude -p --output-format stream-json` (Claude Code 2.1.197) and
//! `codex exec --json` (codex-cli 0.171.0) — with the built-in launch specs, against the
//! scripted model server: two turns in one session, each writing a file. Each turn must
//! report usage (and claude its cost), and the second must continue the first's conversation.

use serde_json::{Value, json};

use super::{model_server, npm_bin};
use crate::support::*;

/// Install `claude`, and register it as the built-in spec run against `base`.
fn claude(env: &Env, base: &str) {
    let bin = npm_bin(
        "@anthropic-ai/claude-code@2.1.197",
        "claude",
        "BOOCODER_CLAUDE_BIN",
    );
    let home = env.root().join("home");
    let mut command = vec![bin.display().to_string()];
    command.extend(
        boocoder::providers::CLAUDE_PRINT[1..]
            .iter()
            .map(|s| s.to_string()),
    );
    register(
        env,
        "claude",
        json!({"extends": "claude", "command": command, "env": {
            "HOME": home, "ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": "fake-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "IS_SANDBOX": "1"
        }}),
    );
}

/// Install `codex`, configure it for the model server, and register `codex exec` with the
/// built-in spec (whatever `codex` resolves to on this machine).
fn codex(env: &Env, base: &str) {
    let bin = npm_bin("@openai/codex@0.171.0", "codex", "BOOCODER_CODEX_BIN");
    let home = env.root().join("home");
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).expect("mkdir codex home");
    let config = format!(
        "model = \"fake-model\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{base}/v1\"\nenv_key = \"FAKE_KEY\"\nwire_api = \"responses\"\n"
    );
    std::fs::write(codex_home.join("config.toml"), config).expect("codex config");
    let mut command = vec![bin.display().to_string()];
    command.extend(
        boocoder::providers::CODEX_EXEC[1..]
            .iter()
            .map(|s| s.to_string()),
    );
    register(
        env,
        "codex",
        json!({"extends": "cli", "command": command, "prompt": "arg",
            "model_args": ["--model", "{model}"], "output": "codex-json",
            "resume_args": ["resume", "{id}"],
            "env": {"HOME": home, "CODEX_HOME": codex_home, "FAKE_KEY": "fake-key"}}),
    );
}

fn register(env: &Env, id: &str, entry: Value) {
    let file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("providers")).expect("json");
    providers["providers"][id] = entry;
    std::fs::write(&file, providers.to_string()).expect("write providers");
}

/// The conversation a transcript names: claude's `session ID,`, codex's `codex thread ID`.
fn conversation(transcript: &str) -> Option<String> {
    transcript.lines().find_map(|l| {
        let rest = l
            .split_once(": session ")
            .map(|(_, r)| r)
            .or_else(|| l.split_once("codex thread ").map(|(_, r)| r))?;
        Some(rest.split(',').next().unwrap_or(rest).trim().to_string())
    })
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn claude_print_reports_usage_and_cost_and_resumes_its_session() {
    let env = Env::new();
    let (base, script) = model_server::start(&env).await;
    claude(&env, &base);
    let usage = two_turns(&env, "claude", &script).await;
    for u in usage {
        assert!(u.cost_usd.is_some_and(|c| c > 0.0), "{u:?}");
    }
}

#[tokio::test]
#[ignore = "needs the real agent installed; run with --run-ignored"]
async fn codex_exec_reports_usage_and_resumes_its_thread() {
    let env = Env::new();
    let (base, script) = model_server::start(&env).await;
    codex(&env, &base);
    let usage = two_turns(&env, "codex", &script).await;
    // the second turn counts its own requests, not the thread's so far
    assert_eq!(usage[0].cached_tokens, Some(4 * 2), "{usage:?}");
    assert_eq!(usage[1], usage[0], "{usage:?}");
}

/// Two turns in one session, each writing a file; returns their usage.
async fn two_turns(env: &Env, agent: &str, script: &model_server::Script) -> Vec<Usage> {
    let server = Server::stdio(env, &[]).await;
    let c = &server.client;
    let mut session: Option<String> = None;
    let mut conversations = Vec::new();
    let mut usage = Vec::new();
    for (file, text) in [
        ("hello.txt", "hello from the agent"),
        ("second.txt", "second"),
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
        let transcript = out
            .transcript
            .iter()
            .map(|e| format!("[{}] {}", e.kind.as_str(), e.text))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            s.state,
            TaskState::Completed,
            "{s:#?}\n{transcript}\n{}",
            server.log()
        );
        assert!(out.diff.contains(&format!("+{text}")), "{out:#?}");
        assert!(
            s.usage.input_tokens.is_some_and(|n| n > 0)
                && s.usage.output_tokens.is_some_and(|n| n > 0),
            "{:?}\n{transcript}",
            s.usage
        );
        assert!(!transcript.contains("could not resume"), "{transcript}");
        conversations.push(conversation(&transcript));
        usage.push(s.usage);
    }
    assert!(conversations[0].is_some(), "{conversations:?}");
    assert_eq!(
        conversations[0], conversations[1],
        "the second turn continues the first's conversation"
    );
    eprintln!("model requests {}; usage {usage:?}", script.request_count());
    server.stop().await;
    usage
}
