//! `coldsend`: the command line and the HTTP API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use coldsend_core::AccountStatus;
use coldsend_core::campaign::CampaignAction;
use coldsend_core::capacity::SendingSettings;
use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::Settings;
use coldsend_core::storage::inbox::{Inbox, InboxFilter, InboxKind};
use coldsend_producer::api::{AppState, router};
use coldsend_producer::api_key::{self, KeyVerifier};
use coldsend_service::accounts::{AccountService, AccountView};
use coldsend_service::campaigns::{AddLeadsReport, CampaignService, CampaignView};
use coldsend_service::connect::services;
use coldsend_service::health::{self, Health};

#[derive(Parser)]
#[command(version, about = "coldsend: cold-email outreach job queue (CLI and HTTP API)")]
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
    Accounts(AccountsCommand),
    /// Manage campaigns.
    #[command(subcommand)]
    Campaigns(CampaignsCommand),
    /// Add leads to a campaign.
    #[command(subcommand)]
    Leads(LeadsCommand),
    /// Make API keys and the encryption key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The master inbox: replies, auto-replies, bounces, complaints (newest first).
    Inbox {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        /// reply, auto_reply, bounce, complaint or other.
        #[arg(long, value_parser = parse_kind)]
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

#[derive(Subcommand)]
enum CampaignsCommand {
    /// Create a campaign from a JSON file (the API's request body).
    Create {
        #[arg(long, short)]
        file: PathBuf,
    },
    List,
    Show {
        id: String,
    },
    Start {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Stop {
        id: String,
    },
    /// Progress of a campaign; with --watch, a live progress bar until it finishes.
    Status {
        id: String,
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Subcommand)]
enum LeadsCommand {
    /// Add leads from a CSV file (header: email, first_name, last_name, company, other columns become
    /// variables) or a JSON array; invalid rows are reported by line and skipped.
    Add {
        campaign: String,
        #[arg(long, conflicts_with = "json")]
        csv: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// List a campaign's leads with their state.
    List { campaign: String },
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
    /// Sent today, effective cap and next allowed send.
    Usage { id: String },
    /// Show or change sending settings: the time zone of the account's day, warm-up, Sent copy.
    Sending {
        id: String,
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        warmup: Option<bool>,
        #[arg(long)]
        append_to_sent: Option<bool>,
        /// Seconds between IMAP scans of this mailbox (0: back to the configured default).
        #[arg(long)]
        scan_interval: Option<u64>,
    },
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
            keys(k);
            Ok(())
        }
        Command::Inbox { account, campaign, kind, limit, follow } => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            let filter = InboxFilter { account, campaign, kind };
            inbox(&settings, &s.inbox, filter, limit, follow).await
        }
        Command::Classify { paths } => {
            classify(&paths);
            Ok(())
        }
        Command::Serve => {
            let settings = load(cli.config)?;
            coldsend_core::telemetry::init(&settings.log);
            serve(settings).await
        }
        Command::Accounts(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            accounts(&s.accounts, &s.campaigns, cmd).await
        }
        Command::Campaigns(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            campaigns(&s.campaigns, cmd).await
        }
        Command::Leads(cmd) => {
            let settings = load(cli.config)?;
            let s = services(&settings).await.context("connecting")?;
            leads(&s.campaigns, cmd).await
        }
    }
}

fn parse_kind(s: &str) -> Result<InboxKind, String> {
    InboxKind::parse(s).ok_or_else(|| format!("expected one of: {}", InboxKind::ALL.map(InboxKind::as_str).join(", ")))
}

