//! The CLI verbs for people, run as a user would (no terminal: plain output), and the
//! orchestrator example.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

fn boocoder(env: &Env, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(env.args())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run boocoder")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_wait_shows_progress_and_the_result() {
    let env = Env::new();
    let o = boocoder(
        &env,
        &[
            "run",
            "write hello.txt hi there\nsay wrote hello.txt",
            "--wait",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("completed in"), "{out}");
    assert!(out.contains("wrote hello.txt"), "{out}");
    assert!(out.contains("added     hello.txt (+1 -0)"), "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("running] wrote hello.txt"),
        "progress lines on stderr: {err}"
    );
    // Nothing landed yet; `apply` lands it.
    assert_eq!(env.read("hello.txt"), None);
    let ls = boocoder(&env, &["ls", "--json"]);
    let tasks: Vec<TaskLine> = serde_json::from_slice(&ls.stdout).expect("ls --json");
    let id = tasks[0].task_id.clone();
    assert_eq!(tasks[0].state, TaskState::Completed, "{tasks:#?}");
    assert_eq!(tasks[0].files_changed, 1, "{tasks:#?}");
    let dry = boocoder(&env, &["apply", &id, "--dry-run"]);
    assert!(
        stdout(&dry).contains("would apply 1 file(s)"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(env.read("hello.txt"), None);
    let apply = boocoder(&env, &["apply", &id]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert_eq!(env.read("hello.txt").as_deref(), Some("hi there\n"));
}

#[test]
fn run_wait_json_and_exit_codes() {
    let env = Env::new();
    let ok = boocoder(&env, &["run", "say fine", "--wait", "--json"]);
    assert!(ok.status.success());
    let v: TaskStatus = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v.state, TaskState::Completed, "{v:#?}");
    assert_eq!(v.summary.as_deref(), Some("fine"));
    let bad = boocoder(&env, &["run", "warn broken\nexit 4", "--wait"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("exit status 4"), "{}", stdout(&bad));
    let invalid = boocoder(&env, &["run", "x", "--agent", "nope"]);
    assert!(!invalid.status.success());
    assert!(
        stderr(&invalid).contains("unknown provider `nope`"),
        "{}",
        stderr(&invalid)
    );
}

#[test]
fn queue_show_cancel_and_ls_table() {
    let env = Env::new();
    let q = boocoder(&env, &["run", "say later"]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(stdout(&q).starts_with("queued t-"), "{}", stdout(&q));
    assert!(
        stderr(&q).contains("no boocoder server is running"),
        "{}",
        stderr(&q)
    );
    let id = stdout(&q)
        .split_whitespace()
        .nth(1)
        .expect("id")
        .to_string();
    let table = stdout(&boocoder(&env, &["ls"]));
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("ID") && header.contains("STATE") && header.contains("SUMMARY"),
        "{table}"
    );
    assert!(table.contains(&id) && table.contains("pending"), "{table}");
    let show = stdout(&boocoder(&env, &["show", &id]));
    assert!(show.contains("state    pending"), "{show}");
    assert!(
        show.contains("[prompt]") || show.contains("── transcript ──"),
        "{show}"
    );
    let c = boocoder(&env, &["cancel", &id]);
    assert!(stdout(&c).contains("is cancelled"), "{}", stdout(&c));
    let ls = boocoder(&env, &["ls", "--state", "cancelled", "--json"]);
    let v: Value = serde_json::from_slice(&ls.stdout).expect("json");
    assert_eq!(v.as_array().map(|a| a.len()), Some(1));
    let bad = boocoder(&env, &["ls", "--state", "done"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("expected one of"), "{}", stderr(&bad));
}

#[test]
fn apply_conflict_exits_1_and_discard_resets() {
    let env = Env::new();
    let r = boocoder(
        &env,
        &["run", "append README.md agent line", "--wait", "--json"],
    );
    let id = serde_json::from_slice::<TaskStatus>(&r.stdout)
        .expect("json")
        .task_id;
    std::fs::write(env.repo.join("README.md"), "mine\n").expect("edit");
    let a = boocoder(&env, &["apply", &id]);
    assert_eq!(a.status.code(), Some(1));
    assert!(stderr(&a).contains("README.md"), "{}", stderr(&a));
    assert_eq!(env.read("README.md").as_deref(), Some("mine\n"));
    let d = boocoder(&env, &["discard", &id]);
    assert!(stdout(&d).contains("discarded 1 file(s)"), "{}", stdout(&d));
}

#[test]
fn providers_and_doctor() {
    let env = Env::new();
    let p = boocoder(&env, &["providers", "--json"]);
    let v: ProvidersSnapshot = serde_json::from_slice(&p.stdout).expect("json");
    let script = v
        .providers
        .iter()
        .find(|p| p.id == "script")
        .expect("script");
    assert_eq!(script.status, Status::Ready, "{script:#?}");
    assert_eq!(script.transport, Transport::Cli);
    let table = stdout(&boocoder(&env, &["providers"]));
    assert!(
        table.lines().next().unwrap_or("").starts_with("ID"),
        "{table}"
    );
    let d = boocoder(&env, &["doctor"]);
    assert!(d.status.success(), "{}", stdout(&d));
    let out = stdout(&d);
    assert!(
        out.contains("ok   git:") && out.contains("ok   database: sqlite"),
        "{out}"
    );
    assert!(out.contains("ok   default agent: script"), "{out}");
    assert!(
        out.contains("ok   worktree pool: 0 spare worktree(s) for 0 project(s), 0.0 MiB on disk (at most 2 per project used in the last 3600 s)"),
        "{out}"
    );
    std::fs::write(env.data.join("providers.json"), "{").expect("corrupt");
    let d = boocoder(&env, &["doctor"]);
    assert_eq!(d.status.code(), Some(1));
    assert!(stdout(&d).contains("FAIL providers file"), "{}", stdout(&d));
}

#[test]
fn orchestrator_example_delegates_in_parallel_and_applies() {
    let env = Env::new();
    let example = PathBuf::from(BIN)
        .parent()
        .expect("dir")
        .join("examples/orchestrator");
    assert!(
        example.exists(),
        "build the examples first (`cargo build --examples`); missing {}",
        example.display()
    );
    let mut args: Vec<String> = vec![
        "--boocoder".into(),
        BIN.into(),
        "--project".into(),
        env.repo.display().to_string(),
        "--agent".into(),
        "script".into(),
        "write docs/a.md part one\nsay wrote part one".into(),
        "write src/b.rs // part two\nsay wrote part two".into(),
        "--".into(),
    ];
    args.extend(env.args());
    let o = Command::new(&example)
        .args(&args)
        .output()
        .expect("run example");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("completed: wrote part one") && out.contains("completed: wrote part two"),
        "{out}"
    );
    assert_eq!(out.matches("applied t-").count(), 2, "{out}");
    assert_eq!(env.read("docs/a.md").as_deref(), Some("part one\n"));
    assert_eq!(env.read("src/b.rs").as_deref(), Some("// part two\n"));
}

#[tokio::test]
async fn verbs_work_against_a_running_http_server_with_url() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &["--token", "tok"]).await;
    let u = url.clone();
    let remote = move |args: &[&str]| {
        let mut a = vec!["--url", u.as_str(), "--token", "tok"];
        a.extend_from_slice(args);
        Command::new(BIN)
            .args(&a)
            .output()
            .expect("run remote verb")
    };
    let run = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(BIN)
                .args([
                    "--url",
                    &url,
                    "--token",
                    "tok",
                    "run",
                    "write r.txt remote\nsay remote done",
                    "--wait",
                ])
                .output()
                .expect("run")
        }
    })
    .await
    .expect("join");
    assert!(run.status.success(), "{}\n{}", stdout(&run), stderr(&run));
    assert!(
        stdout(&run).contains("completed") && stdout(&run).contains("remote done"),
        "{}",
        stdout(&run)
    );
    let ls = tokio::task::spawn_blocking({
        let remote = remote.clone();
        move || remote(&["ls", "--json"])
    })
    .await
    .expect("join");
    let tasks: Vec<TaskLine> = serde_json::from_slice(&ls.stdout).expect("json");
    let id = tasks[0].task_id.clone();
    let apply = tokio::task::spawn_blocking(move || remote(&["apply", &id]))
        .await
        .expect("join");
    assert!(
        stdout(&apply).contains("applied 1 file(s)"),
        "{}",
        stdout(&apply)
    );
    assert_eq!(env.read("r.txt").as_deref(), Some("remote\n"));
    let denied = Command::new(BIN)
        .args(["--url", &url, "ls"])
        .output()
        .expect("no token");
    assert!(!denied.status.success(), "a missing token is refused");
}

