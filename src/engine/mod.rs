//! The engine: validates and persists requests, runs the dispatcher, and owns the only path
//! that touches the user's checkout (`apply`). The MCP edge and the CLI call into it; it calls
//! the store, the provider registry, backends and worktrees.

mod apply;
mod bootstrap;
mod budget;
mod catalog;
mod conflicts;
mod dispatcher;
mod liveness;
mod new_task;
mod pool;
mod questions;
mod reap;
mod rebase;
mod requests;
mod roots;
mod run;
mod sessions;
mod stats;
mod tasks;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::TaskState;
use crate::providers::{ProviderError, Registry};
use crate::store::{Store, StoreError};
use crate::worktree::{ConflictReport, WorktreeError};

pub use crate::store::UnappliedChange;
pub use catalog::{ConfigureProvider, Configured};
pub use conflicts::Overlap;
pub use new_task::{Caller, NewTask};
pub use questions::{Answered, Elicited, Elicitor};
pub use rebase::{RebaseResult, RebaseState};
pub use requests::{ApplyResult, ListRequest, OutputPage, OutputRequest, TaskListPage};
pub use roots::ClientRoots;
pub use stats::{GroupBy, StatsRow};

/// Longest a caller may block in one call: Claude Desktop drops results after ~60 s.
pub const MAX_WAIT: Duration = Duration::from_secs(50);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A request argument is wrong; `field` names it.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// The request is valid but the current state forbids it.
    #[error("{0}")]
    State(String),
    #[error("the pending change does not apply cleanly: {}", describe_conflict(.0))]
    Conflict(ConflictReport),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    #[error("the server is shutting down")]
    ShuttingDown,
}

