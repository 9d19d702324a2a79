//! The provider registry: built-in agents merged with the providers file, resolved into launch
//! specs. Loading never fails: a bad file is kept as a diagnostic and the built-ins still work,
//! but a task naming an unknown, disabled or missing provider is refused with the valid choices.

mod builtins;
pub mod file;
pub mod probe;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backend::acp::{AcpBackend, AcpSpec};
use crate::backend::native::NativeBackend;
use crate::backend::oneshot::{OneShotBackend, OneShotSpec, OutputFormat, PromptMode};
use crate::backend::{Backend, BackendShared};
use crate::config::Config;
use crate::domain::PermissionPolicy;
pub use builtins::{CLAUDE_PRINT, CODEX_EXEC};
use builtins::{builtins, provider_defaults};

/// How boocoder talks to a provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Native,
    Acp,
    Cli,
}

impl Transport {
    /// Whether this build can run providers of this transport.
    pub fn runnable(self) -> bool {
        match self {
            Transport::Cli | Transport::Native | Transport::Acp => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Native => "native",
            Transport::Acp => "acp",
            Transport::Cli => "cli",
        }
    }
}

/// A resolved provider entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: String,
    pub label: String,
    pub description: Option<String>,
    pub transport: Transport,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub prompt: PromptMode,
    pub model_args: Vec<String>,
    /// CLI: how stdout is read (plain text, or an agent's JSON event stream).
    pub output: OutputFormat,
    /// CLI: arguments that continue the session's earlier conversation, `{id}` its id.
    pub resume_args: Vec<String>,
    pub enabled: bool,
    pub timeout: Duration,
    pub builtin: bool,
    /// ACP: advertise and serve the client `fs/*` methods (gemini-cli needs them off).
    pub client_fs: bool,
    /// ACP: how permission requests are answered unless a task overrides it.
    pub permission: PermissionPolicy,
    /// ACP: how long an `ask` permission waits before it is denied.
    pub permission_timeout: Duration,
    /// ACP, measured (the real-agent suite's `*_pre_started_*` tests): the agent works when
    /// pre-started (`--prestart`), i.e. it edits in the session's `cwd`, not its process's.
    /// `None`: not measured.
    pub prestart: Option<bool>,
}

impl Provider {
    /// The built-in native loop's id: the default agent when a model is reachable.
    pub const NATIVE_ID: &'static str = "native";

    /// Whether boocoder's own loop runs it (the built-in, or an entry extending it).
    pub fn is_native(&self) -> bool {
        self.transport == Transport::Native
    }

    /// Only ACP agents announce modes; the one-shot CLIs and the native loop have none.
    pub fn takes_mode(&self) -> bool {
        self.transport == Transport::Acp
    }

    /// A one-shot CLI takes a model only through its configured `model_args`.
    pub fn takes_model(&self) -> bool {
        self.transport != Transport::Cli || !self.model_args.is_empty()
    }

    /// Only ACP agents ask before acting, so only they take a permission policy.
    pub fn asks_permissions(&self) -> bool {
        self.transport == Transport::Acp
    }
}

/// One entry of the providers file: every field optional, merged over the built-in of the
/// same id field by field, or a whole custom agent when `extends` is given.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderOverride {
    pub extends: Option<Extends>,
    pub label: Option<String>,
    /// Shown by `list_providers`; files written for the original providers file carry it.
    pub description: Option<String>,
    #[serde(default, deserialize_with = "file::argv")]
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub prompt: Option<PromptMode>,
    pub model_args: Option<Vec<String>>,
    pub output: Option<OutputFormat>,
    pub resume_args: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub timeout_secs: Option<u64>,
    pub client_fs: Option<bool>,
    pub permission: Option<PermissionPolicy>,
    pub permission_timeout_secs: Option<u64>,
}

