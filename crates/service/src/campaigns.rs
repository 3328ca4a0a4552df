//! Campaign operations, shared by the HTTP API, the CLI and the Redis command stream.

use std::collections::BTreeMap;

use apalis_redis::RedisStorage;
use chrono::Utc;
use coldsend_core::account::AccountId;
use coldsend_core::campaign::{CampaignAction, CampaignId, CampaignRequest, CampaignState, NotAllowed};
use coldsend_core::capacity;
use coldsend_core::error_code::ErrorCode;
use coldsend_core::jobs::{Dispatch, WakeError, wake_mailbox};
use coldsend_core::lead::{Lead, LeadId, LeadInput, LeadState};
use coldsend_core::schedule::ScheduleSpec;
use coldsend_core::settings::SendingConfig;
use coldsend_core::storage::accounts::{AccountStore, StoreError};
use coldsend_core::storage::campaigns::{
    CampaignRow, CampaignStore, CampaignStoreError, StepMetric, SuppressionReason,
};
use coldsend_core::storage::ledger::Ledger;
use coldsend_core::{AccountStatus, RequestError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("no campaign with id '{0}'")]
    NotFound(String),
    /// Something else that does not exist (a lead of the campaign, a test send): the message.
    #[error("{0}")]
    Missing(String),
    #[error("'{0}' is not on the suppression list")]
    NotSuppressed(String),
    /// The campaign's state does not allow the action.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("{0}")]
    Conflict(String),
    /// Redis could not be reached or answered an error: trying again later can help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read: trying again cannot help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl CampaignError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, CampaignError::Unavailable(_))
    }
}

