//! Campaigns, their leads and the global suppression list in Redis (keys: [`crate::storage::keys`]).

use std::collections::HashMap;

use super::{lua_script, unexpected};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::keys::Keys;
use crate::account::AccountId;
use crate::campaign::{Campaign, CampaignAction, CampaignId, CampaignState, NotAllowed};
use crate::lead::{Lead, LeadId, LeadState};
use crate::send_key::SendKey;

#[derive(Debug, thiserror::Error)]
pub enum CampaignStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored campaign {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("no campaign with id '{0}'")]
    NotFound(CampaignId),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("the campaign changed state concurrently; try again")]
    Concurrent,
    /// The campaign's state does not allow the change (e.g. editing a RUNNING campaign).
    #[error("a {state} campaign cannot be {what}")]
    Locked { state: String, what: &'static str },
}

/// What erasing a lead did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadErase {
    Erased,
    /// Something was sent or claimed: it must be stopped, not erased.
    Started,
    Missing,
}

impl CampaignStoreError {
    /// Whether trying again later can help (Redis unreachable, a concurrent change) or not.
    pub fn is_transient(&self) -> bool {
        matches!(self, CampaignStoreError::Redis(_) | CampaignStoreError::Concurrent)
    }
}

#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub campaign: Campaign,
    pub state: CampaignState,
}

/// What adding a batch of leads did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedLeads {
    pub added: usize,
    pub duplicates: usize,
    /// Added, but on the suppression list: never mailed.
    pub suppressed: usize,
}

lua_script!(TRANSITION, "campaign_transition");

lua_script!(REPLACE, "campaign_replace");

lua_script!(DELETE, "campaign_delete");

lua_script!(DELETE_LEAD, "lead_delete");

lua_script!(ADD_LEADS, "campaign_add_leads");

lua_script!(SET_LEAD_STATE_IF, "campaign_set_lead_state");

/// A campaign statistic counted outside the send scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignCounter {
    /// A bounce found over IMAP (a refusal at send time is counted by `send_fail.lua`).
    Bounced,
}

/// What happened to a step's emails, counted per step in the campaign's stats hash as
/// `step:<n>:<metric>` (sent and send-time failures by the ledger scripts, the rest by scans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMetric {
    Sent,
    Replied,
    AutoReplied,
    /// Address bad: refused at RCPT or a hard DSN.
    HardBounced,
    /// Recipient temporary: a soft DSN.
    SoftBounced,
    Unsubscribed,
    Complained,
    /// A permanent refusal that was not the address's fault.
    Failed,
}

impl StepMetric {
    pub const ALL: [StepMetric; 8] = [
        StepMetric::Sent,
        StepMetric::Replied,
        StepMetric::AutoReplied,
        StepMetric::HardBounced,
        StepMetric::SoftBounced,
        StepMetric::Unsubscribed,
        StepMetric::Complained,
        StepMetric::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepMetric::Sent => "sent",
            StepMetric::Replied => "replied",
            StepMetric::AutoReplied => "auto_replied",
            StepMetric::HardBounced => "hard_bounced",
            StepMetric::SoftBounced => "soft_bounced",
            StepMetric::Unsubscribed => "unsubscribed",
            StepMetric::Complained => "complained",
            StepMetric::Failed => "failed",
        }
    }

    /// The stats-hash field of this metric for `step`.
    pub fn field(self, step: usize) -> String {
        format!("step:{step}:{}", self.as_str())
    }

    /// `(step, metric)` of a stats-hash field written by [`StepMetric::field`].
    pub fn parse_field(field: &str) -> Option<(usize, StepMetric)> {
        let rest = field.strip_prefix("step:")?;
        let (step, metric) = rest.split_once(':')?;
        Some((step.parse().ok()?, StepMetric::ALL.into_iter().find(|m| m.as_str() == metric)?))
    }
}

/// Why an address or domain is on the suppression list (the value of its `p:suppression`
/// field; `send_fail.lua` writes `hard_bounce` for a refusal at RCPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SuppressionReason {
    Unsubscribed,
    HardBounce,
    Complaint,
    /// Added by an operator (API, CLI or an import).
    Manual,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::Unsubscribed,
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The suppression-list field of a whole domain: `@example.com`.
pub fn domain_entry(domain: &str) -> String {
    format!("@{}", domain.to_ascii_lowercase())
}

