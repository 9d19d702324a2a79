//! Where a task's project may lie: inside the server's allowed roots (`--allow-root`,
//! canonical), widened for one request by the roots its client declared when that client is
//! as trusted as the flags — the local user who launched the server over stdio. A remote
//! client's roots only choose among the allowed roots: it must not widen what the server may
//! touch. The check runs when a new session's project is resolved and again before an apply or
//! rebase touches the checkout, each time with the roots of the client asking *then*: a
//! session created through one client's roots is not writable through another client (or the
//! CLI) that lacks them.

use std::path::{Path, PathBuf};

use super::requests::invalid;
use super::{Engine, EngineError, Result, blocking, canonical_dir};
use crate::worktree;

/// The roots the client of one request declared (MCP `roots/list`), as canonical directories.
/// `Default` is none: the CLI and clients without roots are allowed what the flags allow.
#[derive(Debug, Clone, Default)]
pub struct ClientRoots {
    /// In the client's order: a task naming no project runs in the first git repository.
    dirs: Vec<PathBuf>,
    /// Whether they count as allowed roots for this request.
    widen: bool,
}

impl ClientRoots {
    /// The roots of the client on stdio. It launched the server, so its roots are as trusted
    /// as the `--allow-root` flags it passed, and count as allowed roots for its connection
    /// (a root of `/` allows every project, as `--allow-root /` would).
    pub fn local(paths: Vec<PathBuf>) -> ClientRoots {
        ClientRoots::new(paths, true)
    }

    /// The roots of a remote client (HTTP): a task naming no project may run in one, but only
    /// inside the allowed roots.
    pub fn remote(paths: Vec<PathBuf>) -> ClientRoots {
        ClientRoots::new(paths, false)
    }

    /// Paths canonicalised as `--allow-root` is (symlinks resolved), so that they compare with
    /// canonical projects; relative paths and what is no directory are dropped.
    fn new(paths: Vec<PathBuf>, widen: bool) -> ClientRoots {
        let dirs = paths
            .into_iter()
            .filter(|p| p.is_absolute())
            .filter_map(|p| match p.canonicalize() {
                Ok(c) if c.is_dir() => Some(c),
                _ => {
                    tracing::debug!(root = %p.display(), "client root is no directory; ignored");
                    None
                }
            })
            .collect();
        ClientRoots { dirs, widen }
    }

    /// The roots that count as allowed roots for this request.
    fn granted(&self) -> &[PathBuf] {
        if self.widen { &self.dirs } else { &[] }
    }

    /// What to do about a project outside the allowed roots.
    fn advice(&self) -> &'static str {
        match (self.widen, self.dirs.is_empty()) {
            (true, _) => {
                "start the server with --allow-root, or add it to this client's roots, to permit it"
            }
            (false, false) => {
                "start the server with --allow-root to permit it (over HTTP a client's roots do not widen the allowed roots)"
            }
            (false, true) => "start the server with --allow-root to permit it",
        }
    }
}

/// The roots one request's project must lie in.
struct Allowed<'a> {
    server: &'a [PathBuf],
    client: &'a ClientRoots,
}

impl<'a> Allowed<'a> {
    fn new(engine: &'a Engine, client: &'a ClientRoots) -> Allowed<'a> {
        Allowed {
            server: &engine.inner.config.allowed_roots,
            client,
        }
    }

    /// Whether `path` (canonical) lies in one of the roots. A server with no roots at all
    /// sets no limit, and a client cannot turn that into one.
    fn contains(&self, path: &Path) -> bool {
        self.server.is_empty()
            || self
                .server
                .iter()
                .chain(self.client.granted())
                .any(|r| path.starts_with(r))
    }

    /// The roots, for an error message.
    fn describe(&self) -> String {
        let list = |roots: &[PathBuf]| {
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.client.granted() {
            [] => list(self.server),
            granted => format!(
                "{}; this client's roots: {}",
                list(self.server),
                list(granted)
            ),
        }
    }

    fn outside(&self, dir: &Path, work_tree: Option<&Path>) -> EngineError {
        let roots = self.describe();
        let what = match work_tree {
            None => format!("`{}` is outside the allowed roots ({roots})", dir.display()),
            Some(wt) => format!(
                "`{}` belongs to the git work tree `{}`, which is outside the allowed roots ({roots})",
                dir.display(),
                wt.display()
            ),
        };
        invalid("project", format!("{what}; {}", self.client.advice()))
    }
}

/// A project is a git repository with at least one commit, inside an allowed root. Both the
/// directory named and the work tree it resolves to are checked: `Repository::discover` walks
/// up from a plain subdirectory to a repository that may lie outside every root, and a git
/// directory's `core.worktree` can point anywhere, while `apply_pending` writes into that
/// work tree. The server's own `--project` is exempt: the operator named it.
pub(super) async fn allowed_project(
    engine: &Engine,
    raw: &str,
    client: &ClientRoots,
) -> Result<PathBuf> {
    let dir = canonical_dir("project", raw)?;
    let allowed = Allowed::new(engine, client);
    if !allowed.contains(&dir) {
        return Err(allowed.outside(&dir, None));
    }
    let asked = dir.clone();
    let root = blocking(move || worktree::project_root(&asked))
        .await
        .map_err(|e| invalid("project", e.to_string()))?;
    let named_by_operator = engine.inner.config.default_project.as_deref() == Some(dir.as_path());
    if !named_by_operator && !allowed.contains(&root) {
        return Err(allowed.outside(&dir, Some(&root)));
    }
    Ok(root)
}

/// The first of the client's roots that is an allowed git repository; else why each was
/// skipped (a root may be any directory, and a remote client must not widen the allowed
/// roots).
pub(super) async fn first_git_root(
    engine: &Engine,
    client: &ClientRoots,
) -> std::result::Result<PathBuf, Vec<String>> {
    let mut skipped = Vec::new();
    for r in &client.dirs {
        match allowed_project(engine, &r.to_string_lossy(), client).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                tracing::debug!(root = %r.display(), error = %e, "client root skipped");
                skipped.push(match e {
                    EngineError::Invalid { message, .. } => message,
                    other => format!("`{}`: {other}", r.display()),
                });
            }
        }
    }
    Err(skipped)
}

/// An apply or rebase touches the session's project checkout: refuse it when the project is
/// not inside the roots allowed to the client asking now (a session created under a wider
/// `--allow-root`, or through another client's roots).
pub(super) fn check_project_still_allowed(
    engine: &Engine,
    project: &Path,
    client: &ClientRoots,
) -> Result<()> {
    let named_by_operator = engine.inner.config.default_project.as_deref() == Some(project);
    let allowed = Allowed::new(engine, client);
    if named_by_operator || allowed.contains(project) {
        return Ok(());
    }
    Err(EngineError::State(format!(
        "the session's project `{}` is outside the allowed roots ({}); {}",
        project.display(),
        allowed.describe(),
        client.advice()
    )))
}
