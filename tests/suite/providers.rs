//! The providers snapshot and tools end to end: the real binary, an MCP client, and a PATH of
//! fixture agents (the ACP fixture, a CLI script, one that hangs on `--version`, one missing).
//! Figures (start → complete snapshot) are printed, never asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_stores;
use crate::support::*;

/// A directory of fixture agents put first on the server's PATH: `fake-acp` (the ACP fixture),
/// `script-agent` (a CLI agent), `hang-agent` (hangs on `--version`), and `claude` (the CLI
/// script under a built-in's name, so the built-in `claude` is installed).
fn fixture_path(env: &Env) -> (PathBuf, String) {
    let bin = env.root().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let links = [
        ("fake-acp", fake_acp_agent()),
        ("script-agent", fixture("script-agent.sh")),
        ("hang-agent", fixture("hang-agent.sh")),
        ("claude", fixture("script-agent.sh")),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, bin.join(name)).expect("symlink");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (bin, path)
}

/// The fixture providers, named by bare program names found through PATH.
fn write_fixture_providers(env: &Env) {
    let state = env.root().join("acp-state");
    let providers = json!({"providers": {
        "script": {"extends": "cli", "command": ["script-agent"], "prompt": "stdin"},
        "acp-fix": {"extends": "acp", "command": ["fake-acp"], "env": {"FAKE_ACP_STATE": state},
                    "label": "Fixture ACP agent"},
        "cli-fix": {"extends": "cli", "command": ["script-agent"], "prompt": "stdin"},
        "hang": {"extends": "cli", "command": ["hang-agent"]},
        "missing": {"extends": "cli", "command": ["no-such-agent-for-boocoder"]}
    }});
    std::fs::write(
        env.data.join("providers.json"),
        serde_json::to_string_pretty(&providers).expect("json"),
    )
    .expect("write providers");
}

async fn start(env: &Env, path: &str, extra: &[&str]) -> (Server, Instant, Duration) {
    let t0 = Instant::now();
    let mut args = vec!["--probe-timeout-secs", "2"];
    args.extend_from_slice(extra);
    let server =
        Server::stdio_client_env(env, env.args(), &args, (), &[("PATH", path.to_string())]).await;
    (server, t0, t0.elapsed())
}

fn provider<'a>(snap: &'a ProvidersSnapshot, id: &str) -> &'a ProviderInfo {
    snap.providers
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no provider {id} in {snap:#?}"))
}

async fn snapshot(c: &Client, tool: &str, args: Value) -> ProvidersSnapshot {
    call_as(c, tool, args).await.expect(tool)
}

/// The entry `configure_provider` reports as it is now.
async fn configure(c: &Client, args: Value) -> Option<ProviderInfo> {
    let done = call(c, "configure_provider", args)
        .await
        .expect("configure_provider");
    (!done["provider"].is_null()).then(|| typed(done["provider"].clone()))
}

