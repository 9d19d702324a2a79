//! Child processes for agents: each in its own process group so that cancel, timeout and
//! shutdown stop the agent *and* whatever it spawned (npm launchers, shells, test runners).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The environment variable that marks an agent (and everything it starts) with the boocoder
/// node that launched it, so a restarted node can find and stop what a killed one left behind.
pub const NODE_ENV: &str = "BOOCODER_NODE";

/// This process's node id, set once by the engine at start-up. A process-wide value on
/// purpose: it names the process itself, and every spawn site must use the same one.
static NODE_TAG: OnceLock<String> = OnceLock::new();

pub fn set_node_tag(node_id: &str) {
    // why: a second engine in the same process (tests) keeps the first tag; both are ours.
    let _ = NODE_TAG.set(node_id.to_string());
}

/// The one way agent-side processes (agents, their terminals) are started: in `cwd`, in a
/// process group of their own (so cancel and shutdown reach their children), tagged with this
/// node, stdout and stderr captured, killed if the handle is dropped. Callers add arguments,
/// environment and stdin.
pub fn agent_command(program: &str, cwd: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    if let Some(t) = NODE_TAG.get() {
        cmd.env(NODE_ENV, t);
    }
    cmd.current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Kill every process (and its process group) carrying `node_id`'s tag: the agents, terminals
/// and their children a killed boocoder could not stop (no parent-death signal without
/// `unsafe`). Reads `/proc/*/environ`, so it only sees this user's processes on this machine.
/// Returns how many processes were found.
pub fn kill_tagged(node_id: &str) -> usize {
    let needle = format!("{NODE_ENV}={node_id}");
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

/// Kills the whole process group when dropped, unless the group was already reaped.
/// Dropping is the backstop: every early return and panic in a run path still stops the agent.
pub struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard {
            pgid: pid.and_then(|p| i32::try_from(p).ok()),
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
        // Children of the agent may outlive it in the group.
        self.signal(Signal::SIGKILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
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
}
