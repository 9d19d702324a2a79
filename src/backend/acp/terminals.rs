//! The client's `terminal/*` methods: real processes in the worktree, started from an
//! argument vector (never a shell string), each in its own process group, with output capped
//! at the requested byte limit (the oldest output is dropped, as ACP specifies). Every
//! terminal is killed when released, and all of them when the agent's session ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::backend::process::{GroupGuard, PIPE_DRAIN};
use crate::worktree::guard;

/// Output kept when the agent sets no limit; a runaway command cannot exhaust memory.
const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;
/// The most output kept whatever limit the agent asks for.
const MAX_OUTPUT_LIMIT: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum TerminalError {
    #[error("terminal cwd refused: {0}")]
    Cwd(#[from] guard::PathError),
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no terminal `{0}` (released or never created)")]
    Unknown(String),
}

/// How a terminal's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExitInfo {
    pub code: Option<u32>,
    pub signal: Option<String>,
}

#[derive(Debug, Default)]
struct OutBuf {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl OutBuf {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.limit {
            let mut cut = self.bytes.len() - self.limit;
            // Never start the kept output in the middle of a UTF-8 character.
            while cut < self.bytes.len() && (self.bytes[cut] & 0b1100_0000) == 0b1000_0000 {
                cut += 1;
            }
            self.bytes.drain(..cut);
            self.truncated = true;
        }
    }
}

struct Term {
    output: Arc<Mutex<OutBuf>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    /// Dropping the terminal kills its process group.
    group: GroupGuard,
}

/// The terminals of one agent connection.
pub(super) struct Terminals {
    root: Mutex<PathBuf>,
    map: Mutex<HashMap<String, Term>>,
    next: AtomicU64,
}

/// One request to start a command.
pub(super) struct Spawn<'a> {
    pub command: &'a str,
    pub args: &'a [String],
    pub env: Vec<(String, String)>,
    pub cwd: Option<&'a Path>,
    pub output_byte_limit: Option<u64>,
}

impl Terminals {
    pub(super) fn new(root: PathBuf) -> Terminals {
        Terminals {
            root: Mutex::new(root),
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Term>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn set_root(&self, root: PathBuf) {
        *super::state::lock(&self.root) = root;
    }

    pub(super) fn create(&self, req: Spawn<'_>) -> Result<String, TerminalError> {
        let root = super::state::lock(&self.root).clone();
        let cwd = match req.cwd {
            Some(c) => guard::resolve(&root, &c.to_string_lossy())?,
            None => root,
        };
        let mut cmd = crate::backend::process::agent_command(req.command, &cwd);
        cmd.args(req.args).envs(req.env).stdin(Stdio::null());
        let (mut child, group) =
            crate::backend::process::spawn(&mut cmd).map_err(|source| TerminalError::Spawn {
                program: req.command.to_string(),
                source,
            })?;
        let limit = req
            .output_byte_limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(DEFAULT_OUTPUT_LIMIT)
            .min(MAX_OUTPUT_LIMIT);
        let output = Arc::new(Mutex::new(OutBuf {
            limit,
            ..OutBuf::default()
        }));
        let readers = [
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(pump(s, output.clone()))),
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(pump(s, output.clone()))),
        ];
        let (tx, rx) = watch::channel(None);
        let pgid = child.id();
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(st) => exit_info(st),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for a terminal failed");
                    ExitInfo {
                        code: None,
                        signal: Some("unknown".into()),
                    }
                }
            };
            // The command is done; whatever it left in its group goes too, which also
            // closes the pipes so the readers finish. A child that escaped the group keeps
            // them open: its output is read for a bounded time only.
            GroupGuard::new(pgid).signal(nix::sys::signal::Signal::SIGKILL);
            for mut r in readers.into_iter().flatten() {
                match tokio::time::timeout(PIPE_DRAIN, &mut r).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "terminal reader ended abnormally"),
                    Err(_) => r.abort(),
                }
            }
            // why: no receiver left means the terminal was released; nobody needs the status.
            let _ = tx.send(Some(info));
        });
        let id = format!("term-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(
            id.clone(),
            Term {
                output,
                exit: rx,
                group,
            },
        );
        Ok(id)
    }

    /// Output so far, whether it was truncated, and the exit status once the command ended.
    pub(super) fn output(
        &self,
        id: &str,
    ) -> Result<(String, bool, Option<ExitInfo>), TerminalError> {
        let map = self.lock();
        let t = map
            .get(id)
            .ok_or_else(|| TerminalError::Unknown(id.into()))?;
        let out = match t.output.lock() {
            Ok(o) => (String::from_utf8_lossy(&o.bytes).into_owned(), o.truncated),
            Err(p) => {
                let o = p.into_inner();
                (String::from_utf8_lossy(&o.bytes).into_owned(), o.truncated)
            }
        };
        Ok((out.0, out.1, t.exit.borrow().clone()))
    }

    /// A future that resolves when the command exits (safe to await outside the lock).
    pub(super) fn waiter(
        &self,
        id: &str,
    ) -> Result<impl Future<Output = ExitInfo> + Send + 'static, TerminalError> {
        let mut rx = self
            .lock()
            .get(id)
            .map(|t| t.exit.clone())
            .ok_or_else(|| TerminalError::Unknown(id.into()))?;
        Ok(async move {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or(ExitInfo {
                    code: None,
                    signal: None,
                }),
                Err(_) => ExitInfo {
                    code: None,
                    signal: Some("SIGKILL".into()),
                },
            }
        })
    }

    /// Kill the command but keep the terminal (its output stays readable).
    pub(super) fn kill(&self, id: &str) -> Result<(), TerminalError> {
        let map = self.lock();
        let t = map
            .get(id)
            .ok_or_else(|| TerminalError::Unknown(id.into()))?;
        t.group.signal(nix::sys::signal::Signal::SIGKILL);
        Ok(())
    }

    /// Kill the command and forget the terminal.
    pub(super) fn release(&self, id: &str) -> Result<(), TerminalError> {
        self.lock()
            .remove(id)
            .map(drop)
            .ok_or_else(|| TerminalError::Unknown(id.into()))
    }

    /// Kill every terminal (the session ended).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}

