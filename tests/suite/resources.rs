//! Tasks as MCP resources, with update notifications for subscribers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
    SubscribeRequestParams,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;

use crate::support::*;

#[derive(Clone, Default)]
struct Recorder {
    updated: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.updated.lock().expect("lock").push(params.uri);
    }
}

fn text(c: &ResourceContents) -> String {
    match c {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test]
#[allow(deprecated)]
async fn tasks_are_resources_and_subscribers_hear_about_changes() {
    let env = Env::new();
    let recorder = Recorder::default();
    let server = Server::stdio_client(&env, env.args(), &[], recorder.clone()).await;
    let c = &server.client;
    let id = new_task(
        c,
        json!({"prompt": "sleep 1\nwrite res.txt hello\nsay wrote it"}),
    )
    .await
    .task_id;
    let uri = format!("boocoder://tasks/{id}");
    c.subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .expect("subscribe");
    wait_done(c, &id).await;
    for _ in 0..50 {
        if recorder.updated.lock().expect("lock").contains(&uri) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        recorder.updated.lock().expect("lock").contains(&uri),
        "no update for {uri}"
    );

    let listed = c.list_all_resources().await.expect("list");
    assert!(listed.iter().any(|r| r.uri == uri), "{listed:?}");
    let templates = c.list_all_resource_templates().await.expect("templates");
    assert_eq!(templates.len(), 3);

    let status = c
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .expect("status");
    let v: TaskStatus = serde_json::from_str(&text(&status.contents[0])).expect("json");
    assert_eq!(v.state, TaskState::Completed, "{v:#?}");
    let diff = c
        .read_resource(ReadResourceRequestParams::new(format!("{uri}/diff")))
        .await
        .expect("diff");
    assert!(text(&diff.contents[0]).contains("+hello"));
    let tr = c
        .read_resource(ReadResourceRequestParams::new(format!("{uri}/transcript")))
        .await
        .expect("transcript");
    assert!(text(&tr.contents[0]).contains("[text] wrote it"));
    let missing = c
        .read_resource(ReadResourceRequestParams::new(
            "boocoder://tasks/t-000000000000".to_string(),
        ))
        .await;
    assert!(missing.is_err());
    server.stop().await;
}
