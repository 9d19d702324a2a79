//! Misbehaving agents (issue 11, items 11–13): a detached child holding the agent's pipes, bytes
//! that are not UTF-8 on stdout, a giant stderr line. CLI agents are small `sh` scripts in the
//! providers file; ACP agents are the fixture agent.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Add CLI providers (id → `sh -c` script, prompt on stdin) to the env's providers file.
fn add_cli_providers(env: &Env, scripts: &[(&str, &str, u64)]) {
    let path = env.data.join("providers.json");
    let mut file: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read providers"))
            .expect("providers json");
    for (id, script, timeout) in scripts {
        file["providers"][*id] = json!({
            "extends": "cli",
            "command": ["sh", "-c", script],
            "prompt": "stdin",
            "timeout_secs": timeout,
        });
    }
    std::fs::write(&path, file.to_string()).expect("write providers");
}

async fn start(c: &Client, agent: &str, prompt: &str) -> String {
    new_task(c, json!({"prompt": prompt, "agent": agent}))
        .await
        .task_id
}

/// The task's state once terminal, or its state after `secs` seconds.
async fn end_state(c: &Client, id: &str, secs: u64) -> TaskStatus {
    let mut last = None;
    for _ in 0..secs {
        let s: TaskStatus = call_as(
            c,
            "check_task_status",
            json!({"task_id": id, "wait_seconds": 1}),
        )
        .await
        .expect("check_task_status");
        let done = matches!(
            s.state,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        );
        last = Some(s);
        if done {
            break;
        }
    }
    last.expect("polled at least once")
}

/// Every transcript entry, following `next_after_seq`; also the byte size of each page.
async fn all_pages(c: &Client, id: &str) -> (Vec<TaskEvent>, Vec<usize>, TaskOutput) {
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut args = json!({"max_events": 1000, "max_diff_bytes": 0});
        if let Some(a) = after {
            args["after_seq"] = json!(a);
        }
        let page = output(c, id, args).await;
        sizes.push(
            page.transcript
                .iter()
                .map(|e| e.text.len() + e.data.as_ref().map_or(0, |d| d.to_string().len()))
                .sum(),
        );
        entries.extend(page.transcript.iter().cloned());
        match page.next_after_seq {
            Some(a) => after = Some(a),
            None => return (entries, sizes, page),
        }
        assert!(sizes.len() < 200, "paging does not end");
    }
}

fn texts(entries: &[TaskEvent], kind: EventKind) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.text.clone())
        .collect()
}

