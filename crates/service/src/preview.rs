//! Seeing a campaign's emails before leads get them: previews (every step rendered and
//! composed for chosen leads, exactly as it would be sent) and test sends (chosen steps
//! sent to a chosen address from a chosen mailbox by a worker, marked as tests).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use coldsend_core::account::{AccountId, EmailAddress, SenderAccount};
use coldsend_core::campaign::Campaign;
use coldsend_core::error_code::ErrorCode;
use coldsend_core::jobs::TestSendJob;
use coldsend_core::lead::{Lead, LeadId, LeadInput};
use coldsend_core::send_key::SendKey;
use coldsend_core::storage::test_sends::{TestSend, TestSendRequest, TestSends};
use coldsend_core::unsubscribe::UnsubscribeSigner;
use coldsend_core::{AccountStatus, RequestError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::campaigns::{CampaignError, CampaignService, parse_campaign_id};
use crate::outgoing::{self, UnsubscribeLinks};

/// The body of `POST /campaigns/{id}/preview`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// One of the campaign's leads.
    pub lead_id: Option<String>,
    /// A lead given inline (not stored), e.g. to try a variable.
    pub lead: Option<LeadInput>,
    /// Otherwise the campaign's first N leads (default 1, at most 20).
    pub first: Option<usize>,
    /// The mailbox to compose from; default: the lead's own, else the campaign's first.
    pub sender_account_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub previews: Vec<LeadPreview>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeadPreview {
    /// Empty for an inline lead.
    pub lead_id: String,
    pub email: String,
    pub sender_account_id: String,
    pub steps: Vec<StepPreview>,
}

/// One step as the lead would get it, or why it cannot be made.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepPreview {
    pub step: usize,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The message's headers in order (From, To, Subject, Message-ID, In-Reply-To, …).
    pub headers: Vec<HeaderView>,
    /// Set when this step cannot be made for this lead (the lead would be FAILED).
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeaderView {
    pub name: String,
    pub value: String,
}

/// The body of `POST /campaigns/{id}/test-send`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendBody {
    /// Where the test emails go.
    pub to: String,
    /// The mailbox to send from (one of the campaign's, ACTIVE).
    pub sender_account_id: String,
    /// Step indexes to send (0 = first); default: every step.
    pub steps: Option<Vec<usize>>,
    /// A lead of the campaign whose fields fill the templates; default: only `to`.
    pub lead_id: Option<String>,
}

#[derive(Clone)]
pub struct PreviewService {
    campaigns: CampaignService,
    signer: Arc<UnsubscribeSigner>,
    test_sends: TestSends,
    queue: RedisStorage<TestSendJob>,
}

const MAX_PREVIEW_LEADS: usize = 20;

fn invalid(code: ErrorCode, field: &str, message: impl Into<String>) -> CampaignError {
    RequestError::new(code, message, Some(field)).into()
}

impl PreviewService {
    pub fn new(
        campaigns: CampaignService,
        signer: Arc<UnsubscribeSigner>,
        test_sends: TestSends,
        queue: RedisStorage<TestSendJob>,
    ) -> Self {
        Self { campaigns, signer, test_sends, queue }
    }

    /// Every step of the campaign rendered and composed for the chosen leads.
    pub async fn preview(&self, id: &str, body: &[u8]) -> Result<PreviewView, CampaignError> {
        let req: PreviewRequest = if body.iter().all(u8::is_ascii_whitespace) {
            PreviewRequest::default()
        } else {
            serde_json::from_slice(body).map_err(|e| invalid(ErrorCode::InvalidBody, "", e.to_string()))?
        };
        let campaign = self.campaign(id).await?;
        let leads: Vec<(String, Lead)> = match (&req.lead_id, req.lead) {
            (Some(lid), _) => vec![(lid.clone(), self.lead(&campaign, lid).await?)],
            (None, Some(input)) => {
                vec![(String::new(), input.into_lead().map_err(|e| invalid(ErrorCode::InvalidField, "lead", e))?)]
            }
            (None, None) => {
                let n = req.first.unwrap_or(1).clamp(1, MAX_PREVIEW_LEADS);
                let mut all = self.campaigns.store.leads(&campaign.id).await?;
                all.sort_by(|a, b| a.0.cmp(&b.0));
                all.into_iter().take(n).collect()
            }
        };
        let mut previews = Vec::new();
        for (lead_id, lead) in leads {
            let account = self.sender(&campaign, req.sender_account_id.as_deref(), &lead_id).await?;
            let steps = (0..campaign.steps.len())
                .map(|step| {
                    let key = SendKey { campaign: campaign.id, lead: lead.id.clone(), step };
                    self.step_preview(&campaign, &account, &key, &lead)
                })
                .collect();
            previews.push(LeadPreview {
                lead_id,
                email: lead.email.to_string(),
                sender_account_id: account.id.to_string(),
                steps,
            });
        }
        Ok(PreviewView { previews })
    }

