//! The one-shot backend: argument vectors, processes, and the output formats over real
//! captured lines.

use std::sync::Mutex;

use super::*;
use crate::backend::BoxFuture;

fn spec(command: &[&str], prompt: PromptMode) -> OneShotSpec {
    OneShotSpec {
        provider_id: "agent".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        prompt,
        model_args: vec!["--model".into(), "{model}".into()],
        env: BTreeMap::new(),
        timeout: Duration::from_secs(30),
        output: OutputFormat::Text,
        resume_args: Vec::new(),
    }
}

fn turn(prompt: &str, model: Option<&str>) -> Turn {
    Turn {
        task_id: "t".into(),
        session_id: "s".into(),
        prompt: prompt.into(),
        cwd: std::env::temp_dir(),
        model: model.map(str::to_string),
        mode: None,
        permission: None,
        asker: None,
        options: Default::default(),
    }
}

#[test]
fn prompt_is_one_argument_and_model_is_templated() {
    let b = OneShotBackend::new(
        OneShotSpec {
            resume_args: vec!["--resume".into(), "{id}".into()],
            ..spec(&["agent", "-p"], PromptMode::Arg)
        },
        None,
    );
    let argv = b.argv(&turn("fix it; rm -rf /", Some("m1")), None);
    assert_eq!(
        argv,
        vec!["agent", "-p", "--model", "m1", "fix it; rm -rf /"]
    );
    let argv = b.argv(&turn("go on", None), Some("c-1"));
    assert_eq!(argv, vec!["agent", "-p", "--resume", "c-1", "go on"]);
}

#[tokio::test]
async fn stdin_prompt_and_failure_quote_stderr() {
    let b = OneShotBackend::new(
        spec(
            &["sh", "-c", "read x; echo \"got $x\"; echo oops >&2; exit 3"],
            PromptMode::Stdin,
        ),
        None,
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let err = b
        .run(turn("hello", None), tx, CancellationToken::new())
        .await
        .expect_err("exit 3 is a failure");
    let msg = err.to_string();
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.contains("oops"), "{msg}");
    let mut texts = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        texts.push(ev);
    }
    assert!(
        texts.contains(&TurnEvent::Text("got hello\n".into())),
        "{texts:?}"
    );
}

#[tokio::test]
async fn cancel_stops_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let b = OneShotBackend::new(spec(&["sh", "-c", &script], PromptMode::Stdin), None);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let pf = pidfile.clone();
    tokio::spawn(async move {
        // The shell creates the file before it writes the pid: wait for a whole line.
        while !std::fs::read_to_string(&pf).is_ok_and(|t| t.ends_with('\n')) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c2.cancel();
    });
    let err = b
        .run(turn("x", None), tx, cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, BackendError::Cancelled));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("int");
    // The grandchild shared the agent's group, so it is dead (or a zombie awaiting init).
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("background child {pid} survived cancellation");
}

/// Feed captured output to a parser: its events, and what it made of the run. The files in
/// `testdata/` are real output of Claude Code 2.1.197 (`claude -p --output-format stream-json
/// --verbose`) and codex-cli 0.171.0 (`codex exec --json`), run against a scripted model
/// server: a Write/command tool call, a resumed conversation, an unknown resume id, an API
/// error.
fn parse(format: OutputFormat, captured: &str) -> (Vec<TurnEvent>, Parsed) {
    let mut p = Parser::new(format);
    let mut events = Vec::new();
    for line in captured.split_inclusive('\n') {
        events.extend(p.line(line.as_bytes(), 0));
    }
    (events, p.finish())
}

