//! Providers files written for the original providers file (`coder-providers.json`) load: a
//! `description`, `extends` naming a built-in, a plain-words string `command`, and fields this
//! version does not know (reported with their line, ignored, kept in the file by edits).

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn an_original_providers_file_loads_and_its_unknown_fields_survive_an_edit() {
    let env = Env::new();
    let text = r#"{"providers": {
  "oc-small": {"extends": "opencode", "label": "OpenCode (small)",
               "description": "opencode on the small model", "enabled": true},
  "legacy": {"extends": "cli", "command": "script-agent.sh --prompt-arg",
             "icon": "robot.png"}
}}"#;
    let file = env.data.join("providers.json");
    std::fs::write(&file, text).expect("write providers");
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let snap: ProvidersSnapshot = call_as(c, "list_providers", json!({"wait_seconds": 0}))
        .await
        .expect("list_providers");
    let find = |id: &str| {
        snap.providers
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no {id} in {snap:#?}"))
    };
    let oc = find("oc-small");
    assert_eq!(
        oc.description.as_deref(),
        Some("opencode on the small model"),
        "{oc:#?}"
    );
    assert_eq!(oc.transport, Transport::Acp, "{oc:#?}");
    assert_eq!(oc.label, "OpenCode (small)", "{oc:#?}");
    assert_eq!(find("legacy").transport, Transport::Cli);
    assert_eq!(
        snap.diagnostics,
        vec![format!(
            "{} line 5: providers.legacy: unknown field `icon` ignored; the fields are extends, label, description, command, env, prompt, model_args, output, resume_args, enabled, timeout_secs, client_fs, permission, permission_timeout_secs",
            file.display()
        )],
        "{snap:#?}"
    );

    // an edit of that entry keeps what this version does not read
    call(
        c,
        "configure_provider",
        json!({"id": "legacy", "description": "the old script agent"}),
    )
    .await
    .expect("configure_provider");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    assert_eq!(
        saved["providers"]["legacy"]["icon"], "robot.png",
        "{saved:#}"
    );
    assert_eq!(
        saved["providers"]["legacy"]["description"],
        "the old script agent"
    );

    // configure_provider can start a second configuration from a built-in, too
    call(
        c,
        "configure_provider",
        json!({"id": "claude-2", "extends": "claude", "env": {"K": "V"}}),
    )
    .await
    .expect("configure_provider extends a built-in");
    let err = call(
        c,
        "configure_provider",
        json!({"id": "ghost", "extends": "nonesuch"}),
    )
    .await
    .expect_err("unknown base");
    assert!(
        err.contains("`extends`") && err.contains("`nonesuch` is neither a transport"),
        "{err}"
    );
}