/// Shell code that starts a `sleep` under `how` (`setsid`, `env -i setsid`) holding the
/// agent's stdout and stderr, and returns once it runs in its own session (its pid in `pidfile`).
fn escape(pidfile: &Path, how: &str, secs: u64) -> String {
    let f = pidfile.display();
    format!(
        "{how} sh -c 'echo $$ > {f}; exec sleep {secs}' & while [ ! -s {f} ]; do sleep 0.02; done"
    )
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

async fn read_pid(file: &Path) -> i32 {
    for _ in 0..500 {
        if let Ok(t) = std::fs::read_to_string(file)
            && t.ends_with('\n')
        {
            return t.trim().parse().expect("pid");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", file.display());
}

async fn gone_soon(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Kills the test's stray sleeper whatever the test's outcome.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .status();
    }
}

/// The server's peak resident memory, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn item11_detached_child_does_not_hold_a_cli_task() {
    let env = Env::new();
    let pidfile = env.root().join("detached.pid");
    let script = format!("echo hello; {}; exit 0", escape(&pidfile, "setsid", 300));
    add_cli_providers(&env, &[("detaching", &script, 120)]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "detaching", "go").await;
    let pid = read_pid(&pidfile).await;
    let _reap = Reap(pid);
    let s = end_state(c, &id, 30).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(s.summary.as_deref(), Some("hello"), "{s:#?}");
    assert!(
        gone_soon(pid).await,
        "the detached child {pid} outlived its agent"
    );
}

/// Start a CLI agent that prints `first`, leaves an untraceable child (`env -i setsid`)
/// holding its pipes, then runs `last`; cancel it and assert the cancel wins. Returns the
/// server, the task id and the child's reaper.
async fn cancel_beside_an_escaped_child(
    env: &Env,
    first: &str,
    last: &str,
) -> (Server, String, Reap) {
    let pidfile = env.root().join("escaped.pid");
    // `env -i` drops every tag: nothing can find this child, it only holds the pipes.
    let script = format!(
        "echo {first}; {}; {last}",
        escape(&pidfile, "env -i setsid", 120)
    );
    add_cli_providers(env, &[("escaping", &script, 300)]);
    let server = Server::stdio(env, &[]).await;
    let id = start(&server.client, "escaping", "go").await;
    let reap = Reap(read_pid(&pidfile).await);
    let s: TaskStatus = call_as(&server.client, "cancel_task", json!({"task_id": id}))
        .await
        .expect("cancel_task");
    let s = if s.state == TaskState::Cancelled {
        s
    } else {
        end_state(&server.client, &id, 15).await
    };
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    (server, id, reap)
}

#[tokio::test]
async fn item11_cancel_wins_over_an_escaped_child_holding_the_pipes() {
    let env = Env::new();
    let _ = cancel_beside_an_escaped_child(&env, "working", "sleep 120").await;
}

#[tokio::test]
async fn item11_cancel_after_the_agent_exited_wins() {
    let env = Env::new();
    // The agent has exited (or is about to); its output is still held open by the child.
    let (server, id, _reap) = cancel_beside_an_escaped_child(&env, "done", "exit 0").await;
    // And it stays cancelled once the turn's readers are done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = task_status(&server.client, &id).await;
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
}

#[tokio::test]
async fn item11_timeout_ends_a_task_whose_escaped_child_holds_the_pipes() {
    let env = Env::new();
    let pidfile = env.root().join("escaped.pid");
    let script = format!(
        "echo working; {}; sleep 120",
        escape(&pidfile, "env -i setsid", 120)
    );
    add_cli_providers(&env, &[("stuck", &script, 1)]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "stuck", "go").await;
    let _reap = Reap(read_pid(&pidfile).await);
    let s = end_state(c, &id, 20).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    assert!(
        s.error.as_deref().unwrap_or("").contains("timed out"),
        "{s:#?}"
    );
}

#[tokio::test]
async fn item11_detached_child_of_an_acp_agent_is_killed() {
    let env = Env::new();
    let pidfile = env.root().join("acp-detached.pid");
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let prompt = format!("say hello\ndetach 300 {}\nexit", pidfile.display());
    let id = start(c, "fake", &prompt).await;
    let pid = read_pid(&pidfile).await;
    let _reap = Reap(pid);
    let s = end_state(c, &id, 30).await;
    assert_eq!(
        s.state,
        TaskState::Failed,
        "the agent died mid-turn: {s:#?}"
    );
    assert!(
        gone_soon(pid).await,
        "the ACP agent's detached child {pid} outlived it"
    );
}

#[tokio::test]
async fn item12_non_utf8_stdout_keeps_the_cli_final_message() {
    let env = Env::new();
    let script = r"printf 'start\n\377\376 junk\n'; sleep 0.3; printf 'final answer\n'";
    add_cli_providers(&env, &[("binary", script, 60)]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "binary", "go").await;
    let s = end_state(c, &id, 30).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    let (entries, _, page) = all_pages(c, &id).await;
    let final_message = page.final_message.as_deref().unwrap_or("");
    assert!(final_message.ends_with("final answer"), "{page:#?}");
    assert!(final_message.contains("\u{fffd}\u{fffd} junk"), "{page:#?}");
    assert!(
        texts(&entries, EventKind::Text)
            .concat()
            .contains("\u{fffd}\u{fffd} junk"),
        "{entries:#?}"
    );
}

#[tokio::test]
async fn item12_non_utf8_stdout_keeps_the_acp_connection() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "fake", "say before\nraw caf\nsay after").await;
    let s = end_state(c, &id, 30).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    let (entries, _, page) = all_pages(c, &id).await;
    let final_message = page.final_message.as_deref().unwrap_or("");
    assert!(
        final_message.contains("before")
            && final_message.contains("caf\u{fffd}")
            && final_message.ends_with("after"),
        "{page:#?}"
    );
    assert!(
        texts(&entries, EventKind::Notice)
            .iter()
            .any(|n| n.contains("not UTF-8")),
        "the damage is reported: {entries:#?}"
    );
}

