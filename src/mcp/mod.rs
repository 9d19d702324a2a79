//! The MCP edge: the only module that imports rmcp. Each tool is a typed params struct plus a
//! handler that validates and makes one engine call; engine errors become tool errors
//! (`isError`) the calling model can read.

mod args;
pub mod client;
mod elicitation;
pub mod http;
mod pre_init;
mod prompts;
mod provider_tools;
pub mod provider_types;
mod reply;
mod resources;
mod roots;
pub mod sampling;
mod schema;
mod tasks;
pub mod types;
mod waiting;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{InputResponses, RequestState};
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};

use crate::domain::TaskState;
use crate::engine::{Caller, Engine, EngineError, NewTask, OutputRequest};
use args::Parameters;
use elicitation::caller_of;
use pre_init::PreInit;
use rmcp::transport::async_rw::AsyncRwTransport;
use types::*;
use waiting::wait_for;

/// Which tools a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Every tool.
    #[default]
    Full,
    /// Only new_task, list_tasks, check_task_status, get_task_output and answer_permission: a
    /// client that can delegate, read results and answer its subtasks' permission questions
    /// but never touch the checkout (the Boomerang principle).
    Orchestrator,
}

/// What `usage_stats` cannot say yet.
pub const USAGE_NOTE: &str = "tokens and cost are what agents reported; without_tokens counts \
finished tasks whose agent reported no token count (not in the sums)";

const ORCHESTRATOR_TOOLS: [&str; 5] = [
    "new_task",
    "list_tasks",
    "check_task_status",
    "get_task_output",
    "answer_permission",
];

const INSTRUCTIONS: &str = "boocoder runs coding tasks in isolated git worktrees. \
Delegate with new_task (a complete, self-contained prompt), then poll check_task_status \
(wait_seconds long-polls) until completed, failed or cancelled: it gives a short summary and the \
largest changed files with totals; get_task_output has the transcript, every file and the diff. \
Nothing reaches the user's checkout until apply_pending (dry_run checks first); discard_pending \
drops a change; rebase_pending merges a stale one onto the checkout. Follow up in the same worktree with new_task(session_id). list_providers shows \
the agents, models and modes this machine can run.";

#[derive(Clone)]
pub struct McpServer {
    engine: Engine,
    tool_router: ToolRouter<McpServer>,
    subscriptions: resources::Subscriptions,
    /// Whether `configure_provider` may run: it sets the commands agents run, so over HTTP it
    /// takes the server's `--http-allow-provider-edits`.
    provider_edits: bool,
    /// The client's roots (a task naming no project runs in the first git one).
    roots: roots::Cache,
    /// Whether the client is the local user who launched the server (stdio), whose roots
    /// count as allowed roots for this connection; never over HTTP.
    local_client: bool,
}

type ToolResult<T> = Result<Json<T>, String>;
/// A task status: compact JSON plus the same as text ([`reply::Status`]), or an MCP task or
/// a request for input for the clients that speak them ([`reply::Reply`]).
type StatusResult = Result<reply::Reply, String>;

fn fail(e: EngineError) -> String {
    e.to_string()
}

#[tool_router]
impl McpServer {
    /// Every tool, with its input schema compacted for the model that reads it.
    fn router() -> ToolRouter<McpServer> {
        let mut router = Self::tool_router() + Self::provider_tool_router();
        for route in router.map.values_mut() {
            route.attr.input_schema =
                std::sync::Arc::new(schema::compact(&route.attr.input_schema));
        }
        router
    }

    pub fn new(engine: Engine, profile: Profile) -> McpServer {
        let mut tool_router = Self::router();
        if profile == Profile::Orchestrator {
            for t in tool_router.list_all() {
                if !ORCHESTRATOR_TOOLS.contains(&t.name.as_ref()) {
                    tool_router.remove_route(&t.name);
                }
            }
        }
        McpServer {
            engine,
            tool_router,
            subscriptions: Default::default(),
            provider_edits: true,
            roots: Default::default(),
            local_client: false,
        }
    }

    /// A server for the client on stdio: the local user who launched it, so its roots count
    /// as allowed roots for this connection (see `engine::ClientRoots::local`).
    pub fn over_stdio(mut self) -> McpServer {
        self.local_client = true;
        self
    }

