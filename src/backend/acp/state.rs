//! The state an agent's connection shares between the turn driver (`connection.rs`,
//! `mod.rs`) and the client-side handlers (`handlers.rs`): both import it from here, so
//! neither needs the other for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::permissions::PermissionCtx;
use super::terminals::Terminals;
use crate::backend::TurnEvent;
use crate::backend::process::StderrLog;

/// The running turn, as the handlers see it.
#[derive(Clone)]
pub(super) struct TurnSlot {
    pub perm: PermissionCtx,
    /// The agent's message text of this turn (the final message).
    pub text: Arc<Mutex<String>>,
}

/// State the handlers share with the turn driver.
pub(super) struct Shared {
    /// The session's worktree: fs requests and terminals are confined to it. Set when the
    /// agent starts, or when a pre-started agent is given its session (`bind`).
    root: Mutex<PathBuf>,
    pub client_fs: bool,
    turn: Mutex<Option<TurnSlot>>,
    pub terminals: Terminals,
    pub stderr: StderrLog,
    /// The latest slash commands the agent announced (for probes and the transcript).
    pub commands: Mutex<Vec<String>>,
    /// Whether `commands` reached a transcript; agents announce them right after
    /// `session/new`, before any turn listens.
    commands_sent: AtomicBool,
    pub activity: Arc<Activity>,
    /// The open session's cumulative cost as last reported (`usage_update`).
    pub cost: Mutex<super::usage::CostSeen>,
}

/// When the agent last sent anything, and how many of its requests we are still answering
/// (a permission question waiting on a person, a terminal it waits for): silence while it
/// waits on us is ours, not a stall.
pub(super) struct Activity {
    last: Mutex<Instant>,
    waiting_on_us: AtomicUsize,
}

/// One agent request we are answering; the agent is not silent on its own account meanwhile.
pub(super) struct Hold(Arc<Activity>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.waiting_on_us.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last: Mutex::new(Instant::now()),
            waiting_on_us: AtomicUsize::new(0),
        }
    }

    pub(super) fn touch(&self) {
        *lock(&self.last) = Instant::now();
    }

    pub(super) fn hold(self: &Arc<Self>) -> Hold {
        self.waiting_on_us.fetch_add(1, Ordering::SeqCst);
        Hold(self.clone())
    }

    /// How long the agent has been silent on its own account (`None` while it waits on us).
    fn silent_for(&self) -> Option<Duration> {
        if self.waiting_on_us.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(lock(&self.last).elapsed())
    }

    /// Resolves once the agent has been silent for `limit`, with how long.
    pub(super) async fn stalled(&self, limit: Duration) -> Duration {
        let step = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(step).await;
            if let Some(silent) = self.silent_for()
                && silent >= limit
            {
                return silent;
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Shared {
    pub(super) fn new(root: PathBuf, client_fs: bool) -> Shared {
        Shared {
            terminals: Terminals::new(root.clone()),
            root: Mutex::new(root),
            client_fs,
            turn: Mutex::new(None),
            stderr: StderrLog::default(),
            commands: Mutex::new(Vec::new()),
            commands_sent: AtomicBool::new(false),
            activity: Arc::new(Activity::new()),
            cost: Mutex::new(super::usage::CostSeen::default()),
        }
    }

    pub(super) fn root(&self) -> PathBuf {
        lock(&self.root).clone()
    }

    /// Confine a pre-started agent to the worktree of the session it is about to open.
    pub(super) fn bind(&self, root: PathBuf) {
        self.terminals.set_root(root.clone());
        *lock(&self.root) = root;
    }

    pub(super) fn set_turn(&self, slot: Option<TurnSlot>) {
        self.stderr.new_turn();
        *lock(&self.turn) = slot;
    }

    pub(super) fn turn(&self) -> Option<TurnSlot> {
        lock(&self.turn).clone()
    }

    /// A transcript line from boocoder itself, when a turn is listening.
    pub(super) fn notice(&self, text: String) {
        self.offer(TurnEvent::Notice(text));
    }

    /// An event for the running turn's transcript, if a turn listens. Never waits: a full
    /// transcript channel must not stall the agent's pipes.
    pub(super) fn offer(&self, ev: TurnEvent) {
        if let Some(t) = self.turn()
            && t.perm.events.try_send(ev).is_err()
        {
            tracing::debug!("transcript busy or closed; event dropped");
        }
    }

    /// The announced commands if no transcript has them yet (marks them sent).
    pub(super) fn unsent_commands(&self) -> Option<Vec<String>> {
        let cmds = lock(&self.commands).clone();
        let was_sent = self.commands_sent.swap(true, Ordering::SeqCst);
        (!was_sent && !cmds.is_empty()).then_some(cmds)
    }

    pub(super) fn stderr_tail(&self) -> String {
        self.stderr.quote()
    }
}
