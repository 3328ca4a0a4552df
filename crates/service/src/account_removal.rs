//! Taking a mailbox out of its campaigns before its account is deleted, so no campaign is
//! left pointing at a mailbox that no longer exists.
//!
//! - A RUNNING campaign that sends from it refuses the delete (409 naming the campaigns)
//!   unless forced; a campaign with no other mailbox always refuses.
//! - Otherwise the mailbox leaves each unfinished campaign: leads whose first step has not
//!   started move to the campaign's other mailboxes (the send record's claim keeps a send
//!   the old mailbox already took from going out twice); leads whose thread it started
//!   stop there (FAILED, with the reason), because follow-ups must come from the mailbox
//!   that sent the first email.

use coldsend_core::account::AccountId;
use coldsend_core::campaign::{Campaign, CampaignState};
use coldsend_core::jobs::wake_mailbox;
use coldsend_core::lead::{LeadId, LeadState};
use coldsend_core::send_key::SendKey;
use coldsend_core::storage::campaigns::CampaignRow;
use coldsend_core::storage::ledger::Reassigned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaigns::{CampaignError, CampaignService};

/// What taking a mailbox out of its campaigns did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Released {
    /// Campaigns the mailbox was taken out of.
    pub campaigns: Vec<String>,
    /// Leads moved to another mailbox before their first email.
    pub reassigned: usize,
    /// Leads whose thread this mailbox started: stopped.
    pub stopped: usize,
}

const UNFINISHED: [CampaignState; 3] = [CampaignState::Draft, CampaignState::Running, CampaignState::Paused];

impl CampaignService {
    /// Takes the mailbox out of every unfinished campaign (see the module docs); refuses
    /// with [`CampaignError::Conflict`] naming the campaigns when it cannot.
    pub async fn release_account(&self, account_id: &str, force: bool) -> Result<Released, CampaignError> {
        let acct: AccountId = account_id.parse().map_err(|_| CampaignError::NotFound(account_id.to_owned()))?;
        let mut rows: Vec<CampaignRow> = Vec::new();
        for cid in self.store.account_campaigns(&acct).await? {
            if let Some(row) = self.store.get(&cid).await?
                && UNFINISHED.contains(&row.state)
            {
                rows.push(row);
            }
        }
        let name = |r: &CampaignRow| format!("{} ({})", r.campaign.id, r.campaign.name);
        let alone: Vec<String> = rows.iter().filter(|r| r.campaign.accounts.len() == 1).map(name).collect();
        if !alone.is_empty() {
            return Err(CampaignError::Conflict(format!(
                "the account is the only mailbox of campaign(s) {}: add another mailbox or delete the campaign first",
                alone.join(", ")
            )));
        }
        let running: Vec<String> = rows.iter().filter(|r| r.state == CampaignState::Running).map(name).collect();
        if !running.is_empty() && !force {
            return Err(CampaignError::Conflict(format!(
                "running campaign(s) {} send from this account; pause them, or delete with force=true to move \
                 its leads that have not started to the campaigns' other mailboxes",
                running.join(", ")
            )));
        }
        let mut released = Released::default();
        for row in rows {
            let old = &row.campaign;
            let new =
                Campaign { accounts: old.accounts.iter().copied().filter(|a| *a != acct).collect(), ..old.clone() };
            self.store.replace(old, &new, &UNFINISHED, "changed now").await?;
            let (moved, stopped) = self.move_leads(&new, &acct).await?;
            tracing::info!(campaign_id = %old.id, account_id = %acct, moved, stopped, "mailbox taken out of a campaign");
            released.campaigns.push(old.id.to_string());
            released.reassigned += moved;
            released.stopped += stopped;
            if row.state == CampaignState::Running {
                for a in &new.accounts {
                    wake_mailbox(&self.ledger, &self.dispatch_queue, a, true).await?;
                }
            }
        }
        Ok(released)
    }

    /// Moves the mailbox's not-yet-started leads round-robin to the campaign's mailboxes
    /// and stops the threads it started; returns (moved, stopped).
    pub(crate) async fn move_leads(
        &self,
        campaign: &Campaign,
        from: &AccountId,
    ) -> Result<(usize, usize), CampaignError> {
        let cid = campaign.id;
        let mine = from.to_string();
        let mut leads: Vec<String> =
            self.ledger.lead_accounts(&cid).await?.into_iter().filter(|(_, a)| *a == mine).map(|(l, _)| l).collect();
        leads.sort();
        let states = self.store.lead_states(&cid).await?;
        let progress = self.ledger.lead_progress(&cid).await?;
        let (mut moved, mut stopped) = (0, 0);
        for (i, lead) in leads.iter().enumerate() {
            let Some(lid) = LeadId::parse(lead) else { continue };
            let to = &campaign.accounts[i % campaign.accounts.len()];
            match self.ledger.reassign_first(&cid, &lid, from, to).await? {
                Reassigned::Moved => moved += 1,
                Reassigned::Elsewhere => {}
                Reassigned::Started => {
                    if states.get(lead) != Some(&LeadState::Active) {
                        continue;
                    }
                    let step = progress.get(lead).copied().unwrap_or(0) as usize;
                    let key = SendKey { campaign: cid, lead: lid, step };
                    let why = "its sender account was deleted; the thread cannot go on from another mailbox";
                    self.ledger.cancel(&key, from, Some(LeadState::Failed), why).await?;
                    self.publish_lead_state(&cid, &key.lead, LeadState::Failed, why).await;
                    stopped += 1;
                }
            }
        }
        Ok((moved, stopped))
    }
}