impl From<CampaignStoreError> for CampaignError {
    fn from(e: CampaignStoreError) -> Self {
        match e {
            CampaignStoreError::NotAllowed(n) => Self::NotAllowed(n),
            CampaignStoreError::NotFound(id) => Self::NotFound(id.to_string()),
            CampaignStoreError::Corrupt(..) => Self::Corrupt(e.to_string()),
            CampaignStoreError::Locked { .. } => Self::Conflict(e.to_string()),
            CampaignStoreError::Redis(_) | CampaignStoreError::Concurrent => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for CampaignError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() { Self::Unavailable(e.to_string()) } else { Self::Corrupt(e.to_string()) }
    }
}

impl From<redis::RedisError> for CampaignError {
    fn from(e: redis::RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<WakeError> for CampaignError {
    fn from(e: WakeError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Seconds after the previous step.
    pub delay_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CampaignStats {
    pub leads: u64,
    /// Leads by state (ACTIVE, COMPLETED, REPLIED, BOUNCED, UNSUBSCRIBED, SUPPRESSED, PAUSED, FAILED).
    pub lead_states: BTreeMap<String, u64>,
    pub sent: u64,
    pub failed: u64,
    pub bounced: u64,
    pub uncertain: u64,
    pub skipped: u64,
    /// Emails still to send (steps × active leads, roughly).
    pub remaining_steps: u64,
    /// What happened to each step's emails.
    pub per_step: Vec<StepStats>,
}

/// One step's outcomes: sent, and what the replies, bounces and refusals to it were.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StepStats {
    pub step: usize,
    pub sent: u64,
    pub replied: u64,
    pub auto_replied: u64,
    pub hard_bounced: u64,
    pub soft_bounced: u64,
    pub unsubscribed: u64,
    pub complained: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub state: CampaignState,
    pub sender_account_ids: Vec<String>,
    pub steps: Vec<StepView>,
    pub schedule: ScheduleSpec,
    pub daily_limit: Option<u32>,
    pub stop_on_reply: bool,
    pub stop_on_domain_reply: bool,
    /// `spread` over the window, or `fast` (the gap only): the campaign's choice or the default.
    pub pacing: coldsend_core::campaign::Pacing,
    /// The schedule is read in each lead's own time zone (its `timezone` variable).
    pub lead_timezones: bool,
    pub lead_variables: Vec<String>,
    pub stats: CampaignStats,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// In the answer to start and resume: whether it can send now, and if not why and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlook: Option<SendingOutlook>,
}

/// Whether a running campaign can send now; if not, why and from when.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SendingOutlook {
    pub sending_now: bool,
    pub reason: OutlookReason,
    /// When sending can start (RFC 3339), when coldsend knows.
    #[schema(format = DateTime)]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutlookReason {
    /// Leads are due and a mailbox may send.
    Sending,
    /// No lead is left to send to: add leads.
    NoLeads,
    /// The schedule's window is closed until `from`.
    WindowClosed,
    /// Every mailbox has used today's cap; the first resets at `from`.
    CapsSpent,
    /// Every mailbox is paused after sender-side refusals until `from` (earliest).
    MailboxesPaused,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvalidLead {
    /// 1-based position in the input (CSV: line number, header is line 1).
    pub row: usize,
    pub email: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AddLeadsReport {
    pub added: usize,
    pub duplicates: usize,
    /// Added but on the suppression list: never mailed.
    pub suppressed: usize,
    pub invalid: Vec<InvalidLead>,
    /// Leads that replied to, bounced in or unsubscribed from another campaign (bounced and
    /// unsubscribed addresses are suppressed, so never mailed).
    pub elsewhere: Vec<LeadElsewhere>,
    /// Not added: they replied in another campaign and `skip_replied_elsewhere` was set.
    pub skipped: usize,
}

/// How a lead ended in another campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeadElsewhere {
    pub email: String,
    pub campaign_id: String,
    pub state: LeadState,
}

/// How leads are added.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddOptions {
    /// Leave out leads that replied in another campaign (bounced and unsubscribed ones are
    /// suppressed anyway).
    pub skip_replied_elsewhere: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeadView {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub state: Option<LeadState>,
    pub error: Option<String>,
    pub sender_account_id: Option<String>,
    /// Steps sent to the lead so far.
    pub steps_sent: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageView {
    pub account_id: String,
    pub timezone: String,
    /// The account's local date the counter is for.
    pub date: String,
    pub sent_today: u32,
    pub effective_cap: u32,
    pub daily_limit: u32,
    pub warmup: bool,
    /// Earliest time the mailbox may send again (RFC 3339): the gap, or with spread pacing
    /// its share of the window.
    pub next_allowed_send: String,
    /// Which limit decides today's cap, and the warm-up stage with the day it ends.
    pub limit: capacity::CapBreakdown,
    /// The last IMAP scan pass: when (RFC 3339) and how many messages it fetched.
    pub last_scan: Option<LastScan>,
    /// The worker replica watching INBOX with IMAP IDLE (new mail acted on within
    /// seconds); absent: the mailbox is polled only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_watcher: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastScan {
    pub at: String,
    pub fetched: u64,
}

#[derive(Clone)]
pub struct CampaignService {
    pub accounts: AccountStore,
    pub store: CampaignStore,
    pub ledger: Ledger,
    pub health: coldsend_core::storage::mailboxes::MailboxHealth,
    pub dispatch_queue: RedisStorage<Dispatch>,
    pub config: SendingConfig,
    /// Where campaign and lead state changes are published for webhooks.
    pub outbox: coldsend_core::storage::webhooks::Outbox,
    /// The last scan pass of each mailbox (for its usage view).
    pub scans: coldsend_core::storage::scan::ScanStore,
}

impl CampaignService {
    /// Publishes a campaign's new state for webhooks. The change itself is already made,
    /// so a failure to publish is logged, never turned into the caller's error.
    pub(crate) async fn publish_campaign_state(&self, id: &CampaignId, state: CampaignState) {
        let data = serde_json::json!({"campaign_id": id.to_string(), "state": state.as_str()});
        let event = coldsend_core::webhook::Event::new(coldsend_core::webhook::EventType::CampaignState, data);
        if let Err(e) = self.outbox.publish(&event).await {
            tracing::warn!(campaign_id = %id, error = %e, "campaign state event not published");
        }
    }

    /// Publishes a lead's new state for webhooks (logged, never the caller's error).
    pub(crate) async fn publish_lead_state(&self, id: &CampaignId, lead: &LeadId, state: LeadState, why: &str) {
        let data = serde_json::json!({"campaign_id": id.to_string(), "lead_id": lead.as_str(), "state": state.as_str(), "reason": why});
        let event = coldsend_core::webhook::Event::new(coldsend_core::webhook::EventType::LeadState, data);
        if let Err(e) = self.outbox.publish(&event).await {
            tracing::warn!(campaign_id = %id, lead_id = %lead, error = %e, "lead state event not published");
        }
    }

    /// Lets a mailbox's send loop look for work now (after a pause ended, say).
    pub async fn wake(&self, account_id: &str) -> Result<(), CampaignError> {
        let id: AccountId = account_id.parse().map_err(|_| CampaignError::NotFound(account_id.to_owned()))?;
        wake_mailbox(&self.ledger, &self.dispatch_queue, &id, true).await?;
        Ok(())
    }
}

pub(crate) fn parse_campaign_id(id: &str) -> Result<CampaignId, CampaignError> {
    id.parse().map_err(|_| CampaignError::NotFound(id.to_owned()))
}

impl CampaignService {
    pub async fn create(&self, body: &[u8]) -> Result<CampaignView, CampaignError> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            RequestError::new(ErrorCode::InvalidJson, format!("request body is not valid JSON: {e}"), None)
        })?;
        let request: CampaignRequest = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            RequestError::new(ErrorCode::InvalidField, format!("{field}: {}", e.inner()), Some(&field))
        })?;
        let campaign = request.into_campaign()?;
        self.check_accounts_exist(&campaign.accounts).await?;
        self.store.create(&campaign).await?;
        tracing::info!(campaign_id = %campaign.id, name = %campaign.name, "campaign created");
        self.get(&campaign.id.to_string()).await
    }

