//! The providers snapshot: what each registry entry is plus what its last probe found. Probe
//! results are plain data (cached in the store as JSON); the snapshot is composed on demand
//! from the current registry, so a configuration change shows at once.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Provider, Registry, Transport};
use crate::domain::rfc3339;

/// Whether a provider can take tasks, as far as its last probe knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Installed and answered its probe; tasks can run.
    Ready,
    /// Turned off in the providers file (`configure_provider` with `enabled: true` turns it on).
    Disabled,
    /// Its program is not on PATH (or, for `native`, no model endpoint is configured).
    NotInstalled,
    /// Installed, but the agent wants a login first (see `auth_methods`).
    NeedsAuth,
    /// The probe failed or timed out; `diagnostic` and `provider_diagnostic` say why.
    #[default]
    Error,
    /// A probe is running right now.
    Probing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Disabled => "disabled",
            Status::NotInstalled => "not_installed",
            Status::NeedsAuth => "needs_auth",
            Status::Error => "error",
            Status::Probing => "probing",
        }
    }
}

/// What one probe of one provider found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub status: Status,
    pub version: Option<String>,
    pub default_model: Option<String>,
    pub models: Vec<String>,
    pub default_mode: Option<String>,
    pub modes: Vec<String>,
    /// Other settings the agent offers (`new_task`'s `options`).
    #[serde(default)]
    pub options: Vec<crate::domain::AgentSetting>,
    pub commands: Vec<String>,
    pub auth_methods: Vec<String>,
    pub auth_required: bool,
    /// One line for people and models.
    pub diagnostic: String,
    /// Every step of the probe, for `provider_diagnostic`.
    pub log: Vec<String>,
    /// The launch spec the probe ran with; a different one makes the result stale.
    pub fingerprint: String,
    pub probed_at: i64,
    pub duration_ms: u64,
}

/// The launch spec in one comparable string: a result probed with another spec does not
/// describe this provider any more.
pub fn fingerprint(p: &Provider, native: &str) -> String {
    match p.transport {
        Transport::Native => format!("native {native}"),
        Transport::Acp | Transport::Cli => format!(
            "{} {:?} {:?} fs={}",
            p.transport.as_str(),
            p.command,
            p.env,
            p.client_fs
        ),
    }
}

/// One provider as `list_providers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderInfo {
    /// Pass as `agent` to `new_task`.
    pub id: String,
    pub label: String,
    /// The providers file's one-line description, when it gives one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    pub transport: Transport,
    pub enabled: bool,
    pub status: Status,
    /// Why the status is what it is, in one line.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub diagnostic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Used when a task names no `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Valid `model` values for `new_task` (empty: not known before a session starts).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<String>,
    /// Valid `mode` values for `new_task` (ACP agents).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub modes: Vec<String>,
    /// Other settings, for `new_task`'s `options` (ACP agents).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub options: Vec<crate::domain::AgentSetting>,
    /// Slash commands the agent offers (ACP agents).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub commands: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub auth_methods: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub auth_required: bool,
    /// When the shown probe ran (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<String>,
    /// Measured: whether the agent works pre-started (`--prestart`: started ahead of need in
    /// another directory, it still edits the session's worktree). Absent: not measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prestart: Option<bool>,
}

/// Every provider plus what is wrong with the providers file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProvidersSnapshot {
    pub providers: Vec<ProviderInfo>,
    /// Problems in the providers file, with line and field; empty when it is fine.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub diagnostics: Vec<String>,
    /// The providers file `configure_provider` edits.
    pub providers_file: String,
}

/// Combine the registry with the probe results. `probing` holds ids whose probe is running;
/// an enabled provider with no current result is shown as probing too (one is scheduled).
pub fn compose(
    registry: &Registry,
    results: &BTreeMap<String, ProbeResult>,
    probing: &BTreeSet<String>,
    native: &str,
) -> ProvidersSnapshot {
    let providers = registry
        .all()
        .map(|p| info(p, current(p, results, native), probing.contains(&p.id)))
        .collect();
    ProvidersSnapshot {
        providers,
        diagnostics: registry.diagnostics.clone(),
        providers_file: registry.path.display().to_string(),
    }
}

