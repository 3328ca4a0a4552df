//! `coldsend-worker`: runs coldsend's queued jobs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use coldsend_core::settings::Settings;

#[derive(Parser)]
#[command(version, about = "coldsend worker: validates sender accounts (and, later, sends and scans)")]
struct Args {
    /// Config file (default: $COLDSEND_CONFIG, else config/coldsend.toml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    coldsend_core::telemetry::init(&settings.log);
    coldsend_worker::runtime::run(settings, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
