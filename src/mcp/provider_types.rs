//! Arguments of the provider tools. Doc comments become the JSON Schema descriptions an LLM
//! reads. The results are the engine's snapshot types (`ProvidersSnapshot`, `Configured`),
//! which are plain serialisable data already.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::backend::oneshot::{OutputFormat, PromptMode};
use crate::domain::PermissionPolicy;
use crate::providers::Extends;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProvidersParams {
    /// Wait up to this many seconds (default 20, capped at 50) for probes still running, e.g.
    /// right after the server started. 0 answers at once (some may show `probing`).
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshProvidersParams {
    /// Provider ids to probe again; omit or leave empty for all. The providers file is re-read
    /// first, so hand edits show up.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Wait up to this many seconds (default 30, capped at 50) for the probes.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureProviderParams {
    /// Provider id to change or add (letters, digits, '-', '_', '.'). Only the fields you give
    /// change; every other field of the entry stays as it was.
    pub id: String,
    /// Turn the provider on or off (a disabled provider refuses tasks).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Required to add a custom agent: "acp" (speaks the Agent Client Protocol on stdio),
    /// "cli" (one-shot: prompt in, edits on disk, exit), or a built-in provider's id to start
    /// from its launch spec (e.g. "opencode" for a second opencode with other `env`).
    #[serde(default)]
    pub extends: Option<Extends>,
    #[serde(default)]
    pub label: Option<String>,
    /// One line shown by `list_providers`.
    #[serde(default)]
    pub description: Option<String>,
    /// Program and arguments as a vector, e.g. ["my-agent", "--acp"]; no shell is involved.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Environment variables for the agent, merged key by key into the entry's; an empty value
    /// removes that key.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// CLI agents: pass the prompt on "stdin" or as the last "arg".
    #[serde(default)]
    pub prompt: Option<PromptMode>,
    /// CLI agents: arguments that select a model, with "{model}" as the placeholder, e.g.
    /// ["--model", "{model}"].
    #[serde(default)]
    pub model_args: Option<Vec<String>>,
    /// CLI agents: how stdout is read: "text" (every line is the answer), "claude-stream-json"
    /// (`claude -p --output-format stream-json --verbose`) or "codex-json" (`codex exec
    /// --json`); the JSON formats show tool calls, usage and cost, and name the conversation.
    #[serde(default)]
    pub output: Option<OutputFormat>,
    /// CLI agents with a JSON output: arguments added before the prompt to continue the
    /// session's earlier conversation, "{id}" its id, e.g. ["--resume", "{id}"] (claude) or
    /// ["resume", "{id}"] (codex exec).
    #[serde(default)]
    pub resume_args: Option<Vec<String>>,
    /// Longest a turn may run, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// ACP agents: serve the client `fs/*` methods (turn off for agents that mishandle them).
    #[serde(default)]
    pub client_fs: Option<bool>,
    /// ACP agents: default answer to permission requests.
    #[serde(default)]
    pub permission: Option<PermissionPolicy>,
    /// ACP agents: seconds an `ask` permission waits before it is denied.
    #[serde(default)]
    pub permission_timeout_secs: Option<u64>,
    /// Remove the entry from the providers file instead: a built-in returns to its defaults,
    /// a custom agent disappears. Other fields must be omitted.
    #[serde(default)]
    pub remove: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderDiagnosticParams {
    /// Provider id; omit for the providers file's problems and one line per provider.
    #[serde(default)]
    pub id: Option<String>,
}
