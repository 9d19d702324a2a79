//! The engine's provider operations: the snapshot (registry + probe results), background
//! probing with a per-probe timeout and a store cache, refresh on demand, and editing the
//! providers file. Probes never run on the start-up path: `start_probing` only marks providers
//! as probing and spawns the work, so `initialize`/`tools/list` are answered at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Engine, EngineError, Inner, Result};
use crate::domain::now_ms;
use crate::providers::file::{Edit, EntryPatch, FileError};
use crate::providers::probe::{self, NativeTarget};
use crate::providers::snapshot::{self, ProbeResult, ProviderInfo, ProvidersSnapshot};
use crate::providers::{self, Registry};

/// Probe state shared by the engine's clones.
pub(crate) struct ProviderState {
    results: Mutex<BTreeMap<String, ProbeResult>>,
    /// Ids whose probe is running; waiters watch it drain.
    probing: watch::Sender<BTreeSet<String>>,
    /// Serialises read-modify-write of the providers file, so concurrent edits all land.
    configure: tokio::sync::Mutex<()>,
}

impl Default for ProviderState {
    fn default() -> Self {
        ProviderState {
            results: Mutex::new(BTreeMap::new()),
            probing: watch::Sender::new(BTreeSet::new()),
            configure: tokio::sync::Mutex::new(()),
        }
    }
}

/// A `configure_provider` request: patch the entry `id`, or remove it from the file.
#[derive(Debug, Clone, Default)]
pub struct ConfigureProvider {
    pub id: String,
    pub patch: EntryPatch,
    pub remove: bool,
    /// How long to wait for the provider's new probe before answering.
    pub wait: Duration,
}

/// What `configure_provider` did.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Configured {
    /// The entry as it is now (absent when a custom entry was removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderInfo>,
    pub providers_file: String,
    /// Problems that remain in the providers file (other entries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// Removes ids from the probing set when dropped, so a cancelled probe never leaves a
/// provider `probing` forever.
struct Probing {
    inner: Arc<Inner>,
    ids: Vec<String>,
}