fn describe_conflict(r: &ConflictReport) -> String {
    r.files
        .iter()
        .map(|f| format!("{} ({})", f.path, f.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Backends' per-session memory, kept in the store (the native loop's conversation).
struct StoreMemory(Store);

impl crate::backend::SessionMemory for StoreMemory {
    fn load<'a>(
        &'a self,
        session_id: &'a str,
    ) -> crate::backend::BoxFuture<'a, std::result::Result<Vec<serde_json::Value>, String>> {
        Box::pin(async move {
            let rows = self
                .0
                .native_messages(session_id)
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| {
                    serde_json::from_str(r).map_err(|e| format!("corrupt stored message: {e}"))
                })
                .collect()
        })
    }

    fn append<'a>(
        &'a self,
        session_id: &'a str,
        task_id: &'a str,
        items: Vec<serde_json::Value>,
    ) -> crate::backend::BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            let rows: Vec<String> = items.iter().map(|v| v.to_string()).collect();
            self.0
                .append_native_messages(session_id, task_id, &rows)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
    ) -> crate::backend::BoxFuture<'a, std::result::Result<Option<String>, String>> {
        Box::pin(async move {
            self.0
                .acp_session(session_id, provider_id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn set_acp_session<'a>(
        &'a self,
        session_id: &'a str,
        provider_id: &'a str,
        acp_session: &'a str,
    ) -> crate::backend::BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            self.0
                .set_acp_session(session_id, provider_id, acp_session)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A state change or progress line of one task, broadcast to waiters.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task_id: String,
    pub state: TaskState,
    pub message: Option<String>,
}

struct Running {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

pub(crate) struct Inner {
    store: Store,
    config: Config,
    registry: RwLock<Arc<Registry>>,
    backends: crate::backend::BackendShared,
    providers: catalog::ProviderState,
    wake: Notify,
    running: Mutex<HashMap<String, Running>>,
    /// Serialises a session's turn against apply/discard on its worktree.
    session_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    updates: broadcast::Sender<TaskUpdate>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pool: pool::PoolState,
    questions: questions::Questions,
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Open the store, recover what a dead process left behind, and start dispatching.
    pub async fn start(config: Config) -> Result<Engine> {
        std::fs::create_dir_all(&config.data_dir).map_err(WorktreeError::Io)?;
        std::fs::create_dir_all(config.worktrees_dir()).map_err(WorktreeError::Io)?;
        let store = Store::open(config.database_url.as_deref(), &config.database_path()).await?;
        store
            .register_node(&config.node_id, &config.host, std::process::id())
            .await?;
        crate::backend::process::set_node_tag(&config.node_id);
        let engine = Engine::with_store(config, store);
        engine.recover().await?;
        engine.spawn_dispatcher();
        engine.inner.prestart_agents();
        engine.start_probing().await;
        Ok(engine)
    }

    /// Open the store without dispatching, recovering or registering a node: for CLI verbs
    /// that read or act on tasks while a server (which owns dispatch) may be running.
    pub async fn open_client(config: Config) -> Result<Engine> {
        std::fs::create_dir_all(&config.data_dir).map_err(WorktreeError::Io)?;
        let store = Store::open(config.database_url.as_deref(), &config.database_path()).await?;
        Ok(Engine::with_store(config, store))
    }

    /// Node ids with a heartbeat within the lease: servers that will pick up queued tasks.
    pub async fn live_nodes(&self) -> Result<Vec<String>> {
        let since = crate::domain::now_ms() - self.inner.config.lease.as_millis() as i64;
        Ok(self.inner.store.live_nodes(since).await?)
    }

    /// Which database backs this engine (`sqlite` or `postgres`).
    pub fn store_backend(&self) -> &'static str {
        self.inner.store.backend_name()
    }

    fn with_store(config: Config, store: Store) -> Engine {
        let memory = Arc::new(StoreMemory(store.clone()));
        let backends = crate::backend::BackendShared::new(&config, memory);
        let registry = Inner::load_registry(&config, &backends);
        let (updates, _) = broadcast::channel(1024);
        Engine {
            inner: Arc::new(Inner {
                store,
                registry: RwLock::new(Arc::new(registry)),
                backends,
                providers: catalog::ProviderState::default(),
                config,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                session_locks: Mutex::new(HashMap::new()),
                updates,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                pool: Default::default(),
                questions: Default::default(),
            }),
        }
    }

    async fn recover(&self) -> Result<()> {
        self.inner.fail_dead_nodes().await?;
        self.inner.recover_applies().await;
        self.inner.reap_orphan_worktrees().await;
        Ok(())
    }

    fn spawn_dispatcher(&self) {
        let inner = self.inner.clone();
        self.inner.tracker.spawn(dispatcher::run(inner));
        let inner = self.inner.clone();
        self.inner.tracker.spawn(liveness::run(inner));
        if self.inner.config.listen
            && let Some(rx) = self.inner.store.listen(self.inner.shutdown.clone())
        {
            let inner = self.inner.clone();
            self.inner.tracker.spawn(liveness::wakeups(inner, rx));
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TaskUpdate> {
        self.inner.updates.subscribe()
    }

    /// Stop claiming, cancel in-flight turns (recorded `cancelled`), and wait for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let ids: Vec<String> = match self.inner.running.lock() {
            Ok(m) => m.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for id in ids {
            self.inner
                .signal_cancel(&id, "cancelled: the server shut down");
        }
        self.inner.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("in-flight turns did not stop within 10 s");
        }
        // Warm agents outlive turns; none may outlive the server.
        self.inner.backends.shutdown().await;
        if let Err(e) = self
            .inner
            .store
            .remove_node(&self.inner.config.node_id)
            .await
        {
            tracing::warn!(error = %e, "could not unregister this node");
        }
        self.inner.store.close().await;
    }
}

impl Inner {
    fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, task_id: &str, state: TaskState, message: Option<String>) {
        // why: no subscribers is the normal case when nobody is waiting.
        let _ = self.updates.send(TaskUpdate {
            task_id: task_id.into(),
            state,
            message,
        });
    }

    fn session_lock(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = match self.session_locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(session_id.to_string()).or_default().clone()
    }

    /// Fire a running task's token; false when this process is not running it.
    fn signal_cancel(&self, id: &str, reason: &str) -> bool {
        let map = match self.running.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match map.get(id) {
            Some(r) => {
                if let Ok(mut slot) = r.reason.lock() {
                    slot.get_or_insert_with(|| reason.to_string());
                }
                r.token.cancel();
                true
            }
            None => false,
        }
    }
}

/// Run blocking git work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorktreeError> + Send + 'static,
) -> Result<T, WorktreeError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(WorktreeError::Io(std::io::Error::other(format!(
            "git worker failed: {e}"
        )))),
    }
}

/// Canonical form of a user-supplied directory, or a clear error naming `field`.
fn canonical_dir(field: &'static str, raw: &str) -> Result<PathBuf> {
    let p = Path::new(raw);
    if raw.trim().is_empty() {
        return Err(EngineError::Invalid {
            field,
            message: "must not be empty".into(),
        });
    }
    let canon = p.canonicalize().map_err(|e| EngineError::Invalid {
        field,
        message: format!("`{raw}`: {e}"),
    })?;
    if !canon.is_dir() {
        return Err(EngineError::Invalid {
            field,
            message: format!("`{raw}` is not a directory"),
        });
    }
    Ok(canon)
}
