//! `coldsend`: the command line and the HTTP API server. Subcommands live in `cli/`.

mod cli;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coldsend_core::settings::Settings;
use coldsend_core::storage::inbox::{InboxFilter, InboxKind};
use coldsend_service::connect::services;

#[derive(Parser)]
#[command(name = "coldsend", version, about = "coldsend: cold-email outreach job queue (CLI and HTTP API)")]
struct Cli {
    /// Config file (default: $COLDSEND_CONFIG, else config/coldsend.toml if present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Validate the configuration (and that the encryption key loads), print the
    /// effective settings with secrets masked, and exit: 0 if usable, 2 if not.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve,
    /// Manage sender accounts.
    #[command(subcommand)]
    Accounts(cli::accounts::AccountsCommand),
    /// Manage campaigns.
    #[command(subcommand)]
    Campaigns(cli::campaigns::CampaignsCommand),
    /// Add leads to a campaign.
    #[command(subcommand)]
    Leads(cli::campaigns::LeadsCommand),
    /// The global suppression list: addresses and whole domains never mailed.
    #[command(subcommand)]
    Suppression(cli::suppression::SuppressionCommand),
    /// Webhook endpoints: where coldsend POSTs its events, signed.
    #[command(subcommand)]
    Webhooks(cli::webhooks::WebhooksCommand),
    /// Make API keys and the encryption key.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// The master inbox: replies, auto-replies, bounces, complaints (newest first).
    Inbox {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        /// reply, auto_reply, bounce, complaint or other.
        #[arg(long, value_parser = cli::inbox::parse_kind)]
        kind: Option<InboxKind>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing new events as they arrive.
        #[arg(long)]
        follow: bool,
    },
    /// Classify stored messages (files, or folders of .eml files) with the scanner's
    /// classifier; prints one JSON object per message.
    Classify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Errors end the process with their chain on one line (`error: …: cause`), exit code 1,
/// and never a backtrace: a user error is not a crash, whatever `RUST_BACKTRACE` says.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.check_config {
        std::process::exit(check_config(cli.config.as_deref()));
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        std::process::exit(2);
    };
    match command {
        Command::Keys(k) => {
            cli::keys::keys(k);
            Ok(())
        }
        Command::Inbox { account, campaign, kind, limit, follow } => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            let filter = InboxFilter { account, campaign, kind };
            cli::inbox::inbox(&settings, &s.inbox, filter, limit, follow).await
        }
        Command::Classify { paths } => {
            cli::inbox::classify(&paths);
            Ok(())
        }
        Command::Serve => {
            let settings = load(cli.config)?;
            coldsend_core::telemetry::init(&settings.log);
            cli::serve::serve(settings).await
        }
        Command::Accounts(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            cli::accounts::accounts(&s.accounts, &s.campaigns, &s.consent, cmd).await
        }
        Command::Campaigns(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            cli::campaigns::campaigns(&s.campaigns, &s.previews, cmd).await
        }
        Command::Leads(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            cli::campaigns::leads(&s.campaigns, cmd).await
        }
        Command::Webhooks(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            cli::webhooks::webhooks(&s.webhooks, cmd).await
        }
        Command::Suppression(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            cli::suppression::suppression(&s.suppression, cmd).await
        }
    }
}

fn check_config(path: Option<&std::path::Path>) -> i32 {
    coldsend_core::settings::check_config_report(path, |_| Ok(()))
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Settings> {
    Settings::load(path.as_deref()).context("loading settings")
}
