//! Issue 11, the transport items: HTTP always authenticated (7), blank tokens refused (15),
//! messages before `initialize` (9), a stderr nobody reads or that is closed (10), and
//! argument errors that name the argument (14).

use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::*;

/// A `boocoder serve` spoken to line by line, for what an rmcp client would never send.
struct Raw {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Raw {
    async fn start(env: &Env) -> Raw {
        let mut child = Command::new(BIN)
            .args(env.args())
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(env.root().join("raw.log")).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn boocoder");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Raw {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, msg: Value) {
        let line = format!("{msg}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the server");
    }

    /// The next message with this id (notifications in between are skipped).
    async fn reply(&mut self, id: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
                .await
                .expect("reply timed out")
                .expect("read stdout")
                .unwrap_or_else(|| panic!("server exited before answering `{id}`"));
            let v: Value = serde_json::from_str(&line).expect("json line");
            if v["id"] == id {
                return v;
            }
        }
    }

    async fn exit(mut self) -> std::process::ExitStatus {
        drop(self.stdin);
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("server did not exit after stdin EOF")
            .expect("wait")
    }
}

fn initialize(id: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

#[tokio::test]
async fn item9_messages_before_initialize_are_answered_or_ignored_on_stdio() {
    let env = Env::new();
    let mut raw = Raw::start(&env).await;
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    raw.send(json!({"jsonrpc": "2.0", "id": "stray", "result": {}}))
        .await;
    raw.send(
        json!({"jsonrpc": "2.0", "id": "stray-error", "error": {"code": -32000, "message": "no"}}),
    )
    .await;
    raw.send(json!({"jsonrpc": "2.0", "id": "early", "method": "tools/list"}))
        .await;
    let early = raw.reply("early").await;
    assert!(
        early["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("send `initialize` first")),
        "a request before initialize gets an error reply: {early}"
    );
    raw.send(initialize("init")).await;
    let init = raw.reply("init").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "boocoder", "{init}");
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    raw.send(json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}))
        .await;
    let list = raw.reply("list").await;
    let tools = list["result"]["tools"].as_array().expect("tools");
    assert!(tools.iter().any(|t| t["name"] == "new_task"), "{list}");
    let status = raw.exit().await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn item9_messages_before_initialize_over_http_leave_the_server_serving() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &[]).await;
    let http = reqwest::Client::new();
    for stray in [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": "stray", "result": {}}),
        json!({"jsonrpc": "2.0", "id": "early", "method": "tools/list"}),
    ] {
        let resp = http
            .post(&url)
            .bearer_auth(http_token(&env))
            .header("Accept", "application/json, text/event-stream")
            .json(&stray)
            .send()
            .await
            .expect("post");
        assert!(
            resp.status().is_client_error(),
            "{stray}: {}",
            resp.status()
        );
    }
    let client = http_client(&env, &url).await;
    let tools = client.list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "new_task"));
    client.cancel().await.expect("close");
}

/// Drive a few calls that log (a task runs and finishes), then close stdin.
async fn some_logged_work(client: &Client) {
    for i in 0..3 {
        let s = run_task(
            client,
            json!({"prompt": format!("write f{i}.txt x\nsay done {i}")}),
        )
        .await;
        assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    }
}

/// `boocoder serve` on stdio logging at `level`, with stderr a pipe the test controls.
fn serve_with_piped_stderr(env: &Env, level: &str) -> tokio::process::Child {
    Command::new(BIN)
        .args(env.args())
        .arg("serve")
        .env("RUST_LOG", level)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn boocoder")
}

#[tokio::test]
async fn item10_closed_stderr_does_not_kill_the_server() {
    let env = Env::new();
    let mut child = serve_with_piped_stderr(&env, "debug");
    // The read end goes away at once: every write to stderr fails with EPIPE.
    drop(child.stderr.take());
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    let client = ().serve((stdout, stdin)).await.expect("MCP handshake");
    some_logged_work(&client).await;
    drop(client);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("server did not exit after stdin EOF")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn item10_unread_stderr_does_not_freeze_the_server() {
    let env = Env::new();
    let mut child = serve_with_piped_stderr(&env, "trace");
    // Held open, never read until the end: the pipe fills after ~64 KB.
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    let client = ().serve((stdout, stdin)).await.expect("MCP handshake");
    // Each call logs several trace lines; 1500 of them are well over 1 MB.
    for i in 0..1500 {
        tokio::time::timeout(
            Duration::from_secs(20),
            call(&client, "list_tasks", json!({"limit": 1})),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} was not answered: the server is stuck on stderr"))
        .expect("list_tasks");
    }
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            text.push_str(&l);
            text.push('\n');
        }
        text
    });
    drop(client);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("server did not exit after stdin EOF")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    let log = reader.await.expect("stderr");
    assert!(
        log.contains("log line(s) dropped (stderr was not being read)"),
        "the dropped lines are counted: {} bytes of log",
        log.len()
    );
}

