//! `coldsend-worker`: runs coldsend's queued jobs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use coldsend_core::settings::Settings;

#[derive(Parser)]
#[command(
    version,
    about = "coldsend worker: validates sender accounts, sends campaigns, scans mailboxes, delivers webhooks"
)]
struct Args {
    /// Config file (default: $COLDSEND_CONFIG, else config/coldsend.toml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the configuration (and that the encryption key and CA files load), print
    /// the effective settings with secrets masked, and exit: 0 if usable, 2 if not.
    #[arg(long)]
    check_config: bool,
}

// glibc's malloc was a fifth of the worker's CPU on the send path (arena locks between
// runtime threads, consolidation); mimalloc's thread-local heaps take that off.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.check_config {
        std::process::exit(check_config(args.config.as_deref()));
    }
    let settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if settings.worker.runtime_threads > 0 {
        runtime.worker_threads(settings.worker.runtime_threads);
    }
    runtime.build().context("starting the runtime")?.block_on(async {
        coldsend_core::telemetry::init(&settings.log);
        coldsend_worker::runtime::run(settings, shutdown_signal()).await
    })
}

fn check_config(path: Option<&std::path::Path>) -> i32 {
    coldsend_core::settings::check_config_report(path, |s| {
        coldsend_worker::trust::TrustStore::load(&s.validation.extra_ca_files).map(|_| ()).map_err(|e| e.to_string())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
