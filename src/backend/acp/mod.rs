//! ACP agents (opencode, goose, qwen-code, gemini-cli, claude-code-acp, codex-acp, custom):
//! the client side of the Agent Client Protocol over the agent's stdio. This module is the
//! only one that imports `agent_client_protocol`; the rest of boocoder sees a [`Backend`](crate::backend::Backend).
//!
//! A turn checks out the session's warm agent from the [`Pool`] (starting one if needed),
//! applies the requested mode and model, sends `session/prompt` and streams the updates as
//! [`TurnEvent`]s. Cancel sends `session/cancel` and kills the agent if it does not stop.

mod choices;
mod connection;
mod fs;
mod handlers;
mod parked;
mod permissions;
mod pool;
mod probe;
mod state;
mod terminals;
mod updates;
mod usage;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::v1::schema as s;
use tokio_util::sync::CancellationToken;

pub use pool::{Pool, PoolConfig};
pub use probe::{ProbeReport, probe};

use super::{BackendError, EventSink, Turn, TurnEvent, TurnOutcome, emit};
use crate::domain::{PermissionPolicy, Usage};
use connection::{Launch, SessionState};
use permissions::PermissionCtx;
use state::TurnSlot;

/// How long after `session/cancel` the agent may take to answer `cancelled` before its
/// process group is killed (real agents answer within ~0.2 s).
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// Mode and model switches are quick protocol calls.
pub(super) const CONFIG_TIMEOUT: Duration = Duration::from_secs(30);

/// A resolved ACP provider.
#[derive(Debug, Clone)]
pub struct AcpSpec {
    pub provider_id: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Advertise and serve the client `fs/*` methods.
    pub client_fs: bool,
    pub permission: PermissionPolicy,
    /// How long an `ask` permission waits before it is denied.
    pub permission_timeout: Duration,
    /// Longest one turn may run.
    pub timeout: Duration,
}

pub struct AcpBackend {
    spec: AcpSpec,
    pool: Arc<Pool>,
}

impl AcpBackend {
    pub fn new(spec: AcpSpec, pool: Arc<Pool>) -> AcpBackend {
        AcpBackend { spec, pool }
    }

    fn launch(&self) -> Launch {
        Launch {
            command: self.spec.command.clone(),
            env: self.spec.env.clone(),
            client_fs: self.spec.client_fs,
        }
    }

    pub async fn run(
        &self,
        turn: Turn,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<TurnOutcome, BackendError> {
        let key = (turn.session_id.clone(), self.spec.provider_id.clone());
        let launch = self.launch();
        let checkout = self.pool.checkout(key, &launch, &turn.cwd);
        let mut lease = tokio::select! {
            l = checkout => l?,
            _ = cancel.cancelled() => return Err(BackendError::Cancelled),
        };
        let conn = lease.conn.clone();
        let session = lease.session.clone();
        self.announce(&lease, &events).await;

        if let Err(e) =
            choices::configure(&conn, &session, &turn, &self.spec.provider_id, &events).await
        {
            if conn.is_dead() {
                lease.discard();
            }
            return Err(e);
        }

        let text = Arc::new(Mutex::new(String::new()));
        let perm_cancel = CancellationToken::new();
        conn.shared.set_turn(Some(TurnSlot {
            perm: PermissionCtx {
                events: events.clone(),
                policy: turn.permission.unwrap_or(self.spec.permission),
                ask_timeout: self.spec.permission_timeout,
                cancel: perm_cancel.clone(),
                task_id: turn.task_id.clone(),
                asker: turn.asker.clone(),
            },
            text: text.clone(),
        }));
        if let Some(cmds) = conn.shared.unsent_commands() {
            emit(&events, TurnEvent::Commands(cmds)).await;
        }
        let result = self
            .prompt(&conn, &session, &turn, &cancel, &perm_cancel, &events)
            .await;
        // a long stderr line written during the turn still belongs to its transcript
        conn.shared
            .stderr
            .settled(crate::backend::process::PIPE_DRAIN)
            .await;
        conn.shared.set_turn(None);
        perm_cancel.cancel();
        let stop = match result {
            Ok((stop, usage)) => {
                if let Some(u) = usage {
                    emit(&events, TurnEvent::Usage(u)).await;
                }
                stop
            }
            Err((e, keep)) => {
                if !keep || conn.is_dead() {
                    lease.discard();
                }
                return Err(e);
            }
        };
        let final_message = match text.lock() {
            Ok(t) => t.trim().to_string(),
            Err(p) => p.into_inner().trim().to_string(),
        };
        stopped(stop, &events).await?;
        Ok(TurnOutcome {
            final_message,
            usage: Usage::default(),
        })
    }

    /// Which agent serves the turn, in the transcript: started (with its start-up figures) or
    /// warm, and whether a restarted agent lost the session's earlier conversation.
    /// Keep one agent of this provider started and initialized ahead of need, parked in
    /// `dir`, so a new session's first turn only opens its session.
    pub fn prestart(&self, dir: &std::path::Path) {
        self.pool.prestart(
            &self.spec.provider_id,
            self.launch(),
            &dir.join(&self.spec.provider_id),
        );
    }

    async fn announce(&self, lease: &pool::Lease, events: &EventSink) {
        let (conn, session) = (&lease.conn, &lease.session);
        let pid = conn
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into());
        let note = if lease.prestarted {
            format!(
                "pre-started agent `{}` (pid {pid}, initialized {} s ago) given this session: {} ({}) ready after {} ms",
                self.spec.provider_id,
                conn.started.elapsed().as_secs(),
                session.id.0,
                session.how,
                lease.took.as_millis()
            )
        } else if lease.fresh {
            format!(
                "started agent `{}` (pid {pid}): initialize {} ms, session {} ({}) ready after {} ms",
                self.spec.provider_id,
                conn.init_time.as_millis(),
                session.id.0,
                session.how,
                conn.started.elapsed().as_millis()
            )
        } else {
            format!(
                "reusing warm agent `{}` (pid {pid}), session {}",
                self.spec.provider_id, session.id.0
            )
        };
        if lease.relaunched {
            let note = format!(
                "provider `{}` changed since this session's agent started (command, arguments or environment): started it again",
                self.spec.provider_id
            );
            emit(events, TurnEvent::Notice(note)).await;
        }
        emit(events, TurnEvent::Notice(note)).await;
        if lease.restarted && session.how == "new" {
            let note = "the restarted agent did not reload this session's earlier conversation (no session/load or session/resume, or it failed); this turn starts without it, the worktree is unchanged";
            emit(events, TurnEvent::Notice(note.into())).await;
        }
    }

