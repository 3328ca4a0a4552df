//! The send ledger: per-(campaign, lead, step) send records, the per-mailbox due
//! queues, daily cap counters, the gap marker and dispatch-chain tokens — and the Lua
//! scripts that move a send QUEUED → SENDING → SENT / FAILED / UNCERTAIN atomically.
//!
//! The invariants live here, in Redis, not in any one process:
//! - **cap**: `reserve` increments the mailbox's counter for its local date only while
//!   it is below the effective cap, in the same script that claims the send;
//! - **gap**: `reserve` refuses before `next-send`, and moves it forward when it claims;
//! - **at most once**: only a QUEUED record can be claimed; SENT, FAILED and UNCERTAIN
//!   are final, and a record left SENDING by a crash is requeued only if the message
//!   provably never reached DATA (`phase = pre`), else it becomes UNCERTAIN.

use std::sync::LazyLock;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::account::AccountId;
use crate::campaign::CampaignId;
use crate::keys::Keys;
use crate::lead::LeadId;
use crate::send_key::SendKey;

/// How long a cap counter outlives its day (time zones span more than a day).
const CAP_TTL_SECS: u64 = 3 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Claimed: send it now. `used` is the mailbox's count today including this one.
    Claimed {
        used: u32,
    },
    StaleChain,
    CampaignNotRunning,
    LeadInactive(String),
    Suppressed,
    NotQueued(String),
    CapReached,
    CampaignCapReached,
    /// Too early: the mailbox may send again at this time (ms since the epoch).
    Gap(i64),
}

/// Everything `reserve` checks and writes.
pub struct ReserveArgs<'a> {
    pub key: &'a SendKey,
    pub account: &'a AccountId,
    pub email: &'a str,
    pub chain_token: &'a str,
    pub attempt_id: &'a str,
    pub now_ms: i64,
    pub cap: u32,
    pub cap_key: String,
    /// The campaign's own daily counter and limit, if it has one.
    pub campaign_cap: Option<(String, u32)>,
    pub gap_ms: i64,
}

static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 chain, 2 campaign, 3 lead-states, 4 suppression, 5 send, 6 cap, 7 campaign-day, 8 next-send, 9 inflight
-- ARGV: 1 token, 2 now, 3 cap, 4 campaign cap (0 none), 5 gap, 6 lead, 7 email, 8 attempt, 9 member, 10 account, 11 ttl
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'stale_chain', ''} end
if redis.call('HGET', KEYS[2], 'state') ~= 'RUNNING' then return {'campaign_not_running', ''} end
local ls = redis.call('HGET', KEYS[3], ARGV[6])
if ls ~= 'ACTIVE' then return {'lead_inactive', ls or ''} end
if redis.call('HEXISTS', KEYS[4], ARGV[7]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[6], 'SUPPRESSED')
  return {'suppressed', ''}
end
local st = redis.call('HGET', KEYS[5], 'state')
if st ~= 'QUEUED' then return {'not_queued', st or ''} end
local used = tonumber(redis.call('GET', KEYS[6]) or '0')
if used >= tonumber(ARGV[3]) then return {'cap', tostring(used)} end
local ccap = tonumber(ARGV[4])
if ccap > 0 and tonumber(redis.call('GET', KEYS[7]) or '0') >= ccap then return {'campaign_cap', ''} end
local now = tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[8]) or '0')
if now < nxt then return {'gap', tostring(nxt)} end
redis.call('INCR', KEYS[6]); redis.call('EXPIRE', KEYS[6], ARGV[11])
local camp_key = ''
if ccap > 0 then redis.call('INCR', KEYS[7]); redis.call('EXPIRE', KEYS[7], ARGV[11]); camp_key = KEYS[7] end
redis.call('SET', KEYS[8], tostring(now + tonumber(ARGV[5])), 'PX', 172800000)
redis.call('HSET', KEYS[5], 'state', 'SENDING', 'phase', 'pre', 'attempt', ARGV[8], 'account', ARGV[10],
  'at', ARGV[2], 'cap_key', KEYS[6], 'campaign_day_key', camp_key)
redis.call('ZADD', KEYS[9], now, ARGV[9])
return {'ok', tostring(used + 1)}
"#,
    )
});

static MARK_DATA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
redis.call('HSET', KEYS[1], 'phase', 'data')
return 1
"#,
    )
});

