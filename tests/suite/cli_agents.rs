//! One-shot CLI agents in their JSON modes, end to end through the server: scripted stand-ins
//! for `claude -p --output-format stream-json` and `codex exec --json`
//! (`tests/fixtures/{claude,codex}-json-agent.sh`, printing what the real ones print)
//! registered as `extends: "cli"` agents. Usage and cost reach the task, the transcript reads
//! like any agent's, and a session's next turn resumes the agent's conversation — after a
//! server restart too, and afresh (said once) when the agent no longer knows it.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

/// Register both stand-ins in the providers file; returns their state directory (what the
/// real CLIs keep under `~/.claude` and `$CODEX_HOME`).
fn register(env: &Env) -> PathBuf {
    let state = env.root().join("cli-state");
    std::fs::create_dir_all(&state).expect("mkdir cli-state");
    let file = env.data.join("providers.json");
    let mut providers: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("providers")).expect("json");
    providers["providers"]["claude-json"] = json!({
        "extends": "cli", "command": [fixture("claude-json-agent.sh"), "-p", "--verbose"],
        "prompt": "arg", "output": "claude-stream-json", "resume_args": ["--resume", "{id}"],
        "env": {"CLI_STATE": state}
    });
    providers["providers"]["codex-json"] = json!({
        "extends": "cli", "command": [fixture("codex-json-agent.sh"), "exec", "--json"],
        "prompt": "arg", "output": "codex-json", "resume_args": ["resume", "{id}"],
        "env": {"CLI_STATE": state}
    });
    std::fs::write(&file, providers.to_string()).expect("write providers");
    state
}

async fn turn(c: &Client, agent: &str, prompt: &str, session: Option<&str>) -> TaskStatus {
    let mut args = json!({"prompt": prompt, "agent": agent});
    if let Some(s) = session {
        args["session_id"] = json!(s);
    }
    let s = run_task(c, args).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    s
}

/// The conversation id a transcript says was started (`started ID`) or resumed.
fn said(transcript: &str, verb: &str) -> Option<String> {
    transcript.lines().find_map(|l| {
        l.strip_prefix(&format!("{verb} "))
            .map(|id| id.trim().to_string())
    })
}

