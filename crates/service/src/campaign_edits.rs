//! Changing what exists: editing a campaign (while DRAFT or PAUSED), deleting one (not
//! while RUNNING) and taking a lead out (erased when nothing was sent to it, stopped when
//! its thread started).

use coldsend_core::account::AccountId;
use coldsend_core::campaign::CampaignState;
use coldsend_core::lead::{LeadId, LeadState};
use coldsend_core::send_key::SendKey;
use coldsend_core::storage::campaigns::LeadErase;
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaigns::{CampaignError, CampaignService, CampaignView};

/// What taking a lead out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeadRemoval {
    /// Nothing had been sent: the lead is gone.
    Erased,
    /// Its thread had started: it stays, STOPPED, and nothing more is sent to it.
    Stopped,
}

const EDITABLE: [CampaignState; 2] = [CampaignState::Draft, CampaignState::Paused];

impl CampaignService {
    /// Applies a partial campaign body (`PATCH`) while DRAFT or PAUSED. Steps already sent
    /// stay as sent; later steps go out as edited. A mailbox taken out hands its leads
    /// that have not started to the others.
    pub async fn update(&self, id: &str, body: &[u8]) -> Result<CampaignView, CampaignError> {
        let cid = super::campaigns::parse_campaign_id(id)?;
        let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        if !EDITABLE.contains(&row.state) {
            return Err(CampaignError::Conflict(format!(
                "a {} campaign cannot be edited: pause it first",
                row.state.as_str()
            )));
        }
        let new = coldsend_core::campaign_patch::apply(&row.campaign, body)?;
        let added: Vec<AccountId> =
            new.accounts.iter().copied().filter(|a| !row.campaign.accounts.contains(a)).collect();
        self.check_accounts_exist(&added).await?;
        self.store.replace(&row.campaign, &new, &EDITABLE, "edited (pause it first)").await?;
        let removed: Vec<&AccountId> = row.campaign.accounts.iter().filter(|a| !new.accounts.contains(a)).collect();
        for a in removed {
            let (moved, stopped) = self.move_leads(&new, a).await?;
            tracing::info!(campaign_id = %cid, account_id = %a, moved, stopped, "mailbox taken out by an edit");
        }
        let delays = |c: &coldsend_core::campaign::Campaign| -> Vec<i64> {
            c.steps.iter().map(|s| s.delay.as_millis() as i64).collect()
        };
        if delays(&new) != delays(&row.campaign) {
            let moved = self.ledger.reschedule_followups(&cid, &new.accounts, &delays(&new)).await?;
            tracing::info!(campaign_id = %cid, moved, "queued follow-ups moved to the new delays");
        }
        tracing::info!(campaign_id = %cid, "campaign edited");
        self.get(id).await
    }

    /// Deletes a campaign that is not RUNNING, with its leads and send records.
    pub async fn delete(&self, id: &str) -> Result<(), CampaignError> {
        let cid = super::campaigns::parse_campaign_id(id)?;
        let row = self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        if row.state == CampaignState::Running {
            return Err(CampaignError::Conflict("a RUNNING campaign cannot be deleted: pause or stop it first".into()));
        }
        self.store.delete(&row.campaign, row.campaign.steps.len()).await?;
        tracing::info!(campaign_id = %cid, "campaign deleted");
        Ok(())
    }

    /// Takes a lead out: erased if nothing was sent to it, else STOPPED (its queued step
    /// is dropped; what was sent stays on record).
    pub async fn remove_lead(&self, id: &str, lead: &str) -> Result<LeadRemoval, CampaignError> {
        let cid = super::campaigns::parse_campaign_id(id)?;
        let not_found = || CampaignError::Missing(format!("no lead '{lead}' in campaign {id}"));
        self.store.get(&cid).await?.ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
        let lid = LeadId::parse(lead).ok_or_else(not_found)?;
        match self.store.erase_lead(&cid, &lid).await? {
            LeadErase::Missing => Err(not_found()),
            LeadErase::Erased => {
                tracing::info!(campaign_id = %cid, lead_id = %lid, "lead erased");
                Ok(LeadRemoval::Erased)
            }
            LeadErase::Started => {
                let step = self.ledger.lead_progress(&cid).await?.get(lead).copied().unwrap_or(0) as usize;
                let key = SendKey { campaign: cid, lead: lid.clone(), step };
                match self.ledger.lead_account(&cid, &lid).await? {
                    Some(acct) => {
                        self.ledger.cancel(&key, &acct, Some(LeadState::Stopped), "stopped by an operator").await?
                    }
                    None => {
                        let why = Some("stopped by an operator");
                        self.store.set_lead_state(&cid, &lid, Some(LeadState::Active), LeadState::Stopped, why).await?;
                    }
                }
                // A lead that was paused (out of office) is stopped too.
                self.store
                    .set_lead_state(
                        &cid,
                        &lid,
                        Some(LeadState::Paused),
                        LeadState::Stopped,
                        Some("stopped by an operator"),
                    )
                    .await?;
                tracing::info!(campaign_id = %cid, lead_id = %lid, "lead stopped");
                self.publish_lead_state(&cid, &lid, LeadState::Stopped, "stopped by an operator").await;
                Ok(LeadRemoval::Stopped)
            }
        }
    }
}
