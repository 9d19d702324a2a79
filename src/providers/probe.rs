//! Probing one provider, in two tiers: presence (the program on PATH or at its configured path)
//! and `--version` with a timeout; then for ACP agents the real `initialize` + `session/new`
//! handshake in a scratch directory, and for the native loop the endpoint's model list. Each
//! probe is bounded by one deadline and records every step in its log.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::snapshot::{ProbeResult, Status};
use super::{Provider, Transport, find_program};
use crate::backend::native::client::{LlmError, list_models};
use crate::config::LlmConfig;
use crate::domain::now_ms;

/// `--version` gets at most this much of the probe's budget: a version flag that takes longer
/// is hanging, not thinking.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest version string kept; some tools print a banner.
const MAX_VERSION_CHARS: usize = 120;

/// How a native provider is reached, as far as the probe needs to know.
pub struct NativeTarget<'a> {
    pub settings: Option<&'a LlmConfig>,
    /// Why the native loop cannot start at all (its HTTP client failed to build).
    pub error: Option<&'a str>,
}

/// Probe `p` within `timeout`. `scratch` is a directory the ACP handshake may use (created and
/// emptied here). Never fails: every outcome is a status with a diagnostic.
pub async fn run(
    p: &Provider,
    native: &NativeTarget<'_>,
    scratch: &Path,
    timeout: Duration,
    fingerprint: String,
) -> ProbeResult {
    let started = Instant::now();
    let mut r = ProbeResult {
        fingerprint,
        ..ProbeResult::default()
    };
    let outcome = tokio::time::timeout(timeout, async {
        match p.transport {
            Transport::Native => probe_native(native, timeout, &mut r).await,
            Transport::Cli | Transport::Acp => probe_program(p, scratch, timeout, &mut r).await,
        }
    })
    .await;
    if outcome.is_err() {
        r.status = Status::Error;
        r.diagnostic = format!(
            "the probe did not finish within {} s (last step: {})",
            timeout.as_secs_f32(),
            r.log.last().map(String::as_str).unwrap_or("start")
        );
        r.log.push(r.diagnostic.clone());
    }
    r.probed_at = now_ms();
    r.duration_ms = started.elapsed().as_millis() as u64;
    r
}

async fn probe_native(native: &NativeTarget<'_>, timeout: Duration, r: &mut ProbeResult) {
    if let Some(e) = native.error {
        r.status = Status::Error;
        r.diagnostic = format!("the native loop cannot start: {e}");
        r.log.push(r.diagnostic.clone());
        return;
    }
    let Some(settings) = native.settings else {
        r.status = Status::NotInstalled;
        r.diagnostic = "no model endpoint configured (start boocoder with --llm-base-url); tasks can still run through an MCP client that offers sampling".into();
        r.log.push(r.diagnostic.clone());
        return;
    };
    r.default_model = settings.model.clone();
    r.log.push(format!(
        "GET {}/models",
        settings.base_url.trim_end_matches('/')
    ));
    let http = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(h) => h,
        Err(e) => {
            r.status = Status::Error;
            r.diagnostic = format!("cannot build an HTTP client: {e}");
            return;
        }
    };
    match list_models(&http, settings).await {
        Ok(models) => {
            r.log
                .push(format!("{} model(s): {}", models.len(), models.join(", ")));
            r.status = Status::Ready;
            r.diagnostic = format!(
                "endpoint {} serves {} model(s)",
                settings.base_url,
                models.len()
            );
            r.models = models;
        }
        Err(
            e @ LlmError::Status {
                status: 401 | 403, ..
            },
        ) => {
            r.status = Status::NeedsAuth;
            r.auth_required = true;
            r.diagnostic = format!("{e} (check --llm-api-key)");
            r.log.push(e.to_string());
        }
        Err(e) => {
            r.status = Status::Error;
            r.diagnostic = e.to_string();
            r.log.push(e.to_string());
        }
    }
}

async fn probe_program(p: &Provider, scratch: &Path, timeout: Duration, r: &mut ProbeResult) {
    let Some(program) = p.command.first() else {
        r.status = Status::Error;
        r.diagnostic = "empty command".into();
        return;
    };
    let Some(path) = find_program(program) else {
        r.status = Status::NotInstalled;
        r.diagnostic = if program.contains('/') {
            format!("`{program}` does not exist or is not executable")
        } else {
            format!("`{program}` not found on PATH")
        };
        r.log.push(r.diagnostic.clone());
        return;
    };
    r.log.push(format!("found {}", path.display()));
    // Half the budget at most, so a hanging `--version` is reported as such.
    match version(&path, &p.env, (timeout / 2).min(VERSION_TIMEOUT), r).await {
        Ok(v) => r.version = v,
        // An ACP agent's handshake is the real test, and its `initialize` names the version: a
        // slow `--version` does not decide (gemini-cli 0.61.0 took over 5 s on a busy machine).
        Err(_) if p.transport == Transport::Acp => {
            r.log
                .push("the ACP handshake decides (and names the version)".into());
        }
        Err(diagnostic) => {
            r.status = Status::Error;
            r.diagnostic = diagnostic;
            return;
        }
    }
    if p.transport == Transport::Cli {
        r.status = Status::Ready;
        r.diagnostic = format!("installed at {}", path.display());
        return;
    }
    handshake(p, scratch, r).await;
}

