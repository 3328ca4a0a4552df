//! Periodic repair, run by every replica (each step is idempotent and atomic):
//! - sends a dead worker left SENDING are requeued (never reached DATA) or marked
//!   UNCERTAIN (died during DATA);
//! - an ACTIVE mailbox with running campaigns but no live chain gets one;
//! - a DISCONNECTED mailbox is re-validated when its backoff says so.

use std::sync::Arc;
use std::time::Duration;

use self::tokio_util_shutdown::Shutdown;
use chrono::Utc;
use coldsend_core::AccountStatus;
use coldsend_core::campaign::CampaignState;
use coldsend_core::jobs::wake_mailbox;
use coldsend_core::lead::LeadState;
use tracing::{info, warn};

use crate::dispatch::DispatchState;

pub mod tokio_util_shutdown {
    /// A shutdown flag the sweeper polls.
    pub type Shutdown = tokio::sync::watch::Receiver<bool>;
}

pub fn interval(state: &DispatchState) -> Duration {
    Duration::from_secs((state.config.stale_send_secs / 4).clamp(1, 30))
}

pub async fn run(state: Arc<DispatchState>, scans: Arc<crate::scan::ScanState>, mut shutdown: Shutdown) {
    let every = interval(&state);
    loop {
        if let Err(e) = resume_and_scan(&state, &scans).await {
            warn!(error = %e, "resume/scan sweep failed; retrying next round");
        }
        if let Err(e) = sweep_once(&state).await {
            warn!(error = %e, "sweep failed; retrying next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Resumes paused leads whose time has come, and starts a scan chain for every ACTIVE
/// mailbox without one.
async fn resume_and_scan(
    state: &DispatchState,
    scans: &crate::scan::ScanState,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for (cid, lid) in state.ledger.due_resumes(Utc::now().timestamp_millis()).await? {
        let resumed =
            state.campaigns.set_lead_state(&cid, &lid, Some(LeadState::Paused), LeadState::Active, None).await?;
        if let (true, Some(acct)) = (resumed, state.ledger.lead_account(&cid, &lid).await?)
            && let Some(row) = state.campaigns.get(&cid).await?
        {
            state.ledger.make_due_now(&cid, &lid, &acct, row.campaign.steps.len()).await?;
            wake_mailbox(&state.ledger, &state.queue, &acct, true).await?;
            info!(campaign_id = %cid, lead_id = %lid, "lead resumed after out of office");
        }
    }
    let rows = readable_accounts(state).await?;
    state.connection.revalidate_due(&rows).await?;
    for row in rows {
        if row.status == AccountStatus::Active && crate::scan::wake_scan(scans, &row.account.id, false).await? {
            info!(account_id = %row.account.id, "started a scan chain");
        }
    }
    Ok(())
}

/// Every account whose record reads; each one that does not is named in the log and left
/// out, so one bad record does not stop the repair of every other mailbox.
async fn readable_accounts(
    state: &DispatchState,
) -> Result<Vec<coldsend_core::storage::accounts::AccountRow>, Box<dyn std::error::Error + Send + Sync>> {
    let mut rows = Vec::new();
    for row in state.accounts.list_each().await? {
        match row {
            Ok(row) => rows.push(row),
            Err(e) => warn!(error = %e, "account unreadable; the sweep leaves it out"),
        }
    }
    Ok(rows)
}

pub async fn sweep_once(state: &DispatchState) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cutoff = Utc::now().timestamp_millis() - (state.config.stale_send_secs * 1000) as i64;
    for key in state.ledger.stale_inflight(cutoff).await? {
        let outcome = state.ledger.sweep(&key).await?;
        info!(send = %key, outcome = ?outcome, "stale send resolved");
    }
    for row in readable_accounts(state).await? {
        if row.status != AccountStatus::Active {
            continue;
        }
        let mut running = false;
        for cid in state.campaigns.account_campaigns(&row.account.id).await? {
            if state.campaigns.get(&cid).await?.is_some_and(|c| c.state == CampaignState::Running) {
                running = true;
                break;
            }
        }
        if running && wake_mailbox(&state.ledger, &state.queue, &row.account.id, false).await? {
            info!(account_id = %row.account.id, "started a dispatch chain");
        }
    }
    Ok(())
}
