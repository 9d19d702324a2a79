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
    /// Wait up to this many seconds (default 20, max 50) for running probes; 0 answers at once.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshProvidersParams {
    /// Provider ids; omit for all.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Wait up to this many seconds (default 30, max 50) for the probes.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureProviderParams {
    /// Provider id to change or add (letters, digits, '-', '_', '.').
    pub id: String,
    /// Turn the provider on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// To add an agent: "acp", "cli", or a built-in id to start from.
    #[serde(default)]
    pub extends: Option<Extends>,
    #[serde(default)]
    pub label: Option<String>,
    /// One line for `list_providers`.
    #[serde(default)]
    pub description: Option<String>,
    /// Program and arguments, e.g. ["my-agent", "--acp"] (no shell).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Environment variables (merged; an empty value removes one).
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// CLI agents: the prompt on stdin or as the last arg.
    #[serde(default)]
    pub prompt: Option<PromptMode>,
    /// CLI agents: arguments selecting a model, e.g. ["--model", "{model}"].
    #[serde(default)]
    pub model_args: Option<Vec<String>>,
    /// CLI agents: how stdout is read.
    #[serde(default)]
    pub output: Option<OutputFormat>,
    /// CLI agents: arguments resuming a conversation, e.g. ["--resume", "{id}"].
    #[serde(default)]
    pub resume_args: Option<Vec<String>>,
    /// Longest turn, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// ACP agents: serve the client `fs/*` methods.
    #[serde(default)]
    pub client_fs: Option<bool>,
    /// ACP agents: default answer to permission requests.
    #[serde(default)]
    pub permission: Option<PermissionPolicy>,
    /// ACP agents: seconds an `ask` waits before it is denied.
    #[serde(default)]
    pub permission_timeout_secs: Option<u64>,
    /// Remove the entry (a built-in returns to its defaults); with no other field.
    #[serde(default)]
    pub remove: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderDiagnosticParams {
    /// Provider id; omit for all.
    #[serde(default)]
    pub id: Option<String>,
}
