//! Conflicts between sessions, seen before they bite: an apply (or its dry run) names the other
//! sessions whose unapplied changes touch the same files, and after an apply every other
//! pending change of the project is checked against the new checkout (under the same lock)
//! and marked stale with the files that no longer apply cleanly.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::{Inner, Result, blocking};
use crate::domain::FileChange;
use crate::store::SiblingChange;
use crate::worktree::{ChangeTrees, CheckoutLock, WorktreeError};

/// Another session's pending change touching files this one touches.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Overlap {
    pub session_id: String,
    /// The turn whose cumulative change it is.
    pub task_id: String,
    /// The files both changes touch.
    pub files: Vec<String>,
}

impl Inner {
    /// The other sessions of `project` whose pending changes touch any of `files`.
    pub(super) async fn overlaps(
        &self,
        project: &str,
        session_id: &str,
        files: &[FileChange],
    ) -> Result<Vec<Overlap>> {
        let mine: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let siblings = self.store.sibling_changes(project, session_id).await?;
        Ok(siblings
            .into_iter()
            .filter_map(|s| {
                let shared: Vec<String> = s
                    .change
                    .files
                    .iter()
                    .filter(|f| mine.contains(f.path.as_str()))
                    .map(|f| f.path.clone())
                    .collect();
                (!shared.is_empty()).then_some(Overlap {
                    session_id: s.change.session_id,
                    task_id: s.change.task_id,
                    files: shared,
                })
            })
            .collect())
    }

    /// After an apply, still holding the checkout's lock: check every other pending change of
    /// the project against the checkout as it is now and record which files no longer apply.
    /// Returns the sessions found stale.
    pub(super) async fn mark_stale_siblings(
        &self,
        checkout: &Arc<CheckoutLock>,
        project: &str,
        session_id: &str,
    ) -> Result<Vec<String>> {
        let mut stale = Vec::new();
        for sibling in self.store.sibling_changes(project, session_id).await? {
            match check_sibling(checkout, &sibling).await {
                Ok(None) => self.store.mark_stale(sibling.change.id, None).await?,
                Ok(Some(files)) => {
                    self.store
                        .mark_stale(sibling.change.id, Some(&files))
                        .await?;
                    stale.push(sibling.change.session_id.clone());
                }
                Err(e) => tracing::warn!(
                    session_id = %sibling.change.session_id,
                    error = %e,
                    "could not check a pending change against the checkout"
                ),
            }
        }
        Ok(stale)
    }
}

/// `Some(files)` that would be refused if `sibling` were applied now; `None` if it applies.
async fn check_sibling(
    checkout: &Arc<CheckoutLock>,
    sibling: &SiblingChange,
) -> std::result::Result<Option<Vec<String>>, WorktreeError> {
    let (Some(wt), Some(tree)) = (&sibling.worktree_path, &sibling.change.tree) else {
        return Ok(None);
    };
    let (c, wt, base, tree) = (
        checkout.clone(),
        wt.clone(),
        sibling.change.base_commit.clone(),
        tree.clone(),
    );
    let checked = blocking(move || {
        c.check(ChangeTrees {
            worktree: Path::new(&wt),
            base: &base,
            tree: &tree,
        })
    })
    .await;
    match checked {
        Ok(_) => Ok(None),
        Err(WorktreeError::Conflict(report)) => {
            Ok(Some(report.files.into_iter().map(|f| f.path).collect()))
        }
        Err(e) => Err(e),
    }
}
