//! A task status as a tool result. `Json` would send the JSON twice (structured content and a
//! text copy); a status goes out once as structured content, and as text the same fields one
//! `key: value` per line, both kept small whatever the task ([`TaskStatus::fit`]).

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateTaskResult, InputRequiredResult,
};

use super::types::TaskStatus;

pub struct Status(pub TaskStatus);

impl IntoCallToolResult for Status {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.result()?.into())
    }
}

impl Status {
    pub fn result(self) -> Result<CallToolResult, rmcp::ErrorData> {
        let status = self.0.fit();
        let value = serde_json::to_value(&status).map_err(|e| {
            rmcp::ErrorData::internal_error(format!("could not serialise the status: {e}"), None)
        })?;
        let mut result = CallToolResult::structured(value);
        result.content = vec![ContentBlock::text(status.text())];
        Ok(result)
    }
}

/// What a task tool answers: the status, or for clients that speak them, an MCP task (the
/// Tasks extension) or a request for input (MRTR: a permission question while it waited).
pub enum Reply {
    Status(Box<Status>),
    Task(CreateTaskResult),
    Input(InputRequiredResult),
}

impl From<TaskStatus> for Reply {
    fn from(s: TaskStatus) -> Reply {
        Reply::Status(Box::new(Status(s)))
    }
}

impl IntoCallToolResult for Reply {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        match self {
            Reply::Status(s) => s.into_call_tool_result(),
            Reply::Task(t) => Ok(CallToolResponse::Task(t)),
            Reply::Input(i) => Ok(CallToolResponse::InputRequired(i)),
        }
    }
}
