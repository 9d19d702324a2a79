//! The ACP backend end to end: the real `boocoder` binary, an MCP client, and the fixture ACP
//! agent (`examples/fake_acp_agent/`) registered as a custom provider. Figures (latencies,
//! live processes) are printed, never asserted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

async fn start(c: &Client, args: Value) -> String {
    new_task(c, args).await.task_id
}

async fn run(c: &Client, args: Value) -> (String, TaskStatus) {
    let id = start(c, args).await;
    let s = wait_done(c, &id).await;
    (id, s)
}

/// The error of a task that new_task refuses or that fails.
async fn refused_or_failed(c: &Client, args: Value) -> String {
    match call_as::<TaskStatus>(c, "new_task", args).await {
        Err(e) => e,
        Ok(t) => {
            let s = wait_done(c, &t.task_id).await;
            assert_eq!(s.state, TaskState::Failed, "{s:#?}");
            s.error.unwrap_or_default()
        }
    }
}

async fn transcript(c: &Client, id: &str) -> Vec<TaskEvent> {
    output(c, id, json!({})).await.transcript
}

fn of_kind(t: &[TaskEvent], kind: EventKind) -> Vec<String> {
    t.iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.text.clone())
        .collect()
}

fn all_text(t: &[TaskEvent]) -> String {
    t.iter()
        .map(|e| format!("[{}] {}", e.kind.as_str(), e.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `pid=N` the fixture reports.
fn pid_in(t: &[TaskEvent]) -> u32 {
    let text = of_kind(t, EventKind::Text).join("");
    let at = text
        .find("pid=")
        .unwrap_or_else(|| panic!("no pid in {text}"));
    text[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("pid")
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

async fn wait_dead(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn ms(rfc: Option<&str>) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc.expect("timestamp"))
        .expect("rfc3339")
        .timestamp_millis()
}

/// (dispatch → first agent update, dispatch → done) in ms.
fn latency(status: &TaskStatus, t: &[TaskEvent]) -> (i64, i64) {
    let start = ms(status.started_at.as_deref());
    let first = t
        .iter()
        .find(|e| {
            matches!(
                e.kind,
                EventKind::Text | EventKind::Reasoning | EventKind::ToolCall | EventKind::Plan
            )
        })
        .map_or(start, |e| e.at);
    (first - start, ms(status.ended_at.as_deref()) - start)
}

crate::both_stores!(turn_streams_mapped_updates_and_queues_the_fixture_edits);
async fn turn_streams_mapped_updates_and_queues_the_fixture_edits(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let prompt = "think planning the edit\nplan read; write\ntool list files\nwrite src/hello.txt hello from acp\nread src/hello.txt\nusage 120 8000\nterm printf %s-%s hello world\nunknown\nsay all done";
    let (id, s) = run(c, json!({"prompt": prompt, "agent": "fake"})).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(changed(&s), vec![("src/hello.txt".to_string(), 1, 0)]);
    assert!(
        s.summary.as_deref().unwrap_or("").ends_with("all done"),
        "{s:#?}"
    );

    let t = transcript(c, &id).await;
    let dump = all_text(&t);
    for kind in [
        EventKind::Prompt,
        EventKind::Text,
        EventKind::Reasoning,
        EventKind::Plan,
        EventKind::ToolCall,
        EventKind::ToolUpdate,
        EventKind::Commands,
        EventKind::Notice,
    ] {
        assert!(
            !of_kind(&t, kind).is_empty(),
            "no {kind:?} entry in\n{dump}"
        );
    }
    assert!(dump.contains("write src/hello.txt: ok"), "{dump}");
    assert!(
        dump.contains("wrote src/hello.txt (15 bytes) via fs/write_text_file"),
        "{dump}"
    );
    assert!(
        dump.contains("read src/hello.txt: hello from acp"),
        "{dump}"
    );
    assert!(
        dump.contains("terminal exit=0 output=hello-world"),
        "{dump}"
    );
    assert!(dump.contains("[usage] context 120/8000"), "{dump}");
    assert_eq!(
        (
            s.usage.context_used,
            s.usage.context_size,
            s.usage.total_tokens()
        ),
        (Some(120), Some(8000), None)
    );
    assert!(
        dump.contains("[plan] [pending] read; [pending] write"),
        "{dump}"
    );
    assert!(dump.contains("/fixture-help"), "{dump}");
    assert!(dump.contains("unknown method error code -32601"), "{dump}");

    let out = output(c, &id, json!({})).await;
    assert!(out.diff.contains("+hello from acp"), "{out:#?}");
    assert_eq!(
        env.read("src/hello.txt"),
        None,
        "nothing reaches the checkout before apply"
    );
    server.stop().await;
}

#[tokio::test]
async fn two_turns_reuse_one_warm_agent_and_mode_model_are_applied() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let (id1, s1) = run(c, json!({"prompt": "pid\nsay first", "agent": "fake"})).await;
    assert_eq!(s1.state, TaskState::Completed, "{s1:#?}");
    let t1 = transcript(c, &id1).await;
    let session = s1.session_id.clone();

    let (id2, s2) = run(
        c,
        json!({"prompt": "pid\nwhoami\nhistory", "session_id": session, "mode": "ask", "model": "fake-large"}),
    )
    .await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    let t2 = transcript(c, &id2).await;
    assert_eq!(
        pid_in(&t1),
        pid_in(&t2),
        "the second turn must reuse the agent process"
    );
    let dump = all_text(&t2);
    assert!(dump.contains("reusing warm agent"), "{dump}");
    assert!(dump.contains("mode=ask model=fake-large"), "{dump}");
    assert!(dump.contains("turns=2 how=new"), "{dump}");

    let (f1, d1) = latency(&s1, &t1);
    let (f2, d2) = latency(&s2, &t2);
    eprintln!(
        "FIGURES fixture first turn: first update {f1} ms, done {d1} ms; second (warm) turn: first update {f2} ms, done {d2} ms"
    );

    // A mode or model the agent does not offer is refused naming the valid ones: by new_task
    // once the provider's probe has reported them, else by the turn (the agent stays).
    let err = refused_or_failed(
        c,
        json!({"prompt": "pid", "session_id": session, "mode": "yolo"}),
    )
    .await;
    assert!(err.contains("`yolo`") && err.contains("code, ask"), "{err}");
    let err = refused_or_failed(
        c,
        json!({"prompt": "pid", "session_id": session, "model": "gpt-9"}),
    )
    .await;
    assert!(err.contains("fake-small, fake-large"), "{err}");
    server.stop().await;
    assert!(
        wait_dead(pid_in(&t1)).await,
        "shutdown must stop warm agents"
    );
}

crate::both_stores!(permission_policies_allow_deny_and_ask_timeout_are_recorded);
async fn permission_policies_allow_deny_and_ask_timeout_are_recorded(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let (id, s) = run(
        c,
        json!({"prompt": "perm-write allowed.txt yes", "agent": "fake"}),
    )
    .await;
    assert_eq!(
        changed(&s),
        vec![("allowed.txt".to_string(), 1, 0)],
        "{s:#?}"
    );
    let dump = all_text(&transcript(c, &id).await);
    assert!(dump.contains("permission: allowed"), "{dump}");
    assert!(
        dump.contains("permission for `write allowed.txt`: allowed (`Allow once`) by policy allow"),
        "{dump}"
    );

    // The provider's deny policy, and a per-task override to deny on an allow provider.
    for args in [
        json!({"prompt": "perm-write denied.txt no", "agent": "fake-deny"}),
        json!({"prompt": "perm-write denied.txt no", "agent": "fake", "permission": "deny"}),
    ] {
        let (id, s) = run(c, args).await;
        assert_eq!(s.state, TaskState::Completed, "{s:#?}");
        assert!(changed(&s).is_empty(), "{s:#?}");
        let dump = all_text(&transcript(c, &id).await);
        assert!(dump.contains("permission: rejected"), "{dump}");
        assert!(
            dump.contains("rejected (`Reject`) by policy deny"),
            "{dump}"
        );
    }

    // ask: the task shows `blocked` while it waits, then the timeout (1 s here) denies.
    let id = start(
        c,
        json!({"prompt": "perm-write asked.txt maybe", "agent": "fake", "permission": "ask"}),
    )
    .await;
    wait_state(c, &id, TaskState::Blocked).await;
    let s = wait_done(c, &id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert!(changed(&s).is_empty());
    let dump = all_text(&transcript(c, &id).await);
    assert!(
        dump.contains("waiting for a decision: permission for `write asked.txt`"),
        "{dump}"
    );
    assert!(
        dump.contains("policy ask, no decision within 1 s"),
        "{dump}"
    );
    assert!(dump.contains("permission: rejected"), "{dump}");

    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "fake", "permission": "maybe"}),
    )
    .await
    .expect_err("bad permission");
    assert!(err.contains("permission"), "{err}");
    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "script", "permission": "allow"}),
    )
    .await
    .expect_err("cli permission");
    assert!(err.contains("not an ACP agent"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn fs_requests_outside_the_worktree_are_refused() {
    let env = Env::new();
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let foreign = outside.join("foreign.txt");
    let prompt = format!(
        "write ../dotdot.txt x\nwrite {{cwd}}/../dotdot2.txt x\nwrite {} x\nwrite {{cwd}}-evil/sibling.txt x\nsymlink link {}\nwrite link/through-link.txt x\nread {{cwd}}/../../repo/README.md\nrm link\nwrite inside.txt fine",
        foreign.display(),
        outside.display()
    );
    let (id, s) = run(c, json!({"prompt": prompt, "agent": "fake"})).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(
        changed(&s),
        vec![("inside.txt".to_string(), 1, 0)],
        "{s:#?}"
    );
    let t = transcript(c, &id).await;
    let dump = all_text(&t);
    let refusals = of_kind(&t, EventKind::Notice)
        .into_iter()
        .filter(|n| n.starts_with("refused fs/"))
        .count();
    assert_eq!(refusals, 6, "{dump}");
    for p in [
        "../dotdot.txt",
        "{cwd}/../dotdot2.txt",
        "{cwd}-evil/sibling.txt",
        "link/through-link.txt",
    ] {
        assert!(
            dump.contains(&format!("write {p}: error: refused")),
            "{p}\n{dump}"
        );
    }
    assert!(!foreign.exists());
    assert!(!outside.join("through-link.txt").exists());
    assert!(!env.root().join("data/worktrees/dotdot.txt").exists());
    server.stop().await;
}

#[tokio::test]
async fn cancel_ends_the_turn_and_a_stubborn_agent_is_killed() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    // A cooperative agent acknowledges session/cancel and stays warm.
    let id = start(c, json!({"prompt": "pid\nsleep 60000", "agent": "fake"})).await;
    wait_state(c, &id, TaskState::Running).await;
    wait_for_text(c, &id, "pid=").await;
    let s: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id}))
        .await
        .expect("cancel");
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    let t = transcript(c, &id).await;
    assert!(
        all_text(&t).contains("acknowledged session/cancel"),
        "{}",
        all_text(&t)
    );
    let pid = pid_in(&t);
    assert!(alive(pid), "a cooperative agent stays warm after cancel");

    // One that ignores the cancel is killed with its process group.
    let session = s.session_id;
    let id = start(
        c,
        json!({"prompt": "pid\nsleep-hard 60000", "session_id": session}),
    )
    .await;
    wait_for_text(c, &id, "pid=").await;
    let s: TaskStatus = call_as(c, "cancel_task", json!({"task_id": id}))
        .await
        .expect("cancel");
    let s = if s.state == TaskState::Cancelled {
        s
    } else {
        wait_done(c, &id).await
    };
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    let t = transcript(c, &id).await;
    assert!(
        all_text(&t).contains("process group was killed"),
        "{}",
        all_text(&t)
    );
    assert!(wait_dead(pid).await, "the stubborn agent {pid} survived");
    server.stop().await;
}

