//! One-shot agents without ACP (`claude -p`, `codex exec`, scripts): an argument vector run in
//! the worktree, the prompt on stdin or as one argument, output read line by line in the
//! provider's [`OutputFormat`] (`output.rs`; `claude.rs` and `codex.rs` for the JSON event
//! streams). An agent that names its conversation gets it back on the session's next turn
//! through the provider's `resume_args`, remembered in [`SessionMemory`] so it survives a
//! restart; an id the agent no longer knows makes the turn start afresh, said once.

mod claude;
mod codex;
mod output;

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::process::{KILL_GRACE, PIPE_DRAIN, StderrLog, describe, read_line_capped, read_stderr};
use super::{
    BackendError, EventSink, SessionMemory, Turn, TurnEvent, TurnOutcome, emit, stderr_suffix,
};
use crate::domain::Usage;
pub use output::OutputFormat;
use output::{Parsed, Parser};

/// How the prompt reaches a CLI agent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    /// Written to the agent's stdin, which is then closed.
    Stdin,
    /// Appended as the last argument (one argv element, never shell-split).
    Arg,
}

/// A resolved CLI launch spec.
#[derive(Debug, Clone)]
pub struct OneShotSpec {
    /// The provider's id: the key of the conversation remembered per session.
    pub provider_id: String,
    pub command: Vec<String>,
    pub prompt: PromptMode,
    /// Appended when a task names a model; `{model}` is replaced by the model id.
    pub model_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    pub output: OutputFormat,
    /// Appended (before the prompt) when the session has a conversation of this agent to
    /// continue; `{id}` is replaced by its id. Empty: every turn starts afresh.
    pub resume_args: Vec<String>,
}

/// What is remembered of a session's conversation with a CLI agent (as JSON, in the store's
/// per-session agent slot that ACP agents keep their session id in).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Remembered {
    /// The agent's conversation id (claude's `session_id`, codex's `thread_id`).
    cli_conversation: String,
    /// codex: the thread's token counts after the last turn (its reports are cumulative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    totals: Option<Usage>,
}

pub struct OneShotBackend {
    spec: OneShotSpec,
    /// Where conversations are remembered; `None` forgets them (each turn starts afresh).
    memory: Option<Arc<dyn SessionMemory>>,
}

/// How one run of the agent ended, with what it printed.
struct Run {
    end: End,
    parsed: Parsed,
    stderr: StderrLog,
}

enum End {
    Exited(std::io::Result<ExitStatus>),
    Cancelled,
    TimedOut,
}

impl OneShotBackend {
    pub fn new(spec: OneShotSpec, memory: Option<Arc<dyn SessionMemory>>) -> OneShotBackend {
        OneShotBackend { spec, memory }
    }

    /// The command, the model arguments, the resume arguments (when continuing a
    /// conversation) and (for [`PromptMode::Arg`]) the prompt. The task's model and mode were
    /// checked against this provider when it was submitted.
    fn argv(&self, turn: &Turn, resume: Option<&str>) -> Vec<String> {
        let mut argv = self.spec.command.clone();
        if let Some(model) = &turn.model {
            argv.extend(
                self.spec
                    .model_args
                    .iter()
                    .map(|a| a.replace("{model}", model)),
            );
        }
        if let Some(id) = resume {
            argv.extend(self.spec.resume_args.iter().map(|a| a.replace("{id}", id)));
        }
        if self.spec.prompt == PromptMode::Arg {
            argv.push(turn.prompt.clone());
        }
        argv
    }

