//! A new task's arguments, checked in the order a caller fixes them: the prompt, the session,
//! the project, the provider, then the options against what that provider takes. Nothing is
//! written until every step has passed, and errors name the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::questions::Elicitor;
use super::requests::{invalid, opt};
use super::roots::{ClientRoots, allowed_project, check_project_still_allowed, first_git_root};
use super::{Engine, EngineError, Result};
use crate::backend::native::SamplerHandle;
use crate::config::Config;
use crate::domain::{PermissionPolicy, Session, Task, TaskState, new_id};
use crate::providers::{Provider, ProviderError};
use crate::store::NewTaskRow;

/// Largest prompt accepted; a bigger one is almost certainly a mistake.
const MAX_PROMPT_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub prompt: String,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub mode: Option<String>,
    /// `allow`, `deny` or `ask`; ACP providers only.
    pub permission: Option<String>,
    pub project: Option<String>,
    pub parent_task_id: Option<String>,
    pub session_id: Option<String>,
    pub continue_task_id: Option<String>,
    /// The failed or cancelled task this one runs again (set by `retry`).
    pub retry_of: Option<String>,
    pub budget: crate::domain::Budget,
    /// Agent settings besides mode and model, by id (ACP agents; checked against the probe).
    pub options: BTreeMap<String, String>,
    /// What the submitting MCP client offers the task.
    pub caller: Caller,
}

/// What the submitting MCP client offers its task: its sampling (the native loop's model when
/// no endpoint is configured) and an elicitation form (permission questions reach a person).
#[derive(Clone, Default)]
pub struct Caller {
    pub sampler: Option<SamplerHandle>,
    pub elicitor: Option<Arc<dyn Elicitor>>,
    /// The client's roots: a task naming no project runs in the first git repository among
    /// them that is allowed; over stdio they also count as allowed roots.
    pub roots: ClientRoots,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("sampler", &self.sampler.is_some())
            .field("elicitor", &self.elicitor.is_some())
            .field("roots", &self.roots)
            .finish()
    }
}

/// How a native turn reaches a model. Decided here only, from the config: the endpoint when
/// one is configured, else the submitting client's MCP sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NativeRoute {
    Endpoint,
    Sampling,
}

impl NativeRoute {
    fn configured(config: &Config) -> NativeRoute {
        if config.llm.is_some() {
            NativeRoute::Endpoint
        } else {
            NativeRoute::Sampling
        }
    }

    /// The route of a task on `provider`; `None` when it is not the native loop.
    pub(super) fn of(provider: &Provider, config: &Config) -> Option<NativeRoute> {
        provider
            .is_native()
            .then(|| NativeRoute::configured(config))
    }

    /// Whether a native turn could reach a model, given whether the client can sample.
    fn reachable(self, has_sampler: bool) -> bool {
        self == NativeRoute::Endpoint || has_sampler
    }
}

/// A checked task: the row to insert, and for the native loop the route its turn takes.
pub(super) struct Validated {
    pub row: NewTaskRow,
    pub native: Option<NativeRoute>,
}

/// The options checked against the provider.
struct Options {
    model: Option<String>,
    mode: Option<String>,
    permission: Option<PermissionPolicy>,
}

