//! Pre-started agents (`--prestart`): one agent per provider started and `initialize`d ahead
//! of need in an empty directory, replaced as soon as a new session takes it. When the engine
//! names a spare worktree (a pooled worktree already at the path its session will keep), the
//! parked agent also opens its ACP session there ahead of need (`session/new` with that
//! cwd), so the session that takes that spare skips `session/new` too: for some agents
//! (opencode) that is seconds of work per new directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex as AsyncMutex;

use super::connection::{AgentConn, Launch, SessionState};
use super::pool::{Pool, close_later};

/// An agent started and `initialize`d ahead of need, waiting for a new session to bind it to
/// a worktree.
pub(super) struct Prestarted {
    launch: Launch,
    conn: Arc<AgentConn>,
    pub(super) since: Instant,
    opened: Option<Preopened>,
}

impl Prestarted {
    pub(super) fn conn(&self) -> &Arc<AgentConn> {
        &self.conn
    }
}

/// A session opened ahead of need in `root`; the lock is held while `session/new` is in
/// flight, so whoever takes the agent waits for it instead of racing a second session.
#[derive(Clone)]
struct Preopened {
    root: PathBuf,
    session: Arc<AsyncMutex<Option<SessionState>>>,
}

/// A parked agent taken by a new session: with the session it opened ahead of need when that
/// was in the session's worktree.
pub(super) struct Taken {
    pub conn: Arc<AgentConn>,
    pub session: Option<SessionState>,
}

impl Pool {
    /// Keep one agent of `provider` started and `initialize`d ahead of need, parked in `dir`
    /// (an empty directory) until a new session binds it to its worktree. A changed launch
    /// (the provider entry was edited) replaces the parked agent.
    pub(super) fn prestart(self: &Arc<Self>, provider: &str, launch: Launch, dir: &Path) {
        {
            let mut inner = self.lock();
            inner
                .prestart
                .insert(provider.to_string(), (launch, dir.to_path_buf()));
        }
        self.refill(provider);
    }

    /// Start a replacement pre-started agent of `provider` in the background, unless one is
    /// parked (with the current launch) or starting.
    pub(super) fn refill(self: &Arc<Self>, provider: &str) {
        let (launch, dir, stale) = {
            let mut inner = self.lock();
            let Some((launch, dir)) = inner.prestart.get(provider).cloned() else {
                return;
            };
            let stale = match inner.prestarted.get(provider) {
                Some(p) if p.launch == launch && !p.conn.is_dead() => return,
                Some(_) => inner.prestarted.remove(provider).map(|p| p.conn),
                None => None,
            };
            if self.closed.is_cancelled() || !inner.starting.insert(provider.to_string()) {
                return;
            }
            (launch, dir, stale)
        };
        if let Some(c) = stale {
            close_later(c);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.lock().starting.remove(provider);
            return;
        };
        self.start_reaper();
        let (pool, provider) = (self.clone(), provider.to_string());
        rt.spawn(async move {
            // let the turn that took the parked agent answer its caller first
            tokio::time::sleep(crate::backend::YIELD_TO_CALLER).await;
            let started = match std::fs::create_dir_all(&dir) {
                Ok(()) => AgentConn::start(&launch, &dir).await,
                Err(e) => Err(e.into()),
            };
            {
                let mut inner = pool.lock();
                inner.starting.remove(&provider);
                match started {
                    Ok(conn) if !pool.closed.is_cancelled() => {
                        tracing::info!(provider, pid = ?conn.pid, "agent pre-started");
                        let parked = Prestarted {
                            launch,
                            conn: Arc::new(conn),
                            since: Instant::now(),
                            opened: None,
                        };
                        inner.prestarted.insert(provider.clone(), parked);
                    }
                    Ok(conn) => return close_later(Arc::new(conn)),
                    Err(e) => {
                        return tracing::warn!(provider, error = %e, "could not pre-start the agent");
                    }
                }
            }
            pool.open_ahead(&provider);
        });
    }

    /// Have the parked agent of `provider` open its session in `root` (a spare worktree)
    /// ahead of need: now if one is parked, else as soon as one is.
    pub fn preopen(self: &Arc<Self>, provider: &str, root: &Path) {
        self.lock()
            .targets
            .insert(provider.to_string(), root.to_path_buf());
        self.open_ahead(provider);
    }

    /// The worktree the parked agent of `provider` opens (or opened) its session in: a new
    /// session of that provider should take that spare.
    pub fn preopened_root(&self, provider: &str) -> Option<PathBuf> {
        self.lock().targets.get(provider).cloned()
    }

    /// Open the parked agent's session in its provider's target, unless it is open there.
    fn open_ahead(self: &Arc<Self>, provider: &str) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (conn, earlier, opened) = {
            let mut inner = self.lock();
            let Some(root) = inner.targets.get(provider).cloned() else {
                return;
            };
            let Some(parked) = inner.prestarted.get_mut(provider) else {
                return;
            };
            if parked.opened.as_ref().is_some_and(|o| o.root == root) {
                return;
            }
            let session = Arc::new(AsyncMutex::new(None));
            let Ok(guard) = session.clone().try_lock_owned() else {
                return;
            };
            let opened = Preopened { root, session };
            let earlier = parked.opened.replace(opened.clone());
            (parked.conn.clone(), earlier, (opened.root, guard))
        };
        let provider = provider.to_string();
        rt.spawn(async move {
            let (root, mut guard) = opened;
            // one session request at a time: an earlier opening finishes first
            if let Some(e) = earlier {
                drop(e.session.lock().await);
            }
            conn.shared.bind(root.clone());
            match conn.open_session(None).await {
                Ok(session) => {
                    tracing::info!(provider, root = %root.display(), "pre-started agent opened its session ahead of need");
                    *guard = Some(session);
                }
                Err(e) => {
                    tracing::warn!(provider, error = %e, "a pre-started agent could not open its session ahead of need")
                }
            }
        });
    }

    /// The parked agent of `provider` for a new session in `root`, if its launch is still
    /// current: with the session it opened ahead of need when that is in `root` (and
    /// `fresh_session`: no earlier ACP session is to be loaded), else bound to `root` for the
    /// caller to open one.
    pub(super) async fn take_prestarted(
        &self,
        provider: &str,
        launch: &Launch,
        root: &Path,
        fresh_session: bool,
    ) -> Option<Taken> {
        let parked = {
            let mut inner = self.lock();
            let parked = inner.prestarted.remove(provider)?;
            // the replacement waits for the engine's next offer (made after this session
            // refills the pool): the old target is taken, by this session or another
            inner.targets.remove(provider);
            parked
        };
        if parked.launch != *launch || parked.conn.is_dead() {
            close_later(parked.conn);
            return None;
        }
        let Ok(root) = root.canonicalize() else {
            close_later(parked.conn);
            return None;
        };
        if let Some(opened) = parked.opened {
            // wait for a `session/new` in flight: its answer must not land after ours
            let session = opened.session.lock().await.clone();
            if opened.root == root && fresh_session && session.is_some() {
                return Some(Taken {
                    conn: parked.conn,
                    session,
                });
            }
        }
        parked.conn.shared.bind(root);
        Some(Taken {
            conn: parked.conn,
            session: None,
        })
    }

    /// Pre-started agents parked now (for diagnostics and tests).
    pub fn prestarted(&self) -> usize {
        self.lock().prestarted.len()
    }
}
