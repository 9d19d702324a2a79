//! One live agent: the process (own process group, cwd = the worktree), the ACP connection
//! over its stdio, and the client-side handlers. Handlers never wait on the agent inside the
//! dispatch loop: anything that waits (permission questions, terminal exits) is spawned.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::{ConnectionTo, schema as s};
use agent_client_protocol::{Agent, ByteStreams, JsonRpcMessage, JsonRpcRequest, UntypedMessage};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;

use super::handlers::spawn_connection;
use super::state::{Shared, lock};
use crate::backend::process::{GroupGuard, KILL_GRACE, describe, read_line_capped, read_stderr};
use crate::backend::{BackendError, stderr_suffix};

/// How long `initialize` and session set-up may take (opencode needs ~4 s on a slow box).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an exited agent's stderr may take to drain before its death is reported.
const STDERR_DRAIN: Duration = Duration::from_millis(300);
/// Longest JSON-RPC message read from an agent (a whole file in `fs/write_text_file` fits).
const MESSAGE_CAP: usize = 16 << 20;

/// What starts an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Launch {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Advertise and serve `fs/*` (off for agents whose fs client support is broken).
    pub client_fs: bool,
}

/// The ACP session the connection drives.
#[derive(Debug, Clone)]
pub(super) struct SessionState {
    pub id: s::SessionId,
    pub modes: Option<s::SessionModeState>,
    pub config_options: Vec<s::SessionConfigOption>,
    /// The unstable `models` of the session's answer (gemini-cli, claude-code-acp).
    pub raw_models: Option<super::choices::RawModels>,
    /// How the session came to be: "new", "loaded" or "resumed".
    pub how: &'static str,
}

/// What a session's answer offers: modes, config options, and the raw answer.
type Answered = (
    Option<s::SessionModeState>,
    Option<Vec<s::SessionConfigOption>>,
    serde_json::Value,
);

/// A live agent process and its connection. Dropping it kills the process group.
pub(super) struct AgentConn {
    pub cx: ConnectionTo<Agent>,
    pub shared: Arc<Shared>,
    pub pid: Option<u32>,
    group: GroupGuard,
    /// Fires when the process has exited.
    pub dead: CancellationToken,
    exit: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    pub init: s::InitializeResponse,
    pub session: Mutex<Option<SessionState>>,
    pub started: Instant,
    pub init_time: Duration,
}

impl Drop for AgentConn {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.terminals.clear();
    }
}

impl AgentConn {
    /// Start the agent in `root` and run `initialize`.
    pub(super) async fn start(launch: &Launch, root: &Path) -> Result<AgentConn, BackendError> {
        let started = Instant::now();
        let root = root.canonicalize()?;
        let (child, group, (stdin, stdout, stderr)) = spawn_agent(launch, &root)?;
        let pid = child.id();
        let shared = Arc::new(Shared::new(root, launch.client_fs));
        let (dead, exit) = watch_exit(child, stderr, shared.clone());

        let stop = CancellationToken::new();
        let (cx_tx, cx_rx) = tokio::sync::oneshot::channel();
        let (lines_in, lines_out) = tokio::io::duplex(64 << 10);
        tokio::spawn(clean_stdout(stdout, lines_in, shared.clone(), stop.clone()));
        let io = ByteStreams::new(stdin.compat_write(), lines_out.compat());
        spawn_connection(shared.clone(), io, cx_tx, stop.clone());
        let cx = cx_rx.await.map_err(|_| {
            BackendError::Agent("the agent connection ended before it started".into())
        })?;

        let mut conn = AgentConn {
            cx,
            shared,
            pid,
            group,
            dead,
            exit,
            stop,
            init: s::InitializeResponse::new(ProtocolVersion::V1),
            session: Mutex::new(None),
            started,
            init_time: Duration::ZERO,
        };
        conn.init = conn
            .call(initialize_request(launch.client_fs), SETUP_TIMEOUT)
            .await?;
        conn.init_time = started.elapsed();
        Ok(conn)
    }