async fn wait_for_text(c: &Client, id: &str, needle: &str) {
    for _ in 0..400 {
        if of_kind(&transcript(c, id).await, EventKind::Text)
            .join("")
            .contains(needle)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {id} never said {needle:?}");
}

#[tokio::test]
async fn crash_fails_with_stderr_and_the_next_turn_loads_the_session_in_a_new_process() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let (id1, s1) = run(c, json!({"prompt": "pid\ncrash", "agent": "fake"})).await;
    assert_eq!(s1.state, TaskState::Failed, "{s1:#?}");
    let err = s1.error.as_deref().unwrap_or("");
    assert!(
        err.contains("exit status 3") && err.contains("fixture: crashing on purpose"),
        "{err}"
    );
    let pid1 = pid_in(&transcript(c, &id1).await);

    let (id2, s2) = run(
        c,
        json!({"prompt": "pid\nhistory", "session_id": s1.session_id}),
    )
    .await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    let t2 = transcript(c, &id2).await;
    assert_ne!(pid_in(&t2), pid1, "a fresh process");
    let dump = all_text(&t2);
    assert!(dump.contains("(loaded)"), "{dump}");
    assert!(dump.contains("turns=2 how=loaded"), "{dump}");
    server.stop().await;
}

#[tokio::test]
async fn idle_agents_are_evicted_after_the_ttl() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--acp-idle-secs", "1"]).await;
    let c = &server.client;
    let (id, s) = run(c, json!({"prompt": "pid", "agent": "fake"})).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    let pid = pid_in(&transcript(c, &id).await);
    assert!(wait_dead(pid).await, "idle agent {pid} was not evicted");
    let alive_after = [pid].iter().filter(|p| alive(**p)).count();
    eprintln!("FIGURES processes alive after eviction: {alive_after}");
    // The next turn in the session starts a fresh agent that loads the session.
    let (id2, s2) = run(c, json!({"prompt": "history", "session_id": s.session_id})).await;
    assert_eq!(s2.state, TaskState::Completed, "{s2:#?}");
    assert!(all_text(&transcript(c, &id2).await).contains("turns=2 how=loaded"));
    server.stop().await;
}

