//! Results that fit a context window: however many files a task changed, what a delegating
//! model reads back stays small. Prints the sizes (`FIGURE …`) for a 400-file change.

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::Peer;
use serde_json::{Value, json};

use crate::support::*;

const TEXT_MAX: usize = 1536;
const STRUCTURED_MAX: usize = 2048;
const SUMMARY_MAX: usize = 700;
const ROW_MAX: usize = 250;
const TOOLS_ORCHESTRATOR_MAX: usize = 6 * 1024;
const TOOLS_FULL_MAX: usize = 12 * 1024;

/// A tool call's text bytes, structured-content bytes and structured content.
async fn sized(client: &Peer<RoleClient>, tool: &str, args: Value) -> (usize, usize, Value) {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().expect("object args"));
    let r: CallToolResult = client.call_tool(params).await.expect("tools/call");
    assert_ne!(r.is_error, Some(true), "{tool}: {}", text_of(&r));
    let structured = r.structured_content.clone().unwrap_or(Value::Null);
    (text_of(&r).len(), structured.to_string().len(), structured)
}

/// The bytes of a `tools/list` result as the server sends it.
async fn tools_list_bytes(client: &Peer<RoleClient>) -> usize {
    let r = client.list_tools(None).await.expect("tools/list");
    assert!(r.next_cursor.is_none(), "one page");
    serde_json::to_string(&r).expect("json").len()
}