/// What an entry's `extends` names: a transport (a custom agent from scratch) or a built-in
/// provider whose launch spec the entry starts from (a second configuration of one agent).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Extends {
    Transport(Transport),
    Provider(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProviderError {
    #[error("unknown provider `{id}`; available: {}", list(.available))]
    Unknown { id: String, available: Vec<String> },
    #[error("provider `{id}` is disabled; available: {}", list(.available))]
    Disabled { id: String, available: Vec<String> },
    #[error("provider `{id}` is not installed (`{program}` not found on PATH); available: {}", list(.available))]
    NotInstalled {
        id: String,
        program: String,
        available: Vec<String>,
    },
    #[error("provider `{id}` has no model endpoint configured: start boocoder with --llm-base-url URL (or set BOOCODER_LLM_BASE_URL), e.g. http://127.0.0.1:8080/v1 for llama-server or https://api.openai.com/v1 with --llm-api-key{}; available: {}", endpoint_detail(.detail), list(.available))]
    NotConfigured {
        id: String,
        detail: Option<String>,
        available: Vec<String>,
    },
    #[error("provider `{id}` uses the {transport} transport, which this build cannot run yet; available: {}", list(.available))]
    Unsupported {
        id: String,
        transport: &'static str,
        available: Vec<String>,
    },
}

fn endpoint_detail(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none (add a provider to the providers file)".into()
    } else {
        items.join(", ")
    }
}

/// The native endpoint as a fingerprint: a probe of another endpoint is stale.
pub fn native_fingerprint(config: &Config) -> String {
    match &config.llm {
        Some(l) => format!(
            "{} model={:?} key={}",
            l.base_url,
            l.model,
            l.api_key.is_some()
        ),
        None => "none".into(),
    }
}

/// Built-ins ∪ the providers file.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: BTreeMap<String, Provider>,
    /// Problems found while loading the providers file; shown to people and clients.
    pub diagnostics: Vec<String>,
    pub path: PathBuf,
    /// Whether the native provider has an endpoint (set by the engine from its config).
    pub native_ready: Result<(), Option<String>>,
}

