//! The `boocoder` binary: parse flags, set up logging on stderr, and run a subcommand.
//! `anyhow` lives only here; the library returns typed errors.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use boocoder::config::{Config, default_data_dir};
use boocoder::engine::Engine;
use boocoder::mcp::{self, Profile};

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
    /// Provider used when a task names no agent.
    #[arg(long, env = "BOOCODER_DEFAULT_AGENT", global = true)]
    default_agent: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the MCP server: stdio by default, Streamable HTTP with --http.
    Serve {
        /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (e.g. 127.0.0.1:8765).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Bearer token every HTTP request must carry; required to bind a non-loopback address.
        #[arg(long, env = "BOOCODER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Extra browser Origin allowed over HTTP (loopback origins always are).
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// Which tools to publish.
        #[arg(long, value_enum, default_value_t = Profile::Full)]
        tools: Profile,
    },
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Schemas { write, dir } => schemas(write, &dir),
        Command::Serve {
            http,
            token,
            allowed_origins,
            tools,
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
                        token,
                        allowed_origins,
                        profile: tools,
                    },
                    shutdown.clone(),
                )
                .await
                .map_err(anyhow::Error::from),
                None => mcp::serve_stdio(engine.clone(), tools, shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from),
            };
            tracing::info!("shutting down");
            engine.shutdown().await;
            served
        }
    }
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
    config.default_agent = g.default_agent.clone();
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
