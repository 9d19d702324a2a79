//! The client's roots (2025-11-25 sessions that declared `roots`), asked once per connection
//! when first needed and again after `notifications/roots/list_changed`. What they permit is
//! the engine's decision (`engine::ClientRoots`): a task that names no project runs in the
//! first that is an allowed git repository; over stdio they also count as allowed roots for
//! this connection, over HTTP they never widen them.
#![allow(deprecated)] // why: rmcp marks roots deprecated (SEP-2577); 2025-11-25 clients use them

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::service::Peer;

use crate::engine::ClientRoots;
use tokio::sync::Mutex;

/// How long a client may take to list its roots before a request goes on without them.
const LIST_TIMEOUT: Duration = Duration::from_secs(3);

/// One connection's roots: `None` until asked (or after the client said they changed).
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Option<Vec<PathBuf>>>>);

impl Cache {
    /// The client's roots as local paths (none when it declared no roots capability).
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
            Ok(Ok(r)) => r.roots.iter().filter_map(|r| local_path(&r.uri)).collect(),
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

    /// The client's roots changed: ask again at the next request that needs them.
    pub async fn forget(&self) {
        *self.0.lock().await = None;
    }
}

/// The local path a root names: only a `file:` URI without a host (or `localhost`) is one; a
/// root on another machine, another scheme, or no URI at all is ignored.
fn local_path(uri: &str) -> Option<PathBuf> {
    let url = url::Url::parse(uri).ok()?;
    let path = (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten();
    if path.is_none() {
        tracing::debug!(uri, "client root is no local file URI; ignored");
    }
    path
}

impl super::McpServer {
    /// The roots of the client on `peer`, with what they permit on this transport.
    pub(super) async fn client_roots(&self, peer: &Peer<RoleServer>) -> ClientRoots {
        let paths = self.roots.of(peer).await;
        if self.local_client {
            ClientRoots::local(paths)
        } else {
            ClientRoots::remote(paths)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;
    use std::path::Path;

    #[test]
    fn only_local_file_uris_are_roots() {
        assert_eq!(
            local_path("file:///home/u/app").as_deref(),
            Some(Path::new("/home/u/app"))
        );
        assert_eq!(
            local_path("file://localhost/home/u/app").as_deref(),
            Some(Path::new("/home/u/app"))
        );
        assert_eq!(
            local_path("file:///a%20b").as_deref(),
            Some(Path::new("/a b"))
        );
        for not_local in [
            "file://elsewhere.example/home/u/app",
            "http://localhost/home/u/app",
            "https://example.com/repo",
            "home/u/app",
            "./app",
            "/home/u/app",
            "",
        ] {
            assert_eq!(local_path(not_local), None, "{not_local}");
        }
    }
}
