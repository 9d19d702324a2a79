//! `rebase_pending`: a session's pending change that no longer applies, merged onto the
//! checkout as it is now (`worktree::CheckoutLock::rebase`), so that `apply_pending` then
//! writes the merged result. The checkout itself is never written.
//!
//! Order, and what a crash at each step leaves:
//! 1. the session's turn lock (refused while a turn runs, or is queued or running in any
//!    process); a rebase a crash interrupted is settled first;
//! 2. the checkout's lock (no apply changes the checkout while it is read); a dead apply's
//!    journal is settled; the change is re-read;
//! 3. the worktree must hold exactly the change (edits no change recorded are refused);
//! 4. a change that applies as it is: its stale mark is cleared, nothing else;
//! 5. the merge, in the worktree's object store only: on a conflict nothing is written;
//! 6. the rebase marker, durable in the worktree's git dir (crash: the store never heard of
//!    the rebase; whoever next touches the worktree drops the marker: the old state);
//! 7. the store, one transaction — the commit point: the change's base, tree, patch and files,
//!    its stale mark cleared, the session's base (crash after it: whoever next touches the
//!    worktree finishes step 8 from the marker: the new state);
//! 8. the worktree: its files to the merged tree, HEAD and index to the new base; the marker
//!    is removed.
//!
//! The base moves to the checkout's content of the change's files: what the user's checkout
//! holds, so the next turn's diff holds only the session's own work on top of it.

use std::path::{Path, PathBuf};

use super::apply::conflict;
use super::{ClientRoots, Engine, EngineError, Inner, Result, blocking};
use crate::domain::{FileChange, PendingChange, Session};
use crate::worktree::{
    self, ChangeTrees, MergeConflict, Rebase, RebaseMarker, Rebased, WorktreeError,
};

/// What a rebase did.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RebaseState {
    /// The change was merged onto the checkout; it now applies.
    Merged,
    /// The change already applied cleanly; nothing was changed.
    UpToDate,
    /// Both sides changed the same lines (or the same file in ways that cannot be merged);
    /// nothing was changed.
    Conflict,
}

pub struct RebaseResult {
    pub session_id: String,
    pub task_id: String,
    pub state: RebaseState,
    /// The pending change's files after the rebase (before it, on a conflict).
    pub files: Vec<FileChange>,
    pub conflicts: Vec<MergeConflict>,
}