/// The local verbs and the `--url` verbs share one renderer: the same task reads the same.
#[tokio::test]
async fn remote_verbs_print_what_local_verbs_print() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &["--token", "tok"]).await;
    let local_env = env.args();
    let run = move |remote: bool, args: Vec<String>| {
        let url = url.clone();
        let local_env = local_env.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(BIN);
            if remote {
                c.args(["--url", &url, "--token", "tok"]);
            } else {
                c.args(&local_env);
            }
            c.args(&args).env("NO_COLOR", "1").output().expect("run")
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let w = run(
        true,
        args(&["run", "write same.txt same\nsay same done", "--wait"]),
    )
    .await
    .expect("join");
    assert!(w.status.success(), "{}", stderr(&w));
    let out = stdout(&w);
    assert!(
        out.contains(" completed in ")
            && out.contains("changed files (pending; `boocoder apply t-"),
        "remote `run --wait` reads as the local one: {out}"
    );
    assert!(stderr(&w).starts_with("task t-"), "{}", stderr(&w));
    let id = out.split_whitespace().next().expect("id").to_string();
    for verb in [
        args(&["show", &id, "--json"]),
        args(&["apply", &id, "--dry-run"]),
        args(&["ls", "--json"]),
    ] {
        let local = run(false, verb.clone()).await.expect("join");
        let remote = run(true, verb.clone()).await.expect("join");
        assert!(local.status.success(), "{verb:?}: {}", stderr(&local));
        assert_eq!(stdout(&local), stdout(&remote), "{verb:?}");
    }
    let show = |o: &Output| {
        stdout(o)
            .lines()
            .filter(|l| !l.starts_with("created "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let local = run(false, args(&["show", &id])).await.expect("join");
    let remote = run(true, args(&["show", &id])).await.expect("join");
    assert_eq!(show(&local), show(&remote));
    assert!(
        show(&remote).contains("── diff (pending) ──"),
        "{}",
        show(&remote)
    );
    let p = run(true, args(&["providers"])).await.expect("join");
    assert!(p.status.success(), "{}", stderr(&p));
    assert!(stdout(&p).starts_with("ID"), "{}", stdout(&p));
    let d = run(true, args(&["doctor"])).await.expect("join");
    assert!(stdout(&d).contains("ok   tools answer"), "{}", stdout(&d));
}

/// `rebase` against a running server (`--url`) and locally beside it: a stale change editing
/// other lines merges and then applies; one editing the same line exits 1 naming the lines.
#[tokio::test]
async fn rebase_merges_with_url_and_refuses_an_overlap_locally() {
    let env = Env::new();
    let text: String = (1..=12).map(|i| format!("line {i}\n")).collect();
    std::fs::write(env.repo.join("README.md"), text).expect("write");
    git(&env.repo, &["commit", "-qam", "twelve lines"]);
    let (_child, url, _log) = Server::http(&env, &["--token", "tok"]).await;
    let local_env = env.args();
    let cli = move |remote: bool, args: Vec<String>| {
        let url = url.clone();
        let local_env = local_env.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(BIN);
            if remote {
                c.args(["--url", &url, "--token", "tok"]);
            } else {
                c.args(&local_env);
            }
            c.args(&args).env("NO_COLOR", "1").output().expect("run")
        })
    };
    let mut sessions = Vec::new();
    for (line, who) in [(1, "a"), (10, "b"), (1, "c")] {
        let prompt = format!("run sed -i '{line}s/.*/line {line} by {who}/' README.md");
        let args = ["run", prompt.as_str(), "--wait", "--json"].map(String::from);
        let o = cli(true, args.to_vec()).await.expect("join");
        assert!(o.status.success(), "{}", stderr(&o));
        let t: TaskStatus = serde_json::from_slice(&o.stdout).expect("json");
        sessions.push((t.task_id, t.session_id));
    }
    let verb = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let a = cli(true, verb(&["apply", &sessions[0].1]))
        .await
        .expect("join");
    assert!(
        stdout(&a).contains("no longer applies cleanly"),
        "{}",
        stdout(&a)
    );

    let b = cli(true, verb(&["rebase", &sessions[1].1]))
        .await
        .expect("join");
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(
        stdout(&b).contains(&format!(
            "rebased session {} onto the checkout",
            sessions[1].1
        )),
        "{}",
        stdout(&b)
    );
    let c = cli(false, verb(&["rebase", &sessions[2].0]))
        .await
        .expect("join");
    assert_eq!(c.status.code(), Some(1), "{}", stdout(&c));
    let err = stderr(&c);
    for expected in [
        "README.md: changed on both sides",
        "checkout line 1:",
        "line 1 by a",
        "session line 1:",
        "line 1 by c",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let applied = cli(false, verb(&["apply", &sessions[1].1]))
        .await
        .expect("join");
    assert!(applied.status.success(), "{}", stderr(&applied));
    let readme = env.read("README.md").expect("README");
    assert!(
        readme.starts_with("line 1 by a\n") && readme.contains("\nline 10 by b\n"),
        "{readme}"
    );
}