pub(super) async fn validate_new_task(engine: &Engine, req: NewTask) -> Result<Validated> {
    check_prompt(&req.prompt)?;
    let session = resolve_session(engine, opt(req.session_id), opt(req.continue_task_id)).await?;
    let project_path = resolve_project(
        engine,
        session.as_ref(),
        opt(req.project),
        &req.caller.roots,
    )
    .await?;
    let parent_task_id = opt(req.parent_task_id);
    check_parent(engine, parent_task_id.as_deref()).await?;
    let budget = super::budget::check_budget(req.budget, engine.inner.config.task_budget)?;
    if let Some(parent) = &parent_task_id {
        engine.check_tree_budget(parent).await?;
    }
    let has_sampler = req.caller.sampler.is_some();
    let provider = resolve_provider(engine, opt(req.agent), session.as_ref(), has_sampler)?;
    let native = NativeRoute::of(&provider, &engine.inner.config);
    let options = check_options(
        engine,
        &provider,
        native,
        req.model,
        req.mode,
        req.permission,
    )?;
    check_settings(engine, &provider, &req.options)?;
    let (session_id, new_session_provider) = match session {
        Some(s) => (s.id, None),
        None => (new_id("s"), Some(provider.id.clone())),
    };
    let row = NewTaskRow {
        id: new_id("t"),
        project_path,
        session_id,
        new_session_provider,
        new_session_worktree: None,
        parent_task_id,
        prompt: req.prompt,
        provider: provider.id,
        model: options.model,
        mode: options.mode,
        permission: options.permission,
        retry_of: req.retry_of,
        budget,
        options: req.options,
    };
    Ok(Validated { row, native })
}

impl Engine {
    /// Run a failed or cancelled task again, as a new task in its session (same agent, model,
    /// mode, permission and parent), linked by `retry_of`; `prompt` replaces the original
    /// when given. The worktree keeps whatever the earlier turn left in it.
    pub async fn retry(
        &self,
        task_id: &str,
        prompt: Option<String>,
        caller: Caller,
    ) -> Result<Task> {
        let id = opt(Some(task_id.to_string())).ok_or_else(|| invalid("task_id", "is empty"))?;
        let old = self.task(&id).await?;
        if !matches!(old.state, TaskState::Failed | TaskState::Cancelled) {
            return Err(invalid(
                "task_id",
                format!(
                    "task `{id}` is {}; only a failed or cancelled task can be retried",
                    old.state.as_str()
                ),
            ));
        }
        self.submit(NewTask {
            prompt: opt(prompt).unwrap_or(old.prompt),
            agent: Some(old.provider),
            model: old.model,
            mode: old.mode,
            permission: old.permission.map(|p| p.as_str().to_string()),
            project: None,
            parent_task_id: old.parent_task_id,
            session_id: Some(old.session_id),
            continue_task_id: None,
            retry_of: Some(old.id),
            budget: old.budget,
            options: old.options,
            caller,
        })
        .await
    }

    /// Validate and queue a task; returns at once with the stored row.
    pub async fn submit(&self, req: NewTask) -> Result<Task> {
        if self.inner.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let caller = req.caller.clone();
        let Validated { mut row, native } = validate_new_task(self, req).await?;
        let spare = self.inner.spare_for(&mut row).await;
        // Registered before the row exists, so the dispatcher can never claim the task first.
        if let (Some(s), Some(NativeRoute::Sampling)) = (caller.sampler, native) {
            self.inner.backends.samplers.insert(&row.id, s);
        }
        if let Some(e) = caller.elicitor {
            self.inner.questions.set_elicitor(&row.id, e);
        }
        let task = match self.inner.store.insert_task(&row).await {
            Ok(t) => t,
            Err(e) => {
                drop(self.inner.backends.samplers.take(&row.id));
                self.inner.questions.forget(&row.id);
                self.inner.settle_spare(spare, &row, false).await;
                return Err(e.into());
            }
        };
        self.inner.settle_spare(spare, &row, true).await;
        tracing::info!(task_id = %task.id, session_id = %task.session_id, provider = %task.provider, "task queued");
        self.inner.publish(&task.id, TaskState::Pending, None);
        self.inner.wake.notify_one();
        Ok(task)
    }
}

fn check_prompt(prompt: &str) -> Result<()> {
    if prompt.trim().is_empty() {
        return Err(invalid("prompt", "must not be empty"));
    }
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(invalid(
            "prompt",
            format!("is {} bytes; the limit is {MAX_PROMPT_BYTES}", prompt.len()),
        ));
    }
    Ok(())
}

