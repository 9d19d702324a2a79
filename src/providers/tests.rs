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
    assert_eq!(p.command, CLAUDE_PRINT);
    assert_eq!(p.output, OutputFormat::ClaudeStreamJson);
    assert!(reg.diagnostics.is_empty());
}

#[test]
fn the_cli_built_ins_read_their_json_and_resume_their_conversations() {
    let reg = Registry::load(Path::new("/nonexistent/providers.json"));
    let claude = reg.get("claude").expect("claude");
    assert_eq!(
        claude.command,
        [
            "claude",
            "-p",
            "--permission-mode",
            "acceptEdits",
            "--output-format",
            "stream-json",
            "--verbose"
        ]
    );
    assert_eq!(claude.output, OutputFormat::ClaudeStreamJson);
    assert_eq!(claude.resume_args, ["--resume", "{id}"]);
    let codex = reg.get("codex").expect("codex");
    if codex.transport == Transport::Cli {
        assert_eq!(
            codex.command,
            ["codex", "exec", "--sandbox", "workspace-write", "--json"]
        );
        assert_eq!(codex.output, OutputFormat::CodexJson);
        assert_eq!(codex.resume_args, ["resume", "{id}"]);
    }
}

#[test]
fn output_and_resume_args_are_checked() {
    let (_d, reg) = load(
        r#"{"providers":{
            "plain":{"extends":"cli","command":["a"]},
            "json":{"extends":"cli","command":["a"],"output":"codex-json","resume_args":["resume","{id}"]},
            "claude-text":{"extends":"claude","output":"text"},
            "text-resume":{"extends":"cli","command":["a"],"resume_args":["--resume","{id}"]},
            "no-id":{"extends":"cli","command":["a"],"output":"claude-stream-json","resume_args":["--continue"]},
            "acp-out":{"extends":"acp","command":["a"],"output":"codex-json"},
            "weird":{"extends":"cli","command":["a"],"output":"xml"}}}"#,
    );
    let get = |id: &str| reg.get(id).map(|p| (p.output, p.resume_args.clone()));
    assert_eq!(get("plain"), Some((OutputFormat::Text, vec![])));
    assert_eq!(
        get("json"),
        Some((
            OutputFormat::CodexJson,
            vec!["resume".to_string(), "{id}".to_string()]
        ))
    );
    // inherited resume arguments just go unused with plain output
    assert_eq!(get("claude-text").map(|g| g.0), Some(OutputFormat::Text));
    let all = reg.diagnostics.join("\n");
    assert!(
        all.contains("providers.text-resume: resume_args need an output format"),
        "{all}"
    );
    assert!(
        all.contains("providers.no-id: resume_args must contain"),
        "{all}"
    );
    assert!(
        all.contains("providers.acp-out: output and resume_args apply to CLI"),
        "{all}"
    );
    assert!(all.contains("providers.weird"), "{all}");
    for id in ["text-resume", "no-id", "acp-out", "weird"] {
        assert!(reg.get(id).is_none(), "{id}");
    }
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
    let (_d, reg) =
        load(r#"{"providers":{"ghost":{"extends":"cli","command":["/nonexistent/ghost-agent"]}}}"#);
    assert!(matches!(
        reg.resolve("ghost"),
        Err(ProviderError::NotInstalled { .. })
    ));
}

#[test]
fn one_bad_entry_costs_only_itself_and_names_line_and_field() {
    let (_d, reg) = load(
        "{\"providers\": {\n  \"good\": {\"extends\": \"cli\", \"command\": [\"sh\"]},\n  \"bad\": {\"extends\": \"cli\", \"command\": [\"sh\"], \"timeout_secs\": 0}\n}}",
    );
    assert!(reg.get("good").is_some());
    assert!(reg.get("bad").is_none());
    let all = reg.diagnostics.join("\n");
    assert!(all.contains("line 3: providers.bad"), "{all}");
    assert!(all.contains("timeout_secs must be at least 1"), "{all}");
}