impl Drop for Probing {
    fn drop(&mut self) {
        self.inner.providers.probing.send_modify(|set| {
            for id in &self.ids {
                set.remove(id);
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Engine {
    /// The snapshot, after waiting up to `wait` for running probes, so a client's first call
    /// right after start-up sees results rather than a wall of `probing`.
    pub async fn providers(&self, wait: Duration) -> ProvidersSnapshot {
        self.inner.wait_probes(None, wait).await;
        self.inner.snapshot()
    }

    /// Re-read the providers file and probe `ids` (all enabled providers when empty) again,
    /// ignoring cached results; waits up to `wait` for them.
    pub async fn refresh_providers(
        &self,
        ids: Vec<String>,
        wait: Duration,
    ) -> Result<ProvidersSnapshot> {
        self.inner.reload_registry();
        let registry = self.registry();
        for id in &ids {
            known_provider(&registry, "ids", id)?;
        }
        let ids = if ids.is_empty() {
            registry.all().map(|p| p.id.clone()).collect()
        } else {
            ids
        };
        self.inner.spawn_probes(ids.clone());
        self.inner.wait_probes(Some(&ids), wait).await;
        Ok(self.inner.snapshot())
    }

    /// Edit the providers file entry (field-level merge, atomic write), reload the registry and
    /// probe the changed provider.
    pub async fn configure_provider(&self, req: ConfigureProvider) -> Result<Configured> {
        let id = req.id.trim().to_string();
        if id.is_empty() {
            return Err(EngineError::Invalid {
                field: "id",
                message: "must not be empty".into(),
            });
        }
        if !req.remove && req.patch.is_empty() {
            return Err(EngineError::Invalid {
                field: "id",
                message: "nothing to change: give `enabled` or another field, or `remove: true`"
                    .into(),
            });
        }
        {
            let _serial = self.inner.providers.configure.lock().await;
            let edit = if req.remove {
                Edit::Remove
            } else {
                Edit::Patch(&req.patch)
            };
            providers::configure(&self.inner.config.providers_file, &id, edit).map_err(
                |e| match e {
                    FileError::Invalid { field, message } => {
                        EngineError::Invalid { field, message }
                    }
                    other => EngineError::State(other.to_string()),
                },
            )?;
            self.inner.reload_registry();
        }
        tracing::info!(provider = %id, remove = req.remove, "providers file updated");
        let ids = vec![id.clone()];
        self.inner.spawn_stale(&ids);
        self.inner.wait_probes(Some(&ids), req.wait).await;
        let snap = self.inner.snapshot();
        Ok(Configured {
            provider: snap.providers.into_iter().find(|p| p.id == id),
            providers_file: snap.providers_file,
            diagnostics: snap.diagnostics,
        })
    }

    /// Plain-text diagnostics: the providers file's problems and, for `id`, its entry, last
    /// probe and the probe's full log.
    pub async fn provider_diagnostic(&self, id: Option<&str>, wait: Duration) -> Result<String> {
        let registry = self.registry();
        if let Some(id) = id {
            known_provider(&registry, "id", id)?;
        }
        let ids = id.map(|i| vec![i.to_string()]);
        self.inner.wait_probes(ids.as_deref(), wait).await;
        let snap = self.inner.snapshot();
        let results = lock(&self.inner.providers.results).clone();
        Ok(snapshot::report(&registry, &snap, id, &results))
    }

    /// For the CLI: load the cache and probe what is stale (everything with `refresh`), in
    /// this call.
    pub async fn probe_providers_now(&self, refresh: bool) -> ProvidersSnapshot {
        self.inner.load_cache().await;
        let registry = self.registry();
        let ids: Vec<String> = if refresh {
            registry.all().map(|p| p.id.clone()).collect()
        } else {
            self.inner.stale(&registry)
        };
        self.inner.spawn_probes(ids.clone());
        self.inner
            .wait_probes(Some(&ids), self.inner.config.probe_timeout * 2)
            .await;
        self.inner.snapshot()
    }

    /// The current probe of a ready provider, for validating a task's model and mode.
    pub(crate) fn probe_of(&self, id: &str) -> Option<ProbeResult> {
        let registry = self.registry();
        let p = registry.get(id)?;
        let results = lock(&self.inner.providers.results);
        let native = providers::native_fingerprint(&self.inner.config);
        snapshot::current(p, &results, &native)
            .filter(|r| r.status == snapshot::Status::Ready)
            .cloned()
    }

    /// Read the cached probes (one query, so a restart shows the last snapshot at once), then
    /// probe what is missing or older than the TTL in the background, concurrently.
    pub(super) async fn start_probing(&self) {
        self.inner.load_cache().await;
        let stale = self.inner.stale(&self.registry());
        self.inner.spawn_probes(stale);
    }
}

impl Inner {
    pub(super) fn load_registry(
        config: &crate::config::Config,
        backends: &crate::backend::BackendShared,
    ) -> Registry {
        let mut registry = Registry::load(&config.providers_file);
        registry.native_ready = match (&backends.native, &backends.native_error) {
            (Some(_), _) if backends.native_endpoint => Ok(()),
            (_, e) => Err(e.clone()),
        };
        registry
    }

    fn reload_registry(&self) {
        let fresh = Arc::new(Inner::load_registry(&self.config, &self.backends));
        match self.registry.write() {
            Ok(mut r) => *r = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        // an edited entry's parked agent is replaced by one with the new launch
        self.prestart_agents();
    }

    /// Keep one agent of each `--prestart` provider started ahead of need.
    pub(super) fn prestart_agents(&self) {
        let registry = self.registry();
        let dir = self.config.data_dir.join("prestart");
        for id in &self.config.prestart {
            let id = match (id.as_str(), &self.config.default_agent) {
                ("default", Some(d)) => d.as_str(),
                ("default", None) => continue,
                (id, _) => id,
            };
            match registry.backend(id, &self.backends) {
                Ok(crate::backend::Backend::Acp(agent)) => agent.prestart(&dir),
                Ok(_) => tracing::warn!(
                    provider = id,
                    "--prestart: only ACP agents are pre-started; ignored"
                ),
                Err(e) => tracing::warn!(provider = id, error = %e, "--prestart: not pre-started"),
            }
        }
    }

    fn snapshot(&self) -> ProvidersSnapshot {
        let registry = self.registry();
        let results = lock(&self.providers.results);
        let probing = self.providers.probing.borrow();
        let native = providers::native_fingerprint(&self.config);
        snapshot::compose(&registry, &results, &probing, &native)
    }

    /// Enabled providers without a current result younger than the TTL.
    fn stale(&self, registry: &Registry) -> Vec<String> {
        let results = lock(&self.providers.results);
        let native = providers::native_fingerprint(&self.config);
        let oldest = now_ms() - self.config.probe_ttl.as_millis() as i64;
        registry
            .all()
            .filter(|p| p.enabled)
            .filter(|p| {
                snapshot::current(p, &results, &native).is_none_or(|r| r.probed_at < oldest)
            })
            .map(|p| p.id.clone())
            .collect()
    }

    /// Read this host's cached probes into memory (newer in-memory results win).
    async fn load_cache(&self) {
        let rows = match self.store.provider_probes(&self.config.host).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read cached provider probes; probing afresh");
                return;
            }
        };
        let mut results = lock(&self.providers.results);
        for (id, json, _) in rows {
            match serde_json::from_str::<ProbeResult>(&json) {
                Ok(r) => {
                    let newer = results.get(&id).is_none_or(|m| m.probed_at < r.probed_at);
                    if newer {
                        results.insert(id, r);
                    }
                }
                Err(e) => {
                    tracing::warn!(provider = %id, error = %e, "ignoring a corrupt cached probe")
                }
            }
        }
    }

    /// Add `ids` to the probing set; the guard takes them out again.
    fn mark(self: &Arc<Self>, ids: &[String]) -> Probing {
        self.providers.probing.send_modify(|set| {
            set.extend(ids.iter().cloned());
        });
        Probing {
            inner: self.clone(),
            ids: ids.to_vec(),
        }
    }

    /// Probe the enabled ones of `ids` in the background (those already probing are left to
    /// their running probe).
    fn spawn_probes(self: &Arc<Self>, ids: Vec<String>) {
        let registry = self.registry();
        let busy = self.providers.probing.borrow().clone();
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| !busy.contains(id) && registry.get(id).is_some_and(|p| p.enabled))
            .collect();
        if ids.is_empty() {
            return;
        }
        let guard = self.mark(&ids);
        let inner = self.clone();
        self.tracker.spawn(async move {
            inner.run_probes(ids).await;
            drop(guard);
        });
    }

    /// Like `spawn_probes`, only for those of `ids` without a current result.
    fn spawn_stale(self: &Arc<Self>, ids: &[String]) {
        let registry = self.registry();
        let results = lock(&self.providers.results);
        let native = providers::native_fingerprint(&self.config);
        let stale: Vec<String> = ids
            .iter()
            .filter(|id| {
                registry
                    .get(id)
                    .is_some_and(|p| snapshot::current(p, &results, &native).is_none())
            })
            .cloned()
            .collect();
        drop(results);
        self.spawn_probes(stale);
    }

    /// Probe `ids` concurrently, each within the probe timeout; store every result as it
    /// lands. Stops early (results dropped) when the server shuts down.
    async fn run_probes(self: &Arc<Self>, ids: Vec<String>) {
        let registry = self.registry();
        let native_fp = providers::native_fingerprint(&self.config);
        let target = NativeTarget {
            settings: self.config.llm.as_ref(),
            error: self.backends.native_error.as_deref(),
        };
        let probes = ids.iter().filter_map(|id| registry.get(id)).map(|p| {
            let (target, native_fp) = (&target, &native_fp);
            async move {
                let scratch = self.config.data_dir.join("probes").join(&p.id);
                let fp = snapshot::fingerprint(p, native_fp);
                let r = probe::run(p, target, &scratch, self.config.probe_timeout, fp).await;
                tracing::info!(provider = %p.id, status = r.status.as_str(), ms = r.duration_ms, "provider probed");
                self.save(&p.id, r).await;
            }
        });
        tokio::select! {
            _ = futures::future::join_all(probes) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    async fn save(&self, id: &str, r: ProbeResult) {
        match serde_json::to_string(&r) {
            Ok(json) => {
                if let Err(e) = self
                    .store
                    .save_provider_probe(&self.config.host, id, &json, r.probed_at)
                    .await
                {
                    tracing::warn!(provider = %id, error = %e, "cannot cache a provider probe");
                }
            }
            Err(e) => tracing::warn!(provider = %id, error = %e, "cannot encode a provider probe"),
        }
        lock(&self.providers.results).insert(id.to_string(), r);
        self.providers.probing.send_modify(|set| {
            set.remove(id);
        });
    }

    /// Wait until none of `ids` (any id when `None`) is probing, or `wait` passes.
    async fn wait_probes(&self, ids: Option<&[String]>, wait: Duration) {
        let mut rx = self.providers.probing.subscribe();
        let done = |set: &BTreeSet<String>| match ids {
            None => set.is_empty(),
            Some(ids) => ids.iter().all(|id| !set.contains(id)),
        };
        // why: a timeout just means we answer with what is known, `probing` included.
        let _ = tokio::time::timeout(wait, rx.wait_for(done)).await;
    }
}

/// `id` names a provider of `registry`; else an error on `field` listing the known ones.
fn known_provider(registry: &Registry, field: &'static str, id: &str) -> Result<()> {
    if registry.get(id).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = registry.all().map(|p| p.id.as_str()).collect();
    Err(EngineError::Invalid {
        field,
        message: format!("unknown provider `{id}`; known: {}", known.join(", ")),
    })
}
