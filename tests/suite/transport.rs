//! Streamable HTTP: the same round trip as stdio, bearer tokens, and tool profiles.

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::support::*;

#[tokio::test]
async fn round_trip_over_http() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &[]).await;
    let client = http_client(&env, &url).await;
    crate::suite::flow::round_trip(&client, &env).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn http_requires_the_token_when_one_is_set() {
    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &["--token", "s3cret"]).await;
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut req = http
            .post(&url)
            .header("Accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.expect("post");
        assert_eq!(resp.status().as_u16(), 401, "auth {auth:?} must be refused");
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header("s3cret");
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("authorised client");
    let tools = client.list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "new_task"));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn non_loopback_bind_without_token_is_refused() {
    let env = Env::new();
    let out = tokio::process::Command::new(BIN)
        .args(env.args())
        .args(["serve", "--http", "0.0.0.0:0"])
        .env_remove("BOOCODER_TOKEN")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
}

#[tokio::test]
async fn orchestrator_profile_publishes_five_tools() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--tools", "orchestrator"]).await;
    let mut names: Vec<String> = server
        .client
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "answer_permission",
            "check_task_status",
            "get_task_output",
            "list_tasks",
            "new_task"
        ]
    );
    let full = Server::stdio(&env, &[]).await;
    let n = full.client.list_all_tools().await.expect("tools").len();
    assert_eq!(n, 15);
    server.stop().await;
    full.stop().await;
}

/// The 2026-07-28 lifecycle (`server/discover`, per-request `_meta`, no `initialize`): what the
/// newest SDK clients try first. The whole round trip must work there too, over stdio and HTTP.
#[tokio::test]
async fn discover_lifecycle_round_trip_over_stdio_and_http() {
    use rmcp::ClientServiceExt;

    let env = Env::new();
    let (mut child, client) = discover_stdio(&env, ()).await;
    let version = client.peer_info().map(|i| i.protocol_version.to_string());
    assert_eq!(version.as_deref(), Some("2026-07-28"));
    crate::suite::flow::round_trip(&client, &env).await;
    drop(client);
    let _ = child.wait().await;

    let env = Env::new();
    let (_child, url, _log) = Server::http(&env, &[]).await;
    let client = ()
        .serve_with_lifecycle(
            rmcp::transport::StreamableHttpClientTransport::from_config(http_config(&env, &url)),
            discover(),
        )
        .await
        .expect("discover over HTTP");
    crate::suite::flow::round_trip(&client, &env).await;
}