    /// A server for one HTTP session: provider edits only when the operator allowed them.
    pub fn over_http(mut self, allow_provider_edits: bool) -> McpServer {
        self.provider_edits = allow_provider_edits;
        self
    }

    /// Delegate a coding task to an agent working in its own git worktree. Returns its ids at once
    /// (then poll `check_task_status`), or the result if it ends within `wait_seconds`. Edits stay
    /// pending until `apply_pending`; pass `session_id` for a follow-up in the same worktree.
    #[tool(annotations(destructive_hint = false, open_world_hint = true))]
    async fn new_task(
        &self,
        Parameters(p): Parameters<NewTaskParams>,
        RequestState(state): RequestState,
        InputResponses(answers): InputResponses,
        ctx: RequestContext<RoleServer>,
    ) -> StatusResult {
        if let Some(task) = self.resumed(state.as_deref(), answers.as_ref()).await? {
            return self.submitted(task, p.wait_seconds, &ctx).await;
        }
        let task = self
            .engine
            .submit(NewTask {
                prompt: p.prompt,
                agent: p.agent,
                model: p.model,
                mode: p.mode,
                permission: p.permission,
                project: p.project,
                parent_task_id: p.parent_task_id,
                session_id: p.session_id,
                continue_task_id: p.continue_task_id,
                retry_of: None,
                budget: crate::domain::Budget {
                    max_tokens: p.max_tokens,
                    max_cost_usd: p.max_cost_usd,
                    max_minutes: p.max_minutes,
                },
                options: p.options,
                caller: Caller {
                    roots: self.client_roots(&ctx.peer).await,
                    ..caller_of(&ctx.peer)
                },
            })
            .await
            .map_err(fail)?;
        self.submitted(task, p.wait_seconds, &ctx).await
    }

