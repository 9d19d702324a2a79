//! What backends keep across turns, owned by the engine: the warm ACP agents and the native
//! loop's state. The registry builds a backend per turn (so a providers-file reload applies at
//! once) while these outlive turns.

use std::sync::Arc;

use super::SessionMemory;
use super::acp::Pool;
use super::native::{NativeShared, Samplers};
use crate::config::Config;

/// Long-lived state backends share across turns; one per engine, so a registry reload keeps
/// warm agents.
pub struct BackendShared {
    pub(crate) acp: Arc<Pool>,
    /// The native loop's state; `None` only when its HTTP client could not be built.
    pub native: Option<Arc<NativeShared>>,
    /// Whether an endpoint is configured (else native runs only through MCP sampling).
    pub native_endpoint: bool,
    /// Why the native loop cannot run at all.
    pub native_error: Option<String>,
    /// MCP samplers of queued tasks, for native turns without an endpoint.
    pub samplers: Arc<Samplers>,
    /// What backends remember between a session's turns (the CLI agents' conversations).
    pub(crate) memory: Arc<dyn SessionMemory>,
}

impl BackendShared {
    pub fn new(config: &Config, memory: Arc<dyn SessionMemory>) -> BackendShared {
        let endpoint = config.llm.clone();
        let limits = config.native.clone();
        let samplers = Arc::new(Samplers::default());
        let acp = Arc::new(Pool::new(config.acp_pool, memory.clone()));
        let native_endpoint = endpoint.is_some();
        match NativeShared::new(endpoint, limits, memory.clone(), samplers.clone()) {
            Ok(n) => BackendShared {
                acp,
                native: Some(Arc::new(n)),
                native_endpoint,
                native_error: None,
                samplers,
                memory,
            },
            Err(e) => {
                tracing::error!(error = %e, "the native provider cannot start");
                BackendShared {
                    acp,
                    native: None,
                    native_endpoint,
                    native_error: Some(e.to_string()),
                    samplers,
                    memory,
                }
            }
        }
    }

    /// Live ACP agent processes.
    pub fn live_agents(&self) -> usize {
        self.acp.live()
    }

    /// Stop the warm agents of a session that was closed.
    pub async fn close_session(&self, session_id: &str) {
        self.acp.close_session(session_id).await;
    }

    /// Stop every long-lived agent process (server shutdown).
    pub async fn shutdown(&self) {
        self.acp.shutdown().await;
    }
}
