//! Permission questions reach someone who can answer (the fixture ACP agent asks before it
//! writes, under the `ask` policy): an elicitation form of the client that submitted the task,
//! `waiting_for` with `answer_permission`, and `boocoder answer`. The first answer wins, no
//! answer rejects after the timeout, a cancel withdraws the question, and the server keeps
//! answering other calls while a question is open.

use std::process::Command;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::service::Peer;
use serde_json::json;

use boocoder::mcp::types::{PermissionAnswer, TaskList};

use crate::support::elicit_client::{ElicitClient, Person};
use crate::support::*;

/// A blocked task's status once its question is visible.
async fn asking(c: &Peer<RoleClient>, id: &str) -> TaskStatus {
    for _ in 0..600 {
        let s = task_status(c, id).await;
        if s.state == TaskState::Blocked && s.waiting_for.is_some() {
            return s;
        }
        assert!(!s.state.is_terminal(), "ended without asking: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never asked");
}

/// The transcript's decision lines.
async fn decisions(c: &Peer<RoleClient>, id: &str) -> Vec<String> {
    transcript_text(c, id)
        .await
        .lines()
        .filter(|l| l.starts_with("permission for `write"))
        .map(str::to_string)
        .collect()
}

fn cli(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(env.args())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("boocoder")
}

#[tokio::test]
async fn an_accepted_form_lets_the_edit_land() {
    let env = Env::new();
    let person = ElicitClient::new(Person::Choose("allow".into()));
    let server = Server::stdio_client(&env, env.args(), &[], person.clone()).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "perm-write granted.txt yes", "agent": "fake-ask"}),
    )
    .await;
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(changed(&s), vec![("granted.txt".to_string(), 1, 0)]);
    let forms = person.forms();
    assert_eq!(forms.len(), 1, "{forms:#?}");
    let message = forms[0]["message"].as_str().unwrap_or("");
    for part in [
        t.task_id.as_str(),
        "fake-ask",
        "write granted.txt",
        "(edit)",
        "+yes",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let asked_at = output(c, &t.task_id, json!({}))
        .await
        .transcript
        .iter()
        .find(|e| e.text.starts_with("waiting for a decision"))
        .map(|e| e.at)
        .expect("the question is in the transcript");
    eprintln!(
        "FIGURE question recorded → form at the client: {} ms",
        forms[0]["arrived_ms"].as_i64().unwrap_or(0) - asked_at
    );
    let choice = &forms[0]["requestedSchema"]["properties"]["decision"];
    assert_eq!(
        choice["oneOf"]
            .as_array()
            .map(|o| o.iter().map(|v| v["const"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("allow"), json!("always"), json!("reject")]),
        "{choice}"
    );
    assert_eq!(
        decisions(c, &t.task_id).await,
        vec!["permission for `write granted.txt`: allowed (`Allow once`) by the caller's form"]
    );
}

#[tokio::test]
async fn a_declined_form_rejects_and_the_task_still_ends() {
    let env = Env::new();
    let person = ElicitClient::new(Person::Decline);
    let server = Server::stdio_client(&env, env.args(), &[], person).await;
    let c = &server.client;
    let s = run_task(
        c,
        json!({"prompt": "perm-write refused.txt no", "agent": "fake-ask"}),
    )
    .await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert!(s.files_changed.is_empty(), "{s:#?}");
    assert_eq!(
        decisions(c, &s.task_id).await,
        vec!["permission for `write refused.txt`: rejected (`Reject`) by the caller's form"]
    );
}

#[tokio::test]
async fn an_unanswered_question_is_rejected_on_time_and_nothing_waits_for_it() {
    let env = Env::new();
    let person = ElicitClient::new(Person::Away);
    let server = Server::stdio_client(&env, env.args(), &[], person.clone()).await;
    let c = &server.client;
    // `fake` gives up on a question after 1 s
    let t = new_task(
        c,
        json!({"prompt": "perm-write late.txt x", "agent": "fake", "permission": "ask"}),
    )
    .await;
    asking(c, &t.task_id).await;
    let began = Instant::now();
    let list: TaskList = call_as(c, "list_tasks", json!({})).await.expect("list");
    eprintln!(
        "FIGURE list_tasks while a question is open: {:.1} ms",
        began.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        list.tasks.iter().any(|l| l
            .question
            .as_deref()
            .is_some_and(|q| q.contains("write late.txt"))),
        "{list:#?}"
    );
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert!(s.files_changed.is_empty());
    assert_eq!(
        decisions(c, &t.task_id).await,
        vec![
            "permission for `write late.txt`: rejected (`Reject`): policy ask, no decision within 1 s"
        ]
    );
    for _ in 0..100 {
        if person.withdrawn() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(person.withdrawn(), 1, "the form is withdrawn once settled");
}

crate::both_stores!(a_client_without_forms_answers_with_the_tool);
async fn a_client_without_forms_answers_with_the_tool(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "perm-write tool.txt ok", "agent": "fake-ask"}),
    )
    .await;
    let s = asking(c, &t.task_id).await;
    let q = s.waiting_for.clone().expect("question");
    assert_eq!(q.question, "write tool.txt (edit)");
    assert!(q.paths.iter().any(|p| p.ends_with("tool.txt")), "{q:#?}");
    assert_eq!(
        q.options
            .iter()
            .map(|o| (o.id.as_str(), o.kind.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("allow", "allow_once"),
            ("always", "allow_always"),
            ("reject", "reject_once")
        ]
    );
    assert!(s.next.contains("answer_permission"), "{}", s.next);

    let ls = String::from_utf8_lossy(&cli(&env, &["ls"]).stdout).into_owned();
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&t.task_id) && l.contains("asks: write tool.txt")),
        "{ls}"
    );

    let wrong = call(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": q.request_id, "option_id": "maybe"}),
    )
    .await
    .expect_err("not an option");
    assert!(
        wrong.contains("invalid `option_id`") && wrong.contains("`allow`"),
        "{wrong}"
    );
    let stranger = call(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": "q-nope", "option_id": "allow"}),
    )
    .await
    .expect_err("no such question");
    assert!(stranger.contains("invalid `request_id`"), "{stranger}");

    let a: PermissionAnswer = call_as(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": q.request_id, "option_id": "always"}),
    )
    .await
    .expect("answer");
    assert_eq!(a.chosen.label, "Always allow");
    let again = call(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": q.request_id, "option_id": "reject"}),
    )
    .await
    .expect_err("settled");
    assert!(
        again.contains("already settled (`always`, by tool)"),
        "{again}"
    );

    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(changed(&s), vec![("tool.txt".to_string(), 1, 0)]);
    assert!(s.waiting_for.is_none());
    assert_eq!(
        decisions(c, &t.task_id).await,
        vec!["permission for `write tool.txt`: allowed (`Always allow`) by answer_permission"]
    );
}

