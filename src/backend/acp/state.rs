//! The state an agent's connection shares between the turn driver (`connection.rs`,
//! `mod.rs`) and the client-side handlers (`handlers.rs`): both import it from here, so
//! neither needs the other for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
