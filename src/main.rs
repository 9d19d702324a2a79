//! The `boocoder` binary: parse flags, set up logging on stderr, and run a subcommand.
//! `anyhow` lives only here; the library returns typed errors.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use boocoder::config::{Config, LlmConfig, default_data_dir};
use boocoder::engine::Engine;
use boocoder::mcp::{self, Profile};

mod cli;

#[derive(Parser)]
#[command(
    name = "boocoder",
    version,
    about = "Run coding agents in isolated git worktrees, driven over MCP"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Global {
    /// Where the database, the session worktrees and the providers file live.
    #[arg(long, env = "BOOCODER_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Providers file (JSON) with overrides and custom agents [default: DATA_DIR/providers.json].
    #[arg(long, env = "BOOCODER_PROVIDERS", global = true)]
    providers: Option<PathBuf>,
    /// Project (git repository) used when a task names none [default: the current directory
    /// when it is a git repository].
    #[arg(long, env = "BOOCODER_PROJECT", global = true)]
    project: Option<PathBuf>,
    /// Directory tasks' projects must lie in; repeat for several [default: your home directory
    /// and the default project].
    #[arg(
        long = "allow-root",
        env = "BOOCODER_ALLOW_ROOTS",
        value_delimiter = ':',
        global = true
    )]
    allow_roots: Vec<PathBuf>,
    /// Sessions that may run at once.
    #[arg(
        long,
        env = "BOOCODER_MAX_CONCURRENT",
        default_value_t = 4,
        global = true
    )]
    max_concurrent: usize,
    /// Stop a warm ACP agent after this many idle seconds.
    #[arg(
        long,
        env = "BOOCODER_ACP_IDLE_SECS",
        default_value_t = 600,
        global = true
    )]
    acp_idle_secs: u64,
    /// Most warm ACP agent processes kept alive (idle ones are stopped, least recently used first).
    #[arg(
        long,
        env = "BOOCODER_ACP_MAX_LIVE",
        default_value_t = 8,
        global = true
    )]
    acp_max_live: usize,
    /// Longest one provider probe (`--version`, ACP handshake, model list) may take; a
    /// provider that overruns shows as `error`.
    #[arg(
        long,
        env = "BOOCODER_PROBE_TIMEOUT_SECS",
        default_value_t = 15.0,
        global = true
    )]
    probe_timeout_secs: f64,
    /// How long a cached provider probe stays fresh; start-up re-probes older ones in the
    /// background (`refresh_providers` or `boocoder providers --refresh` re-probe any time).
    #[arg(
        long,
        env = "BOOCODER_PROVIDER_TTL_SECS",
        default_value_t = 86_400,
        global = true
    )]
    provider_ttl_secs: u64,
    /// Provider used when a task names no agent [default: native when --llm-base-url is set].
    #[arg(long, env = "BOOCODER_DEFAULT_AGENT", global = true)]
    default_agent: Option<String>,
    /// `postgres://…` to share one task queue between several boocoder nodes [default: the
    /// embedded SQLite file in the data directory].
    #[arg(
        long,
        env = "BOOCODER_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    /// Seconds without a heartbeat after which a node's running tasks are failed.
    #[arg(long, env = "BOOCODER_LEASE_SECS", default_value_t = 30, global = true)]
    lease_secs: u64,
    /// Run the verb against a running server (`http://HOST:PORT/mcp`) instead of the local data.
    #[arg(long, env = "BOOCODER_URL", global = true)]
    url: Option<String>,
    /// Bearer token: required by `serve --http` off loopback, sent by `--url` verbs.
    #[arg(long, env = "BOOCODER_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Close sessions idle this many hours with nothing unapplied (their worktrees are removed).
    #[arg(
        long,
        env = "BOOCODER_SESSION_TTL_HOURS",
        default_value_t = 168,
        global = true
    )]
    session_ttl_hours: u64,
    /// Idle session TTL in seconds (overrides --session-ttl-hours; for tests).
    #[arg(long, global = true, hide = true)]
    session_ttl_secs: Option<u64>,
    /// Seconds between reaper passes (idle sessions, leaked worktrees) [default: 600; for tests].
    #[arg(long, global = true, hide = true)]
    reap_secs: Option<u64>,
    /// Do not LISTEN for PostgreSQL notifications; find work by polling only.
    #[arg(long, global = true, hide = true)]
    no_listen: bool,
    /// This machine's identity for session locality [default: the hostname].
    #[arg(long, global = true, hide = true)]
    host_id: Option<String>,
    /// Seconds between safety-net polls of the queue.
    #[arg(long, default_value_t = 2.0, global = true, hide = true)]
    poll_secs: f64,
    #[command(flatten)]
    llm: LlmFlags,
}