#[test]
fn claude_stream_json_reads_like_a_transcript_with_usage_and_cost() {
    let (events, parsed) = parse(
        OutputFormat::ClaudeStreamJson,
        include_str!("testdata/claude-write.jsonl"),
    );
    let id = "a9a7e26e-f599-4de9-bf4d-0f33f62c36b7";
    assert_eq!(
        events,
        vec![
            TurnEvent::Notice(format!(
                "Claude Code 2.1.197: session {id}, model claude-opus-4-8[1m]"
            )),
            TurnEvent::Reasoning("let me think\n".into()),
            TurnEvent::ToolCall {
                id: "toolu_1".into(),
                title: "Write: /tmp/probe/work/b.txt".into(),
                kind: Some("edit".into()),
                input: Some(
                    serde_json::json!({"file_path": "/tmp/probe/work/b.txt", "content": "hi\n"})
                ),
            },
            TurnEvent::ToolUpdate {
                id: "toolu_1".into(),
                status: Some("completed".into()),
                output: Some("File created successfully at: /tmp/probe/work/b.txt (file state is current in your context — no need to Read it back)".into()),
            },
            TurnEvent::Reasoning("let me think\n".into()),
            TurnEvent::Text("done: the file is written\n".into()),
        ]
    );
    assert_eq!(parsed.final_message, "done: the file is written");
    assert_eq!(parsed.conversation.as_deref(), Some(id));
    assert!(parsed.started && !parsed.failed, "{parsed:?}");
    // 20 fresh + 4 written to the cache + 6 read from it; the cache reads are the cached part
    assert_eq!(
        parsed.usage,
        Usage {
            cached_tokens: Some(6),
            cost_usd: Some(0.000378),
            ..Usage::tokens(30, 10)
        }
    );
}

#[test]
fn claude_resumed_keeps_its_session_and_reports_only_this_run() {
    let (_, parsed) = parse(
        OutputFormat::ClaudeStreamJson,
        include_str!("testdata/claude-resumed.jsonl"),
    );
    assert_eq!(
        parsed.conversation.as_deref(),
        Some("a9a7e26e-f599-4de9-bf4d-0f33f62c36b7")
    );
    assert_eq!(parsed.usage.cost_usd, Some(0.000189));
    assert_eq!(parsed.usage.input_tokens, Some(15));
}

