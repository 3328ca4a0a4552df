//! The send ledger: per-(campaign, lead, step) send records, the per-mailbox due
//! queues, daily cap counters, the gap marker and dispatch-chain tokens — and the Lua
//! scripts that move a send QUEUED → SENDING → SENT / FAILED / UNCERTAIN atomically.
//!
//! The invariants live here, in Redis, not in any one process:
//! - **cap**: `reserve` increments the mailbox's counter for its local date only while
//!   it is below the effective cap, in the same script that claims the send;
//! - **gap**: `reserve` refuses before `next-send`, and moves it forward when it claims;
//! - **at most once**: only a QUEUED record can be claimed; only the attempt holding the
//!   claim can record its outcome; SENT, FAILED and UNCERTAIN are final for that attempt,
//!   and a record left SENDING by a crash is requeued only if the message provably never
//!   reached DATA (`phase = pre`), else it becomes UNCERTAIN. Where the mailbox's Sent
//!   folder settles an UNCERTAIN send (it is requeued only if absent there), the claim is
//!   taken in `phase = data` and the body needs no mark of its own (`SendPhase`).

use std::collections::HashMap;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::campaigns::StepMetric;
use super::keys::Keys;
use super::{lua_script, unexpected};
use crate::account::AccountId;
use crate::campaign::CampaignId;
use crate::lead::{LeadId, LeadState};
use crate::send_key::SendKey;
use crate::webhook::{EventType, event_json};

/// How long a cap counter outlives its day (time zones span more than a day).
const CAP_TTL_SECS: u64 = 3 * 86_400;

/// The canonical list of a send record's states (field `state` of `p:send:<c>:<lead>:<step>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendState {
    /// Waiting in a due queue; the only state `reserve` claims.
    Queued,
    /// Claimed by one attempt; `phase` says whether the body may have been written.
    Sending,
    /// Accepted by the server (250 after the body), or found in the Sent folder.
    Sent,
    /// Refused for good, or out of attempts.
    Failed,
    /// The connection broke after DATA: maybe delivered. Never resent blindly.
    Uncertain,
    /// Will never be sent (lead stopped, template error).
    Cancelled,
}

impl SendState {
    pub const ALL: [SendState; 6] = [
        SendState::Queued,
        SendState::Sending,
        SendState::Sent,
        SendState::Failed,
        SendState::Uncertain,
        SendState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SendState::Queued => "QUEUED",
            SendState::Sending => "SENDING",
            SendState::Sent => "SENT",
            SendState::Failed => "FAILED",
            SendState::Uncertain => "UNCERTAIN",
            SendState::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a SENDING record stands (field `phase`): what the sweep makes of it if its
/// worker dies. Only `phase = pre` is `Pre`; a SENDING record without the field is `Data`
/// (the mark removes it: see [`Ledger::mark_data_unchecked`]), so whatever the field's
/// fate the doubt falls on the side that never resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendPhase {
    /// The body has not been written: a dead worker's send is requeued.
    Pre,
    /// The body may have been written: a dead worker's send becomes UNCERTAIN. A claim
    /// starts here where the mailbox's Sent folder settles UNCERTAIN sends (requeued only
    /// if absent there), so the outcome is the same as from `Pre` and the body needs no
    /// mark of its own; and where the server already waits for the body (its envelope
    /// went out ahead and was answered), which is written at once.
    Data,
}

impl SendPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SendPhase::Pre => "pre",
            SendPhase::Data => "data",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [SendPhase::Pre, SendPhase::Data].into_iter().find(|v| v.as_str() == s)
    }
}

/// A claim `reserve` granted: what its outcome must name to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// This attempt's id; only it can record the outcome.
    pub attempt: String,
    /// The phase it was claimed in (`ReserveArgs::phase`).
    pub phase: SendPhase,
    /// The mailbox's sends today, this one included.
    pub used: u32,
    /// The counter the slot was taken from (given back if nothing was sent).
    pub cap_key: String,
    /// The campaign's daily counter, when the campaign has a daily limit.
    pub campaign_day_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Claimed: send it now.
    Claimed(Claim),
    StaleChain,
    CampaignNotRunning,
    /// The lead is not ACTIVE (its state, if it has one).
    LeadInactive(Option<LeadState>),
    Suppressed,
    /// The record is not QUEUED (its state, if it has one).
    NotQueued(Option<SendState>),
    CapReached,
    CampaignCapReached,
    /// Too early: the mailbox may send again at this time (ms since the epoch).
    Gap(i64),
}

/// The facts of a `sent` event.
#[derive(serde::Serialize)]
struct SentFacts<'a> {
    account_id: &'a AccountId,
    campaign_id: &'a CampaignId,
    lead_id: &'a str,
    message_id: &'a str,
    step: usize,
    to: Option<&'a str>,
}

/// The facts of a `lead_state` event.
#[derive(serde::Serialize)]
struct LeadStateFacts<'a> {
    campaign_id: &'a CampaignId,
    lead_id: &'a str,
    reason: &'a str,
    state: LeadState,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<usize>,
}

/// What moving a lead to another mailbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reassigned {
    Moved,
    /// Its first step was claimed or sent: the thread belongs to the old mailbox.
    Started,
    /// It is not that mailbox's lead.
    Elsewhere,
}

/// What `release` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Back in its queue for a later attempt.
    Retry,
    /// Out of attempts: FAILED.
    Failed,
    /// This attempt no longer held the claim: nothing changed.
    Stale,
}

