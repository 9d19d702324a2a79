//! `boocoder serve`: the engine behind MCP on stdio or Streamable HTTP, until a signal.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use boocoder::engine::Engine;
use boocoder::mcp::{self, Profile};
use tokio_util::sync::CancellationToken;

use super::flags::Global;

// The doc comment on `Verb::Serve` is the subcommand's help; this struct carries only flags.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (e.g. 127.0.0.1:8765).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Extra browser Origin allowed over HTTP (loopback origins always are).
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// Which tools to publish.
    #[arg(long, value_enum, default_value_t = Profile::Full)]
    pub tools: Profile,
    /// Read stdio through tokio's blocking pool even on pipes (for benchmarks).
    #[arg(long, hide = true)]
    pub plain_stdio: bool,
    /// Leave Nagle's algorithm on for HTTP connections (for benchmarks).
    #[arg(long, hide = true)]
    pub no_nodelay: bool,
    /// Serve `configure_provider` over HTTP. Off by default: it sets the commands agents
    /// run, so any client with the token could run programs as this user.
    #[arg(long)]
    pub http_allow_provider_edits: bool,
}

pub async fn run(g: &Global, args: ServeArgs) -> Result<i32> {
    if args.http.is_some()
        && let Some(t) = &g.token
    {
        mcp::http::check_token(t, mcp::http::GIVEN)?;
    }
    let config = g.config()?;
    let data_dir = config.data_dir.clone();
    let engine = Engine::start(config).await.context("starting the engine")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let served = match args.http {
        Some(addr) => mcp::http::serve(
            engine.clone(),
            mcp::http::HttpOptions {
                addr,
                token: g.token.clone(),
                data_dir,
                allow_provider_edits: args.http_allow_provider_edits,
                allowed_origins: args.allowed_origins,
                profile: args.tools,
                nodelay: !args.no_nodelay,
            },
            shutdown.clone(),
        )
        .await
        .map_err(anyhow::Error::from),
        None => mcp::serve_stdio(
            engine.clone(),
            args.tools,
            args.plain_stdio,
            shutdown.clone(),
        )
        .await
        .map_err(anyhow::Error::from),
    };
    tracing::info!("shutting down");
    engine.shutdown().await;
    served.map(|()| 0)
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
