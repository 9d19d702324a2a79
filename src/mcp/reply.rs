//! A task status as a tool result. `Json` would send the JSON twice (structured content and a
//! text copy); a status goes out once as structured content, and as text the same fields one
//! `key: value` per line, both kept small whatever the task ([`TaskStatus::fit`]).

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use super::types::TaskStatus;

pub struct Status(pub TaskStatus);

impl IntoCallToolResult for Status {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let status = self.0.fit();
        let value = serde_json::to_value(&status).map_err(|e| {
            rmcp::ErrorData::internal_error(format!("could not serialise the status: {e}"), None)
        })?;
        let mut result = CallToolResult::structured(value);
        result.content = vec![ContentBlock::text(status.text())];
        Ok(result.into())
    }
}