async fn statuses_timeouts_and_the_cache(env: Env) {
    let (_bin, path) = fixture_path(&env);
    write_fixture_providers(&env);
    let (server, t0, ready) = start(&env, &path, &[]).await;
    let c = &server.client;
    let first = snapshot(c, "list_providers", json!({"wait_seconds": 0})).await;
    let at_once: Vec<String> = first
        .providers
        .iter()
        .map(|p| format!("{}={}", p.id, p.status.as_str()))
        .collect();
    let snap = snapshot(c, "list_providers", json!({"wait_seconds": 30})).await;
    let complete = t0.elapsed();
    eprintln!(
        "figure: server start (MCP handshake) {ready:?}; start -> complete provider snapshot {complete:?} (fixtures; the hanging `--version` is cut at 1 s, half the 2 s probe timeout); at once: {}",
        at_once.join(" ")
    );
    let acp = provider(&snap, "acp-fix");
    assert_eq!(acp.status, Status::Ready, "{acp:#?}");
    assert_eq!(acp.transport, Transport::Acp);
    assert_eq!(acp.version.as_deref(), Some("1.0.0"));
    assert_eq!(acp.modes, vec!["code", "ask"]);
    assert_eq!(acp.models, vec!["fake-small", "fake-large"]);
    assert_eq!(acp.default_model.as_deref(), Some("fake-small"));
    assert_eq!(acp.commands, vec!["/fixture-help"]);
    assert_eq!(provider(&snap, "cli-fix").status, Status::Ready);
    assert_eq!(
        provider(&snap, "claude").status,
        Status::Ready,
        "built-in found on PATH"
    );
    let hang = provider(&snap, "hang");
    assert_eq!(hang.status, Status::Error, "{hang:#?}");
    assert!(hang.diagnostic.contains("--version"), "{hang:#?}");
    let missing = provider(&snap, "missing");
    assert_eq!(missing.status, Status::NotInstalled, "{missing:#?}");
    assert_eq!(provider(&snap, "native").status, Status::NotInstalled);
    for p in &snap.providers {
        assert_ne!(p.status, Status::Probing, "{p:#?}");
    }
    eprintln!(
        "figure: probe finished at acp-fix {:?} / cli-fix {:?} / hang {:?}",
        acp.probed_at,
        provider(&snap, "cli-fix").probed_at,
        hang.probed_at
    );

    let text = call_text(c, "provider_diagnostic", json!({"id": "hang"})).await;
    assert!(
        text.contains("did not finish within") && text.contains("killed"),
        "{text}"
    );
    let text = call_text(c, "provider_diagnostic", json!({"id": "acp-fix"})).await;
    assert!(
        text.contains("initialize") && text.contains("session/new"),
        "{text}"
    );

    // The probe's modes and models validate new_task, naming the valid ones.
    let err = call(
        c,
        "new_task",
        json!({"prompt": "say hi", "agent": "acp-fix", "mode": "bogus"}),
    )
    .await
    .expect_err("unknown mode");
    assert!(err.contains("`mode`") && err.contains("code, ask"), "{err}");
    let err = call(
        c,
        "new_task",
        json!({"prompt": "say hi", "agent": "acp-fix", "model": "nope"}),
    )
    .await
    .expect_err("unknown model");
    assert!(err.contains("fake-small, fake-large"), "{err}");
    let err = call(c, "refresh_providers", json!({"ids": ["ghost"]}))
        .await
        .expect_err("unknown id");
    assert!(err.contains("acp-fix"), "{err}");
    server.stop().await;

    // A restart shows the cached snapshot at once: nothing is probing, nothing is re-run.
    let (server, t0, _) = start(&env, &path, &[]).await;
    let snap = snapshot(&server.client, "list_providers", json!({"wait_seconds": 0})).await;
    eprintln!("figure: restart -> cached snapshot {:?}", t0.elapsed());
    assert_eq!(
        provider(&snap, "acp-fix").status,
        Status::Ready,
        "{snap:#?}"
    );
    assert_eq!(provider(&snap, "hang").status, Status::Error, "{snap:#?}");
    // refresh_providers re-probes on demand.
    let before = provider(&snap, "cli-fix").probed_at.clone();
    let fresh = snapshot(
        &server.client,
        "refresh_providers",
        json!({"ids": ["cli-fix"]}),
    )
    .await;
    assert_ne!(provider(&fresh, "cli-fix").probed_at, before);
    server.stop().await;
}
both_stores!(statuses_timeouts_and_the_cache);