async fn pump(mut stream: impl AsyncRead + Unpin, out: Arc<Mutex<OutBuf>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => match out.lock() {
                Ok(mut o) => o.push(&buf[..n]),
                Err(p) => p.into_inner().push(&buf[..n]),
            },
        }
    }
}

fn exit_info(st: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: st.code().and_then(|c| u32::try_from(c).ok()),
        signal: st.signal().map(|s| {
            nix::sys::signal::Signal::try_from(s)
                .map(|sig| sig.as_str().to_string())
                .unwrap_or_else(|_| s.to_string())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_limit_keeps_the_tail_on_a_char_boundary() {
        let mut o = OutBuf {
            limit: 4,
            ..OutBuf::default()
        };
        o.push("abé".as_bytes());
        assert!(!o.truncated);
        o.push(b"cd");
        assert!(o.truncated);
        assert!(o.bytes.len() <= 4);
        assert!(std::str::from_utf8(&o.bytes).is_ok());
    }

    #[tokio::test]
    async fn runs_in_root_with_args_and_reports_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canon");
        let terms = Terminals::new(root.clone());
        let args = vec![
            "-c".to_string(),
            "pwd; echo \"$1\"; exit 3".into(),
            "sh".into(),
            "a b; c".into(),
        ];
        let id = terms
            .create(Spawn {
                command: "sh",
                args: &args,
                env: vec![],
                cwd: None,
                output_byte_limit: None,
            })
            .expect("create");
        let exit = terms.waiter(&id).expect("waiter").await;
        assert_eq!(exit.code, Some(3));
        let (out, truncated, st) = terms.output(&id).expect("output");
        assert_eq!(out, format!("{}\na b; c\n", root.display()));
        assert!(!truncated);
        assert_eq!(st, Some(exit));
        terms.release(&id).expect("release");
        assert!(matches!(terms.output(&id), Err(TerminalError::Unknown(_))));
        let outside = Path::new("/");
        assert!(matches!(
            terms.create(Spawn {
                command: "true",
                args: &[],
                env: vec![],
                cwd: Some(outside),
                output_byte_limit: None
            }),
            Err(TerminalError::Cwd(_))
        ));
    }
}
