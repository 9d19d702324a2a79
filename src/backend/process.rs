//! Child processes for agents: each in its own process group so that cancel, timeout and
//! shutdown stop the agent *and* whatever it spawned (npm launchers, shells, test runners).

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;

use super::TurnEvent;

/// The environment variable that marks an agent (and everything it starts) with the boocoder
/// node that launched it, so a restarted node can find and stop what a killed one left behind.
pub const NODE_ENV: &str = "BOOCODER_NODE";

/// The environment variable that marks one agent (and everything it starts, including children
/// that left its process group with `setsid`) so that ending the agent can find them all.
pub const AGENT_ENV: &str = "BOOCODER_AGENT";

/// How long an exited agent's pipes may keep delivering output. A detached child can hold them
/// open forever; past this the readers stop and the turn ends with what they read.
pub const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Bytes kept of one line of agent output (a stderr line); the rest of the line is skipped and
/// counted, never buffered. Leaves room for the note about the cut within one 64 KiB
/// transcript entry.
pub const LINE_CAP: usize = (64 << 10) - 128;

/// Grace between SIGTERM and SIGKILL when an agent is stopped.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// Bytes of agent stderr kept for error messages.
const STDERR_TAIL: usize = 64 << 10;
/// Stderr bytes one turn's transcript takes; a runaway agent cannot flood the store.
const STDERR_EVENTS_BYTES: usize = 1 << 20;
/// Lines of stderr quoted when an agent fails.
const STDERR_QUOTE_LINES: usize = 20;

/// This process's node id, set once by the engine at start-up. A process-wide value on
/// purpose: it names the process itself, and every spawn site must use the same one.
static NODE_TAG: OnceLock<String> = OnceLock::new();

pub fn set_node_tag(node_id: &str) {
    // why: a second engine in the same process (tests) keeps the first tag; both are ours.
    let _ = NODE_TAG.set(node_id.to_string());
}

/// The one way agent-side processes (agents, their terminals) are started: in `cwd`, in a
/// process group of their own (so cancel and shutdown reach their children), tagged with this
/// node and with an agent tag of its own, stdout and stderr captured, killed if the handle is
/// dropped. Callers add arguments, environment and stdin, then start it with [`spawn`].
pub fn agent_command(program: &str, cwd: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    without_own_env(&mut cmd);
    if let Some(t) = NODE_TAG.get() {
        cmd.env(NODE_ENV, t);
    }
    cmd.env(AGENT_ENV, uuid::Uuid::new_v4().simple().to_string());
    // A git environment inherited from whoever started boocoder would point the agent's git
    // at another repository (the user's) instead of the session's own.
    for var in crate::worktree::GIT_REDIRECTS {
        cmd.env_remove(var);
    }
    cmd.current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Whether `name` is one of boocoder's own settings: `BOOCODER_*` (tokens, the database URL
/// with its password, the model API key) and `RUST_LOG`.
fn is_own_var(name: &str) -> bool {
    name == "RUST_LOG" || name.starts_with("BOOCODER_")
}

/// Keep boocoder's own variables out of a child's environment: an agent is code we run for
/// the caller, not a party to the server's secrets, and `RUST_LOG` would turn on the logging
/// of Rust-built agents. The variables boocoder sets for the agent itself (its tags, the task
/// id) and the provider entry's `env` are added after this.
pub fn without_own_env(cmd: &mut tokio::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_own_var) {
            cmd.env_remove(name);
        }
    }
}

/// Start a command made by [`agent_command`]; the guard stops its group and every process
/// carrying its agent tag.
pub fn spawn(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, GroupGuard)> {
    let tag = cmd
        .as_std()
        .get_envs()
        .find(|(k, _)| *k == AGENT_ENV)
        .and_then(|(_, v)| v)
        .map(|v| format!("{AGENT_ENV}={}", v.to_string_lossy()));
    let child = cmd.spawn()?;
    let mut group = GroupGuard::new(child.id());
    group.tag = tag;
    Ok((child, group))
}

