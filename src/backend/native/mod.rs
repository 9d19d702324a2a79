//! The native backend: boocoder's own coding loop against any OpenAI-compatible
//! chat-completions endpoint. Each round streams one completion; tool calls run in the
//! session's worktree; the loop ends when the model answers without tools, or when a guard
//! (round cap, repeated calls, token budget) stops it with a partial summary.
//!
//! `client.rs` speaks HTTP/SSE, `tools.rs` owns the model's tools, `history.rs` the messages
//! and their trimming. The session's conversation lives in [`SessionMemory`], so a follow-up
//! turn continues where the last one ended. Without an endpoint, the same loop can run
//! through the calling MCP client's sampling ([`Sampler`], implemented by the MCP edge).

pub mod client;
pub mod history;
pub mod sampler;
pub mod tools;

pub use sampler::{SampleRequest, Sampler, SamplerHandle, Samplers};

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{BackendError, EventSink, SessionMemory, Turn, TurnEvent, TurnOutcome, emit};
use crate::config::{LlmConfig, NativeLimits};
use crate::domain::Usage;
use client::{Completion, LlmError};
use history::{Message, ToolCall, WireCall};
use tools::ToolInput;

/// Where a turn's completions come from.
enum Route<'a> {
    Http(&'a Endpoint),
    Sampling(SamplerHandle),
}

/// A configured OpenAI-compatible endpoint and the client that talks to it.
pub struct Endpoint {
    pub http: reqwest::Client,
    pub settings: LlmConfig,
}

/// The same call this many times in a row is a loop, not progress.
pub const DOOM_REPEATS: usize = 3;
/// Tool output kept in the transcript per call (the model gets up to [`tools::RESULT_CAP`]).
const TRANSCRIPT_OUTPUT: usize = 2000;

/// Engine-owned state shared by every native turn: the endpoint (one HTTP client, for
/// connection reuse) when configured, the samplers of queued tasks, and the session memory.
pub struct NativeShared {
    pub endpoint: Option<Endpoint>,
    pub limits: NativeLimits,
    pub memory: Arc<dyn SessionMemory>,
    pub samplers: Arc<Samplers>,
}

impl NativeShared {
    /// `endpoint`: `None` to rely on MCP sampling.
    pub fn new(
        endpoint: Option<LlmConfig>,
        limits: NativeLimits,
        memory: Arc<dyn SessionMemory>,
        samplers: Arc<Samplers>,
    ) -> Result<NativeShared, LlmError> {
        let endpoint = match endpoint {
            Some(settings) => Some(Endpoint {
                http: client::http_client(settings.timeout)?,
                settings,
            }),
            None => None,
        };
        Ok(NativeShared {
            endpoint,
            limits,
            memory,
            samplers,
        })
    }

    /// Model ids the endpoint serves, for the providers snapshot.
    pub async fn models(&self) -> Result<Vec<String>, LlmError> {
        match &self.endpoint {
            Some(e) => client::list_models(&e.http, &e.settings).await,
            None => Ok(Vec::new()),
        }
    }
}

pub struct NativeBackend {
    shared: Arc<NativeShared>,
}

impl NativeBackend {
    pub fn new(shared: Arc<NativeShared>) -> NativeBackend {
        NativeBackend { shared }
    }

    pub async fn run(
        &self,
        turn: Turn,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<TurnOutcome, BackendError> {
        run_turn(&self.shared, turn, events, cancel).await
    }
}

fn system_prompt(turn: &Turn) -> Message {
    Message::System {
        content: format!(
            "You are a coding agent working in an isolated git worktree of the user's project, rooted at `{}`. \
             Use the tools to inspect and change files; every path is relative to that root and cannot leave it. \
             Your edits are not applied to the user's checkout directly: when you finish, they become a pending \
             change the user reviews and applies. Work step by step, keep edits minimal and exact \
             (read a file before editing it), and do not ask questions: decide sensibly. \
             When the task is done, reply without calling tools, with a concise summary of what you changed and why.",
            turn.cwd.display()
        ),
    }
}

/// Per-turn bookkeeping for the guards and the partial summary.
#[derive(Default)]
struct Progress {
    usage: Usage,
    last_text: String,
    calls: Vec<String>,
    last_sig: Option<String>,
    repeats: usize,
}

impl Progress {
    /// The summary of a turn a guard stopped: the model's last words and what it did.
    fn partial(&self) -> String {
        let mut s = self.last_text.trim().to_string();
        if !self.calls.is_empty() {
            let tail: Vec<&str> = self
                .calls
                .iter()
                .rev()
                .take(5)
                .rev()
                .map(String::as_str)
                .collect();
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[{} tool calls made; last: {}]",
                self.calls.len(),
                tail.join(", ")
            ));
        }
        s
    }

    /// Whether this call repeats the previous one for the [`DOOM_REPEATS`]th time.
    fn repeated(&mut self, call: &ToolCall) -> bool {
        let args = serde_json::from_str::<serde_json::Value>(&call.arguments)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| call.arguments.clone());
        let sig = format!("{}{args}", call.name);
        if self.last_sig.as_ref() == Some(&sig) {
            self.repeats += 1;
        } else {
            self.last_sig = Some(sig);
            self.repeats = 1;
        }
        self.repeats >= DOOM_REPEATS
    }
}