/// JSON types a property's schema accepts (following `$ref`s into `$defs`).
fn accepted_types(schema: &Value, root: &Value, out: &mut Vec<String>) {
    let Value::Object(m) = schema else {
        return;
    };
    match m.get("type") {
        Some(Value::String(t)) => out.push(t.clone()),
        Some(Value::Array(ts)) => {
            out.extend(ts.iter().filter_map(|t| t.as_str().map(String::from)))
        }
        _ => {}
    }
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        accepted_types(&root["$defs"][name], root, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for s in m.get(key).and_then(Value::as_array).into_iter().flatten() {
            accepted_types(s, root, out);
        }
    }
}

#[tokio::test]
async fn item14_wrong_typed_arguments_name_the_argument_in_every_tool() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let tools = c.list_all_tools().await.expect("tools");
    let candidates: [(&str, Value); 7] = [
        ("integer", json!(123)),
        ("number", json!(1.5)),
        ("string", json!("x")),
        ("boolean", json!(true)),
        ("array", json!([1])),
        ("object", json!({"k": 1})),
        ("null", Value::Null),
    ];
    let mut cases = 0;
    let mut failures = Vec::new();
    for tool in &tools {
        let root = Value::Object((*tool.input_schema).clone());
        let props = root["properties"].as_object().cloned().unwrap_or_default();
        let required: Vec<&str> = root["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (prop, schema) in &props {
            let mut ok = Vec::new();
            accepted_types(schema, &root, &mut ok);
            assert!(!ok.is_empty(), "{}.{prop}: no type in {schema}", tool.name);
            // The schemas leave `null` out to stay short: for an optional argument it means
            // the same as omitting it.
            if !required.contains(&prop.as_str()) {
                ok.push("null".into());
            }
            for (kind, value) in &candidates {
                let fits = ok.iter().any(|t| t == kind)
                    || (*kind == "integer" && ok.iter().any(|t| t == "number"));
                if fits {
                    continue;
                }
                cases += 1;
                let args = json!({ prop.as_str(): value });
                match call(c, &tool.name, args.clone()).await {
                    Ok(v) => failures.push(format!("{} {args}: accepted: {v}", tool.name)),
                    Err(e) if e.contains(&format!("invalid `{prop}`")) => {}
                    Err(e) => failures.push(format!("{} {args}: {e}", tool.name)),
                }
            }
        }
        for req in root["required"].as_array().into_iter().flatten() {
            let req = req.as_str().expect("name");
            let err = call(c, &tool.name, json!({})).await.expect_err("required");
            assert!(err.contains(&format!("`{req}`")), "{}: {err}", tool.name);
        }
        let err = call(c, &tool.name, json!({"no_such_argument": 1}))
            .await
            .expect_err("unknown");
        assert!(err.contains("`no_such_argument`"), "{}: {err}", tool.name);
    }
    assert!(cases > 150, "only {cases} cases");
    eprintln!("{cases} wrong-typed cases across {} tools", tools.len());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases do not name the argument:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.stop().await;
}

/// Start `boocoder … serve --http …` expecting it to refuse: its stderr, or a panic if it
/// listened instead.
async fn refused(args: &[String], vars: &[(&str, &str)]) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("BOOCODER_TOKEN")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut text = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("neither refused nor listening")
            .expect("read stderr");
        match line {
            Some(l) if l.starts_with("boocoder: listening on") => {
                panic!("{args:?} {vars:?} was accepted:\n{text}{l}")
            }
            Some(l) => {
                text.push_str(&l);
                text.push('\n');
            }
            None => break,
        }
    }
    let status = child.wait().await.expect("wait");
    assert!(!status.success(), "{text}");
    text
}

