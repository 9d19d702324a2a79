//! What reaches an agent's environment: the server's own, minus boocoder's settings and
//! secrets (`BOOCODER_*`, `RUST_LOG`), plus the provider entry's `env` and the variables
//! boocoder sets for the agent (task id, tags). Checked for an ACP agent, a terminal it opens,
//! and a one-shot CLI agent.

use serde_json::{Value, json};

use crate::support::*;

const SECRETS: [(&str, &str); 4] = [
    ("BOOCODER_LLM_API_KEY", "sk-secret-api-key-7781"),
    ("BOOCODER_TOKEN", "secret-http-token-5523"),
    ("BOOCODER_SOME_FUTURE_SETTING", "secret-future-3319"),
    ("RUST_LOG", "trace,secret-log-filter-9042"),
];

async fn server(env: &Env) -> Server {
    let mut vars: Vec<(&str, String)> = SECRETS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    vars.push(("KEEP_ME", "kept-value".into()));
    Server::stdio_client_env(env, env.args(), &[], (), &vars).await
}

/// Each entry's text and structured detail: a secret must reach neither.
async fn transcript_and_detail(c: &Client, id: &str) -> String {
    let out = output(c, id, json!({})).await;
    out.transcript
        .iter()
        .map(|e| {
            let data = e.data.as_ref().map(Value::to_string).unwrap_or_default();
            format!("{} {data}", e.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_secret(text: &str) {
    for (name, value) in SECRETS {
        assert!(
            !text.contains(value),
            "{name}'s value reached the agent:\n{text}"
        );
    }
}

async fn run(c: &Client, args: Value) -> (TaskStatus, String) {
    let s = run_task(c, args).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    let text = transcript_and_detail(c, &s.task_id).await;
    (s, text)
}

#[tokio::test]
async fn an_acp_agent_and_its_terminals_get_no_boocoder_setting() {
    let env = Env::new();
    let server = server(&env).await;
    let c = &server.client;
    let names = "BOOCODER_LLM_API_KEY BOOCODER_TOKEN BOOCODER_SOME_FUTURE_SETTING RUST_LOG KEEP_ME FAKE_ACP_STATE";
    let prompt = format!(
        "env {names}\nterm printenv BOOCODER_LLM_API_KEY BOOCODER_TOKEN RUST_LOG KEEP_ME\nsay done"
    );
    let (_, text) = run(c, json!({"prompt": prompt, "agent": "fake"})).await;
    assert_no_secret(&text);
    for unset in [
        "BOOCODER_LLM_API_KEY=<unset>",
        "BOOCODER_TOKEN=<unset>",
        "BOOCODER_SOME_FUTURE_SETTING=<unset>",
        "RUST_LOG=<unset>",
        // the rest of the server's environment and the provider entry's `env` still arrive
        "KEEP_ME=kept-value",
    ] {
        assert!(text.contains(unset), "no `{unset}` in\n{text}");
    }
    assert!(text.contains("FAKE_ACP_STATE=/"), "{text}");
    // printenv prints only the names it has (KEEP_ME) and exits 1 for the missing ones
    assert!(text.contains("terminal exit=1 output=kept-value"), "{text}");
}

#[tokio::test]
async fn a_one_shot_cli_agent_gets_no_boocoder_setting_but_its_task_id() {
    let env = Env::new();
    let server = server(&env).await;
    let c = &server.client;
    let prompt = "run echo \"key=${BOOCODER_LLM_API_KEY-unset} token=${BOOCODER_TOKEN-unset} log=${RUST_LOG-unset} future=${BOOCODER_SOME_FUTURE_SETTING-unset} keep=${KEEP_ME-unset} task=${BOOCODER_TASK_ID-unset}\"";
    let (s, text) = run(c, json!({"prompt": prompt, "agent": "script"})).await;
    assert_no_secret(&text);
    assert_no_secret(&serde_json::to_string(&s).expect("status json"));
    let task = &s.task_id;
    let expected =
        format!("key=unset token=unset log=unset future=unset keep=kept-value task={task}");
    assert!(text.contains(&expected), "no `{expected}` in\n{text}");
}
