//! CSV exports for spreadsheets and CRMs: a campaign's leads with their states and
//! progress, and the master inbox's events (filtered like the inbox).

use coldsend_core::storage::inbox::{Cursor, Inbox, InboxFilter};

use crate::campaigns::{CampaignError, CampaignService, parse_campaign_id};

/// Most inbox events one export holds (newest first).
pub const MAX_INBOX_ROWS: usize = 100_000;

fn finish(w: csv::Writer<Vec<u8>>) -> Result<String, CampaignError> {
    let bytes = w.into_inner().map_err(|e| CampaignError::Corrupt(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| CampaignError::Corrupt(e.to_string()))
}

impl CampaignService {
    /// Every lead of the campaign: address, names, company, state, why it stopped, its
    /// mailbox and how many steps it was sent, one row each.
    pub async fn leads_csv(&self, id: &str) -> Result<String, CampaignError> {
        let cid = parse_campaign_id(id)?;
        let leads = self.leads(id).await?;
        let progress = self.ledger.lead_progress(&cid).await?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let header =
            ["id", "email", "first_name", "last_name", "company", "state", "error", "sender_account_id", "steps_sent"];
        w.write_record(header).map_err(|e| CampaignError::Corrupt(e.to_string()))?;
        for l in leads {
            let sent = progress.get(&l.id).copied().unwrap_or(0).to_string();
            let state = l.state.map(|s| s.as_str()).unwrap_or("");
            w.write_record([
                l.id.as_str(),
                l.email.as_str(),
                l.first_name.as_deref().unwrap_or(""),
                l.last_name.as_deref().unwrap_or(""),
                l.company.as_deref().unwrap_or(""),
                state,
                l.error.as_deref().unwrap_or(""),
                l.sender_account_id.as_deref().unwrap_or(""),
                sent.as_str(),
            ])
            .map_err(|e| CampaignError::Corrupt(e.to_string()))?;
        }
        finish(w)
    }
}

/// The inbox events matching `filter`, newest first, as CSV (at most [`MAX_INBOX_ROWS`]).
pub async fn inbox_csv(inbox: &Inbox, filter: &InboxFilter) -> Result<String, CampaignError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "received_at",
        "kind",
        "account_id",
        "campaign_id",
        "lead_id",
        "from",
        "subject",
        "snippet",
        "bounce_recipient",
        "bounce_reason",
        "bounce_class",
        "bounce_status",
    ];
    w.write_record(header).map_err(|e| CampaignError::Corrupt(e.to_string()))?;
    let mut cursor: Option<Cursor> = None;
    let mut rows = 0;
    loop {
        let (events, next) = inbox.page(filter, cursor, 500).await?;
        for e in &events {
            let b = e.bounce.as_ref();
            let class = b.map(|b| serde_json::to_value(b.class).ok().and_then(|v| v.as_str().map(str::to_owned)));
            w.write_record([
                e.id.as_str(),
                e.received_at.as_str(),
                e.kind.as_str(),
                e.account_id.as_str(),
                e.campaign_id.as_deref().unwrap_or(""),
                e.lead_id.as_deref().unwrap_or(""),
                e.from.as_str(),
                e.subject.as_str(),
                e.snippet.as_str(),
                b.map(|b| b.recipient.as_str()).unwrap_or(""),
                b.map(|b| b.reason.as_str()).unwrap_or(""),
                class.flatten().as_deref().unwrap_or(""),
                b.and_then(|b| b.status.as_deref()).unwrap_or(""),
            ])
            .map_err(|e| CampaignError::Corrupt(e.to_string()))?;
        }
        rows += events.len();
        match next.and_then(|n| n.parse::<Cursor>().ok()) {
            Some(c) if rows < MAX_INBOX_ROWS && !events.is_empty() => cursor = Some(c),
            _ => break,
        }
    }
    finish(w)
}