#[tokio::test]
async fn item15_blank_tokens_are_refused_from_flag_env_and_file() {
    let env = Env::new();
    let serve = |addr: &str, extra: &[&str]| {
        let mut a = env.args();
        a.extend(["serve", "--http", addr].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let blank = "empty or only whitespace";
    let err = refused(&serve("0.0.0.0:0", &["--token", "   "]), &[]).await;
    assert!(err.contains(blank), "public bind, flag: {err}");
    let err = refused(&serve("0.0.0.0:0", &[]), &[("BOOCODER_TOKEN", " \t ")]).await;
    assert!(err.contains(blank), "public bind, env: {err}");
    let err = refused(&serve("127.0.0.1:0", &["--token", ""]), &[]).await;
    assert!(err.contains(blank), "loopback, flag: {err}");
    let err = refused(&serve("0.0.0.0:0", &["--token", "two words"]), &[]).await;
    assert!(err.contains("printable ASCII"), "{err}");

    let file = env.data.join("http-token");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .expect("token file");
        std::io::Write::write_all(&mut f, b"  \n").expect("write");
    }
    let err = refused(&serve("127.0.0.1:0", &[]), &[]).await;
    assert!(
        err.contains(blank) && err.contains("http-token"),
        "file: {err}"
    );

    let out = tokio::process::Command::new(BIN)
        .args(["--url", "http://127.0.0.1:9/mcp", "--token", " ", "ls"])
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(blank), "cli: {err}");
}

#[tokio::test]
async fn item7_loopback_http_requires_the_generated_private_token() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (mut child, url, log) = Server::http(&env, &[]).await;
    let file = env.data.join("http-token");
    let token = http_token(&env);
    assert!(token.len() >= 32, "a long random token: {token}");
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "only the owner may read the token");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains(&format!("bearer token in {}", file.display())),
        "{logged}"
    );
    assert!(!logged.contains(&token), "the secret is never printed");

    let init = initialize("1");
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong".to_string())] {
        let mut req = http
            .post(&url)
            .header("Accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.expect("post");
        assert_eq!(resp.status().as_u16(), 401, "{auth:?} must be refused");
    }
    let client = http_client(&env, &url).await;
    let tools = client.list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "new_task"));
    client.cancel().await.expect("close");
    child.kill().await.expect("kill");
    let _ = child.wait().await;

    let (_child, url, _log) = Server::http(&env, &[]).await;
    assert_eq!(http_token(&env), token, "reused on restart");
    let client = http_client(&env, &url).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn item7_provider_edits_over_http_need_the_flag() {
    let env = Env::new();
    let before = std::fs::read_to_string(env.data.join("providers.json")).expect("providers");
    let (_child, url, _log) = Server::http(&env, &[]).await;
    let client = http_client(&env, &url).await;
    let edit = json!({"id": "evil", "extends": "cli", "command": ["sh", "-c", "touch /tmp/pwned"]});
    let err = call(&client, "configure_provider", edit.clone())
        .await
        .expect_err("refused over HTTP");
    assert!(err.contains("--http-allow-provider-edits"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.data.join("providers.json")).expect("providers"),
        before,
        "the providers file is untouched"
    );
    client.cancel().await.expect("close");

    let (_child, url, _log) = Server::http(&env, &["--http-allow-provider-edits"]).await;
    let client = http_client(&env, &url).await;
    call(
        &client,
        "configure_provider",
        json!({"id": "script", "enabled": false}),
    )
    .await
    .expect("allowed with the flag");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn item7_cli_url_verbs_and_doctor_read_the_token_from_the_data_dir() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &[]).await;
    let data = env.data.display().to_string();
    let run = |args: &[&str]| {
        let mut a = vec!["--data-dir", data.as_str()];
        a.extend_from_slice(args);
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        async move {
            let out = tokio::process::Command::new(BIN)
                .args(&a)
                .env_remove("BOOCODER_TOKEN")
                .output()
                .await
                .expect("run");
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    let (ok, text) = run(&["--url", &url, "ls", "--json"]).await;
    assert!(ok, "{text}");
    let (ok, text) = run(&["--url", &url, "doctor"]).await;
    assert!(ok && text.contains("ok   server: boocoder"), "{text}");
    let (_, text) = run(&["doctor"]).await;
    assert!(text.contains("ok   http token:"), "{text}");

    let out = tokio::process::Command::new(BIN)
        .args([
            "--data-dir",
            &env.root().join("elsewhere").display().to_string(),
        ])
        .args(["--url", &url, "ls"])
        .env_remove("BOOCODER_TOKEN")
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--token"),
        "without the token the error says how to pass one: {err}"
    );
}