/// What `mark_sent` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedSent {
    Recorded,
    /// Already SENT; a Sent-folder confirmation marked it confirmed.
    Confirmed,
    /// Already SENT by this attempt's earlier call: nothing changed.
    Duplicate,
    /// This attempt no longer holds the claim (or nothing to confirm): nothing changed.
    Stale,
}

/// What `mark_sent` did and, when asked to peek, the mailbox's next due sends with their
/// leads, in the order `next_due` would pick them (read in the same script, saving the
/// next emails their reads).
#[derive(Debug, Clone)]
pub struct MarkSent {
    pub outcome: MarkedSent,
    pub next: Vec<Peeked>,
}

/// An accepted send as `mark_sent_and_reserve` records it (what `mark_sent` takes from the
/// send loop).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub key: SendKey,
    pub account: AccountId,
    /// The attempt that held the claim.
    pub attempt: String,
    pub message_id: String,
    /// When the server accepted it (ms).
    pub now_ms: i64,
    /// When the lead's next step falls due (ms), if the campaign has one.
    pub next_due_ms: Option<i64>,
    pub recipient: String,
}

impl Accepted {
    fn as_args(&self) -> MarkSentArgs<'_> {
        MarkSentArgs {
            key: &self.key,
            account: &self.account,
            attempt: Some(&self.attempt),
            message_id: &self.message_id,
            now_ms: self.now_ms,
            next_due_ms: self.next_due_ms,
            recipient: Some(&self.recipient),
        }
    }
}

/// What `send_mark_sent` records (see `Ledger::mark_sent`).
#[derive(Clone, Copy)]
struct MarkSentArgs<'a> {
    key: &'a SendKey,
    account: &'a AccountId,
    attempt: Option<&'a str>,
    message_id: &'a str,
    now_ms: i64,
    next_due_ms: Option<i64>,
    recipient: Option<&'a str>,
}

/// The next due send found by `mark_sent`'s peek.
#[derive(Debug, Clone)]
pub struct Peeked {
    pub due: DueSend,
    /// The lead's record (`None` if it is gone or unreadable: read it again).
    pub lead: Option<crate::lead::Lead>,
    /// The campaigns it was picked among, in order: the peek stands for `next_due` only
    /// over these.
    pub among: Vec<CampaignId>,
}

/// What `mark_sent` should peek at: sends due by `due_by_ms` among `campaigns` (the
/// campaigns the mailbox may send for, in the dispatch loop's order).
#[derive(Debug, Clone, Copy)]
pub struct Peek<'a> {
    pub due_by_ms: i64,
    pub campaigns: &'a [CampaignId],
    /// How many due sends to return at most (at least 1).
    pub count: usize,
}

/// What the sweep did with a send left SENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// Never reached DATA: queued again, slot given back.
    Requeued,
    /// Died during DATA: UNCERTAIN.
    Uncertain,
    /// No longer SENDING (finished meanwhile).
    Gone,
    /// The record changed between the read and the script; the next sweep retries.
    Changed,
}

/// Everything `reserve` checks and writes.
pub struct ReserveArgs<'a> {
    pub key: &'a SendKey,
    pub account: &'a AccountId,
    pub email: &'a str,
    pub chain_token: &'a str,
    pub now_ms: i64,
    pub cap: u32,
    pub cap_key: String,
    /// The campaign's own daily counter and limit, if it has one.
    pub campaign_cap: Option<(String, u32)>,
    /// The least gap before the mailbox's next send (min_gap plus jitter).
    pub gap_ms: i64,
    /// Spread pacing: the end of the window (ms) the cap's remaining sends share; with it
    /// the jitter factor in per mille. `None`: the gap only.
    pub spread: Option<(i64, u32)>,
    /// The phase to claim in: `Data` only where the mailbox's Sent folder settles a
    /// dead worker's send (see `SendPhase::Data`).
    pub phase: SendPhase,
}

lua_script!(RESERVE, "send_reserve");
lua_script!(MARK_DATA, "send_mark_data");
lua_script!(MARK_SENT, "send_mark_sent");
lua_script!(MARK_SENT_AND_RESERVE, "send_mark_sent_and_reserve", functions: ["mark_sent" = "send_mark_sent", "reserve" = "send_reserve"]);
lua_script!(RELEASE, "send_release");
lua_script!(FAIL, "send_fail");
lua_script!(UNCERTAIN, "send_uncertain");
lua_script!(CANCEL, "send_cancel");

lua_script!(REASSIGN, "lead_reassign");
lua_script!(ENQUEUE_FIRST, "send_enqueue_first");
lua_script!(REQUEUE_UNCERTAIN, "send_requeue_uncertain");
lua_script!(SETTLE_UNCERTAIN, "send_settle_uncertain");
lua_script!(SWEEP, "send_sweep");
lua_script!(START_CHAIN, "chain_start");
lua_script!(KEEP_CHAIN, "chain_keep");

/// A send record as stored (every field of `p:send:<campaign>:<lead>:<step>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub state: SendState,
    /// The mailbox it goes out from.
    pub account: Option<AccountId>,
    /// Failed attempts so far (transient failures).
    pub attempts: u32,
    /// The attempt holding (or last holding) the claim.
    pub attempt: Option<String>,
    /// While SENDING: whether the body may have been written.
    pub phase: Option<SendPhase>,
    pub message_id: Option<String>,
    pub error: Option<String>,
    /// Claim time (ms).
    pub claimed_at: Option<i64>,
    pub sent_at: Option<i64>,
    /// Seen in the mailbox's Sent folder.
    pub confirmed: bool,
    /// An UNCERTAIN send settled without a resend.
    pub settled: bool,
}

