//! `coldsend`: the command line and the HTTP API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use coldsend_core::AccountStatus;
use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::Settings;
use coldsend_producer::accounts::{AccountService, AccountView};
use coldsend_producer::api::{AppState, router};
use coldsend_producer::api_key::{self, KeyVerifier};
use coldsend_producer::connect::account_service;

#[derive(Parser)]
#[command(version, about = "coldsend: cold-email outreach job queue (CLI and HTTP API)")]
struct Cli {
    /// Config file (default: $COLDSEND_CONFIG, else config/coldsend.toml if present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve,
    /// Manage sender accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Make API keys and the encryption key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Register an account from a JSON file (the API's request body; `-` reads stdin).
    Add {
        #[arg(long, short)]
        file: PathBuf,
        /// Wait until validation finishes and exit non-zero if it failed.
        #[arg(long)]
        wait: bool,
    },
    /// List accounts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one account as JSON.
    Show { id: String },
    /// Validate an account's connections again.
    Validate {
        id: String,
        #[arg(long)]
        wait: bool,
    },
    /// Remove an account and its credentials.
    Rm { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an API key; prints the key (give it to clients) and its hash (put it in api.key_hashes).
    New,
    /// Print the hash of an existing API key.
    Hash { key: String },
    /// Generate a credential encryption key (64 hex characters).
    NewEncryptionKey,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys(k) => {
            keys(k);
            Ok(())
        }
        Command::Serve => {
            let settings = load(cli.config)?;
            coldsend_core::telemetry::init(&settings.log);
            serve(settings).await
        }
        Command::Accounts(cmd) => {
            let settings = load(cli.config)?;
            let service = account_service(&settings).await.context("connecting")?;
            accounts(&service, cmd).await
        }
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Settings> {
    Settings::load(path.as_deref()).context("loading settings")
}

fn keys(cmd: KeysCommand) {
    match cmd {
        KeysCommand::New => {
            let key = api_key::generate();
            println!("api key:  {key}\nkey hash: {}", api_key::hash(&key));
        }
        KeysCommand::Hash { key } => println!("{}", api_key::hash(&key)),
        KeysCommand::NewEncryptionKey => println!("{}", SealingKey::generate_text()),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let keys = KeyVerifier::from_hex(&settings.api.key_hashes);
    if keys.is_empty() {
        tracing::warn!("api.key_hashes is empty: every request will be refused (create one with `coldsend keys new`)");
    }
    let accounts = account_service(&settings).await.context("connecting")?;
    let app = router(AppState { accounts, keys: Arc::new(keys) });
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding {}", settings.api.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving")?;
    tracing::info!("API stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

async fn accounts(service: &AccountService, cmd: AccountsCommand) -> anyhow::Result<()> {
    match cmd {
        AccountsCommand::Add { file, wait } => {
            let body = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
                buf
            } else {
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let view = service.register(&body).await?;
            finish(service, view, wait).await
        }
        AccountsCommand::List { json } => {
            let all = service.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<36}  {:<18}  {:<16}  {:>6}  EMAIL", "ID", "STATUS", "INBOX TYPE", "LIMIT");
                for a in all {
                    println!(
                        "{:<36}  {:<18}  {:<16}  {:>6}  {}",
                        a.id,
                        a.status.as_str(),
                        serde_json::to_value(a.inbox_type)?.as_str().unwrap_or_default(),
                        a.daily_limit,
                        a.email_address
                    );
                }
            }
            Ok(())
        }
        AccountsCommand::Show { id } => print(&service.get(&id).await?),
        AccountsCommand::Validate { id, wait } => {
            let view = service.revalidate(&id).await?;
            finish(service, view, wait).await
        }
        AccountsCommand::Rm { id } => {
            service.delete(&id).await?;
            eprintln!("removed {id}");
            Ok(())
        }
    }
}

fn print(view: &AccountView) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(view)?);
    Ok(())
}

/// Prints the account; with `wait`, first polls until its validation has finished.
async fn finish(service: &AccountService, mut view: AccountView, wait: bool) -> anyhow::Result<()> {
    if wait {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while view.status == AccountStatus::PendingValidation {
            if tokio::time::Instant::now() > deadline {
                print(&view)?;
                bail!("validation still pending after 120 s: is a coldsend-worker running?");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            view = service.get(&view.id).await?;
        }
    }
    print(&view)?;
    if view.status == AccountStatus::ValidationFailed {
        bail!("account {} failed validation", view.id);
    }
    Ok(())
}
