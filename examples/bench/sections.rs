//! The measured sections. Each returns figures; references are measured in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::rpc::{BENCH_TOKEN, Http, StdioClient, spawn_http};
use crate::{Figure, Opts, pct};

fn fig(
    section: &'static str,
    name: impl Into<String>,
    unit: &'static str,
    values: Vec<f64>,
    vs: Option<&str>,
) -> Figure {
    Figure {
        section,
        name: name.into(),
        unit,
        values,
        vs: vs.map(str::to_string),
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !o.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// A repo with `files` files of 2 KiB in directories of 100.
fn synthetic_repo(dir: &Path, files: usize) -> Result<PathBuf> {
    let repo = dir.join(format!("repo-{files}"));
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q"])?;
    let line = "0123456789abcdef".repeat(4) + "\n";
    for i in 0..files {
        let d = repo.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&d)?;
        std::fs::write(
            d.join(format!("f{i}.txt")),
            line.repeat(31) + &format!("{i}\n"),
        )?;
    }
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "synthetic"])?;
    Ok(repo)
}

/// A data dir whose providers file has a no-op agent, plus a small project.
fn setup(opts: &Opts, name: &str) -> Result<(PathBuf, PathBuf, Vec<String>)> {
    let base = opts.work.path().join(name);
    let data = base.join("data");
    std::fs::create_dir_all(&data)?;
    let repo = synthetic_repo(&base, 10)?;
    let fixture = opts.echo.with_file_name("fake_acp_agent");
    std::fs::write(
        data.join("providers.json"),
        json!({"providers": {
            "noop": {"extends": "cli", "command": ["true"], "prompt": "arg"},
            "fixture": {"extends": "acp", "command": [fixture]},
        }})
        .to_string(),
    )?;
    let args = vec![
        "--data-dir".into(),
        data.display().to_string(),
        "--project".into(),
        repo.display().to_string(),
        "--allow-root".into(),
        base.display().to_string(),
        "--default-agent".into(),
        "noop".into(),
    ];
    Ok((data, repo, args))
}

/// Sequential latencies (µs) of `calls` calls, then throughput with 1 and 8 in flight.
async fn latency<F, Fut>(calls: usize, call: F) -> Result<(Vec<f64>, f64, f64)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value>> + Send,
{
    let call = Arc::new(call);
    for _ in 0..calls / 10 {
        call().await?;
    }
    let mut lat = Vec::with_capacity(calls);
    let t0 = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        call().await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let one = calls as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let c = call.clone();
        let n = calls / 8;
        set.spawn(async move {
            for _ in 0..n {
                c().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let eight = (calls / 8 * 8) as f64 / t0.elapsed().as_secs_f64();
    Ok((lat, one, eight))
}

struct Lat {
    p50: Vec<f64>,
    p90: Vec<f64>,
    p99: Vec<f64>,
    one: Vec<f64>,
    eight: Vec<f64>,
}

impl Lat {
    fn new() -> Lat {
        Lat {
            p50: vec![],
            p90: vec![],
            p99: vec![],
            one: vec![],
            eight: vec![],
        }
    }
    fn push(&mut self, (mut lat, one, eight): (Vec<f64>, f64, f64)) {
        self.p50.push(pct(&mut lat, 50.0));
        self.p90.push(pct(&mut lat, 90.0));
        self.p99.push(pct(&mut lat, 99.0));
        self.one.push(one);
        self.eight.push(eight);
    }
    fn figures(self, label: &str, reference: Option<&str>, out: &mut Vec<Figure>) {
        let vs = |s: &str| reference.map(|r| format!("{r} {s}"));
        out.push(fig(
            "mcp",
            format!("{label} p50"),
            "µs",
            self.p50,
            vs("p50").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} p90"),
            "µs",
            self.p90,
            vs("p90").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} p99"),
            "µs",
            self.p99,
            vs("p99").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} 1 in flight"),
            "/s",
            self.one,
            vs("1 in flight").as_deref(),
        ));
        out.push(fig(
            "mcp",
            format!("{label} 8 in flight"),
            "/s",
            self.eight,
            vs("8 in flight").as_deref(),
        ));
    }
}