    /// List tasks newest first, one short row each; filter by state, project, parent or session;
    /// page with `cursor`.
    #[tool(annotations(read_only_hint = true))]
    async fn list_tasks(&self, Parameters(p): Parameters<ListTasksParams>) -> ToolResult<TaskList> {
        if p.tree {
            let root = p
                .parent_task_id
                .filter(|r| !r.trim().is_empty())
                .ok_or("invalid `tree`: give `parent_task_id`, the root of the tree")?;
            let tree = self.engine.tree(&root).await.map_err(fail)?;
            return Ok(Json(TaskList::from_tree(&tree)));
        }
        let states = match p.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => TaskState::parse_filter(s).ok_or_else(|| {
                format!(
                    "invalid `state`: unknown state `{s}`; one of: {}, {}",
                    TaskState::ALL.map(|s| s.as_str()).join(", "),
                    crate::domain::NEEDS_ATTENTION
                )
            })?,
            None => Vec::new(),
        };
        let page = self
            .engine
            .list(crate::engine::ListRequest {
                states,
                project: p.project,
                parent_task_id: p.parent_task_id,
                session_id: p.session_id,
                cursor: p.cursor,
                limit: p.limit,
            })
            .await
            .map_err(fail)?;
        Ok(Json(TaskList::from_page(&page)))
    }

    /// A task's state, summary, changed files (the 10 largest, with totals), usage and error, never
    /// the transcript. `wait_seconds` long-polls until the state changes.
    #[tool(annotations(read_only_hint = true))]
    async fn check_task_status(
        &self,
        Parameters(p): Parameters<CheckTaskStatusParams>,
        RequestState(state): RequestState,
        InputResponses(answers): InputResponses,
        ctx: RequestContext<RoleServer>,
    ) -> StatusResult {
        let task = self.engine.task(&p.task_id).await.map_err(fail)?;
        if let Some(answers) = answers {
            // An MRTR retry answers the question the first round asked, of this task only.
            let named = match state.as_deref() {
                Some(s) => Some(self.retried_task(s).await?),
                None => None,
            };
            if named.as_deref().is_some_and(|n| n != task.id) {
                return Err("invalid `requestState`: it names another task".into());
            }
            self.answer_inputs(&task.id, &answers, crate::domain::Decider::Retry)
                .await?;
        }
        match wait_for(p.wait_seconds) {
            Some(d) if !task.state.is_terminal() => {
                let from = task.state;
                self.wait_reply(&task.id, d, &ctx, move |t| t.state != from)
                    .await
            }
            _ => Ok(self.status_of(&task).await?.into()),
        }
    }

    /// Answer a blocked task's permission question (`waiting_for` in its status) with one of its
    /// options; the first answer wins.
    #[tool(annotations(destructive_hint = false, idempotent_hint = false))]
    async fn answer_permission(
        &self,
        Parameters(p): Parameters<AnswerPermissionParams>,
    ) -> ToolResult<PermissionAnswer> {
        let a = self
            .engine
            .answer_permission(
                &p.task_id,
                &p.request_id,
                &p.option_id,
                crate::domain::Decider::Tool,
            )
            .await
            .map_err(fail)?;
        Ok(Json(PermissionAnswer::from(a)))
    }

    /// Run a failed or cancelled task again in its session (same agent, model and worktree), linked
    /// by `retry_of`; `prompt` amends the instruction.
    #[tool(annotations(destructive_hint = false, open_world_hint = true))]
    async fn retry_task(
        &self,
        Parameters(p): Parameters<RetryTaskParams>,
        RequestState(state): RequestState,
        InputResponses(answers): InputResponses,
        ctx: RequestContext<RoleServer>,
    ) -> StatusResult {
        if let Some(task) = self.resumed(state.as_deref(), answers.as_ref()).await? {
            return self.submitted(task, p.wait_seconds, &ctx).await;
        }
        let task = self
            .engine
            .retry(
                &p.task_id,
                p.prompt,
                Caller {
                    roots: self.client_roots(&ctx.peer).await,
                    ..caller_of(&ctx.peer)
                },
            )
            .await
            .map_err(fail)?;
        self.submitted(task, p.wait_seconds, &ctx).await
    }

    /// Where the work went: per project, agent, day or parent task, the tasks by outcome, success
    /// rate, median and p90 duration, tokens and cost.
    #[tool(annotations(read_only_hint = true))]
    async fn usage_stats(
        &self,
        Parameters(p): Parameters<UsageStatsParams>,
    ) -> ToolResult<UsageStats> {
        let group_by = p.group_by.unwrap_or(crate::engine::GroupBy::Agent);
        let groups = self
            .engine
            .usage_stats(group_by, p.since.as_deref())
            .await
            .map_err(fail)?;
        Ok(Json(UsageStats {
            group_by,
            groups,
            note: USAGE_NOTE.into(),
        }))
    }

    /// Stop a pending or running task (with the agent's whole process group); it becomes
    /// `cancelled`, its worktree and partial edits are kept.
    #[tool(annotations(destructive_hint = false))]
    async fn cancel_task(&self, Parameters(p): Parameters<TaskIdParams>) -> StatusResult {
        let task = self.engine.cancel(&p.task_id).await.map_err(fail)?;
        Ok(TaskStatus::from_task(&task).into())
    }

    /// The whole result, when the status is not enough: final message, transcript, every changed
    /// file and the unified diff, paged.
    #[tool(annotations(read_only_hint = true))]
    async fn get_task_output(
        &self,
        Parameters(p): Parameters<GetTaskOutputParams>,
    ) -> ToolResult<TaskOutput> {
        let page = self
            .engine
            .output(OutputRequest {
                task_id: p.task_id,
                after_seq: p.after_seq,
                max_events: p.max_events,
                diff_offset: p.diff_offset,
                max_diff_bytes: p.max_diff_bytes,
            })
            .await
            .map_err(fail)?;
        Ok(Json(TaskOutput::from_page(page)))
    }

    /// Land a session's pending change (by `task_id` or `session_id`) in the project checkout, all
    /// files or none. Refuses, naming the files, when the checkout changed under them; `dry_run`
    /// only checks.
    #[tool(annotations(destructive_hint = true, idempotent_hint = false))]
    async fn apply_pending(
        &self,
        Parameters(p): Parameters<ApplyPendingParams>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult<ApplyOutcome> {
        let target = args::target(p.task_id, p.session_id)?;
        if p.dry_run && p.close_session {
            return Err(
                "invalid `close_session`: not with `dry_run` (a dry run changes nothing)".into(),
            );
        }
        let roots = self.client_roots(&ctx.peer).await;
        let r = self
            .engine
            .apply(&target, p.dry_run, &roots)
            .await
            .map_err(fail)?;
        let result = if r.dry_run { "would_apply" } else { "applied" };
        let mut out = ApplyOutcome::new(r, result);
        self.close_after(&mut out, p.close_session, "applied")
            .await?;
        Ok(Json(out))
    }

    /// Merge a stale pending change (`stale_against_checkout`) onto the checkout's current
    /// files so apply_pending can land it; a conflict changes nothing and lists the lines.
    #[tool(annotations(destructive_hint = false, idempotent_hint = true))]
    async fn rebase_pending(
        &self,
        Parameters(p): Parameters<RebasePendingParams>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult<RebaseOutcome> {
        let target = args::target(p.task_id, p.session_id)?;
        let roots = self.client_roots(&ctx.peer).await;
        let r = self.engine.rebase(&target, &roots).await.map_err(fail)?;
        Ok(Json(RebaseOutcome::new(r)))
    }

    /// Drop a session's pending change (by `task_id` or `session_id`) and reset its worktree to the
    /// last applied state.
    #[tool(annotations(destructive_hint = true))]
    async fn discard_pending(
        &self,
        Parameters(p): Parameters<DiscardPendingParams>,
    ) -> ToolResult<ApplyOutcome> {
        let target = args::target(p.task_id, p.session_id)?;
        let r = self.engine.discard(&target).await.map_err(fail)?;
        let mut out = ApplyOutcome::new(r, "discarded");
        self.close_after(&mut out, p.close_session, "discarded")
            .await?;
        Ok(Json(out))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("boocoder", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        match self.tool_router.call(call).await {
            Err(e) => args::into_tool_error(e).map(Into::into),
            ok => ok,
        }
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, rmcp::ErrorData> {
        Ok(rmcp::model::GetTaskResult::new(
            self.task_get(&request.task_id).await?,
        ))
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.task_update(&request.task_id, &request.input_responses)
            .await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.task_cancel(&request.task_id).await
    }

    async fn on_roots_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleServer>,
    ) {
        self.roots.forget().await;
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, rmcp::ErrorData> {
        Ok(prompts::list())
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, rmcp::ErrorData> {
        let r = self.prompt_get(&request.name, request.arguments).await?;
        Ok(r.into())
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        self.resource_list().await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, rmcp::ErrorData> {
        Ok(Self::resource_templates())
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Ok(self.resource_read(&request.uri).await?.into())
    }

    #[allow(deprecated)] // resources/subscribe is the 2025-11-25 way; newer clients listen instead
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.resource_subscribe(&request.uri, context.peer)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.resource_unsubscribe(&request.uri);
        Ok(())
    }
}

/// Serve one client on stdin/stdout until it disconnects (stdin EOF) or `shutdown` fires.
/// When stdin/stdout are pipes (how MCP clients launch servers) they are driven by the async
/// reactor, about twice as fast as tokio's blocking-pool stdio; `plain` forces the latter
/// (ttys and files fall back to it anyway).
pub async fn serve_stdio(
    engine: Engine,
    profile: Profile,
    plain: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), std::io::Error> {
    let server = McpServer::new(engine, profile).over_stdio();
    let handshake = |e: rmcp::service::ServerInitializeError| {
        std::io::Error::other(format!("MCP handshake failed: {e}"))
    };
    let running = if plain {
        let (r, w) = rmcp::transport::stdio();
        server
            .serve_with_ct(
                PreInit::new(AsyncRwTransport::new_server(r, w)),
                shutdown.child_token(),
            )
            .await
            .map_err(handshake)?
    } else {
        let (r, w) = rmcp::transport::io::stdio_pipes();
        server
            .serve_with_ct(
                PreInit::new(AsyncRwTransport::new_server(r, w)),
                shutdown.child_token(),
            )
            .await
            .map_err(handshake)?
    };
    if let Err(e) = running.waiting().await {
        tracing::warn!(error = %e, "MCP session ended with an error");
    }
    Ok(())
}

/// The published tool definitions (name, description, input and output schemas), the source
/// of `tool-schemas/*.json`.
pub fn tool_definitions() -> Vec<(String, serde_json::Value)> {
    McpServer::router()
        .list_all()
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let value = serde_json::to_value(&t).unwrap_or(serde_json::Value::Null);
            (name, value)
        })
        .collect()
}
