//! Budgets: a task stops when it has run `max_minutes`, or its agent reported `max_tokens`
//! (input plus output) or `max_cost_usd`, failing "budget exceeded: …" with its edits kept as the pending
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
    if let Some(c) = given.max_cost_usd
        && !(c.is_finite() && c > 0.0)
    {
        return Err(invalid(
            "max_cost_usd",
            "must be a positive number of dollars",
        ));
    }
    Ok(Budget {
        max_tokens: given.max_tokens.or(defaults.max_tokens),
        max_cost_usd: given.max_cost_usd.or(defaults.max_cost_usd),
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
                let spent = self.tree_spent(&task.id).await?;
                if let Some(why) = spent.over(&task.budget) {
                    return Err(invalid(
                        "parent_task_id",
                        format!("budget exceeded: the task tree of `{id}` {why}"),
                    ));
                }
            }
            next = task.parent_task_id;
        }
        Ok(())
    }

    /// What a task and everything delegated under it used so far.
    async fn tree_spent(&self, root: &str) -> Result<Spent> {
        let now = now_ms();
        let mut spent = Spent::default();
        let mut ms = 0;
        for (t, _) in self.inner.store.subtree(root).await? {
            spent.usage.add(t.usage);
            if let Some(start) = t.started_at {
                ms += (t.ended_at.unwrap_or(now) - start).max(0);
            }
        }
        spent.minutes = ms as f64 / 60_000.0;
        Ok(spent)
    }
}

/// Usage and running time, measured against a budget.
#[derive(Debug, Default)]
struct Spent {
    usage: Usage,
    minutes: f64,
}

impl Spent {
    /// Why `budget` is spent (`used 1200 of its max_tokens 1000`), if it is.
    fn over(&self, budget: &Budget) -> Option<String> {
        if let (Some(max), Some(used)) = (budget.max_tokens, self.usage.total_tokens())
            && used >= max
        {
            return Some(format!("used {used} tokens of its max_tokens {max}"));
        }
        if let (Some(max), Some(cost)) = (budget.max_cost_usd, self.usage.cost_usd)
            && cost >= max
        {
            return Some(format!("spent ${cost:.4} of its max_cost_usd {max}"));
        }
        if let Some(max) = budget.max_minutes
            && self.minutes >= max as f64
        {
            return Some(format!(
                "ran {:.1} min of its max_minutes {max}",
                self.minutes
            ));
        }
        None
    }
}

/// Watches a running turn against its budget; resolves with why it must stop.
pub(super) async fn exceeded(budget: Budget, usage: Arc<Mutex<Usage>>) -> String {
    let started = tokio::time::Instant::now();
    loop {
        let spent = Spent {
            usage: usage.lock().map(|u| *u).unwrap_or_default(),
            minutes: started.elapsed().as_secs_f64() / 60.0,
        };
        if let Some(why) = spent.over(&budget) {
            return format!("budget exceeded: {why}");
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
