//! A transport wrapper for stdio that keeps stray messages from ending the session before it
//! starts. rmcp's handshake answers requests that come before `initialize` with an error (and
//! pings with a result), but a notification or a response there fails the handshake, and the
//! server would exit 1. The spec only says clients SHOULD NOT send them, so they are ignored.
//! A request without the metadata of a stateless (2026-07-28) call is answered here with an
//! error that says to initialize first, instead of rmcp's list of missing `_meta` keys.

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, GetMeta, ProtocolVersion, ServerJsonRpcMessage,
};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

pub struct PreInit<T> {
    inner: T,
    /// Set once a message that starts a lifecycle passed: from then on everything does.
    started: bool,
}

impl<T> PreInit<T> {
    pub fn new(inner: T) -> PreInit<T> {
        PreInit {
            inner,
            started: false,
        }
    }
}

/// Whether rmcp's handshake starts a lifecycle on this request: `initialize`, or (2026-07-28,
/// stateless) any other request but ping and discover that carries the per-request metadata.
fn starts_lifecycle(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::InitializeRequest(_) => true,
        ClientRequest::PingRequest(_) | ClientRequest::DiscoverRequest(_) => false,
        other => {
            other.get_meta().protocol_version().is_some()
                && other
                    .get_meta()
                    .missing_required_keys(&ProtocolVersion::V_2026_07_28)
                    .is_empty()
        }
    }
}

const NOT_INITIALIZED: &str = "not initialized: send `initialize` first (or, with protocol \
2026-07-28, protocolVersion and clientCapabilities in each request's _meta)";

/// A request rmcp would refuse for lack of a lifecycle: not initialize, ping or discover, and
/// no per-request protocol version.
fn needs_initialize(request: &ClientRequest) -> bool {
    !matches!(
        request,
        ClientRequest::InitializeRequest(_)
            | ClientRequest::PingRequest(_)
            | ClientRequest::DiscoverRequest(_)
    ) && request.get_meta().protocol_version().is_none()
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for PreInit<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let message: ClientJsonRpcMessage = self.inner.receive().await?;
            if self.started {
                return Some(message);
            }
            match &message {
                ClientJsonRpcMessage::Request(r) if needs_initialize(&r.request) => {
                    tracing::debug!(id = %r.id, "answered a request sent before initialize");
                    let reply = ServerJsonRpcMessage::error(
                        ErrorData::invalid_request(NOT_INITIALIZED, None),
                        Some(r.id.clone()),
                    );
                    if let Err(e) = self.inner.send(reply).await {
                        tracing::debug!(error = %e, "could not answer a request before initialize");
                    }
                }
                ClientJsonRpcMessage::Request(r) => {
                    self.started = starts_lifecycle(&r.request);
                    return Some(message);
                }
                ClientJsonRpcMessage::Notification(n) => {
                    tracing::debug!(notification = ?n.notification, "ignored a notification sent before initialize");
                }
                ClientJsonRpcMessage::Response(r) => {
                    tracing::debug!(id = %r.id, "ignored a response sent before initialize");
                }
                ClientJsonRpcMessage::Error(e) => {
                    tracing::debug!(error = ?e.error, "ignored an error response sent before initialize");
                }
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
