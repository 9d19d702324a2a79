//! Conflicts between sessions, early: an apply (and its dry run) names the other sessions whose
//! pending changes touch the same files; after an apply, a session whose change no longer
//! applies cleanly shows `stale_against_checkout`, and one editing other files does not.

use serde_json::json;

use crate::support::*;

crate::both_stores!(overlapping_sessions_are_named_and_marked_stale_after_an_apply);
async fn overlapping_sessions_are_named_and_marked_stale_after_an_apply(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let a = run_task(c, json!({"prompt": "write README.md version a"})).await;
    let b = run_task(
        c,
        json!({"prompt": "write README.md version b\nwrite b.txt b"}),
    )
    .await;
    let other = run_task(c, json!({"prompt": "write other.txt c"})).await;

    let dry: ApplyOutcome = call_as(
        c,
        "apply_pending",
        json!({"task_id": a.task_id, "dry_run": true}),
    )
    .await
    .expect("dry run");
    assert_eq!(dry.overlapping.len(), 1, "{dry:#?}");
    assert_eq!(dry.overlapping[0].session_id, b.session_id);
    assert_eq!(dry.overlapping[0].files, vec!["README.md".to_string()]);
    assert!(dry.now_stale.is_empty(), "a dry run marks nothing");

    let applied: ApplyOutcome = call_as(c, "apply_pending", json!({"task_id": a.task_id}))
        .await
        .expect("apply");
    assert_eq!(applied.now_stale, vec![b.session_id.clone()]);

    let stale = task_status(c, &b.task_id).await;
    assert_eq!(
        stale.stale_against_checkout,
        Some(vec!["README.md".to_string()]),
        "{stale:#?}"
    );
    let fine = task_status(c, &other.task_id).await;
    assert_eq!(fine.stale_against_checkout, None, "{fine:#?}");

    // the stale change is refused, naming the file; the other applies
    let err = call(c, "apply_pending", json!({"task_id": b.task_id}))
        .await
        .expect_err("stale change refused");
    assert!(err.contains("README.md"), "{err}");
    let ok: ApplyOutcome = call_as(c, "apply_pending", json!({"task_id": other.task_id}))
        .await
        .expect("apply other");
    assert_eq!(ok.result, "applied");
    assert_eq!(env.read("README.md").as_deref(), Some("version a\n"));
}