static MARK_SENT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 message-ids, 6 stats, 7 lead-states, 8 next send,
--       9 lead-progress
-- ARGV: 1 attempt, 2 member, 3 message id, 4 now, 5 lead, 6 next member ('' = last step), 7 next due, 8 account
local was = redis.call('HGET', KEYS[1], 'state')
local dup = (was == 'SENT') and 1 or 0
redis.call('HSET', KEYS[1], 'state', 'SENT', 'message_id', ARGV[3], 'sent_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'phase', 'error')
redis.call('ZREM', KEYS[2], ARGV[2]); redis.call('ZREM', KEYS[3], ARGV[2]); redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])
if dup == 0 then
  redis.call('HINCRBY', KEYS[6], 'sent', 1)
  redis.call('HINCRBY', KEYS[9], ARGV[5], 1)
end
if redis.call('HGET', KEYS[7], ARGV[5]) == 'ACTIVE' then
  if ARGV[6] == '' then
    redis.call('HSET', KEYS[7], ARGV[5], 'COMPLETED')
  else
    if redis.call('HSETNX', KEYS[8], 'state', 'QUEUED') == 1 then
      redis.call('HSET', KEYS[8], 'attempts', 0, 'account', ARGV[8])
    end
    redis.call('ZADD', KEYS[2], 'NX', ARGV[7], ARGV[6])
  end
end
return dup
"#,
    )
});

// Gives the slot back; the message provably did not go out.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due (the queue it came from), 3 inflight, 4 lead-states, 5 stats, 6 lead-errors
-- ARGV: 1 attempt, 2 member, 3 retry at, 4 max attempts, 5 error, 6 lead
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 'stale' end
local cap_key = redis.call('HGET', KEYS[1], 'cap_key')
if cap_key and cap_key ~= '' and tonumber(redis.call('GET', cap_key) or '0') > 0 then redis.call('DECR', cap_key) end
local camp_key = redis.call('HGET', KEYS[1], 'campaign_day_key')
if camp_key and camp_key ~= '' and tonumber(redis.call('GET', camp_key) or '0') > 0 then redis.call('DECR', camp_key) end
redis.call('ZREM', KEYS[3], ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'phase')
if attempts >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'FAILED', 'error', ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[2])
  if redis.call('HGET', KEYS[4], ARGV[6]) == 'ACTIVE' then
    redis.call('HSET', KEYS[4], ARGV[6], 'FAILED'); redis.call('HSET', KEYS[6], ARGV[6], ARGV[5])
  end
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 'retry'
"#,
    )
});

// Permanent failure: never retried. The slot is given back (nothing was accepted).
static FAIL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 lead-states, 6 lead-errors, 7 stats, 8 suppression
-- ARGV: 1 attempt, 2 member, 3 error, 4 lead, 5 lead state, 6 email ('' = do not suppress), 7 stat name
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
local cap_key = redis.call('HGET', KEYS[1], 'cap_key')
if cap_key and cap_key ~= '' and tonumber(redis.call('GET', cap_key) or '0') > 0 then redis.call('DECR', cap_key) end
local camp_key = redis.call('HGET', KEYS[1], 'campaign_day_key')
if camp_key and camp_key ~= '' and tonumber(redis.call('GET', camp_key) or '0') > 0 then redis.call('DECR', camp_key) end
redis.call('HSET', KEYS[1], 'state', 'FAILED', 'error', ARGV[3])
redis.call('HDEL', KEYS[1], 'phase')
redis.call('ZREM', KEYS[2], ARGV[2]); redis.call('ZREM', KEYS[3], ARGV[2]); redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[4], ARGV[5]); redis.call('HSET', KEYS[6], ARGV[4], ARGV[3])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[8], ARGV[6], 'hard_bounce') end
redis.call('HINCRBY', KEYS[7], ARGV[7], 1)
return 1
"#,
    )
});

// Outcome unknown (died or timed out after DATA): never resent blindly; the cap slot stays used.
static UNCERTAIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 stats, 6 uncertain. ARGV: 1 member, 2 error, 3 now
if redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'UNCERTAIN', 'error', ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1]); redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'uncertain', 1)
return 1
"#,
    )
});

// A send that will never happen (lead stopped, template error): out of the queues.
static CANCEL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 lead-states, 5 lead-errors, 6 stats
-- ARGV: 1 member, 2 lead, 3 new lead state ('' = keep), 4 error
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'QUEUED' then redis.call('HSET', KEYS[1], 'state', 'CANCELLED') end
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] ~= '' and redis.call('HGET', KEYS[4], ARGV[2]) == 'ACTIVE' then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3]); redis.call('HSET', KEYS[5], ARGV[2], ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'skipped', 1)
end
return 1
"#,
    )
});

