//! Warm agents stay right: an agent silent for `--agent-stall-secs` during a turn is
//! cancelled and the task fails saying so (time it spends waiting on us — a terminal — does
//! not count); a warm agent whose provider entry changed is started again at its next turn,
//! which loads the session's conversation.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_silent_agent_is_stopped_as_stalled_but_waiting_on_a_terminal_is_not_silence() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--agent-stall-secs", "1"]).await;
    let c = &server.client;

    // the agent waits 2.5 s for its terminal: it is waiting on us, not stalled
    let waiting = run_task(
        c,
        json!({"prompt": "term sleep 2.5\nsay waited", "agent": "fake"}),
    )
    .await;
    assert_eq!(waiting.state, TaskState::Completed, "{waiting:#?}");

    let silent = run_task(
        c,
        json!({"prompt": "say thinking hard\nsleep-hard 6000\nsay too late", "agent": "fake"}),
    )
    .await;
    assert_eq!(silent.state, TaskState::Failed, "{silent:#?}");
    let error = silent.error.unwrap_or_default();
    assert!(
        error.starts_with("agent stalled for 1 s (nothing received from it)"),
        "{error}"
    );
    let took = silent.duration_seconds.unwrap_or(99.0);
    assert!(took < 5.0, "the stall was not cut short: {took} s");
}

#[tokio::test]
async fn an_edited_provider_entry_restarts_the_warm_agent_which_loads_the_session() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let first = run_task(c, json!({"prompt": "pid\nenv MARK", "agent": "fake"})).await;
    assert_eq!(first.state, TaskState::Completed, "{first:#?}");
    let before = transcript_text(c, &first.task_id).await;
    assert!(before.contains("MARK=<unset>"), "{before}");

    let providers: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.data.join("providers.json")).expect("providers"),
    )
    .expect("json");
    let mut fake_env = providers["providers"]["fake"]["env"].clone();
    fake_env["MARK"] = json!("edited");
    call(
        c,
        "configure_provider",
        json!({"id": "fake", "env": fake_env}),
    )
    .await
    .expect("configure_provider");

    let second = run_task(
        c,
        json!({"prompt": "pid\nenv MARK\nhistory", "session_id": first.session_id}),
    )
    .await;
    assert_eq!(second.state, TaskState::Completed, "{second:#?}");
    let text = transcript_text(c, &second.task_id).await;
    assert!(
        text.contains("provider `fake` changed since this session's agent started"),
        "{text}"
    );
    assert!(text.contains("MARK=edited"), "{text}");
    assert!(text.contains("turns=2 how=loaded"), "{text}");
    let pid = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("pid="))
            .map(str::to_string)
    };
    assert_ne!(
        pid(&before),
        pid(&text),
        "the same process served both turns"
    );

    // unchanged entry: the next turn reuses the restarted agent
    let third = run_task(c, json!({"prompt": "pid", "session_id": first.session_id})).await;
    let text3 = transcript_text(c, &third.task_id).await;
    assert_eq!(pid(&text3), pid(&text), "{text3}");
}

crate::both_stores!(a_restarted_server_s_agent_loads_the_session_s_conversation);
async fn a_restarted_server_s_agent_loads_the_session_s_conversation(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let first = run_task(
        &server.client,
        json!({"prompt": "say remember the number 42", "agent": "fake"}),
    )
    .await;
    assert_eq!(first.state, TaskState::Completed, "{first:#?}");
    server.stop().await;

    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let second = run_task(
        c,
        json!({"prompt": "history", "session_id": first.session_id}),
    )
    .await;
    assert_eq!(second.state, TaskState::Completed, "{second:#?}");
    let text = transcript_text(c, &second.task_id).await;
    assert!(text.contains("turns=2 how=loaded"), "{text}");
    assert!(text.contains("(loaded) ready after"), "{text}");
    assert!(!text.contains("did not reload"), "{text}");
}
