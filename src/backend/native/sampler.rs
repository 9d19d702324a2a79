//! The native loop's second route to a model: the MCP client that submitted the task, through
//! `sampling/createMessage`. The protocol side lives in the MCP edge (it implements
//! [`Sampler`]); this file holds the seam and runs one round through it with a timeout,
//! because a client may never answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::client::Completion;
use super::history::Message;
use crate::backend::{BackendError, BoxFuture, EventSink, TurnEvent, emit};
use crate::config::NativeLimits;

/// `maxTokens` of a sampling request (required by MCP) when no limit is configured.
const SAMPLING_MAX_TOKENS: u32 = 8192;

/// One round asked of an MCP client's model instead of an HTTP endpoint.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub system: String,
    /// The conversation without the system message.
    pub messages: Vec<Message>,
    /// The tool definitions in the OpenAI shape ([`super::tools::definitions`]).
    pub tools: serde_json::Value,
    pub max_tokens: u32,
    /// The task's model, passed as a preference hint.
    pub model_hint: Option<String>,
}

/// A model reached through the MCP client that submitted the task (`sampling/createMessage`).
/// Implemented by the MCP edge so this module never sees the protocol crate.
pub trait Sampler: Send + Sync {
    fn sample<'a>(&'a self, req: SampleRequest) -> BoxFuture<'a, Result<Completion, String>>;
}

/// A cloneable, printable handle on a [`Sampler`].
#[derive(Clone)]
pub struct SamplerHandle(pub Arc<dyn Sampler>);

impl std::fmt::Debug for SamplerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SamplerHandle")
    }
}

/// Samplers of queued tasks, by task id: a task keeps the client that submitted it.
#[derive(Default)]
pub struct Samplers(Mutex<HashMap<String, SamplerHandle>>);

impl Samplers {
    pub fn insert(&self, task_id: &str, s: SamplerHandle) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(task_id.to_string(), s);
    }

    pub fn take(&self, task_id: &str) -> Option<SamplerHandle> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(task_id)
    }
}

/// One round through `sampler`; the same contract as an HTTP round.
pub(super) async fn round(
    s: &SamplerHandle,
    limits: &NativeLimits,
    model: Option<&str>,
    messages: Vec<Message>,
    tool_defs: &serde_json::Value,
    cancel: &CancellationToken,
    events: &EventSink,
) -> Result<Completion, BackendError> {
    let mut messages = messages.into_iter();
    let system = match messages.next() {
        Some(Message::System { content }) => content,
        _ => String::new(),
    };
    let req = SampleRequest {
        system,
        messages: messages.collect(),
        tools: tool_defs.clone(),
        max_tokens: SAMPLING_MAX_TOKENS,
        model_hint: model.map(str::to_string),
    };
    let timeout = limits.sampling_timeout;
    let done = tokio::select! {
        _ = cancel.cancelled() => return Err(BackendError::Cancelled),
        r = tokio::time::timeout(timeout, s.0.sample(req)) => r,
    };
    let done = match done {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(BackendError::Endpoint(format!("MCP sampling failed: {e}"))),
        Err(_) => {
            return Err(BackendError::Endpoint(format!(
                "MCP sampling: the client did not answer within {} s",
                timeout.as_secs()
            )));
        }
    };
    if !done.text.is_empty() {
        emit(events, TurnEvent::Text(done.text.clone())).await;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;

    impl Sampler for Silent {
        fn sample<'a>(&'a self, _req: SampleRequest) -> BoxFuture<'a, Result<Completion, String>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_client_that_never_answers_times_out() {
        let limits = NativeLimits {
            max_rounds: 1,
            max_tokens_total: None,
            context_tokens: 1000,
            sampling_timeout: std::time::Duration::from_millis(20),
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let s = SamplerHandle(Arc::new(Silent));
        let err = round(
            &s,
            &limits,
            None,
            vec![],
            &serde_json::json!([]),
            &CancellationToken::new(),
            &tx,
        )
        .await
        .expect_err("timeout");
        assert!(err.to_string().contains("did not answer"), "{err}");

        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = round(
            &s,
            &limits,
            None,
            vec![],
            &serde_json::json!([]),
            &cancel,
            &tx,
        )
        .await
        .expect_err("cancelled");
        assert!(matches!(err, BackendError::Cancelled), "{err}");
    }
}