static ENQUEUE_FIRST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 lead-states, 2 lead-accounts. ARGV: 1 key prefix, 2 campaign, 3 due, then pairs (lead, account)
local n = 0
for i = 4, #ARGV, 2 do
  local lead, acct = ARGV[i], ARGV[i+1]
  if redis.call('HGET', KEYS[1], lead) == 'ACTIVE' and redis.call('HSETNX', KEYS[2], lead, acct) == 1 then
    local member = ARGV[2] .. ':' .. lead .. ':0'
    local send = ARGV[1] .. ':send:' .. member
    if redis.call('HSETNX', send, 'state', 'QUEUED') == 1 then redis.call('HSET', send, 'attempts', 0, 'account', acct) end
    redis.call('ZADD', ARGV[1] .. ':due-first:{' .. acct .. '}:' .. ARGV[2], 'NX', ARGV[3], member)
    n = n + 1
  end
end
return n
"#,
    )
});

static REQUEUE_UNCERTAIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 due, 3 uncertain, 4 stats. ARGV: 1 member, 2 now
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'UNCERTAIN' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', 'not found in Sent after the grace period; sending again')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'uncertain', -1)
return 1
"#,
    )
});

static START_CHAIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- ARGV: 1 token, 2 lease ms, 3 only if absent (1/0)
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#,
    )
});

static KEEP_CHAIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"#,
    )
});

static SWEEP_ONE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- KEYS: 1 send, 2 inflight, 3 stats. ARGV: 1 member, 2 key prefix, 3 now
if redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then redis.call('ZREM', KEYS[2], ARGV[1]); return 'gone' end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'phase') == 'pre' then
  local cap_key = redis.call('HGET', KEYS[1], 'cap_key')
  if cap_key and cap_key ~= '' and tonumber(redis.call('GET', cap_key) or '0') > 0 then redis.call('DECR', cap_key) end
  local camp_key = redis.call('HGET', KEYS[1], 'campaign_day_key')
  if camp_key and camp_key ~= '' and tonumber(redis.call('GET', camp_key) or '0') > 0 then redis.call('DECR', camp_key) end
  redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', 'worker stopped before DATA; requeued')
  redis.call('HDEL', KEYS[1], 'phase')
  return 'requeued'
