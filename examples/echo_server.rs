//! The reference for the MCP latency benchmark: a bare rmcp server with one `echo` tool and
//! nothing behind it, so `examples/bench` can show what boocoder's protocol edge costs on top of
//! rmcp itself. `--pipes` uses rmcp's non-blocking stdio (boocoder's default), `--http ADDR`
//! serves Streamable HTTP with TCP_NODELAY.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    #[serde(default)]
    text: String,
}

#[derive(Clone)]
struct Echo {
    tool_router: ToolRouter<Echo>,
}

#[tool_router]
impl Echo {
    fn new() -> Echo {
        Echo {
            tool_router: Self::tool_router(),
        }
    }

    /// Return the text.
    #[tool]
    async fn echo(&self, Parameters(a): Parameters<EchoArgs>) -> String {
        a.text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("echo", "0"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--http") {
        use axum::serve::ListenerExt;
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService,
        };
        let addr = args.get(i + 1).map(String::as_str).unwrap_or("127.0.0.1:0");
        let svc: StreamableHttpService<Echo, LocalSessionManager> = StreamableHttpService::new(
            || Ok(Echo::new()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "boocoder: listening on http://{}/mcp",
            listener.local_addr()?
        );
        let listener = listener.tap_io(|t| {
            let _ = t.set_nodelay(true);
        });
        axum::serve(listener, axum::Router::new().nest_service("/mcp", svc)).await?;
        return Ok(());
    }
    let running = if args.iter().any(|a| a == "--pipes") {
        Echo::new()
            .serve(rmcp::transport::io::stdio_pipes())
            .await?
    } else {
        Echo::new().serve(rmcp::transport::stdio()).await?
    };
    running.waiting().await?;
    Ok(())
}