#[test]
fn an_unknown_field_is_reported_with_its_line_and_the_entry_still_loads() {
    let (_d, reg) = load(
        "{\"providers\": {\n  \"a\": {\"extends\": \"cli\", \"command\": [\"sh\"],\n        \"colour\": 1},\n  \"b\": {\"extends\": \"cli\",\n        \"command\": [\"sh\"], \"colour\": 2}\n}}",
    );
    assert_eq!(reg.get("a").expect("a loads").command, vec!["sh"]);
    assert!(reg.get("b").is_some());
    assert_eq!(reg.diagnostics.len(), 2, "{:?}", reg.diagnostics);
    // each names the line of its own `colour`, not the first one in the file
    assert!(
        reg.diagnostics[0].contains("line 3: providers.a: unknown field `colour` ignored"),
        "{:?}",
        reg.diagnostics
    );
    assert!(
        reg.diagnostics[1].contains("line 5: providers.b: unknown field `colour` ignored"),
        "{:?}",
        reg.diagnostics
    );
}

#[test]
fn an_entry_of_the_original_providers_file_loads() {
    let (_d, reg) = load(
        r#"{"providers": {
            "oc-fast": {"extends": "opencode", "label": "OpenCode (fast)",
                        "description": "opencode with the small model", "enabled": true,
                        "env": {"OPENCODE_MODEL": "small"}},
            "legacy": {"extends": "acp", "command": "my-agent --acp --port 0",
                       "description": "a string command"}
        }}"#,
    );
    assert!(reg.diagnostics.is_empty(), "{:?}", reg.diagnostics);
    let oc = reg.get("oc-fast").expect("oc-fast");
    let base = reg.get("opencode").expect("opencode");
    assert_eq!(oc.transport, Transport::Acp);
    assert_eq!(oc.command, base.command);
    assert_eq!(oc.label, "OpenCode (fast)");
    assert_eq!(
        oc.description.as_deref(),
        Some("opencode with the small model")
    );
    assert_eq!(
        oc.env.get("OPENCODE_MODEL").map(String::as_str),
        Some("small")
    );
    assert!(!oc.builtin);
    let legacy = reg.get("legacy").expect("legacy");
    assert_eq!(legacy.command, vec!["my-agent", "--acp", "--port", "0"]);
}

#[test]
fn a_string_command_that_needs_a_shell_and_an_unknown_base_are_refused_by_field() {
    let (_d, reg) = load(
        "{\"providers\": {\n  \"q\": {\"extends\": \"cli\", \"command\": \"sh -c 'rm -rf x'\"},\n  \"nobase\": {\"extends\": \"nonesuch\"}\n}}",
    );
    assert!(reg.get("q").is_none());
    assert!(reg.get("nobase").is_none());
    let all = reg.diagnostics.join("\n");
    assert!(
        all.contains("line 2: providers.q: field `command`") && all.contains("would need a shell"),
        "{all}"
    );
    assert!(
        all.contains("line 3: providers.nobase")
            && all.contains("`nonesuch` is neither a transport (acp, cli) nor a built-in provider"),
        "{all}"
    );
}

#[test]
fn the_field_list_is_the_entry_type_s() {
    let mut keys: Vec<String> = match serde_json::to_value(ProviderOverride::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        other => panic!("{other:?}"),
    };
    keys.sort();
    let mut fields: Vec<String> = file::FIELDS.iter().map(|f| f.to_string()).collect();
    fields.sort();
    assert_eq!(keys, fields);
}

fn configure_in(dir: &Path, id: &str, patch: file::EntryPatch) -> Result<(), file::FileError> {
    configure(&dir.join("providers.json"), id, file::Edit::Patch(&patch))
}

