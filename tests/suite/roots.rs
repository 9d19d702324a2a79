//! The client's roots: a task that names no project runs in the client's first root that is
//! an allowed git repository (plain directories and URIs that are no local path are skipped);
//! over stdio the client's roots count as allowed roots for that connection — new tasks,
//! apply and rebase — but never for another client or the CLI; over HTTP they never widen the
//! allowed roots; `notifications/roots/list_changed` is honoured; a client without usable
//! roots gets the server's default project.
#![allow(deprecated)] // rmcp marks roots deprecated (SEP-2577); 2025-11-25 clients use them

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ErrorData, Implementation, ListRootsResult, Root,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

use crate::support::*;

#[derive(Clone, Default)]
struct RootsClient(Arc<Mutex<Vec<String>>>);

impl RootsClient {
    fn set(&self, dirs: &[&Path]) {
        self.set_uris(
            dirs.iter()
                .map(|d| url::Url::from_file_path(d).expect("url").to_string())
                .collect(),
        );
    }

    fn set_uris(&self, uris: Vec<String>) {
        *self.0.lock().expect("lock") = uris;
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

/// A repository outside every `Env`'s `--allow-root` (canonical), and the directory holding it.
fn outside_repo() -> (tempfile::TempDir, PathBuf) {
    let outside = tempfile::tempdir().expect("outside");
    let foreign = outside
        .path()
        .canonicalize()
        .expect("canon")
        .join("foreign");
    repo(&foreign);
    (outside, foreign)
}

/// Call `tool` until it fails (a `roots/list_changed` is handled asynchronously); the error.
async fn until_refused(c: &Peer<RoleClient>, tool: &str, args: serde_json::Value) -> String {
    for _ in 0..50 {
        if let Err(e) = call(c, tool, args.clone()).await {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{tool} {args} was never refused");
}

#[tokio::test]
async fn a_task_without_a_project_runs_in_the_clients_first_git_root() {
    let env = Env::new();
    let plain = env.root().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let app = env.root().join("app");
    repo(&app);

    let client = RootsClient::default();
    let app_uri = url::Url::from_file_path(&app).expect("url").to_string();
    client.set_uris(vec![
        format!("file://elsewhere.example{}", env.repo.display()),
        format!("http://localhost{}", env.repo.display()),
        "repo".into(),
        url::Url::from_file_path(&plain).expect("url").to_string(),
        app_uri,
    ]);
    let server = Server::stdio_client(&env, env.args(), &[], client.clone()).await;
    let c = &server.client;
    let t = run_task(c, json!({"prompt": "say where"})).await;
    assert_eq!(
        Path::new(&t.project),
        app,
        "the first root that is a local git repository (not a remote or non-file URI, not the plain directory)"
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

    // no root that is a repository: the server's default project
    client.set(&[&plain]);
    c.notify_roots_list_changed().await.expect("notify");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fallback = run_task(c, json!({"prompt": "say default"})).await;
    assert_eq!(Path::new(&fallback.project), env.repo);
}

#[tokio::test]
async fn over_stdio_the_clients_roots_are_allowed_roots_for_its_connection_only() {
    let env = Env::new();
    let (outside, foreign) = outside_repo();
    std::fs::create_dir_all(foreign.join("sub")).expect("mkdir");
    // the root the client declares is a link to the repository: it is resolved as
    // --allow-root is, so the project (canonical) lies in it
    let alias = outside.path().join("alias");
    std::os::unix::fs::symlink(&foreign, &alias).expect("symlink");

    let client = RootsClient::default();
    client.set(&[&alias]);
    let server = Server::stdio_client(&env, env.args(), &[], client.clone()).await;
    let c = &server.client;
    let t = run_task(c, json!({"prompt": "write hello.txt hi there\nsay wrote"})).await;
    assert_eq!(t.state, TaskState::Completed, "{t:?}");
    assert_eq!(Path::new(&t.project), foreign, "no project named: the root");
    let named = run_task(
        c,
        json!({"prompt": "write two.txt two\nsay wrote", "project": foreign.join("sub")}),
    )
    .await;
    assert_eq!(named.state, TaskState::Completed, "{named:?}");
    assert_eq!(Path::new(&named.project), foreign, "a path in the root");

    // the CLI on the same data directory, with the same flags but no such root, is refused
    let cli = Command::new(BIN)
        .args(env.args())
        .args(["apply", &t.task_id])
        .env("NO_COLOR", "1")
        .output()
        .expect("run boocoder apply");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(!cli.status.success(), "{said}");
    assert!(said.contains("outside the allowed roots"), "{said}");
    assert!(!foreign.join("hello.txt").exists());

    // the connection whose root it is may rebase and apply
    let r: RebaseOutcome = call_as(c, "rebase_pending", json!({"task_id": t.task_id}))
        .await
        .expect("rebase from the connection whose root it is");
    assert_eq!(r.result, RebaseState::UpToDate);
    call(c, "apply_pending", json!({"task_id": t.task_id}))
        .await
        .expect("apply from the connection whose root it is");
    assert_eq!(
        std::fs::read_to_string(foreign.join("hello.txt")).expect("applied"),
        "hi there\n"
    );

    // the root is removed: it widens nothing any more, for new tasks or applies
    client.set(&[&env.repo]);
    c.notify_roots_list_changed().await.expect("notify");
    let err = until_refused(
        c,
        "new_task",
        json!({"prompt": "say x", "project": foreign}),
    )
    .await;
    assert!(err.contains("outside the allowed roots"), "{err}");
    assert!(err.contains("this client's roots"), "{err}");
    let err = call(c, "apply_pending", json!({"task_id": named.task_id}))
        .await
        .expect_err("the root was withdrawn");
    assert!(err.contains("outside the allowed roots"), "{err}");
    assert!(!foreign.join("two.txt").exists());
    // a root added widens
    client.set(&[&foreign]);
    c.notify_roots_list_changed().await.expect("notify");
    let mut applied = Err(String::new());
    for _ in 0..50 {
        applied = call(c, "apply_pending", json!({"task_id": named.task_id})).await;
        if applied.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    applied.expect("the root is back");
    assert!(foreign.join("two.txt").exists());
    server.stop().await;
}

#[tokio::test]
async fn over_http_the_clients_roots_never_widen_the_allowed_roots() {
    let env = Env::new();
    let (_outside, foreign) = outside_repo();
    // a pending change in `foreign`, made by a stdio client whose root it is
    let client = RootsClient::default();
    client.set(&[&foreign]);
    let server = Server::stdio_client(&env, env.args(), &[], client.clone()).await;
    let t = run_task(
        &server.client,
        json!({"prompt": "write hello.txt hi\nsay wrote"}),
    )
    .await;
    assert_eq!(Path::new(&t.project), foreign);
    server.stop().await;

    // the same roots over HTTP, on a server with no default project; one root is a link
    // inside --allow-root that leads out of it
    let mut args = env.args();
    let i = args.iter().position(|a| a == "--project").expect("flag");
    args.drain(i..i + 2);
    let (_child, url, _log) = Server::http_with(&env, args, &[]).await;
    let link = env.root().join("link");
    std::os::unix::fs::symlink(&foreign, &link).expect("symlink");
    client.set(&[&link, &foreign]);
    let remote = client
        .clone()
        .serve(StreamableHttpClientTransport::from_config(http_config(
            &env, &url,
        )))
        .await
        .expect("connect over HTTP");

    let err = call(&remote, "new_task", json!({"prompt": "say x"}))
        .await
        .expect_err("no usable root and no default project");
    for needle in [
        "no default project",
        "this client's roots were skipped",
        &format!("`{}` is outside the allowed roots", foreign.display()),
        "over HTTP a client's roots do not widen the allowed roots",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let err = call(
        &remote,
        "new_task",
        json!({"prompt": "say x", "project": foreign}),
    )
    .await
    .expect_err("named outside the allowed roots");
    assert!(err.contains("outside the allowed roots"), "{err}");
    for tool in ["apply_pending", "rebase_pending"] {
        let err = call(&remote, tool, json!({"task_id": t.task_id}))
            .await
            .expect_err("the project is outside the allowed roots");
        assert!(err.contains("outside the allowed roots"), "{tool}: {err}");
    }
    // Nor can it run a follow-up turn in that session, or retry its task.
    let err = call(
        &remote,
        "new_task",
        json!({"prompt": "say y", "session_id": t.session_id}),
    )
    .await
    .expect_err("a follow-up outside the allowed roots");
    assert!(err.contains("outside the allowed roots"), "{err}");
    assert!(!foreign.join("hello.txt").exists());
}
