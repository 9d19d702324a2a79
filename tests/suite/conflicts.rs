//! Conflicts between sessions, early: an apply (and its dry run) names the other sessions whose
//! pending changes touch the same files; after an apply, a session whose change no longer
//! applies cleanly shows `stale_against_checkout`, and one editing other files does not;
//! `rebase_pending` merges a stale change onto the checkout, or names the lines both changed.

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

/// A 12-line README.md committed in the project (before the server starts), so that edits of
/// line 1 and line 10 do not touch.
fn twelve_line_readme(env: &Env) {
    let text: String = (1..=12).map(|i| format!("line {i}\n")).collect();
    std::fs::write(env.repo.join("README.md"), text).expect("write");
    git(&env.repo, &["commit", "-qam", "twelve lines"]);
}

/// A prompt for the script agent: line `n` of README.md becomes `text`.
fn edit_line(n: u32, text: &str) -> serde_json::Value {
    json!({"prompt": format!("run sed -i '{n}s/.*/{text}/' README.md")})
}

async fn rebase(c: &rmcp::service::Peer<rmcp::RoleClient>, session_id: &str) -> RebaseOutcome {
    call_as(c, "rebase_pending", json!({"session_id": session_id}))
        .await
        .expect("rebase_pending")
}

crate::both_stores!(a_stale_change_editing_other_lines_is_rebased_and_then_applies);
async fn a_stale_change_editing_other_lines_is_rebased_and_then_applies(env: Env) {
    twelve_line_readme(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let a = run_task(c, edit_line(1, "line 1 by a")).await;
    let mut b_prompt = edit_line(10, "line 10 by b");
    b_prompt["prompt"] = json!(format!(
        "{}\nwrite b.txt b",
        b_prompt["prompt"].as_str().unwrap_or("")
    ));
    let b = run_task(c, b_prompt).await;

    let applied: ApplyOutcome = call_as(c, "apply_pending", json!({"task_id": a.task_id}))
        .await
        .expect("apply a");
    assert_eq!(applied.overlapping.len(), 1, "{applied:#?}");
    assert_eq!(applied.overlapping[0].session_id, b.session_id);
    assert_eq!(applied.now_stale, vec![b.session_id.clone()]);
    let stale = task_status(c, &b.task_id).await;
    assert_eq!(
        stale.stale_against_checkout,
        Some(vec!["README.md".to_string()])
    );

    let r = rebase(c, &b.session_id).await;
    assert_eq!(r.result, RebaseState::Merged, "{r:#?}");
    assert!(r.conflicts.is_empty(), "{r:#?}");
    let mut files: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    files.sort();
    assert_eq!(files, vec!["README.md", "b.txt"]);
    let fresh = task_status(c, &b.task_id).await;
    assert_eq!(fresh.stale_against_checkout, None, "{fresh:#?}");
    // The pending diff is b's own work on top of the checkout: a's line stays.
    let diff = output(c, &b.task_id, json!({})).await.diff;
    assert!(diff.contains("+line 10 by b"), "{diff}");
    assert!(!diff.contains("line 1 by a"), "{diff}");
    // The worktree holds the merge, so the agent's next turn sees both edits.
    let wt = env.data.join("worktrees").join(&b.session_id);
    let merged = std::fs::read_to_string(wt.join("README.md")).expect("worktree README");
    assert!(
        merged.starts_with("line 1 by a\n") && merged.contains("line 10 by b\n"),
        "{merged}"
    );
    let again = rebase(c, &b.session_id).await;
    assert_eq!(again.result, RebaseState::UpToDate, "{again:#?}");

    let ok: ApplyOutcome = call_as(c, "apply_pending", json!({"session_id": b.session_id}))
        .await
        .expect("apply b after the rebase");
    assert_eq!(ok.result, "applied");
    let readme = env.read("README.md").expect("README");
    assert!(
        readme.starts_with("line 1 by a\n") && readme.contains("\nline 10 by b\n"),
        "{readme}"
    );
    assert_eq!(env.read("b.txt").as_deref(), Some("b\n"));

    // A follow-up turn's diff holds only its own work.
    let next = run_task(
        c,
        json!({"prompt": "append README.md more", "session_id": b.session_id}),
    )
    .await;
    let diff = output(c, &next.task_id, json!({})).await.diff;
    assert!(diff.contains("+more"), "{diff}");
    assert!(
        !diff.contains("line 1 by a") && !diff.contains("+line 10"),
        "{diff}"
    );
}

crate::both_stores!(an_overlapping_stale_change_is_refused_naming_the_hunk);
async fn an_overlapping_stale_change_is_refused_naming_the_hunk(env: Env) {
    twelve_line_readme(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let a = run_task(c, edit_line(5, "line 5 by a")).await;
    let b = run_task(c, edit_line(5, "line 5 by b")).await;
    let applied: ApplyOutcome = call_as(c, "apply_pending", json!({"task_id": a.task_id}))
        .await
        .expect("apply a");
    assert_eq!(applied.now_stale, vec![b.session_id.clone()]);
    let checkout = env.read("README.md");
    let diff_before = output(c, &b.task_id, json!({})).await.diff;
    let wt = env.data.join("worktrees").join(&b.session_id);
    let wt_before = std::fs::read_to_string(wt.join("README.md")).expect("worktree README");

    let r = rebase(c, &b.session_id).await;
    assert_eq!(r.result, RebaseState::Conflict, "{r:#?}");
    assert_eq!(r.conflicts.len(), 1, "{r:#?}");
    let conflict = &r.conflicts[0];
    assert_eq!(conflict.path, "README.md");
    assert_eq!(conflict.hunks.len(), 1, "{r:#?}");
    let hunk = &conflict.hunks[0];
    assert_eq!((hunk.base.start, hunk.base.count), (5, 1));
    assert_eq!(hunk.checkout_lines, vec!["line 5 by a"]);
    assert_eq!(hunk.session_lines, vec!["line 5 by b"]);
    assert!(r.hint.contains(&b.session_id), "{}", r.hint);

    // Nothing changed: still stale, same diff, same worktree, same checkout.
    let status = task_status(c, &b.task_id).await;
    assert_eq!(
        status.stale_against_checkout,
        Some(vec!["README.md".to_string()])
    );
    assert_eq!(output(c, &b.task_id, json!({})).await.diff, diff_before);
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md"))
            .ok()
            .as_deref(),
        Some(wt_before.as_str())
    );
    assert_eq!(env.read("README.md"), checkout);
    let err = call(c, "apply_pending", json!({"task_id": b.task_id}))
        .await
        .expect_err("still refused");
    assert!(err.contains("README.md"), "{err}");
    let bad = call(c, "rebase_pending", json!({"session_id": "nope"}))
        .await
        .expect_err("not a session id");
    assert!(bad.contains("invalid `session_id`"), "{bad}");
}
