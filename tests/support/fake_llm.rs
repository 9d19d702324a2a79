//! A scripted OpenAI-compatible endpoint on 127.0.0.1:0: replays streamed chat completions
//! (text, tool calls in fragments, usage), HTTP errors and hanging streams, and records every
//! request body with its arrival and reply times.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One scripted answer to a chat-completions request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream these chunks as SSE events, then `[DONE]`.
    Sse(Vec<Value>),
    /// Answer with this status and body.
    Status(u16, String),
    /// Stream these chunks, then keep the stream open forever.
    Hang(Vec<Value>),
}

/// A reply streaming `text` in two pieces, then usage.
pub fn text(s: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    let mid = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    Reply::Sse(vec![
        json!({"choices":[{"index":0,"delta":{"role":"assistant","content":&s[..mid]}}]}),
        json!({"choices":[{"index":0,"delta":{"content":&s[mid..]},"finish_reason":"stop"}]}),
        usage(prompt_tokens, completion_tokens),
    ])
}

fn usage(p: u64, c: u64) -> Value {
    json!({"choices":[],"usage":{"prompt_tokens":p,"completion_tokens":c,"total_tokens":p+c}})
}

/// A reply with optional text, then tool calls whose ids, names and arguments arrive in
/// fragments (as llama.cpp and OpenAI stream them), then usage.
pub fn tools(
    say: &str,
    calls: &[(&str, Value)],
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Reply {
    let mut chunks = Vec::new();
    if !say.is_empty() {
        chunks.push(json!({"choices":[{"index":0,"delta":{"role":"assistant","content":say}}]}));
    }
    chunks.push(
        json!({"choices":[{"index":0,"delta":{"reasoning_content":"thinking about tools"}}]}),
    );
    for (i, (name, args)) in calls.iter().enumerate() {
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        let (n1, n2) = name.split_at(name.len() / 2);
        chunks.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[
            {"index":i,"id":format!("call_{i}_{}", rand_tag()),"type":"function","function":{"name":n1,"arguments":""}}]}}]}));
        chunks.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[
            {"index":i,"function":{"name":n2,"arguments":a}}]}}]}));
        chunks.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[
            {"index":i,"function":{"arguments":b}}]}}]}));
    }
    chunks.push(json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}));
    chunks.push(usage(prompt_tokens, completion_tokens));
    Reply::Sse(chunks)
}

fn rand_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    /// Served when the script is empty (for "forever" scenarios).
    fallback: Option<Reply>,
    requests: Vec<Value>,
    /// The `Authorization` header of each request, if any.
    auth: Vec<Option<String>>,
    /// (arrival, reply written) per request.
    times: Vec<(Instant, Instant)>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeLlm {
    pub async fn start(script: Vec<Reply>, fallback: Option<Reply>) -> FakeLlm {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            fallback,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake llm");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake llm serve");
        });
        FakeLlm {
            url: format!("http://{addr}/v1"),
            inner,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").requests.clone()
    }

    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.inner.lock().expect("lock").auth.clone()
    }

    /// Our time between rounds: from the end of one reply to the arrival of the next request.
    pub fn gaps(&self) -> Vec<Duration> {
        let t = self.inner.lock().expect("lock").times.clone();
        t.windows(2)
            .map(|w| w[1].0.saturating_duration_since(w[0].1))
            .collect()
    }

    /// Wait until `n` requests arrived.
    pub async fn wait_requests(&self, n: usize) {
        for _ in 0..600 {
            if self.requests().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the fake endpoint never saw {n} requests");
    }
}

async fn models() -> impl IntoResponse {
    let body = json!({"object":"list","data":[{"id":"test-model","object":"model"},{"id":"other-model","object":"model"}]});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn chat(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let arrived = Instant::now();
    let reply = {
        let mut g = inner.lock().expect("lock");
        g.auth.push(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        );
        g.requests
            .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
        let r = g.script.pop_front().or_else(|| g.fallback.clone());
        r.unwrap_or(Reply::Status(500, "script exhausted".into()))
    };
    let sse = |chunks: &[Value], done: bool| {
        let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        if done {
            s.push_str("data: [DONE]\n\n");
        }
        s
    };
    let resp = match reply {
        Reply::Sse(chunks) => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from(sse(&chunks, true)))
            .expect("response"),
        Reply::Status(code, body) => (
            StatusCode::from_u16(code).expect("status"),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Reply::Hang(chunks) => {
            let first = futures::stream::once(async move {
                Ok::<_, std::io::Error>(axum::body::Bytes::from(sse(&chunks, false)))
            });
            let stream = futures::StreamExt::chain(first, futures::stream::pending());
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(stream))
                .expect("response")
        }
    };
    inner
        .lock()
        .expect("lock")
        .times
        .push((arrived, Instant::now()));
    resp
}
