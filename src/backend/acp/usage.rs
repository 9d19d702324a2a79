//! What ACP agents report of their consumption, wherever they put it (measured, see
//! `notes/agents.md`): the turn's `usage` in the `session/prompt` response (ACP's unstable
//! end-of-turn usage: opencode), gemini-cli's `_meta.quota.token_count` on that response,
//! qwen-code's per-round `_meta.usage` on agent message chunks, and `usage_update`
//! notifications (context in use and the session's cumulative cost: codex-acp,
//! claude-agent-acp, pi-acp). Nothing reported → nothing returned, never a made-up 0.

use agent_client_protocol::v1::schema as s;
use serde_json::Value;

use crate::domain::Usage;

/// The usage a `session/prompt` response reports for its turn.
pub(super) fn of_response(resp: &s::PromptResponse) -> Option<Usage> {
    if let Some(u) = &resp.usage {
        return Some(
            Counts {
                total: Some(u.total_tokens),
                input: u.input_tokens,
                output: u.output_tokens,
                thought: u.thought_tokens,
                cache_read: u.cached_read_tokens,
                cache_write: u.cached_write_tokens,
            }
            .usage(),
        );
    }
    let meta = resp.meta.as_ref()?;
    let counts = meta.get("quota")?.get("token_count")?;
    snake_case_counts(counts)
}

/// The usage a session update reports: per-round counts on a message chunk, or the context
/// and this turn's share of the session's cost from `usage_update` (`cost` turns the
/// cumulative amount into that share; `None` when the share cannot be known).
pub(super) fn of_update(
    update: &s::SessionUpdate,
    cost: impl FnOnce(f64) -> Option<f64>,
) -> Option<Usage> {
    match update {
        s::SessionUpdate::AgentMessageChunk(c) | s::SessionUpdate::AgentThoughtChunk(c) => {
            camel_case_counts(c.meta.as_ref()?.get("usage")?)
        }
        s::SessionUpdate::UsageUpdate(u) => Some(Usage {
            context_used: Some(u.used),
            context_size: Some(u.size),
            cost_usd: u
                .cost
                .as_ref()
                .filter(|c| c.currency.eq_ignore_ascii_case("USD"))
                .and_then(|c| cost(c.amount)),
            ..Usage::default()
        }),
        _ => None,
    }
}

/// `{inputTokens, outputTokens, totalTokens, thoughtTokens, cachedReadTokens}` (qwen-code,
/// and ACP's own field names).
fn camel_case_counts(v: &Value) -> Option<Usage> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let (input, output) = (n("inputTokens"), n("outputTokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(
        Counts {
            total: n("totalTokens"),
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
            thought: n("thoughtTokens"),
            cache_read: n("cachedReadTokens"),
            cache_write: n("cachedWriteTokens"),
        }
        .usage(),
    )
}

/// Token counts in ACP's names, as an agent sent them.
struct Counts {
    total: Option<u64>,
    input: u64,
    output: u64,
    thought: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl Counts {
    /// ACP's schema makes `totalTokens` the sum of every kind, so its input leaves out the
    /// cache reads and writes and its output the thought tokens — opencode 1.18.33 counts so
    /// (input 6 + output 3 + thought 2 + cache read 4 = total 15) — while qwen-code 0.24.4 counts
    /// them inside (input 10 + output 5 = total 15), as boocoder's `Usage` does. The total
    /// tells which: only a total that proves the kinds apart has them added back.
    fn usage(self) -> Usage {
        let (thought, read, write) = (
            self.thought.unwrap_or(0),
            self.cache_read.unwrap_or(0),
            self.cache_write.unwrap_or(0),
        );
        let apart = thought.saturating_add(read).saturating_add(write);
        let sum = self.input.saturating_add(self.output).saturating_add(apart);
        let (input, output) = if apart > 0 && self.total == Some(sum) {
            (
                self.input.saturating_add(read).saturating_add(write),
                self.output.saturating_add(thought),
            )
        } else {
            (self.input, self.output)
        };
        Usage {
            cached_tokens: self.cache_read,
            reasoning_tokens: self.thought,
            ..Usage::tokens(input, output)
        }
    }
}

/// `{input_tokens, output_tokens}` (gemini-cli).
fn snake_case_counts(v: &Value) -> Option<Usage> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage::tokens(input.unwrap_or(0), output.unwrap_or(0)))
}

