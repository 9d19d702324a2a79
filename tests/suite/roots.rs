//! The client's roots: a task that names no project runs in the client's first root that is
//! a git repository inside the allowed roots; roots outside them, or that are no repository,
//! are skipped; `notifications/roots/list_changed` is honoured; a client without roots gets
//! the server's default project.
#![allow(deprecated)] // rmcp marks roots deprecated (SEP-2577); 2025-11-25 clients use them

use std::path::Path;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ErrorData, Implementation, ListRootsResult, Root,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;

use crate::support::*;

#[derive(Clone, Default)]
struct RootsClient(Arc<Mutex<Vec<String>>>);

impl RootsClient {
    fn set(&self, dirs: &[&Path]) {
        *self.0.lock().expect("lock") = dirs
            .iter()
            .map(|d| url::Url::from_file_path(d).expect("url").to_string())
            .collect();
    }
}

impl ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_roots()
                .enable_roots_list_changed()
                .build(),
            Implementation::new("roots-test-client", "0.1.0"),
        )
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let roots = self.0.lock().expect("lock").clone();
        Ok(ListRootsResult::new(
            roots.into_iter().map(Root::new).collect(),
        ))
    }
}

fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("a.txt"), "a\n").expect("write");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

#[tokio::test]
async fn a_task_without_a_project_runs_in_the_clients_first_git_root() {
    let env = Env::new();
    let plain = env.root().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let app = env.root().join("app");
    repo(&app);
    let outside = tempfile::tempdir().expect("outside");
    let foreign = outside
        .path()
        .canonicalize()
        .expect("canon")
        .join("foreign");
    repo(&foreign);

    let client = RootsClient::default();
    client.set(&[&foreign, &plain, &app]);
    let server = Server::stdio_client(&env, env.args(), &[], client.clone()).await;
    let c = &server.client;
    let t = run_task(c, json!({"prompt": "say where"})).await;
    assert_eq!(
        Path::new(&t.project),
        app,
        "the first root that is an allowed repository (not the one outside --allow-root, not the plain directory)"
    );
    // a project named explicitly still wins
    let named = run_task(c, json!({"prompt": "say here", "project": env.repo})).await;
    assert_eq!(Path::new(&named.project), env.repo);

    // the client's roots change
    client.set(&[&env.repo]);
    c.notify_roots_list_changed().await.expect("notify");
    let mut moved = String::new();
    for _ in 0..50 {
        moved = run_task(c, json!({"prompt": "say moved"})).await.project;
        if Path::new(&moved) == env.repo {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(Path::new(&moved), env.repo, "roots/list_changed honoured");

    // only roots outside the allowed ones: the server's default project
    client.set(&[&foreign]);
    c.notify_roots_list_changed().await.expect("notify");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fallback = run_task(c, json!({"prompt": "say default"})).await;
    assert_eq!(Path::new(&fallback.project), env.repo);
}