    /// 422 naming the first of `ids` that is not a registered sender account.
    pub(crate) async fn check_accounts_exist(&self, ids: &[AccountId]) -> Result<(), CampaignError> {
        for a in ids {
            if self.accounts.get(a).await?.is_none() {
                return Err(RequestError::new(
                    ErrorCode::UnknownAccount,
                    format!("no sender account with id '{a}'"),
                    Some("sender_account_ids"),
                )
                .into());
            }
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<CampaignView>, CampaignError> {
        let mut out = Vec::new();
        for row in self.store.list().await? {
            out.push(self.view(row).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<CampaignView, CampaignError> {
        let cid = parse_campaign_id(id)?;
        let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        self.view(row).await
    }

    async fn view(&self, row: CampaignRow) -> Result<CampaignView, CampaignError> {
        let c = &row.campaign;
        let states = self.store.lead_states(&c.id).await?;
        let counters = self.store.stats(&c.id).await?;
        let mut stats = CampaignStats { leads: states.len() as u64, ..Default::default() };
        for s in states.values() {
            *stats.lead_states.entry(s.as_str().to_owned()).or_default() += 1;
        }
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        // The send script counts per step only; the campaign's total is their sum.
        stats.sent = counters
            .iter()
            .filter(|(field, _)| matches!(StepMetric::parse_field(field), Some((_, StepMetric::Sent))))
            .map(|(_, n)| n)
            .sum();
        stats.failed = get("failed");
        stats.bounced = get("bounced");
        stats.uncertain = get("uncertain");
        stats.skipped = get("skipped");
        stats.per_step = (0..c.steps.len()).map(|step| StepStats { step, ..Default::default() }).collect();
        for (field, n) in &counters {
            let Some((step, metric)) = StepMetric::parse_field(field) else { continue };
            let Some(s) = stats.per_step.get_mut(step) else { continue };
            let slot = match metric {
                StepMetric::Sent => &mut s.sent,
                StepMetric::Replied => &mut s.replied,
                StepMetric::AutoReplied => &mut s.auto_replied,
                StepMetric::HardBounced => &mut s.hard_bounced,
                StepMetric::SoftBounced => &mut s.soft_bounced,
                StepMetric::Unsubscribed => &mut s.unsubscribed,
                StepMetric::Complained => &mut s.complained,
                StepMetric::Failed => &mut s.failed,
            };
            *slot = *n;
        }
        let active = stats.lead_states.get("ACTIVE").copied().unwrap_or(0);
        let progress = self.ledger.lead_progress(&c.id).await?;
        let sent_to_active: u64 =
            states.iter().filter(|(_, s)| **s == LeadState::Active).filter_map(|(lead, _)| progress.get(lead)).sum();
        stats.remaining_steps = (active * c.steps.len() as u64).saturating_sub(sent_to_active);
        let mut state = row.state;
        // A running campaign is complete once no lead is active and none waits to resume
        // after an out-of-office.
        if state == CampaignState::Running
            && !states.is_empty()
            && active == 0
            && !self.ledger.has_resumes(&c.id).await?
        {
            if self.store.complete(&c.id).await? {
                self.publish_campaign_state(&c.id, CampaignState::Completed).await;
            }
            state = CampaignState::Completed;
        }
        Ok(CampaignView {
            id: c.id.to_string(),
            name: c.name.clone(),
            state,
            sender_account_ids: c.accounts.iter().map(ToString::to_string).collect(),
            steps: c
                .steps
                .iter()
                .map(|s| StepView {
                    subject: s.subject.clone(),
                    text: s.text.clone(),
                    html: s.html.clone(),
                    delay_secs: s.delay.as_secs(),
                })
                .collect(),
            schedule: ScheduleSpec::from(c.schedule.clone()),
            daily_limit: c.daily_limit,
            stop_on_reply: c.stop_on_reply,
            stop_on_domain_reply: c.stop_on_domain_reply,
            pacing: c.pacing.unwrap_or(self.config.pacing),
            lead_timezones: c.lead_timezones,
            lead_variables: c.lead_variables.clone(),
            stats,
            outlook: None,
            created_at: c.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        })
    }

    /// Adds leads given as JSON rows; invalid rows are reported and skipped.
    pub async fn add_leads(&self, id: &str, rows: Vec<serde_json::Value>) -> Result<AddLeadsReport, CampaignError> {
        self.add_leads_with(id, rows, AddOptions::default()).await
    }

    /// [`CampaignService::add_leads`] with options.
    pub async fn add_leads_with(
        &self,
        id: &str,
        rows: Vec<serde_json::Value>,
        options: AddOptions,
    ) -> Result<AddLeadsReport, CampaignError> {
        let mut report = AddLeadsReport::default();
        let mut leads = Vec::new();
        for (i, raw) in rows.into_iter().enumerate() {
            let email = raw.get("email").and_then(|e| e.as_str()).map(str::to_owned);
            match serde_json::from_value::<LeadInput>(raw).map_err(|e| e.to_string()).and_then(LeadInput::into_lead) {
                Ok(l) => leads.push(l),
                Err(error) => report.invalid.push(InvalidLead { row: i + 1, email, error }),
            }
        }
        self.add_valid_leads(id, leads, report, options).await
    }

    /// Adds leads already parsed (e.g. from CSV) after `invalid` rows were set aside.
    pub async fn add_valid_leads(
        &self,
        id: &str,
        mut leads: Vec<Lead>,
        mut report: AddLeadsReport,
        options: AddOptions,
    ) -> Result<AddLeadsReport, CampaignError> {
        let cid = parse_campaign_id(id)?;
        let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        if matches!(row.state, CampaignState::Completed | CampaignState::Stopped) {
            return Err(CampaignError::Conflict(format!("cannot add leads to a {} campaign", row.state.as_str())));
        }
        let ids: Vec<LeadId> = leads.iter().map(|l| l.id.clone()).collect();
        let elsewhere = self.store.outcomes_elsewhere(&cid, &ids).await?;
        let email_of =
            |id: &LeadId| leads.iter().find(|l| &l.id == id).map(|l| l.email.to_string()).unwrap_or_default();
        report.elsewhere = elsewhere
            .iter()
            .map(|(l, c, s)| LeadElsewhere { email: email_of(l), campaign_id: c.to_string(), state: *s })
            .collect();
        if options.skip_replied_elsewhere {
            let replied: Vec<&LeadId> =
                elsewhere.iter().filter(|(_, _, s)| *s == LeadState::Replied).map(|(l, _, _)| l).collect();
            let before = leads.len();
            leads.retain(|l| !replied.contains(&&l.id));
            report.skipped = before - leads.len();
        }
        let added = self.store.add_leads(&cid, &leads).await?;
        report.added = added.added;
        report.duplicates += added.duplicates;
        report.suppressed = added.suppressed;
        if row.state == CampaignState::Running {
            self.schedule_new_leads(&row).await?;
        }
        Ok(report)
    }

    pub async fn leads(&self, id: &str) -> Result<Vec<LeadView>, CampaignError> {
        let cid = parse_campaign_id(id)?;
        if self.store.get(&cid).await?.is_none() {
            return Err(CampaignError::NotFound(id.to_owned()));
        }
        let states = self.store.lead_states(&cid).await?;
        let errors = self.store.lead_errors(&cid).await?;
        let accounts = self.ledger.lead_accounts(&cid).await?;
        let progress = self.ledger.lead_progress(&cid).await?;
        let mut out = Vec::new();
        for (lead_id, lead) in self.store.leads(&cid).await? {
            out.push(LeadView {
                steps_sent: progress.get(&lead_id).copied().unwrap_or(0),
                state: states.get(&lead_id).copied(),
                error: errors.get(&lead_id).cloned(),
                sender_account_id: accounts.get(&lead_id).cloned(),
                id: lead_id,
                email: lead.email.to_string(),
                first_name: lead.first_name,
                last_name: lead.last_name,
                company: lead.company,
            });
        }
        out.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(out)
    }

    pub async fn act(&self, id: &str, action: CampaignAction) -> Result<CampaignView, CampaignError> {
        let cid = parse_campaign_id(id)?;
        if action == CampaignAction::Start {
            let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
            if self.active_accounts(&row.campaign.accounts).await?.is_empty() {
                return Err(CampaignError::Conflict("none of the campaign's sender accounts is ACTIVE".into()));
            }
        }
        let state = self.store.transition(&cid, action).await?;
        tracing::info!(campaign_id = %cid, action = action.as_str(), state = state.as_str(), "campaign state changed");
        self.publish_campaign_state(&cid, state).await;
        if state == CampaignState::Running {
            let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
            self.schedule_new_leads(&row).await?;
            let outlook = self.outlook(&row).await?;
            return Ok(CampaignView { outlook: Some(outlook), ..self.get(id).await? });
        }
        self.get(id).await
    }

    /// Why a running campaign will or will not send now, and from when.
    async fn outlook(&self, row: &CampaignRow) -> Result<SendingOutlook, CampaignError> {
        let now = Utc::now();
        let at = |t: chrono::DateTime<Utc>| Some(t.to_rfc3339());
        let states = self.store.lead_states(&row.campaign.id).await?;
        if !states.values().any(|s| *s == LeadState::Active) {
            return Ok(SendingOutlook { sending_now: false, reason: OutlookReason::NoLeads, from: None });
        }
        // With lead time zones each lead has its own window: the campaign's says nothing.
        if !row.campaign.lead_timezones && !row.campaign.schedule.is_open(now) {
            let from = at(row.campaign.schedule.next_open(now));
            return Ok(SendingOutlook { sending_now: false, reason: OutlookReason::WindowClosed, from });
        }
        let mut earliest_reset: Option<chrono::DateTime<Utc>> = None;
        let mut earliest_unpause: Option<chrono::DateTime<Utc>> = None;
        let mut capped = 0;
        let mut paused = 0;
        let accounts = self.active_accounts(&row.campaign.accounts).await?;
        for account in &accounts {
            if let Some(p) = self.health.pause(&account.id).await?
                && let Some(until) = chrono::DateTime::<Utc>::from_timestamp_millis(p.until_ms)
                && until > now
            {
                paused += 1;
                earliest_unpause = Some(earliest_unpause.map_or(until, |e| e.min(until)));
                continue;
            }
            let settings = self.accounts.sending_settings(account, &self.config.default_timezone).await?;
            let cap = capacity::effective_cap(account, &settings, &self.config.warmup, now);
            let used =
                self.ledger.used(&self.ledger.keys().cap(&account.id, capacity::local_date(&settings, now))).await?;
            if used >= cap {
                capped += 1;
                let reset = capacity::next_local_midnight(&settings, now);
                earliest_reset = Some(earliest_reset.map_or(reset, |e| e.min(reset)));
            }
        }
        let blocked = capped + paused;
        if !accounts.is_empty() && blocked == accounts.len() {
            let (reason, from) = if paused == accounts.len() {
                (OutlookReason::MailboxesPaused, earliest_unpause)
            } else {
                (OutlookReason::CapsSpent, [earliest_reset, earliest_unpause].into_iter().flatten().min())
            };
            return Ok(SendingOutlook { sending_now: false, reason, from: from.and_then(at) });
        }
        Ok(SendingOutlook { sending_now: true, reason: OutlookReason::Sending, from: at(now) })
    }

    async fn active_accounts(&self, ids: &[AccountId]) -> Result<Vec<coldsend_core::SenderAccount>, CampaignError> {
        let mut out = Vec::new();
        for a in ids {
            if let Some(row) = self.accounts.get(a).await?
                && row.status == AccountStatus::Active
            {
                out.push(row.account);
            }
        }
        Ok(out)
    }

    /// Gives each unassigned active lead a sender account — the one with the most
    /// capacity left today, counting what it already has queued — queues its first
    /// step, and wakes the mailboxes.
    async fn schedule_new_leads(&self, row: &CampaignRow) -> Result<(), CampaignError> {
        let cid = row.campaign.id;
        let accounts = self.active_accounts(&row.campaign.accounts).await?;
        if accounts.is_empty() {
            return Ok(());
        }
        let assigned = self.ledger.lead_accounts(&cid).await?;
        let states = self.store.lead_states(&cid).await?;
        let now = Utc::now();
        let mut load: Vec<(AccountId, i64)> = Vec::new();
        for a in &accounts {
            let settings = self.accounts.sending_settings(a, &self.config.default_timezone).await?;
            let cap = capacity::effective_cap(a, &settings, &self.config.warmup, now);
            let used = self.ledger.used(&self.ledger.keys().cap(&a.id, capacity::local_date(&settings, now))).await?;
            let queued = assigned.values().filter(|v| **v == a.id.to_string()).count() as i64;
            load.push((a.id, i64::from(cap) - i64::from(used) - queued));
        }
        let mut pairs = Vec::new();
        let mut unassigned: Vec<&String> = states
            .iter()
            .filter(|(l, s)| **s == LeadState::Active && !assigned.contains_key(*l))
            .map(|(l, _)| l)
            .collect();
        unassigned.sort();
        for lead in unassigned {
            let Some(lid) = LeadId::parse(lead) else { continue };
            // Most remaining capacity wins; ties go to the first listed account.
            let Some(best) = load.iter_mut().max_by_key(|(_, left)| *left) else { break };
            best.1 -= 1;
            pairs.push((lid, best.0));
        }
        let queued = self.ledger.enqueue_first_steps(&cid, &pairs, now.timestamp_millis()).await?;
        tracing::info!(campaign_id = %cid, queued, "first steps queued");
        for a in &accounts {
            wake_mailbox(&self.ledger, &self.dispatch_queue, &a.id, true).await?;
        }
        Ok(())
    }

    pub async fn usage(&self, account_id: &str) -> Result<UsageView, CampaignError> {
        let id: AccountId = account_id.parse().map_err(|_| CampaignError::NotFound(account_id.to_owned()))?;
        let row = self.accounts.get(&id).await?.ok_or_else(|| CampaignError::NotFound(account_id.to_owned()))?;
        let settings = self.accounts.sending_settings(&row.account, &self.config.default_timezone).await?;
        let now = Utc::now();
        let date = capacity::local_date(&settings, now);
        let sent_today = self.ledger.used(&self.ledger.keys().cap(&id, date)).await?;
        let next_ms = self.ledger.next_send_ms(&id).await?.max(now.timestamp_millis());
        let limit = capacity::cap_breakdown(&row.account, &settings, &self.config.warmup, now);
        let last_scan = self.scans.last_pass(&id).await?.and_then(|(at_ms, fetched)| {
            Some(LastScan { at: chrono::DateTime::<Utc>::from_timestamp_millis(at_ms)?.to_rfc3339(), fetched })
        });
        Ok(UsageView {
            account_id: id.to_string(),
            timezone: settings.timezone.clone(),
            date: date.to_string(),
            sent_today,
            effective_cap: limit.effective_cap,
            daily_limit: row.account.daily_limit.get(),
            warmup: settings.warmup,
            next_allowed_send: chrono::DateTime::<Utc>::from_timestamp_millis(next_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            limit,
            last_scan,
            idle_watcher: self.scans.idle_watcher(&id).await?,
        })
    }

    pub async fn sending(&self, account_id: &str) -> Result<capacity::SendingSettings, CampaignError> {
        let id: AccountId = account_id.parse().map_err(|_| CampaignError::NotFound(account_id.to_owned()))?;
        let row = self.accounts.get(&id).await?.ok_or_else(|| CampaignError::NotFound(account_id.to_owned()))?;
        Ok(self.accounts.sending_settings(&row.account, &self.config.default_timezone).await?)
    }

    /// Replaces an account's sending settings (time zone, warm-up, Sent copy).
    pub async fn set_sending(
        &self,
        account_id: &str,
        settings: capacity::SendingSettings,
    ) -> Result<capacity::SendingSettings, CampaignError> {
        let id: AccountId = account_id.parse().map_err(|_| CampaignError::NotFound(account_id.to_owned()))?;
        if settings.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(RequestError::new(
                ErrorCode::InvalidTimezone,
                format!("unknown time zone '{}'", settings.timezone),
                Some("timezone"),
            )
            .into());
        }
        if settings.append_to_sent && settings.sent_folder_authoritative == Some(true) {
            return Err(RequestError::new(
                ErrorCode::InvalidSettings,
                "sent_folder_authoritative cannot be true while append_to_sent is on: coldsend's copy is made \
                 only after the server accepted a send, so a send that died waiting for that answer never has one",
                Some("sent_folder_authoritative"),
            )
            .into());
        }
        if let Some(Err(e)) = settings.warmup_ramp.map(|r| r.check()) {
            return Err(RequestError::new(ErrorCode::InvalidSettings, e, Some("warmup_ramp")).into());
        }
        if settings.warmup_start.is_some_and(|d| d > Utc::now().date_naive() + chrono::Duration::days(1)) {
            return Err(RequestError::new(
                ErrorCode::InvalidSettings,
                "warmup_start is in the future: the ramp counts from a day the mailbox already existed",
                Some("warmup_start"),
            )
            .into());
        }
        if !self.accounts.set_sending_settings(&id, &settings).await? {
            return Err(CampaignError::NotFound(account_id.to_owned()));
        }
        // The day (and so the cap) may have changed: let the mailbox look again now.
        wake_mailbox(&self.ledger, &self.dispatch_queue, &id, true).await?;
        Ok(settings)
    }

    /// One-click unsubscribe: suppresses the address everywhere.
    pub async fn unsubscribe(&self, campaign: &CampaignId, lead: &LeadId) -> Result<String, CampaignError> {
        let l = self.store.lead(campaign, lead).await?.ok_or_else(|| CampaignError::NotFound(lead.to_string()))?;
        self.store.suppress(l.email.as_str(), SuppressionReason::Unsubscribed).await?;
        self.store.set_lead_state(campaign, lead, None, LeadState::Unsubscribed, Some("unsubscribed")).await?;
        tracing::info!(campaign_id = %campaign, lead_id = %lead, "unsubscribed");
        Ok(l.email.to_string())
    }
}
