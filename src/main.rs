//! The `boocoder` binary: parse flags, set up logging on stderr, and run a verb.
//! `anyhow` lives only here and in `cli`; the library returns typed errors.

use anyhow::{Context, Result};
use clap::Parser;

mod cli;
mod stderr_log;

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    let default_filter = cli.command.log_filter();
    let log = stderr_log::StderrLog::start();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(cli::main(cli));
    log.flush(std::time::Duration::from_secs(1));
    match result? {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}