/// An ACP agent whose `--version` hangs is still probed through its handshake, which names its
/// version (a node CLI's `--version` can take seconds on a busy machine).
#[tokio::test]
async fn an_acp_agent_with_a_slow_version_flag_is_probed_by_its_handshake() {
    let env = Env::new();
    let (bin, path) = fixture_path(&env);
    std::os::unix::fs::symlink(fixture("slow-version-acp.sh"), bin.join("slow-acp"))
        .expect("symlink");
    let state = env.root().join("acp-state");
    let providers = json!({"providers": {
        "slow": {"extends": "acp", "command": ["slow-acp"], "env": {"FAKE_ACP_STATE": state}}
    }});
    std::fs::write(env.data.join("providers.json"), providers.to_string())
        .expect("write providers");
    // `--version` is cut at half the probe's 4 s; the handshake has the rest
    let server = Server::stdio_client_env(
        &env,
        env.args(),
        &["--probe-timeout-secs", "4"],
        (),
        &[("PATH", path)],
    )
    .await;
    let snap = snapshot(
        &server.client,
        "list_providers",
        json!({"wait_seconds": 30}),
    )
    .await;
    let slow = provider(&snap, "slow");
    assert_eq!(slow.status, Status::Ready, "{slow:#?}");
    assert_eq!(slow.version.as_deref(), Some("1.0.0"), "from initialize");
    assert_eq!(slow.models, vec!["fake-small", "fake-large"]);
    let text = call_text(&server.client, "provider_diagnostic", json!({"id": "slow"})).await;
    assert!(
        text.contains("did not finish within") && text.contains("the ACP handshake decides"),
        "{text}"
    );
    server.stop().await;
}

async fn call_text(c: &Client, tool: &str, args: Value) -> String {
    let params = rmcp::model::CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().expect("object"));
    let r = c.call_tool(params).await.expect("call");
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    text_of(&r)
}

