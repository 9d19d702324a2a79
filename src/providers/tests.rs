//! Merge rules of the registry: built-ins, overrides, custom agents, invalid entries.

use super::*;

fn load(json: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("providers.json");
    std::fs::write(&path, json).expect("write");
    let reg = Registry::load(&path);
    (dir, reg)
}

#[test]
fn override_one_field_keeps_the_others() {
    let (_d, reg) = load(r#"{"providers":{"claude":{"label":"Mine"}}}"#);
    let p = reg.all().find(|p| p.id == "claude").expect("claude");
    assert_eq!(p.label, "Mine");
    assert_eq!(p.command, vec!["claude", "-p"]);
    assert!(reg.diagnostics.is_empty());
}

#[test]
fn custom_cli_agent_and_disable_builtin() {
    let (_d, reg) = load(
        r#"{"providers":{"sh-agent":{"extends":"cli","command":["sh","-c","true"]},
            "codex":{"enabled":false}}}"#,
    );
    assert!(reg.available().contains(&"sh-agent".to_string()));
    let err = reg.resolve("codex").expect_err("disabled");
    assert!(matches!(err, ProviderError::Disabled { .. }));
    assert!(err.to_string().contains("sh-agent"), "{err}");
}

#[test]
fn corrupt_file_is_a_diagnostic_not_a_crash() {
    let (_d, reg) = load("{\"providers\": {\n  \"x\": [}");
    assert_eq!(reg.diagnostics.len(), 1);
    assert!(
        reg.diagnostics[0].contains("line 2"),
        "{:?}",
        reg.diagnostics
    );
    assert!(reg.all().any(|p| p.id == "claude"));
}

#[test]
fn invalid_entries_are_reported_by_field() {
    let (_d, reg) = load(
        r#"{"providers":{"nocmd":{"extends":"cli"},"mystery":{"label":"x"},"bad id":{"extends":"cli","command":["x"]}}}"#,
    );
    let all = reg.diagnostics.join("\n");
    assert!(all.contains("providers.nocmd: command"), "{all}");
    assert!(all.contains("providers.mystery: unknown provider"), "{all}");
    assert!(all.contains("providers.bad id"), "{all}");
    assert!(matches!(
        reg.resolve("nocmd"),
        Err(ProviderError::Unknown { .. })
    ));
}

#[test]
fn acp_fields_merge_and_custom_acp_agents_load() {
    let (_d, reg) = load(
        r#"{"providers":{
            "gemini":{"permission":"ask","permission_timeout_secs":5},
            "mine":{"extends":"acp","command":["my-acp","--stdio"],"env":{"K":"V"},"client_fs":false},
            "claude":{"permission":"deny"}}}"#,
    );
    let gemini = reg.all().find(|p| p.id == "gemini").expect("gemini");
    assert_eq!(gemini.permission, PermissionPolicy::Ask);
    assert_eq!(gemini.permission_timeout, Duration::from_secs(5));
    assert!(!gemini.client_fs, "built-in default kept");
    assert_eq!(gemini.command, vec!["gemini", "--acp"]);
    let mine = reg.all().find(|p| p.id == "mine").expect("mine");
    assert_eq!(mine.transport, Transport::Acp);
    assert!(!mine.client_fs);
    assert_eq!(mine.permission, PermissionPolicy::Allow);
    assert_eq!(mine.env.get("K").map(String::as_str), Some("V"));
    assert!(!mine.builtin);
    let all = reg.diagnostics.join("\n");
    assert!(
        all.contains("providers.claude: client_fs, permission"),
        "{all}"
    );
}

#[test]
fn builtin_acp_agents_are_listed() {
    let (_d, reg) = load("{}");
    for id in [
        "opencode",
        "goose",
        "qwen",
        "gemini",
        "claude-code",
        "codex",
    ] {
        assert!(reg.all().any(|p| p.id == id), "{id}");
    }
    let codex = reg.all().find(|p| p.id == "codex").expect("codex");
    let want = if find_program("codex-acp").is_some() {
        Transport::Acp
    } else {
        Transport::Cli
    };
    assert_eq!(codex.transport, want);
}

#[test]
fn missing_program_is_not_installed() {
    let (_d, reg) = load(
        r#"{"providers":{"ghost":{"extends":"cli","command":["/nonexistent/ghost-agent"]}}}"#,
    );
    assert!(matches!(
        reg.resolve("ghost"),
        Err(ProviderError::NotInstalled { .. })
    ));
}