impl SendRecord {
    fn from_fields(f: &HashMap<String, String>) -> Option<Self> {
        let state = SendState::parse(f.get("state")?)?;
        let text = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
        Some(Self {
            state,
            account: f.get("account").and_then(|a| a.parse().ok()),
            attempts: f.get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
            attempt: text("attempt"),
            // `phase` is left behind once a send is over; it only means something while SENDING.
            phase: (state == SendState::Sending).then(|| match f.get("phase").map(String::as_str) {
                Some("pre") => SendPhase::Pre,
                _ => SendPhase::Data,
            }),
            message_id: text("message_id"),
            error: text("error"),
            claimed_at: f.get("at").and_then(|a| a.parse().ok()),
            sent_at: f.get("sent_at").and_then(|a| a.parse().ok()),
            confirmed: f.contains_key("confirmed"),
            settled: f.contains_key("settled"),
        })
    }
}

/// A due send picked for a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSend {
    pub key: SendKey,
    pub followup: bool,
    pub due_ms: i64,
}

#[derive(Clone)]
pub struct Ledger {
    conn: ConnectionManager,
    keys: Keys,
}

impl Ledger {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Queues the first step of each (lead, account) pair not yet assigned; returns how many.
    pub async fn enqueue_first_steps(
        &self,
        campaign: &CampaignId,
        assignments: &[(LeadId, AccountId)],
        due_ms: i64,
    ) -> Result<usize, redis::RedisError> {
        let mut total = 0;
        for chunk in assignments.chunks(500) {
            let mut inv = ENQUEUE_FIRST.prepare_invoke();
            inv.key(self.keys.lead_states(campaign)).key(self.keys.lead_accounts(campaign)).arg(due_ms);
            for (lead, account) in chunk {
                let key = SendKey { campaign: *campaign, lead: lead.clone(), step: 0 };
                inv.key(self.keys.send(&key)).key(self.keys.due_first(account, campaign));
                inv.arg(lead.as_str()).arg(account.to_string()).arg(key.member());
            }
            let n: usize = inv.invoke_async(&mut self.conn()).await?;
            total += n;
        }
        Ok(total)
    }

    /// Leads already given to an account, by account.
    pub async fn lead_accounts(&self, campaign: &CampaignId) -> Result<HashMap<String, String>, redis::RedisError> {
        self.conn().hgetall(self.keys.lead_accounts(campaign)).await
    }

    /// The mailbox a lead's steps go out from, once assigned.
    pub async fn lead_account(
        &self,
        campaign: &CampaignId,
        lead: &LeadId,
    ) -> Result<Option<AccountId>, redis::RedisError> {
        let raw: Option<String> = self.conn().hget(self.keys.lead_accounts(campaign), lead.as_str()).await?;
        Ok(raw.and_then(|a| a.parse().ok()))
    }

    /// Sends of the mailbox on `cap_key`'s day.
    pub async fn used(&self, cap_key: &str) -> Result<u32, redis::RedisError> {
        let v: Option<u32> = self.conn().get(cap_key).await?;
        Ok(v.unwrap_or(0))
    }

    pub async fn next_send_ms(&self, account: &AccountId) -> Result<i64, redis::RedisError> {
        let v: Option<i64> = self.conn().get(self.keys.next_send(account)).await?;
        Ok(v.unwrap_or(0))
    }

    /// The most urgent due send of a mailbox among `campaigns`: due follow-ups first,
    /// then first steps, each earliest first. One round trip.
    pub async fn next_due(
        &self,
        account: &AccountId,
        campaigns: &[CampaignId],
        now_ms: i64,
    ) -> Result<Option<DueSend>, redis::RedisError> {
        if campaigns.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for c in campaigns {
            pipe.zrangebyscore_limit_withscores(self.keys.due_followups(account, c), "-inf", now_ms, 0, 1);
        }
        for c in campaigns {
            pipe.zrangebyscore_limit_withscores(self.keys.due_first(account, c), "-inf", now_ms, 0, 1);
        }
        let heads: Vec<Vec<(String, f64)>> = pipe.query_async(&mut self.conn()).await?;
        let (followups, firsts) = heads.split_at(campaigns.len());
        for (set, followup) in [(followups, true), (firsts, false)] {
            let best =
                set.iter().filter_map(|h| h.first()).min_by(|a, b| a.1.total_cmp(&b.1)).and_then(|(m, s)| {
                    SendKey::parse_member(m).map(|key| DueSend { key, followup, due_ms: *s as i64 })
                });
            if best.is_some() {
                return Ok(best);
            }
        }
        Ok(None)
    }

    /// The earliest due time of anything queued for the mailbox in `campaigns`.
    pub async fn earliest_due(
        &self,
        account: &AccountId,
        campaigns: &[CampaignId],
    ) -> Result<Option<i64>, redis::RedisError> {
        if campaigns.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for c in campaigns {
            pipe.zrange_withscores(self.keys.due_followups(account, c), 0, 0);
            pipe.zrange_withscores(self.keys.due_first(account, c), 0, 0);
        }
        let heads: Vec<Vec<(String, f64)>> = pipe.query_async(&mut self.conn()).await?;
        Ok(heads.iter().filter_map(|h| h.first()).map(|(_, s)| *s as i64).min())
    }