#[test]
fn configure_merges_one_field_and_keeps_other_entries() {
    let (d, _) = load(
        r#"{"providers":{"mine":{"extends":"acp","command":["a","--x"],"env":{"A":"1","B":"2"}},"claude":{"label":"C"}}}"#,
    );
    let patch = file::EntryPatch {
        enabled: Some(false),
        env: Some(
            [
                ("B".to_string(), String::new()),
                ("C".to_string(), "3".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    configure_in(d.path(), "mine", patch).expect("configure");
    let reg = Registry::load(&d.path().join("providers.json"));
    let mine = reg.get("mine").expect("mine");
    assert_eq!(mine.command, vec!["a", "--x"]);
    assert!(!mine.enabled);
    assert_eq!(
        mine.env,
        [
            ("A".to_string(), "1".to_string()),
            ("C".to_string(), "3".to_string())
        ]
        .into()
    );
    assert_eq!(reg.get("claude").expect("claude").label, "C");
    assert!(reg.diagnostics.is_empty(), "{:?}", reg.diagnostics);
    // Disabling a built-in only adds `enabled` to the file.
    configure_in(
        d.path(),
        "codex",
        file::EntryPatch {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .expect("disable");
    let text = std::fs::read_to_string(d.path().join("providers.json")).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v["providers"]["codex"],
        serde_json::json!({"enabled": false})
    );
}

#[test]
fn configure_refuses_invalid_entries_and_corrupt_files_without_writing() {
    let (d, _) = load(r#"{"providers":{"mine":{"extends":"cli","command":["a"]}}}"#);
    let path = d.path().join("providers.json");
    let before = std::fs::read_to_string(&path).expect("read");
    let err = configure_in(
        d.path(),
        "mine",
        file::EntryPatch {
            permission: Some(PermissionPolicy::Ask),
            ..Default::default()
        },
    )
    .expect_err("permission on a CLI agent");
    assert!(
        matches!(
            err,
            file::FileError::Invalid {
                field: "permission",
                ..
            }
        ),
        "{err}"
    );
    let err = configure_in(
        d.path(),
        "bad id",
        file::EntryPatch {
            extends: Some(Extends::Transport(Transport::Cli)),
            command: Some(vec!["x".into()]),
            ..Default::default()
        },
    )
    .expect_err("bad id");
    assert!(
        matches!(err, file::FileError::Invalid { field: "id", .. }),
        "{err}"
    );
    assert_eq!(before, std::fs::read_to_string(&path).expect("read"));
    std::fs::write(&path, "{\n  \"providers\": [\n").expect("corrupt");
    let err = configure_in(
        d.path(),
        "mine",
        file::EntryPatch {
            enabled: Some(true),
            ..Default::default()
        },
    )
    .expect_err("corrupt");
    assert!(err.to_string().contains("line 3"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "{\n  \"providers\": [\n"
    );
}

#[test]
fn configure_keeps_the_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (d, _) = load(r#"{"providers":{}}"#);
    let path = d.path().join("providers.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    configure_in(
        d.path(),
        "codex",
        file::EntryPatch {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .expect("configure");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_wrong_type_names_its_field() {
    let (_d, reg) = load(
        "{\"providers\": {\n  \"slow\": {\"extends\": \"cli\", \"command\": [\"sh\"], \"timeout_secs\": \"soon\"}\n}}",
    );
    let all = reg.diagnostics.join("\n");
    assert!(
        all.contains("line 2: providers.slow: field `timeout_secs`"),
        "{all}"
    );
}

#[test]
fn measured_pre_start_fitness_stays_with_the_measured_program() {
    let (_d, reg) = load(
        r#"{"providers":{"qwen":{"env":{"A":"b"}},"gemini":{"command":["my-gemini","--acp"]},
            "mine":{"extends":"opencode"}}}"#,
    );
    let fit = |id: &str| reg.all().find(|p| p.id == id).expect(id).prestart;
    assert_eq!(fit("opencode"), Some(true));
    assert_eq!(fit("claude-code"), Some(true));
    // same program, another environment: still measured
    assert_eq!(fit("qwen"), Some(true));
    assert_eq!(fit("mine"), Some(true));
    // another program, not measured; nor agents nobody measured
    assert_eq!(fit("gemini"), None);
    assert_eq!(fit("goose"), None);
    assert_eq!(fit("claude"), None);
}