/// The open session the task continues, named directly or through one of its tasks; `None`
/// for a new session.
async fn resolve_session(
    engine: &Engine,
    session_id: Option<String>,
    continue_task_id: Option<String>,
) -> Result<Option<Session>> {
    let id = match (session_id, continue_task_id) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "continue_task_id",
                "give either `session_id` or `continue_task_id`, not both",
            ));
        }
        (Some(s), None) => s,
        (None, Some(t)) => match engine.inner.store.task(&t).await? {
            Some(task) => task.session_id,
            None => return Err(invalid("continue_task_id", format!("no task `{t}`"))),
        },
        (None, None) => return Ok(None),
    };
    match engine.inner.store.session(&id).await? {
        Some(s) if s.closed => Err(invalid("session_id", format!("session `{id}` is closed"))),
        Some(s) => Ok(Some(s)),
        None => Err(invalid("session_id", format!("no session `{id}`"))),
    }
}

/// The project's path: the session's (a project named beside it must be the same one), the
/// one named, or the server's default.
async fn resolve_project(
    engine: &Engine,
    session: Option<&Session>,
    project: Option<String>,
    client_roots: &ClientRoots,
) -> Result<String> {
    let root = match (session, project) {
        (Some(s), Some(p)) => {
            let p = allowed_project(engine, &p, client_roots).await?;
            if p.to_string_lossy() != s.project_path {
                return Err(invalid(
                    "project",
                    format!(
                        "session `{}` belongs to project `{}`, not `{}`",
                        s.id,
                        s.project_path,
                        p.display()
                    ),
                ));
            }
            return Ok(s.project_path.clone());
        }
        (Some(s), None) => {
            // A follow-up runs in the session's project: the client asking now must be
            // allowed there too (the session may come from another client's roots, or from
            // a wider `--allow-root`).
            check_project_still_allowed(engine, Path::new(&s.project_path), client_roots)?;
            return Ok(s.project_path.clone());
        }
        (None, Some(p)) => allowed_project(engine, &p, client_roots).await?,
        (None, None) => match (
            first_git_root(engine, client_roots).await,
            &engine.inner.config.default_project,
        ) {
            (Ok(root), _) => root,
            (Err(_), Some(p)) => {
                allowed_project(engine, &p.to_string_lossy(), client_roots).await?
            }
            (Err(skipped), None) => {
                let why = match skipped.as_slice() {
                    [] => String::new(),
                    s => format!("; this client's roots were skipped: {}", s.join(" | ")),
                };
                return Err(invalid(
                    "project",
                    format!(
                        "no project given and the server has no default project (pass the path of a git repository, or start the server with --project){why}"
                    ),
                ));
            }
        },
    };
    Ok(root.to_string_lossy().into_owned())
}

async fn check_parent(engine: &Engine, parent: Option<&str>) -> Result<()> {
    if let Some(parent) = parent
        && engine.inner.store.task(parent).await?.is_none()
    {
        return Err(invalid("parent_task_id", format!("no task `{parent}`")));
    }
    Ok(())
}

/// The provider named, else the session's, else the configured default, else the native loop
/// when it can reach a model; resolved against the registry.
fn resolve_provider(
    engine: &Engine,
    requested: Option<String>,
    session: Option<&Session>,
    has_sampler: bool,
) -> Result<Provider> {
    let config = &engine.inner.config;
    let registry = engine.registry();
    let agent = match (requested, session, &config.default_agent) {
        (Some(a), _, _) => a,
        (None, Some(s), _) => s.provider.clone(),
        (None, None, Some(d)) => d.clone(),
        (None, None, None) if NativeRoute::configured(config).reachable(has_sampler) => {
            Provider::NATIVE_ID.to_string()
        }
        (None, None, None) => {
            return Err(invalid(
                "agent",
                format!(
                    "no agent given and no default configured; choose one of: {}",
                    registry.available().join(", ")
                ),
            ));
        }
    };
    match registry.resolve(&agent) {
        Ok(p) => Ok(p.clone()),
        // Only the native loop lacks an endpoint; it still runs through a client that samples.
        Err(ProviderError::NotConfigured { .. })
            if has_sampler && engine.inner.backends.native.is_some() =>
        {
            registry
                .get(&agent)
                .cloned()
                .ok_or_else(|| invalid("agent", format!("unknown provider `{agent}`")))
        }
        Err(e) => Err(invalid("agent", e.to_string())),
    }
}