/// One entry of the suppression list: an address, or a whole domain (`@example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub entry: String,
    pub reason: Option<SuppressionReason>,
}

#[derive(Clone)]
pub struct CampaignStore {
    conn: ConnectionManager,
    keys: Keys,
}

impl CampaignStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn create(&self, c: &Campaign) -> Result<(), CampaignStoreError> {
        let record =
            serde_json::to_string(c).map_err(|e| CampaignStoreError::Corrupt(c.id.to_string(), e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                self.keys.campaign(&c.id),
                &[("record", record.as_str()), ("state", CampaignState::Draft.as_str())],
            )
            .zadd(self.keys.campaigns(), c.id.to_string(), c.created_at.unix_timestamp())
            .ignore();
        for a in &c.accounts {
            pipe.sadd(self.keys.account_campaigns(a), c.id.to_string()).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    pub async fn get(&self, id: &CampaignId) -> Result<Option<CampaignRow>, CampaignStoreError> {
        let (record, state): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.campaign(id))
            .arg("record")
            .arg("state")
            .query_async(&mut self.conn())
            .await?;
        let (Some(record), Some(state)) = (record, state) else { return Ok(None) };
        let corrupt = |m: String| CampaignStoreError::Corrupt(id.to_string(), m);
        let campaign: Campaign = serde_json::from_str(&record).map_err(|e| corrupt(e.to_string()))?;
        let state = CampaignState::parse(&state).ok_or_else(|| corrupt(format!("state {state}")))?;
        Ok(Some(CampaignRow { campaign, state }))
    }

    pub async fn list(&self) -> Result<Vec<CampaignRow>, CampaignStoreError> {
        let ids: Vec<String> = self.conn().zrange(self.keys.campaigns(), 0, -1).await?;
        let mut rows = Vec::new();
        for id in ids.iter().filter_map(|i| i.parse::<CampaignId>().ok()) {
            if let Some(r) = self.get(&id).await? {
                rows.push(r);
            }
        }
        Ok(rows)
    }

    /// Applies a start/pause/resume/stop atomically (compare-and-set on the state).
    pub async fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
    ) -> Result<CampaignState, CampaignStoreError> {
        for _ in 0..3 {
            let Some(row) = self.get(id).await? else {
                return Err(CampaignStoreError::NotFound(*id));
            };
            let next = row.state.apply(action)?;
            let (outcome, _): (String, Option<String>) = TRANSITION
                .key(self.keys.campaign(id))
                .arg(row.state.as_str())
                .arg(next.as_str())
                .invoke_async(&mut self.conn())
                .await?;
            match outcome.as_str() {
                "ok" => return Ok(next),
                "missing" => return Err(CampaignStoreError::NotFound(*id)),
                "conflict" => continue,
                other => return Err(unexpected("campaign_transition", other).into()),
            }
        }
        Err(CampaignStoreError::Concurrent)
    }