    /// Send a request and wait for its answer, failing fast if the process dies meanwhile.
    pub(super) async fn call<R: JsonRpcRequest>(
        &self,
        req: R,
        timeout: Duration,
    ) -> Result<R::Response, BackendError> {
        let method = req.method().to_string();
        let sent = self.cx.send_request(req).block_task();
        tokio::select! {
            r = sent => match r {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    // A failed request is often the first sign of a dying agent: give its
                    // exit a moment to be observed so the error quotes its stderr.
                    if tokio::time::timeout(STDERR_DRAIN * 2, self.dead.cancelled()).await.is_ok() {
                        return Err(self.exited());
                    }
                    let tail = stderr_suffix(&self.shared.stderr_tail());
                    Err(BackendError::Agent(format!("`{method}` failed: {e}{tail}")))
                }
            },
            _ = self.dead.cancelled() => Err(self.exited()),
            _ = tokio::time::sleep(timeout) => Err(BackendError::Timeout {
                secs: timeout.as_secs(),
                stderr_tail: self.shared.stderr_tail(),
            }),
        }
    }

    /// The error for a process that is gone, quoting its last stderr lines.
    pub(super) fn exited(&self) -> BackendError {
        BackendError::Exited {
            status: lock(&self.exit)
                .clone()
                .unwrap_or_else(|| "an unknown status".into()),
            stderr_tail: self.shared.stderr_tail(),
        }
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead.is_cancelled()
    }

    /// Open the ACP session: load or resume `previous` when the agent can, else a new one.
    pub(super) async fn open_session(
        &self,
        previous: Option<&s::SessionId>,
    ) -> Result<SessionState, BackendError> {
        let root = self.shared.root();
        let caps = &self.init.agent_capabilities;
        let reopened = match previous {
            Some(prev) if caps.load_session => {
                let req = s::LoadSessionRequest::new(prev.clone(), root.clone());
                let r = self.call_raw::<s::LoadSessionResponse>(&req).await;
                self.reopened(
                    prev,
                    r.map(|(r, raw)| (r.modes, r.config_options, raw)),
                    "loaded",
                )?
            }
            Some(prev) if caps.session_capabilities.resume.is_some() => {
                let req = s::ResumeSessionRequest::new(prev.clone(), root.clone());
                let r = self.call_raw::<s::ResumeSessionResponse>(&req).await;
                self.reopened(
                    prev,
                    r.map(|(r, raw)| (r.modes, r.config_options, raw)),
                    "resumed",
                )?
            }
            _ => None,
        };
        if let Some(session) = reopened {
            return Ok(session);
        }
        let (r, raw) = self
            .call_raw::<s::NewSessionResponse>(&s::NewSessionRequest::new(root))
            .await?;
        Ok(self.set_session(r.session_id, (r.modes, r.config_options, raw), "new"))
    }

    /// A session request whose answer is also kept raw: agents put fields there the ACP crate
    /// does not model (the unstable `models`).
    async fn call_raw<Resp: serde::de::DeserializeOwned>(
        &self,
        req: &(impl JsonRpcMessage + serde::Serialize),
    ) -> Result<(Resp, serde_json::Value), BackendError> {
        let method = req.method().to_string();
        let msg = UntypedMessage::new(&method, req)
            .map_err(|e| BackendError::Agent(format!("{method}: {e}")))?;
        let raw = self.call(msg, SETUP_TIMEOUT).await?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            BackendError::Agent(format!("{method}: an answer boocoder cannot read: {e}"))
        })?;
        Ok((typed, raw))
    }

    /// The outcome of `session/load` or `session/resume`: the session, or `None` to start a
    /// new one (the agent refused, but is alive).
    fn reopened(
        &self,
        prev: &s::SessionId,
        answer: Result<Answered, BackendError>,
        how: &'static str,
    ) -> Result<Option<SessionState>, BackendError> {
        match answer {
            Ok(answered) => Ok(Some(self.set_session(prev.clone(), answered, how))),
            Err(e) if self.is_dead() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, how, "reopening the session failed; starting a new one");
                Ok(None)
            }
        }
    }

    fn set_session(
        &self,
        id: s::SessionId,
        (modes, config_options, raw): Answered,
        how: &'static str,
    ) -> SessionState {
        let st = SessionState {
            id,
            modes,
            config_options: config_options.unwrap_or_default(),
            raw_models: super::choices::RawModels::of(&raw),
            how,
        };
        *lock(&self.session) = Some(st.clone());
        *lock(&self.shared.cost) = super::usage::CostSeen::opened(how == "new");
        st
    }

    pub(super) fn session(&self) -> Option<SessionState> {
        lock(&self.session).clone()
    }

    /// Stop the agent: end the connection (stdin EOF), SIGTERM the group, SIGKILL after a
    /// grace period. Terminals die with it.
    pub(super) async fn close(&self) {
        self.shared.terminals.clear();
        self.stop.cancel();
        self.group.signal(nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, self.dead.cancelled())
            .await
            .is_err()
        {
            self.group.signal(nix::sys::signal::Signal::SIGKILL);
        }
        // Children the agent left behind, in its group or out of it, go too.
        self.group.kill_all();
    }
}

