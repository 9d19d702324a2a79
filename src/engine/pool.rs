//! The engine's side of the worktree pool: after a session of a project gets its worktree,
//! the project's spares are topped up in the background (made at HEAD, then prepared like a
//! session's first turn: include files, heavy directories, setup), so the next new session
//! takes one by rename. Spares of a project no session used for the pool TTL are dropped;
//! spares behind a moved HEAD are brought forward (only changed files; setup again), or
//! dropped when that fails. Several processes may share the pool directory: a spare is
//! taken under the project's worktree lock, by rename.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Inner, blocking};
use crate::worktree::{self, WorktreeInfo};

/// A spare not ready after this long was being prepared by a process that died.
const ABANDONED: Duration = Duration::from_secs(3600);
/// In a project's pool directory: touched whenever a session of the project starts, so the
/// TTL holds across processes and restarts.
const USED: &str = "used";

/// Projects whose spares this process is topping up right now.
#[derive(Default)]
pub(super) struct PoolState {
    filling: Mutex<HashSet<PathBuf>>,
}

impl Inner {
    fn pool_root(&self) -> PathBuf {
        self.config.pool_dir()
    }

    /// A ready spare of `project` renamed into place as `wt` on `branch`, or `None` (no spare,
    /// pool off, or an error: the caller creates the worktree the ordinary way).
    pub(super) async fn take_spare(
        &self,
        project: &Path,
        wt: &Path,
        branch: &str,
    ) -> Option<WorktreeInfo> {
        if self.config.pool_size == 0 {
            return None;
        }
        let (p, root, w, b) = (
            project.to_path_buf(),
            self.pool_root(),
            wt.to_path_buf(),
            branch.to_string(),
        );
        match blocking(move || worktree::take_spare(&p, &root, &w, &b)).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "could not take a spare worktree");
                None
            }
        }
    }

    /// A session of `project` got its worktree: the project counts as used (for the TTL),
    /// and its pool is topped up in the background.
    pub(super) fn session_started(self: &Arc<Self>, project: &Path) {
        if self.config.pool_size == 0 {
            return;
        }
        let dir = worktree::pool_dir(&self.pool_root(), project);
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(USED), b""))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the worktree pool directory");
            return;
        }
        self.refill_pool(project);
    }

    /// Keep the pool of `project` fresh and full, in the background (once per process).
    fn refill_pool(self: &Arc<Self>, project: &Path) {
        if self.config.pool_size == 0 || self.shutdown.is_cancelled() {
            return;
        }
        let claimed = self
            .pool
            .filling
            .lock()
            .map(|mut f| f.insert(project.to_path_buf()))
            .unwrap_or(false);
        if !claimed {
            return;
        }
        let (inner, project) = (self.clone(), project.to_path_buf());
        self.tracker.spawn(async move {
            // let the turn that triggered this answer its caller first
            tokio::time::sleep(crate::backend::YIELD_TO_CALLER).await;
            inner.fill_pool(&project).await;
            if let Ok(mut f) = inner.pool.filling.lock() {
                f.remove(&project);
            }
        });
    }

    async fn fill_pool(&self, project: &Path) {
        let root = self.pool_root();
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let (p, r) = (project.to_path_buf(), root.clone());
            let spares = match blocking(move || worktree::spares(&p, &r)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "listing spare worktrees failed");
                    return;
                }
            };
            let mut count = 0;
            for spare in spares {
                if self.keep_spare(project, &spare).await {
                    count += 1;
                }
            }
            if count >= self.config.pool_size {
                return;
            }
            let (p, r) = (project.to_path_buf(), root.clone());
            let spare = match blocking(move || worktree::make_spare(&p, &r)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "could not make a spare worktree");
                    return;
                }
            };
            if !self.ready_spare(project, &spare).await {
                // A setup that fails here would fail again: leave the pool short until the
                // next session of the project.
                return;
            }
        }
    }

    /// Whether `spare` stays in the pool: a ready spare at HEAD does; one behind HEAD is
    /// brought forward and prepared again; an abandoned preparation is dropped.
    async fn keep_spare(&self, project: &Path, spare: &worktree::Spare) -> bool {
        let head = worktree::head_commit(project);
        if !spare.ready {
            let age = std::fs::metadata(&spare.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if age < ABANDONED {
                // Another process is preparing it.
                return true;
            }
        } else if head.as_deref() == Some(spare.base.as_str()) {
            return true;
        } else {
            let (p, s) = (project.to_path_buf(), spare.path.clone());
            let moved = blocking(move || worktree::bring_forward(&p, &s)).await;
            if matches!(moved, Ok(true)) {
                // New commits may need the setup again (a changed lock file).
                let _ =
                    std::fs::remove_file(spare.path.join(".git").join(super::bootstrap::SET_UP));
                return self.ready_spare(project, &spare.path).await;
            }
        }
        self.drop_spare(project, &spare.path).await;
        false
    }

    /// Prepare a new or moved spare and mark it ready; drop it when that fails.
    async fn ready_spare(&self, project: &Path, spare: &Path) -> bool {
        let prepared =
            super::bootstrap::prepare_spare(&self.config, project, spare, &self.shutdown).await;
        let marked = match prepared {
            Ok(()) => worktree::mark_ready(spare).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match marked {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(project = %project.display(), error = %e, "a spare worktree could not be made ready");
                self.drop_spare(project, spare).await;
                false
            }
        }
    }

    async fn drop_spare(&self, project: &Path, spare: &Path) {
        let (p, s) = (project.to_path_buf(), spare.to_path_buf());
        if let Err(e) = blocking(move || worktree::drop_spare(&p, &s)).await {
            tracing::warn!(spare = %spare.display(), error = %e, "could not drop a spare worktree");
        }
    }

    /// Periodically: drop the pools of projects no session used for the pool TTL (or that
    /// are gone); bring the others up to date.
    pub(super) async fn maintain_pool(self: &Arc<Self>) {
        let root = self.pool_root();
        for (project, dir) in worktree::pooled_projects(&root) {
            let idle = std::fs::metadata(dir.join(USED))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > self.config.pool_ttl);
            if idle || self.config.pool_size == 0 || !project.is_dir() {
                let (p, d) = (project.clone(), dir.clone());
                match blocking(move || worktree::drop_pool(&p, &d)).await {
                    Ok(()) => {
                        tracing::info!(project = %project.display(), "dropped the spare worktrees of an idle project")
                    }
                    Err(e) => {
                        tracing::warn!(project = %project.display(), error = %e, "could not drop spare worktrees")
                    }
                }
                continue;
            }
            self.refill_pool(&project);
        }
    }
}