#[tokio::test]
async fn a_terminal_answers_and_two_answers_race_to_one_decision() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let t = new_task(
        c,
        json!({"prompt": "perm-write cli.txt y", "agent": "fake-ask"}),
    )
    .await;
    asking(c, &t.task_id).await;
    let o = cli(&env, &["answer", &t.task_id, "Allow once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(changed(&s), vec![("cli.txt".to_string(), 1, 0)]);
    assert_eq!(
        decisions(c, &t.task_id).await,
        vec!["permission for `write cli.txt`: allowed (`Allow once`) by `boocoder answer`"]
    );

    // the tool and a terminal answer at once: exactly one decision stands
    let t = new_task(
        c,
        json!({"prompt": "perm-write race.txt y", "agent": "fake-ask"}),
    )
    .await;
    let q = asking(c, &t.task_id).await.waiting_for.expect("question");
    let (env2, id2) = (env.args(), t.task_id.clone());
    let terminal = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(env2)
            .args(["answer", &id2, "reject"])
            .output()
            .expect("boocoder answer")
    });
    let by_tool = call(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": q.request_id, "option_id": "allow"}),
    )
    .await;
    let by_terminal = terminal.await.expect("join");
    assert!(
        by_tool.is_ok() != by_terminal.status.success(),
        "exactly one answer wins: tool {by_tool:?}, terminal {}",
        String::from_utf8_lossy(&by_terminal.stderr)
    );
    wait_done(c, &t.task_id).await;
    assert_eq!(decisions(c, &t.task_id).await.len(), 1);
}

#[tokio::test]
async fn cancelling_a_task_withdraws_its_question() {
    let env = Env::new();
    let person = ElicitClient::new(Person::Away);
    let server = Server::stdio_client(&env, env.args(), &[], person.clone()).await;
    let c = &server.client;
    let t = new_task(
        c,
        json!({"prompt": "perm-write never.txt y", "agent": "fake-ask"}),
    )
    .await;
    let q = asking(c, &t.task_id).await.waiting_for.expect("question");
    call(c, "cancel_task", json!({"task_id": t.task_id}))
        .await
        .expect("cancel");
    let s = wait_done(c, &t.task_id).await;
    assert_eq!(s.state, TaskState::Cancelled, "{s:#?}");
    assert!(s.waiting_for.is_none());
    let late = call(
        c,
        "answer_permission",
        json!({"task_id": t.task_id, "request_id": q.request_id, "option_id": "allow"}),
    )
    .await
    .expect_err("withdrawn");
    assert!(
        late.contains("already settled (rejected, by cancelled)"),
        "{late}"
    );
    assert_eq!(
        decisions(c, &t.task_id).await,
        vec!["permission for `write never.txt`: withdrawn: the task was cancelled"]
    );
    for _ in 0..100 {
        if person.withdrawn() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(person.withdrawn(), 1);
}
