//! Streamable HTTP transport at `/mcp`: one engine shared by every HTTP session. Loopback by
//! default with Origin checks against DNS rebinding; any other bind needs a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::{McpServer, Profile};
use crate::engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "refusing to listen on {0} without a token: set --token or BOOCODER_TOKEN (every request must then carry `Authorization: Bearer <token>`), or bind 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

pub struct HttpOptions {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// Extra browser origins allowed besides loopback ones.
    pub allowed_origins: Vec<String>,
    pub profile: Profile,
    /// Set TCP_NODELAY on accepted sockets (off only to measure what it saves).
    pub nodelay: bool,
}

/// Bind and serve until `shutdown` fires. Prints the bound address to stderr (tests and
/// scripts that pass port 0 read it from there).
pub async fn serve(
    engine: Engine,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let loopback = opts.addr.ip().is_loopback();
    let token = opts.token.filter(|t| !t.is_empty());
    if !loopback && token.is_none() {
        return Err(HttpError::TokenRequired(opts.addr));
    }
    let mut origins: Vec<String> = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
        .into_iter()
        .map(String::from)
        .collect();
    origins.extend(opts.allowed_origins);
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token());
    if !loopback {
        // Remote clients use whatever host name reaches us; the bearer token guards access.
        config = config.disable_allowed_hosts();
    }
    let profile = opts.profile;
    let service: StreamableHttpService<McpServer, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(McpServer::new(engine.clone(), profile)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(middleware::from_fn_with_state(
                Arc::new(token),
                require_token,
            ));

    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: opts.addr,
            source,
        })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "listening for Streamable HTTP at /mcp");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("boocoder: listening on http://{local}/mcp");
    }
    // Without TCP_NODELAY every SSE response waits on Nagle + delayed ACK (25–44 ms a call).
    let nodelay = opts.nodelay;
    let listener = listener.tap_io(move |tcp| {
        if let Err(e) = tcp.set_nodelay(nodelay) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn require_token(
    State(token): State<Arc<Option<String>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = token.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response(),
    }
}

/// Compare without an early exit, so response timing does not leak how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secre"));
    }
}
