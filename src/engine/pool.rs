//! The engine's side of the worktree pool: after a session of a project gets its worktree,
//! the project's spares are topped up in the background (made at HEAD, then prepared like a
//! session's first turn: include files, heavy directories, setup), so the next new session
//! takes one by rename. Spares of a project no session used for the pool TTL are dropped;
//! spares behind a moved HEAD are brought forward (only changed files; setup again), or
//! dropped when that fails. Several processes may share the pool directory: a spare is
//! taken by renaming its token (see `worktree/pool.rs`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Inner, blocking};
use crate::store::{NewTaskRow, NewWorktree};
use crate::worktree;

/// A spare not ready after this long was being prepared by a process that died.
const ABANDONED: Duration = Duration::from_secs(3600);
/// A claim whose session is not recorded after this long was made by a process that died.
const ABANDONED_CLAIM: Duration = Duration::from_secs(600);
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

    /// Claim a ready spare of `project` for a new session on `provider` (the spare its
    /// pre-started agent opened a session in, when there is one), or `None` (no spare, pool
    /// off, or an error: the session's first turn creates its worktree the ordinary way).
    pub(super) async fn take_spare(
        &self,
        project: &Path,
        provider: &str,
    ) -> Option<worktree::Taken> {
        if self.config.pool_size == 0 {
            return None;
        }
        let prefer = self.backends.acp.preopened_root(provider);
        let (p, root, wts) = (
            project.to_path_buf(),
            self.pool_root(),
            self.config.worktrees_dir(),
        );
        let taken = blocking(move || worktree::take_spare(&p, &root, &wts, prefer.as_deref()));
        match taken.await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "could not take a spare worktree");
                None
            }
        }
    }

    /// For a new session: a spare worktree claimed from the pool, whose id the session takes
    /// and whose worktree is recorded with the session row, so the first turn neither
    /// creates nor records a worktree. Claimed before the row is written; settled (or given
    /// back) by [`Inner::settle_spare`] after.
    pub(super) async fn spare_for(&self, row: &mut NewTaskRow) -> Option<worktree::Taken> {
        let provider = row.new_session_provider.as_deref()?;
        let taken = self
            .take_spare(Path::new(&row.project_path), provider)
            .await?;
        row.session_id = taken.session_id.clone();
        row.new_session_worktree = Some(NewWorktree {
            path: taken.info.path.to_string_lossy().into_owned(),
            branch: taken.info.branch.clone(),
            base_commit: taken.info.base_commit.clone(),
            host: self.config.host.clone(),
        });
        Some(taken)
    }

    /// After the row of a session that claimed a spare was written (`recorded`) or refused:
    /// the claim token goes (the session owns the worktree), or the untouched spare is
    /// offered again. A crash before this leaves the token to [`Inner::settle_claims`].
    pub(super) async fn settle_spare(
        self: &Arc<Self>,
        spare: Option<worktree::Taken>,
        row: &NewTaskRow,
        recorded: bool,
    ) {
        let Some(taken) = spare else {
            return;
        };
        let settled = blocking(move || {
            if recorded {
                worktree::settle_taken(&taken)
            } else {
                worktree::give_back(&taken)
            }
        });
        if let Err(e) = settled.await {
            tracing::warn!(error = %e, "could not settle a spare worktree's claim");
        }
        if recorded {
            self.session_started(Path::new(&row.project_path));
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
            let (p, r, w) = (
                project.to_path_buf(),
                root.clone(),
                self.config.worktrees_dir(),
            );
            let spares = match blocking(move || worktree::spares(&p, &r, &w)).await {
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
                self.offer_spares(project).await;
                return;
            }
            let (p, r, w) = (
                project.to_path_buf(),
                root.clone(),
                self.config.worktrees_dir(),
            );
            let sid = crate::domain::new_id("s");
            let spare = match blocking(move || worktree::make_spare(&p, &r, &w, &sid)).await {
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
        if spare.legacy {
            // a spare of the earlier layout (inside the pool directory): not takeable
        } else if spare.moving {
            // another process is moving it (dropping waits for its lock and then finds the
            // token back on offer), or one died doing so (dropped)
        } else if !spare.ready {
            // the token is written before the worktree, so a creation that died counts too;
            // a token renamed back (the end of a move) is young again
            let age = worktree::token_age(&spare.token).unwrap_or_default();
            if age < ABANDONED {
                // Another process is preparing it.
                return true;
            }
        } else if head.as_deref() == Some(spare.base.as_str()) {
            return true;
        } else {
            let (p, s) = (project.to_path_buf(), spare.clone());
            match blocking(move || worktree::bring_forward(&p, &s)).await {
                Ok(worktree::Forward::Moved) => {
                    // New commits may need the setup again (a changed lock file).
                    let _ = std::fs::remove_file(
                        spare.path.join(".git").join(super::bootstrap::SET_UP),
                    );
                    return self.ready_spare(project, &spare.path).await;
                }
                Ok(worktree::Forward::AtHead) => return true,
                Ok(worktree::Forward::Gone) | Err(_) => {}
            }
        }
        self.drop_spare(project, spare).await;
        false
    }

    /// Prepare a new or moved spare and mark it ready; drop it when that fails.
    async fn ready_spare(&self, project: &Path, spare: &Path) -> bool {
        let offered = worktree::Spare {
            path: spare.to_path_buf(),
            token: worktree::pool_dir(&self.pool_root(), project).join(format!(
                "spare-{}",
                spare.file_name().unwrap_or_default().to_string_lossy()
            )),
            base: String::new(),
            ready: false,
            legacy: false,
            moving: false,
        };
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
                self.drop_spare(project, &offered).await;
                false
            }
        }
    }

    async fn drop_spare(&self, project: &Path, spare: &worktree::Spare) {
        let (p, s) = (project.to_path_buf(), spare.clone());
        if let Err(e) = blocking(move || worktree::drop_spare(&p, &s)).await {
            tracing::warn!(spare = %spare.path.display(), error = %e, "could not drop a spare worktree");
        }
    }

    /// Periodically: drop the pools of projects no session used for the pool TTL (or that
    /// are gone); bring the others up to date.
    pub(super) async fn maintain_pool(self: &Arc<Self>) {
        let root = self.pool_root();
        for (project, dir) in worktree::pooled_projects(&root) {
            self.settle_claims(&project).await;
            let idle = std::fs::metadata(dir.join(USED))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > self.config.pool_ttl);
            if idle || self.config.pool_size == 0 || !project.is_dir() {
                let (p, d, w) = (project.clone(), dir.clone(), self.config.worktrees_dir());
                match blocking(move || worktree::drop_pool(&p, &d, &w)).await {
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

    /// Claims (`taken-` tokens) whose process went on to record the session lose their
    /// token; those whose process died first, before recording it, lose their worktree too
    /// once they are older than any claim in flight could be.
    async fn settle_claims(&self, project: &Path) {
        let (p, r, w) = (
            project.to_path_buf(),
            self.pool_root(),
            self.config.worktrees_dir(),
        );
        let claims = blocking(move || Ok(worktree::claims(&p, &r, &w)))
            .await
            .unwrap_or_default();
        for (sid, path, age) in claims {
            let recorded = match self.store.session(&sid).await {
                Ok(s) => s.is_some(),
                Err(e) => {
                    tracing::warn!(error = %e, "pool: cannot read a session; claim kept");
                    continue;
                }
            };
            if !recorded && age < ABANDONED_CLAIM {
                continue;
            }
            let (p, r, w) = (
                project.to_path_buf(),
                self.pool_root(),
                self.config.worktrees_dir(),
            );
            let drop = !recorded;
            match blocking(move || worktree::end_claim(&p, &r, &w, &sid, drop)).await {
                Ok(()) if drop => {
                    tracing::warn!(path = %path.display(), "removed a spare claimed by a process that died before recording its session")
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not settle a spare's claim")
                }
            }
        }
    }

    /// Give each `--prestart` agent a ready spare of `project` to open its session in ahead
    /// of need, one spare per agent, keeping a target that is still on offer.
    async fn offer_spares(&self, project: &Path) {
        if self.config.prestart.is_empty() {
            return;
        }
        let (p, r, w) = (
            project.to_path_buf(),
            self.pool_root(),
            self.config.worktrees_dir(),
        );
        let Ok(spares) = blocking(move || worktree::spares(&p, &r, &w)).await else {
            return;
        };
        let ready: Vec<PathBuf> = spares
            .into_iter()
            .filter(|s| s.ready)
            .filter_map(|s| s.path.canonicalize().ok())
            .collect();
        let acp = &self.backends.acp;
        let mut free: Vec<&PathBuf> = ready
            .iter()
            .filter(|s| {
                !self
                    .config
                    .prestart
                    .iter()
                    .any(|id| acp.preopened_root(id).as_ref() == Some(*s))
            })
            .collect();
        for id in &self.config.prestart {
            let current = acp.preopened_root(id);
            if current.as_ref().is_some_and(|c| ready.contains(c)) {
                continue;
            }
            let Some(spare) = free.pop() else {
                return;
            };
            acp.preopen(id, spare);
        }
    }
}