#[tokio::test]
async fn results_fit_a_context_window_for_a_400_file_change() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    // 397 one-line files, a five-line file, README.md rewritten (+1 -3), keep.txt deleted (-1):
    // 400 files, +403 -4. The final message is far longer than a summary may be.
    let long = "word ".repeat(600);
    let prompt = format!(
        "many src 397 line\nrun seq 5 > big.txt\nwrite README.md rewritten\ndelete keep.txt\nsay {long}\nsay the end"
    );
    let (new_text, new_structured, s) =
        sized(c, "new_task", json!({"prompt": prompt, "wait_seconds": 50})).await;
    assert_eq!(s["state"], "completed", "{s:#}");
    let id = s["task_id"].as_str().expect("task_id").to_string();
    let (check_text, check_structured, status) =
        sized(c, "check_task_status", json!({"task_id": id})).await;
    // A row with a long first line of prompt in two-byte characters and a failure quoting
    // stderr, beside the 400-file one.
    let wide = format!("say {}\nwarn {}\nexit 3", "é".repeat(300), "ü".repeat(300));
    let (_, _, failed) = sized(c, "new_task", json!({"prompt": wide, "wait_seconds": 50})).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    // A task blocked on a permission question whose diff preview is long: the status carries
    // its start, get_task_output the whole question.
    let asking = new_task(
        c,
        json!({"prompt": format!("perm-write asked.txt {}", "x".repeat(1400)), "agent": "fake-ask"}),
    )
    .await
    .task_id;
    let blocked = loop {
        let (text, structured, s) = sized(
            c,
            "check_task_status",
            json!({"task_id": asking, "wait_seconds": 5}),
        )
        .await;
        if s.get("waiting_for").is_some() {
            break (text, structured, s);
        }
        assert_ne!(s["state"], "failed", "{s:#}");
    };
    let (list_text, _, list) = sized(c, "list_tasks", json!({})).await;
    let row = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|r| r.to_string().len())
        .max()
        .expect("a row");
    let orchestrator = Server::stdio(&env, &["--tools", "orchestrator"]).await;
    let tools_orchestrator = tools_list_bytes(&orchestrator.client).await;
    let tools_full = tools_list_bytes(c).await;
    let summary = status["summary"].as_str().unwrap_or("").len();
    eprintln!(
        "FIGURE new_task (wait_seconds) result: text {new_text} B, structured {new_structured} B"
    );
    eprintln!(
        "FIGURE check_task_status result: text {check_text} B, structured {check_structured} B"
    );
    eprintln!("FIGURE summary: {summary} B");
    eprintln!(
        "FIGURE check_task_status while blocked on a question: text {} B, structured {} B",
        blocked.0, blocked.1
    );
    eprintln!("FIGURE list_tasks result (3 rows): text {list_text} B");
    eprintln!("FIGURE largest list_tasks row: {row} B");
    eprintln!("FIGURE tools/list orchestrator: {tools_orchestrator} B");
    eprintln!("FIGURE tools/list full: {tools_full} B");
    let text = {
        let params = CallToolRequestParams::new("check_task_status")
            .with_arguments(json!({"task_id": id}).as_object().cloned().expect("args"));
        text_of(&c.call_tool(params).await.expect("tools/call"))
    };
    eprintln!("FIGURE check_task_status text as the model reads it:\n{text}");
    eprintln!("FIGURE list_tasks: {list:#}");

    for (what, text, structured) in [
        ("new_task", new_text, new_structured),
        ("check_task_status", check_text, check_structured),
        ("check_task_status (blocked)", blocked.0, blocked.1),
    ] {
        assert!(text <= TEXT_MAX, "{what} text {text} B > {TEXT_MAX}");
        assert!(
            structured <= STRUCTURED_MAX,
            "{what} structured {structured} B > {STRUCTURED_MAX}"
        );
    }
    assert!(summary <= SUMMARY_MAX, "summary {summary} B");
    assert!(
        status["summary"]
            .as_str()
            .expect("summary")
            .ends_with("the end"),
        "the summary keeps the message's tail: {status:#}"
    );
    assert!(row <= ROW_MAX, "list_tasks row {row} B > {ROW_MAX}");
    assert!(
        tools_orchestrator <= TOOLS_ORCHESTRATOR_MAX,
        "tools/list orchestrator {tools_orchestrator} B"
    );
    assert!(
        tools_full <= TOOLS_FULL_MAX,
        "tools/list full {tools_full} B"
    );

    // The totals are exact; the entries are the ten largest, largest first.
    assert_eq!(status["files_total"], 400, "{status:#}");
    assert_eq!(status["additions_total"], 403, "{status:#}");
    assert_eq!(status["deletions_total"], 4, "{status:#}");
    let files: Vec<&str> = status["files_changed"]
        .as_array()
        .expect("files_changed")
        .iter()
        .map(|f| f.as_str().expect("a short entry"))
        .collect();
    assert_eq!(files.len(), 10, "{files:?}");
    assert_eq!(
        files[..3],
        ["A big.txt +5 -0", "M README.md +1 -3", "D keep.txt +0 -1"]
    );
    let st: TaskStatus = typed(status.clone());
    assert_eq!(st.files_total, 400);
    // No null, false or empty field anywhere in a status.
    for s in [&s, &status] {
        for (k, v) in s.as_object().expect("object") {
            let empty = v.is_null()
                || v == &json!(false)
                || v.as_str() == Some("")
                || v.as_array().is_some_and(|a| a.is_empty())
                || v.as_object().is_some_and(|o| o.is_empty());
            assert!(!empty, "`{k}` is {v}");
        }
    }

    // The full list stays reachable.
    let out = output(c, &id, json!({})).await;
    assert_eq!(out.files.len(), 400);
    let added = out.files.iter().map(|f| f.additions).sum::<u32>();
    assert_eq!(added, 403);
    assert!(out.files.iter().any(|f| f.path == "src/f00396.txt"));
    let preview = |q: &Value| q["preview"].as_str().map_or(0, str::len);
    let short = preview(&blocked.2["waiting_for"]);
    assert!(
        (1..=300).contains(&short),
        "preview cut to 300 bytes: {short}"
    );
    let whole = output(c, &asking, json!({}))
        .await
        .waiting_for
        .expect("the whole question");
    assert!(
        whole.preview.as_deref().map_or(0, str::len) > 1000,
        "{whole:#?}"
    );
    call(c, "cancel_task", json!({"task_id": asking}))
        .await
        .expect("cancel");
    orchestrator.stop().await;
    server.stop().await;
}
