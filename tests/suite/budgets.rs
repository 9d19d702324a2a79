//! Budgets: a task past its `max_tokens` is stopped and fails "budget exceeded" with its edits
//! kept as the pending change; a child of a tree that spent its budget cannot start; budgets
//! are validated, and one the agent cannot see is flagged in the status.

use serde_json::json;

use crate::support::fake_llm::{FakeLlm, Reply, tools};
use crate::support::*;

#[tokio::test]
async fn a_task_over_its_token_budget_fails_keeps_its_change_and_bounds_its_tree() {
    let env = Env::new();
    let llm = FakeLlm::start(
        vec![
            tools(
                "Writing notes.",
                &[("write_file", json!({"path": "notes.txt", "content": "n\n"}))],
                100,
                50,
            ),
            tools("", &[("read_file", json!({"path": "keep.txt"}))], 100, 50),
            // the model would think forever: only the budget ends this turn
            Reply::Hang(vec![]),
        ],
        None,
    )
    .await;
    let server = Server::native(&env, &llm.url, &[]).await;
    let c = &server.client;
    let t = new_task(c, json!({"prompt": "spend", "max_tokens": 250})).await;
    assert_eq!(
        t.budget,
        Some(boocoder::domain::Budget {
            max_tokens: Some(250),
            max_cost_usd: None,
            max_minutes: None
        })
    );
    assert_eq!(t.budget_note, None, "native reports its usage");
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    let error = s.error.as_deref().unwrap_or("");
    assert!(
        error.starts_with("budget exceeded: used 300 tokens of its max_tokens 250"),
        "{error}"
    );
    assert_eq!(
        changed(&s),
        vec![("notes.txt".to_string(), 1, 0)],
        "the edits stay pending"
    );

    // the tree under it has spent its budget: a child cannot start
    let err = call(
        c,
        "new_task",
        json!({"prompt": "more", "parent_task_id": t.task_id}),
    )
    .await
    .expect_err("child of a spent tree");
    assert!(
        err.contains("invalid `parent_task_id`")
            && err.contains(&format!(
                "the task tree of `{}` used 300 tokens of its max_tokens 250",
                t.task_id
            )),
        "{err}"
    );

    let err = call(c, "new_task", json!({"prompt": "x", "max_minutes": 0}))
        .await
        .expect_err("zero minutes");
    assert!(err.contains("invalid `max_minutes`"), "{err}");
}

#[tokio::test]
async fn a_budget_the_agent_cannot_see_is_flagged() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--max-task-minutes", "30"]).await;
    let c = &server.client;
    let t = run_task(c, json!({"prompt": "say hi", "max_tokens": 1000})).await;
    assert_eq!(t.state, TaskState::Completed, "{t:#?}");
    assert_eq!(
        t.budget,
        Some(boocoder::domain::Budget {
            max_tokens: Some(1000),
            max_cost_usd: None,
            max_minutes: Some(30)
        }),
        "the server's default minutes fill in"
    );
    let note = t.budget_note.unwrap_or_default();
    assert!(note.contains("max_tokens is not enforced"), "{note}");
}
