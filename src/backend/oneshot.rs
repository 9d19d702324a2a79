//! One-shot agents without ACP (`claude -p`, `codex exec`, scripts): an argument vector run in
//! the worktree, the prompt on stdin or as one argument, output captured with caps.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::process::{KILL_GRACE, PIPE_DRAIN, StderrLog, describe, read_line_capped, read_stderr};
use super::{BackendError, EventSink, Turn, TurnEvent, TurnOutcome, emit};
use crate::domain::Usage;

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
    pub command: Vec<String>,
    pub prompt: PromptMode,
    /// Appended when a task names a model; `{model}` is replaced by the model id.
    pub model_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// Most stdout kept for the final message; more is dropped with a note.
const STDOUT_CAP: usize = 1 << 20;

pub struct OneShotBackend {
    spec: OneShotSpec,
}

impl OneShotBackend {
    pub fn new(spec: OneShotSpec) -> OneShotBackend {
        OneShotBackend { spec }
    }

    /// The command, the model arguments and (for [`PromptMode::Arg`]) the prompt. The task's
    /// model and mode were checked against this provider when it was submitted.
    fn argv(&self, turn: &Turn) -> Vec<String> {
        let mut argv = self.spec.command.clone();
        if let Some(model) = &turn.model {
            argv.extend(
                self.spec
                    .model_args
                    .iter()
                    .map(|a| a.replace("{model}", model)),
            );
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
        let argv = self.argv(&turn);
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
                events.clone(),
                stop.clone(),
            )),
            err: tokio::spawn(collect_stderr(child.stderr.take(), events, stop.clone())),
            stop,
        };

        let timeout = tokio::time::sleep(self.spec.timeout);
        let status = tokio::select! {
            s = child.wait() => s,
            _ = cancel.cancelled() => {
                group.terminate(&mut child, KILL_GRACE).await;
                readers.finish(&cancel).await;
                return Err(BackendError::Cancelled);
            }
            _ = timeout => {
                group.terminate(&mut child, KILL_GRACE).await;
                let (_, stderr) = readers.finish(&cancel).await;
                return Err(BackendError::Timeout {
                    secs: self.spec.timeout.as_secs(),
                    stderr_tail: stderr.quote(),
                });
            }
        };
        // The agent is gone; anything it left behind goes too, which also closes the pipes a
        // lingering grandchild holds open. One that escaped (no tag) only delays the end by
        // the drain bound.
        group.kill_all();
        let (stdout, stderr) = readers.finish(&cancel).await;
        if cancel.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        let status = status?;
        if !status.success() {
            return Err(BackendError::Exited {
                status: describe(status),
                stderr_tail: stderr.quote(),
            });
        }
        Ok(TurnOutcome {
            final_message: stdout.trim().to_string(),
            usage: Usage::default(),
        })
    }
}

/// The agent's stdout and stderr readers.
struct Readers {
    out: tokio::task::JoinHandle<String>,
    err: tokio::task::JoinHandle<StderrLog>,
    /// Tells the readers to return what they have.
    stop: CancellationToken,
}

impl Readers {
    /// What the readers got once the pipes close, or within [`PIPE_DRAIN`] (sooner on cancel):
    /// a detached child holding the pipes must not keep the turn, or its cancel, waiting.
    async fn finish(mut self, cancel: &CancellationToken) -> (String, StderrLog) {
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

/// Streams stdout lines as transcript text and returns the captured output (capped). Bytes
/// that are not UTF-8 are replaced, never a reason to stop reading: a reader that gives up
/// closes the pipe and the agent dies of SIGPIPE before its final message.
async fn read_stdout(
    stream: Option<impl AsyncRead + Unpin>,
    events: EventSink,
    stop: CancellationToken,
) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut out = String::new();
    let mut truncated = false;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let room = STDOUT_CAP.saturating_sub(out.len());
        let read = tokio::select! {
            r = read_line_capped(&mut reader, room.max(1), &mut line) => r,
            _ = stop.cancelled() => break,
        };
        match read {
            Ok(Some(skipped)) => {
                if skipped > 0 || room == 0 {
                    if !truncated {
                        truncated = true;
                        let note = format!("[stdout truncated at {STDOUT_CAP} bytes]");
                        emit(&events, TurnEvent::Notice(note)).await;
                    }
                    if room == 0 {
                        continue;
                    }
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                out.push_str(&text);
                emit(&events, TurnEvent::Text(text)).await;
            }
            Ok(None) => break,
            Err(e) => {
                let note = format!("stopped reading stdout: {e}");
                emit(&events, TurnEvent::Notice(note)).await;
                break;
            }
        }
    }
    out
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
mod tests {
    use super::*;

    fn spec(command: &[&str], prompt: PromptMode) -> OneShotSpec {
        OneShotSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            prompt,
            model_args: vec!["--model".into(), "{model}".into()],
            env: BTreeMap::new(),
            timeout: Duration::from_secs(30),
        }
    }

    fn turn(prompt: &str, model: Option<&str>) -> Turn {
        Turn {
            task_id: "t".into(),
            session_id: "s".into(),
            prompt: prompt.into(),
            cwd: std::env::temp_dir(),
            model: model.map(str::to_string),
            mode: None,
            permission: None,
            asker: None,
            options: Default::default(),
        }
    }

    #[test]
    fn prompt_is_one_argument_and_model_is_templated() {
        let b = OneShotBackend::new(spec(&["agent", "-p"], PromptMode::Arg));
        let argv = b.argv(&turn("fix it; rm -rf /", Some("m1")));
        assert_eq!(
            argv,
            vec!["agent", "-p", "--model", "m1", "fix it; rm -rf /"]
        );
    }

    #[tokio::test]
    async fn stdin_prompt_and_failure_quote_stderr() {
        let b = OneShotBackend::new(spec(
            &["sh", "-c", "read x; echo \"got $x\"; echo oops >&2; exit 3"],
            PromptMode::Stdin,
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let err = b
            .run(turn("hello", None), tx, CancellationToken::new())
            .await
            .expect_err("exit 3 is a failure");
        let msg = err.to_string();
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
        let mut texts = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            texts.push(ev);
        }
        assert!(
            texts.contains(&TurnEvent::Text("got hello\n".into())),
            "{texts:?}"
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let b = OneShotBackend::new(spec(&["sh", "-c", &script], PromptMode::Stdin));
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let pf = pidfile.clone();
        tokio::spawn(async move {
            // The shell creates the file before it writes the pid: wait for a whole line.
            while !std::fs::read_to_string(&pf).is_ok_and(|t| t.ends_with('\n')) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            c2.cancel();
        });
        let err = b
            .run(turn("x", None), tx, cancel)
            .await
            .expect_err("cancelled");
        assert!(matches!(err, BackendError::Cancelled));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("int");
        // The grandchild shared the agent's group, so it is dead (or a zombie awaiting init).
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("background child {pid} survived cancellation");
    }
}
