//! The engine: validates and persists requests, runs the dispatcher, and owns the only path
//! that touches the user's checkout (`apply`). The MCP edge and the CLI call into it; it calls
//! the store, the provider registry, backends and worktrees.

mod apply;
mod bootstrap;
mod catalog;
mod dispatcher;
mod liveness;
mod new_task;
mod pool;
mod requests;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::{ChangeStatus, PendingChange, Session, Task, TaskState};
use crate::providers::{ProviderError, Registry};
use crate::store::{Store, StoreError};
use crate::worktree::{self, ConflictReport, WorktreeError};

pub use catalog::{ConfigureProvider, Configured};
pub use new_task::NewTask;
pub use requests::{ApplyResult, ListRequest, OutputPage, OutputRequest, TaskListPage};

/// A worktree directory without a session is reaped only once it is this old.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(600);

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
    backends: crate::providers::BackendShared,
    providers: catalog::ProviderState,
    wake: Notify,
    running: Mutex<HashMap<String, Running>>,
    /// Serialises a session's turn against apply/discard on its worktree.
    session_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    updates: broadcast::Sender<TaskUpdate>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pool: pool::PoolState,
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
        let backends = crate::providers::BackendShared::new(&config, memory);
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

    /// Validate and queue a task; returns at once with the stored row.
    pub async fn submit(&self, req: NewTask) -> Result<Task> {
        if self.inner.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let sampler = req.sampler.clone();
        let new_task::Validated { row, native } = new_task::validate_new_task(self, req).await?;
        // Registered before the row exists, so the dispatcher can never claim the task first.
        if let (Some(s), Some(new_task::NativeRoute::Sampling)) = (sampler, native) {
            self.inner.backends.samplers.insert(&row.id, s);
        }
        let task = match self.inner.store.insert_task(&row).await {
            Ok(t) => t,
            Err(e) => {
                drop(self.inner.backends.samplers.take(&row.id));
                return Err(e.into());
            }
        };
        tracing::info!(task_id = %task.id, session_id = %task.session_id, provider = %task.provider, "task queued");
        self.inner.publish(&task.id, TaskState::Pending, None);
        self.inner.wake.notify_one();
        Ok(task)
    }

    pub async fn task(&self, id: &str) -> Result<Task> {
        self.inner
            .store
            .task(id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "task",
                id: id.into(),
            })
    }

    pub async fn session(&self, id: &str) -> Result<Session> {
        self.inner
            .store
            .session(id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "session",
                id: id.into(),
            })
    }

    /// Tokens summed over every turn of a session.
    pub async fn session_usage(&self, session_id: &str) -> Result<crate::domain::Usage> {
        Ok(self.inner.store.session_usage(session_id).await?)
    }

    /// Block until `done(task)` holds or `timeout` passes; returns the latest row either way.
    /// Progress lines are forwarded to `progress` as they arrive.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Task) -> bool,
        progress: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Task> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let task = self.task(id).await?;
            if done(&task) || tokio::time::Instant::now() >= deadline {
                return Ok(task);
            }
            // Re-read the row on every update of this task, and every second as a safety net
            // (updates from other processes do not arrive here).
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    u = rx.recv() => match u {
                        Ok(u) if u.task_id == id => {
                            if let (Some(p), Some(m)) = (progress, u.message) {
                                // why: a gone receiver means the caller stopped listening.
                                let _ = p.send(m);
                            }
                            break;
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = &mut tick => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    pub async fn list(&self, req: requests::ListRequest) -> Result<TaskListPage> {
        requests::list(self, req).await
    }

    /// Stop a pending or running task. Returns the task once it is terminal (or after a short
    /// grace if the agent is slow to stop).
    pub async fn cancel(&self, id: &str) -> Result<Task> {
        let task = self.task(id).await?;
        if task.state.is_terminal() {
            return Err(EngineError::State(format!(
                "task `{id}` is already {}; nothing to cancel",
                task.state
            )));
        }
        if self
            .inner
            .store
            .cancel_pending(id, "cancelled by request")
            .await?
        {
            self.inner.publish(id, TaskState::Cancelled, None);
            return self.task(id).await;
        }
        // Running (or claimed a moment ago): signal its token; the run path records the end.
        // When another process runs it, leave a request that process picks up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.inner.signal_cancel(id, "cancelled by request")
                || self.inner.store.request_cancel(id).await?
            {
                break;
            }
            let t = self.task(id).await?;
            if t.state.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_until(id, Duration::from_secs(5), |t| t.state.is_terminal(), None)
            .await
    }

    pub async fn output(&self, req: OutputRequest) -> Result<OutputPage> {
        requests::output(self, req).await
    }

    /// The session's live pending change, looked up by task id or session id.
    async fn change_target(&self, target: &str) -> Result<(Session, Option<PendingChange>)> {
        let session_id = if target.starts_with("s-") {
            target.to_string()
        } else {
            self.task(target).await?.session_id
        };
        let session = self.session(&session_id).await?;
        let change = self.inner.store.pending_change(&session.id).await?;
        Ok((session, change))
    }

    /// Drop a session's pending change and reset its worktree to the base, so the next turn
    /// starts clean instead of re-offering the discarded edits.
    pub async fn discard(&self, target: &str) -> Result<ApplyResult> {
        let (session, change) = self.change_target(target).await?;
        self.require_local(&session)?;
        let _turns = self.lock_idle_session(&session, "cancel it before discarding")?;
        let change = self.require_pending(&session, change).await?;
        let wt = worktree_path(&session)?;
        let base = change.base_commit.clone();
        let b2 = base.clone();
        blocking(move || worktree::reset(&wt, &b2)).await?;
        self.inner
            .store
            .settle_change(change.id, ChangeStatus::Discarded, &session.id, &base)
            .await?;
        Ok(ApplyResult {
            session_id: session.id,
            task_id: change.task_id,
            dry_run: false,
            files: change.files,
        })
    }

    /// The session's turn lock, taken only when no turn holds it: apply and discard refuse
    /// rather than wait behind a turn; `advice` says what to do instead.
    fn lock_idle_session(
        &self,
        session: &Session,
        advice: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        self.inner
            .session_lock(&session.id)
            .try_lock_owned()
            .map_err(|_| {
                EngineError::State(format!(
                    "a turn is running in session `{}`; {advice}",
                    session.id
                ))
            })
    }

    /// A session's worktree is on the machine that created it; only nodes there can touch it.
    fn require_local(&self, session: &Session) -> Result<()> {
        match &session.host {
            Some(h) if *h != self.inner.config.host => Err(EngineError::State(format!(
                "session `{}` lives on host `{h}`; call this on a boocoder node running there",
                session.id
            ))),
            _ => Ok(()),
        }
    }

    async fn require_pending(
        &self,
        session: &Session,
        change: Option<PendingChange>,
    ) -> Result<PendingChange> {
        if let Some(c) = change {
            return Ok(c);
        }
        let latest = self.inner.store.latest_change(&session.id).await?;
        Err(EngineError::State(match latest {
            Some(c) => format!(
                "session `{}` has no pending change: its last change (from task `{}`) was already {}",
                session.id,
                c.task_id,
                c.status.as_str()
            ),
            None => format!(
                "session `{}` has no pending change: its turns changed no files",
                session.id
            ),
        }))
    }

    /// Close a session: stop its warm agents, remove its worktree and branch, and refuse
    /// further turns in it. Refused while a turn is queued or running, and (unless `force`)
    /// while it holds an unapplied change, so closing never loses work silently.
    pub async fn close_session(&self, target: &str, force: bool) -> Result<Session> {
        let (session, change) = self.change_target(target).await?;
        if session.closed {
            return Ok(session);
        }
        self.require_local(&session)?;
        if self.inner.store.session_busy(&session.id).await? {
            return Err(EngineError::State(format!(
                "session `{}` has a turn queued or running; wait for it or cancel it first",
                session.id
            )));
        }
        if change.is_some() && !force {
            return Err(EngineError::State(format!(
                "session `{}` holds an unapplied change; apply_pending or discard_pending it first",
                session.id
            )));
        }
        if !force {
            let files = self.inner.queue_unrecorded_edits(&session).await?;
            if !files.is_empty() {
                let names: Vec<&str> = files.iter().take(5).map(|f| f.path.as_str()).collect();
                return Err(EngineError::State(format!(
                    "session `{}`'s worktree holds edits no change recorded ({} file(s): {}{}), e.g. from a turn a crash interrupted; \
                     they are now its pending change: apply_pending or discard_pending it first",
                    session.id,
                    files.len(),
                    names.join(", "),
                    if files.len() > names.len() {
                        ", …"
                    } else {
                        ""
                    }
                )));
            }
        }
        self.inner.close_session(&session).await?;
        self.session(&session.id).await
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

    async fn close_session(&self, session: &Session) -> Result<()> {
        let lock = self.session_lock(&session.id);
        let _guard = lock.lock().await;
        self.backends.close_session(&session.id).await;
        if let (Some(wt), Some(branch)) = (&session.worktree_path, &session.branch) {
            let (project, wt, branch) = (
                PathBuf::from(&session.project_path),
                PathBuf::from(wt),
                branch.clone(),
            );
            blocking(move || worktree::remove(&project, &wt, &branch)).await?;
        }
        self.store.close_session(&session.id).await?;
        tracing::info!(session_id = %session.id, "session closed; worktree removed");
        Ok(())
    }

    /// Close sessions idle longer than the TTL that hold nothing unapplied and have no turn
    /// in flight: their worktrees would otherwise pile up in the data directory.
    pub(super) async fn reap_idle_sessions(&self) {
        let before = crate::domain::now_ms() - self.config.session_ttl.as_millis() as i64;
        let idle = match self.store.idle_sessions(before, &self.config.host).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing idle sessions failed");
                return;
            }
        };
        for s in idle {
            if let Err(e) = self.close_session(&s).await {
                tracing::warn!(session_id = %s.id, error = %e, "could not close an idle session");
            }
        }
    }

    /// Remove worktree directories nobody will use again: those of closed sessions (a crash
    /// can leave one behind, e.g. a worktree created but never recorded is not removed when
    /// its session closes), and those no session owns when they hold no work. Runs at
    /// start-up and then periodically.
    pub(super) async fn reap_orphan_worktrees(&self) {
        let dir = self.config.worktrees_dir();
        let known: std::collections::HashSet<PathBuf> =
            match self.store.sessions_with_worktrees().await {
                Ok(s) => s
                    .into_iter()
                    .filter_map(|s| s.worktree_path.map(PathBuf::from))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "reaper: cannot list sessions; skipping");
                    return;
                }
            };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) => return,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if known.contains(&path) || !path.is_dir() {
                continue;
            }
            // Another process sharing this data directory may be creating the worktree of a
            // session right now (the directory exists before the row records it): a session
            // that still exists keeps its directory, and young directories are left alone.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match self.store.session(name).await {
                Ok(Some(s)) if !s.closed => continue,
                Ok(Some(s)) => {
                    self.reap_closed_worktree(&s, path).await;
                    continue;
                }
                _ => {}
            }
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < ORPHAN_MIN_AGE);
            if young {
                continue;
            }
            let p2 = path.clone();
            match blocking(move || worktree::remove_if_clean(&p2)).await {
                Ok(true) => tracing::info!(path = %path.display(), "reaped orphan worktree"),
                Ok(false) => {
                    tracing::warn!(path = %path.display(), "orphan worktree holds unsaved work; kept")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not reap orphan worktree")
                }
            }
        }
    }

    /// A closed session's worktree is garbage whatever it holds: closing refuses while a
    /// change is pending unless forced, so its files were applied, discarded or given up.
    async fn reap_closed_worktree(&self, s: &Session, path: PathBuf) {
        let project = PathBuf::from(&s.project_path);
        let branch = s.branch.clone().unwrap_or_default();
        let p2 = path.clone();
        match blocking(move || worktree::remove_closed(&project, &p2, &branch)).await {
            Ok(false) => {
                tracing::warn!(session_id = %s.id, path = %path.display(), "removed the worktree a closed session left behind")
            }
            Ok(true) => {
                tracing::warn!(session_id = %s.id, path = %path.display(), "removed the worktree a closed session left behind, with the uncommitted files in it")
            }
            Err(e) => {
                tracing::warn!(session_id = %s.id, path = %path.display(), error = %e, "could not remove the worktree a closed session left behind")
            }
        }
    }
}

fn worktree_path(session: &Session) -> Result<PathBuf> {
    session
        .worktree_path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| EngineError::State(format!("session `{}` has no worktree yet", session.id)))
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
