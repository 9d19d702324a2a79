//! Usage as ACP agents report it, wherever they put it: the prompt response's `usage`
//! (opencode), gemini-cli's `_meta.quota`, qwen-code's `_meta.usage` on message chunks, and
//! `usage_update` (context and the session's cumulative cost, counted per turn). A turn that
//! reports nothing shows nothing. Cost reaches listings, stats and budgets.

use std::process::Command;

use serde_json::{Value, json};

use boocoder::domain::Usage;
use boocoder::mcp::types::{TaskList, UsageStats};

use crate::support::*;

async fn fake(c: &Client, prompt: &str, more: Value) -> TaskStatus {
    let mut args = json!({"prompt": prompt, "agent": "fake"});
    if let (Some(a), Some(m)) = (args.as_object_mut(), more.as_object()) {
        a.extend(m.clone());
    }
    let s = run_task(c, args).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    s
}

crate::both_stores!(agents_report_tokens_cost_and_context_their_own_way);
async fn agents_report_tokens_cost_and_context_their_own_way(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let first = fake(
        c,
        "tokens 1200 300\nusage 5000 200000 0.25\nsay hi",
        json!({}),
    )
    .await;
    assert_eq!(
        first.usage,
        Usage {
            cost_usd: Some(0.25),
            context_used: Some(5000),
            context_size: Some(200_000),
            ..Usage::tokens(1200, 300)
        }
    );
    // the session's cost is cumulative on the wire: the second turn counts only its share
    let second = fake(
        c,
        "usage 6000 200000 0.75\nsay again",
        json!({"session_id": first.session_id}),
    )
    .await;
    assert_eq!(
        second.usage,
        Usage {
            cost_usd: Some(0.5),
            context_used: Some(6000),
            context_size: Some(200_000),
            ..Usage::default()
        },
        "no tokens reported this turn, so none shown"
    );
    let whole: TaskStatus = call_as(c, "check_task_status", json!({"task_id": second.task_id}))
        .await
        .expect("status");
    assert_eq!(
        whole.session_usage.map(|u| (u.total_tokens(), u.cost_usd)),
        Some((Some(1500), Some(0.75)))
    );

    let gemini = fake(c, "gemini-tokens 90 7\nsay hi", json!({})).await;
    assert_eq!(gemini.usage, Usage::tokens(90, 7));
    let qwen = fake(
        c,
        "qwen-tokens 50 5\nsay a\nqwen-tokens 20 2\nsay b",
        json!({}),
    )
    .await;
    assert_eq!(qwen.usage, Usage::tokens(70, 7), "per-round counts summed");

    let silent = fake(c, "say nothing to count", json!({})).await;
    assert!(silent.usage.is_empty(), "{:#?}", silent.usage);
    let raw = call(c, "check_task_status", json!({"task_id": silent.task_id}))
        .await
        .expect("status");
    assert!(
        raw.get("usage").is_none(),
        "an agent that reports nothing shows no usage, not zeros: {raw}"
    );

    // the transcript says what was reported
    let text = transcript_text(c, &first.task_id).await;
    assert!(text.contains("1200 in / 300 out tokens"), "{text}");
    assert!(text.contains("$0.2500"), "{text}");

    // listings carry the cost where known
    let list: TaskList = call_as(c, "list_tasks", json!({})).await.expect("list");
    let cost = |id: &str| {
        list.tasks
            .iter()
            .find(|t| t.task_id == id)
            .and_then(|t| t.cost_usd)
    };
    assert_eq!(cost(&first.task_id), Some(0.25));
    assert_eq!(cost(&silent.task_id), None);
    let stats: UsageStats = call_as(c, "usage_stats", json!({"group_by": "agent"}))
        .await
        .expect("stats");
    let g = &stats.groups[0];
    assert_eq!(
        (g.key.as_str(), g.input_tokens, g.output_tokens),
        ("fake", 1200 + 90 + 70, 300 + 7 + 7)
    );
    assert_eq!(g.cost_usd, Some(0.75));
    assert_eq!(g.without_tokens, 2, "the second turn and the silent one");

    let ls = Command::new(BIN)
        .args(env.args())
        .arg("ls")
        .env("NO_COLOR", "1")
        .output()
        .expect("boocoder ls");
    let text = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(text.lines().next().unwrap_or("").contains("COST"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&first.task_id) && l.contains("$0.2500")),
        "{text}"
    );
}

#[tokio::test]
async fn a_task_past_its_cost_budget_is_stopped() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "write spent.txt yes\nusage 100 1000 0.5\nsleep 20000",
               "agent": "fake", "max_cost_usd": 0.4}),
    )
    .await;
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    let error = s.error.as_deref().unwrap_or("");
    assert!(
        error.starts_with("budget exceeded: spent $0.5000 of its max_cost_usd 0.4"),
        "{error}"
    );
    assert_eq!(s.files_changed.len(), 1, "the edit stays pending");
    let err = call(
        c,
        "new_task",
        json!({"prompt": "more", "parent_task_id": t.task_id}),
    )
    .await
    .expect_err("the tree spent its budget");
    assert!(err.contains("max_cost_usd"), "{err}");
    let err = call(c, "new_task", json!({"prompt": "x", "max_cost_usd": -1}))
        .await
        .expect_err("negative");
    assert!(err.contains("invalid `max_cost_usd`"), "{err}");
}
