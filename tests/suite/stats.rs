//! Usage statistics over a known set of tasks: exact counts, success rates and groups, through
//! the tool and `boocoder stats`.

use std::process::Command;

use serde_json::json;

use boocoder::mcp::types::UsageStats;

use crate::support::*;

#[tokio::test]
async fn stats_count_tasks_by_agent_and_parent_exactly() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let root = run_task(c, json!({"prompt": "say one"})).await;
    run_task(
        c,
        json!({"prompt": "say two", "parent_task_id": root.task_id}),
    )
    .await;
    run_task(
        c,
        json!({"prompt": "exit 4", "parent_task_id": root.task_id}),
    )
    .await;
    run_task(c, json!({"prompt": "say three", "agent": "script-arg"})).await;

    let s: UsageStats = call_as(
        c,
        "usage_stats",
        json!({"group_by": "agent", "since": "1d"}),
    )
    .await
    .expect("usage_stats");
    let got: Vec<(&str, u32, u32, u32, Option<f64>)> = s
        .groups
        .iter()
        .map(|g| {
            (
                g.key.as_str(),
                g.tasks,
                g.completed,
                g.failed,
                g.success_rate,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("script", 3, 2, 1, Some(2.0 / 3.0)),
            ("script-arg", 1, 1, 0, Some(1.0))
        ]
    );
    assert!(s.groups.iter().all(|g| g.median_seconds.is_some()));

    let by_parent: UsageStats = call_as(c, "usage_stats", json!({"group_by": "parent"}))
        .await
        .expect("usage_stats");
    let parents: Vec<(&str, u32)> = by_parent
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.tasks))
        .collect();
    assert_eq!(parents, vec![("(none)", 2), (root.task_id.as_str(), 2)]);

    // a future date: nothing yet
    let none: UsageStats = call_as(c, "usage_stats", json!({"since": "2999-01-01"}))
        .await
        .expect("usage_stats");
    assert!(none.groups.is_empty());
    let err = call(c, "usage_stats", json!({"since": "last week"}))
        .await
        .expect_err("bad since");
    assert!(err.contains("invalid `since`"), "{err}");

    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(env.args())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("boocoder stats")
    };
    let j = cli(&["stats", "--by", "agent", "--since", "7d", "--json"]);
    let from_cli: UsageStats = serde_json::from_slice(&j.stdout).expect("stats --json");
    assert_eq!(from_cli.groups, s.groups);
    let text = String::from_utf8_lossy(&cli(&["stats"]).stdout).into_owned();
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("AGENT") && first.contains("SUCCESS"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("script ") && l.contains("67%")),
        "{text}"
    );
}