#[test]
fn claude_errors_are_the_agents_words() {
    let (events, parsed) = parse(
        OutputFormat::ClaudeStreamJson,
        include_str!("testdata/claude-unknown-resume.jsonl"),
    );
    assert!(events.is_empty(), "{events:?}");
    assert!(!parsed.started && parsed.failed, "{parsed:?}");
    assert_eq!(
        parsed.error.as_deref(),
        Some("No conversation found with session ID: 11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(parsed.conversation, None, "an id it refused is not kept");

    let (events, parsed) = parse(
        OutputFormat::ClaudeStreamJson,
        include_str!("testdata/claude-api-error.jsonl"),
    );
    assert!(
        events.contains(&TurnEvent::Text(
            "API Error: Unable to connect to API (ConnectionRefused)\n".into()
        )),
        "{events:?}"
    );
    assert!(parsed.started && parsed.failed);
    assert_eq!(
        parsed.error.as_deref(),
        Some("API Error: Unable to connect to API (ConnectionRefused)")
    );
}

#[test]
fn claude_result_without_usage_reports_none() {
    let (_, parsed) = parse(
        OutputFormat::ClaudeStreamJson,
        "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s1\"}\n\
         {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\",\"session_id\":\"s1\"}\n",
    );
    assert!(parsed.usage.is_empty(), "{:?}", parsed.usage);
    assert_eq!(parsed.final_message, "ok");
}

#[test]
fn codex_json_reads_like_a_transcript_with_usage() {
    let (events, parsed) = parse(
        OutputFormat::CodexJson,
        include_str!("testdata/codex-command.jsonl"),
    );
    let id = "01a225d7-7bd5-7731-8acb-f9c98927a67f";
    let command = "/bin/bash -lc 'echo hi > c.txt'";
    assert_eq!(
        events,
        vec![
            TurnEvent::Notice(format!("codex thread {id}")),
            TurnEvent::Notice("Model metadata for `fake-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.".into()),
            TurnEvent::ToolCall {
                id: "item_1".into(),
                title: command.into(),
                kind: Some("execute".into()),
                input: Some(serde_json::json!({ "command": command })),
            },
            TurnEvent::ToolUpdate {
                id: "item_1".into(),
                status: Some("completed".into()),
                output: None,
            },
            TurnEvent::Reasoning("thinking about it\n".into()),
            TurnEvent::Text("done: the file is written\n".into()),
        ]
    );
    assert_eq!(parsed.final_message, "done: the file is written");
    assert_eq!(parsed.conversation.as_deref(), Some(id));
    assert_eq!(
        parsed.usage,
        Usage {
            cached_tokens: Some(80),
            reasoning_tokens: Some(14),
            ..Usage::tokens(200, 40)
        }
    );
}

#[test]
fn codex_counts_the_thread_so_a_resumed_turn_gets_the_difference() {
    let (_, first) = parse(
        OutputFormat::CodexJson,
        include_str!("testdata/codex-command.jsonl"),
    );
    let (_, resumed) = parse(
        OutputFormat::CodexJson,
        include_str!("testdata/codex-resumed.jsonl"),
    );
    assert_eq!(resumed.conversation, first.conversation);
    assert_eq!(
        codex::turn_share(&resumed.usage, Some(&first.usage)),
        Usage {
            cached_tokens: Some(40),
            reasoning_tokens: Some(7),
            ..Usage::tokens(100, 20)
        }
    );
    assert_eq!(codex::turn_share(&first.usage, None), first.usage);
}

#[test]
fn codex_items_of_every_kind_and_a_failed_turn() {
    let lines = [
        r#"{"type":"thread.started","thread_id":"t1"}"#,
        r#"{"type":"item.started","item":{"id":"i1","type":"todo_list","items":[{"text":"read","completed":true},{"text":"fix","completed":false}]}}"#,
        r#"{"type":"item.completed","item":{"id":"i2","type":"file_change","changes":[{"path":"a.rs","kind":"update"},{"path":"b.rs","kind":"add"}],"status":"completed"}}"#,
        r#"{"type":"item.started","item":{"id":"i3","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"i3","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"result":{"content":[{"type":"text","text":"found"}]},"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"i4","type":"command_execution","command":"false","aggregated_output":"","exit_code":1,"status":"failed"}}"#,
        r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
        r#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#,
    ];
    let (events, parsed) = parse(OutputFormat::CodexJson, &(lines.join("\n") + "\n"));
    assert!(events.contains(&TurnEvent::Plan(vec!["[x] read".into(), "[ ] fix".into()])));
    assert!(events.iter().any(|e| matches!(e,
        TurnEvent::ToolCall { id, title, .. } if id == "i2" && title == "edit a.rs, b.rs")));
    assert!(events.contains(&TurnEvent::ToolUpdate {
        id: "i2".into(),
        status: Some("completed".into()),
        output: Some("update a.rs\nadd b.rs".into()),
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TurnEvent::ToolCall { id, .. } if id == "i3"))
            .count(),
        1,
        "a started item is announced once"
    );
    assert!(events.contains(&TurnEvent::ToolUpdate {
        id: "i4".into(),
        status: Some("failed".into()),
        output: Some("[exit code 1]".into()),
    }));
    assert!(parsed.failed);
    assert_eq!(parsed.error.as_deref(), Some("stream disconnected"));
    assert!(parsed.usage.is_empty());
    assert_eq!(parsed.final_message, "");
}

/// A [`SessionMemory`] in a map.
#[derive(Default)]
struct Memory(Mutex<BTreeMap<(String, String), String>>);

impl SessionMemory for Memory {
    fn load<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<serde_json::Value>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn append<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Vec<serde_json::Value>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let key = (session_id.to_string(), provider_id.to_string());
        let v = self
            .0
            .lock()
            .map_err(|e| e.to_string())
            .map(|m| m.get(&key).cloned());
        Box::pin(async move { v })
    }
    fn set_acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        let key = (session_id.to_string(), provider_id.to_string());
        let r = self
            .0
            .lock()
            .map_err(|e| e.to_string())
            .map(|mut m| drop(m.insert(key, value.to_string())));
        Box::pin(async move { r })
    }
}

