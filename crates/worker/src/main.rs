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
    /// Validate the configuration (and that the encryption key and CA files load), print
    /// the effective settings with secrets masked, and exit: 0 if usable, 2 if not.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.check_config {
        std::process::exit(check_config(args.config.as_deref()));
    }
    let settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    coldsend_core::telemetry::init(&settings.log);
    coldsend_worker::runtime::run(settings, shutdown_signal()).await
}

fn check_config(path: Option<&std::path::Path>) -> i32 {
    let settings = match Settings::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return 2;
        }
    };
    println!("{}", settings.redacted_toml());
    if let Err(e) = settings.sealing_key() {
        eprintln!("invalid configuration: {e} (from {})", settings.key_source());
        return 2;
    }
    if let Err(e) = coldsend_worker::trust::TrustStore::load(&settings.validation.extra_ca_files) {
        eprintln!("invalid configuration: {e}");
        return 2;
    }
    eprintln!("configuration OK (encryption key from {})", settings.key_source());
    0
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