impl Registry {
    /// Load the registry; a missing file is normal, a broken one is a diagnostic.
    pub fn load(path: &Path) -> Registry {
        let mut reg = Registry {
            entries: builtins().into_iter().map(|p| (p.id.clone(), p)).collect(),
            diagnostics: Vec::new(),
            path: path.to_path_buf(),
            native_ready: Err(None),
        };
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => match file::parse(&text) {
                Ok(entries) => reg.merge(entries),
                Err(e) => reg.diagnostics.push(format!(
                    "{}: {e}; using built-in providers only",
                    path.display()
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => reg.diagnostics.push(format!(
                "{}: cannot read providers file: {e}; using built-in providers only",
                path.display()
            )),
        }
        for d in &reg.diagnostics {
            tracing::warn!(diagnostic = %d, "providers file");
        }
        reg
    }

    fn merge(&mut self, entries: Vec<file::RawEntry>) {
        for raw in entries {
            for (field, line) in &raw.unknown {
                self.diagnostics.push(format!(
                    "{} line {line}: providers.{}: unknown field `{field}` ignored; the fields are {}",
                    self.path.display(),
                    raw.id,
                    file::FIELDS.join(", ")
                ));
            }
            let merged = raw
                .entry
                .and_then(|o| merge_entry(self.entries.get(&raw.id), &raw.id, &o));
            match merged {
                Ok(p) => {
                    self.entries.insert(raw.id, p);
                }
                Err(msg) => self.diagnostics.push(format!(
                    "{} line {}: providers.{}: {msg}; entry ignored",
                    self.path.display(),
                    raw.line,
                    raw.id
                )),
            }
        }
    }

    /// One entry by id, whatever its state.
    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.entries.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.entries.values()
    }

    /// Ids a task may name right now: enabled, runnable by this build, and installed.
    pub fn available(&self) -> Vec<String> {
        self.entries
            .values()
            .filter(|p| p.enabled && p.transport.runnable() && self.installed(p).is_ok())
            .map(|p| p.id.clone())
            .collect()
    }

    /// The provider a task may run on, or why not.
    pub fn resolve(&self, id: &str) -> Result<&Provider, ProviderError> {
        let Some(p) = self.entries.get(id) else {
            return Err(ProviderError::Unknown {
                id: id.into(),
                available: self.available(),
            });
        };
        if !p.enabled {
            return Err(ProviderError::Disabled {
                id: id.into(),
                available: self.available(),
            });
        }
        if !p.transport.runnable() {
            return Err(ProviderError::Unsupported {
                id: id.into(),
                transport: p.transport.as_str(),
                available: self.available(),
            });
        }
        match self.installed(p) {
            Ok(()) => Ok(p),
            Err(Missing::Program(program)) => Err(ProviderError::NotInstalled {
                id: id.into(),
                program,
                available: self.available(),
            }),
            Err(Missing::Endpoint(detail)) => Err(ProviderError::NotConfigured {
                id: id.into(),
                detail,
                available: self.available(),
            }),
        }
    }

    /// Whether the provider can be started: its program on PATH, or for the native loop an
    /// endpoint.
    fn installed(&self, p: &Provider) -> Result<(), Missing> {
        match p.transport {
            Transport::Native => self.native_ready.clone().map_err(Missing::Endpoint),
            Transport::Acp | Transport::Cli => installed(p).map_err(Missing::Program),
        }
    }

    /// A backend for a resolved provider. `shared` carries what outlives one turn (warm agent
    /// pools, HTTP clients), owned by the engine so a registry reload keeps it.
    pub fn backend(&self, id: &str, shared: &BackendShared) -> Result<Backend, ProviderError> {
        let p = match self.resolve(id) {
            Ok(p) => p,
            // Without an endpoint the native loop may still run through the MCP client's
            // sampling; the backend decides per task.
            Err(ProviderError::NotConfigured { .. }) if shared.native.is_some() => {
                self.entries.get(id).ok_or_else(|| ProviderError::Unknown {
                    id: id.into(),
                    available: self.available(),
                })?
            }
            Err(e) => return Err(e),
        };
        match p.transport {
            Transport::Cli => Ok(Backend::Cli(OneShotBackend::new(
                OneShotSpec {
                    provider_id: p.id.clone(),
                    command: p.command.clone(),
                    prompt: p.prompt,
                    model_args: p.model_args.clone(),
                    env: p.env.clone(),
                    timeout: p.timeout,
                    output: p.output,
                    resume_args: p.resume_args.clone(),
                },
                Some(shared.memory.clone()),
            ))),
            Transport::Native => match &shared.native {
                Some(n) => Ok(Backend::Native(NativeBackend::new(n.clone()))),
                None => Err(ProviderError::NotConfigured {
                    id: id.into(),
                    detail: shared.native_error.clone(),
                    available: self.available(),
                }),
            },
            Transport::Acp => Ok(Backend::Acp(AcpBackend::new(
                AcpSpec {
                    provider_id: p.id.clone(),
                    command: p.command.clone(),
                    env: p.env.clone(),
                    client_fs: p.client_fs,
                    permission: p.permission,
                    permission_timeout: p.permission_timeout,
                    timeout: p.timeout,
                },
                shared.acp.clone(),
            ))),
        }
    }
}

/// Why a provider cannot start.
enum Missing {
    Program(String),
    Endpoint(Option<String>),
}

/// Edit the providers file entry `id` (field-level merge, or removal), checking that the
/// merged entry is valid over its built-in before anything is written.
pub fn configure(path: &Path, id: &str, edit: file::Edit<'_>) -> Result<(), file::FileError> {
    let builtins: BTreeMap<String, Provider> =
        builtins().into_iter().map(|p| (p.id.clone(), p)).collect();
    file::edit(path, id, edit, |o| {
        merge_entry(builtins.get(id), id, o).map(|_| ())
    })
}

/// Merge one file entry over its base (a built-in of the same id, or nothing).
fn merge_entry(
    base: Option<&Provider>,
    id: &str,
    o: &ProviderOverride,
) -> Result<Provider, String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err("provider ids use letters, digits, '-', '_' and '.' only".into());
    }
    let mut p = match (base, &o.extends) {
        (Some(b), None) => b.clone(),
        (Some(b), Some(Extends::Transport(t))) if *t == b.transport => b.clone(),
        (_, Some(Extends::Transport(transport))) => Provider {
            builtin: false,
            ..provider_defaults(id, id, *transport, &[])
        },
        (_, Some(Extends::Provider(name))) => {
            let Some(b) = builtins().into_iter().find(|b| b.id == *name) else {
                let names: Vec<String> = builtins().into_iter().map(|b| b.id).collect();
                return Err(format!(
                    "`extends`: `{name}` is neither a transport (acp, cli) nor a built-in provider ({})",
                    names.join(", ")
                ));
            };
            Provider {
                id: id.into(),
                label: id.into(),
                builtin: b.id == id,
                ..b
            }
        }
        (None, None) => {
            return Err(
                "unknown provider; a custom agent needs \"extends\": \"cli\" or \"acp\" (or a built-in provider's id)".into(),
            );
        }
    };
    if let Some(v) = &o.label {
        p.label = v.clone();
    }
    if let Some(v) = &o.description {
        p.description = Some(v.clone());
    }
    if let Some(v) = &o.command {
        // another program: what was measured of the built-in says nothing about it
        if *v != p.command {
            p.prestart = None;
        }
        p.command = v.clone();
    }
    if let Some(v) = &o.env {
        p.env.extend(v.clone());
    }
    if let Some(v) = o.prompt {
        p.prompt = v;
    }
    if let Some(v) = &o.model_args {
        p.model_args = v.clone();
    }
    if let Some(v) = o.output {
        p.output = v;
    }
    if let Some(v) = &o.resume_args {
        p.resume_args = v.clone();
    }
    if let Some(v) = o.enabled {
        p.enabled = v;
    }
    if let Some(v) = o.timeout_secs {
        if v == 0 {
            return Err("timeout_secs must be at least 1".into());
        }
        p.timeout = Duration::from_secs(v);
    }
    if let Some(v) = o.client_fs {
        p.client_fs = v;
    }
    if let Some(v) = o.permission {
        p.permission = v;
    }
    if let Some(v) = o.permission_timeout_secs {
        p.permission_timeout = Duration::from_secs(v);
    }
    check_transport_fields(&p, o)?;
    if p.transport != Transport::Native && p.command.first().is_none_or(|c| c.is_empty()) {
        return Err(
            "command must be a non-empty argument vector, e.g. [\"my-agent\", \"--flag\"]".into(),
        );
    }
    Ok(p)
}

