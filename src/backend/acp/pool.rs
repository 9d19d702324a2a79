//! Warm agents: one live process + ACP session per (boocoder session, provider), reused by
//! follow-up turns so they skip process start, `initialize` and `session/new`. Idle agents
//! are evicted after a TTL and beyond an LRU cap, never while a turn uses them. A dead agent
//! is dropped; the next turn starts a fresh one that loads the old ACP session when it can.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_client_protocol::v1::schema as s;
use tokio_util::sync::CancellationToken;

use super::connection::{AgentConn, Launch, SessionState};
use crate::backend::BackendError;

/// (boocoder session id, provider id).
pub(super) type Key = (String, String);

/// Limits of the warm pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// An agent idle this long is stopped.
    pub idle_ttl: Duration,
    /// Most live agents; the least recently used idle ones go first.
    pub max_live: usize,
    /// A turn whose agent sends nothing this long (while it waits on nothing of ours) is
    /// cancelled as stalled.
    pub stall: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            idle_ttl: Duration::from_secs(10 * 60),
            max_live: 8,
            stall: Duration::from_secs(300),
        }
    }
}

struct Entry {
    conn: Arc<AgentConn>,
    /// What started it: a changed provider entry restarts the agent at its next turn.
    launch: Launch,
    busy: bool,
    last_used: Instant,
}

#[derive(Default)]
pub(super) struct Inner {
    live: HashMap<Key, Entry>,
    /// At most one pre-started agent per provider id.
    pub(super) prestarted: HashMap<String, super::parked::Prestarted>,
    /// Providers whose pre-start is in flight (never two at once).
    pub(super) starting: std::collections::HashSet<String>,
    /// Providers to keep one agent pre-started for, with their launch and parking directory.
    pub(super) prestart: HashMap<String, (Launch, std::path::PathBuf)>,
    /// Per provider, the spare worktree its parked agent opens a session in ahead of need.
    pub(super) targets: HashMap<String, std::path::PathBuf>,
    /// The last ACP session of each key, kept after its agent died so a fresh agent can
    /// `session/load` it.
    sessions: HashMap<Key, s::SessionId>,
}

/// The engine-wide pool (held in `BackendShared`).
pub struct Pool {
    cfg: PoolConfig,
    /// Where each key's ACP session id is kept beyond this process (the store).
    memory: Arc<dyn crate::backend::SessionMemory>,
    inner: Mutex<Inner>,
    reaper: AtomicBool,
    pub(super) closed: CancellationToken,
}

/// What the key's warm agent offers a new turn.
enum Warm {
    Lease(Box<Lease>),
    None {
        previous: Option<s::SessionId>,
        relaunched: bool,
    },
}

/// A checked-out agent; returned to the pool (or stopped) when dropped.
pub(super) struct Lease {
    pool: Arc<Pool>,
    key: Key,
    pub conn: Arc<AgentConn>,
    pub session: SessionState,
    /// True when this turn started the process (for the transcript and latency figures).
    pub fresh: bool,
    /// True when the process was started and initialized ahead of need (`fresh` too: its
    /// session is new to it).
    pub prestarted: bool,
    /// How long this checkout took (start or bind, and opening the session).
    pub took: Duration,
    /// True when an earlier agent of this key died or was evicted (its session was offered
    /// to the new one via `session/load`/`session/resume`).
    pub restarted: bool,
    /// True when the earlier agent was stopped because its provider entry changed.
    pub relaunched: bool,
    keep: bool,
}

impl Lease {
    /// Stop the agent instead of keeping it warm (it misbehaved, or a cancel did not land).
    pub(super) fn discard(&mut self) {
        self.keep = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut inner = self.pool.lock();
        let alive = self.keep && !self.conn.is_dead() && !self.pool.closed.is_cancelled();
        if alive {
            if let Some(e) = inner.live.get_mut(&self.key) {
                e.busy = false;
                e.last_used = Instant::now();
            }
        } else if inner
            .live
            .get(&self.key)
            .is_some_and(|e| Arc::ptr_eq(&e.conn, &self.conn))
        {
            inner.live.remove(&self.key);
            close_later(self.conn.clone());
        }
        drop(inner);
        self.pool.enforce_cap();
        // A parked agent taken (or stopped for idling) is replaced once this turn is over, so
        // starting the replacement does not slow the turn down.
        self.pool.refill(&self.key.1);
    }
}

