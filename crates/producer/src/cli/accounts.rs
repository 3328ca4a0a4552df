//! `coldsend accounts …`: register, list, show, validate, remove; usage and sending settings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use coldsend_core::AccountStatus;
use coldsend_core::capacity::SendingSettings;
use coldsend_service::accounts::{AccountService, AccountView};
use coldsend_service::campaigns::CampaignService;
use coldsend_service::oauth::Consent;

use super::json;

#[derive(Subcommand)]
pub(crate) enum AccountsCommand {
    /// Register an account from a JSON file (the API's request body; `-` reads stdin).
    Add {
        /// The registration JSON (the API's body; `-` for standard input).
        #[arg(long, short)]
        file: PathBuf,
        /// Wait until validation finishes and exit non-zero if it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Connect a mailbox with OAuth2: prints the provider's sign-in URL, receives the
    /// provider's redirect on a loopback port (as `gh auth login` does), and registers the
    /// account (or renews an existing one's grant). FILE is the registration JSON without
    /// passwords; a CUSTOM provider's client goes in its `auth`.
    Connect {
        /// google, microsoft or custom.
        provider: String,
        /// The account JSON without secrets (the sign-in supplies them).
        #[arg(long, short)]
        file: PathBuf,
        /// Give up waiting for the browser after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Wait until the new account's validation finished.
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
        /// Wait until the validation finished, and fail unless the account is ACTIVE.
        #[arg(long)]
        wait: bool,
    },
    /// Remove an account and its credentials.
    Rm {
        id: String,
        /// Even though running campaigns send from it: its leads that have not started move
        /// to the campaigns' other mailboxes; the threads it started stop.
        #[arg(long)]
        force: bool,
    },
    /// Edit an account: any registration field but email_address and inbox_type. A change to
    /// hosts, ports, TLS, usernames or passwords validates it again.
    Edit {
        id: String,
        /// JSON object with the fields to change (`-` for stdin), e.g. {"smtp_port": 465}.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The name in the From header.
        #[arg(long)]
        display_name: Option<String>,
        /// Sends per day at most (the effective cap may be lower during warm-up).
        #[arg(long)]
        daily_limit: Option<u32>,
        /// Wait for the new validation to finish (when the edit starts one).
        #[arg(long)]
        wait: bool,
    },
    /// Sent today, effective cap and next allowed send.
    Usage { id: String },
    /// End a sending pause (after sender-side refusals) now; waiting steps go out again.
    ResumeSending { id: String },
    /// Stop the mailbox sending for a while (scans go on); resume-sending ends it sooner.
    PauseSending {
        id: String,
        /// How long, in hours.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Shown as the pause's reason.
        #[arg(long)]
        note: Option<String>,
    },
    /// Show or change sending settings: the time zone of the account's day, warm-up, Sent copy.
    Sending {
        id: String,
        /// IANA time zone of the mailbox's sending day, e.g. Europe/Riga.
        #[arg(long)]
        timezone: Option<String>,
        /// Follow the warm-up ramp (a new mailbox starts small).
        #[arg(long)]
        warmup: Option<bool>,
        /// Append a copy of each sent email to the Sent folder over IMAP.
        #[arg(long)]
        append_to_sent: Option<bool>,
        /// Seconds between IMAP scans of this mailbox (0: back to the configured default).
        #[arg(long)]
        scan_interval: Option<u64>,
        /// Watch INBOX with IMAP IDLE where the server offers it (new mail acted on within
        /// seconds); absent from the settings: the configured `scan.idle`.
        #[arg(long)]
        imap_idle: Option<bool>,
        /// The server files every accepted message in Sent itself, so a send missing there
        /// never went out (lets coldsend resend an UNCERTAIN send; needs --append-to-sent false).
        #[arg(long)]
        sent_folder_authoritative: Option<bool>,
        /// The day the warm-up ramp counts from (YYYY-MM-DD; an aged mailbox: a past day;
        /// empty: back to the day it was added).
        #[arg(long)]
        warmup_start: Option<String>,
        /// This mailbox's own ramp, NEW,WARMING,ESTABLISHED per day (e.g. 10,30,60; at most
        /// 30,80,100; empty: back to the configured ramp).
        #[arg(long)]
        warmup_ramp: Option<String>,
    },
}

fn parse_ramp(raw: &str) -> anyhow::Result<coldsend_core::capacity::WarmupRamp> {
    let n: Vec<u32> = raw
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--warmup-ramp {raw}: expected three numbers such as 10,30,60"))?;
    let [new_per_day, warming_per_day, established_per_day] = n[..] else {
        bail!("--warmup-ramp {raw}: expected three numbers such as 10,30,60");
    };
    Ok(coldsend_core::capacity::WarmupRamp { new_per_day, warming_per_day, established_per_day })
}

impl AccountsCommand {
    /// Whether the command only reads (and so runs without the encryption key).
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Show { .. } | Self::Usage { .. })
            || matches!(
                self,
                Self::Sending {
                    timezone: None,
                    warmup: None,
                    append_to_sent: None,
                    scan_interval: None,
                    imap_idle: None,
                    sent_folder_authoritative: None,
                    warmup_start: None,
                    warmup_ramp: None,
                    ..
                }
            )
    }
}

