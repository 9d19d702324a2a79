//! An MCP client that declares form elicitation and answers each `elicitation/create` the way
//! a person would in a scripted test: choose an option, decline, or never answer (until the
//! server withdraws the request). It records every form and every withdrawal.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    ErrorData, Implementation,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

/// How the person answers.
#[derive(Clone, Debug)]
pub enum Person {
    Choose(String),
    Decline,
    /// Never answers; the request stays open until the server cancels it.
    Away,
}

#[derive(Clone)]
pub struct ElicitClient {
    person: Person,
    forms: Arc<Mutex<Vec<Value>>>,
    withdrawn: Arc<Mutex<usize>>,
}

impl ElicitClient {
    pub fn new(person: Person) -> ElicitClient {
        ElicitClient {
            person,
            forms: Arc::default(),
            withdrawn: Arc::default(),
        }
    }

    /// The forms received, in wire JSON (plus `arrived_ms`: when, in Unix ms).
    pub fn forms(&self) -> Vec<Value> {
        self.forms.lock().expect("lock").clone()
    }

    /// How many forms the server withdrew before they were answered.
    pub fn withdrawn(&self) -> usize {
        *self.withdrawn.lock().expect("lock")
    }
}

impl ClientHandler for ElicitClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_elicitation().build(),
            Implementation::new("elicit-test-client", "0.1.0"),
        )
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let mut form = serde_json::to_value(&request).expect("form json");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        form["arrived_ms"] = json!(now);
        self.forms.lock().expect("lock").push(form);
        match &self.person {
            Person::Choose(id) => {
                Ok(ElicitResult::new(ElicitationAction::Accept)
                    .with_content(json!({"decision": id})))
            }
            Person::Decline => Ok(ElicitResult::new(ElicitationAction::Decline)),
            Person::Away => {
                ctx.ct.cancelled().await;
                *self.withdrawn.lock().expect("lock") += 1;
                Err(ErrorData::internal_error("withdrawn", None))
            }
        }
    }
}