/// `program --version` with stdin closed, killed (its whole process group) when it overruns.
/// `Ok(None)` when it ran but printed no usable version; `Err` when it hung.
async fn version(
    path: &Path,
    env: &std::collections::BTreeMap<String, String>,
    limit: Duration,
    r: &mut ProbeResult,
) -> Result<Option<String>, String> {
    let mut cmd = tokio::process::Command::new(path);
    crate::backend::process::without_own_env(&mut cmd);
    cmd.arg("--version")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            r.log.push(format!(
                "`{} --version` could not start: {e}",
                path.display()
            ));
            return Ok(None);
        }
    };
    let pid = child.id();
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            })
            .into_owned();
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            r.log.push(format!(
                "`--version` exited with {}: {}",
                out.status,
                first.unwrap_or("(no output)")
            ));
            Ok(first
                .filter(|_| out.status.success())
                .map(|l| l.chars().take(MAX_VERSION_CHARS).collect()))
        }
        Ok(Err(e)) => {
            r.log.push(format!("`--version` failed: {e}"));
            Ok(None)
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // why: the group may already be gone; there is nothing else to do either way.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let msg = format!(
                "`{} --version` did not finish within {} s (killed)",
                path.display(),
                limit.as_secs_f32()
            );
            r.log.push(msg.clone());
            Err(msg)
        }
    }
}

/// The ACP handshake in a fresh scratch directory.
async fn handshake(p: &Provider, scratch: &Path, r: &mut ProbeResult) {
    if scratch.exists()
        && let Err(e) = std::fs::remove_dir_all(scratch)
    {
        r.log
            .push(format!("could not empty {}: {e}", scratch.display()));
    }
    if let Err(e) = std::fs::create_dir_all(scratch) {
        r.status = Status::Error;
        r.diagnostic = format!(
            "cannot create the scratch directory {}: {e}",
            scratch.display()
        );
        return;
    }
    r.log.push(format!(
        "ACP initialize + session/new in {}",
        scratch.display()
    ));
    match crate::backend::acp::probe(&p.command, &p.env, p.client_fs, scratch).await {
        Ok(rep) => {
            r.log.push(format!(
                "agent {} {} (protocol {}); initialize {} ms, session/new {} ms",
                rep.agent_name.as_deref().unwrap_or("?"),
                rep.agent_version.as_deref().unwrap_or("?"),
                rep.protocol_version,
                rep.initialize_ms,
                rep.session_new_ms
            ));
            if rep.agent_version.is_some() {
                r.version = rep.agent_version.clone();
            }
            r.auth_methods = rep.auth_methods;
            r.models = rep.models;
            r.default_model = rep.current_model;
            r.modes = rep.modes;
            r.options = rep.options;
            r.default_mode = rep.current_mode;
            r.commands = rep.commands;
            match rep.session_error {
                None => {
                    r.status = Status::Ready;
                    r.diagnostic = format!(
                        "ACP handshake ok ({} mode(s), {} model(s))",
                        r.modes.len(),
                        r.models.len()
                    );
                }
                Some(e) => {
                    r.log.push(format!("session/new failed: {e}"));
                    if !r.auth_methods.is_empty() || e.to_lowercase().contains("auth") {
                        r.status = Status::NeedsAuth;
                        r.auth_required = true;
                        r.diagnostic = format!(
                            "the agent needs a login before it opens sessions (auth methods: {}); run `{}` once and sign in",
                            if r.auth_methods.is_empty() {
                                "unknown".into()
                            } else {
                                r.auth_methods.join(", ")
                            },
                            p.command.join(" ")
                        );
                    } else {
                        r.status = Status::Error;
                        r.diagnostic = format!("session/new failed: {e}");
                    }
                }
            }
        }
        Err(e) => {
            r.status = Status::Error;
            r.diagnostic = format!("ACP handshake failed: {e}");
            r.log.push(r.diagnostic.clone());
        }
    }
    if let Err(e) = std::fs::remove_dir_all(scratch) {
        r.log
            .push(format!("could not remove {}: {e}", scratch.display()));
    }
}