fn read_body(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// The callback's query, as the provider sends it.
#[derive(serde::Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// The loopback redirect (RFC 8252): a listener on 127.0.0.1 that takes one callback.
async fn connect(consent: &Consent, provider: &str, body: &[u8], timeout: Duration) -> anyhow::Result<AccountView> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let redirect = format!("http://127.0.0.1:{}/oauth/callback", listener.local_addr()?.port());
    let started = consent.start(provider, body, Some(redirect)).await?;
    eprintln!("Open this URL in a browser and sign in as the mailbox:");
    println!("{}", started.authorization_url);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Callback>(1);
    let app = axum::Router::new().route(
        "/oauth/callback",
        axum::routing::get(move |axum::extract::Query(q): axum::extract::Query<Callback>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(q).await;
                axum::response::Html("<!doctype html><p>coldsend received the sign-in. You can close this window.</p>")
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let received = tokio::time::timeout(timeout, async {
        loop {
            // Only the callback of this sign-in counts (a stray request to the port does not).
            match rx.recv().await {
                Some(q) if q.state.as_deref() == Some(started.state.as_str()) => return Some(q),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    server.abort();
    let q = match received {
        Ok(Some(q)) => q,
        _ => bail!("no sign-in arrived within {} s", timeout.as_secs()),
    };
    Ok(consent.finish(&started.state, q.code.as_deref(), q.error.as_deref()).await?)
}

pub(crate) async fn accounts(
    service: &AccountService,
    campaigns: &CampaignService,
    consent: &Consent,
    cmd: AccountsCommand,
) -> anyhow::Result<()> {
    match cmd {
        AccountsCommand::Add { file, wait } => {
            let view = service.register(&read_body(&file)?).await?;
            finish(service, view, wait).await
        }
        AccountsCommand::Connect { provider, file, timeout, wait } => {
            let view = connect(consent, &provider, &read_body(&file)?, Duration::from_secs(timeout)).await?;
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
        AccountsCommand::Show { id } => {
            let view = service.get(&id).await?;
            print(&AccountView { today: Some(campaigns.usage(&id).await?), ..view })
        }
        AccountsCommand::Validate { id, wait } => {
            let view = service.revalidate(&id).await?;
            finish(service, view, wait).await
        }
        AccountsCommand::Rm { id, force } => {
            service.get(&id).await?;
            let released = campaigns.release_account(&id, force).await?;
            service.delete(&id).await?;
            if !released.campaigns.is_empty() {
                eprintln!(
                    "taken out of {} campaign(s): {} lead(s) moved to other mailboxes, {} thread(s) stopped",
                    released.campaigns.len(),
                    released.reassigned,
                    released.stopped
                );
            }
            eprintln!("removed {id}");
            Ok(())
        }
        AccountsCommand::Edit { id, file, display_name, daily_limit, wait } => {
            let mut patch = match &file {
                Some(f) => serde_json::from_slice::<serde_json::Value>(&read_body(f)?)
                    .with_context(|| format!("{}: not JSON", f.display()))?,
                None => serde_json::json!({}),
            };
            let Some(fields) = patch.as_object_mut() else { bail!("the patch must be a JSON object") };
            if let Some(n) = display_name {
                fields.insert("display_name".into(), n.into());
            }
            if let Some(n) = daily_limit {
                fields.insert("daily_limit".into(), n.into());
            }
            let view = service.update(&id, &serde_json::to_vec(&patch)?).await?;
            finish(service, view, wait).await
        }
        AccountsCommand::Usage { id } => json(&campaigns.usage(&id).await?),
        AccountsCommand::PauseSending { id, hours, note } => {
            print(&service.pause_sending(&id, hours, note.as_deref()).await?)
        }
        AccountsCommand::ResumeSending { id } => {
            let view = service.resume_sending(&id).await?;
            campaigns.wake(&id).await?;
            print(&view)
        }
        AccountsCommand::Sending {
            id,
            timezone,
            warmup,
            append_to_sent,
            scan_interval,
            imap_idle,
            sent_folder_authoritative,
            warmup_start,
            warmup_ramp,
        } => {
            let current = campaigns.sending(&id).await?;
            let unchanged = timezone.is_none()
                && warmup.is_none()
                && append_to_sent.is_none()
                && scan_interval.is_none()
                && imap_idle.is_none()
                && sent_folder_authoritative.is_none()
                && warmup_start.is_none()
                && warmup_ramp.is_none();
            if unchanged {
                return json(&current);
            }
            let new = SendingSettings {
                timezone: timezone.unwrap_or(current.timezone),
                warmup: warmup.unwrap_or(current.warmup),
                append_to_sent: append_to_sent.unwrap_or(current.append_to_sent),
                imap_sent_folder: current.imap_sent_folder,
                imap_idle: imap_idle.or(current.imap_idle),
                sent_folder_authoritative: sent_folder_authoritative.or(current.sent_folder_authoritative),
                scan_interval_secs: match scan_interval {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => current.scan_interval_secs,
                },
                warmup_start: match warmup_start.as_deref() {
                    Some("") => None,
                    Some(d) => Some(d.parse().with_context(|| format!("--warmup-start {d}: expected YYYY-MM-DD"))?),
                    None => current.warmup_start,
                },
                warmup_ramp: match warmup_ramp.as_deref() {
                    Some("") => None,
                    Some(r) => Some(parse_ramp(r)?),
                    None => current.warmup_ramp,
                },
            };
            json(&campaigns.set_sending(&id, new).await?)
        }
    }
}

pub(crate) fn print(view: &AccountView) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(view)?);
    Ok(())
}

/// Prints the account; with `wait`, first polls until its validation has finished.
pub(crate) async fn finish(service: &AccountService, mut view: AccountView, wait: bool) -> anyhow::Result<()> {
    if wait {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        // A DISCONNECTED account stays DISCONNECTED while it is validated: its new report
        // says the validation ended.
        let before = view.validation.as_ref().map(|v| v.checked_at.clone());
        let pending = |v: &AccountView| {
            v.status == AccountStatus::PendingValidation
                || v.status == AccountStatus::Disconnected
                    && v.validation.as_ref().map(|v| v.checked_at.clone()) == before
        };
        while pending(&view) {
            if tokio::time::Instant::now() > deadline {
                print(&view)?;
                bail!("validation still pending after 120 s: is a coldsend-worker running?");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            view = service.get(&view.id).await?;
        }
    }
    print(&view)?;
    match view.status {
        AccountStatus::ValidationFailed => bail!("account {} failed validation", view.id),
        AccountStatus::NeedsReauth => bail!("account {} needs a new OAuth2 sign-in (its grant was refused)", view.id),
        AccountStatus::Disconnected => bail!("account {} is still DISCONNECTED: its server cannot be reached", view.id),
        _ => {}
    }
    Ok(())
}