type Stdio3 = (ChildStdin, ChildStdout, ChildStderr);

/// The agent process, in its own group in `root`, with its stdio captured.
fn spawn_agent(launch: &Launch, root: &Path) -> Result<(Child, GroupGuard, Stdio3), BackendError> {
    let Some((program, args)) = launch.command.split_first() else {
        return Err(BackendError::Misconfigured("empty agent command".into()));
    };
    let mut cmd = crate::backend::process::agent_command(program, root);
    cmd.args(args).envs(&launch.env).stdin(Stdio::piped());
    let (mut child, group) =
        crate::backend::process::spawn(&mut cmd).map_err(|source| BackendError::Spawn {
            program: program.clone(),
            source,
        })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(BackendError::internal(
            "could not start the agent",
            "its stdio was not captured",
        ));
    };
    Ok((child, group, (stdin, stdout, stderr)))
}

/// Reads the agent's stderr into `shared` and waits for its exit: the token fires once the
/// process is gone, and the slot then holds how it ended.
fn watch_exit(
    mut child: Child,
    stderr: ChildStderr,
    shared: Arc<Shared>,
) -> (CancellationToken, Arc<Mutex<Option<String>>>) {
    let stderr_done = tokio::spawn(async move {
        let offer = |ev| {
            shared.offer(ev);
            std::future::ready(())
        };
        read_stderr(stderr, &shared.stderr, &CancellationToken::new(), offer).await;
    });
    let dead = CancellationToken::new();
    let exit = Arc::new(Mutex::new(None));
    let (dead2, exit2) = (dead.clone(), exit.clone());
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(st) => describe(st),
            Err(e) => format!("an unknown status ({e})"),
        };
        // Let the reader take in the dying agent's last words before anyone quotes them; a
        // grandchild holding the pipe open must not delay the news for long.
        if tokio::time::timeout(STDERR_DRAIN, stderr_done)
            .await
            .is_err()
        {
            tracing::debug!("agent stderr still open after exit");
        }
        *lock(&exit2) = Some(status);
        dead2.cancel();
    });
    (dead, exit)
}

/// `initialize`, advertising exactly what we serve: fs (per provider) and terminals.
fn initialize_request(client_fs: bool) -> s::InitializeRequest {
    let caps = s::ClientCapabilities::new()
        .fs(s::FileSystemCapabilities::new()
            .read_text_file(client_fs)
            .write_text_file(client_fs))
        .terminal(true);
    s::InitializeRequest::new(ProtocolVersion::V1)
        .client_capabilities(caps)
        .client_info(s::Implementation::new(
            "boocoder",
            env!("CARGO_PKG_VERSION"),
        ))
}

/// Copies the agent's stdout to the JSON-RPC reader line by line, as valid UTF-8: the SDK's
/// line reader ends the whole connection on one invalid byte, so a stray byte would lose the
/// turn (and its final message). A damaged line is decoded lossily (inside a JSON string it
/// still parses; otherwise the SDK treats it as one malformed message and carries on), a
/// line over [`MESSAGE_CAP`] is dropped; either is reported in the transcript.
async fn clean_stdout(
    stdout: tokio::process::ChildStdout,
    mut to_sdk: tokio::io::DuplexStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut reported = false;
    loop {
        let read = tokio::select! {
            r = read_line_capped(&mut reader, MESSAGE_CAP, &mut line) => r,
            _ = stop.cancelled() => return,
        };
        let skipped = match read {
            Ok(Some(skipped)) => skipped,
            Ok(None) | Err(_) => return,
        };
        shared.activity.touch();
        if skipped > 0 {
            shared.notice(format!(
                "dropped a {} byte message from the agent (the limit is {MESSAGE_CAP})",
                line.len() + skipped
            ));
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        if matches!(text, std::borrow::Cow::Owned(_)) && !reported {
            reported = true;
            tracing::warn!("agent stdout carried bytes that are not UTF-8; replaced");
            shared.notice(
                "the agent wrote bytes that are not UTF-8 on stdout; they were replaced".into(),
            );
        }
        let mut text = text.into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let written = tokio::select! {
            w = to_sdk.write_all(text.as_bytes()) => w,
            _ = stop.cancelled() => return,
        };
        if written.is_err() {
            return;
        }
    }
}