/// Kill every process (and its process group) carrying `node_id`'s tag: the agents, terminals
/// and their children a killed boocoder could not stop (no parent-death signal without
/// `unsafe`). Reads `/proc/*/environ`, so it only sees this user's processes on this machine.
/// Returns how many processes were found.
pub fn kill_tagged(node_id: &str) -> usize {
    kill_env(&format!("{NODE_ENV}={node_id}"))
}

/// Kill every process whose environment holds `needle` (`KEY=value`), and its group.
fn kill_env(needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    let mut found = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            found += 1;
            let pid = Pid::from_raw(pid);
            if let Ok(pgid) = nix::unistd::getpgid(Some(pid))
                && pgid != nix::unistd::getpgrp()
            {
                // why: ESRCH means it exited meanwhile, which is what we want.
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
    found
}

/// Kills the whole process group when dropped, unless the group was already reaped, and every
/// process carrying the agent's tag (children that left the group).
/// Dropping is the backstop: every early return and panic in a run path still stops the agent.
pub struct GroupGuard {
    pgid: Option<i32>,
    /// `BOOCODER_AGENT=<id>` of the agent, when it was started by [`spawn`].
    tag: Option<String>,
}

impl GroupGuard {
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard {
            pgid: pid.and_then(|p| i32::try_from(p).ok()),
            tag: None,
        }
    }

    /// SIGKILL the group and every process carrying the agent's tag: what the agent left
    /// behind, including `setsid` children that hold its pipes open.
    pub fn kill_all(&self) {
        self.signal(Signal::SIGKILL);
        if let Some(tag) = &self.tag {
            let n = kill_env(tag);
            if n > 0 {
                tracing::debug!(processes = n, "killed processes the agent left behind");
            }
        }
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            // why: ESRCH (group already gone) is the normal race with a child that just exited.
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
    }

    /// SIGTERM, a grace period for the agent to exit, then SIGKILL.
    pub async fn terminate(&self, child: &mut tokio::process::Child, grace: Duration) {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            self.signal(Signal::SIGKILL);
            if let Err(e) = child.wait().await {
                tracing::warn!(error = %e, "waiting for a killed agent failed");
            }
        }
        // Children of the agent may outlive it, in the group or out of it.
        self.kill_all();
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Read one line of at most `cap` bytes into `line` (newline included when kept), in bounded
/// chunks: the rest of a longer line is skipped up to its newline, never buffered. Returns
/// how many bytes were skipped, or `None` at end of stream.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    line.clear();
    let mut skipped = 0;
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(skipped));
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let take = cap.saturating_sub(line.len()).min(chunk.len());
        line.extend_from_slice(&chunk[..take]);
        skipped += chunk.len() - take;
        let used = chunk.len();
        reader.consume(used);
        if done {
            return Ok(Some(skipped));
        }
    }
}

/// A line read by [`read_line_capped`] as text: invalid UTF-8 replaced, and a note saying how
/// much was cut.
pub fn capped_text(line: &[u8], skipped: usize) -> String {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if skipped > 0 {
        if text.ends_with('\n') {
            text.pop();
        }
        text.push_str(&format!(" [… {skipped} more bytes of this line dropped]\n"));
    }
    text
}

/// Keeps the last `max` bytes of a stream, for error messages that quote an agent's stderr.
#[derive(Debug, Default)]
pub struct Tail {
    buf: std::collections::VecDeque<u8>,
    max: usize,
}

impl Tail {
    pub fn new(max: usize) -> Tail {
        Tail {
            buf: Default::default(),
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        while self.buf.len() > self.max {
            self.buf.pop_front();
        }
    }

    /// The last `lines` lines, lossily decoded.
    pub fn last_lines(&self, lines: usize) -> String {
        let (a, b) = self.buf.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let start = all.len().saturating_sub(lines);
        all[start..].join("\n")
    }
}

/// An exit status as error messages spell it.
pub fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "an unknown status".into(),
    }
}

/// An agent's stderr as boocoder keeps it: the last lines, quoted when the agent fails, and
/// the running turn's share of the transcript (at most `STDERR_EVENTS_BYTES`).
#[derive(Debug)]
pub struct StderrLog {
    tail: Mutex<Tail>,
    /// Bytes the running turn's transcript took so far.
    sent: AtomicUsize,
    /// A line has started arriving and is not recorded yet (a long one takes a while).
    reading: AtomicBool,
}