    /// The campaign-day key a script gets when the campaign has no daily limit (never written).
    fn no_campaign_day(&self, c: &CampaignId) -> String {
        self.keys.campaign_day(c, chrono::NaiveDate::MIN)
    }

    /// Claims the send if chain, campaign, lead, suppression, state, caps and gap allow.
    pub async fn reserve(&self, a: &ReserveArgs<'_>) -> Result<Reservation, redis::RedisError> {
        let attempt = new_attempt();
        let mut call = ScriptCall::new(&RESERVE);
        self.reserve_call(&mut call, a, &attempt);
        let (outcome, detail): (String, String) = call.invocation.invoke_async(&mut self.conn()).await?;
        parse_reservation(a, attempt, &outcome, &detail)
    }

    /// Records `sent` and claims `next` in one call (one round trip): the two scripts'
    /// bodies run one after the other, atomically, each exactly as when called alone.
    pub async fn mark_sent_and_reserve(
        &self,
        sent: &Accepted,
        next: &ReserveArgs<'_>,
    ) -> Result<(MarkSent, Reservation), redis::RedisError> {
        let attempt = new_attempt();
        let mut call = ScriptCall::new(&MARK_SENT_AND_RESERVE);
        self.mark_sent_call(&mut call, &sent.as_args(), None);
        let (keys, args) = (call.keys, call.args);
        self.reserve_call(&mut call, next, &attempt);
        call.arg(keys).arg(args);
        let reply: Vec<String> = call.invocation.invoke_async(&mut self.conn()).await?;
        let [outcome, detail, recorded @ ..] = reply.as_slice() else {
            return Err(unexpected("send_mark_sent_and_reserve", &reply.join(" ")));
        };
        Ok((parse_mark_sent(recorded, None)?, parse_reservation(next, attempt, outcome, detail)?))
    }

    /// `send_reserve`'s keys and arguments.
    fn reserve_call(&self, call: &mut ScriptCall<'_>, a: &ReserveArgs<'_>, attempt: &str) {
        let c = &a.key.campaign;
        let (camp_key, camp_cap) = match &a.campaign_cap {
            Some((k, n)) => (k.clone(), *n),
            None => (self.no_campaign_day(c), 0),
        };
        call.key(self.keys.chain(a.account))
            .key(self.keys.campaign(c))
            .key(self.keys.lead_states(c))
            .key(self.keys.suppression())
            .key(self.keys.send(a.key))
            .key(&a.cap_key)
            .key(&camp_key)
            .key(self.keys.next_send(a.account))
            .key(self.keys.inflight())
            .arg(a.chain_token)
            .arg(a.now_ms)
            .arg(a.cap)
            .arg(camp_cap)
            .arg(a.gap_ms)
            .arg(a.key.lead.as_str())
            .arg(a.email.to_ascii_lowercase())
            .arg(attempt)
            .arg(a.key.member())
            .arg(a.account.to_string())
            .arg(CAP_TTL_SECS)
            .arg(super::campaigns::domain_entry(a.email.rsplit('@').next().unwrap_or("")))
            .arg(a.spread.map_or(0, |(until, _)| until))
            .arg(a.spread.map_or(1000, |(_, jitter)| jitter))
            .arg(a.phase.as_str());
    }

