//! Periodic clean-up of what nobody will use again: idle sessions and leaked worktrees.

use std::path::PathBuf;
use std::time::Duration;

use super::{Inner, blocking};
use crate::domain::Session;
use crate::worktree;

/// A worktree directory without a session is reaped only once it is this old.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(600);

impl Inner {
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
            // A spare of the pool (on offer, or claimed by a session being recorded).
            let pool = self.config.pool_dir();
            let n2 = name.to_string();
            if blocking(move || Ok(worktree::is_pooled(&pool, &n2)))
                .await
                .unwrap_or(true)
            {
                continue;
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
