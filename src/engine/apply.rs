//! The one path that writes to the user's checkout, and the recovery that keeps it
//! all-or-nothing across crashes.
//!
//! Order of an apply, and what a crash at each step leaves:
//! 1. checkout lock (file lock in the checkout's git dir; every process on the host);
//! 2. a journal another apply left is settled: rolled back, unless the store says its change
//!    was applied;
//! 3. the change is re-read under the lock (another process may have settled it);
//! 4. check + journal + write (an error rolls back at once; a crash leaves the journal);
//! 5. the worktree's base moves to the applied tree (a private commit; harmless if the store
//!    never hears of it: the store's base is what diffs use);
//! 6. the store records the change applied and the new base (one transaction);
//! 7. the journal is dropped and the lock released.
//!
//! A crash before 6 is rolled back; after 6 the journal is dropped and the files stay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::sessions::worktree_path;
use super::{ApplyResult, ClientRoots, Engine, EngineError, Inner, Result, blocking};
use crate::domain::{ChangeStatus, PendingChange, Session, Task};
use crate::worktree::{self, ChangeTrees, CheckoutLock, WorktreeError};

/// A session's pending change under the checkout's lock, as [`Engine::lock_checkout`] leaves it.
pub(super) struct Locked {
    pub wt: PathBuf,
    pub checkout: Arc<CheckoutLock>,
    pub change: PendingChange,
    /// The change's tree (its snapshot of the worktree).
    pub tree: String,
}

/// How long an apply waits for another apply to the same checkout before giving up.
pub(super) const APPLY_LOCK_WAIT: Duration = Duration::from_secs(30);
/// At start-up, a checkout locked this long is being applied to by a live process.
const RECOVERY_LOCK_WAIT: Duration = Duration::from_secs(2);

impl Engine {
    /// Apply a session's pending change to the project checkout: all files or none, checked
    /// under the checkout's lock (`dry_run` checks only). `client` is the roots of the client
    /// asking: the project must lie in the roots allowed to it now.
    pub async fn apply(
        &self,
        target: &str,
        dry_run: bool,
        client: &ClientRoots,
    ) -> Result<ApplyResult> {
        let (session, change) = self.change_target(target).await?;
        self.require_local(&session)?;
        let _turns = self.lock_idle_session(
            &session,
            "wait for it to finish (check_task_status) or cancel it first",
        )?;
        let Locked {
            wt,
            checkout,
            change,
            tree,
        } = self.lock_checkout(&session, change, client).await?;
        let (c, w, base, t) = (
            checkout.clone(),
            wt.clone(),
            change.base_commit.clone(),
            tree.clone(),
        );
        let tag = self.inner.journal_tag(change.id);
        let files = blocking(move || {
            let trees = ChangeTrees {
                worktree: &w,
                base: &base,
                tree: &t,
            };
            if dry_run {
                c.check(trees)
            } else {
                c.apply(trees, &tag)
            }
        })
        .await
        .map_err(conflict)?;
        if !dry_run {
            self.record(&checkout, &session.id, &change, &wt, &tree)
                .await?;
            tracing::info!(session_id = %session.id, task_id = %change.task_id, files = files.len(), "pending change applied");
        }
        let overlaps = self
            .inner
            .overlaps(&session.project_path, &session.id, &files)
            .await?;
        let now_stale = if dry_run {
            Vec::new()
        } else {
            self.inner
                .mark_stale_siblings(&checkout, &session.project_path, &session.id)
                .await?
        };
        Ok(ApplyResult {
            session_id: session.id,
            task_id: change.task_id,
            dry_run,
            files,
            overlaps,
            now_stale,
        })
    }