#[tokio::test]
async fn configure_adds_an_acp_agent_that_runs_a_task_and_merges_fields() {
    let env = Env::new();
    let (_bin, path) = fixture_path(&env);
    write_fixture_providers(&env);
    let (server, _, _) = start(&env, &path, &[]).await;
    let c = &server.client;
    let state = env.root().join("acp-state").display().to_string();
    let done = configure(
        c,
        json!({"id": "mine", "extends": "acp", "command": ["fake-acp"],
               "env": {"FAKE_ACP_STATE": state, "EXTRA": "1"}}),
    )
    .await
    .expect("the entry");
    assert_eq!(done.status, Status::Ready, "{done:#?}");
    assert_eq!(done.modes, vec!["code", "ask"]);
    let s = run_task(
        c,
        json!({"prompt": "say hello from mine\nwhoami", "agent": "mine", "mode": "ask"}),
    )
    .await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");

    // Changing one field keeps the others (command, env) and the other entries.
    call(
        c,
        "configure_provider",
        json!({"id": "mine", "label": "Mine", "env": {"EXTRA": ""}}),
    )
    .await
    .expect("relabel");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(env.data.join("providers.json")).expect("read"),
    )
    .expect("json");
    let mine = &file["providers"]["mine"];
    assert_eq!(mine["label"], "Mine");
    assert_eq!(mine["command"], json!(["fake-acp"]));
    assert_eq!(mine["env"], json!({"FAKE_ACP_STATE": state}));
    assert_eq!(file["providers"]["hang"]["command"], json!(["hang-agent"]));

    // Invalid changes are refused naming the field, and nothing is written.
    let before = std::fs::read_to_string(env.data.join("providers.json")).expect("read");
    let err = call(
        c,
        "configure_provider",
        json!({"id": "mine", "timeout_secs": 0}),
    )
    .await
    .expect_err("zero timeout");
    assert!(err.contains("`timeout_secs`"), "{err}");
    let err = call(
        c,
        "configure_provider",
        json!({"id": "newbie", "label": "x"}),
    )
    .await
    .expect_err("custom without extends");
    assert!(err.contains("`extends`"), "{err}");
    let err = call(
        c,
        "configure_provider",
        json!({"id": "mine", "command": []}),
    )
    .await
    .expect_err("empty command");
    assert!(err.contains("`command`"), "{err}");
    assert_eq!(
        before,
        std::fs::read_to_string(env.data.join("providers.json")).expect("read")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_provider_is_refused_naming_the_valid_ones() {
    let env = Env::new();
    let (_bin, path) = fixture_path(&env);
    write_fixture_providers(&env);
    let (server, _, _) = start(&env, &path, &[]).await;
    let c = &server.client;
    let done = configure(c, json!({"id": "cli-fix", "enabled": false}))
        .await
        .expect("the entry");
    assert_eq!(done.status, Status::Disabled, "{done:#?}");
    let err = call(
        c,
        "new_task",
        json!({"prompt": "say hi", "agent": "cli-fix"}),
    )
    .await
    .expect_err("disabled");
    assert!(
        err.contains("disabled") && err.contains("acp-fix") && err.contains("script"),
        "{err}"
    );
    let snap = snapshot(c, "list_providers", json!({})).await;
    assert_eq!(provider(&snap, "cli-fix").status, Status::Disabled);
    call(
        c,
        "configure_provider",
        json!({"id": "cli-fix", "enabled": true}),
    )
    .await
    .expect("enable");
    let s = run_task(c, json!({"prompt": "say back", "agent": "cli-fix"})).await;
    assert_eq!(s.state, TaskState::Completed, "enabled again: {s:#?}");
    // A built-in disabled by the file stays listed; removing the entry restores it.
    call(
        c,
        "configure_provider",
        json!({"id": "claude", "enabled": false}),
    )
    .await
    .expect("disable built-in");
    let done = configure(c, json!({"id": "claude", "remove": true}))
        .await
        .expect("the built-in stays");
    assert!(done.enabled, "{done:#?}");
    server.stop().await;
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_built_ins_keep_working() {
    let env = Env::new();
    let (_bin, path) = fixture_path(&env);
    let corrupt = "{\n  \"providers\": {\n    \"x\": [}\n";
    std::fs::write(env.data.join("providers.json"), corrupt).expect("corrupt");
    let mut args = env.args();
    let i = args
        .iter()
        .position(|a| a == "--default-agent")
        .expect("flag");
    args.drain(i..i + 2);
    let server = Server::stdio_client_env(
        &env,
        args,
        &["--probe-timeout-secs", "2"],
        (),
        &[("PATH", path.clone())],
    )
    .await;
    let c = &server.client;
    let snap = snapshot(c, "list_providers", json!({})).await;
    let diags = snap.diagnostics.join("\n");
    assert!(diags.contains("line 3"), "{diags}");
    assert_eq!(provider(&snap, "claude").status, Status::Ready);
    let text = call_text(c, "provider_diagnostic", json!({})).await;
    assert!(text.contains("line 3"), "{text}");
    // The built-in `claude` (the CLI fixture on PATH) still runs tasks.
    let s = run_task(c, json!({"prompt": "anything", "agent": "claude"})).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    // Editing would lose what the user wrote: refused, file untouched.
    let err = call(
        c,
        "configure_provider",
        json!({"id": "claude", "enabled": false}),
    )
    .await
    .expect_err("corrupt file");
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.data.join("providers.json")).expect("read"),
        corrupt
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_configure_calls_lose_no_update() {
    let env = Env::new();
    let (_bin, path) = fixture_path(&env);
    write_fixture_providers(&env);
    let (server, _, _) = start(&env, &path, &[]).await;
    let peer = server.client.peer().clone();
    let calls = (0..8).map(|i| {
        let peer = peer.clone();
        async move {
            call(
                &peer,
                "configure_provider",
                json!({"id": format!("c{i}"), "extends": "cli", "command": ["script-agent"]}),
            )
            .await
        }
    });
    let env_calls = (0..8).map(|i| {
        let peer = peer.clone();
        async move {
            call(
                &peer,
                "configure_provider",
                json!({"id": "cli-fix", "env": {format!("K{i}"): "v"}}),
            )
            .await
        }
    });
    let (a, b) = tokio::join!(
        futures::future::join_all(calls),
        futures::future::join_all(env_calls)
    );
    for r in a.into_iter().chain(b) {
        r.expect("configure");
    }
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(env.data.join("providers.json")).expect("read"),
    )
    .expect("json");
    for i in 0..8 {
        assert_eq!(
            file["providers"][format!("c{i}")]["extends"],
            "cli",
            "{file:#}"
        );
        assert_eq!(
            file["providers"]["cli-fix"]["env"][format!("K{i}")],
            "v",
            "{file:#}"
        );
    }
    let snap: ProvidersSnapshot = call_as(&server.client, "list_providers", json!({}))
        .await
        .expect("list");
    assert_eq!(provider(&snap, "c7").status, Status::Ready);
    server.stop().await;
}