    /// Records that the message body is about to be sent: from here on a crash leaves
    /// the outcome unknown. `false` means the claim was lost (swept after a stall):
    /// the caller must not send.
    pub async fn mark_data_phase(&self, key: &SendKey, attempt: &str) -> Result<bool, redis::RedisError> {
        let n: i64 = MARK_DATA.key(self.keys.send(key)).arg(attempt).invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// `mark_data_phase` without its check of the claim, for a claim taken in `Pre` too
    /// young to have been swept: one HDEL of `phase`, which creates nothing. `false` means
    /// the field was gone — the record was deleted (or swept after all): the caller must
    /// not send.
    pub async fn mark_data_unchecked(&self, key: &SendKey) -> Result<bool, redis::RedisError> {
        let removed: i64 = self.conn().hdel(self.keys.send(key), "phase").await?;
        Ok(removed == 1)
    }

    /// Records a 250 for the attempt holding the claim and queues the lead's next step (if
    /// any, and the lead is active). `attempt = None` is a confirmation from the Sent folder.
    /// `recipient` is named in the `sent` event (the send loop knows it; a confirmation
    /// from the Sent folder does not). With a `peek`, a recorded send also returns the
    /// mailbox's next due send among the peek's campaigns, as `next_due` would pick it,
    /// with its lead.
    #[allow(clippy::too_many_arguments)]
    pub async fn mark_sent(
        &self,
        key: &SendKey,
        account: &AccountId,
        attempt: Option<&str>,
        message_id: &str,
        now_ms: i64,
        next_due_ms: Option<i64>,
        recipient: Option<&str>,
        peek: Option<Peek<'_>>,
    ) -> Result<MarkSent, redis::RedisError> {
        let record = MarkSentArgs { key, account, attempt, message_id, now_ms, next_due_ms, recipient };
        self.write_sent(&record, peek).await
    }

    /// `mark_sent` for an email the send loop saw accepted.
    pub async fn record_accepted(&self, a: &Accepted, peek: Option<Peek<'_>>) -> Result<MarkSent, redis::RedisError> {
        self.write_sent(&a.as_args(), peek).await
    }

    async fn write_sent(
        &self,
        record: &MarkSentArgs<'_>,
        peek: Option<Peek<'_>>,
    ) -> Result<MarkSent, redis::RedisError> {
        let mut call = ScriptCall::new(&MARK_SENT);
        self.mark_sent_call(&mut call, record, peek);
        let reply: Vec<String> = call.invocation.invoke_async(&mut self.conn()).await?;
        parse_mark_sent(&reply, peek)
    }

    /// `send_mark_sent`'s keys and arguments.
    fn mark_sent_call(&self, call: &mut ScriptCall<'_>, r: &MarkSentArgs<'_>, peek: Option<Peek<'_>>) {
        let MarkSentArgs { key, account, attempt, message_id, now_ms, next_due_ms, recipient } = *r;
        let c = &key.campaign;
        let next = key.next_step();
        call.key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.message_ids())
            .key(self.keys.stats(c))
            .key(self.keys.lead_states(c))
            .key(self.keys.send(&next))
            .key(self.keys.lead_progress(c))
            .key(self.keys.uncertain(account))
            .key(self.keys.outbox())
            .key(self.keys.recent_sends(account))
            .key(self.keys.hourly_sends(account, &utc_day(now_ms)))
            .key(self.keys.webhooks());
        for p in peek.iter().flat_map(|p| p.campaigns) {
            call.key(self.keys.due_followups(account, p)).key(self.keys.due_first(account, p)).key(self.keys.leads(p));
        }
        call.arg(attempt.unwrap_or(""))
            .arg(key.member())
            .arg(message_id)
            .arg(now_ms)
            .arg(key.lead.as_str())
            .arg(if next_due_ms.is_some() { next.member() } else { String::new() })
            .arg(next_due_ms.unwrap_or(0))
            .arg(event_json(
                EventType::Sent,
                &SentFacts {
                    account_id: account,
                    campaign_id: c,
                    lead_id: key.lead.as_str(),
                    message_id,
                    step: key.step,
                    to: recipient,
                },
            ))
            // Only a last step can complete the lead: the script reads it only then.
            .arg(match next_due_ms {
                Some(_) => String::new(),
                None => event_json(
                    EventType::LeadState,
                    &LeadStateFacts {
                        campaign_id: c,
                        lead_id: key.lead.as_str(),
                        reason: "every step sent",
                        state: LeadState::Completed,
                        step: None,
                    },
                ),
            })
            .arg(StepMetric::Sent.field(key.step))
            .arg(utc_hour(now_ms))
            .arg(peek.map(|p| p.due_by_ms.to_string()).unwrap_or_default())
            .arg(key.step)
            .arg(peek.map_or(0, |p| p.count.max(1)));
    }

    /// A transient failure that provably sent nothing: slot back, retry at `retry_at_ms`
    /// (or FAILED after `max_attempts`).
    #[allow(clippy::too_many_arguments)]
    pub async fn release(
        &self,
        key: &SendKey,
        account: &AccountId,
        followup: bool,
        claim: &Claim,
        retry_at_ms: i64,
        max_attempts: u32,
        error: &str,
    ) -> Result<Released, redis::RedisError> {
        let c = &key.campaign;
        let due = if followup { self.keys.due_followups(account, c) } else { self.keys.due_first(account, c) };
        let outcome: String = RELEASE
            .key(self.keys.send(key))
            .key(due)
            .key(self.keys.inflight())
            .key(self.keys.lead_states(c))
            .key(self.keys.stats(c))
            .key(self.keys.lead_errors(c))
            .key(&claim.cap_key)
            .key(claim.campaign_day_key.clone().unwrap_or_else(|| self.no_campaign_day(c)))
            .arg(&claim.attempt)
            .arg(key.member())
            .arg(retry_at_ms)
            .arg(max_attempts)
            .arg(error)
            .arg(key.lead.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome.as_str() {
            "retry" => Released::Retry,
            "failed" => Released::Failed,
            "stale" => Released::Stale,
            other => return Err(unexpected("send_release", other)),
        })
    }