/// The native provider's endpoint and limits.
#[derive(clap::Args)]
struct LlmFlags {
    /// OpenAI-compatible endpoint for the native provider, up to the API version
    /// (e.g. http://127.0.0.1:8080/v1 for llama-server, https://api.openai.com/v1).
    #[arg(long, env = "BOOCODER_LLM_BASE_URL", global = true)]
    llm_base_url: Option<String>,
    /// API key sent as a bearer token to the endpoint.
    #[arg(
        long,
        env = "BOOCODER_LLM_API_KEY",
        hide_env_values = true,
        global = true
    )]
    llm_api_key: Option<String>,
    /// Model the native provider uses when a task names none.
    #[arg(long, env = "BOOCODER_MODEL", global = true)]
    model: Option<String>,
    /// Seconds of silence on a model response (or of waiting for an MCP sampling answer)
    /// before the request fails.
    #[arg(
        long,
        env = "BOOCODER_LLM_TIMEOUT_SECS",
        default_value_t = 300,
        global = true
    )]
    llm_timeout_secs: u64,
    /// `max_tokens` of each model request [default: the server's].
    #[arg(long, env = "BOOCODER_LLM_MAX_OUTPUT_TOKENS", global = true)]
    llm_max_output_tokens: Option<u32>,
    /// Retries of a model request after 429, 5xx or a network error.
    #[arg(long, env = "BOOCODER_LLM_RETRIES", default_value_t = 4, global = true)]
    llm_retries: u32,
    /// First retry delay in milliseconds; doubled per attempt.
    #[arg(
        long,
        env = "BOOCODER_LLM_RETRY_MS",
        default_value_t = 500,
        global = true
    )]
    llm_retry_ms: u64,
    /// Model rounds per native turn before the task fails.
    #[arg(long, env = "BOOCODER_MAX_ROUNDS", default_value_t = 50, global = true)]
    max_rounds: u32,
    /// Tokens (prompt + completion) one native task may spend before it is stopped.
    #[arg(long, env = "BOOCODER_MAX_TOKENS_TOTAL", global = true)]
    max_tokens_total: Option<u64>,
    /// Estimated tokens of conversation sent per request; older tool results are dropped first.
    #[arg(
        long,
        env = "BOOCODER_CONTEXT_TOKENS",
        default_value_t = 32_000,
        global = true
    )]
    context_tokens: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Run the MCP server: stdio by default, Streamable HTTP with --http.
    Serve {
        /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (e.g. 127.0.0.1:8765).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Extra browser Origin allowed over HTTP (loopback origins always are).
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// Which tools to publish.
        #[arg(long, value_enum, default_value_t = Profile::Full)]
        tools: Profile,
        /// Read stdio through tokio's blocking pool even on pipes (for benchmarks).
        #[arg(long, hide = true)]
        plain_stdio: bool,
        /// Leave Nagle's algorithm on for HTTP connections (for benchmarks).
        #[arg(long, hide = true)]
        no_nodelay: bool,
    },
    /// Queue a task; with --wait, run it here with live progress (Ctrl-C cancels it).
    Run {
        /// What the agent should do.
        prompt: String,
        /// Provider id (see `boocoder providers`).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        mode: Option<String>,
        /// Git repository to work on [default: --project, or the current directory].
        #[arg(long = "in", value_name = "DIR")]
        project_dir: Option<PathBuf>,
        /// Follow-up turn in this session (same worktree).
        #[arg(long)]
        session: Option<String>,
        /// Run the task now and wait for it, showing progress.
        #[arg(long)]
        wait: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    Ls {
        /// Only tasks in this state (pending, running, blocked, completed, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a task: status, transcript and diff.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Apply a task's (or session's) pending change to the project checkout.
    Apply {
        /// Task id or session id.
        id: String,
        /// Only check that it applies cleanly.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a task's (or session's) pending change and reset its worktree.
    Discard { id: String },
    /// Cancel a pending or running task.
    Cancel { id: String },
    /// Close a session: remove its worktree and branch (refused while it holds an unapplied
    /// change unless --force).
    Close {
        /// Session id, or any task id of the session.
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// The provider table: which agents this machine can run.
    Providers {
        #[arg(long)]
        json: bool,
        /// Probe every provider again instead of showing cached results.
        #[arg(long)]
        refresh: bool,
    },
    /// Check git, the data directory, the database and the providers; say what to fix.
    Doctor,
    /// Print or write the tools' JSON Schemas (tool-schemas/*.json).
    Schemas {
        /// Write one file per tool into --dir instead of printing.
        #[arg(long)]
        write: bool,
        #[arg(long, default_value = "tool-schemas")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The server logs its work; CLI verbs for people stay quiet unless something is wrong.
    let default_filter = match cli.command {
        Command::Serve { .. } => "info,sqlx=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let verb = match cli.command {
        Command::Schemas { write, dir } => return schemas(write, &dir),
        Command::Run {
            prompt,
            agent,
            model,
            mode,
            project_dir,
            session,
            wait,
            json,
        } => cli::Verb::Run {
            prompt,
            agent,
            model,
            mode,
            project: project_dir.map(|p| p.display().to_string()),
            session,
            wait,
            json,
        },
        Command::Ls {
            state,
            limit,
            session,
            json,
        } => cli::Verb::Ls {
            state,
            limit,
            session,
            json,
        },
        Command::Show { id, json } => cli::Verb::Show { id, json },
        Command::Apply { id, dry_run } => cli::Verb::Apply { id, dry_run },
        Command::Discard { id } => cli::Verb::Discard { id },
        Command::Cancel { id } => cli::Verb::Cancel { id },
        Command::Close { id, force } => cli::Verb::Close { id, force },
        Command::Providers { json, refresh } => cli::Verb::Providers { json, refresh },
        Command::Doctor => cli::Verb::Doctor,
        Command::Serve {
            http,
            allowed_origins,
            tools,
            plain_stdio,
            no_nodelay,
        } => {
            let config = config(&cli.global)?;
            let engine = Engine::start(config).await.context("starting the engine")?;
            let shutdown = CancellationToken::new();
            tokio::spawn(on_signal(shutdown.clone()));
            let served = match http {
                Some(addr) => mcp::http::serve(
                    engine.clone(),
                    mcp::http::HttpOptions {
                        addr,
                        token: cli.global.token.clone(),
                        allowed_origins,
                        profile: tools,
                        nodelay: !no_nodelay,
                    },
                    shutdown.clone(),
                )
                .await
                .map_err(anyhow::Error::from),
                None => mcp::serve_stdio(engine.clone(), tools, plain_stdio, shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from),
            };
            tracing::info!("shutting down");
            engine.shutdown().await;
            return served;
        }
    };
    let code = match &cli.global.url {
        Some(url) => cli::run_remote(url, cli.global.token.as_deref(), verb).await?,
        None => cli::run(config(&cli.global)?, verb).await?,
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn config(g: &Global) -> Result<Config> {
    let data_dir = g.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let mut config = Config::new(data_dir);
    if let Some(p) = &g.providers {
        config.providers_file = p.clone();
    }
    config.default_project = match &g.project {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("--project {}", p.display()))?,
        ),
        None => std::env::current_dir()
            .ok()
            .filter(|d| d.join(".git").exists()),
    };
    let mut roots = Vec::new();
    for r in &g.allow_roots {
        roots.push(
            r.canonicalize()
                .with_context(|| format!("--allow-root {}", r.display()))?,
        );
    }
    if roots.is_empty() {
        roots.extend(dirs::home_dir().and_then(|h| h.canonicalize().ok()));
    }
    roots.extend(config.default_project.clone());
    config.allowed_roots = roots;
    if g.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    config.max_concurrent = g.max_concurrent;
    if g.acp_idle_secs == 0 || g.acp_max_live == 0 {
        bail!("--acp-idle-secs and --acp-max-live must be at least 1");
    }
    config.acp_pool = boocoder::backend::acp::PoolConfig {
        idle_ttl: std::time::Duration::from_secs(g.acp_idle_secs),
        max_live: g.acp_max_live,
    };
    if !(g.probe_timeout_secs > 0.0 && g.probe_timeout_secs <= 600.0) {
        bail!("--probe-timeout-secs must be between 0 and 600");
    }
    config.probe_timeout = std::time::Duration::from_secs_f64(g.probe_timeout_secs);
    config.probe_ttl = std::time::Duration::from_secs(g.provider_ttl_secs);
    config.default_agent = g.default_agent.clone();
    config.database_url = g.database_url.clone().filter(|u| !u.is_empty());
    if g.lease_secs == 0 {
        bail!("--lease-secs must be at least 1");
    }
    config.lease = std::time::Duration::from_secs(g.lease_secs);
    config.listen = !g.no_listen;
    config.session_ttl = std::time::Duration::from_secs(
        g.session_ttl_secs
            .unwrap_or(g.session_ttl_hours.saturating_mul(3600))
            .max(1),
    );
    if let Some(s) = g.reap_secs {
        config.reap_interval = std::time::Duration::from_secs(s.max(1));
    }
    if let Some(h) = g.host_id.clone().filter(|h| !h.is_empty()) {
        config.node_id = format!("{h}-{}", std::process::id());
        config.host = h;
    }
    if !(g.poll_secs > 0.0 && g.poll_secs <= 3600.0) {
        bail!("--poll-secs must be between 0 and 3600");
    }
    config.poll_interval = std::time::Duration::from_secs_f64(g.poll_secs);
    let l = &g.llm;
    if l.max_rounds == 0 {
        bail!("--max-rounds must be at least 1");
    }
    if l.llm_timeout_secs == 0 {
        bail!("--llm-timeout-secs must be at least 1");
    }
    config.native = boocoder::config::NativeLimits {
        max_rounds: l.max_rounds,
        max_tokens_total: l.max_tokens_total,
        context_tokens: l.context_tokens,
        sampling_timeout: std::time::Duration::from_secs(l.llm_timeout_secs),
    };
    if let Some(url) = l
        .llm_base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--llm-base-url must start with http:// or https:// (got `{url}`)");
        }
        let mut llm = LlmConfig::new(url.to_string());
        llm.api_key = l.llm_api_key.clone().filter(|k| !k.is_empty());
        llm.model = l.model.clone().filter(|m| !m.is_empty());
        llm.timeout = std::time::Duration::from_secs(l.llm_timeout_secs);
        llm.max_output_tokens = l.llm_max_output_tokens;
        llm.retries = l.llm_retries;
        llm.retry_base = std::time::Duration::from_millis(l.llm_retry_ms);
        config.llm = Some(llm);
    }
    Ok(config)
}

/// Keys in sorted order, so the checked-in files do not depend on whether some dependency
/// turned on serde_json's `preserve_order` (agent-client-protocol does).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let by_key: std::collections::BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(by_key.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn schemas(write: bool, dir: &std::path::Path) -> Result<()> {
    let defs = mcp::tool_definitions();
    if !write {
        let all: serde_json::Map<String, serde_json::Value> = defs.into_iter().collect();
        let text = serde_json::to_string_pretty(&sorted(serde_json::Value::Object(all)))?;
        #[allow(clippy::print_stdout)]
        {
            println!("{text}");
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for (name, value) in defs {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(
            &path,
            format!("{}\n", serde_json::to_string_pretty(&sorted(value))?),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Cancel `token` on SIGINT or SIGTERM.
async fn on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received");
    token.cancel();
}
