//! The built-in providers: every agent boocoder knows how to launch without a providers file,
//! and the defaults a custom entry starts from.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Provider, Transport, find_program};
use crate::backend::oneshot::{OutputFormat, PromptMode};
use crate::domain::PermissionPolicy;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Nobody answers `ask` yet (forwarding to the client comes later), so keep the wait short.
const DEFAULT_PERMISSION_TIMEOUT: Duration = Duration::from_secs(120);

/// A provider with every field at its default; built-ins and custom entries start here.
pub(super) fn provider_defaults(
    id: &str,
    label: &str,
    transport: Transport,
    command: &[&str],
) -> Provider {
    Provider {
        id: id.into(),
        label: label.into(),
        description: None,
        transport,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        prompt: PromptMode::Stdin,
        model_args: Vec::new(),
        output: OutputFormat::Text,
        resume_args: Vec::new(),
        enabled: true,
        timeout: DEFAULT_TIMEOUT,
        builtin: true,
        client_fs: true,
        permission: PermissionPolicy::Allow,
        permission_timeout: DEFAULT_PERMISSION_TIMEOUT,
        prestart: None,
    }
}

/// The built-in `claude` CLI agent's command. Headless runs cannot answer prompts: it may edit
/// files (inside the worktree; shell commands still need rules); override `command` to loosen
/// or tighten this. stream-json (which needs `--verbose` with `-p`) reports the work as it
/// goes, the session id, usage and cost.
pub const CLAUDE_PRINT: &[&str] = &[
    "claude",
    "-p",
    "--permission-mode",
    "acceptEdits",
    "--output-format",
    "stream-json",
    "--verbose",
];

/// The built-in `codex exec` CLI agent's command: without a writable sandbox it runs
/// read-only and cannot edit the worktree (codex-cli 0.171 dropped `--full-auto`); `--json`
/// reports items, the thread id and token counts. `exec resume ID PROMPT` continues a thread,
/// with these options before `resume`.
pub const CODEX_EXEC: &[&str] = &["codex", "exec", "--sandbox", "workspace-write", "--json"];

pub(super) fn builtins() -> Vec<Provider> {
    let cli =
        |id: &str, label: &str, command: &[&str], output: OutputFormat, resume: &[&str]| Provider {
            prompt: PromptMode::Arg,
            model_args: vec!["--model".into(), "{model}".into()],
            output,
            resume_args: resume.iter().map(|s| s.to_string()).collect(),
            ..provider_defaults(id, label, Transport::Cli, command)
        };
    let acp = |id: &str, label: &str, command: &[&str]| {
        provider_defaults(id, label, Transport::Acp, command)
    };
    // Measured on 2026-11-29 with opencode-ai 1.18.33, qwen-code 0.24.4, gemini-cli 0.61.0 and
    // claude-code-acp 0.16.2: each edits the session's worktree when pre-started elsewhere.
    let measured = |p: Provider| Provider {
        prestart: Some(true),
        ..p
    };
    // `codex` is one id with two launchers: the ACP adapter when it is installed (warm
    // sessions, streaming, permissions), else the one-shot CLI. Override with the providers
    // file (`"codex": {"extends": "cli", ...}`) to pin one.
    let codex = if find_program("codex-acp").is_some() {
        acp("codex", "Codex (codex-acp)", &["codex-acp"])
    } else {
        cli(
            "codex",
            "Codex (codex exec)",
            CODEX_EXEC,
            OutputFormat::CodexJson,
            &["resume", "{id}"],
        )
    };
    vec![
        provider_defaults(
            Provider::NATIVE_ID,
            "Native loop (OpenAI-compatible endpoint)",
            Transport::Native,
            &[],
        ),
        cli(
            "claude",
            "Claude Code (claude -p)",
            CLAUDE_PRINT,
            OutputFormat::ClaudeStreamJson,
            &["--resume", "{id}"],
        ),
        codex,
        measured(acp("opencode", "opencode (ACP)", &["opencode", "acp"])),
        acp("goose", "goose (ACP)", &["goose", "acp"]),
        measured(acp("qwen", "Qwen Code (ACP)", &["qwen", "--acp"])),
        measured(Provider {
            // gemini-cli 0.61 mishandles the client's fs error replies (a missing file looks
            // like a failure), so it reads and writes files itself.
            client_fs: false,
            ..acp("gemini", "Gemini CLI (ACP)", &["gemini", "--acp"])
        }),
        measured(acp(
            "claude-code",
            "Claude Code (claude-code-acp)",
            &["claude-code-acp"],
        )),
    ]
}
