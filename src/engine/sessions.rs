//! A session's lifecycle past its turns: lookup, discarding its pending change, closing it,
//! and the checks apply and discard share (local, idle, something pending).

use std::path::PathBuf;

use super::{ApplyResult, Engine, EngineError, Inner, Result, blocking};
use crate::domain::{ChangeStatus, PendingChange, Session};
use crate::worktree;

impl Engine {
    /// Files of the session's pending change found not to apply cleanly any more (after
    /// another session's change was applied to the checkout).
    pub async fn stale_against_checkout(&self, session_id: &str) -> Result<Option<Vec<String>>> {
        Ok(self.inner.store.stale_files(session_id).await?)
    }

    /// Open sessions holding an unapplied change, newest first, at most `limit`.
    pub async fn unapplied_changes(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::store::UnappliedChange>> {
        Ok(self.inner.store.unapplied_changes(limit).await?)
    }

    pub async fn session(&self, id: &str) -> Result<Session> {
        self.inner
            .store
            .session(id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "session",
                id: id.into(),
            })
    }

    /// Tokens summed over every turn of a session.
    pub async fn session_usage(&self, session_id: &str) -> Result<crate::domain::Usage> {
        Ok(self.inner.store.session_usage(session_id).await?)
    }

    /// The session's live pending change, looked up by task id or session id.
    pub(super) async fn change_target(
        &self,
        target: &str,
    ) -> Result<(Session, Option<PendingChange>)> {
        let session_id = if target.starts_with("s-") {
            target.to_string()
        } else {
            self.task(target).await?.session_id
        };
        let session = self.session(&session_id).await?;
        let change = self.inner.store.pending_change(&session.id).await?;
        Ok((session, change))
    }

    /// Drop a session's pending change and reset its worktree to the base, so the next turn
    /// starts clean instead of re-offering the discarded edits.
    pub async fn discard(&self, target: &str) -> Result<ApplyResult> {
        let (session, change) = self.change_target(target).await?;
        self.require_local(&session)?;
        let _turns = self.lock_idle_session(&session, "cancel it before discarding")?;
        self.inner.settle_rebase(&session).await?;
        let change = self.require_pending(&session, change).await?;
        let wt = worktree_path(&session)?;
        let base = change.base_commit.clone();
        let b2 = base.clone();
        blocking(move || worktree::reset(&wt, &b2)).await?;
        self.inner
            .store
            .settle_change(change.id, ChangeStatus::Discarded, &session.id, &base)
            .await?;
        Ok(ApplyResult {
            session_id: session.id,
            task_id: change.task_id,
            dry_run: false,
            files: change.files,
            overlaps: Vec::new(),
            now_stale: Vec::new(),
        })
    }

    /// The session's turn lock, taken only when no turn holds it: apply and discard refuse
    /// rather than wait behind a turn; `advice` says what to do instead.
    pub(super) fn lock_idle_session(
        &self,
        session: &Session,
        advice: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        self.inner
            .session_lock(&session.id)
            .try_lock_owned()
            .map_err(|_| {
                EngineError::State(format!(
                    "a turn is running in session `{}`; {advice}",
                    session.id
                ))
            })
    }

    /// A session's worktree is on the machine that created it; only nodes there can touch it.
    pub(super) fn require_local(&self, session: &Session) -> Result<()> {
        match &session.host {
            Some(h) if *h != self.inner.config.host => Err(EngineError::State(format!(
                "session `{}` lives on host `{h}`; call this on a boocoder node running there",
                session.id
            ))),
            _ => Ok(()),
        }
    }

    pub(super) async fn require_pending(
        &self,
        session: &Session,
        change: Option<PendingChange>,
    ) -> Result<PendingChange> {
        if let Some(c) = change {
            return Ok(c);
        }
        let latest = self.inner.store.latest_change(&session.id).await?;
        Err(EngineError::State(match latest {
            Some(c) => format!(
                "session `{}` has no pending change: its last change (from task `{}`) was already {}",
                session.id,
                c.task_id,
                c.status.as_str()
            ),
            None => format!(
                "session `{}` has no pending change: its turns changed no files",
                session.id
            ),
        }))
    }

    /// Close a session: stop its warm agents, remove its worktree and branch, and refuse
    /// further turns in it. Refused while a turn is queued or running, and (unless `force`)
    /// while it holds an unapplied change, so closing never loses work silently.
    pub async fn close_session(&self, target: &str, force: bool) -> Result<Session> {
        let (session, change) = self.change_target(target).await?;
        if session.closed {
            return Ok(session);
        }
        self.require_local(&session)?;
        if self.inner.store.session_busy(&session.id).await? {
            return Err(EngineError::State(format!(
                "session `{}` has a turn queued or running; wait for it or cancel it first",
                session.id
            )));
        }
        if change.is_some() && !force {
            return Err(EngineError::State(format!(
                "session `{}` holds an unapplied change; apply_pending or discard_pending it first",
                session.id
            )));
        }
        if !force {
            let files = self.inner.queue_unrecorded_edits(&session).await?;
            if !files.is_empty() {
                let names: Vec<&str> = files.iter().take(5).map(|f| f.path.as_str()).collect();
                return Err(EngineError::State(format!(
                    "session `{}`'s worktree holds edits no change recorded ({} file(s): {}{}), e.g. from a turn a crash interrupted; \
                     they are now its pending change: apply_pending or discard_pending it first",
                    session.id,
                    files.len(),
                    names.join(", "),
                    if files.len() > names.len() {
                        ", …"
                    } else {
                        ""
                    }
                )));
            }
        }
        self.inner.close_session(&session).await?;
        self.session(&session.id).await
    }
}

impl Inner {
    pub(super) async fn close_session(&self, session: &Session) -> Result<()> {
        let lock = self.session_lock(&session.id);
        let _guard = lock.lock().await;
        self.backends.close_session(&session.id).await;
        if let (Some(wt), Some(branch)) = (&session.worktree_path, &session.branch) {
            let (project, wt, branch) = (
                PathBuf::from(&session.project_path),
                PathBuf::from(wt),
                branch.clone(),
            );
            blocking(move || worktree::remove(&project, &wt, &branch)).await?;
        }
        self.store.close_session(&session.id).await?;
        tracing::info!(session_id = %session.id, "session closed; worktree removed");
        Ok(())
    }
}

pub(super) fn worktree_path(session: &Session) -> Result<PathBuf> {
    session
        .worktree_path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| EngineError::State(format!("session `{}` has no worktree yet", session.id)))
}