    fn step_preview(&self, campaign: &Campaign, account: &SenderAccount, key: &SendKey, lead: &Lead) -> StepPreview {
        let public_base_url = &self.campaigns.config.public_base_url;
        let links = UnsubscribeLinks { signer: &self.signer, public_base_url };
        match outgoing::email(campaign, account, key, lead, &links) {
            Ok(email) => StepPreview {
                step: key.step,
                headers: headers(&email.mail.bytes),
                subject: Some(email.rendered.subject),
                text: Some(email.rendered.text),
                html: email.rendered.html,
                error: None,
            },
            Err(e) => StepPreview {
                step: key.step,
                subject: None,
                text: None,
                html: None,
                headers: Vec::new(),
                error: Some(e.to_string()),
            },
        }
    }

    /// Checks and queues a test send; waits up to `wait` for a worker to finish it.
    pub async fn test_send(&self, id: &str, body: &[u8], wait: Duration) -> Result<TestSend, CampaignError> {
        let req: TestSendBody =
            serde_json::from_slice(body).map_err(|e| invalid(ErrorCode::InvalidBody, "", e.to_string()))?;
        let campaign = self.campaign(id).await?;
        let to = EmailAddress::parse(&req.to).map_err(|e| invalid(ErrorCode::InvalidEmail, "to", e))?;
        let account = self.sender(&campaign, Some(&req.sender_account_id), "").await?;
        if let Some(row) = self.campaigns.accounts.get(&account.id).await?
            && row.status != AccountStatus::Active
        {
            return Err(CampaignError::Conflict(format!(
                "sender account {} is {}: only an ACTIVE mailbox sends",
                account.id,
                row.status.as_str()
            )));
        }
        let steps = req.steps.unwrap_or_else(|| (0..campaign.steps.len()).collect());
        if steps.is_empty() || steps.iter().any(|s| *s >= campaign.steps.len()) {
            return Err(invalid(
                ErrorCode::InvalidSteps,
                "steps",
                format!("steps must name 0 to {} (the campaign's steps)", campaign.steps.len() - 1),
            ));
        }
        if let Some(lid) = &req.lead_id {
            self.lead(&campaign, lid).await?;
        }
        let request = TestSendRequest {
            campaign_id: campaign.id.to_string(),
            sender_account_id: account.id.to_string(),
            to: to.to_string(),
            steps,
            lead_id: req.lead_id,
        };
        let tid = self.test_sends.create(&request).await?;
        self.queue
            .clone()
            .push(TestSendJob { id: tid.clone() })
            .await
            .map_err(|e| CampaignError::Unavailable(format!("the test send could not be queued: {e}")))?;
        tracing::info!(test_send_id = %tid, campaign_id = %campaign.id, "test send queued");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = self.get_test_send(&tid).await?;
            if current.state == coldsend_core::storage::test_sends::TestSendState::Done
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(current);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get_test_send(&self, id: &str) -> Result<TestSend, CampaignError> {
        self.test_sends.get(id).await?.ok_or_else(|| CampaignError::Missing(format!("no test send with id '{id}'")))
    }

    async fn campaign(&self, id: &str) -> Result<Campaign, CampaignError> {
        let cid = parse_campaign_id(id)?;
        let row = self.campaigns.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        Ok(row.campaign)
    }

    async fn lead(&self, campaign: &Campaign, lead_id: &str) -> Result<Lead, CampaignError> {
        let missing = || invalid(ErrorCode::InvalidField, "lead_id", format!("the campaign has no lead '{lead_id}'"));
        let lid = LeadId::parse(lead_id).ok_or_else(missing)?;
        self.campaigns.store.lead(&campaign.id, &lid).await?.ok_or_else(missing)
    }

    /// The chosen mailbox (one of the campaign's), else the lead's, else the campaign's first.
    async fn sender(
        &self,
        campaign: &Campaign,
        chosen: Option<&str>,
        lead_id: &str,
    ) -> Result<SenderAccount, CampaignError> {
        let field = "sender_account_id";
        let id: AccountId = match chosen {
            Some(raw) => {
                let id: AccountId = raw
                    .parse()
                    .map_err(|_| invalid(ErrorCode::InvalidAccount, field, format!("'{raw}' is not an id")))?;
                if !campaign.accounts.contains(&id) {
                    return Err(invalid(
                        ErrorCode::UnknownAccount,
                        field,
                        format!("{id} is not one of the campaign's mailboxes"),
                    ));
                }
                id
            }
            None => {
                let assigned = match LeadId::parse(lead_id) {
                    Some(lid) => self.campaigns.ledger.lead_account(&campaign.id, &lid).await?,
                    None => None,
                };
                match assigned.or_else(|| campaign.accounts.first().copied()) {
                    Some(id) => id,
                    None => return Err(CampaignError::Conflict("the campaign has no mailbox".into())),
                }
            }
        };
        let row = self.campaigns.accounts.get(&id).await?;
        row.map(|r| r.account)
            .ok_or_else(|| invalid(ErrorCode::UnknownAccount, field, format!("no sender account {id}")))
    }
}

/// The top-level headers of a composed message, in order, unfolded.
fn headers(bytes: &[u8]) -> Vec<HeaderView> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(bytes) else { return Vec::new() };
    message
        .headers()
        .iter()
        .map(|h| {
            let raw = bytes.get(h.offset_start as usize..h.offset_end as usize).unwrap_or_default();
            let value = String::from_utf8_lossy(raw).split_whitespace().collect::<Vec<_>>().join(" ");
            HeaderView { name: h.name.as_str().to_owned(), value }
        })
        .collect()
}