/// The result that describes `p` as configured now, if any.
pub fn current<'a>(
    p: &Provider,
    results: &'a BTreeMap<String, ProbeResult>,
    native: &str,
) -> Option<&'a ProbeResult> {
    results
        .get(&p.id)
        .filter(|r| r.fingerprint == fingerprint(p, native))
}

fn info(p: &Provider, r: Option<&ProbeResult>, probing: bool) -> ProviderInfo {
    let (status, diagnostic) = match (p.enabled, probing, r) {
        (false, _, _) => (
            Status::Disabled,
            "disabled in the providers file".to_string(),
        ),
        (true, true, _) | (true, false, None) => (Status::Probing, "probe running".to_string()),
        (true, false, Some(r)) => (r.status, r.diagnostic.clone()),
    };
    let r = r.cloned().unwrap_or_default();
    ProviderInfo {
        id: p.id.clone(),
        label: p.label.clone(),
        description: p.description.clone(),
        transport: p.transport,
        enabled: p.enabled,
        status,
        diagnostic,
        version: r.version,
        default_model: r.default_model,
        models: r.models,
        default_mode: r.default_mode,
        modes: r.modes,
        options: r.options,
        commands: r.commands,
        auth_methods: r.auth_methods,
        auth_required: r.auth_required,
        probed_at: (r.probed_at > 0).then(|| rfc3339(r.probed_at)),
        prestart: p.prestart,
    }
}

/// The plain-text report of `provider_diagnostic`: the entry, its last probe and the full log.
pub fn report(
    registry: &Registry,
    snapshot: &ProvidersSnapshot,
    id: Option<&str>,
    results: &BTreeMap<String, ProbeResult>,
) -> String {
    let mut out = format!("providers file: {}\n", registry.path.display());
    if registry.diagnostics.is_empty() {
        out.push_str("providers file problems: none\n");
    } else {
        out.push_str("providers file problems:\n");
        for d in &registry.diagnostics {
            out.push_str(&format!("  - {d}\n"));
        }
    }
    let Some(id) = id else {
        out.push('\n');
        for p in &snapshot.providers {
            out.push_str(&format!(
                "{:<14} {:<7} {:<13} {}\n",
                p.id,
                p.transport.as_str(),
                p.status.as_str(),
                p.diagnostic
            ));
        }
        return out;
    };
    let (Some(p), Some(i)) = (
        registry.get(id),
        snapshot.providers.iter().find(|i| i.id == id),
    ) else {
        return out;
    };
    out.push_str(&format!(
        "\nprovider: {} ({})\ntransport: {}\nbuilt-in: {}\nenabled: {}\ncommand: {:?}\nenv keys: {:?}\nstatus: {}\ndiagnostic: {}\n",
        p.id,
        p.label,
        p.transport.as_str(),
        p.builtin,
        p.enabled,
        p.command,
        p.env.keys().collect::<Vec<_>>(),
        i.status.as_str(),
        i.diagnostic
    ));
    if p.transport == Transport::Cli {
        out.push_str(&format!("output: {}\n", p.output.as_str()));
        if !p.resume_args.is_empty() {
            out.push_str(&format!("resume args: {:?}\n", p.resume_args));
        }
    }
    let fields = [
        ("version", i.version.clone().unwrap_or_default()),
        ("default model", i.default_model.clone().unwrap_or_default()),
        ("models", i.models.join(", ")),
        ("default mode", i.default_mode.clone().unwrap_or_default()),
        ("modes", i.modes.join(", ")),
        ("commands", i.commands.join(", ")),
        ("auth methods", i.auth_methods.join(", ")),
        ("probed at", i.probed_at.clone().unwrap_or_default()),
    ];
    for (k, v) in fields {
        if !v.is_empty() {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    match results.get(id) {
        Some(r) => {
            out.push_str(&format!("probe took {} ms; log:\n", r.duration_ms));
            for line in &r.log {
                out.push_str(&format!("  {line}\n"));
            }
        }
        None => out.push_str("no probe has finished yet\n"),
    }
    out
}