/// Stop an agent in the background. Outside a runtime, dropping the last handle still kills
/// its process group (the connection's guard does).
pub(super) fn close_later(conn: Arc<AgentConn>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move { conn.close().await });
    }
}

impl Pool {
    pub fn new(cfg: PoolConfig, memory: Arc<dyn crate::backend::SessionMemory>) -> Pool {
        Pool {
            cfg,
            memory,
            inner: Mutex::new(Inner::default()),
            reaper: AtomicBool::new(false),
            closed: CancellationToken::new(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn stall(&self) -> Duration {
        self.cfg.stall
    }

    /// Live agent processes (for diagnostics and tests).
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// The warm agent of `key`, or a new one started in `root` with its session open.
    pub(super) async fn checkout(
        self: &Arc<Self>,
        key: Key,
        launch: &Launch,
        root: &Path,
    ) -> Result<Lease, BackendError> {
        if self.closed.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        self.start_reaper();
        let (previous, relaunched) = match self.warm(&key, launch)? {
            Warm::Lease(lease) => return Ok(*lease),
            Warm::None {
                previous,
                relaunched,
            } => (previous, relaunched),
        };
        let previous = self.stored_session(&key, previous).await;
        let began = Instant::now();
        let parked = self
            .take_prestarted(&key.1, launch, root, previous.is_none())
            .await;
        let (conn, opened, prestarted) = match parked {
            Some(taken) => (taken.conn, taken.session, true),
            None => (Arc::new(AgentConn::start(launch, root).await?), None, false),
        };
        let session = match opened {
            Some(session) => session,
            None => match conn.open_session(previous.as_ref()).await {
                Ok(s) => s,
                Err(e) => {
                    conn.close().await;
                    return Err(e);
                }
            },
        };
        if previous.as_ref() != Some(&session.id)
            && let Err(e) = self
                .memory
                .set_acp_session(&key.0, &key.1, &session.id.0)
                .await
        {
            tracing::warn!(error = %e, "could not store the ACP session id");
        }
        self.register(&key, &conn, launch, &session.id);
        Ok(Lease {
            pool: self.clone(),
            key,
            conn,
            session,
            fresh: true,
            prestarted,
            took: began.elapsed(),
            restarted: previous.is_some(),
            relaunched,
            keep: true,
        })
    }

    /// The key's warm agent checked out, if it has a live one with the current launch;
    /// otherwise what a fresh agent needs: the ACP session to load, and whether the old agent
    /// was stopped because its provider entry changed.
    fn warm(self: &Arc<Self>, key: &Key, launch: &Launch) -> Result<Warm, BackendError> {
        let mut inner = self.lock();
        let mut relaunched = false;
        let stale = match inner.live.get_mut(key) {
            Some(e) if e.conn.is_dead() => true,
            Some(e) if e.launch != *launch && !e.busy => {
                relaunched = true;
                true
            }
            Some(e) if e.busy => {
                return Err(BackendError::Agent(
                    "this session's agent is busy with another turn".into(),
                ));
            }
            Some(e) => match e.conn.session() {
                Some(session) => {
                    e.busy = true;
                    return Ok(Warm::Lease(Box::new(Lease {
                        pool: self.clone(),
                        key: key.clone(),
                        conn: e.conn.clone(),
                        session,
                        fresh: false,
                        prestarted: false,
                        took: Duration::ZERO,
                        restarted: false,
                        relaunched: false,
                        keep: true,
                    })));
                }
                None => true,
            },
            None => false,
        };
        if stale && let Some(old) = inner.live.remove(key) {
            close_later(old.conn);
        }
        Ok(Warm::None {
            previous: inner.sessions.get(key).cloned(),
            relaunched,
        })
    }

    /// The session to load: this process's memory, else the store's (after a restart, or on
    /// another node, only the store knows the conversation).
    async fn stored_session(&self, key: &Key, known: Option<s::SessionId>) -> Option<s::SessionId> {
        if known.is_some() {
            return known;
        }
        match self.memory.acp_session(&key.0, &key.1).await {
            Ok(stored) => stored.map(s::SessionId::new),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the stored ACP session");
                None
            }
        }
    }

    /// Keep a freshly started agent as the key's warm agent (busy: a turn holds it).
    fn register(&self, key: &Key, conn: &Arc<AgentConn>, launch: &Launch, session: &s::SessionId) {
        {
            let mut inner = self.lock();
            inner.sessions.insert(key.clone(), session.clone());
            let entry = Entry {
                conn: conn.clone(),
                launch: launch.clone(),
                busy: true,
                last_used: Instant::now(),
            };
            if let Some(old) = inner.live.insert(key.clone(), entry) {
                close_later(old.conn);
            }
        }
        self.enforce_cap();
    }

    /// Stop the least recently used idle agents beyond the cap.
    fn enforce_cap(&self) {
        let victims: Vec<Arc<AgentConn>> = {
            let mut inner = self.lock();
            let mut idle: Vec<(Key, Instant)> = inner
                .live
                .iter()
                .filter(|(_, e)| !e.busy)
                .map(|(k, e)| (k.clone(), e.last_used))
                .collect();
            let excess = inner.live.len().saturating_sub(self.cfg.max_live);
            idle.sort_by_key(|(_, t)| *t);
            idle.into_iter()
                .take(excess)
                .filter_map(|(k, _)| inner.live.remove(&k).map(|e| e.conn))
                .collect()
        };
        for c in victims {
            tracing::info!(pid = ?c.pid, "evicting the least recently used idle agent (pool cap)");
            close_later(c);
        }
    }

    /// Stop agents idle longer than the TTL; returns how many.
    pub(super) async fn evict_idle(&self) -> usize {
        let now = Instant::now();
        let victims: Vec<Arc<AgentConn>> = {
            let mut inner = self.lock();
            let keys: Vec<Key> = inner
                .live
                .iter()
                .filter(|(_, e)| {
                    !e.busy
                        && (e.conn.is_dead()
                            || now.duration_since(e.last_used) >= self.cfg.idle_ttl)
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter()
                .filter_map(|k| inner.live.remove(k).map(|e| e.conn))
                .collect()
        };
        let parked: Vec<Arc<AgentConn>> = {
            let mut inner = self.lock();
            let gone: Vec<String> = inner
                .prestarted
                .iter()
                .filter(|(_, p)| {
                    p.conn().is_dead() || now.duration_since(p.since) >= self.cfg.idle_ttl
                })
                .map(|(k, _)| k.clone())
                .collect();
            gone.iter()
                .filter_map(|k| inner.prestarted.remove(k).map(|p| p.conn().clone()))
                .collect()
        };
        for c in parked {
            tracing::info!(pid = ?c.pid, "stopping a pre-started agent nobody took");
            c.close().await;
        }
        let n = victims.len();
        for c in victims {
            tracing::info!(pid = ?c.pid, "evicting an idle agent");
            c.close().await;
        }
        n
    }

    pub(super) fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::SeqCst) {
            return;
        }
        // The reaper holds only a weak handle: it must not keep a dropped pool alive.
        let weak = Arc::downgrade(self);
        let every =
            (self.cfg.idle_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let closed = self.closed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = closed.cancelled() => return,
                }
                let Some(pool) = weak.upgrade() else { return };
                pool.evict_idle().await;
            }
        });
    }

    /// Stop the agents of a closed session and forget its ACP sessions.
    pub async fn close_session(&self, session_id: &str) {
        let victims: Vec<Arc<AgentConn>> = {
            let mut inner = self.lock();
            inner.sessions.retain(|(s, _), _| s != session_id);
            let keys: Vec<Key> = inner
                .live
                .keys()
                .filter(|(s, _)| s == session_id)
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|k| inner.live.remove(k).map(|e| e.conn))
                .collect()
        };
        futures::future::join_all(victims.iter().map(|c| c.close())).await;
    }

    /// Stop every agent (server shutdown). Later checkouts are refused.
    pub async fn shutdown(&self) {
        self.closed.cancel();
        let all: Vec<Arc<AgentConn>> = {
            let mut inner = self.lock();
            let parked: Vec<_> = inner
                .prestarted
                .drain()
                .map(|(_, p)| p.conn().clone())
                .collect();
            inner
                .live
                .drain()
                .map(|(_, e)| e.conn)
                .chain(parked)
                .collect()
        };
        futures::future::join_all(all.iter().map(|c| c.close())).await;
    }
}
