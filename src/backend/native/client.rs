//! The OpenAI-compatible chat-completions client: one streamed request per round, parsed from
//! server-sent events into text, reasoning, assembled tool calls and usage. Retries live here
//! because only the transport knows which failures are worth another attempt.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::history::{Message, ToolCall};
use crate::backend::{EventSink, TurnEvent, emit};
use crate::config::LlmConfig;
use crate::domain::Usage;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest server error body quoted in a task error.
const ERROR_QUOTE: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model endpoint answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("could not reach the model endpoint: {0}")]
    Network(String),
    #[error("the model endpoint sent a malformed stream: {0}")]
    Protocol(String),
    #[error("cancelled")]
    Cancelled,
}

impl LlmError {
    /// Worth another attempt: rate limits, server errors and transport failures.
    fn retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Network(_) => true,
            LlmError::Protocol(_) | LlmError::Cancelled => false,
        }
    }
}

/// What the stream reports as it arrives; the loop turns these into transcript events.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    Reasoning(String),
}

/// One finished round: the assistant's message and what it cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
}

/// Builds the shared HTTP client. `read_timeout` bounds silence on the stream, not its total
/// length: a long answer that keeps streaming is fine, a server that stalls is not.
pub fn http_client(read_timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout)
        .build()
        .map_err(|e| LlmError::Network(e.to_string()))
}

fn url(settings: &LlmConfig, path: &str) -> String {
    format!("{}/{path}", settings.base_url.trim_end_matches('/'))
}

fn authorized(rb: reqwest::RequestBuilder, settings: &LlmConfig) -> reqwest::RequestBuilder {
    match &settings.api_key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

/// Model ids the endpoint serves (`GET {base}/models`), for the providers snapshot.
pub async fn list_models(
    http: &reqwest::Client,
    settings: &LlmConfig,
) -> Result<Vec<String>, LlmError> {
    let resp = authorized(http.get(url(settings, "models")), settings)
        .send()
        .await
        .map_err(|e| LlmError::Network(e.to_string()))?;
    let resp = check_status(resp).await?;
    let body: Value = resp
        .json()
        .await
        .map_err(|e| LlmError::Protocol(format!("models list is not JSON: {e}")))?;
    let data = body["data"]
        .as_array()
        .ok_or_else(|| LlmError::Protocol("models list has no `data` array".into()))?;
    Ok(data
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, LlmError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(LlmError::Status {
        status: status.as_u16(),
        message: server_message(&body),
    })
}

/// The server's own words: `error.message` of an OpenAI-style error body, else the body.
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["message"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string());
    let msg = if msg.is_empty() {
        "(empty body)".to_string()
    } else {
        msg
    };
    super::tools::cut(&msg, ERROR_QUOTE)
}

/// The request body of one round.
pub fn request_body(
    settings: &LlmConfig,
    model: &str,
    messages: &[Message],
    tools: &Value,
) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages,
        "tools": tools,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(n) = settings.max_output_tokens {
        body["max_tokens"] = json!(n);
    }
    body
}

/// One round with retries: failures before the stream starts are retried with backoff; a
/// stream that breaks half-way is not (its text was already shown).
pub async fn complete(
    http: &reqwest::Client,
    settings: &LlmConfig,
    body: &Value,
    cancel: &CancellationToken,
    events: &EventSink,
) -> Result<Completion, LlmError> {
    let mut attempt = 0u32;
    loop {
        let sent = authorized(http.post(url(settings, "chat/completions")), settings)
            .json(body)
            .send();
        let resp = tokio::select! {
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            r = sent => r.map_err(|e| LlmError::Network(e.to_string())),
        };
        let started = match resp {
            Ok(r) => {
                let hint = retry_after(&r);
                check_status(r).await.map_err(|e| (e, hint))
            }
            Err(e) => Err((e, None)),
        };
        match started {
            Ok(resp) => return read_stream(resp, cancel, events).await,
            Err((e, hint)) if e.retryable() && attempt < settings.retries => {
                let wait = hint
                    .unwrap_or_else(|| backoff(settings.retry_base, attempt))
                    .min(MAX_BACKOFF);
                tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "model request failed; retrying");
                emit(
                    events,
                    TurnEvent::Notice(format!("{e}; retrying in {} ms", wait.as_millis())),
                )
                .await;
                attempt += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return Err(LlmError::Cancelled),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A `Retry-After` in seconds, as rate-limiting servers send with 429.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF)
}

async fn read_stream(
    resp: reqwest::Response,
    cancel: &CancellationToken,
    events: &EventSink,
) -> Result<Completion, LlmError> {
    let mut stream = resp.bytes_stream();
    let mut sse = SseParser::default();
    let mut acc = Accumulator::default();
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            c = stream.next() => c,
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| LlmError::Network(e.to_string()))?;
        for data in sse.push(&chunk) {
            if data.trim() == "[DONE]" {
                return Ok(acc.finish());
            }
            let v: Value = serde_json::from_str(&data)
                .map_err(|e| LlmError::Protocol(format!("{e} in event `{}`", cut_event(&data))))?;
            if let Some(err) = v.get("error") {
                return Err(LlmError::Status {
                    status: 500,
                    message: server_message(&json!({ "error": err }).to_string()),
                });
            }
            for d in acc.absorb(&v) {
                let ev = match d {
                    Delta::Text(t) => TurnEvent::Text(t),
                    Delta::Reasoning(r) => TurnEvent::Reasoning(r),
                };
                emit(events, ev).await;
            }
        }
    }
    // Some servers close without `[DONE]`; what arrived is the answer.
    Ok(acc.finish())
}

fn cut_event(s: &str) -> String {
    super::tools::cut(s, 200)
}