/// Fields that only some transports take, and the CLI output fields' consistency.
fn check_transport_fields(p: &Provider, o: &ProviderOverride) -> Result<(), String> {
    if p.transport != Transport::Acp
        && (o.client_fs.is_some() || o.permission.is_some() || o.permission_timeout_secs.is_some())
    {
        return Err(
            "client_fs, permission and permission_timeout_secs apply to ACP agents only".into(),
        );
    }
    if p.transport != Transport::Cli && (o.output.is_some() || o.resume_args.is_some()) {
        return Err("output and resume_args apply to CLI agents only".into());
    }
    // Inherited resume arguments just go unused with plain output; given ones are a mistake.
    if o.resume_args.as_ref().is_some_and(|r| !r.is_empty()) && !p.output.names_conversation() {
        return Err(format!(
            "resume_args need an output format that reports the conversation id ({} or {}); this entry's output is `{}`",
            OutputFormat::ClaudeStreamJson.as_str(),
            OutputFormat::CodexJson.as_str(),
            p.output.as_str()
        ));
    }
    if !p.resume_args.is_empty() && !p.resume_args.iter().any(|a| a.contains("{id}")) {
        return Err(
            "resume_args must contain the placeholder {id}, e.g. [\"--resume\", \"{id}\"]".into(),
        );
    }
    Ok(())
}

/// Whether the provider's program can be found; `Err(program)` when it cannot.
fn installed(p: &Provider) -> Result<(), String> {
    let Some(program) = p.command.first() else {
        return Err(String::new());
    };
    if find_program(program).is_some() {
        Ok(())
    } else {
        Err(program.clone())
    }
}

/// PATH lookup without a shell: a name with a slash is taken as a path.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_exec(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| is_exec(p))
    })
}

#[cfg(test)]
mod tests;
