//! Tasks as MCP resources: `boocoder://tasks/{id}` (the compact status, JSON),
//! `…/transcript` (one line per entry) and `…/diff` (the session's unified diff). Clients that
//! subscribe get `notifications/resources/updated` when the task changes state or progresses.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
};
use rmcp::{ErrorData as McpError, Peer, RoleServer};

use super::McpServer;
use super::types::TaskStatus;
use crate::engine::{ListRequest, OutputRequest};

const PREFIX: &str = "boocoder://tasks/";

/// The URI of a task's status; its transcript and diff are at `/transcript` and `/diff` below.
pub(super) fn task_uri(task_id: &str) -> String {
    format!("{PREFIX}{task_id}")
}

/// What a resource URI names.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Status,
    Transcript,
    Diff,
}

fn parse(uri: &str) -> Option<(String, Part)> {
    let rest = uri.strip_prefix(PREFIX)?;
    let (id, part) = match rest.split_once('/') {
        None => (rest, Part::Status),
        Some((id, "transcript")) => (id, Part::Transcript),
        Some((id, "diff")) => (id, Part::Diff),
        Some(_) => return None,
    };
    (!id.is_empty()).then(|| (id.to_string(), part))
}

/// Per-connection subscriptions; the forwarder starts with the first subscription.
#[derive(Clone, Default)]
pub(super) struct Subscriptions {
    uris: Arc<Mutex<HashSet<String>>>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl McpServer {
    pub(super) async fn resource_list(&self) -> Result<ListResourcesResult, McpError> {
        let page = self
            .engine
            .list(ListRequest {
                limit: Some(50),
                ..Default::default()
            })
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let items = page
            .tasks
            .iter()
            .map(|t| {
                let line = t
                    .prompt
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect::<String>();
                Resource::new(task_uri(&t.id), format!("task {}", t.id))
                    .with_description(format!("{} · {}: {line}", t.state, t.provider))
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(items))
    }

    pub(super) fn resource_templates() -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{PREFIX}{{task_id}}"), "task status")
                .with_description("State, timings, summary, changed files and usage of a task")
                .with_mime_type("application/json"),
            ResourceTemplate::new(format!("{PREFIX}{{task_id}}/transcript"), "task transcript")
                .with_description("The task's transcript, one entry per line")
                .with_mime_type("text/plain"),
            ResourceTemplate::new(format!("{PREFIX}{{task_id}}/diff"), "task diff")
                .with_description("The unified diff of the task's session (git apply format)")
                .with_mime_type("text/x-diff"),
        ])
    }

    pub(super) async fn resource_read(&self, uri: &str) -> Result<ReadResourceResult, McpError> {
        let Some((id, part)) = parse(uri) else {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource `{uri}`; boocoder serves {PREFIX}{{task_id}}[/transcript|/diff]"
                ),
                None,
            ));
        };
        let not_found =
            |e: crate::engine::EngineError| McpError::resource_not_found(e.to_string(), None);
        let contents = match part {
            Part::Status => {
                let task = self.engine.task(&id).await.map_err(not_found)?;
                let json = serde_json::to_string_pretty(&TaskStatus::from_task(&task).fit())
                    .map_err(|e| McpError::internal_error(e.to_string(), None))?;
                ResourceContents::text(json, uri).with_mime_type("application/json")
            }
            Part::Transcript | Part::Diff => {
                let page = self
                    .engine
                    .output(OutputRequest {
                        task_id: id,
                        max_events: Some(1000),
                        max_diff_bytes: Some(1 << 20),
                        ..Default::default()
                    })
                    .await
                    .map_err(not_found)?;
                if part == Part::Diff {
                    ResourceContents::text(page.diff, uri).with_mime_type("text/x-diff")
                } else {
                    let text: String = page
                        .events
                        .iter()
                        .map(|e| format!("[{}] {}\n", e.kind.as_str(), e.text.trim_end()))
                        .collect();
                    ResourceContents::text(text, uri)
                }
            }
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }

    pub(super) fn resource_subscribe(
        &self,
        uri: &str,
        peer: Peer<RoleServer>,
    ) -> Result<(), McpError> {
        if parse(uri).is_none() {
            return Err(McpError::resource_not_found(
                format!("no resource `{uri}`"),
                None,
            ));
        }
        if let Ok(mut set) = self.subscriptions.uris.lock() {
            set.insert(uri.to_string());
        }
        if !self
            .subscriptions
            .started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let subs = self.subscriptions.uris.clone();
            let mut updates = self.engine.subscribe();
            tokio::spawn(async move {
                loop {
                    let u = match updates.recv().await {
                        Ok(u) => u,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    };
                    let targets: Vec<String> = match subs.lock() {
                        Ok(set) => set
                            .iter()
                            .filter(|s| parse(s).is_some_and(|(id, _)| id == u.task_id))
                            .cloned()
                            .collect(),
                        Err(_) => break,
                    };
                    for uri in targets {
                        if peer
                            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    pub(super) fn resource_unsubscribe(&self, uri: &str) {
        if let Ok(mut set) = self.subscriptions.uris.lock() {
            set.remove(uri);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_strictly() {
        assert_eq!(
            parse("boocoder://tasks/t-1"),
            Some(("t-1".into(), Part::Status))
        );
        assert_eq!(
            parse("boocoder://tasks/t-1/diff"),
            Some(("t-1".into(), Part::Diff))
        );
        assert_eq!(
            parse("boocoder://tasks/t-1/transcript"),
            Some(("t-1".into(), Part::Transcript))
        );
        assert_eq!(parse("boocoder://tasks/t-1/other"), None);
        assert_eq!(parse("boocoder://tasks/"), None);
        assert_eq!(parse("file:///etc/passwd"), None);
    }
}
