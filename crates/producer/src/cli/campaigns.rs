//! `coldsend campaigns …` and `coldsend leads …`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use coldsend_core::campaign::CampaignAction;
use coldsend_core::storage::test_sends::{TestOutcome, TestSendState};
use coldsend_service::campaigns::{AddLeadsReport, AddOptions, CampaignService, CampaignView};
use coldsend_service::preview::PreviewService;

use super::json;

#[derive(Subcommand)]
pub(crate) enum CampaignsCommand {
    /// Create a campaign from a JSON file (the API's request body).
    Create {
        /// The campaign JSON (the API's request body).
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Campaigns with their state, leads and sends.
    List,
    /// One campaign as JSON: steps, schedule, statistics per step.
    Show { id: String },
    /// Start sending (says whether it sends now, and if not why and from when).
    Start { id: String },
    /// Pause: nothing more is sent until resumed.
    Pause { id: String },
    /// Resume a paused campaign.
    Resume { id: String },
    /// Stop for good: nothing more is sent, ever.
    Stop { id: String },
    /// Edit a DRAFT or PAUSED campaign from a JSON file holding the fields to change
    /// (name, sender_account_ids, steps, schedule, daily_limit, stop_on_reply, …).
    Edit {
        id: String,
        /// A JSON object with the fields to change.
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Delete a campaign that is not running, with its leads and send records.
    Rm { id: String },
    /// Show every step as chosen leads would get it (subject, text, HTML, headers), or why
    /// it cannot be made for them. Nothing is sent.
    Preview {
        id: String,
        /// One of the campaign's leads (default: the first --first leads).
        #[arg(long)]
        lead: Option<String>,
        /// How many of the campaign's first leads to preview.
        #[arg(long, default_value_t = 1)]
        first: usize,
        /// The mailbox to compose from (default: the lead's own).
        #[arg(long)]
        from: Option<String>,
    },
    /// Send chosen steps to an address as tests ("[TEST]" subject), counted against the
    /// mailbox's cap, never recorded as a lead's step.
    TestSend {
        id: String,
        /// The address the test emails go to.
        #[arg(long)]
        to: String,
        /// The sending mailbox (account id).
        #[arg(long)]
        from: String,
        /// Step index to send (0 = first); repeat for several (default: every step).
        #[arg(long = "step")]
        steps: Vec<usize>,
        /// A lead of the campaign whose fields fill the templates.
        #[arg(long)]
        lead: Option<String>,
    },
    /// Progress of a campaign; with --watch, a live progress bar until it finishes.
    Status {
        id: String,
        /// Show a live progress bar until the campaign ends.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum LeadsCommand {
    /// Add leads from a CSV file (header: email, first_name, last_name, company, other columns become
    /// variables) or a JSON array; invalid rows are reported by line and skipped.
    Add {
        campaign: String,
        /// A CSV file with a header (email, first_name, last_name, company, other columns become variables).
        #[arg(long, conflicts_with = "json")]
        csv: Option<PathBuf>,
        /// A JSON array of leads (the API's lead objects).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Leave out leads that replied in another campaign (they are reported either way;
        /// bounced and unsubscribed addresses are suppressed anyway).
        #[arg(long)]
        skip_replied_elsewhere: bool,
    },
    /// List a campaign's leads with their state.
    List { campaign: String },
    /// Take a lead out: erased if nothing was sent to it, else STOPPED.
    Rm { campaign: String, lead: String },
    /// Print a campaign's leads as CSV (state, error, mailbox, steps sent).
    Export { campaign: String },
}

impl CampaignsCommand {
    /// Whether the command only reads (and so runs without the encryption key).
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, Self::List | Self::Show { .. } | Self::Status { .. })
    }
}

impl LeadsCommand {
    /// Whether the command only reads (and so runs without the encryption key).
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Export { .. })
    }
}

pub(crate) async fn campaigns(
    service: &CampaignService,
    previews: &PreviewService,
    cmd: CampaignsCommand,
) -> anyhow::Result<()> {
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
        CampaignsCommand::Edit { id, file } => {
            let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            json(&service.update(&id, &body).await?)
        }
        CampaignsCommand::Preview { id, lead, first, from } => {
            let body = serde_json::json!({"lead_id": lead, "first": first, "sender_account_id": from});
            json(&previews.preview(&id, &serde_json::to_vec(&body)?).await?)
        }
        CampaignsCommand::TestSend { id, to, from, steps, lead } => {
            let steps = (!steps.is_empty()).then_some(steps);
            let body = serde_json::json!({"to": to, "sender_account_id": from, "steps": steps, "lead_id": lead});
            let mut record = previews.test_send(&id, &serde_json::to_vec(&body)?, Duration::from_secs(60)).await?;
            if record.state != TestSendState::Done {
                record = previews.get_test_send(&record.id).await?;
            }
            json(&record)?;
            if record.state != TestSendState::Done {
                bail!("test send {} not finished after 60 s: is a coldsend-worker running?", record.id);
            }
            if record.results.iter().any(|r| r.outcome != TestOutcome::Sent) {
                bail!("not every step was sent (see the results above)");
            }
            Ok(())
        }
        CampaignsCommand::Rm { id } => {
            service.delete(&id).await?;
            eprintln!("deleted {id}");
            Ok(())
        }
        CampaignsCommand::Status { id, watch } => status(service, &id, watch).await,
    }
}

pub(crate) fn status_line(c: &CampaignView) -> String {
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

pub(crate) async fn status(service: &CampaignService, id: &str, watch: bool) -> anyhow::Result<()> {
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

pub(crate) async fn leads(service: &CampaignService, cmd: LeadsCommand) -> anyhow::Result<()> {
    match cmd {
        LeadsCommand::Export { campaign } => {
            print!("{}", service.leads_csv(&campaign).await?);
            Ok(())
        }
        LeadsCommand::Rm { campaign, lead } => {
            let outcome = service.remove_lead(&campaign, &lead).await?;
            eprintln!("{lead}: {}", serde_json::to_value(outcome)?.as_str().unwrap_or("done"));
            Ok(())
        }
        LeadsCommand::Add { campaign, csv, json: json_file, skip_replied_elsewhere } => {
            let options = AddOptions { skip_replied_elsewhere };
            let report: AddLeadsReport = match (csv, json_file) {
                (Some(path), None) => {
                    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let (leads, invalid) = coldsend_service::leads_csv::parse(&bytes).map_err(anyhow::Error::msg)?;
                    let report = AddLeadsReport { invalid, ..Default::default() };
                    service.add_valid_leads(&campaign, leads, report, options).await?
                }
                (None, Some(path)) => {
                    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let rows: Vec<serde_json::Value> =
                        serde_json::from_slice(&bytes).context("the JSON file must hold an array of leads")?;
                    service.add_leads_with(&campaign, rows, options).await?
                }
                _ => bail!("give --csv FILE or --json FILE"),
            };
            for bad in &report.invalid {
                eprintln!("line {}: {} ({})", bad.row, bad.error, bad.email.as_deref().unwrap_or("no email"));
            }
            for e in &report.elsewhere {
                eprintln!("{}: {} in campaign {}", e.email, e.state.as_str(), e.campaign_id);
            }
            json(&report)
        }
        LeadsCommand::List { campaign } => json(&service.leads(&campaign).await?),
    }
}