/// Splits a byte stream into SSE `data` payloads. Handles events split across chunks, CRLF
/// line ends and multi-line data; ignores comments and other fields.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    out.push(d);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => self.data = Some(rest.to_string()),
                }
            }
        }
        out
    }
}

/// Builds one completion from stream chunks: text, reasoning, tool calls whose names and
/// arguments arrive in fragments keyed by `index`, and the usage chunk.
#[derive(Debug, Default)]
pub struct Accumulator {
    text: String,
    calls: Vec<(Option<u64>, ToolCall)>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl Accumulator {
    pub fn absorb(&mut self, chunk: &Value) -> Vec<Delta> {
        let mut out = Vec::new();
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            // OpenAI's shape; cached and reasoning counts only where the server sends them.
            self.usage = Some(Usage {
                cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
                reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
                ..Usage::tokens(
                    u["prompt_tokens"].as_u64().unwrap_or(0),
                    u["completion_tokens"].as_u64().unwrap_or(0),
                )
            });
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return out;
        };
        if let Some(r) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(r.to_string());
        }
        let delta = &choice["delta"];
        for key in ["reasoning_content", "reasoning"] {
            if let Some(r) = delta[key].as_str().filter(|s| !s.is_empty()) {
                out.push(Delta::Reasoning(r.to_string()));
            }
        }
        if let Some(t) = delta["content"].as_str().filter(|s| !s.is_empty()) {
            self.text.push_str(t);
            out.push(Delta::Text(t.to_string()));
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            self.absorb_call(tc);
        }
        out
    }

    fn absorb_call(&mut self, tc: &Value) {
        let index = tc["index"].as_u64();
        let id = tc["id"].as_str().filter(|s| !s.is_empty());
        // A fragment continues the call with the same index; without an index, the last call
        // unless it names a new id.
        let pos = match index {
            Some(i) => self.calls.iter().position(|(ix, _)| *ix == Some(i)),
            None => match (id, self.calls.last()) {
                (Some(id), Some((_, last))) if last.id != id => None,
                (_, Some(_)) => Some(self.calls.len() - 1),
                (_, None) => None,
            },
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                self.calls.push((index, ToolCall::default()));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos].1;
        if let Some(id) = id {
            call.id = id.to_string();
        }
        let f = &tc["function"];
        if let Some(n) = f["name"].as_str() {
            call.name.push_str(n);
        }
        match &f["arguments"] {
            Value::String(a) => call.arguments.push_str(a),
            Value::Null => {}
            // A few servers send arguments as an object rather than a JSON string.
            other => call.arguments.push_str(&other.to_string()),
        }
    }

    pub fn finish(self) -> Completion {
        let calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut c))| {
                if c.id.is_empty() {
                    c.id = format!("call_{i}");
                }
                c
            })
            .collect();
        Completion {
            text: self.text,
            tool_calls: calls,
            usage: self.usage,
            finish_reason: self.finish_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            p.push(b":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n"),
            vec!["{\"a\":1}"]
        );
        assert_eq!(
            p.push(b"\nevent: e\ndata:[DONE]\n\n"),
            vec!["x\ny", "[DONE]"]
        );
    }

    #[test]
    fn fragmented_tool_calls_assemble_by_index() {
        let mut acc = Accumulator::default();
        let chunks = [
            json!({"choices":[{"delta":{"content":"Let me look."}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"read_","arguments":""}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"file","arguments":"{\"pa"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":1,"id":"c2","function":{"name":"list_dir","arguments":"{}"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a\"}"}}]}}]}),
            json!({"choices":[{"delta":{"reasoning_content":"hmm"},"finish_reason":"tool_calls"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}),
        ];
        let mut deltas = Vec::new();
        for c in &chunks {
            deltas.extend(acc.absorb(c));
        }
        assert_eq!(
            deltas,
            vec![
                Delta::Text("Let me look.".into()),
                Delta::Reasoning("hmm".into())
            ]
        );
        let done = acc.finish();
        assert_eq!(
            done,
            Completion {
                text: "Let me look.".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "c1".into(),
                        name: "read_file".into(),
                        arguments: "{\"path\":\"a\"}".into()
                    },
                    ToolCall {
                        id: "c2".into(),
                        name: "list_dir".into(),
                        arguments: "{}".into()
                    },
                ],
                usage: Some(Usage::tokens(12, 5)),
                finish_reason: Some("tool_calls".into()),
            }
        );
    }

    #[test]
    fn calls_without_index_or_id_still_assemble() {
        let mut acc = Accumulator::default();
        acc.absorb(&json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"search","arguments":{"pattern":"x"}}}]}}]}));
        let done = acc.finish();
        assert_eq!(done.tool_calls[0].id, "call_0");
        assert_eq!(done.tool_calls[0].arguments, "{\"pattern\":\"x\"}");
    }

    #[test]
    fn server_messages_are_quoted_from_openai_errors() {
        assert_eq!(
            server_message(r#"{"error":{"message":"model overloaded","type":"server_error"}}"#),
            "model overloaded"
        );
        assert_eq!(server_message("  plain text  "), "plain text");
        assert_eq!(server_message(""), "(empty body)");
    }

    #[test]
    fn only_rate_limits_server_and_network_errors_are_retried() {
        let status = |status| LlmError::Status {
            status,
            message: String::new(),
        };
        assert!(status(429).retryable());
        assert!(status(503).retryable());
        assert!(!status(400).retryable());
        assert!(!status(401).retryable());
        assert!(LlmError::Network("reset".into()).retryable());
        assert!(!LlmError::Protocol("bad".into()).retryable());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), Duration::from_millis(100));
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }
}
