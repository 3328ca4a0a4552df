//! `coldsend`: the command line and the HTTP API server. Subcommands live in `cli/`.

mod cli;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coldsend_core::settings::Settings;
use coldsend_core::storage::inbox::{InboxFilter, InboxKind};
use coldsend_service::connect::{services, services_read_only};

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
        /// Only this sender account's events.
        #[arg(long)]
        account: Option<String>,
        /// Only this campaign's events.
        #[arg(long)]
        campaign: Option<String>,
        /// reply, auto_reply, bounce, complaint or other.
        #[arg(long, value_parser = cli::inbox::parse_kind)]
        kind: Option<InboxKind>,
        /// How many of the newest events to print first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing new events as they arrive.
        #[arg(long)]
        follow: bool,
        /// Print every matching event (up to 100,000) as CSV instead.
        #[arg(long, conflicts_with_all = ["follow", "limit"])]
        csv: bool,
    },
    /// Print a shell completion script: `coldsend completions bash > /etc/bash_completion.d/coldsend`
    /// (also zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Classify stored messages (files, or folders of .eml files) with the scanner's
    /// classifier; prints one JSON object per message.
    Classify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Connects; a command that only reads runs without the encryption key (it opens no
/// secret and seals none), so an operator's laptop needs only the Redis URL.
async fn connect(settings: &Settings, read_only: bool) -> anyhow::Result<coldsend_service::connect::Services> {
    let s = if read_only { services_read_only(settings).await } else { services(settings).await };
    s.context("connecting")
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "coldsend", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Keys(k) => {
            cli::keys::keys(k);
            Ok(())
        }
        Command::Inbox { account, campaign, kind, limit, follow, csv } => {
            let settings = load(cli.config)?;
            let s = services_read_only(&settings).await.context("connecting")?;
            let filter = InboxFilter { account, campaign, kind };
            if csv {
                print!("{}", coldsend_service::exports::inbox_csv(&s.inbox, &filter).await?);
                return Ok(());
            }
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
            let s = connect(&settings, cmd.read_only()).await?;
            cli::accounts::accounts(&s.accounts, &s.campaigns, &s.consent, cmd).await
        }
        Command::Campaigns(cmd) => {
            let settings = load(cli.config)?;
            let s = connect(&settings, cmd.read_only()).await?;
            cli::campaigns::campaigns(&s.campaigns, &s.previews, cmd).await
        }
        Command::Leads(cmd) => {
            let settings = load(cli.config)?;
            let s = connect(&settings, cmd.read_only()).await?;
            cli::campaigns::leads(&s.campaigns, cmd).await
        }
        Command::Webhooks(cmd) => {
            let settings = load(cli.config)?;
            let s = connect(&settings, cmd.read_only()).await?;
            cli::webhooks::webhooks(&s.webhooks, cmd).await
        }
        Command::Suppression(cmd) => {
            let settings = load(cli.config)?;
            let s = connect(&settings, cmd.read_only()).await?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` describes every subcommand and every flag (positional ids name themselves).
    #[test]
    fn every_subcommand_and_flag_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{here}: no description"));
                }
                for arg in sub.get_arguments() {
                    let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                    if !arg.is_positional() && !builtin && arg.get_help().is_none() {
                        missing.push(format!("{here} --{}: no description", arg.get_id()));
                    }
                }
                walk(sub, &here, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "coldsend", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