    /// A permanent failure (5xx): FAILED, or BOUNCED and suppressed for recipient errors.
    /// `false` if this attempt no longer held the claim.
    pub async fn fail(
        &self,
        key: &SendKey,
        account: &AccountId,
        claim: &Claim,
        error: &str,
        bounced_email: Option<&str>,
    ) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let (lead_state, stat) =
            if bounced_email.is_some() { (LeadState::Bounced, "bounced") } else { (LeadState::Failed, "failed") };
        let n: i64 = FAIL
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.lead_states(c))
            .key(self.keys.lead_errors(c))
            .key(self.keys.stats(c))
            .key(self.keys.suppression())
            .key(&claim.cap_key)
            .key(claim.campaign_day_key.clone().unwrap_or_else(|| self.no_campaign_day(c)))
            .key(self.keys.outbox())
            .key(self.keys.recent_sends(account))
            .key(self.keys.webhooks())
            .arg(&claim.attempt)
            .arg(key.member())
            .arg(error)
            .arg(key.lead.as_str())
            .arg(lead_state.as_str())
            .arg(bounced_email.map(str::to_ascii_lowercase).unwrap_or_default())
            .arg(stat)
            .arg(event_json(
                EventType::LeadState,
                &LeadStateFacts {
                    campaign_id: c,
                    lead_id: key.lead.as_str(),
                    reason: error,
                    state: lead_state,
                    step: Some(key.step),
                },
            ))
            .arg(if bounced_email.is_some() { StepMetric::HardBounced } else { StepMetric::Failed }.field(key.step))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The outcome is unknown: UNCERTAIN, out of the queues, never resent blindly.
    /// `false` if this attempt no longer held the claim.
    pub async fn uncertain(
        &self,
        key: &SendKey,
        account: &AccountId,
        claim: &Claim,
        error: &str,
    ) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let n: i64 = UNCERTAIN
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.stats(c))
            .key(self.keys.uncertain(account))
            .arg(key.member())
            .arg(error)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(&claim.attempt)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Takes a send out of the queues; with `lead_state`, also ends the lead (if active).
    pub async fn cancel(
        &self,
        key: &SendKey,
        account: &AccountId,
        lead_state: Option<LeadState>,
        error: &str,
    ) -> Result<(), redis::RedisError> {
        let c = &key.campaign;
        let _: i64 = CANCEL
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.lead_states(c))
            .key(self.keys.lead_errors(c))
            .key(self.keys.stats(c))
            .arg(key.member())
            .arg(key.lead.as_str())
            .arg(lead_state.map(LeadState::as_str).unwrap_or(""))
            .arg(error)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Moves a lead whose first step has not started from mailbox `from` to `to` (its
    /// queued first step with it).
    pub async fn reassign_first(
        &self,
        campaign: &CampaignId,
        lead: &LeadId,
        from: &AccountId,
        to: &AccountId,
    ) -> Result<Reassigned, redis::RedisError> {
        let key = SendKey { campaign: *campaign, lead: lead.clone(), step: 0 };
        let outcome: String = REASSIGN
            .key(self.keys.lead_accounts(campaign))
            .key(self.keys.send(&key))
            .key(self.keys.due_first(from, campaign))
            .key(self.keys.due_first(to, campaign))
            .arg(lead.as_str())
            .arg(from.to_string())
            .arg(to.to_string())
            .arg(key.member())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome.as_str() {
            "moved" => Reassigned::Moved,
            "started" => Reassigned::Started,
            _ => Reassigned::Elsewhere,
        })
    }

    /// Makes `token` the mailbox's chain (replacing any other unless `only_if_absent`).
    pub async fn start_chain(
        &self,
        account: &AccountId,
        token: &str,
        lease_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, redis::RedisError> {
        self.start_chain_at(&self.keys.chain(account), token, lease_ms, only_if_absent).await
    }

    /// `start_chain` for any chain key (send or scan chains).
    pub async fn start_chain_at(
        &self,
        chain_key: &str,
        token: &str,
        lease_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, redis::RedisError> {
        let n: i64 = START_CHAIN
            .key(chain_key)
            .arg(token)
            .arg(lease_ms)
            .arg(if only_if_absent { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Renews the chain's lease if `token` is still current (`lease_ms == 0` ends it).
    pub async fn keep_chain(&self, account: &AccountId, token: &str, lease_ms: u64) -> Result<bool, redis::RedisError> {
        self.keep_chain_at(&self.keys.chain(account), token, lease_ms).await
    }

    /// `keep_chain` for any chain key (send or scan chains).
    pub async fn keep_chain_at(&self, chain_key: &str, token: &str, lease_ms: u64) -> Result<bool, redis::RedisError> {
        let n: i64 = KEEP_CHAIN.key(chain_key).arg(token).arg(lease_ms).invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// A send seen in the Sent folder: an UNCERTAIN one becomes SENT (and the lead's next
    /// step is queued as after any send), a SENT one is marked confirmed.
    pub async fn confirm_sent(
        &self,
        key: &SendKey,
        message_id: &str,
        next_due_ms: Option<i64>,
    ) -> Result<MarkedSent, redis::RedisError> {
        let account: Option<String> = self.conn().hget(self.keys.send(key), "account").await?;
        let Some(account) = account.and_then(|a| a.parse::<AccountId>().ok()) else { return Ok(MarkedSent::Stale) };
        let marked = self
            .mark_sent(key, &account, None, message_id, chrono::Utc::now().timestamp_millis(), next_due_ms, None, None)
            .await?;
        Ok(marked.outcome)
    }

    /// UNCERTAIN sends of a mailbox older than `older_than_ms` (not found in Sent since).
    pub async fn uncertain_before(
        &self,
        account: &AccountId,
        older_than_ms: i64,
    ) -> Result<Vec<SendKey>, redis::RedisError> {
        let members: Vec<String> =
            self.conn().zrangebyscore(self.keys.uncertain(account), "-inf", older_than_ms).await?;
        Ok(members.iter().filter_map(|m| SendKey::parse_member(m)).collect())
    }

    /// Sends an UNCERTAIN send again, its cap slot given back: only for mailboxes whose Sent
    /// folder is authoritative, once Sent showed it never went out.
    pub async fn requeue_uncertain(&self, key: &SendKey, account: &AccountId) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let due = if key.step == 0 { self.keys.due_first(account, c) } else { self.keys.due_followups(account, c) };
        let (cap_key, day_key) = self.counter_keys(key).await?;
        let n: i64 = REQUEUE_UNCERTAIN
            .key(self.keys.send(key))
            .key(due)
            .key(self.keys.uncertain(account))
            .key(self.keys.stats(c))
            .key(cap_key.unwrap_or_else(|| self.no_campaign_day(c)))
            .key(day_key.unwrap_or_else(|| self.no_campaign_day(c)))
            .arg(key.member())
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Settles an UNCERTAIN send without resending it (the mailbox's Sent folder cannot
    /// prove it absent): it stays UNCERTAIN and the lead's sequence goes on.
    pub async fn settle_uncertain(
        &self,
        key: &SendKey,
        account: &AccountId,
        next_due_ms: Option<i64>,
    ) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let next = key.next_step();
        let n: i64 = SETTLE_UNCERTAIN
            .key(self.keys.send(key))
            .key(self.keys.uncertain(account))
            .key(self.keys.lead_states(c))
            .key(self.keys.send(&next))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.lead_errors(c))
            .arg(key.member())
            .arg(key.lead.as_str())
            .arg(if next_due_ms.is_some() { next.member() } else { String::new() })
            .arg(next_due_ms.unwrap_or(0))
            .arg(format!(
                "step {} may or may not have been delivered (the connection broke after DATA); not resent",
                key.step + 1
            ))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The counter keys a send's slot was taken from (`cap_key`, `campaign_day_key`).
    async fn counter_keys(&self, key: &SendKey) -> Result<(Option<String>, Option<String>), redis::RedisError> {
        let (cap, day): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.send(key))
            .arg("cap_key")
            .arg("campaign_day_key")
            .query_async(&mut self.conn())
            .await?;
        Ok((cap.filter(|k| !k.is_empty()), day.filter(|k| !k.is_empty())))
    }

    /// After a campaign's step delays were edited: each queued follow-up becomes due its
    /// step's new delay after the previous step was sent. `delays_ms[n]` is step n's
    /// delay; follow-ups of steps beyond it are left (the send loop completes those leads).
    pub async fn reschedule_followups(
        &self,
        campaign: &CampaignId,
        accounts: &[AccountId],
        delays_ms: &[i64],
    ) -> Result<usize, redis::RedisError> {
        let mut moved = 0;
        for account in accounts {
            let due_key = self.keys.due_followups(account, campaign);
            let members: Vec<String> = self.conn().zrange(&due_key, 0, -1).await?;
            let keys: Vec<SendKey> = members
                .iter()
                .filter_map(|m| SendKey::parse_member(m))
                .filter(|k| k.step > 0 && k.step < delays_ms.len())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let mut reads = redis::pipe();
            for k in &keys {
                reads.hget(self.keys.send(&SendKey { step: k.step - 1, ..k.clone() }), "sent_at");
            }
            let sent_at: Vec<Option<i64>> = reads.query_async(&mut self.conn()).await?;
            let mut writes = redis::pipe();
            for (k, at) in keys.iter().zip(sent_at) {
                let Some(at) = at else { continue };
                writes.cmd("ZADD").arg(&due_key).arg("XX").arg(at + delays_ms[k.step]).arg(k.member()).ignore();
                moved += 1;
            }
            writes.query_async::<()>(&mut self.conn()).await?;
        }
        Ok(moved)
    }

    /// Moves a queued send's due time (a paused lead's step waits, it is not dropped).
    pub async fn defer(&self, key: &SendKey, account: &AccountId, until_ms: i64) -> Result<(), redis::RedisError> {
        let c = &key.campaign;
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(self.keys.due_followups(account, c))
            .arg("XX")
            .arg(until_ms)
            .arg(key.member())
            .ignore()
            .cmd("ZADD")
            .arg(self.keys.due_first(account, c))
            .arg("XX")
            .arg(until_ms)
            .arg(key.member())
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Paused leads whose resume time has come, removed from the schedule.
    pub async fn due_resumes(&self, now_ms: i64) -> Result<Vec<(CampaignId, LeadId)>, redis::RedisError> {
        let members: Vec<String> = self.conn().zrangebyscore(self.keys.resumes(), "-inf", now_ms).await?;
        for m in &members {
            let _: i64 = self.conn().zrem(self.keys.resumes(), m).await?;
        }
        Ok(members
            .iter()
            .filter_map(|m| {
                let (c, l) = m.split_once(':')?;
                Some((c.parse().ok()?, LeadId::parse(l)?))
            })
            .collect())
    }

    /// Whether any lead of `campaign` waits in the resume schedule (out of office).
    pub async fn has_resumes(&self, campaign: &CampaignId) -> Result<bool, redis::RedisError> {
        let members: Vec<String> = self.conn().zrange(self.keys.resumes(), 0, -1).await?;
        let prefix = format!("{campaign}:");
        Ok(members.iter().any(|m| m.starts_with(&prefix)))
    }

    /// Steps sent so far, by lead id.
    pub async fn lead_progress(&self, campaign: &CampaignId) -> Result<HashMap<String, u64>, redis::RedisError> {
        self.conn().hgetall(self.keys.lead_progress(campaign)).await
    }

    /// Makes a resumed lead's waiting step due now.
    pub async fn make_due_now(
        &self,
        campaign: &CampaignId,
        lead: &LeadId,
        account: &AccountId,
        steps: usize,
    ) -> Result<(), redis::RedisError> {
        let now = chrono::Utc::now().timestamp_millis();
        for step in 0..steps {
            let key = SendKey { campaign: *campaign, lead: lead.clone(), step };
            let state: Option<String> = self.conn().hget(self.keys.send(&key), "state").await?;
            if state.as_deref().and_then(SendState::parse) == Some(SendState::Queued) {
                self.defer(&key, account, now).await?;
            }
        }
        Ok(())
    }

    /// Sends left SENDING since before `older_than_ms`.
    pub async fn stale_inflight(&self, older_than_ms: i64) -> Result<Vec<SendKey>, redis::RedisError> {
        let members: Vec<String> = self.conn().zrangebyscore(self.keys.inflight(), "-inf", older_than_ms).await?;
        Ok(members.iter().filter_map(|m| SendKey::parse_member(m)).collect())
    }

    /// Resolves a send a dead worker left SENDING: requeued if it never reached DATA,
    /// else UNCERTAIN.
    pub async fn sweep(&self, key: &SendKey) -> Result<Swept, redis::RedisError> {
        let c = &key.campaign;
        let (account, cap, day): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.send(key))
            .arg("account")
            .arg("cap_key")
            .arg("campaign_day_key")
            .query_async(&mut self.conn())
            .await?;
        let (cap, day) = (cap.unwrap_or_default(), day.unwrap_or_default());
        let Some(acct) = account.as_deref().and_then(|a| a.parse::<AccountId>().ok()) else {
            // No claim was ever recorded on it: nothing to resolve but the inflight entry.
            let _: i64 = self.conn().zrem(self.keys.inflight(), key.member()).await?;
            return Ok(Swept::Gone);
        };
        let placeholder = || self.no_campaign_day(c);
        let outcome: String = SWEEP
            .key(self.keys.send(key))
            .key(self.keys.inflight())
            .key(self.keys.stats(c))
            .key(if cap.is_empty() { placeholder() } else { cap.clone() })
            .key(if day.is_empty() { placeholder() } else { day.clone() })
            .key(self.keys.uncertain(&acct))
            .arg(key.member())
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(acct.to_string())
            .arg(&cap)
            .arg(&day)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome.as_str() {
            "requeued" => Swept::Requeued,
            "uncertain" => Swept::Uncertain,
            "gone" => Swept::Gone,
            "changed" => Swept::Changed,
            other => return Err(unexpected("send_sweep", other)),
        })
    }

    /// A send record, typed (`None` if it does not exist).
    pub async fn send_record(&self, key: &SendKey) -> Result<Option<SendRecord>, redis::RedisError> {
        let fields: HashMap<String, String> = self.conn().hgetall(self.keys.send(key)).await?;
        Ok(SendRecord::from_fields(&fields))
    }
}

/// The UTC day of a time (ms), `YYYYMMDD`: the hourly-sends key's suffix.
pub fn utc_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y%m%d").to_string()
}

/// The UTC hour (0-23) of a time (ms).
fn utc_hour(ms: i64) -> u32 {
    use chrono::Timelike;
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().hour()
}

/// A fresh attempt id: the claim a reservation hands its sender.
fn new_attempt() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn parse_reservation(
    a: &ReserveArgs<'_>,
    attempt: String,
    outcome: &str,
    detail: &str,
) -> Result<Reservation, redis::RedisError> {
    Ok(match outcome {
        "ok" => Reservation::Claimed(Claim {
            attempt,
            phase: a.phase,
            used: detail.parse().map_err(|_| unexpected("send_reserve", detail))?,
            cap_key: a.cap_key.clone(),
            campaign_day_key: a.campaign_cap.as_ref().map(|(k, _)| k.clone()),
        }),
        "stale_chain" => Reservation::StaleChain,
        "campaign_not_running" => Reservation::CampaignNotRunning,
        "lead_inactive" => Reservation::LeadInactive(LeadState::parse(detail)),
        "suppressed" => Reservation::Suppressed,
        "not_queued" => Reservation::NotQueued(SendState::parse(detail)),
        "cap" => Reservation::CapReached,
        "campaign_cap" => Reservation::CampaignCapReached,
        "gap" => Reservation::Gap(detail.parse().map_err(|_| unexpected("send_reserve", detail))?),
        other => return Err(unexpected("send_reserve", other)),
    })
}

fn parse_mark_sent(reply: &[String], peek: Option<Peek<'_>>) -> Result<MarkSent, redis::RedisError> {
    let Some((outcome, peeked)) = reply.split_first() else { return Err(unexpected("send_mark_sent", "")) };
    let outcome = match outcome.as_str() {
        "recorded" => MarkedSent::Recorded,
        "confirmed" => MarkedSent::Confirmed,
        "duplicate" => MarkedSent::Duplicate,
        "stale" => MarkedSent::Stale,
        other => return Err(unexpected("send_mark_sent", other)),
    };
    let among = peek.map(|p| p.campaigns.to_vec()).unwrap_or_default();
    let next = peeked
        .chunks_exact(4)
        .filter_map(|p| {
            let key = SendKey::parse_member(&p[0])?;
            // A zset score comes back from Lua as text.
            let due_ms = p[1].parse::<f64>().map(|d| d as i64).unwrap_or(0);
            Some(Peeked {
                due: DueSend { key, followup: p[2] == "1", due_ms },
                lead: serde_json::from_str(&p[3]).ok(),
                among: among.clone(),
            })
        })
        .collect();
    Ok(MarkSent { outcome, next })
}

/// A script invocation being built, counting what goes in, so that two scripts' keys and
/// arguments can go out as one call (`mark_sent_and_reserve`) without being copied twice.
struct ScriptCall<'s> {
    invocation: redis::ScriptInvocation<'s>,
    keys: usize,
    args: usize,
}

impl<'s> ScriptCall<'s> {
    fn new(script: &'s redis::Script) -> Self {
        Self { invocation: script.prepare_invoke(), keys: 0, args: 0 }
    }

    fn key(&mut self, k: impl redis::ToRedisArgs) -> &mut Self {
        self.invocation.key(k);
        self.keys += 1;
        self
    }

    fn arg(&mut self, a: impl redis::ToRedisArgs) -> &mut Self {
        self.invocation.arg(a);
        self.args += 1;
        self
    }
}
