//! A small MCP client for a remote boocoder (`boocoder --url … <verb>`): the CLI verbs talk to
//! a running Streamable HTTP server through the same tools an LLM client uses.

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{tool}: {message}")]
    Transport { tool: String, message: String },
    /// The tool ran and reported an error (bad argument, conflict, unknown task…).
    #[error("{0}")]
    Tool(String),
    /// The tool answered with a result of another shape (a server of another version).
    #[error("{tool}: unexpected result: {message}")]
    Decode { tool: String, message: String },
}

/// Forwards progress messages (e.g. the latest transcript line of a waited-on task).
#[derive(Clone)]
struct Handler {
    progress: Arc<mpsc::UnboundedSender<String>>,
}

impl ClientHandler for Handler {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(m) = params.message {
            // why: nobody listening just means the caller does not show progress.
            let _ = self.progress.send(m);
        }
    }
}

pub struct RemoteClient {
    service: RunningService<RoleClient, Handler>,
}

impl RemoteClient {
    /// Connect to `url` (e.g. `http://127.0.0.1:8765/mcp`); progress lines go to the returned
    /// receiver.
    pub async fn connect(
        url: &str,
        token: Option<&str>,
    ) -> Result<(RemoteClient, mpsc::UnboundedReceiver<String>), RemoteError> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
        if let Some(t) = token {
            config = config.auth_header(t.to_string());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handler = Handler {
            progress: Arc::new(tx),
        };
        let service = handler
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(|e| {
                let mut message = e.to_string();
                if message.contains("Auth required") || message.contains("401") {
                    message.push_str(if token.is_some() {
                        ": the server refused the token"
                    } else {
                        ": the server wants a bearer token; pass --token (or BOOCODER_TOKEN), or \
                         --data-dir of the server on this machine (its DATA_DIR/http-token)"
                    });
                }
                RemoteError::Connect {
                    url: url.into(),
                    message,
                }
            })?;
        Ok((RemoteClient { service }, rx))
    }

    /// Call a tool; its structured result decoded as `T` (the tool's result type), or the
    /// tool's error text.
    pub async fn call<T: DeserializeOwned>(
        &self,
        tool: &str,
        args: Value,
    ) -> Result<T, RemoteError> {
        let params = CallToolRequestParams::new(tool.to_string())
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        let r = self
            .service
            .call_tool(params)
            .await
            .map_err(|e| RemoteError::Transport {
                tool: tool.into(),
                message: e.to_string(),
            })?;
        if r.is_error == Some(true) {
            let text: Vec<String> = r
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            return Err(RemoteError::Tool(text.join("\n")));
        }
        serde_json::from_value(r.structured_content.unwrap_or(Value::Null)).map_err(|e| {
            RemoteError::Decode {
                tool: tool.into(),
                message: e.to_string(),
            }
        })
    }

    /// The server's name and version from the handshake.
    pub fn server(&self) -> String {
        self.service
            .peer_info()
            .map(|i| match &i.server_info {
                Some(s) => format!("{} {} (MCP {})", s.name, s.version, i.protocol_version),
                None => format!("a server speaking MCP {}", i.protocol_version),
            })
            .unwrap_or_else(|| "unknown server".into())
    }

    pub async fn close(self) {
        // why: the server may already be gone; there is nothing left to do either way.
        let _ = self.service.cancel().await;
    }
}
