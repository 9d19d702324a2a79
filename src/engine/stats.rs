//! Where the work went: tasks grouped by project, agent, day or parent task, with their
//! success rate, durations and tokens. Computed from the task rows (no extra bookkeeping).

use std::collections::BTreeMap;

use super::requests::invalid;
use super::{Engine, Result};
use crate::domain::{TaskState, now_ms};
use crate::store::StatRow;

/// How tasks are grouped.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Project,
    Agent,
    /// The UTC day the task was created.
    Day,
    /// The task that delegated it (`(none)` for top-level tasks).
    Parent,
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StatsRow {
    pub key: String,
    pub tasks: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
    /// Still pending, running or blocked.
    pub unfinished: u32,
    /// Completed among finished tasks, 0–1; absent when none finished.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub success_rate: Option<f64>,
    /// Of finished tasks that ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub median_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p90_seconds: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of the input tokens, read from the prompt cache.
    pub cached_tokens: u64,
    /// Of the output tokens, spent thinking.
    pub reasoning_tokens: u64,
    /// US dollars, summed over the tasks whose agent reported a cost; absent when none did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost_usd: Option<f64>,
    /// Finished tasks whose agent reported no token count (their tokens are not in the sums).
    pub without_tokens: u32,
}

impl Engine {
    /// Statistics of the tasks created since `since` (e.g. `7d`, `12h`, `30m`, or a date
    /// `2026-11-01`; all tasks when absent), grouped by `group_by`, largest groups first.
    pub async fn usage_stats(
        &self,
        group_by: GroupBy,
        since: Option<&str>,
    ) -> Result<Vec<StatsRow>> {
        let since = match since.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => parse_since(s, now_ms()).ok_or_else(|| {
                invalid(
                    "since",
                    format!(
                        "`{s}` is neither a duration (`7d`, `12h`, `30m`) nor a date (`2026-11-01`)"
                    ),
                )
            })?,
            None => 0,
        };
        let rows = self.inner.store.stat_rows(since).await?;
        Ok(group(group_by, &rows))
    }
}

/// Unix ms of `since`: now minus a duration, or the start of a UTC date.
fn parse_since(s: &str, now: i64) -> Option<i64> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let ms = match unit {
        'd' => 86_400_000,
        'h' => 3_600_000,
        'm' => 60_000,
        _ => return None,
    };
    (n >= 0).then(|| now - n.saturating_mul(ms))
}

fn key(by: GroupBy, r: &StatRow) -> String {
    match by {
        GroupBy::Project => r.project_path.clone(),
        GroupBy::Agent => r.provider.clone(),
        GroupBy::Day => crate::domain::rfc3339(r.created_at)[..10].to_string(),
        GroupBy::Parent => r.parent_task_id.clone().unwrap_or_else(|| "(none)".into()),
    }
}

fn group(by: GroupBy, rows: &[StatRow]) -> Vec<StatsRow> {
    let mut groups: BTreeMap<String, Vec<&StatRow>> = BTreeMap::new();
    for r in rows {
        groups.entry(key(by, r)).or_default().push(r);
    }
    let mut out: Vec<StatsRow> = groups
        .into_iter()
        .map(|(key, rs)| figures(key, &rs))
        .collect();
    out.sort_by(|a, b| b.tasks.cmp(&a.tasks).then_with(|| a.key.cmp(&b.key)));
    out
}

fn figures(key: String, rows: &[&StatRow]) -> StatsRow {
    let count = |st: TaskState| rows.iter().filter(|r| r.state == st.as_str()).count() as u32;
    let (completed, failed, cancelled) = (
        count(TaskState::Completed),
        count(TaskState::Failed),
        count(TaskState::Cancelled),
    );
    let finished = completed + failed + cancelled;
    let mut secs: Vec<f64> = rows
        .iter()
        .filter_map(|r| match (r.started_at, r.ended_at) {
            (Some(s), Some(e)) => Some((e - s).max(0) as f64 / 1000.0),
            _ => None,
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    let sum = |field: fn(&crate::domain::Usage) -> Option<u64>| {
        rows.iter().filter_map(|r| field(&r.usage)).sum::<u64>()
    };
    StatsRow {
        key,
        tasks: rows.len() as u32,
        completed,
        failed,
        cancelled,
        unfinished: rows.len() as u32 - finished,
        success_rate: (finished > 0).then(|| f64::from(completed) / f64::from(finished)),
        median_seconds: percentile(&secs, 50.0),
        p90_seconds: percentile(&secs, 90.0),
        input_tokens: sum(|u| u.input_tokens),
        output_tokens: sum(|u| u.output_tokens),
        cached_tokens: sum(|u| u.cached_tokens),
        reasoning_tokens: sum(|u| u.reasoning_tokens),
        cost_usd: rows
            .iter()
            .filter_map(|r| r.usage.cost_usd)
            .fold(None, |acc, c| Some(acc.unwrap_or(0.0) + c)),
        without_tokens: rows
            .iter()
            .filter(|r| r.ended_at.is_some() && r.usage.total_tokens().is_none())
            .count() as u32,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(provider: &str, state: &str, secs: Option<i64>, tokens: u64) -> StatRow {
        StatRow {
            project_path: "/p".into(),
            provider: provider.into(),
            parent_task_id: None,
            state: state.into(),
            created_at: 1_795_900_000_000,
            started_at: secs.map(|_| 1_000),
            ended_at: secs.map(|s| 1_000 + s * 1000),
            usage: if tokens > 0 {
                crate::domain::Usage {
                    cost_usd: Some(0.5),
                    ..crate::domain::Usage::tokens(tokens, tokens / 10)
                }
            } else {
                crate::domain::Usage::default()
            },
        }
    }

    #[test]
    fn groups_count_rates_durations_and_tokens() {
        let rows = vec![
            row("a", "completed", Some(1), 100),
            row("a", "completed", Some(2), 100),
            row("a", "failed", Some(10), 50),
            row("a", "pending", None, 0),
            row("b", "cancelled", Some(4), 0),
        ];
        let stats = group(GroupBy::Agent, &rows);
        assert_eq!(stats.len(), 2);
        let a = &stats[0];
        assert_eq!(
            (a.key.as_str(), a.tasks, a.completed, a.failed, a.unfinished),
            ("a", 4, 2, 1, 1)
        );
        assert_eq!(a.success_rate, Some(2.0 / 3.0));
        assert_eq!((a.median_seconds, a.p90_seconds), (Some(2.0), Some(10.0)));
        assert_eq!((a.input_tokens, a.output_tokens), (250, 25));
        assert_eq!(a.cost_usd, Some(1.5), "three tasks reported $0.5 each");
        assert_eq!(a.without_tokens, 0, "the pending task has not finished");
        assert_eq!((stats[1].cost_usd, stats[1].without_tokens), (None, 1));
        assert_eq!(stats[1].success_rate, Some(0.0));
        assert_eq!(group(GroupBy::Day, &rows)[0].key, "2026-11-28");
    }

    #[test]
    fn since_reads_durations_and_dates() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_since("7d", now), Some(3 * 86_400_000));
        assert_eq!(parse_since("2h", now), Some(now - 7_200_000));
        assert_eq!(parse_since("1970-01-02", now), Some(86_400_000));
        for bad in ["7", "d", "7w", "-1d", "2026-13-01", "x7d"] {
            assert_eq!(parse_since(bad, now), None, "{bad}");
        }
    }
}