impl Default for StderrLog {
    fn default() -> StderrLog {
        StderrLog {
            tail: Mutex::new(Tail::new(STDERR_TAIL)),
            sent: AtomicUsize::new(0),
            reading: AtomicBool::new(false),
        }
    }
}

impl StderrLog {
    /// A new turn gets a transcript budget of its own (a warm ACP agent serves many).
    pub fn new_turn(&self) {
        self.sent.store(0, Ordering::Relaxed);
    }

    /// Wait (at most `max`) for a line that has started arriving to be recorded, so what the
    /// agent wrote during a turn reaches that turn's transcript. Free when none is.
    pub async fn settled(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.reading.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last lines, for an error message.
    pub fn quote(&self) -> String {
        self.tail().last_lines(STDERR_QUOTE_LINES)
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        match self.tail.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Keep one line; returns what the transcript takes of it: the line while the turn's
    /// budget lasts, and a note once when it runs out.
    fn record(&self, text: String) -> Vec<TurnEvent> {
        self.tail().push(text.as_bytes());
        let len = text.len();
        let before = self.sent.fetch_add(len, Ordering::Relaxed);
        if before >= STDERR_EVENTS_BYTES {
            return Vec::new();
        }
        let mut out = vec![TurnEvent::Stderr(text)];
        if before + len >= STDERR_EVENTS_BYTES {
            out.push(TurnEvent::Notice(format!(
                "[stderr not recorded past {STDERR_EVENTS_BYTES} bytes this turn; the last lines are quoted if the agent fails]"
            )));
        }
        out
    }
}

/// Read an agent's stderr until it closes (or `stop` fires): every line, cut at [`LINE_CAP`]
/// and read in bounded chunks (one giant line costs no more memory than a short one), goes
/// into `log`, and what the transcript takes of it to `deliver`.
pub async fn read_stderr<F, Fut>(
    stream: impl AsyncRead + Unpin,
    log: &StderrLog,
    stop: &CancellationToken,
    mut deliver: F,
) where
    F: FnMut(TurnEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let arrived = tokio::select! {
            r = reader.fill_buf() => r.is_ok_and(|b| !b.is_empty()),
            _ = stop.cancelled() => false,
        };
        if !arrived {
            return;
        }
        log.reading.store(true, Ordering::SeqCst);
        let read = tokio::select! {
            r = read_line_capped(&mut reader, LINE_CAP, &mut line) => r,
            _ = stop.cancelled() => Ok(None),
        };
        let Ok(Some(skipped)) = read else {
            log.reading.store(false, Ordering::SeqCst);
            return;
        };
        for ev in log.record(capped_text(&line, skipped)) {
            deliver(ev).await;
        }
        log.reading.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_last_lines() {
        let mut t = Tail::new(16);
        t.push(b"first line\nsecond\nthird\n");
        assert_eq!(t.last_lines(2), "second\nthird");
        assert!(!t.last_lines(10).contains("first line"));
    }

    #[tokio::test]
    async fn long_lines_are_cut_without_buffering_them() {
        let mut input = format!("{}\nshort\n", "x".repeat(100)).into_bytes();
        input.extend_from_slice(b"\xff tail");
        let mut r = tokio::io::BufReader::with_capacity(8, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, 10, &mut line).await.expect("read"),
            Some(91)
        );
        assert_eq!(line, b"xxxxxxxxxx");
        assert!(capped_text(&line, 91).contains("91 more bytes"));
        assert_eq!(
            read_line_capped(&mut r, 10, &mut line).await.expect("read"),
            Some(0)
        );
        assert_eq!(line, b"short\n");
        assert_eq!(
            read_line_capped(&mut r, 10, &mut line).await.expect("read"),
            Some(0)
        );
        assert_eq!(capped_text(&line, 0), "\u{fffd} tail");
        assert_eq!(
            read_line_capped(&mut r, 10, &mut line).await.expect("read"),
            None
        );
    }
}