end
redis.call('HSET', KEYS[1], 'state', 'UNCERTAIN', 'error', 'worker stopped during DATA; outcome unknown')
redis.call('HINCRBY', KEYS[3], 'uncertain', 1)
local acct = redis.call('HGET', KEYS[1], 'account')
if acct then redis.call('ZADD', ARGV[2] .. ':uncertain:{' .. acct .. '}', ARGV[3], ARGV[1]) end
return 'uncertain'
"#,
    )
});

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
            inv.key(self.keys.lead_states(campaign))
                .key(self.keys.lead_accounts(campaign))
                .arg(self.keys.prefix())
                .arg(campaign.to_string())
                .arg(due_ms);
            for (lead, account) in chunk {
                inv.arg(lead.as_str()).arg(account.to_string());
            }
            let n: usize = inv.invoke_async(&mut self.conn()).await?;
            total += n;
        }
        Ok(total)
    }

    /// Leads already given to an account, by account.
    pub async fn lead_accounts(
        &self,
        campaign: &CampaignId,
    ) -> Result<std::collections::HashMap<String, String>, redis::RedisError> {
        self.conn().hgetall(self.keys.lead_accounts(campaign)).await
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

    pub async fn reserve(&self, a: &ReserveArgs<'_>) -> Result<Reservation, redis::RedisError> {
        let c = &a.key.campaign;
        let (camp_key, camp_cap) = match &a.campaign_cap {
            Some((k, n)) => (k.clone(), *n),
            None => (self.keys.campaign_day(c, chrono::NaiveDate::MIN), 0),
        };
        let (outcome, detail): (String, String) = RESERVE
            .key(self.keys.chain(a.account))
            .key(self.keys.campaign(c))
            .key(self.keys.lead_states(c))
            .key(self.keys.suppression())
            .key(self.keys.send(a.key))
            .key(&a.cap_key)
            .key(camp_key)
            .key(self.keys.next_send(a.account))
            .key(self.keys.inflight())
            .arg(a.chain_token)
            .arg(a.now_ms)
            .arg(a.cap)
            .arg(camp_cap)
            .arg(a.gap_ms)
            .arg(a.key.lead.as_str())
            .arg(a.email.to_ascii_lowercase())
            .arg(a.attempt_id)
            .arg(a.key.member())
            .arg(a.account.to_string())
            .arg(CAP_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome.as_str() {
            "ok" => Reservation::Claimed { used: detail.parse().unwrap_or(0) },
            "stale_chain" => Reservation::StaleChain,
            "campaign_not_running" => Reservation::CampaignNotRunning,
            "lead_inactive" => Reservation::LeadInactive(detail),
            "suppressed" => Reservation::Suppressed,
            "cap" => Reservation::CapReached,
            "campaign_cap" => Reservation::CampaignCapReached,
            "gap" => Reservation::Gap(detail.parse().unwrap_or(0)),
            _ => Reservation::NotQueued(detail),
        })
    }

    /// Records that the message body is about to be sent: from here on a crash leaves
    /// the outcome unknown. `false` means the claim was lost (swept after a stall):
    /// the caller must not send.
    pub async fn mark_data_phase(&self, key: &SendKey, attempt: &str) -> Result<bool, redis::RedisError> {
        let n: i64 = MARK_DATA.key(self.keys.send(key)).arg(attempt).invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Records a 250 and queues the lead's next step (if any, and the lead is active).
    /// Returns true if the record was already SENT (a duplicate was detected).
    #[allow(clippy::too_many_arguments)]
    pub async fn mark_sent(
        &self,
        key: &SendKey,
        account: &AccountId,
        attempt: &str,
        message_id: &str,
        now_ms: i64,
        next_due_ms: Option<i64>,
    ) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let next = key.next_step();
        let dup: i64 = MARK_SENT
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.message_ids())
            .key(self.keys.stats(c))
            .key(self.keys.lead_states(c))
            .key(self.keys.send(&next))
            .key(self.keys.lead_progress(c))
            .arg(attempt)
            .arg(key.member())
            .arg(message_id)
            .arg(now_ms)
            .arg(key.lead.as_str())
            .arg(if next_due_ms.is_some() { next.member() } else { String::new() })
            .arg(next_due_ms.unwrap_or(0))
            .arg(account.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(dup == 1)
    }

    /// A transient failure that provably sent nothing: slot back, retry at `retry_at_ms`
    /// (or FAILED after `max_attempts`). Returns "retry", "failed" or "stale".
    #[allow(clippy::too_many_arguments)]
    pub async fn release(
        &self,
        key: &SendKey,
        account: &AccountId,
        followup: bool,
        attempt: &str,
        retry_at_ms: i64,
        max_attempts: u32,
        error: &str,
    ) -> Result<String, redis::RedisError> {
        let c = &key.campaign;
        let due = if followup { self.keys.due_followups(account, c) } else { self.keys.due_first(account, c) };
        RELEASE
            .key(self.keys.send(key))
            .key(due)
            .key(self.keys.inflight())
            .key(self.keys.lead_states(c))
            .key(self.keys.stats(c))
            .key(self.keys.lead_errors(c))
            .arg(attempt)
            .arg(key.member())
            .arg(retry_at_ms)
            .arg(max_attempts)
            .arg(error)
            .arg(key.lead.as_str())
            .invoke_async(&mut self.conn())
            .await
    }

    /// A permanent failure (5xx): FAILED, or BOUNCED and suppressed for recipient errors.
    pub async fn fail(
        &self,
        key: &SendKey,
        account: &AccountId,
        attempt: &str,
        error: &str,
        bounced_email: Option<&str>,
    ) -> Result<bool, redis::RedisError> {
        let c = &key.campaign;
        let (lead_state, stat) = if bounced_email.is_some() { ("BOUNCED", "bounced") } else { ("FAILED", "failed") };
        let n: i64 = FAIL
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.lead_states(c))
            .key(self.keys.lead_errors(c))
            .key(self.keys.stats(c))
            .key(self.keys.suppression())
            .arg(attempt)
            .arg(key.member())
            .arg(error)
            .arg(key.lead.as_str())
            .arg(lead_state)
            .arg(bounced_email.map(str::to_ascii_lowercase).unwrap_or_default())
            .arg(stat)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The outcome is unknown: UNCERTAIN, out of the queues, never resent blindly.
    pub async fn uncertain(&self, key: &SendKey, account: &AccountId, error: &str) -> Result<(), redis::RedisError> {
        let c = &key.campaign;
        let _: i64 = UNCERTAIN
            .key(self.keys.send(key))
            .key(self.keys.due_followups(account, c))
            .key(self.keys.due_first(account, c))
            .key(self.keys.inflight())
            .key(self.keys.stats(c))
            .key(self.keys.uncertain(account))
            .arg(key.member())
            .arg(error)
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes a send out of the queues; with `lead_state`, also ends the lead (if active).
    pub async fn cancel(
        &self,
        key: &SendKey,
        account: &AccountId,
        lead_state: Option<&str>,
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
            .arg(lead_state.unwrap_or(""))
            .arg(error)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
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

    /// An UNCERTAIN send found in the Sent folder (or a SENT one seen there): SENT and
    /// confirmed; the lead's next step is queued as after any send.
    pub async fn confirm_sent(
        &self,
        key: &SendKey,
        message_id: &str,
        next_due_ms: Option<i64>,
    ) -> Result<bool, redis::RedisError> {
        let rec = self.send_record(key).await?;
        let Some(account) = rec.get("account").and_then(|a| a.parse::<AccountId>().ok()) else { return Ok(false) };
        match rec.get("state").map(String::as_str) {
            Some("UNCERTAIN") => {
                let _: () = redis::cmd("ZREM")
                    .arg(self.keys.uncertain(&account))
                    .arg(key.member())
                    .query_async(&mut self.conn())
                    .await?;
                self.mark_sent(key, &account, "", message_id, chrono::Utc::now().timestamp_millis(), next_due_ms)
                    .await?;
            }
            Some("SENT") => {}
            _ => return Ok(false),
        }
        let _: () = self.conn().hset(self.keys.send(key), "confirmed", 1).await?;
        Ok(true)
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

    /// Sends an UNCERTAIN send again: the only resend after DATA, once Sent showed it never went out.
    pub async fn requeue_uncertain(&self, key: &SendKey, account: &AccountId) -> Result<bool, redis::RedisError> {
        let due = if key.step == 0 {
            self.keys.due_first(account, &key.campaign)
        } else {
            self.keys.due_followups(account, &key.campaign)
        };
        let n: i64 = REQUEUE_UNCERTAIN
            .key(self.keys.send(key))
            .key(due)
            .key(self.keys.uncertain(account))
            .key(self.keys.stats(&key.campaign))
            .arg(key.member())
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
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

    /// Paused leads whose resume time has come: `(campaign, lead)` members, removed from the schedule.
    pub async fn due_resumes(&self, now_ms: i64) -> Result<Vec<String>, redis::RedisError> {
        let members: Vec<String> = self.conn().zrangebyscore(self.keys.resumes(), "-inf", now_ms).await?;
        for m in &members {
            let _: i64 = self.conn().zrem(self.keys.resumes(), m).await?;
        }
        Ok(members)
    }

    /// Whether any lead of `campaign` waits in the resume schedule (out of office).
    pub async fn has_resumes(&self, campaign: &CampaignId) -> Result<bool, redis::RedisError> {
        let members: Vec<String> = self.conn().zrange(self.keys.resumes(), 0, -1).await?;
        let prefix = format!("{campaign}:");
        Ok(members.iter().any(|m| m.starts_with(&prefix)))
    }

    /// Steps sent so far, by lead id.
    pub async fn lead_progress(
        &self,
        campaign: &CampaignId,
    ) -> Result<std::collections::HashMap<String, u64>, redis::RedisError> {
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
            if state.as_deref() == Some("QUEUED") {
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
    /// else UNCERTAIN. Returns "requeued", "uncertain" or "gone".
    pub async fn sweep(&self, key: &SendKey) -> Result<String, redis::RedisError> {
        SWEEP_ONE
            .key(self.keys.send(key))
            .key(self.keys.inflight())
            .key(self.keys.stats(&key.campaign))
            .arg(key.member())
            .arg(self.keys.prefix())
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn())
            .await
    }

    /// A send record's fields (state, account, message_id, error, …).
    pub async fn send_record(
        &self,
        key: &SendKey,
    ) -> Result<std::collections::HashMap<String, String>, redis::RedisError> {
        self.conn().hgetall(self.keys.send(key)).await
    }
}
