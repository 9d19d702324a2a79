//! Streamable HTTP transport at `/mcp`: one engine shared by every HTTP session. Every request
//! carries a bearer token, loopback included: any local process or user could otherwise queue
//! tasks (code execution as the server's user). On loopback the token may be the generated
//! one in the data directory; any other bind needs one given explicitly. Origin checks guard
//! against DNS rebinding.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
        "refusing to listen on {0} without a token: set --token or BOOCODER_TOKEN (every request must then carry `Authorization: Bearer <token>`), or bind 127.0.0.1 to use the generated token in the data directory"
    )]
    TokenRequired(SocketAddr),
    #[error(transparent)]
    Token(#[from] TokenError),
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
    /// The token given by flag or environment; `None` uses (or creates) the data directory's.
    pub token: Option<String>,
    /// Where the generated token lives.
    pub data_dir: PathBuf,
    /// Serve `configure_provider` (it can set any command an agent runs).
    pub allow_provider_edits: bool,
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
    let (token, token_notice) = match opts.token {
        Some(t) => {
            check_token(&t, GIVEN)?;
            (
                t,
                "boocoder: bearer token from --token/BOOCODER_TOKEN".to_string(),
            )
        }
        None if !loopback => return Err(HttpError::TokenRequired(opts.addr)),
        None => {
            let (token, path) = load_or_create_token(&opts.data_dir)?;
            let notice = format!(
                "boocoder: bearer token in {} (send `Authorization: Bearer <token>`)",
                path.display()
            );
            (token, notice)
        }
    };
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
    let allow_edits = opts.allow_provider_edits;
    let service: StreamableHttpService<McpServer, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(McpServer::new(engine.clone(), profile).over_http(allow_edits)),
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
    announce(format!(
        "{token_notice}\nboocoder: listening on http://{local}/mcp\n"
    ));
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

/// Lines for people and scripts on stderr (tests read the URL from them), written by a
/// thread of their own: a client that never reads stderr must not stop the server from
/// serving, and one that closed it must not make it panic.
fn announce(text: String) {
    let _ = std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || {
            let _ = std::io::stderr().write_all(text.as_bytes());
        });
}

async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let expected = token.as_str();
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

/// The generated token's file in the data directory.
pub const TOKEN_FILE: &str = "http-token";

/// How a token given by flag or environment is named in errors.
pub const GIVEN: &str = "the token (--token or BOOCODER_TOKEN)";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{0} is empty or only whitespace: give a real token, or none (loopback only) to use the generated one"
    )]
    Blank(String),
    #[error("{0} must be printable ASCII without spaces: it travels in an HTTP header")]
    Unprintable(String),
    #[error("{path} is readable by other users (mode {mode:03o}): run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("token file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Refuse a token nobody should rely on: blank (a `BOOCODER_TOKEN=` left empty, a file with a
/// newline) or with characters a header cannot carry unchanged (HTTP trims the spaces).
pub fn check_token(token: &str, origin: &str) -> Result<(), TokenError> {
    if token.trim().is_empty() {
        return Err(TokenError::Blank(origin.into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Unprintable(origin.into()));
    }
    Ok(())
}

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The data directory's token, `None` when no HTTP server created one yet. Refused when
/// blank, unprintable, or readable by others.
pub fn read_token_file(data_dir: &Path) -> Result<Option<String>, TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let path = token_path(data_dir);
    let io = |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.display().to_string(),
            mode,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    // why: an editor's trailing newline is not part of the token.
    let token = text.strip_suffix('\n').unwrap_or(&text).to_string();
    check_token(&token, &path.display().to_string())?;
    Ok(Some(token))
}

/// The data directory's token, generated on first use: 256 random bits (two v4 UUIDs from the
/// OS generator), written to a temp file created 0600 and hard-linked into place, so the file
/// is never readable by others, never half-written, and two servers starting at once agree on
/// one token.
pub fn load_or_create_token(data_dir: &Path) -> Result<(String, PathBuf), TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = token_path(data_dir);
    if let Some(t) = read_token_file(data_dir)? {
        return Ok((t, path));
    }
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| TokenError::Io { path: p, source }
    };
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let tmp = data_dir.join(format!(
        ".{TOKEN_FILE}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()
        })
        .map_err(io(&tmp));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(&path)(e)),
    });
    // why: the temp name is ours alone; a leftover would only be clutter.
    let _ = std::fs::remove_file(&tmp);
    if linked? {
        tracing::info!(path = %path.display(), "generated the HTTP bearer token");
        return Ok((token, path));
    }
    // Another server created it between our read and our link: use theirs.
    match read_token_file(data_dir)? {
        Some(t) => Ok((t, path)),
        None => Err(io(&path)(std::io::Error::other("vanished after creation"))),
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
    use super::*;

    #[test]
    fn blank_and_unprintable_tokens_are_refused() {
        assert!(matches!(check_token("", GIVEN), Err(TokenError::Blank(_))));
        assert!(matches!(
            check_token(" \t\n", GIVEN),
            Err(TokenError::Blank(_))
        ));
        assert!(matches!(
            check_token("a b", GIVEN),
            Err(TokenError::Unprintable(_))
        ));
        assert!(check_token("s3cret-Token_1", GIVEN).is_ok());
    }

    #[test]
    fn the_generated_token_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, _) = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a, b, "reused on restart");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_token_file(dir.path()),
            Err(TokenError::Exposed { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            read_token_file(dir.path()),
            Err(TokenError::Blank(_))
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }
}