    /// Send the prompt and wait for its stop reason. On error, says whether the agent may stay
    /// warm (`true`) or must be stopped.
    async fn prompt(
        &self,
        conn: &connection::AgentConn,
        session: &SessionState,
        turn: &Turn,
        cancel: &CancellationToken,
        perm_cancel: &CancellationToken,
        events: &EventSink,
    ) -> Result<(s::StopReason, Option<Usage>), (BackendError, bool)> {
        let req = s::PromptRequest::new(session.id.clone(), vec![turn.prompt.clone().into()]);
        conn.shared.activity.touch();
        let sent = conn.call(req, self.spec.timeout);
        tokio::pin!(sent);
        tokio::select! {
            r = &mut sent => {
                return match r {
                    Ok(resp) => Ok((resp.stop_reason, usage::of_response(&resp))),
                    Err(e @ BackendError::Timeout { .. }) => {
                        cancel_agent(conn, session, perm_cancel).await;
                        conn.close().await;
                        Err((e, false))
                    }
                    Err(e) => Err((e, !conn.is_dead())),
                };
            }
            _ = cancel.cancelled() => {}
            silent = conn.shared.activity.stalled(self.pool.stall()) => {
                let stderr_tail = conn.shared.stderr_tail();
                cancel_agent(conn, session, perm_cancel).await;
                conn.close().await;
                let secs = silent.as_secs();
                return Err((BackendError::Stalled { secs, stderr_tail }, false));
            }
        }
        cancel_agent(conn, session, perm_cancel).await;
        let keep = match tokio::time::timeout(CANCEL_GRACE, &mut sent).await {
            Ok(Ok(resp)) if resp.stop_reason == s::StopReason::Cancelled => true,
            Ok(Ok(resp)) => {
                tracing::debug!(stop = ?resp.stop_reason, "agent finished instead of cancelling");
                true
            }
            Ok(Err(_)) | Err(_) => false,
        };
        if !keep {
            conn.close().await;
        }
        let note = if keep {
            "turn cancelled: the agent acknowledged session/cancel".to_string()
        } else {
            format!(
                "turn cancelled: the agent did not stop within {} ms; its process group was killed",
                CANCEL_GRACE.as_millis()
            )
        };
        emit(events, TurnEvent::Notice(note)).await;
        Err((BackendError::Cancelled, keep))
    }
}

/// What the agent's stop reason means for the turn: an end (noted when it is not the normal
/// one), or a failure when the agent refused or cancelled on its own.
async fn stopped(stop: s::StopReason, events: &EventSink) -> Result<(), BackendError> {
    let note = match stop {
        s::StopReason::EndTurn => return Ok(()),
        s::StopReason::MaxTokens | s::StopReason::MaxTurnRequests => {
            format!("the agent stopped early: {}", updates::enum_name(&stop))
        }
        s::StopReason::Refusal => {
            return Err(BackendError::Agent("the agent refused to continue".into()));
        }
        s::StopReason::Cancelled => {
            return Err(BackendError::Agent(
                "the agent cancelled the turn on its own".into(),
            ));
        }
        other => format!("turn ended: {}", updates::enum_name(&other)),
    };
    emit(events, TurnEvent::Notice(note)).await;
    Ok(())
}

/// `session/cancel`, and answer any pending permission question `cancelled`.
async fn cancel_agent(
    conn: &connection::AgentConn,
    session: &SessionState,
    perm_cancel: &CancellationToken,
) {
    perm_cancel.cancel();
    if let Err(e) = conn
        .cx
        .send_notification(s::CancelNotification::new(session.id.clone()))
    {
        tracing::debug!(error = %e, "could not send session/cancel");
    }
}