/// Permission, mode and model against what the provider takes and, when it has been probed,
/// what it offers.
fn check_options(
    engine: &Engine,
    provider: &Provider,
    native: Option<NativeRoute>,
    model: Option<String>,
    mode: Option<String>,
    permission: Option<String>,
) -> Result<Options> {
    let (model, mode) = (opt(model), opt(mode));
    let permission =
        match opt(permission) {
            None => None,
            Some(p) => Some(PermissionPolicy::parse(&p).ok_or_else(|| {
                invalid("permission", format!("`{p}`: use one of allow, deny, ask"))
            })?),
        };
    let agent = &provider.id;
    if let Some(p) = permission
        && !provider.asks_permissions()
    {
        return Err(invalid(
            "permission",
            format!(
                "`{}`: provider `{agent}` is not an ACP agent and asks no permissions",
                p.as_str()
            ),
        ));
    }
    if let Some(m) = &mode
        && !provider.takes_mode()
    {
        return Err(invalid(
            "mode",
            if provider.is_native() {
                format!("`{m}`: the native provider has no modes")
            } else {
                format!("`{m}`: provider `{agent}` is a one-shot CLI agent and has no modes")
            },
        ));
    }
    check_model(engine, provider, native, model.as_deref())?;
    check_against_probe(engine, agent, &mode, &model)?;
    Ok(Options {
        model,
        mode,
        permission,
    })
}

/// `options` only for ACP agents, and only settings (and values) the probe saw, when one ran.
fn check_settings(
    engine: &Engine,
    provider: &Provider,
    options: &BTreeMap<String, String>,
) -> Result<()> {
    if options.is_empty() {
        return Ok(());
    }
    if !provider.takes_mode() || provider.is_native() {
        return Err(invalid(
            "options",
            format!(
                "provider `{}` is not an ACP agent and has no settings",
                provider.id
            ),
        ));
    }
    let probe = engine.probe_of(&provider.id);
    crate::domain::check_settings(
        options,
        probe.as_ref().map(|p| p.options.as_slice()),
        &provider.id,
    )
    .map_err(|reason| invalid("options", reason))
}

fn check_model(
    engine: &Engine,
    provider: &Provider,
    native: Option<NativeRoute>,
    model: Option<&str>,
) -> Result<()> {
    if model.is_some() && !provider.takes_model() {
        return Err(invalid(
            "model",
            format!(
                "provider `{}` takes no model (its `model_args` are not configured)",
                provider.id
            ),
        ));
    }
    // Through MCP sampling the client picks the model; an endpoint needs one named.
    let endpoint_without_default = native == Some(NativeRoute::Endpoint)
        && engine
            .inner
            .config
            .llm
            .as_ref()
            .is_some_and(|l| l.model.is_none());
    if model.is_none() && endpoint_without_default {
        return Err(invalid(
            "model",
            "the native provider needs a model: pass `model`, or start boocoder with --model (BOOCODER_MODEL)",
        ));
    }
    Ok(())
}

/// What the provider's last probe found (ACP: the modes and models of `session/new`; native:
/// the endpoint's models). Without a probe they are checked when the turn starts (an unknown
/// one fails the task naming the valid ones).
fn check_against_probe(
    engine: &Engine,
    agent: &str,
    mode: &Option<String>,
    model: &Option<String>,
) -> Result<()> {
    let Some(probe) = engine.probe_of(agent) else {
        return Ok(());
    };
    for (field, value, valid) in [
        ("mode", mode, &probe.modes),
        ("model", model, &probe.models),
    ] {
        if let Some(v) = value
            && !valid.is_empty()
            && !valid.contains(v)
        {
            return Err(invalid(
                field,
                format!(
                    "`{v}` is not offered by provider `{agent}`; valid {field}s: {}",
                    valid.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
