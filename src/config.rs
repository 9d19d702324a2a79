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
    /// Identifies this process in task rows (`node_id`).
    pub node_id: String,
    /// Safety-net poll of the queue; wake-ups normally come from an in-process notify.
    pub poll_interval: Duration,
    /// Warm ACP agents: idle TTL and the cap on live processes.
    pub acp_pool: crate::backend::acp::PoolConfig,
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
            node_id: default_node_id(),
            poll_interval: Duration::from_secs(2),
            acp_pool: Default::default(),
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

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}", std::process::id())
}