/// A session's cumulative cost as last seen, so each turn counts only its own share.
#[derive(Debug, Default)]
pub(super) struct CostSeen(Option<f64>);

impl CostSeen {
    /// A session opened fresh has spent nothing yet; a loaded one, an amount unknown until the
    /// agent first reports it.
    pub(super) fn opened(fresh: bool) -> CostSeen {
        CostSeen(fresh.then_some(0.0))
    }

    /// The share of `cumulative` not counted before (`None` when there was no baseline).
    pub(super) fn advance(&mut self, cumulative: f64) -> Option<f64> {
        let share = self.0.map(|before| (cumulative - before).max(0.0));
        self.0 = Some(cumulative);
        share
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(v: Value) -> s::PromptResponse {
        serde_json::from_value(v).expect("prompt response")
    }

    #[test]
    fn prompt_responses_report_acp_usage_or_gemini_quota() {
        let inclusive = response(json!({"stopReason": "end_turn", "usage": {
            "totalTokens": 1500, "inputTokens": 1200, "outputTokens": 300,
            "thoughtTokens": 40, "cachedReadTokens": 800}}));
        assert_eq!(
            of_response(&inclusive),
            Some(Usage {
                cached_tokens: Some(800),
                reasoning_tokens: Some(40),
                ..Usage::tokens(1200, 300)
            })
        );
        // opencode 1.18.33 against a model that reported 10 in (4 cached), 5 out (2 reasoning)
        let opencode = response(json!({"stopReason": "end_turn", "usage": {
            "inputTokens": 6, "outputTokens": 3, "totalTokens": 15,
            "thoughtTokens": 2, "cachedReadTokens": 4}}));
        assert_eq!(
            of_response(&opencode),
            Some(Usage {
                cached_tokens: Some(4),
                reasoning_tokens: Some(2),
                ..Usage::tokens(10, 5)
            }),
            "the kinds counted apart are added back"
        );
        let gemini = response(json!({"stopReason": "end_turn", "_meta": {"quota": {
            "token_count": {"input_tokens": 90, "output_tokens": 7}, "model_usage": []}}}));
        assert_eq!(of_response(&gemini), Some(Usage::tokens(90, 7)));
        let silent = response(json!({"stopReason": "end_turn"}));
        assert_eq!(
            of_response(&silent),
            None,
            "nothing reported, nothing made up"
        );
    }

    #[test]
    fn updates_report_qwen_rounds_and_context_with_the_turns_cost() {
        let qwen: s::SessionNotification = serde_json::from_value(json!({
            "sessionId": "s", "update": {"sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": ""},
            "_meta": {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15,
                "thoughtTokens": 2, "cachedReadTokens": 4}}}
        }))
        .expect("notification");
        assert_eq!(
            of_update(&qwen.update, |_| None),
            Some(Usage {
                cached_tokens: Some(4),
                reasoning_tokens: Some(2),
                ..Usage::tokens(10, 5)
            }),
            "qwen-code counts the cached and reasoning parts inside (0.24.4)"
        );

        let mut seen = CostSeen::opened(true);
        let update = |amount: f64, currency: &str| {
            s::SessionUpdate::UsageUpdate(
                s::UsageUpdate::new(5000, 200_000).cost(s::Cost::new(amount, currency)),
            )
        };
        let first = of_update(&update(0.25, "USD"), |c| seen.advance(c)).expect("usage");
        assert_eq!(
            (first.context_used, first.context_size, first.cost_usd),
            (Some(5000), Some(200_000), Some(0.25))
        );
        let second = of_update(&update(0.75, "USD"), |c| seen.advance(c)).expect("usage");
        assert_eq!(second.cost_usd, Some(0.5), "only this turn's share");
        let credits = of_update(&update(3.0, "credits"), |c| seen.advance(c)).expect("usage");
        assert_eq!(credits.cost_usd, None, "not dollars");

        let mut loaded = CostSeen::opened(false);
        assert_eq!(
            loaded.advance(2.0),
            None,
            "a loaded session's past cost is unknown"
        );
        assert_eq!(loaded.advance(2.5), Some(0.5));
    }
}
