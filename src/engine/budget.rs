//! Budgets: a task stops when it has run `max_minutes` or its agent reported `max_tokens`
//! (input plus output), failing "budget exceeded: …" with its edits kept as the pending
//! change; a budget also bounds the tasks delegated under it, which cannot start once the
//! tree has spent it. Agents that report no usage are bounded by time only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::requests::invalid;
use super::{Engine, Result};
use crate::domain::{Budget, Usage, now_ms};

/// How far up a delegation chain budgets are looked for.
const MAX_ANCESTORS: usize = 64;

/// A budget as given: each limit at least 1; the server's defaults fill what is absent.
pub(super) fn check_budget(given: Budget, defaults: Budget) -> Result<Budget> {
    if given.max_tokens == Some(0) {
        return Err(invalid("max_tokens", "must be at least 1"));
    }
    if given.max_minutes == Some(0) {
        return Err(invalid("max_minutes", "must be at least 1"));
    }
    Ok(Budget {
        max_tokens: given.max_tokens.or(defaults.max_tokens),
        max_minutes: given.max_minutes.or(defaults.max_minutes),
    })
}

impl Engine {
    /// Refuse a child of a tree whose budget is spent: every ancestor with a budget is
    /// checked against what its whole subtree used so far.
    pub(super) async fn check_tree_budget(&self, parent: &str) -> Result<()> {
        let mut next = Some(parent.to_string());
        for _ in 0..MAX_ANCESTORS {
            let Some(id) = next.take() else { break };
            let Some(task) = self.inner.store.task(&id).await? else {
                break;
            };
            if !task.budget.is_empty() {
                let (tokens, minutes) = self.tree_spent(&task.id).await?;
                if let Some(max) = task.budget.max_tokens
                    && tokens >= max
                {
                    return Err(invalid(
                        "parent_task_id",
                        format!(
                            "budget exceeded: the task tree of `{id}` used {tokens} of its max_tokens {max}"
                        ),
                    ));
                }
                if let Some(max) = task.budget.max_minutes
                    && minutes >= max as f64
                {
                    return Err(invalid(
                        "parent_task_id",
                        format!(
                            "budget exceeded: the task tree of `{id}` ran {minutes:.1} of its max_minutes {max}"
                        ),
                    ));
                }
            }
            next = task.parent_task_id;
        }
        Ok(())
    }

    /// Tokens and running minutes of a task and everything delegated under it.
    async fn tree_spent(&self, root: &str) -> Result<(u64, f64)> {
        let now = now_ms();
        let mut tokens = 0;
        let mut ms = 0;
        for (t, _) in self.inner.store.subtree(root).await? {
            tokens += t.usage.input_tokens + t.usage.output_tokens;
            if let Some(start) = t.started_at {
                ms += (t.ended_at.unwrap_or(now) - start).max(0);
            }
        }
        Ok((tokens, ms as f64 / 60_000.0))
    }
}

/// Watches a running turn against its budget; resolves with why it must stop.
pub(super) async fn exceeded(budget: Budget, usage: Arc<Mutex<Usage>>) -> String {
    let deadline = budget
        .max_minutes
        .map(|m| tokio::time::Instant::now() + Duration::from_secs(m.saturating_mul(60)));
    loop {
        if let Some(max) = budget.max_tokens {
            let used = usage
                .lock()
                .map(|u| u.input_tokens + u.output_tokens)
                .unwrap_or(0);
            if used >= max {
                return format!("budget exceeded: {used} tokens used, max_tokens {max}");
            }
        }
        if let (Some(d), Some(m)) = (deadline, budget.max_minutes)
            && tokio::time::Instant::now() >= d
        {
            return format!("budget exceeded: ran {m} min, max_minutes {m}");
        }
        if budget.is_empty() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run `turn` under `budget`: past it, `stop` is cancelled (the backend stops its agent) and
/// the reason is returned.
pub(super) async fn bounded<T>(
    budget: Budget,
    usage: Arc<Mutex<Usage>>,
    stop: &CancellationToken,
    turn: impl std::future::Future<Output = T>,
) -> (T, Option<String>) {
    tokio::pin!(turn);
    tokio::select! {
        r = &mut turn => (r, None),
        why = exceeded(budget, usage) => {
            stop.cancel();
            (turn.await, Some(why))
        }
    }
}