    pub async fn run(
        &self,
        turn: Turn,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<TurnOutcome, BackendError> {
        let deadline = Instant::now() + self.spec.timeout;
        let earlier = self.recall(&turn.session_id).await;
        let resume = earlier.as_ref().map(|e| e.cli_conversation.as_str());
        let mut run = self
            .attempt(&turn, resume, &events, &cancel, deadline)
            .await?;
        if let Some(e) = &earlier
            && run.refused_resume()
        {
            let why = run
                .parsed
                .error
                .clone()
                .or_else(|| stderr_reason(&run.stderr.quote()))
                .unwrap_or_else(|| "it exited at once".into());
            let note = format!(
                "could not resume the agent's earlier conversation {} ({why}); this turn starts a new one, the worktree is unchanged",
                e.cli_conversation
            );
            emit(&events, TurnEvent::Notice(note)).await;
            run = self
                .attempt(&turn, None, &events, &cancel, deadline)
                .await?;
        }
        // The totals after the previous turn count only for the same conversation.
        let before = earlier
            .as_ref()
            .filter(|e| run.parsed.conversation.as_ref() == Some(&e.cli_conversation))
            .and_then(|e| e.totals);
        self.remember(&turn.session_id, earlier.as_ref(), &run.parsed, before)
            .await;
        let usage = match self.spec.output {
            OutputFormat::CodexJson => codex::turn_share(&run.parsed.usage, before.as_ref()),
            _ => run.parsed.usage,
        };
        if !usage.is_empty() {
            emit(&events, TurnEvent::Usage(usage)).await;
        }
        run.outcome(usage, &cancel, self.spec.timeout)
    }

    /// The conversation this session had with the agent, when it can be resumed.
    async fn recall(&self, session_id: &str) -> Option<Remembered> {
        let memory = self.memory.as_ref()?;
        if self.spec.resume_args.is_empty() || !self.spec.output.names_conversation() {
            return None;
        }
        match memory.acp_session(session_id, &self.spec.provider_id).await {
            // Anything else there (an ACP agent's session id) is not ours to resume.
            Ok(stored) => stored.and_then(|s| serde_json::from_str(&s).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the agent's stored conversation");
                None
            }
        }
    }

    /// Keep the conversation the run had (and codex's totals) for the session's next turn.
    async fn remember(
        &self,
        session_id: &str,
        earlier: Option<&Remembered>,
        parsed: &Parsed,
        before: Option<Usage>,
    ) {
        let (Some(memory), Some(id)) = (&self.memory, &parsed.conversation) else {
            return;
        };
        if self.spec.resume_args.is_empty() {
            return;
        }
        let totals = match self.spec.output {
            OutputFormat::CodexJson if !parsed.usage.is_empty() => Some(parsed.usage),
            OutputFormat::CodexJson => before,
            _ => None,
        };
        let now = Remembered {
            cli_conversation: id.clone(),
            totals,
        };
        if earlier == Some(&now) {
            return;
        }
        let Ok(text) = serde_json::to_string(&now) else {
            return;
        };
        if let Err(e) = memory
            .set_acp_session(session_id, &self.spec.provider_id, &text)
            .await
        {
            tracing::warn!(error = %e, "could not store the agent's conversation");
        }
    }

    /// Run the agent once: start it, feed the prompt, read its output until it ends.
    async fn attempt(
        &self,
        turn: &Turn,
        resume: Option<&str>,
        events: &EventSink,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Run, BackendError> {
        let argv = self.argv(turn, resume);
        let Some((program, args)) = argv.split_first() else {
            return Err(BackendError::Misconfigured("empty command".into()));
        };
        let mut cmd = super::process::agent_command(program, &turn.cwd);
        cmd.args(args)
            .envs(&self.spec.env)
            .env("BOOCODER_TASK_ID", &turn.task_id)
            .env("BOOCODER_SESSION_ID", &turn.session_id)
            .stdin(if self.spec.prompt == PromptMode::Stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let (mut child, group) =
            super::process::spawn(&mut cmd).map_err(|source| BackendError::Spawn {
                program: program.clone(),
                source,
            })?;

        // Stops writing when the turn ends, however it ends: a child that keeps the agent's
        // stdin open without reading it must not keep the writer alive.
        let _writer = child.stdin.take().map(|mut stdin| {
            let prompt = turn.prompt.clone();
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                // why: an agent that exits without reading its stdin closes the pipe; that is
                // its business, and its exit status tells the story.
                let _ = stdin.write_all(prompt.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }))
        });
        let stop = CancellationToken::new();
        let readers = Readers {
            out: tokio::spawn(read_stdout(
                child.stdout.take(),
                Parser::new(self.spec.output),
                events.clone(),
                stop.clone(),
            )),
            err: tokio::spawn(collect_stderr(
                child.stderr.take(),
                events.clone(),
                stop.clone(),
            )),
            stop,
        };

        let end = tokio::select! {
            s = child.wait() => End::Exited(s),
            _ = cancel.cancelled() => End::Cancelled,
            _ = tokio::time::sleep_until(deadline) => End::TimedOut,
        };
        match end {
            // The agent is gone; anything it left behind goes too, which also closes the
            // pipes a lingering grandchild holds open. One that escaped (no tag) only delays
            // the end by the drain bound.
            End::Exited(_) => group.kill_all(),
            End::Cancelled | End::TimedOut => group.terminate(&mut child, KILL_GRACE).await,
        }
        let (parsed, stderr) = readers.finish(cancel).await;
        Ok(Run {
            end,
            parsed,
            stderr,
        })
    }
}

impl Run {
    /// The agent failed before it started its conversation: the resumed id was unknown to it
    /// (claude: "No conversation found", codex: "no rollout found").
    fn refused_resume(&self) -> bool {
        matches!(&self.end, End::Exited(Ok(s)) if !s.success()) && !self.parsed.started
    }

