//! Models, modes and other settings, whatever shape the agent uses: `modes` plus select
//! options (qwen, codex-acp), the raw unstable `models` with `session/set_model` (gemini-cli,
//! claude-code-acp), modes as a select option (opencode), and a thinking level set through
//! `new_task`'s `options`. The fixture agent speaks each shape (`$FAKE_ACP_SHAPE`).

use serde_json::{Value, json};

use boocoder::domain::AgentSetting;
use boocoder::providers::snapshot::ProvidersSnapshot;

use crate::support::*;

/// The fixture registered once more per shape.
fn with_shapes(env: &Env) {
    let path = env.data.join("providers.json");
    let mut file: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("providers")).expect("json");
    let fake = file["providers"]["fake"].clone();
    for shape in ["gemini", "opencode"] {
        let mut entry = fake.clone();
        entry["env"]["FAKE_ACP_SHAPE"] = json!(shape);
        entry["label"] = json!(format!("fixture, {shape} shape"));
        file["providers"][format!("fake-{shape}")] = entry;
    }
    std::fs::write(&path, file.to_string()).expect("write providers");
}

async fn whoami(c: &rmcp::service::Peer<rmcp::RoleClient>, args: Value) -> String {
    let s = run_task(c, args).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    s.summary.unwrap_or_default()
}

#[tokio::test]
async fn every_shape_lists_and_switches_its_choices() {
    let env = Env::new();
    with_shapes(&env);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let snap: ProvidersSnapshot = call_as(c, "list_providers", json!({})).await.expect("list");
    let info = |id: &str| {
        snap.providers
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {snap:#?}"))
    };
    let thinking = AgentSetting {
        id: "thinking".into(),
        name: "Thinking".into(),
        values: vec!["low".into(), "high".into()],
        current: Some("low".into()),
    };
    for (id, models) in [
        ("fake", vec!["fake-small", "fake-large"]),
        ("fake-gemini", vec!["fake-small", "fake-pro"]),
        ("fake-opencode", vec!["fake-small", "fake-large"]),
    ] {
        let p = info(id);
        assert_eq!(p.models, models, "{id}");
        assert_eq!(p.default_model.as_deref(), Some("fake-small"), "{id}");
        assert_eq!(p.modes, vec!["code", "ask"], "{id}: modes, whichever shape");
        assert_eq!(p.default_mode.as_deref(), Some("code"), "{id}");
        assert_eq!(p.options, vec![thinking.clone()], "{id}");
    }

    // gemini's shape: the model is switched with session/set_model
    let said = whoami(
        c,
        json!({"prompt": "whoami", "agent": "fake-gemini", "model": "fake-pro"}),
    )
    .await;
    assert!(said.contains("model=fake-pro"), "{said}");
    // opencode's shape: the mode is a select option
    let said = whoami(
        c,
        json!({"prompt": "whoami", "agent": "fake-opencode", "mode": "ask"}),
    )
    .await;
    assert!(said.contains("mode=ask"), "{said}");
    // any other setting by id
    let said = whoami(
        c,
        json!({"prompt": "whoami", "agent": "fake", "options": {"thinking": "high"}}),
    )
    .await;
    assert!(said.contains("thinking=high"), "{said}");

    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "fake-gemini", "model": "gemini-9"}),
    )
    .await
    .expect_err("not offered");
    assert!(
        err.contains("invalid `model`") && err.contains("fake-small, fake-pro"),
        "{err}"
    );
    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "fake", "options": {"thinking": "max"}}),
    )
    .await
    .expect_err("bad value");
    assert!(
        err.contains("invalid `options`: `thinking`: `max` is not one of low, high"),
        "{err}"
    );
    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "fake", "options": {"speed": "fast"}}),
    )
    .await
    .expect_err("no such setting");
    assert!(
        err.contains("`speed` is not a setting of agent `fake`; it has thinking"),
        "{err}"
    );
    let err = call(
        c,
        "new_task",
        json!({"prompt": "x", "agent": "script", "options": {"thinking": "high"}}),
    )
    .await
    .expect_err("not an ACP agent");
    assert!(err.contains("invalid `options`"), "{err}");
}