#[tokio::test]
async fn probe_reports_what_the_agent_offers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = vec![fake_acp_agent().display().to_string()];
    let env = [(
        "FAKE_ACP_STATE".to_string(),
        dir.path().display().to_string(),
    )]
    .into();
    let r = boocoder::backend::acp::probe(&cmd, &env, true, dir.path())
        .await
        .expect("probe");
    assert_eq!(r.agent_name.as_deref(), Some("fake-acp-agent"));
    assert_eq!(r.agent_version.as_deref(), Some("1.0.0"));
    assert!(r.load_session);
    assert_eq!(r.modes, vec!["code", "ask"]);
    assert_eq!(r.current_mode.as_deref(), Some("code"));
    assert_eq!(r.models, vec!["fake-small", "fake-large"]);
    assert_eq!(r.commands, vec!["/fixture-help"]);
    eprintln!(
        "FIGURES fixture probe: initialize {} ms, session/new {} ms",
        r.initialize_ms, r.session_new_ms
    );

    let missing =
        boocoder::backend::acp::probe(&["/nonexistent/agent".into()], &env, true, dir.path()).await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn the_lru_cap_evicts_idle_agents_never_a_busy_one() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--acp-max-live", "1"]).await;
    let c = &server.client;
    // A is busy for a while; B runs and finishes meanwhile, taking the pool over its cap.
    let a = start(
        c,
        json!({"prompt": "pid\nsleep 5000\nsay a done", "agent": "fake"}),
    )
    .await;
    wait_for_text(c, &a, "pid=").await;
    let (b, sb) = run(c, json!({"prompt": "pid", "agent": "fake"})).await;
    assert_eq!(sb.state, TaskState::Completed, "{sb:#?}");
    let sa = wait_done(c, &a).await;
    assert_eq!(
        sa.state,
        TaskState::Completed,
        "the busy agent must not be evicted: {sa:#?}"
    );
    let (pa, pb) = (
        pid_in(&transcript(c, &a).await),
        pid_in(&transcript(c, &b).await),
    );
    assert!(
        wait_dead(pb).await,
        "the idle agent over the cap was not evicted"
    );
    assert!(alive(pa), "the agent within the cap must stay warm");
    server.stop().await;
    assert!(wait_dead(pa).await);
}
