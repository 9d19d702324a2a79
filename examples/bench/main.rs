//! boocoder's benchmark harness: measures boocoder beside its references in one run and prints
//! a table plus JSON (medians over repeated runs, min–max, ratios).
//!
//! ```sh
//! cargo build --release --bins --examples && ./target/release/examples/bench         # full run
//! cargo run --example bench -- --quick                                               # CI smoke run
//! cargo run --release --example bench -- --database-url postgres://…                 # + PostgreSQL
//! ```

#![allow(clippy::print_stdout)] // a report for people: stdout is its output

mod rpc;
mod sections;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

/// One measured figure.
pub struct Figure {
    pub section: &'static str,
    pub name: String,
    pub unit: &'static str,
    /// One value per repetition.
    pub values: Vec<f64>,
    /// The reference figure's name this one is compared with, if any.
    pub vs: Option<String>,
}

impl Figure {
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

pub struct Opts {
    pub quick: bool,
    pub reps: usize,
    pub calls: usize,
    pub boocoder: PathBuf,
    pub echo: PathBuf,
    pub database_url: Option<String>,
    pub work: tempfile::TempDir,
}

/// Percentile of a sample (nearest rank).
pub fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[i.clamp(1, samples.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let database_url = args
        .iter()
        .position(|a| a == "--database-url")
        .and_then(|i| args.get(i + 1).cloned());
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    // `--only dispatch,worktrees`: run just these sections (figures across sections that
    // refer to each other lose their ratio).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let exe = std::env::current_exe()?;
    let examples = exe.parent().context("exe dir")?;
    let target = examples.parent().context("target dir")?;
    let opts = Opts {
        quick,
        reps: if quick { 1 } else { 5 },
        calls: if quick { 200 } else { 2000 },
        boocoder: target.join("boocoder"),
        echo: examples.join("echo_server"),
        database_url,
        work: tempfile::tempdir()?,
    };
    for bin in [
        &opts.boocoder,
        &opts.echo,
        &opts.echo.with_file_name("fake_acp_agent"),
    ] {
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: build with `cargo build {}--bins --examples` first",
            bin.display(),
            if cfg!(debug_assertions) {
                ""
            } else {
                "--release "
            }
        );
    }
    if cfg!(debug_assertions) && !quick {
        eprintln!("note: a debug build; run with --release for figures worth quoting");
    }
    let mut figures = Vec::new();
    if wanted("mcp") {
        figures.extend(sections::mcp::run(&opts).await?);
    }
    if wanted("cold_start") {
        figures.extend(sections::cold_start::run(&opts).await?);
    }
    if wanted("dispatch") {
        figures.extend(sections::dispatch::run(&opts).await?);
    }
    if wanted("worktrees") {
        figures.extend(sections::worktrees::run(&opts).await?);
    }
    if wanted("store") {
        figures.extend(sections::store::run(&opts).await?);
    }

    println!(
        "{:<10} {:<52} {:>12} {:>23} {:>9}",
        "section", "figure", "median", "min–max", "ratio"
    );
    for f in &figures {
        let ratio =
            f.vs.as_ref()
                .and_then(|r| figures.iter().find(|g| &g.name == r))
                .map(|r| format!("{:.2}×", f.median() / r.median()))
                .unwrap_or_default();
        println!(
            "{:<10} {:<52} {:>9.3} {:<2} {:>10.3}–{:<10.3} {:>9}",
            f.section,
            f.name,
            f.median(),
            f.unit,
            f.min(),
            f.max(),
            ratio
        );
    }
    let report = json!({
        "quick": quick,
        "release": !cfg!(debug_assertions),
        "figures": figures.iter().map(|f| json!({
            "section": f.section, "name": f.name, "unit": f.unit, "median": f.median(),
            "min": f.min(), "max": f.max(), "values": f.values, "vs": f.vs,
        })).collect::<Vec<_>>(),
    });
    let path = json_out
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("bench.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("\nJSON: {}", path.display());
    Ok(())
}
