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
    /// A session idle this long with nothing unapplied is closed and its worktree removed.
    pub session_ttl: Duration,
    /// How often idle sessions are closed and leaked worktrees reaped (at most half the TTL).
    pub reap_interval: Duration,
    /// Safety-net poll of the queue; wake-ups normally come from an in-process notify.
    pub poll_interval: Duration,
    /// The OpenAI-compatible endpoint of the `native` provider; `None` when not configured.
    pub llm: Option<LlmConfig>,
    /// Limits of native turns (they apply whichever endpoint serves them).
    pub native: NativeLimits,
    /// Warm ACP agents: idle TTL and the cap on live processes.
    pub acp_pool: crate::backend::acp::PoolConfig,
    /// Longest one provider probe may take (a hanging agent becomes `error`).
    pub probe_timeout: Duration,
    /// How long a cached probe result stays fresh before start-up probes again.
    pub probe_ttl: Duration,
    /// Spare worktrees kept ready per recently used project (0: no pool).
    pub pool_size: usize,
    /// A project no session used for this long loses its spares.
    pub pool_ttl: Duration,
    /// Read a repository's committed `.boocoder/project.json` (its setup command is code from
    /// whoever can push); otherwise only projects whose server entry trusts it.
    pub trust_repo_setup: bool,
    /// Applied to tasks that set no budget of their own.
    pub task_budget: crate::domain::Budget,
    /// ACP providers kept with one agent started and initialized ahead of need, so a new
    /// session's first turn only opens its session (`default`: the default agent).
    pub prestart: Vec<String>,
}

/// Where the native loop sends its requests. The API key is secret: `Debug` redacts it.
#[derive(Clone)]
pub struct LlmConfig {
    /// Up to and including the API version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Model used when a task names none.
    pub model: Option<String>,
    /// Longest silence on a response stream before the request fails.
    pub timeout: Duration,
    /// `max_tokens` per request; `None` leaves it to the server.
    pub max_output_tokens: Option<u32>,
    /// Retries of a request after 429, 5xx or a network failure.
    pub retries: u32,
    /// First retry delay; doubled per attempt.
    pub retry_base: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("retries", &self.retries)
            .finish()
    }
}

impl LlmConfig {
    pub fn new(base_url: String) -> LlmConfig {
        LlmConfig {
            base_url,
            api_key: None,
            model: None,
            timeout: Duration::from_secs(300),
            max_output_tokens: None,
            retries: 4,
            retry_base: Duration::from_millis(500),
        }
    }
}

/// Guards of the native loop.
#[derive(Debug, Clone)]
pub struct NativeLimits {
    /// Model rounds per turn before the task fails.
    pub max_rounds: u32,
    /// Tokens (prompt + completion) one task may spend; `None` for no limit.
    pub max_tokens_total: Option<u64>,
    /// Estimated tokens of conversation sent per request.
    pub context_tokens: usize,
    /// Longest wait for one MCP sampling answer (used when no endpoint is configured).
    pub sampling_timeout: Duration,
}

impl Default for NativeLimits {
    fn default() -> NativeLimits {
        NativeLimits {
            max_rounds: 50,
            max_tokens_total: None,
            context_tokens: 32_000,
            sampling_timeout: Duration::from_secs(300),
        }
    }
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
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            reap_interval: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
            llm: None,
            native: NativeLimits::default(),
            acp_pool: Default::default(),
            probe_timeout: Duration::from_secs(15),
            probe_ttl: Duration::from_secs(24 * 3600),
            pool_size: 0,
            pool_ttl: Duration::from_secs(3600),
            trust_repo_setup: false,
            task_budget: Default::default(),
            prestart: Vec::new(),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("boocoder.db")
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.data_dir.join("worktrees")
    }

    /// Spare worktrees, one directory per project.
    pub fn pool_dir(&self) -> PathBuf {
        self.data_dir.join("pool")
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

/// Write `bytes` to a temp file in the same directory, flush it to disk, then rename it over
/// `path`: a reader sees the old file or the new one, never half of one. The old file's mode
/// is kept (a settings file may hold secrets and be 0600).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "settings".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err()
        && let Err(e) = std::fs::remove_file(&tmp)
    {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove a temp file");
    }
    written
}