crate::both_stores!(item13_giant_stderr_line_is_capped_and_paged);
async fn item13_giant_stderr_line_is_capped_and_paged(env: Env) {
    // One 200 MB stderr line, then 40 lines of 60 KB, then the answer.
    let script = "head -c 200000000 /dev/zero | tr '\\0' e >&2; echo >&2; \
                  i=0; while [ $i -lt 40 ]; do head -c 60000 /dev/zero | tr '\\0' f >&2; echo >&2; i=$((i+1)); done; \
                  echo answer";
    add_cli_providers(&env, &[("flood", script, 120)]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "flood", "go").await;
    let s = end_state(c, &id, 60).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(s.summary.as_deref(), Some("answer"), "{s:#?}");
    let hwm = vm_hwm_kib(server.child.id().expect("server pid"));
    assert!(
        hwm < 300 << 10,
        "the server peaked at {} MB reading one stderr line",
        hwm >> 10
    );

    let (entries, sizes, _) = all_pages(c, &id).await;
    let stderr = texts(&entries, EventKind::Stderr);
    assert!(!stderr.is_empty(), "{entries:#?}");
    assert!(
        stderr.iter().all(|t| t.len() <= 70_000),
        "entries are capped: {:?}",
        stderr.iter().map(String::len).collect::<Vec<_>>()
    );
    assert!(
        stderr[0].starts_with("eeee") && stderr[0].contains("more bytes of this line dropped"),
        "{}",
        &stderr[0][stderr[0].len().saturating_sub(200)..]
    );
    assert!(sizes.len() > 1, "one page held it all: {sizes:?}");
    assert!(
        sizes.iter().all(|s| *s <= 256 << 10),
        "a page is at most 256 KiB: {sizes:?}"
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "pages are contiguous: {seqs:?}"
    );
}

#[tokio::test]
async fn item13_giant_stderr_line_of_an_acp_agent_is_capped() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "fake", "stderr-flood 200\nsay done").await;
    let s = end_state(c, &id, 60).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(s.summary.as_deref(), Some("done"), "{s:#?}");
    let hwm = vm_hwm_kib(server.child.id().expect("server pid"));
    assert!(
        hwm < 300 << 10,
        "the server peaked at {} MB reading one stderr line",
        hwm >> 10
    );
    let (entries, _, _) = all_pages(c, &id).await;
    let stderr = texts(&entries, EventKind::Stderr);
    assert!(
        stderr.iter().all(|t| t.len() <= 70_000)
            && stderr
                .iter()
                .any(|t| t.contains("more bytes of this line dropped")),
        "{:?}",
        stderr.iter().map(String::len).collect::<Vec<_>>()
    );
}

crate::both_stores!(item13_an_oversized_stored_entry_is_cut_to_a_page);
async fn item13_an_oversized_stored_entry_is_cut_to_a_page(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let id = start(c, "script", "say before").await;
    assert_eq!(end_state(c, &id, 30).await.state, TaskState::Completed);
    // A row as servers before the entry cap stored it: 3 MB of text, 1 MB of detail.
    let text = "é".repeat(3 << 19);
    let data = json!({"output": "d".repeat(1 << 20)}).to_string();
    let insert = "INSERT INTO task_events (task_id, seq, kind, at, text, data) \
                  SELECT $1, MAX(seq) + 1, 'tool_update', 0, $2, $3 FROM task_events WHERE task_id = $1";
    match &env.pg {
        Some(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.expect("pg");
            sqlx::query(insert)
                .bind(&id)
                .bind(&text)
                .bind(&data)
                .execute(&pool)
                .await
                .expect("insert");
        }
        None => {
            let url = format!("sqlite://{}", env.data.join("boocoder.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
            sqlx::query(insert)
                .bind(&id)
                .bind(&text)
                .bind(&data)
                .execute(&pool)
                .await
                .expect("insert");
        }
    }
    let (entries, sizes, _) = all_pages(c, &id).await;
    assert!(
        sizes.iter().all(|s| *s <= 256 << 10),
        "a page is at most 256 KiB: {sizes:?} {:?}",
        entries
            .iter()
            .map(|e| (e.text.len(), e.data.as_ref().map(|d| d.to_string())))
            .collect::<Vec<_>>()
    );
    let big = entries
        .iter()
        .find(|e| e.kind == EventKind::ToolUpdate)
        .expect("the big entry");
    let shown = big.text.as_str();
    assert!(shown.starts_with("éé"), "{}", &shown[..40]);
    assert!(shown.ends_with("larger than a page and not shown]"));
    assert!(
        big.data
            .as_ref()
            .is_some_and(|d| d["not_shown"].is_string()),
        "{:?}",
        big.data
    );
    assert_eq!(
        texts(&entries, EventKind::Text).concat(),
        "before\n",
        "the entries around it are whole"
    );
}
