//! The measured sections, one module each; each `run` returns figures, and references are
//! measured in the same run. Here: the fixtures they share.

pub mod cold_start;
pub mod dispatch;
pub mod mcp;
pub mod store;
pub mod worktrees;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};
use serde_json::json;

use crate::{Figure, Opts};

fn fig(
    section: &'static str,
    name: impl Into<String>,
    unit: &'static str,
    values: Vec<f64>,
    vs: Option<&str>,
) -> Figure {
    Figure {
        section,
        name: name.into(),
        unit,
        values,
        vs: vs.map(str::to_string),
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !o.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// A repo with `files` files of 2 KiB in directories of 100.
fn synthetic_repo(dir: &Path, files: usize) -> Result<PathBuf> {
    let repo = dir.join(format!("repo-{files}"));
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q"])?;
    let line = "0123456789abcdef".repeat(4) + "\n";
    for i in 0..files {
        let d = repo.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&d)?;
        std::fs::write(
            d.join(format!("f{i}.txt")),
            line.repeat(31) + &format!("{i}\n"),
        )?;
    }
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "synthetic"])?;
    Ok(repo)
}

/// A data dir whose providers file has a no-op agent, plus a small project.
fn setup(opts: &Opts, name: &str) -> Result<(PathBuf, PathBuf, Vec<String>)> {
    let base = opts.work.path().join(name);
    let data = base.join("data");
    std::fs::create_dir_all(&data)?;
    let repo = synthetic_repo(&base, 10)?;
    let fixture = opts.echo.with_file_name("fake_acp_agent");
    std::fs::write(
        data.join("providers.json"),
        json!({"providers": {
            "noop": {"extends": "cli", "command": ["true"], "prompt": "arg"},
            // its sessions' state stays in the bench's directory, not the system temp dir
            "fixture": {"extends": "acp", "command": [fixture], "env": {"FAKE_ACP_STATE": data}},
        }})
        .to_string(),
    )?;
    let args = vec![
        "--data-dir".into(),
        data.display().to_string(),
        "--project".into(),
        repo.display().to_string(),
        "--allow-root".into(),
        base.display().to_string(),
        "--default-agent".into(),
        "noop".into(),
    ];
    Ok((data, repo, args))
}
