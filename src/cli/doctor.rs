//! `boocoder doctor`: one named check per thing a task needs, each saying what to fix.
//! Locally it checks this machine's setup; with `--url`, that the server answers.

use anyhow::Result;
use boocoder::config::Config;
use boocoder::engine::Engine;
use boocoder::mcp::http;
use boocoder::providers::snapshot::{ProvidersSnapshot, Status};

use super::out;
use super::target::Target;

/// The report: one line per check, and the count of failures.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn check(&mut self, ok: bool, what: &str, detail: impl std::fmt::Display) {
        if !ok {
            self.problems += 1;
        }
        out(&format!(
            "{} {what}: {detail}\n",
            if ok { "ok  " } else { "FAIL" }
        ));
    }

    /// A line that is neither a pass nor a failure (`WARN`, or `--` for not applicable).
    fn note(&self, mark: &str, what: &str, detail: impl std::fmt::Display) {
        out(&format!("{mark:<4} {what}: {detail}\n"));
    }

    fn exit_code(&self) -> i32 {
        if self.problems > 0 {
            out(&format!("\n{} problem(s) found\n", self.problems));
            return 1;
        }
        out("\nall checks passed\n");
        0
    }
}

pub async fn run(config: Config) -> Result<i32> {
    let mut r = Report::default();
    git(&mut r);
    data_dir(&mut r, &config);
    database(&mut r, &config).await;
    http_token(&mut r, &config);
    default_project(&mut r, &config);
    pool(&r, &config);
    let default_agent = config.default_agent.clone();
    let snap = match Engine::open_client(config).await {
        Ok(engine) => engine.probe_providers_now(false).await,
        Err(e) => {
            r.check(false, "providers", format!("cannot probe: {e}"));
            return Ok(1);
        }
    };
    providers(&mut r, &snap);
    self::default_agent(&mut r, default_agent.as_deref(), &snap);
    Ok(r.exit_code())
}

fn git(r: &mut Report) {
    match std::process::Command::new("git").arg("--version").output() {
        Ok(o) if o.status.success() => {
            r.check(true, "git", String::from_utf8_lossy(&o.stdout).trim())
        }
        _ => r.check(false, "git", "not found on PATH: install git"),
    }
}

fn data_dir(r: &mut Report, config: &Config) {
    let dir = &config.data_dir;
    let probe = dir.join(".doctor-write-test");
    match std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => r.check(
            true,
            "data directory",
            format!("{} (writable)", dir.display()),
        ),
        Err(e) => r.check(false, "data directory", format!("{}: {e}", dir.display())),
    }
}

async fn database(r: &mut Report, config: &Config) {
    match Engine::open_client(config.clone()).await {
        Ok(engine) => {
            let nodes = engine.live_nodes().await.unwrap_or_default();
            r.check(
                true,
                "database",
                format!(
                    "{} opened and migrated; {} server(s) running",
                    engine.store_backend(),
                    nodes.len()
                ),
            );
        }
        Err(e) => r.check(false, "database", e),
    }
}

fn http_token(r: &mut Report, config: &Config) {
    let file = http::token_path(&config.data_dir);
    match http::read_token_file(&config.data_dir) {
        Ok(Some(_)) => r.check(
            true,
            "http token",
            format!(
                "{} (private; `--url` verbs on this machine send it)",
                file.display()
            ),
        ),
        Ok(None) => r.note(
            "--",
            "http token",
            format!(
                "none yet (`serve --http` on loopback creates {})",
                file.display()
            ),
        ),
        Err(e) => r.check(false, "http token", e),
    }
}

fn default_project(r: &mut Report, config: &Config) {
    match &config.default_project {
        Some(p) => r.check(true, "default project", p.display()),
        None => r.check(
            true,
            "default project",
            "none: tasks must pass `project` (or start the server with --project)",
        ),
    }
}

/// What the worktree pool holds: disk it uses is bounded by `--pool-size` spares per project
/// used within `--pool-ttl-secs`.
fn pool(r: &Report, config: &Config) {
    let pools = boocoder::worktree::disk_use(&config.pool_dir(), &config.worktrees_dir());
    let spares: usize = pools.iter().map(|p| p.spares).sum();
    let bytes: u64 = pools.iter().map(|p| p.bytes).sum();
    let limit = format!(
        "at most {} per project used in the last {} s",
        config.pool_size,
        config.pool_ttl.as_secs()
    );
    if config.pool_size == 0 && spares == 0 {
        r.note("--", "worktree pool", "off (--pool-size 0)");
        return;
    }
    r.note(
        "ok",
        "worktree pool",
        format!(
            "{spares} spare worktree(s) for {} project(s), {} on disk ({limit})",
            pools.len(),
            super::project::human_bytes(bytes)
        ),
    );
    for p in &pools {
        r.note(
            "",
            "  pool",
            format!(
                "{}: {} spare(s), {}",
                p.project.display(),
                p.spares,
                super::project::human_bytes(p.bytes)
            ),
        );
    }
}

/// The providers file's problems and one line per provider; at least one must be ready.
fn providers(r: &mut Report, snap: &ProvidersSnapshot) {
    for d in &snap.diagnostics {
        r.check(false, "providers file", d);
    }
    let mut ready = 0;
    for p in &snap.providers {
        let what = format!("provider {}", p.id);
        let line = format!(
            "{}{}: {}",
            p.status.as_str(),
            p.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            p.diagnostic
        );
        match p.status {
            Status::Ready => {
                ready += 1;
                r.check(true, &what, line);
            }
            Status::NeedsAuth | Status::Error => r.note("WARN", &what, line),
            Status::Disabled | Status::NotInstalled | Status::Probing => r.note("--", &what, line),
        }
    }
    if ready == 0 {
        r.check(
            false,
            "providers",
            "no provider can run: install an agent (e.g. `npm i -g opencode-ai`) or add one to the providers file",
        );
    }
}

fn default_agent(r: &mut Report, agent: Option<&str>, snap: &ProvidersSnapshot) {
    let Some(a) = agent else {
        r.note(
            "--",
            "default agent",
            "none (tasks must name `agent`; set --default-agent)",
        );
        return;
    };
    match snap.providers.iter().find(|p| p.id == a) {
        Some(p) if p.status == Status::Ready => r.check(true, "default agent", a),
        Some(p) => r.check(
            false,
            "default agent",
            format!("`{a}` is {}: {}", p.status.as_str(), p.diagnostic),
        ),
        None => r.check(false, "default agent", format!("unknown provider `{a}`")),
    }
}

/// With `--url`: the server answers the handshake and a tool call.
pub async fn remote(target: &Target) -> Result<i32> {
    if let Some(server) = target.server() {
        out(&format!("ok   server: {server}\n"));
    }
    let page = target.list(Vec::new(), 1, None).await?;
    out(&format!(
        "ok   tools answer (list_tasks: {} task(s) on the first page)\n",
        page.len()
    ));
    Ok(0)
}
