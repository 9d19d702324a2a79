//! An MCP client that declares sampling with tools and answers `sampling/createMessage` from a
//! script, recording each request: the model of a native task when no endpoint is configured.
#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577); 2025-11-25 clients use it

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientInfo, CreateMessageRequestParams, CreateMessageResult, ErrorData,
    Implementation,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct SamplingClient {
    script: Arc<Mutex<VecDeque<Value>>>,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl SamplingClient {
    /// Each item is a `CreateMessageResult` in wire JSON.
    pub fn new(script: Vec<Value>) -> SamplingClient {
        SamplingClient {
            script: Arc::new(Mutex::new(script.into())),
            seen: Arc::default(),
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().expect("lock").clone()
    }
}

/// An assistant answer with text and `tool_use` blocks.
pub fn answer(text: &str, calls: &[(&str, Value)]) -> Value {
    let mut content = vec![json!({"type": "text", "text": text})];
    for (i, (name, input)) in calls.iter().enumerate() {
        content.push(
            json!({"type": "tool_use", "id": format!("tu_{i}"), "name": name, "input": input}),
        );
    }
    let stop = if calls.is_empty() {
        "endTurn"
    } else {
        "toolUse"
    };
    json!({"role": "assistant", "model": "client-model", "stopReason": stop, "content": content})
}

impl ClientHandler for SamplingClient {
    fn get_info(&self) -> ClientInfo {
        ClientInfo::new(
            ClientCapabilities::builder()
                .enable_sampling()
                .enable_sampling_tools()
                .build(),
            Implementation::new("sampling-test-client", "0.1.0"),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen
            .lock()
            .expect("lock")
            .push(serde_json::to_value(&params).expect("params json"));
        let next = self.script.lock().expect("lock").pop_front();
        let Some(next) = next else {
            return Err(ErrorData::internal_error("sampling script exhausted", None));
        };
        Ok(serde_json::from_value(next).expect("scripted result"))
    }
}