crate::both_stores!(claude_json_reports_usage_and_resumes_its_conversation_across_restarts);
async fn claude_json_reports_usage_and_resumes_its_conversation_across_restarts(env: Env) {
    let state = register(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let first = turn(c, "claude-json", "look around", None).await;
    // 100 fresh + 10 written to the cache + 50 read from it
    assert_eq!(
        first.usage,
        Usage {
            cached_tokens: Some(50),
            cost_usd: Some(0.0125),
            ..Usage::tokens(160, 20)
        }
    );
    let text = transcript_text(c, &first.task_id).await;
    let id = said(&text, "started").unwrap_or_else(|| panic!("no conversation:\n{text}"));
    for expected in [
        "planning the work",
        "Bash: ls",
        "toolu_1: completed",
        "160 in (50 cached) / 20 out tokens, $0.0125",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(
        !text.contains("\"type\""),
        "no raw JSON in the transcript:\n{text}"
    );
    assert!(
        first
            .summary
            .as_deref()
            .is_some_and(|s| s.contains(&format!("done with {id}"))),
        "{first:#?}"
    );

    let second = turn(c, "claude-json", "go on", Some(&first.session_id)).await;
    let text = transcript_text(c, &second.task_id).await;
    assert_eq!(said(&text, "resumed"), Some(id.clone()), "{text}");
    assert_eq!(
        second.usage.cost_usd,
        Some(0.0125),
        "each run reports its own"
    );
    server.stop().await;

    // a restarted server still knows the conversation
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let third = turn(c, "claude-json", "and on", Some(&first.session_id)).await;
    let text = transcript_text(c, &third.task_id).await;
    assert_eq!(said(&text, "resumed"), Some(id.clone()), "{text}");
    assert_eq!(
        third.session_usage.and_then(|u| u.cost_usd),
        Some(0.0125 * 3.0)
    );

    // the agent lost its conversations: the turn starts a new one and says so once
    std::fs::remove_file(state.join("claude-sessions")).expect("forget");
    let fourth = turn(c, "claude-json", "once more", Some(&first.session_id)).await;
    let text = transcript_text(c, &fourth.task_id).await;
    assert_eq!(
        text.matches("could not resume").count(),
        1,
        "one notice:\n{text}"
    );
    assert!(text.contains(&id), "{text}");
    let fresh = said(&text, "started").unwrap_or_else(|| panic!("no new conversation:\n{text}"));
    assert_ne!(fresh, id);
    assert_eq!(
        fourth.usage.cost_usd,
        Some(0.0125),
        "the refused run counts nothing"
    );
    let fifth = turn(c, "claude-json", "last", Some(&first.session_id)).await;
    let text = transcript_text(c, &fifth.task_id).await;
    assert_eq!(said(&text, "resumed"), Some(fresh), "{text}");

    // another session starts its own conversation
    let other = turn(c, "claude-json", "elsewhere", None).await;
    let text = transcript_text(c, &other.task_id).await;
    assert!(said(&text, "started").is_some(), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn claude_json_without_usage_shows_none_and_an_error_result_fails_the_task() {
    let env = Env::new();
    register(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let silent = turn(c, "claude-json", "no-usage", None).await;
    assert!(silent.usage.is_empty(), "{:#?}", silent.usage);
    let raw = call(c, "check_task_status", json!({"task_id": silent.task_id}))
        .await
        .expect("status");
    assert!(raw.get("usage").is_none(), "no usage, not zeros: {raw}");

    let failed = run_task(c, json!({"prompt": "fail", "agent": "claude-json"})).await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:#?}");
    let error = failed.error.as_deref().unwrap_or("");
    assert!(
        error.contains("API Error: scripted failure") && error.contains("exit status 1"),
        "{error}"
    );
    assert_eq!(
        failed.usage.cost_usd,
        Some(0.001),
        "a failed run's spend counts"
    );
    server.stop().await;
}

#[tokio::test]
async fn codex_json_reports_the_turns_share_of_the_thread_and_resumes_it() {
    let env = Env::new();
    let state = register(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let per_turn = Usage {
        cached_tokens: Some(40),
        reasoning_tokens: Some(5),
        ..Usage::tokens(100, 20)
    };
    let first = turn(c, "codex-json", "look around", None).await;
    assert_eq!(first.usage, per_turn);
    let text = transcript_text(c, &first.task_id).await;
    let id = said(&text, "started").unwrap_or_else(|| panic!("no thread:\n{text}"));
    for expected in ["/bin/bash -lc ls", "item_0: completed", "**Listing files**"] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    server.stop().await;

    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let second = turn(c, "codex-json", "go on", Some(&first.session_id)).await;
    let text = transcript_text(c, &second.task_id).await;
    assert_eq!(said(&text, "resumed"), Some(id), "{text}");
    assert_eq!(
        second.usage, per_turn,
        "the thread's totals less the first turn's"
    );
    assert_eq!(
        second.session_usage.and_then(|u| u.total_tokens()),
        Some(240)
    );

    // codex lost the thread: a new one, said once, counted from zero
    std::fs::remove_dir_all(state.join("codex-threads")).expect("forget");
    let third = turn(c, "codex-json", "again", Some(&first.session_id)).await;
    let text = transcript_text(c, &third.task_id).await;
    let notices: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("could not resume"))
        .collect();
    assert_eq!(notices.len(), 1, "{text}");
    assert!(notices[0].contains("no rollout found"), "{text}");
    assert!(said(&text, "started").is_some(), "{text}");
    assert_eq!(third.usage, per_turn);
    server.stop().await;
}