fn to_items(messages: &[Message]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok())
        .collect()
}

#[tracing::instrument(skip_all, fields(task_id = %turn.task_id))]
async fn run_turn(
    shared: &NativeShared,
    turn: Turn,
    events: EventSink,
    cancel: CancellationToken,
) -> Result<TurnOutcome, BackendError> {
    let (route, model) = pick_route(shared, &turn)?;
    let prior = load_prior(shared, &turn.session_id).await?;
    let system = system_prompt(&turn);
    let tool_defs = tools::definitions();
    let mut this_turn = vec![Message::User {
        content: turn.prompt.clone(),
    }];
    let mut saved = 0usize;
    let mut progress = Progress::default();
    let limits = &shared.limits;

    for round in 1..=limits.max_rounds {
        let mut messages = Vec::with_capacity(prior.len() + this_turn.len() + 1);
        messages.push(system.clone());
        messages.extend(prior.iter().cloned());
        let keep_from = messages.len();
        messages.extend(this_turn.iter().cloned());
        history::trim(&mut messages, keep_from, limits.context_tokens);
        let done = complete(
            &route,
            limits,
            model.as_deref(),
            messages,
            &tool_defs,
            &cancel,
            &events,
        )
        .await?;
        if let Some(u) = done.usage {
            progress.usage.add(u);
            emit(&events, TurnEvent::Usage(u)).await;
        }
        if !done.text.trim().is_empty() {
            progress.last_text = done.text.clone();
        }
        this_turn.push(Message::Assistant {
            // `null` only beside tool calls; a bare answer keeps its (maybe empty) text.
            content: (!done.text.is_empty() || done.tool_calls.is_empty())
                .then(|| done.text.clone()),
            tool_calls: done.tool_calls.iter().map(WireCall::from).collect(),
        });
        if done.tool_calls.is_empty() {
            save(shared, &turn, &this_turn[saved..]).await;
            return Ok(TurnOutcome {
                final_message: done.text,
                usage: progress.usage,
            });
        }
        let t0 = Instant::now();
        let stop = run_calls(
            &turn,
            &done.tool_calls,
            &mut progress,
            &mut this_turn,
            &events,
        )
        .await;
        save(shared, &turn, &this_turn[saved..]).await;
        saved = this_turn.len();
        tracing::debug!(
            round,
            tools_us = t0.elapsed().as_micros() as u64,
            "round done"
        );
        if cancel.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        if let Some(reason) = stop.or_else(|| over_budget(limits, &progress)) {
            return Err(stopped(&events, reason, &progress).await);
        }
    }
    let reason = format!(
        "failed: no final answer after {} rounds (the iteration cap; raise --max-rounds)",
        limits.max_rounds
    );
    Err(stopped(&events, reason, &progress).await)
}

/// The endpoint when configured, else the submitting client's sampling; and the model.
fn pick_route<'a>(
    shared: &'a NativeShared,
    turn: &Turn,
) -> Result<(Route<'a>, Option<String>), BackendError> {
    match (&shared.endpoint, shared.samplers.take(&turn.task_id)) {
        (Some(e), _) => {
            let model = turn.model.clone().or_else(|| e.settings.model.clone());
            if model.is_none() {
                return Err(BackendError::InvalidRequest {
                    field: "model",
                    reason: "no model: pass `model` with the task or start boocoder with --model"
                        .into(),
                });
            }
            Ok((Route::Http(e), model))
        }
        // The client picks its model; the task's is only a hint.
        (None, Some(s)) => Ok((Route::Sampling(s), turn.model.clone())),
        (None, None) => Err(BackendError::Misconfigured(
            "the native provider has no model endpoint (start boocoder with --llm-base-url) \
             and the client that submitted the task offers no MCP sampling"
                .into(),
        )),
    }
}

/// The session's earlier conversation; an unreadable row is skipped rather than failing.
async fn load_prior(shared: &NativeShared, session_id: &str) -> Result<Vec<Message>, BackendError> {
    let items = shared
        .memory
        .load(session_id)
        .await
        .map_err(BackendError::Conversation)?;
    Ok(items
        .into_iter()
        .filter_map(|v| match serde_json::from_value(v) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable stored message");
                None
            }
        })
        .collect())
}