    /// Steps 1–3 for a session whose turns are locked out (apply and rebase): an interrupted
    /// rebase finished, the checkout's lock taken, a dead apply's journal settled, and the
    /// change read again under the lock (another process may have settled it meanwhile). The
    /// project must lie in the roots allowed to `client`, the client asking.
    pub(super) async fn lock_checkout(
        &self,
        session: &Session,
        change: Option<PendingChange>,
        client: &ClientRoots,
    ) -> Result<Locked> {
        self.inner.settle_rebase(session).await?;
        self.require_pending(session, change).await?;
        let wt = worktree_path(session)?;
        let project = PathBuf::from(&session.project_path);
        super::roots::check_project_still_allowed(self, &project, client)?;
        let checkout =
            Arc::new(blocking(move || CheckoutLock::acquire(&project, APPLY_LOCK_WAIT)).await?);
        self.inner.settle_journal(&checkout).await?;
        let fresh = self.inner.store.pending_change(&session.id).await?;
        let change = self.require_pending(session, fresh).await?;
        let tree = change_tree(&wt, &change).await?;
        Ok(Locked {
            wt,
            checkout,
            change,
            tree,
        })
    }

    /// Steps 5–7 after the files are written: the base, the store, then the journal. A failure
    /// before the store records the change rolls the checkout back.
    async fn record(
        &self,
        checkout: &Arc<CheckoutLock>,
        session_id: &str,
        change: &PendingChange,
        wt: &std::path::Path,
        tree: &str,
    ) -> Result<()> {
        if let Err(e) = self
            .inner
            .record_applied(session_id, change, wt, tree)
            .await
        {
            let c = checkout.clone();
            return Err(match blocking(move || c.roll_back()).await {
                Ok(_) => e,
                Err(rb) => EngineError::State(format!(
                    "{e}; rolling the checkout back also failed ({rb}): the next apply or start-up replays it"
                )),
            });
        }
        let c = checkout.clone();
        if let Err(e) = blocking(move || c.finish()).await {
            // The change is applied and recorded; a leftover journal is dropped by the next
            // lock holder, which finds the change applied.
            tracing::warn!(error = %e, "could not remove the apply journal");
        }
        Ok(())
    }
}

impl Inner {
    /// Steps 5 and 6: the worktree's base, then the store.
    async fn record_applied(
        &self,
        session_id: &str,
        change: &PendingChange,
        wt: &std::path::Path,
        tree: &str,
    ) -> Result<()> {
        let (w, base, t) = (
            wt.to_path_buf(),
            change.base_commit.clone(),
            tree.to_owned(),
        );
        let new_base = blocking(move || worktree::rebaseline(&w, &base, &t)).await?;
        let settled = self
            .store
            .settle_change(change.id, ChangeStatus::Applied, session_id, &new_base)
            .await?;
        if !settled {
            return Err(EngineError::State(format!(
                "the pending change of session `{session_id}` was settled by another process during the apply; nothing was written"
            )));
        }
        Ok(())
    }

    /// A journal names its store, so a process sharing the checkout but not the store never
    /// mistakes another store's change id for its own. Hashed: a PostgreSQL URL may carry a
    /// password, and the journal lives in the user's git dir.
    pub(super) fn journal_tag(&self, change_id: i64) -> String {
        format!("{}:{change_id}", self.store_identity())
    }

    fn store_identity(&self) -> String {
        let raw = match &self.config.database_url {
            Some(url) => url.clone(),
            None => self.config.database_path().display().to_string(),
        };
        worktree::digest(raw.as_bytes())
    }

    /// Step 2: finish the story of an apply that died holding this checkout.
    pub(super) async fn settle_journal(&self, checkout: &Arc<CheckoutLock>) -> Result<()> {
        let c = checkout.clone();
        let Some(stale) = blocking(move || c.stale_journal()).await? else {
            return Ok(());
        };
        let ours = stale.tag.split_once(':').and_then(|(store, id)| {
            (store == self.store_identity())
                .then(|| id.parse::<i64>().ok())
                .flatten()
        });
        let applied = match ours {
            Some(id) => self.store.change_status(id).await? == Some(ChangeStatus::Applied),
            // Another store's apply that finished writing may already be recorded there:
            // keep its files rather than undo a change someone was told is applied.
            None => stale.written,
        };
        let c = checkout.clone();
        let root = checkout.root().display().to_string();
        if applied {
            blocking(move || c.finish()).await?;
            tracing::warn!(checkout = %root, "an interrupted apply had completed; its journal was dropped");
        } else {
            let n = blocking(move || c.roll_back()).await?;
            tracing::warn!(checkout = %root, paths = n, "rolled back an apply interrupted by a crash");
        }
        Ok(())
    }