/// (label, program, arguments, tool to call, reference label)
type Target<'a> = (&'a str, PathBuf, Vec<String>, &'a str, Option<&'a str>);

pub async fn mcp(opts: &Opts) -> Result<Vec<Figure>> {
    let (_data, _repo, args) = setup(opts, "mcp")?;
    let mut out = Vec::new();
    let serve = |extra: &[&str]| {
        let mut a = args.clone();
        a.push("serve".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // stdio: boocoder (pipes, blocking stdio) and the bare rmcp echo server.
    let stdio_targets: Vec<Target> = vec![
        (
            "echo stdio (rmcp default)",
            opts.echo.clone(),
            vec![],
            "echo",
            None,
        ),
        (
            "echo stdio (pipes)",
            opts.echo.clone(),
            vec!["--pipes".into()],
            "echo",
            None,
        ),
        (
            "boocoder stdio list_tasks",
            opts.boocoder.clone(),
            serve(&[]),
            "list_tasks",
            Some("echo stdio (pipes)"),
        ),
        (
            "boocoder stdio list_tasks, blocking stdio",
            opts.boocoder.clone(),
            serve(&["--plain-stdio"]),
            "list_tasks",
            Some("boocoder stdio list_tasks"),
        ),
        (
            "boocoder stdio check_task_status",
            opts.boocoder.clone(),
            serve(&[]),
            "check_task_status",
            Some("echo stdio (pipes)"),
        ),
    ];
    let mut rss = Vec::new();
    for (label, bin, a, tool, reference) in stdio_targets {
        let mut lat = Lat::new();
        for _ in 0..opts.reps {
            let (c, _) = StdioClient::spawn(&bin, &a).await?;
            let c = Arc::new(c);
            let call_args = match tool {
                "echo" => json!({"text": "hi"}),
                "check_task_status" => {
                    let t = c.call("new_task", json!({"prompt": "noop"})).await?;
                    let id = t["structuredContent"]["task_id"]
                        .as_str()
                        .context("task id")?
                        .to_string();
                    json!({"task_id": id})
                }
                _ => json!({}),
            };
            let tool = tool.to_string();
            let c2 = c.clone();
            lat.push(
                latency(opts.calls, move || {
                    let (c, tool, a) = (c2.clone(), tool.clone(), call_args.clone());
                    async move { c.call(&tool, a).await }
                })
                .await?,
            );
            if label == "boocoder stdio list_tasks" {
                rss.push(c.rss_kib().unwrap_or(0) as f64 / 1024.0);
            }
            if label == "echo stdio (pipes)" {
                rss.push(-(c.rss_kib().unwrap_or(0) as f64) / 1024.0);
            }
        }
        lat.figures(label, reference, &mut out);
    }
    let (b, e): (Vec<f64>, Vec<f64>) = rss.into_iter().partition(|v| *v >= 0.0);
    out.push(fig(
        "mcp",
        "echo RSS after calls",
        "MiB",
        e.into_iter().map(|v| -v).collect(),
        None,
    ));
    out.push(fig(
        "mcp",
        format!(
            "boocoder RSS after {} calls",
            opts.calls + opts.calls / 10 * 2
        ),
        "MiB",
        b,
        Some("echo RSS after calls"),
    ));

    // Streamable HTTP.
    let http_targets: Vec<Target> = vec![
        (
            "echo http",
            opts.echo.clone(),
            vec!["--http".into(), "127.0.0.1:0".into()],
            "echo",
            None,
        ),
        (
            "boocoder http list_tasks",
            opts.boocoder.clone(),
            serve(&["--http", "127.0.0.1:0", "--token", BENCH_TOKEN]),
            "list_tasks",
            Some("echo http"),
        ),
        (
            "boocoder http list_tasks, Nagle on",
            opts.boocoder.clone(),
            serve(&[
                "--http",
                "127.0.0.1:0",
                "--token",
                BENCH_TOKEN,
                "--no-nodelay",
            ]),
            "list_tasks",
            Some("boocoder http list_tasks"),
        ),
    ];
    for (label, bin, a, tool, reference) in http_targets {
        let mut lat = Lat::new();
        let calls = if label.contains("Nagle") {
            opts.calls / 10
        } else {
            opts.calls
        };
        for _ in 0..opts.reps {
            let (_child, url) = spawn_http(&bin, &a).await?;
            let h = Arc::new(Http::connect(&url).await?);
            let args = if tool == "echo" {
                json!({"text": "hi"})
            } else {
                json!({})
            };
            let tool = tool.to_string();
            lat.push(
                latency(calls, move || {
                    let (h, tool, a) = (h.clone(), tool.clone(), args.clone());
                    async move { h.call(&tool, a).await }
                })
                .await?,
            );
        }
        lat.figures(label, reference, &mut out);
    }
    Ok(out)
}

pub async fn cold_start(opts: &Opts) -> Result<Vec<Figure>> {
    let mut empty = Vec::new();
    let mut echo = Vec::new();
    let mut big = Vec::new();
    let tasks = if opts.quick { 1000 } else { 10_000 };
    let (big_data, repo, big_args) = setup(opts, "cold-big")?;
    {
        let store = boocoder::store::Store::open_sqlite(&big_data.join("boocoder.db")).await?;
        for i in 0..tasks {
            let sid = format!("s-{i:012}");
            store
                .insert_task(&boocoder::store::NewTaskRow {
                    id: format!("t-{i:012}"),
                    project_path: repo.display().to_string(),
                    session_id: sid,
                    new_session_provider: Some("noop".into()),
                    parent_task_id: None,
                    prompt: format!("task {i}"),
                    provider: "noop".into(),
                    model: None,
                    mode: None,
                    permission: None,
                })
                .await?;
        }
        // Leave them terminal so the server has nothing to dispatch.
        for i in 0..tasks {
            store.cancel_pending(&format!("t-{i:012}"), "bench").await?;
        }
        store.close().await;
    }
    for rep in 0..opts.reps.max(3) {
        let (_d, _r, mut a) = setup(opts, &format!("cold-{rep}"))?;
        a.push("serve".into());
        empty.push(
            StdioClient::spawn(&opts.boocoder, &a)
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
        let mut b = big_args.clone();
        b.push("serve".into());
        big.push(
            StdioClient::spawn(&opts.boocoder, &b)
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
        echo.push(
            StdioClient::spawn(&opts.echo, &["--pipes".into()])
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
    }
    Ok(vec![
        fig("cold", "echo spawn→initialize", "ms", echo, None),
        fig(
            "cold",
            "boocoder spawn→initialize, empty store",
            "ms",
            empty,
            Some("echo spawn→initialize"),
        ),
        fig(
            "cold",
            format!("boocoder spawn→initialize, {tasks}-task store"),
            "ms",
            big,
            Some("boocoder spawn→initialize, empty store"),
        ),
    ])
}

pub async fn dispatch(opts: &Opts) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut truth = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        Command::new("true").status()?;
        truth.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.push(fig(
        "dispatch",
        "spawn+exit of /bin/true",
        "ms",
        truth,
        None,
    ));
    let (_data, _repo, mut args) = setup(opts, "dispatch")?;
    args.push("serve".into());
    let (c, _) = StdioClient::spawn(&opts.boocoder, &args).await?;
    let mut first = Vec::new();
    let mut warm = Vec::new();
    let mut claim = Vec::new();
    for _ in 0..opts.reps.max(3) * 2 {
        let t = Instant::now();
        let r = c
            .call("new_task", json!({"prompt": "noop", "wait_seconds": 30}))
            .await?;
        first.push(t.elapsed().as_secs_f64() * 1e3);
        let s = &r["structuredContent"];
        let sid = s["session_id"].as_str().context("session")?.to_string();
        let t = Instant::now();
        c.call(
            "new_task",
            json!({"prompt": "noop", "session_id": sid, "wait_seconds": 30}),
        )
        .await?;
        warm.push(t.elapsed().as_secs_f64() * 1e3);
        let st = c
            .call("get_task_output", json!({"task_id": s["task_id"]}))
            .await?;
        let st = &st["structuredContent"]["status"];
        if let (Some(a), Some(b)) = (st["created_at"].as_str(), st["started_at"].as_str()) {
            let p = |x: &str| chrono_ms(x);
            claim.push((p(b) - p(a)) as f64);
        }
    }
    out.push(fig(
        "dispatch",
        "new_task→completed, new session (worktree+agent+diff)",
        "ms",
        first,
        Some("spawn+exit of /bin/true"),
    ));
    out.push(fig(
        "dispatch",
        "new_task→completed, follow-up turn",
        "ms",
        warm,
        Some("spawn+exit of /bin/true"),
    ));
    // A warm ACP agent (the scripted fixture): the first turn starts the process, runs
    // initialize and session/new; a follow-up reuses all of it.
    let (mut cold, mut hot) = (Vec::new(), Vec::new());
    for _ in 0..opts.reps.max(3) {
        let t = Instant::now();
        let r = c
            .call(
                "new_task",
                json!({"prompt": "say hi", "agent": "fixture", "wait_seconds": 30}),
            )
            .await?;
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            r["structuredContent"]["state"] == "completed",
            "fixture turn: {r}"
        );
        let sid = r["structuredContent"]["session_id"]
            .as_str()
            .context("session")?
            .to_string();
        let t = Instant::now();
        c.call(
            "new_task",
            json!({"prompt": "say again", "session_id": sid, "wait_seconds": 30}),
        )
        .await?;
        hot.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.push(fig(
        "dispatch",
        "ACP fixture: new_task→completed, first turn",
        "ms",
        cold,
        None,
    ));
    out.push(fig(
        "dispatch",
        "ACP fixture: new_task→completed, warm follow-up",
        "ms",
        hot,
        Some("ACP fixture: new_task→completed, first turn"),
    ));
    out.push(fig(
        "dispatch",
        "queued→claimed (row timestamps, ms resolution)",
        "ms",
        claim,
        None,
    ));
    drop(c);

    // Queue throughput with the no-op agent.
    let n = if opts.quick { 20 } else { 200 };
    out.push(fig(
        "queue",
        format!("SQLite, 1 node, {n} tasks"),
        "tasks/s",
        vec![throughput(opts, None, 1, n).await?],
        None,
    ));
    if let Some(url) = &opts.database_url {
        out.push(fig(
            "queue",
            format!("PostgreSQL, 1 node, {n} tasks"),
            "tasks/s",
            vec![throughput(opts, Some(url), 1, n).await?],
            None,
        ));
        out.push(fig(
            "queue",
            format!("PostgreSQL, 3 nodes, {n} tasks"),
            "tasks/s",
            vec![throughput(opts, Some(url), 3, n).await?],
            None,
        ));
    }
    Ok(out)
}

fn chrono_ms(rfc: &str) -> i64 {
    // "2026-11-23T01:02:03.456Z": only the time of day matters for differences within a run.
    let t = rfc.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: i64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let m: i64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let s: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (h * 3600 + m * 60) * 1000 + (s * 1000.0) as i64
}

async fn throughput(opts: &Opts, db: Option<&str>, nodes: usize, n: usize) -> Result<f64> {
    let (_data, _repo, mut args) = setup(opts, &format!("queue-{}-{nodes}", db.is_some()))?;
    if let Some(u) = db {
        args.extend(["--database-url".into(), u.to_string()]);
    }
    args.push("serve".into());
    let mut clients = Vec::new();
    for _ in 0..nodes {
        clients.push(StdioClient::spawn(&opts.boocoder, &args).await?.0);
    }
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let r = clients[i % nodes]
            .call("new_task", json!({"prompt": "noop"}))
            .await?;
        ids.push(
            r["structuredContent"]["task_id"]
                .as_str()
                .context("id")?
                .to_string(),
        );
    }
    for id in &ids {
        loop {
            let s = clients[0]
                .call(
                    "check_task_status",
                    json!({"task_id": id, "wait_seconds": 10}),
                )
                .await?;
            if s["structuredContent"]["state"] == "completed" {
                break;
            }
            if s["structuredContent"]["state"] == "failed" {
                bail!("task failed: {s}");
            }
        }
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

pub async fn worktrees(opts: &Opts) -> Result<Vec<Figure>> {
    let sizes: &[usize] = if opts.quick { &[1000] } else { &[1000, 10_000] };
    let mut out = Vec::new();
    for &files in sizes {
        let base = opts.work.path().join(format!("wt-{files}"));
        std::fs::create_dir_all(&base)?;
        let repo = synthetic_repo(&base, files)?;
        let (mut ours, mut theirs, mut diff_ours, mut diff_git) = (vec![], vec![], vec![], vec![]);
        let (mut apply_ours, mut apply_git) = (vec![], vec![]);
        for rep in 0..opts.reps {
            let wt = base.join(format!("ours-{rep}"));
            let t = Instant::now();
            let (r, w) = (repo.clone(), wt.clone());
            let info = tokio::task::spawn_blocking(move || {
                boocoder::worktree::create(&r, &w, &format!("bench/ours-{rep}"))
            })
            .await??;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            let plain = base.join(format!("git-{rep}"));
            let t = Instant::now();
            git(
                &repo,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    &format!("bench/git-{rep}"),
                    &plain.display().to_string(),
                ],
            )?;
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            for dir in [&info.path, &plain] {
                for i in 0..20 {
                    let f = dir.join(format!(
                        "d{:03}/f{}.txt",
                        (i * 37 % files) / 100,
                        i * 37 % files
                    ));
                    std::fs::write(&f, format!("changed {i}\n"))?;
                }
                std::fs::write(dir.join("new-file.txt"), "untracked\n")?;
            }
            let t = Instant::now();
            let (p, b) = (info.path.clone(), info.base_commit.clone());
            let snap =
                tokio::task::spawn_blocking(move || boocoder::worktree::snapshot(&p, &b)).await??;
            diff_ours.push(t.elapsed().as_secs_f64() * 1e3);
            let d = &snap.diff;
            anyhow::ensure!(
                d.files.len() == 21,
                "expected 21 changed files, got {}",
                d.files.len()
            );
            let t = Instant::now();
            git(&plain, &["add", "-N", "."])?;
            let o = Command::new("git")
                .args(["diff", "--binary", &info.base_commit])
                .current_dir(&plain)
                .output()?;
            anyhow::ensure!(o.status.success());
            diff_git.push(t.elapsed().as_secs_f64() * 1e3);

            // The same change applied to the checkout: ours (lock, check every preimage,
            // durable journal, previous contents kept, write, drop the journal) against
            // `git apply --binary` of its patch. The checkout is reset between the two.
            let (r, w, b, tree) = (
                repo.clone(),
                info.path.clone(),
                info.base_commit.clone(),
                snap.tree.clone(),
            );
            let t = Instant::now();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let lock = boocoder::worktree::CheckoutLock::acquire(
                    &r,
                    std::time::Duration::from_secs(10),
                )?;
                let trees = boocoder::worktree::ChangeTrees {
                    worktree: &w,
                    base: &b,
                    tree: &tree,
                };
                lock.apply(trees, "bench")?;
                lock.finish()?;
                Ok(())
            })
            .await??;
            apply_ours.push(t.elapsed().as_secs_f64() * 1e3);
            reset_checkout(&repo)?;
            let patch = base.join(format!("change-{rep}.patch"));
            std::fs::write(&patch, &d.patch)?;
            let t = Instant::now();
            git(&repo, &["apply", "--binary", &patch.display().to_string()])?;
            apply_git.push(t.elapsed().as_secs_f64() * 1e3);
            reset_checkout(&repo)?;
        }
        let gw = format!("git worktree add, {files} files");
        out.push(fig("worktree", gw.clone(), "ms", theirs, None));
        out.push(fig(
            "worktree",
            format!("boocoder worktree ready, {files} files"),
            "ms",
            ours,
            Some(&gw),
        ));
        let gd = format!("git add -N + diff --binary, {files} files");
        out.push(fig("worktree", gd.clone(), "ms", diff_git, None));
        out.push(fig(
            "worktree",
            format!("boocoder pending diff, {files} files"),
            "ms",
            diff_ours,
            Some(&gd),
        ));
        let ga = "git apply --binary, 21 changed files".to_string();
        out.push(fig("worktree", ga.clone(), "ms", apply_git, None));
        out.push(fig(
            "worktree",
            format!("boocoder apply_pending, 21 of {files} files (journaled)"),
            "ms",
            apply_ours,
            Some(&ga),
        ));
    }
    Ok(out)
}

/// Put the benchmark's checkout back at its commit.
fn reset_checkout(repo: &Path) -> Result<()> {
    git(repo, &["checkout", "-q", "--", "."])?;
    git(repo, &["clean", "-fdq"])
}

pub async fn store(opts: &Opts) -> Result<Vec<Figure>> {
    let n = if opts.quick { 200 } else { 2000 };
    let mut out = Vec::new();
    let sqlite = boocoder::store::Store::open_sqlite(&opts.work.path().join("store.db")).await?;
    out.push(fig(
        "store",
        "SQLite task transitions",
        "/s",
        vec![transitions(&sqlite, n, "sq").await?],
        None,
    ));
    sqlite.close().await;
    if let Some(url) = &opts.database_url {
        let pg = boocoder::store::Store::open_postgres(url).await?;
        let tag = format!("pg{}", std::process::id());
        out.push(fig(
            "store",
            "PostgreSQL task transitions",
            "/s",
            vec![transitions(&pg, n / 4, &tag).await?],
            Some("SQLite task transitions"),
        ));
        pg.close().await;
    }
    Ok(out)
}

/// Insert `n` tasks, then claim and finish each: 2n transitions over the elapsed time.
async fn transitions(store: &boocoder::store::Store, n: usize, tag: &str) -> Result<f64> {
    for i in 0..n {
        store
            .insert_task(&boocoder::store::NewTaskRow {
                id: format!("t-{tag}-{i}"),
                project_path: "/bench".into(),
                session_id: format!("s-{tag}-{i}"),
                new_session_provider: Some("noop".into()),
                parent_task_id: None,
                prompt: "x".into(),
                provider: "noop".into(),
                model: None,
                mode: None,
                permission: None,
            })
            .await?;
    }
    let t0 = Instant::now();
    let mut done = 0;
    while let Some(claimed) = store.claim_next("bench", "bench-host").await? {
        let id = claimed.id().to_owned();
        let outcome = boocoder::store::Outcome::Completed {
            summary: "ok".into(),
            final_message: "ok".into(),
        };
        store
            .finish_task(&id, &outcome, Default::default(), &[])
            .await?;
        done += 1;
    }
    anyhow::ensure!(done >= n, "claimed {done} of {n}");
    Ok((2 * done) as f64 / t0.elapsed().as_secs_f64())
}
