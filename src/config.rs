//! Resolved server settings. `main` builds this once from flags and environment; everything
//! below receives it explicitly (no globals).

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the database, the session worktrees and the default providers file.
    pub data_dir: PathBuf,
    pub providers_file: PathBuf,
    /// The project used when a task names none.
    pub default_project: Option<PathBuf>,
    /// Projects must lie inside one of these (canonical) directories.
    pub allowed_roots: Vec<PathBuf>,
    /// Sessions running at once on this node.
    pub max_concurrent: usize,
    /// Provider used when a task names none.
    pub default_agent: Option<String>,
    /// Identifies this process in task rows (`node_id`); unique per process.
    pub node_id: String,
    /// Identifies this machine: a session's worktree lives on the host that created it.
    pub host: String,
    /// `postgres://…` to share one queue between nodes; `None` for the embedded SQLite file.
    pub database_url: Option<String>,
    /// A node that has not heartbeated for this long is dead; its running tasks are failed.
    pub lease: Duration,
    /// Listen for PostgreSQL notifications (wake-ups); polling works without them.
    pub listen: bool,
    /// Safety-net poll of the queue; wake-ups normally come from an in-process notify.
    pub poll_interval: Duration,
}

impl Config {
    /// Defaults rooted at `data_dir`; used by tests and as the base `main` fills in.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            providers_file: data_dir.join("providers.json"),
            data_dir,
            default_project: None,
            allowed_roots: Vec::new(),
            max_concurrent: 4,
            default_agent: None,
            node_id: format!("{}-{}", hostname(), std::process::id()),
            host: hostname(),
            database_url: None,
            lease: Duration::from_secs(30),
            listen: true,
            poll_interval: Duration::from_secs(2),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("boocoder.db")
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.data_dir.join("worktrees")
    }
}

/// `~/.local/share/boocoder` (XDG data dir), falling back to `./.boocoder` when the platform
/// reports no data directory.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("boocoder"))
        .unwrap_or_else(|| Path::new(".boocoder").to_path_buf())
}

fn hostname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        "localhost".into()
    } else {
        host
    }
}