    /// At start-up: settle journals of applies a crash interrupted, in every checkout this
    /// host has sessions in. A checkout another live process is applying to is skipped (that
    /// apply settles nothing of ours; the next apply here looks again).
    pub(super) async fn recover_applies(&self) {
        let sessions = match self.store.sessions_with_worktrees().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions to recover interrupted applies");
                return;
            }
        };
        let mut projects: Vec<String> = sessions
            .into_iter()
            .filter(|s| s.host.as_deref().is_none_or(|h| h == self.config.host))
            .map(|s| s.project_path)
            .collect();
        projects.sort();
        projects.dedup();
        for project in projects {
            let p = PathBuf::from(&project);
            let checkout = match blocking(move || CheckoutLock::acquire(&p, RECOVERY_LOCK_WAIT))
                .await
            {
                Ok(c) => Arc::new(c),
                Err(WorktreeError::Busy(_)) => continue,
                Err(e) => {
                    tracing::debug!(project = %project, error = %e, "no apply recovery for this project");
                    continue;
                }
            };
            if let Err(e) = self.settle_journal(&checkout).await {
                tracing::error!(project = %project, error = %e, "could not recover an interrupted apply");
            }
        }
    }

    /// Tasks whose process died mid-turn keep their edits like a cancelled turn does: the
    /// worktree is snapshotted into the session's pending change. Only sessions whose
    /// worktree is on this host can be read; the turn's agents are already stopped.
    pub(super) async fn keep_crashed_edits(&self, task_ids: &[String]) {
        for id in task_ids {
            let task: Task = match self.store.task(id).await {
                Ok(Some(t)) => t,
                _ => continue,
            };
            let session = match self.store.session(&task.session_id).await {
                Ok(Some(s)) => s,
                _ => continue,
            };
            if session
                .host
                .as_deref()
                .is_some_and(|h| h != self.config.host)
            {
                continue;
            }
            let lock = self.session_lock(&session.id);
            // A new turn already running in the session snapshots the worktree when it ends,
            // crashed edits included; waiting for it here would stall the heartbeat loop.
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            match super::run::queue_diff(self, id, &session).await {
                Ok(files) => {
                    if !files.is_empty() {
                        tracing::warn!(task_id = %id, files = files.len(), "kept the edits of a turn interrupted by a crash as the session's pending change");
                    }
                    if let Err(e) = self.store.set_task_files(id, &files).await {
                        tracing::warn!(task_id = %id, error = %e, "could not record the interrupted turn's files");
                    }
                }
                Err(e) => {
                    tracing::error!(task_id = %id, error = %e, "could not keep the edits of an interrupted turn")
                }
            }
        }
    }
}

impl Inner {
    /// Edits in a session's worktree that no pending change holds (nothing should put them
    /// there, but a crash the recovery could not read, or a stray process, can): queued as the
    /// session's pending change under its latest task, so closing cannot delete them unseen.
    pub(super) async fn queue_unrecorded_edits(
        &self,
        session: &crate::domain::Session,
    ) -> Result<Vec<crate::domain::FileChange>> {
        let filter = crate::store::TaskFilter {
            session_id: Some(session.id.clone()),
            limit: 1,
            ..Default::default()
        };
        let Some(task) = self.store.list_tasks(&filter).await?.into_iter().next() else {
            return Ok(Vec::new());
        };
        super::run::queue_diff(self, &task.id, session)
            .await
            .map_err(|e| EngineError::State(format!("could not read the session's worktree: {e}")))
    }
}

/// The change's target tree; changes stored before trees were recorded get theirs from
/// their patch applied to their base.
pub(super) async fn change_tree(wt: &std::path::Path, change: &PendingChange) -> Result<String> {
    if let Some(t) = &change.tree {
        return Ok(t.clone());
    }
    let (w, base, patch) = (
        wt.to_path_buf(),
        change.base_commit.clone(),
        change.patch.clone(),
    );
    blocking(move || worktree::tree_from_patch(&w, &base, &patch))
        .await
        .map_err(conflict)
}

pub(super) fn conflict(e: WorktreeError) -> EngineError {
    match e {
        WorktreeError::Conflict(r) => EngineError::Conflict(r),
        WorktreeError::Busy(m) => EngineError::State(m),
        other => EngineError::Worktree(other),
    }
}
