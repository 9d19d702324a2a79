//! Keeping the shared queue honest: this node heartbeats, fails the running tasks of nodes
//! that died (at once for a dead process on this machine, after the lease for others), picks
//! up cancel requests addressed to the turns it runs, and periodically closes idle sessions
//! and reaps worktrees nobody will use again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Inner, Result};
use crate::domain::{TaskState, now_ms};
use crate::store::Wakeup;

const CANCEL_POLL: Duration = Duration::from_millis(500);

pub(super) async fn run(inner: Arc<Inner>) {
    let beat_every = (inner.config.lease / 6).max(Duration::from_millis(200));
    let mut beat = tokio::time::interval(beat_every);
    let mut cancels = tokio::time::interval(CANCEL_POLL);
    let mut reap = tokio::time::interval(
        inner
            .config
            .reap_interval
            .min(inner.config.session_ttl / 2)
            .max(Duration::from_millis(100)),
    );
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            _ = beat.tick() => {
                if let Err(e) = inner.store.heartbeat(&inner.config.node_id).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                if let Err(e) = inner.fail_dead_nodes().await {
                    tracing::warn!(error = %e, "checking for dead nodes failed");
                }
            }
            _ = cancels.tick() => inner.poll_cancel_requests().await,
            _ = reap.tick() => {
                inner.reap_idle_sessions().await;
                // Not only at start-up: a worktree a crash leaked would otherwise stay until
                // the server's next restart.
                inner.reap_orphan_worktrees().await;
                inner.maintain_pool().await;
            }
        }
    }
}

/// React to other nodes' notifications at once (PostgreSQL).
pub(super) async fn wakeups(inner: Arc<Inner>, mut rx: mpsc::Receiver<Wakeup>) {
    while let Some(w) = rx.recv().await {
        match w {
            Wakeup::Queue => inner.wake.notify_one(),
            Wakeup::Cancel(id) => {
                inner.signal_cancel(&id, "cancelled by request");
            }
        }
    }
}

impl Inner {
    /// Fail the turns of processes that are gone: on this machine a dead pid is proof; for
    /// other machines, a heartbeat older than the lease.
    pub(super) async fn fail_dead_nodes(&self) -> Result<()> {
        let local = self
            .store
            .nodes_on_host(&self.config.host, &self.config.node_id)
            .await?;
        let dead: Vec<String> = local
            .into_iter()
            .filter(|(_, pid)| !process_alive(*pid))
            .map(|(id, _)| id)
            .collect();
        for node in &dead {
            let n = crate::backend::process::kill_tagged(node);
            if n > 0 {
                tracing::warn!(node = %node, processes = n, "stopped agent processes a dead node left running");
            }
        }
        let mut failed = self
            .store
            .fail_tasks_of_nodes(&dead, "server restarted while the task was running")
            .await?;
        let lease = self.config.lease;
        let stale_before = now_ms() - lease.as_millis() as i64;
        let reason = format!(
            "the boocoder node running the task stopped (no heartbeat for {} s)",
            lease.as_secs()
        );
        failed.extend(self.store.fail_stale(stale_before, &reason).await?);
        if !failed.is_empty() {
            tracing::warn!(tasks = ?failed, "failed tasks whose node died");
            self.keep_crashed_edits(&failed).await;
            for id in &failed {
                self.publish(id, TaskState::Failed, None);
            }
        }
        Ok(())
    }

    async fn poll_cancel_requests(&self) {
        let busy = self.running.lock().map(|m| !m.is_empty()).unwrap_or(false);
        if !busy {
            return;
        }
        match self.store.cancel_requests(&self.config.node_id).await {
            Ok(ids) => {
                for id in ids {
                    self.signal_cancel(&id, "cancelled by request");
                }
            }
            Err(e) => tracing::warn!(error = %e, "polling cancel requests failed"),
        }
    }
}

/// Whether a process with this pid exists (signal 0 probes without touching it).
fn process_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // EPERM: it exists but belongs to someone else.
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}
