//! A new task's arguments, checked in the order a caller fixes them: the prompt, the session,
//! the project, the provider, then the options against what that provider takes. Nothing is
//! written until every step has passed, and errors name the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::questions::Elicitor;
use super::requests::{invalid, opt};
use super::{Engine, EngineError, Result, blocking, canonical_dir};
use crate::backend::native::SamplerHandle;
use crate::config::Config;
use crate::domain::{PermissionPolicy, Session, Task, TaskState, new_id};
use crate::providers::{Provider, ProviderError};
use crate::store::NewTaskRow;
use crate::worktree;

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
    /// them that lies inside the allowed roots.
    pub roots: Vec<PathBuf>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("sampler", &self.sampler.is_some())
            .field("elicitor", &self.elicitor.is_some())
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
    client_roots: &[PathBuf],
) -> Result<String> {
    let root = match (session, project) {
        (Some(s), Some(p)) => {
            let p = allowed_project(engine, &p).await?;
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
        (Some(s), None) => return Ok(s.project_path.clone()),
        (None, Some(p)) => allowed_project(engine, &p).await?,
        (None, None) => match (
            first_git_root(engine, client_roots).await,
            &engine.inner.config.default_project,
        ) {
            (Some(root), _) => root,
            (None, Some(p)) => allowed_project(engine, &p.to_string_lossy()).await?,
            (None, None) => {
                return Err(invalid(
                    "project",
                    "no project given and the server has no default project (pass the path of a git repository, or start the server with --project)",
                ));
            }
        },
    };
    Ok(root.to_string_lossy().into_owned())
}

/// The first of the client's roots that is an allowed git repository (the others are
/// skipped: a root may be any directory, and a client must not widen the allowed roots).
async fn first_git_root(engine: &Engine, roots: &[PathBuf]) -> Option<PathBuf> {
    for r in roots {
        match allowed_project(engine, &r.to_string_lossy()).await {
            Ok(p) => return Some(p),
            Err(e) => tracing::debug!(root = %r.display(), error = %e, "client root skipped"),
        }
    }
    None
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

/// A project is a git repository with at least one commit, inside an allowed root. Both the
/// directory named and the work tree it resolves to are checked: `Repository::discover` walks
/// up from a plain subdirectory to a repository that may lie outside every root, and a git
/// directory's `core.worktree` can point anywhere, while `apply_pending` writes into that
/// work tree. The server's own `--project` is exempt: the operator named it.
async fn allowed_project(engine: &Engine, raw: &str) -> Result<PathBuf> {
    let dir = canonical_dir("project", raw)?;
    let config = &engine.inner.config;
    let roots = &config.allowed_roots;
    if !within_roots(roots, &dir) {
        return Err(outside_roots("project", &dir, None, roots));
    }
    let asked = dir.clone();
    let root = blocking(move || worktree::project_root(&asked))
        .await
        .map_err(|e| invalid("project", e.to_string()))?;
    let named_by_operator = config.default_project.as_deref() == Some(dir.as_path());
    if !named_by_operator && !within_roots(roots, &root) {
        return Err(outside_roots("project", &dir, Some(&root), roots));
    }
    Ok(root)
}

/// An apply writes into the session's project: refuse it when the project is no longer inside
/// the allowed roots (a session created under a wider `--allow-root`).
pub(super) fn check_project_still_allowed(engine: &Engine, project: &Path) -> Result<()> {
    let config = &engine.inner.config;
    let named_by_operator = config.default_project.as_deref() == Some(project);
    if named_by_operator || within_roots(&config.allowed_roots, project) {
        return Ok(());
    }
    Err(EngineError::State(format!(
        "the session's project `{}` is outside the allowed roots ({}); start the server with --allow-root to permit it",
        project.display(),
        config
            .allowed_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Whether `path` (canonical) lies in one of the allowed roots; no roots means no limit.
fn within_roots(roots: &[PathBuf], path: &Path) -> bool {
    roots.is_empty() || roots.iter().any(|r| path.starts_with(r))
}

fn outside_roots(
    field: &'static str,
    dir: &Path,
    work_tree: Option<&Path>,
    roots: &[PathBuf],
) -> EngineError {
    let roots = roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let what = match work_tree {
        None => format!("`{}` is outside the allowed roots ({roots})", dir.display()),
        Some(wt) => format!(
            "`{}` belongs to the git work tree `{}`, which is outside the allowed roots ({roots})",
            dir.display(),
            wt.display()
        ),
    };
    invalid(
        field,
        format!("{what}; start the server with --allow-root to permit it"),
    )
}