    /// Replaces the campaign's record with `new` (same id) if its state is one of
    /// `allowed`, moving the mailbox → campaigns index with the record's mailboxes.
    /// `what` names the change for the refusal.
    pub async fn replace(
        &self,
        old: &Campaign,
        new: &Campaign,
        allowed: &[CampaignState],
        what: &'static str,
    ) -> Result<(), CampaignStoreError> {
        let record =
            serde_json::to_string(new).map_err(|e| CampaignStoreError::Corrupt(new.id.to_string(), e.to_string()))?;
        let added: Vec<&AccountId> = new.accounts.iter().filter(|a| !old.accounts.contains(a)).collect();
        let removed: Vec<&AccountId> = old.accounts.iter().filter(|a| !new.accounts.contains(a)).collect();
        let mut call = REPLACE.key(self.keys.campaign(&new.id));
        for a in added.iter().chain(&removed) {
            call.key(self.keys.account_campaigns(a));
        }
        call.arg(record).arg(new.id.to_string()).arg(added.len());
        for state in allowed {
            call.arg(state.as_str());
        }
        let (outcome, current): (String, Option<String>) = call.invoke_async(&mut self.conn()).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "missing" => Err(CampaignStoreError::NotFound(new.id)),
            "conflict" => Err(CampaignStoreError::Locked { state: current.unwrap_or_default(), what }),
            other => Err(unexpected("campaign_replace", other).into()),
        }
    }

    /// Deletes a campaign that is not RUNNING, then its leads, send records and queues.
    pub async fn delete(&self, c: &Campaign, steps: usize) -> Result<(), CampaignStoreError> {
        let mut call = DELETE.key(self.keys.campaign(&c.id));
        call.key(self.keys.campaigns());
        for a in &c.accounts {
            call.key(self.keys.account_campaigns(a));
        }
        let (outcome,): (String,) = call.arg(c.id.to_string()).invoke_async(&mut self.conn()).await?;
        match outcome.as_str() {
            "deleted" => {}
            "missing" => return Err(CampaignStoreError::NotFound(c.id)),
            "running" => return Err(CampaignStoreError::Locked { state: "RUNNING".into(), what: "deleted" }),
            other => return Err(unexpected("campaign_delete", other).into()),
        }
        // Unreachable now: what is left is removed in batches.
        let leads: Vec<String> = self.conn().hkeys(self.keys.leads(&c.id)).await?;
        for chunk in leads.chunks(200) {
            let mut pipe = redis::pipe();
            for lead in chunk {
                let Some(lid) = LeadId::parse(lead) else { continue };
                for step in 0..steps.max(1) {
                    pipe.del(self.keys.send(&SendKey { campaign: c.id, lead: lid.clone(), step })).ignore();
                }
            }
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        let mut pipe = redis::pipe();
        for key in [
            self.keys.leads(&c.id),
            self.keys.lead_states(&c.id),
            self.keys.lead_errors(&c.id),
            self.keys.lead_accounts(&c.id),
            self.keys.lead_progress(&c.id),
            self.keys.stats(&c.id),
        ] {
            pipe.del(key).ignore();
        }
        for a in &c.accounts {
            pipe.del(self.keys.due_first(a, &c.id)).ignore();
            pipe.del(self.keys.due_followups(a, &c.id)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    /// Erases a lead nothing was sent to yet (a lead whose thread started is left to the
    /// caller to stop).
    pub async fn erase_lead(&self, id: &CampaignId, lead: &LeadId) -> Result<LeadErase, CampaignStoreError> {
        let key = SendKey { campaign: *id, lead: lead.clone(), step: 0 };
        for _ in 0..3 {
            let account: Option<String> = self.conn().hget(self.keys.lead_accounts(id), lead.as_str()).await?;
            let due = match account.as_deref().and_then(|a| a.parse::<AccountId>().ok()) {
                Some(a) => self.keys.due_first(&a, id),
                None => self.keys.leads(id),
            };
            let outcome: String = DELETE_LEAD
                .key(self.keys.leads(id))
                .key(self.keys.lead_states(id))
                .key(self.keys.lead_errors(id))
                .key(self.keys.lead_accounts(id))
                .key(self.keys.send(&key))
                .key(due)
                .arg(lead.as_str())
                .arg(account.unwrap_or_default())
                .arg(key.member())
                .invoke_async(&mut self.conn())
                .await?;
            match outcome.as_str() {
                "erased" => return Ok(LeadErase::Erased),
                "started" => return Ok(LeadErase::Started),
                "missing" => return Ok(LeadErase::Missing),
                "moved" => continue,
                other => return Err(unexpected("lead_delete", other).into()),
            }
        }
        Err(CampaignStoreError::Concurrent)
    }

    /// Marks a RUNNING campaign COMPLETED; `true` when this call did it.
    pub async fn complete(&self, id: &CampaignId) -> Result<bool, CampaignStoreError> {
        let (outcome, _): (String, Option<String>) = TRANSITION
            .key(self.keys.campaign(id))
            .arg(CampaignState::Running.as_str())
            .arg(CampaignState::Completed.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(outcome == "ok")
    }

    /// Adds leads; one with an address already in the campaign is a duplicate and ignored.
    pub async fn add_leads(&self, id: &CampaignId, leads: &[Lead]) -> Result<AddedLeads, CampaignStoreError> {
        let mut total = AddedLeads::default();
        for chunk in leads.chunks(500) {
            let mut inv = ADD_LEADS.prepare_invoke();
            inv.key(self.keys.leads(id)).key(self.keys.lead_states(id)).key(self.keys.suppression());
            // The same address twice in one batch counts once.
            let mut seen = std::collections::HashSet::new();
            for lead in chunk {
                if !seen.insert(lead.id.clone()) {
                    total.duplicates += 1;
                    continue;
                }
                let json = serde_json::to_string(lead)
                    .map_err(|e| CampaignStoreError::Corrupt(id.to_string(), e.to_string()))?;
                inv.arg(lead.id.as_str())
                    .arg(json)
                    .arg(lead.email.as_str().to_ascii_lowercase())
                    .arg(domain_entry(lead.email.domain()));
            }
            if seen.is_empty() {
                continue;
            }
            let (a, d, s): (usize, usize, usize) = inv.invoke_async(&mut self.conn()).await?;
            total.added += a;
            total.duplicates += d;
            total.suppressed += s;
        }
        Ok(total)
    }

    pub async fn lead(&self, id: &CampaignId, lead: &LeadId) -> Result<Option<Lead>, CampaignStoreError> {
        let raw: Option<String> = self.conn().hget(self.keys.leads(id), lead.as_str()).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| CampaignStoreError::Corrupt(id.to_string(), e.to_string())))
            .transpose()
    }

    /// Every lead of the campaign (one read), by lead id.
    pub async fn leads(&self, id: &CampaignId) -> Result<Vec<(String, Lead)>, CampaignStoreError> {
        let raw: HashMap<String, String> = self.conn().hgetall(self.keys.leads(id)).await?;
        Ok(raw.into_iter().filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|l| (k, l))).collect())
    }

    pub async fn lead_states(&self, id: &CampaignId) -> Result<HashMap<String, LeadState>, CampaignStoreError> {
        let raw: HashMap<String, String> = self.conn().hgetall(self.keys.lead_states(id)).await?;
        Ok(raw.into_iter().filter_map(|(k, v)| LeadState::parse(&v).map(|s| (k, s))).collect())
    }

    pub async fn lead_state(&self, id: &CampaignId, lead: &LeadId) -> Result<Option<LeadState>, CampaignStoreError> {
        let raw: Option<String> = self.conn().hget(self.keys.lead_states(id), lead.as_str()).await?;
        Ok(raw.and_then(|s| LeadState::parse(&s)))
    }

    pub async fn lead_errors(&self, id: &CampaignId) -> Result<HashMap<String, String>, CampaignStoreError> {
        Ok(self.conn().hgetall(self.keys.lead_errors(id)).await?)
    }

    /// Sets a lead's state, only if it is currently `from` (any state when `None`).
    pub async fn set_lead_state(
        &self,
        id: &CampaignId,
        lead: &LeadId,
        from: Option<LeadState>,
        to: LeadState,
        error: Option<&str>,
    ) -> Result<bool, CampaignStoreError> {
        let changed: i64 = SET_LEAD_STATE_IF
            .key(self.keys.lead_states(id))
            .key(self.keys.lead_errors(id))
            .arg(lead.as_str())
            .arg(to.as_str())
            .arg(from.map(LeadState::as_str).unwrap_or(""))
            .arg(error.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(changed == 1)
    }

    pub async fn stats(&self, id: &CampaignId) -> Result<HashMap<String, u64>, CampaignStoreError> {
        Ok(self.conn().hgetall(self.keys.stats(id)).await?)
    }

    pub async fn account_campaigns(&self, account: &AccountId) -> Result<Vec<CampaignId>, CampaignStoreError> {
        let ids: Vec<String> = self.conn().smembers(self.keys.account_campaigns(account)).await?;
        Ok(ids.iter().filter_map(|i| i.parse().ok()).collect())
    }

    /// Adds one to a campaign statistic.
    pub async fn count(&self, id: &CampaignId, counter: CampaignCounter) -> Result<(), CampaignStoreError> {
        let field = match counter {
            CampaignCounter::Bounced => "bounced",
        };
        let _: i64 = self.conn().hincr(self.keys.stats(id), field, 1).await?;
        Ok(())
    }

    /// For leads about to join campaign `except`: how each of them ended in every other
    /// campaign where it replied, bounced or unsubscribed (one pipelined round trip per
    /// 1,000 leads).
    pub async fn outcomes_elsewhere(
        &self,
        except: &CampaignId,
        leads: &[LeadId],
    ) -> Result<Vec<(LeadId, CampaignId, LeadState)>, CampaignStoreError> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = self.conn().zrange(self.keys.campaigns(), 0, -1).await?;
        let others: Vec<CampaignId> = ids.iter().filter_map(|c| c.parse().ok()).filter(|c| c != except).collect();
        let mut out = Vec::new();
        if others.is_empty() {
            return Ok(out);
        }
        for chunk in leads.chunks(1000) {
            // One round trip per chunk: an HMGET of each other campaign's lead states.
            let mut pipe = redis::pipe();
            for cid in &others {
                pipe.cmd("HMGET")
                    .arg(self.keys.lead_states(cid))
                    .arg(chunk.iter().map(LeadId::as_str).collect::<Vec<_>>());
            }
            let all: Vec<Vec<Option<String>>> = pipe.query_async(&mut self.conn()).await?;
            for (cid, states) in others.iter().zip(all) {
                for (lead, state) in chunk.iter().zip(states) {
                    let state = state.as_deref().and_then(LeadState::parse);
                    if let Some(s @ (LeadState::Replied | LeadState::Bounced | LeadState::Unsubscribed)) = state {
                        out.push((lead.clone(), *cid, s));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts one event of `metric` for the campaign's step `step`.
    pub async fn count_step(&self, id: &CampaignId, step: usize, metric: StepMetric) -> Result<(), CampaignStoreError> {
        let _: i64 = self.conn().hincr(self.keys.stats(id), metric.field(step), 1).await?;
        Ok(())
    }

    /// Puts an address on the global suppression list.
    pub async fn suppress(&self, email: &str, reason: SuppressionReason) -> Result<(), CampaignStoreError> {
        let _: () = self.conn().hset(self.keys.suppression(), email.to_ascii_lowercase(), reason.as_str()).await?;
        Ok(())
    }

    pub async fn suppression_reason(&self, email: &str) -> Result<Option<String>, CampaignStoreError> {
        Ok(self.conn().hget(self.keys.suppression(), email.to_ascii_lowercase()).await?)
    }

    /// Adds entries (lower-case addresses or `@domain`s); returns how many were new.
    pub async fn suppress_entries(
        &self,
        entries: &[String],
        reason: SuppressionReason,
    ) -> Result<usize, CampaignStoreError> {
        let mut added = 0;
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("HSETNX").arg(self.keys.suppression()).arg(e).arg(reason.as_str());
            }
            let results: Vec<i64> = pipe.query_async(&mut self.conn()).await?;
            added += results.iter().filter(|r| **r == 1).count();
        }
        Ok(added)
    }

    /// Takes an entry off the list; `false` if it was not on it.
    pub async fn unsuppress(&self, entry: &str) -> Result<bool, CampaignStoreError> {
        let n: i64 = self.conn().hdel(self.keys.suppression(), entry.to_ascii_lowercase()).await?;
        Ok(n == 1)
    }

    /// A page of the list, entries containing `search` (all when empty), from `cursor`
    /// (0 to start); the next cursor is 0 after the last page.
    pub async fn suppression_page(
        &self,
        search: &str,
        cursor: u64,
        limit: usize,
    ) -> Result<(Vec<Suppressed>, u64), CampaignStoreError> {
        let pattern = format!("*{}*", glob_escape(&search.to_ascii_lowercase()));
        let mut out = Vec::new();
        let mut next = cursor;
        loop {
            let (c, batch): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(self.keys.suppression())
                .arg(next)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(limit.max(100))
                .query_async(&mut self.conn())
                .await?;
            out.extend(batch.into_iter().map(|(entry, r)| Suppressed { entry, reason: SuppressionReason::parse(&r) }));
            next = c;
            if next == 0 || out.len() >= limit {
                return Ok((out, next));
            }
        }
    }
}

/// Escapes glob characters so a search matches them literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl CampaignStore {}