/// Prints the newest `limit` events, then (with `follow`) new ones as they arrive, on a
/// connection of its own whose response timeout outlasts the blocking read.
async fn inbox(
    settings: &Settings,
    page_inbox: &Inbox,
    filter: InboxFilter,
    limit: usize,
    follow: bool,
) -> anyhow::Result<()> {
    let (page, _) = page_inbox.page(&filter, None, limit.max(1)).await?;
    let mut last = page.first().map(|e| e.id.clone()).unwrap_or_else(|| "$".into());
    for e in page.iter().rev() {
        println!("{}", serde_json::to_string(e)?);
    }
    if !follow {
        return Ok(());
    }
    const BLOCK: Duration = Duration::from_secs(5);
    let client = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let following = Inbox::for_following(client, &settings.redis.key_prefix, BLOCK).await.context("connecting")?;
    loop {
        let events = match following.follow(&last, BLOCK.as_millis() as u64).await {
            Ok(events) => events,
            Err(e) => {
                // A Redis restart is waited out, not fatal: the cursor is kept.
                eprintln!("inbox: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for e in events {
            last = e.id.clone();
            let keep = filter.account.as_ref().is_none_or(|a| *a == e.account_id)
                && filter.campaign.as_ref().is_none_or(|c| e.campaign_id.as_ref() == Some(c))
                && filter.kind.is_none_or(|k| k == e.kind);
            if keep {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
    }
}

fn check_config(path: Option<&std::path::Path>) -> i32 {
    coldsend_core::settings::check_config_report(path, |_| Ok(()))
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
    let health = Arc::new(Health::default());
    let metrics = health::install_metrics().map_err(anyhow::Error::msg)?;
    let health_listener = tokio::net::TcpListener::bind(&settings.api.health_listen)
        .await
        .with_context(|| format!("binding api.health_listen {}", settings.api.health_listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health_server = tokio::spawn(health::serve(health_listener, health.clone(), metrics, stop_rx.clone()));
    let watcher = tokio::spawn(health::watch_redis(settings.redis.url.clone(), Vec::new(), health.clone(), stop_rx));
    let s = services(&settings).await.context("connecting")?;
    let app = router(AppState {
        inbox: s.inbox,
        accounts: s.accounts,
        campaigns: s.campaigns,
        signer: s.signer,
        keys: Arc::new(keys),
    });
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding {}", settings.api.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    health.set_running(true);
    let draining = health.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.set_draining();
        })
        .await
        .context("serving")?;
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = health_server.await;
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

async fn accounts(service: &AccountService, campaigns: &CampaignService, cmd: AccountsCommand) -> anyhow::Result<()> {
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
        AccountsCommand::Usage { id } => json(&campaigns.usage(&id).await?),
        AccountsCommand::Sending { id, timezone, warmup, append_to_sent, scan_interval } => {
            let current = campaigns.sending(&id).await?;
            if timezone.is_none() && warmup.is_none() && append_to_sent.is_none() && scan_interval.is_none() {
                return json(&current);
            }
            let new = SendingSettings {
                timezone: timezone.unwrap_or(current.timezone),
                warmup: warmup.unwrap_or(current.warmup),
                append_to_sent: append_to_sent.unwrap_or(current.append_to_sent),
                imap_sent_folder: current.imap_sent_folder,
                scan_interval_secs: match scan_interval {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => current.scan_interval_secs,
                },
            };
            json(&campaigns.set_sending(&id, new).await?)
        }
    }
}

fn classify(paths: &[PathBuf]) {
    let mut files = Vec::new();
    for p in paths {
        match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("eml")))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(_) => files.push(p.clone()),
        }
    }
    for file in files {
        let name = file.display().to_string();
        let line = match std::fs::read(&file) {
            Err(e) => serde_json::json!({"file": name, "kind": "other", "error": e.to_string()}),
            Ok(raw) => {
                let c = coldsend_core::classify::classify(&raw);
                let mut v = serde_json::json!({"file": name, "kind": c.kind});
                if let Some(b) = c.bounce {
                    v["bounce"] = serde_json::json!({"hard": b.hard, "reason": b.reason, "status": b.status,
                        "recipient": b.recipient, "original_message_id": b.original_message_id});
                }
                if let Some(d) = c.returns_on {
                    v["returns_on"] = serde_json::json!(d.to_string());
                }
                v
            }
        };
        println!("{line}");
    }
}

fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn campaigns(service: &CampaignService, cmd: CampaignsCommand) -> anyhow::Result<()> {
    let act = |id: String, a: CampaignAction| async move { json(&service.act(&id, a).await?) };
    match cmd {
        CampaignsCommand::Create { file } => {
            let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            json(&service.create(&body).await?)
        }
        CampaignsCommand::List => {
            println!("{:<36}  {:<9}  {:>6}  {:>6}  NAME", "ID", "STATE", "LEADS", "SENT");
            for c in service.list().await? {
                println!(
                    "{:<36}  {:<9}  {:>6}  {:>6}  {}",
                    c.id,
                    c.state.as_str(),
                    c.stats.leads,
                    c.stats.sent,
                    c.name
                );
            }
            Ok(())
        }
        CampaignsCommand::Show { id } => json(&service.get(&id).await?),
        CampaignsCommand::Start { id } => act(id, CampaignAction::Start).await,
        CampaignsCommand::Pause { id } => act(id, CampaignAction::Pause).await,
        CampaignsCommand::Resume { id } => act(id, CampaignAction::Resume).await,
        CampaignsCommand::Stop { id } => act(id, CampaignAction::Stop).await,
        CampaignsCommand::Status { id, watch } => status(service, &id, watch).await,
    }
}

fn status_line(c: &CampaignView) -> String {
    let states: Vec<String> = c.stats.lead_states.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{} · sent {} · failed {} · bounced {} · {}",
        c.state.as_str(),
        c.stats.sent,
        c.stats.failed,
        c.stats.bounced,
        states.join(", ")
    )
}

async fn status(service: &CampaignService, id: &str, watch: bool) -> anyhow::Result<()> {
    let c = service.get(id).await?;
    if !watch {
        println!("{}  {}", c.name, status_line(&c));
        return Ok(());
    }
    let total = |c: &CampaignView| c.stats.sent + c.stats.remaining_steps;
    let bar = indicatif::ProgressBar::new(total(&c));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} sent  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(c.name.clone());
    loop {
        let c = service.get(id).await?;
        bar.set_length(total(&c).max(1));
        bar.set_position(c.stats.sent);
        bar.set_message(status_line(&c));
        if matches!(
            c.state,
            coldsend_core::campaign::CampaignState::Completed | coldsend_core::campaign::CampaignState::Stopped
        ) {
            bar.finish();
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn leads(service: &CampaignService, cmd: LeadsCommand) -> anyhow::Result<()> {
    match cmd {
        LeadsCommand::Add { campaign, csv, json: json_file } => {
            let report: AddLeadsReport = match (csv, json_file) {
                (Some(path), None) => {
                    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let (leads, invalid) = coldsend_service::leads_csv::parse(&bytes).map_err(anyhow::Error::msg)?;
                    service.add_valid_leads(&campaign, leads, AddLeadsReport { invalid, ..Default::default() }).await?
                }
                (None, Some(path)) => {
                    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let rows: Vec<serde_json::Value> =
                        serde_json::from_slice(&bytes).context("the JSON file must hold an array of leads")?;
                    service.add_leads(&campaign, rows).await?
                }
                _ => bail!("give --csv FILE or --json FILE"),
            };
            for bad in &report.invalid {
                eprintln!("line {}: {} ({})", bad.row, bad.error, bad.email.as_deref().unwrap_or("no email"));
            }
            json(&report)
        }
        LeadsCommand::List { campaign } => json(&service.leads(&campaign).await?),
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