/// A claude-like script: `--resume gone` is refused as Claude Code does; anything else starts
/// (or continues) session `new-1`.
const CLAUDE_LIKE: &str = r#"
if [ "$1" = --resume ] && [ "$2" = gone ]; then
  echo '{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":0,"session_id":"gone","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0},"errors":["No conversation found with session ID: gone"]}'
  echo 'No conversation found with session ID: gone' >&2
  exit 1
fi
echo '{"type":"system","subtype":"init","session_id":"new-1"}'
echo "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"args: $*\"}]}}"
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"new-1","total_cost_usd":0.5,"usage":{"input_tokens":3,"output_tokens":4}}'
"#;

#[tokio::test]
async fn an_unknown_conversation_starts_afresh_and_says_so_once() {
    let memory = Arc::new(Memory::default());
    memory
        .set_acp_session("s", "agent", r#"{"cli_conversation":"gone"}"#)
        .await
        .expect("set");
    let b = OneShotBackend::new(
        OneShotSpec {
            output: OutputFormat::ClaudeStreamJson,
            resume_args: vec!["--resume".into(), "{id}".into()],
            ..spec(&["sh", "-c", CLAUDE_LIKE, "sh"], PromptMode::Arg)
        },
        Some(memory.clone()),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let out = b
        .run(turn("hi", None), tx.clone(), CancellationToken::new())
        .await
        .expect("the fresh run succeeds");
    assert_eq!(out.final_message, "ok");
    assert_eq!(
        out.usage,
        Usage {
            cost_usd: Some(0.5),
            ..Usage::tokens(3, 4)
        },
        "the refused attempt counts nothing"
    );
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    let notices: Vec<&TurnEvent> = events
        .iter()
        .filter(|e| matches!(e, TurnEvent::Notice(n) if n.contains("could not resume")))
        .collect();
    assert_eq!(notices.len(), 1, "{events:?}");
    assert!(
        matches!(notices[0], TurnEvent::Notice(n) if n.contains("gone") && n.contains("No conversation found")),
        "{notices:?}"
    );
    assert!(events.contains(&TurnEvent::Text("args: hi\n".into())));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TurnEvent::Usage(_)))
            .count(),
        1
    );
    // the new conversation is the one the next turn resumes
    let stored = memory.acp_session("s", "agent").await.expect("get");
    assert_eq!(stored.as_deref(), Some(r#"{"cli_conversation":"new-1"}"#));
    b.run(turn("again", None), tx, CancellationToken::new())
        .await
        .expect("resumed");
    let mut resumed = false;
    while let Ok(ev) = rx.try_recv() {
        resumed |= ev == TurnEvent::Text("args: --resume new-1 again\n".into());
    }
    assert!(resumed);
}

#[tokio::test]
async fn an_error_result_fails_the_turn_with_the_agents_words() {
    let script = r#"echo '{"type":"system","subtype":"init","session_id":"x"}'
echo '{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401","session_id":"x"}'
exit 1"#;
    let b = OneShotBackend::new(
        OneShotSpec {
            output: OutputFormat::ClaudeStreamJson,
            ..spec(&["sh", "-c", script], PromptMode::Stdin)
        },
        None,
    );
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let err = b
        .run(turn("hi", None), tx, CancellationToken::new())
        .await
        .expect_err("failed");
    assert_eq!(
        err.to_string(),
        "agent error: API Error: 401 (exit status 1)"
    );
}

#[test]
fn a_refusal_is_explained_by_the_error_line_not_the_backtrace_after_it() {
    let codex = "WARNING: proceeding, even though we could not create PATH aliases\n\
                 Error: thread/resume: thread/resume failed: no rollout found for thread id x (code -32600)\n\
                 \n\
                 Stack backtrace:\n   0: <unknown>\n   1: <unknown>\n";
    assert_eq!(
        stderr_reason(codex).as_deref(),
        Some(
            "Error: thread/resume: thread/resume failed: no rollout found for thread id x (code -32600)"
        )
    );
    assert_eq!(stderr_reason("just this\n").as_deref(), Some("just this"));
    assert_eq!(stderr_reason(" \n"), None);
}