/// The stop reason once the task has spent its token budget.
fn over_budget(limits: &NativeLimits, progress: &Progress) -> Option<String> {
    let spent = progress.usage.total_tokens().unwrap_or(0);
    let budget = limits.max_tokens_total?;
    (spent >= budget).then(|| {
        format!(
            "stopped: the token budget is spent ({spent} of {budget} tokens; raise --max-tokens-total)"
        )
    })
}

/// One round from whichever route serves this turn.
async fn complete(
    route: &Route<'_>,
    limits: &NativeLimits,
    model: Option<&str>,
    messages: Vec<Message>,
    tool_defs: &serde_json::Value,
    cancel: &CancellationToken,
    events: &EventSink,
) -> Result<Completion, BackendError> {
    match route {
        Route::Http(e) => {
            let body =
                client::request_body(&e.settings, model.unwrap_or_default(), &messages, tool_defs);
            client::complete(&e.http, &e.settings, &body, cancel, events)
                .await
                .map_err(|e| match e {
                    LlmError::Cancelled => BackendError::Cancelled,
                    other => BackendError::Endpoint(other.to_string()),
                })
        }
        Route::Sampling(s) => {
            sampler::round(s, limits, model, messages, tool_defs, cancel, events).await
        }
    }
}

async fn stopped(events: &EventSink, reason: String, progress: &Progress) -> BackendError {
    emit(events, TurnEvent::Notice(reason.clone())).await;
    BackendError::Stopped {
        reason,
        partial: progress.partial(),
    }
}

/// Persist this turn's new messages; a failure costs the next turn its memory, not this turn.
async fn save(shared: &NativeShared, turn: &Turn, new: &[Message]) {
    if new.is_empty() {
        return;
    }
    if let Err(e) = shared
        .memory
        .append(&turn.session_id, &turn.task_id, to_items(new))
        .await
    {
        tracing::warn!(error = %e, "could not store the conversation");
    }
}

/// Run one round's tool calls in order, appending a result for every call (the API requires
/// one per call). Returns a stop reason when the model is looping.
async fn run_calls(
    turn: &Turn,
    calls: &[ToolCall],
    progress: &mut Progress,
    out: &mut Vec<Message>,
    events: &EventSink,
) -> Option<String> {
    let mut stop = None;
    for call in calls {
        if stop.is_none() && progress.repeated(call) {
            stop = Some(format!(
                "stopped: the model called `{}` with the same arguments {DOOM_REPEATS} times in a row (a doom loop)",
                call.name
            ));
        }
        let parsed = ToolInput::parse(&call.name, &call.arguments);
        let (title, kind) = match &parsed {
            Ok(input) => input.title(),
            Err(_) => (call.name.clone(), "other"),
        };
        progress.calls.push(title.clone());
        emit(
            events,
            TurnEvent::ToolCall {
                id: call.id.clone(),
                title,
                kind: Some(kind.into()),
                input: serde_json::from_str(&call.arguments).ok(),
            },
        )
        .await;
        let result = match (&stop, parsed) {
            (Some(_), _) => {
                Err("error: not run: this exact call was just repeated; the turn is stopped".into())
            }
            (None, Err(e)) => Err(e),
            (None, Ok(input)) => {
                let root = turn.cwd.clone();
                tokio::task::spawn_blocking(move || tools::run(&root, &input))
                    .await
                    .unwrap_or_else(|e| Err(format!("error: the tool crashed: {e}")))
            }
        };
        let (status, content) = match result {
            Ok(s) => ("completed", s),
            Err(s) => ("failed", s),
        };
        emit(
            events,
            TurnEvent::ToolUpdate {
                id: call.id.clone(),
                status: Some(status.into()),
                output: Some(tools::cut(&content, TRANSCRIPT_OUTPUT)),
            },
        )
        .await;
        out.push(Message::Tool {
            tool_call_id: call.id.clone(),
            content,
        });
    }
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    #[test]
    fn doom_loop_needs_consecutive_identical_calls() {
        let mut p = Progress::default();
        assert!(!p.repeated(&call("read_file", r#"{"path":"a"}"#)));
        assert!(!p.repeated(&call("read_file", r#"{ "path": "a" }"#)));
        assert!(!p.repeated(&call("read_file", r#"{"path":"b"}"#)));
        assert!(!p.repeated(&call("read_file", r#"{"path":"b"}"#)));
        assert!(p.repeated(&call("read_file", r#"{"path":"b"}"#)));
    }

    #[test]
    fn partial_summary_names_the_last_calls() {
        let p = Progress {
            last_text: "Working on it.".into(),
            calls: vec!["read_file a".into(), "edit_file a".into()],
            ..Progress::default()
        };
        assert_eq!(
            p.partial(),
            "Working on it.\n[2 tool calls made; last: read_file a, edit_file a]"
        );
    }
}
