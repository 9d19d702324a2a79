//! The provider tools: which agents this machine can run, probing them again, editing the
//! providers file (refused over HTTP unless the operator allowed it), and the diagnostic.

use std::time::Duration;

use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};

use super::args::Parameters;
use super::provider_types::*;
use super::{McpServer, ToolResult, fail};
use crate::engine::{ConfigureProvider, Configured, MAX_WAIT};
use crate::providers::file::EntryPatch;
use crate::providers::snapshot::ProvidersSnapshot;

const PROVIDER_EDITS_OFF: &str = "configure_provider is disabled over HTTP: it sets the \
commands agents run, so any client holding the token could run programs as the server's user. \
Edit the providers file, use the stdio server, or restart `serve --http` with \
--http-allow-provider-edits.";
const PROVIDERS_WAIT: Duration = Duration::from_secs(20);
const REFRESH_WAIT: Duration = Duration::from_secs(30);
/// `wait_seconds` of a provider tool: `default` when absent, capped at [`MAX_WAIT`].
fn probe_wait(seconds: Option<u32>, default: Duration) -> Duration {
    seconds
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(default)
        .min(MAX_WAIT)
}

#[tool_router(router = provider_tool_router, vis = "pub(super)")]
impl McpServer {
    /// The agents this machine can run: per provider its id (new_task's `agent`), status (ready,
    /// needs_auth, not_installed…), version, `models`, `modes` and a diagnostic. Waits briefly for
    /// running probes.
    #[tool(annotations(read_only_hint = true))]
    async fn list_providers(
        &self,
        Parameters(p): Parameters<ListProvidersParams>,
    ) -> ToolResult<ProvidersSnapshot> {
        let wait = probe_wait(p.wait_seconds, PROVIDERS_WAIT);
        Ok(Json(self.engine.providers(wait).await))
    }

    /// Probe agents again (all, or `ids`) after installing, upgrading or logging in; re-reads the
    /// providers file.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true
    ))]
    async fn refresh_providers(
        &self,
        Parameters(p): Parameters<RefreshProvidersParams>,
    ) -> ToolResult<ProvidersSnapshot> {
        let wait = probe_wait(p.wait_seconds, REFRESH_WAIT);
        let snap = self
            .engine
            .refresh_providers(p.ids.unwrap_or_default(), wait)
            .await
            .map_err(fail)?;
        Ok(Json(snap))
    }

    /// Add a custom agent (`extends` and `command`), override a built-in's fields (e.g. `command`,
    /// `env`) or turn one on or off. Only the given fields change; saved to the providers file and
    /// applied at once.
    #[tool(annotations(destructive_hint = false, idempotent_hint = true))]
    async fn configure_provider(
        &self,
        Parameters(p): Parameters<ConfigureProviderParams>,
    ) -> ToolResult<Configured> {
        if !self.provider_edits {
            return Err(PROVIDER_EDITS_OFF.into());
        }
        let patch = EntryPatch {
            extends: p.extends,
            label: p.label,
            description: p.description,
            command: p.command,
            env: p.env,
            prompt: p.prompt,
            model_args: p.model_args,
            enabled: p.enabled,
            timeout_secs: p.timeout_secs,
            client_fs: p.client_fs,
            permission: p.permission,
            permission_timeout_secs: p.permission_timeout_secs,
            output: p.output,
            resume_args: p.resume_args,
        };
        if p.remove && !patch.is_empty() {
            return Err(
                "invalid `remove`: give either `remove: true` or fields to change, not both".into(),
            );
        }
        let done = self
            .engine
            .configure_provider(ConfigureProvider {
                id: p.id,
                patch,
                remove: p.remove,
                wait: PROVIDERS_WAIT,
            })
            .await
            .map_err(fail)?;
        Ok(Json(done))
    }

    /// Plain-text diagnosis of one provider (its resolved entry, last probe and the probe's log),
    /// or without `id` the providers file's problems and one line per provider.
    #[tool(annotations(read_only_hint = true))]
    async fn provider_diagnostic(
        &self,
        Parameters(p): Parameters<ProviderDiagnosticParams>,
    ) -> Result<String, String> {
        let id = p.id.as_deref().map(str::trim).filter(|s| !s.is_empty());
        self.engine
            .provider_diagnostic(id, PROVIDERS_WAIT)
            .await
            .map_err(fail)
    }
}