    fn outcome(
        self,
        usage: Usage,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Result<TurnOutcome, BackendError> {
        let status = match self.end {
            End::Cancelled => return Err(BackendError::Cancelled),
            End::TimedOut => {
                return Err(BackendError::Timeout {
                    secs: timeout.as_secs(),
                    stderr_tail: self.stderr.quote(),
                });
            }
            End::Exited(status) => status,
        };
        if cancel.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        let status = status?;
        let tail = self.stderr.quote();
        match (&self.parsed.error, status.success(), self.parsed.failed) {
            (_, true, false) => Ok(TurnOutcome {
                final_message: self.parsed.final_message,
                usage,
            }),
            (Some(error), ok, _) => Err(BackendError::Agent(format!(
                "{error}{}{}",
                if ok {
                    String::new()
                } else {
                    format!(" ({})", describe(status))
                },
                stderr_suffix(&tail)
            ))),
            (None, _, _) => Err(BackendError::Exited {
                status: describe(status),
                stderr_tail: tail,
            }),
        }
    }
}

/// Why an agent refused to start, from its stderr: the first line naming an error (a
/// backtrace may follow it), else the last line.
fn stderr_reason(tail: &str) -> Option<String> {
    let lines = || tail.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines().next_back())
        .map(str::to_string)
}

/// The agent's stdout and stderr readers.
struct Readers {
    out: tokio::task::JoinHandle<Parsed>,
    err: tokio::task::JoinHandle<StderrLog>,
    /// Tells the readers to return what they have.
    stop: CancellationToken,
}

impl Readers {
    /// What the readers got once the pipes close, or within [`PIPE_DRAIN`] (sooner on cancel):
    /// a detached child holding the pipes must not keep the turn, or its cancel, waiting.
    async fn finish(mut self, cancel: &CancellationToken) -> (Parsed, StderrLog) {
        // Each handle is polled until it completes and never after (tokio panics on that).
        let (mut out, mut err) = (None, None);
        let drain = tokio::time::sleep(PIPE_DRAIN);
        tokio::pin!(drain);
        while out.is_none() || err.is_none() {
            tokio::select! {
                r = &mut self.out, if out.is_none() => out = Some(r),
                r = &mut self.err, if err.is_none() => err = Some(r),
                _ = &mut drain => break,
                _ = cancel.cancelled() => break,
            }
        }
        if out.is_none() || err.is_none() {
            tracing::debug!("agent output still open after it ended; reading stopped");
            self.stop.cancel();
        }
        let out = match out {
            Some(r) => r,
            None => self.out.await,
        };
        let err = match err {
            Some(r) => r,
            None => self.err.await,
        };
        (out.unwrap_or_default(), err.unwrap_or_default())
    }
}

/// Streams stdout through the format's parser into the transcript and returns what it made of
/// the output. Bytes that are not UTF-8 are replaced, never a reason to stop reading: a reader
/// that gives up closes the pipe and the agent dies of SIGPIPE before its final message.
async fn read_stdout(
    stream: Option<impl AsyncRead + Unpin>,
    mut parser: Parser,
    events: EventSink,
    stop: CancellationToken,
) -> Parsed {
    let Some(stream) = stream else {
        return parser.finish();
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let read = tokio::select! {
            r = read_line_capped(&mut reader, parser.line_cap(), &mut line) => r,
            _ = stop.cancelled() => break,
        };
        match read {
            Ok(Some(skipped)) => {
                for ev in parser.line(&line, skipped) {
                    emit(&events, ev).await;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let note = format!("stopped reading stdout: {e}");
                emit(&events, TurnEvent::Notice(note)).await;
                break;
            }
        }
    }
    parser.finish()
}

/// Streams stderr lines into the transcript and keeps its tail for error messages.
async fn collect_stderr(
    stream: Option<impl AsyncRead + Unpin>,
    events: EventSink,
    stop: CancellationToken,
) -> StderrLog {
    let log = StderrLog::default();
    if let Some(stream) = stream {
        read_stderr(stream, &log, &stop, |ev| emit(&events, ev)).await;
    }
    log
}

#[cfg(test)]
mod tests;
