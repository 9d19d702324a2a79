//! The client's roots (2025-11-25 sessions that declared `roots`): a task that names no
//! project runs in the first root that is a git repository and lies inside the allowed roots
//! (`--allow-root`; a client must not widen what the server may touch). Asked once per
//! connection when first needed, and again after `notifications/roots/list_changed`.
#![allow(deprecated)] // why: rmcp marks roots deprecated (SEP-2577); 2025-11-25 clients use them

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::service::Peer;
use tokio::sync::Mutex;

/// How long a client may take to list its roots before a task goes on without them.
const LIST_TIMEOUT: Duration = Duration::from_secs(3);

/// One connection's roots: `None` until asked (or after the client said they changed).
#[derive(Clone, Default)]
pub struct ClientRoots(Arc<Mutex<Option<Vec<PathBuf>>>>);

impl ClientRoots {
    /// The client's roots as local directories (none when it declared no roots capability).
    pub async fn of(&self, peer: &Peer<RoleServer>) -> Vec<PathBuf> {
        let declared = peer
            .peer_info()
            .is_some_and(|i| i.capabilities.roots.is_some());
        if !declared {
            return Vec::new();
        }
        let mut cached = self.0.lock().await;
        if let Some(r) = cached.as_ref() {
            return r.clone();
        }
        let roots: Vec<PathBuf> = match tokio::time::timeout(LIST_TIMEOUT, peer.list_roots()).await
        {
            Ok(Ok(r)) => r
                .roots
                .iter()
                .filter_map(|root| url::Url::parse(&root.uri).ok()?.to_file_path().ok())
                .collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the client did not list its roots");
                return Vec::new();
            }
            Err(_) => {
                tracing::debug!("the client did not list its roots in time");
                return Vec::new();
            }
        };
        *cached = Some(roots.clone());
        roots
    }

    /// The client's roots changed: ask again at the next task.
    pub async fn forget(&self) {
        *self.0.lock().await = None;
    }
}
