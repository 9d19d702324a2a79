//! An MCP client that declares the Tasks extension (and, when asked, form elicitation, so a
//! 2026-07-28 server may ask it by MRTR), and records the `notifications/tasks` it receives.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitationCapability, Implementation,
    TaskStatusNotificationParams,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};

#[derive(Clone, Default)]
pub struct TasksClient {
    /// Also declare form elicitation.
    pub elicitation: bool,
    /// Also declare the Tasks extension (false: an MRTR-only client).
    pub no_tasks: bool,
    pub notes: Arc<Mutex<Vec<(String, String)>>>,
}

impl TasksClient {
    pub fn new() -> TasksClient {
        TasksClient::default()
    }

    /// `(task_id, status)` of each `notifications/tasks`, in arrival order.
    pub fn notes(&self) -> Vec<(String, String)> {
        self.notes.lock().expect("lock").clone()
    }
}

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        let mut caps = if self.no_tasks {
            ClientCapabilities::default()
        } else {
            ClientCapabilities::builder().enable_tasks().build()
        };
        if self.elicitation {
            caps.elicitation = Some(ElicitationCapability::default());
        }
        ClientConfig::new(caps, Implementation::new("tasks-test-client", "0.1.0"))
    }

    async fn on_task_status(
        &self,
        params: TaskStatusNotificationParams,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let status = serde_json::to_value(params.task.status())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.notes
            .lock()
            .expect("lock")
            .push((params.task.task.task_id.clone(), status));
    }
}