impl Engine {
    /// Merge a session's pending change (by session id or any task id of it) onto the
    /// checkout's current content of its files. Nothing is written on a conflict. `client` is
    /// the roots of the client asking: the project must lie in the roots allowed to it now.
    pub async fn rebase(&self, target: &str, client: &ClientRoots) -> Result<RebaseResult> {
        let (session, change) = self.change_target(target).await?;
        self.require_local(&session)?;
        let _turns = self.lock_idle_session(
            &session,
            "wait for it to finish (check_task_status) or cancel it first",
        )?;
        if self.inner.store.session_busy(&session.id).await? {
            return Err(EngineError::State(format!(
                "session `{}` has a turn queued or running; rebase once it has ended",
                session.id
            )));
        }
        let super::apply::Locked {
            wt,
            checkout,
            change,
            tree,
        } = self.lock_checkout(&session, change, client).await?;
        self.inner
            .require_worktree_holds(&session, &wt, &change, &tree)
            .await?;
        let result = |state, files, conflicts| RebaseResult {
            session_id: session.id.clone(),
            task_id: change.task_id.clone(),
            state,
            files,
            conflicts,
        };

        let (c, w, base, t) = (
            checkout.clone(),
            wt.clone(),
            change.base_commit.clone(),
            tree.clone(),
        );
        let merged = blocking(move || {
            let trees = ChangeTrees {
                worktree: &w,
                base: &base,
                tree: &t,
            };
            match c.check(trees) {
                Ok(_) => Ok(None),
                Err(WorktreeError::Conflict(_)) => c.rebase(trees).map(Some),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(conflict)?;
        let rebased = match merged {
            None => {
                self.inner.store.mark_stale(change.id, None).await?;
                return Ok(result(
                    RebaseState::UpToDate,
                    change.files.clone(),
                    Vec::new(),
                ));
            }
            Some(Rebase::Conflicts(conflicts)) => {
                tracing::info!(session_id = %session.id, files = conflicts.len(), "rebase refused: conflicts");
                return Ok(result(
                    RebaseState::Conflict,
                    change.files.clone(),
                    conflicts,
                ));
            }
            Some(Rebase::Merged(r)) => r,
        };
        let files = rebased.diff.files.clone();
        self.inner
            .record_rebase(&session, &change, &wt, &tree, rebased)
            .await?;
        tracing::info!(session_id = %session.id, files = files.len(), "pending change rebased onto the checkout");
        Ok(result(RebaseState::Merged, files, Vec::new()))
    }
}

impl Inner {
    /// Step 3: the worktree holds what the change says, so bringing it to the merged tree
    /// loses nothing.
    async fn require_worktree_holds(
        &self,
        session: &Session,
        wt: &Path,
        change: &PendingChange,
        tree: &str,
    ) -> Result<()> {
        let (w, base) = (wt.to_path_buf(), change.base_commit.clone());
        let now = blocking(move || worktree::snapshot(&w, &base)).await?;
        if now.tree != tree {
            return Err(EngineError::State(format!(
                "session `{}`'s worktree holds edits its pending change does not (from a turn a crash interrupted?); \
                 run a follow-up turn or discard_pending first",
                session.id
            )));
        }
        Ok(())
    }

    /// Steps 6–8: marker, store, worktree.
    async fn record_rebase(
        &self,
        session: &Session,
        change: &PendingChange,
        wt: &Path,
        tree: &str,
        r: Rebased,
    ) -> Result<()> {
        if r.base == change.base_commit {
            // A marker whose new base is the old one would look recorded without being.
            return Err(EngineError::State(format!(
                "session `{}`: the merge left the change's base as it was; nothing was changed",
                session.id
            )));
        }
        let marker = RebaseMarker {
            new_base: r.base.clone(),
            from_tree: tree.to_owned(),
            to_tree: r.tree.clone(),
        };
        let (w, m) = (wt.to_path_buf(), marker.clone());
        blocking(move || worktree::begin_rebase(&w, &m)).await?;
        let recorded = self
            .store
            .rebase_change(
                change.id,
                &session.id,
                &r.base,
                &r.tree,
                &r.diff.patch,
                &r.diff.files,
            )
            .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                let w = wt.to_path_buf();
                blocking(move || worktree::abandon_rebase(&w)).await?;
                return Err(EngineError::State(format!(
                    "the pending change of session `{}` was settled or replaced by another process during the rebase; nothing was changed",
                    session.id
                )));
            }
            Err(e) => {
                // The transaction may have committed all the same: the store decides.
                if let Err(settle) = self.settle_rebase(session).await {
                    tracing::warn!(error = %settle, "could not settle the rebase yet; retried before the next turn");
                }
                return Err(e.into());
            }
        }
        let w = wt.to_path_buf();
        blocking(move || worktree::finish_rebase(&w, &marker))
            .await
            .map_err(|e| {
                EngineError::State(format!(
                    "the rebase of session `{}` is recorded, but its worktree could not be brought to it yet ({e}); \
                     this is retried before anything else uses the worktree",
                    session.id
                ))
            })
    }

    /// Finish or drop a rebase a crash interrupted (the module's steps 6–8): finished when
    /// the store recorded it (the session's base is the rebase's and the pending change, if
    /// any, is still the rebased one), else dropped. Called under the session's lock before
    /// anything reads or writes the worktree.
    pub(super) async fn settle_rebase(&self, session: &Session) -> Result<()> {
        let Some(wt) = session.worktree_path.as_deref().map(PathBuf::from) else {
            return Ok(());
        };
        let w = wt.clone();
        let Some(marker) = blocking(move || worktree::interrupted_rebase(&w)).await? else {
            return Ok(());
        };
        let base = self
            .store
            .session(&session.id)
            .await?
            .and_then(|s| s.base_commit);
        let tree = self
            .store
            .pending_change(&session.id)
            .await?
            .and_then(|c| c.tree);
        let recorded = base.as_deref() == Some(marker.new_base.as_str())
            && tree.is_none_or(|t| t == marker.to_tree);
        if recorded {
            blocking(move || worktree::finish_rebase(&wt, &marker)).await?;
            tracing::warn!(session_id = %session.id, "finished bringing a worktree to its rebased change after an interruption");
        } else {
            blocking(move || worktree::abandon_rebase(&wt)).await?;
            tracing::warn!(session_id = %session.id, "dropped a rebase the store never recorded");
        }
        Ok(())
    }
}
