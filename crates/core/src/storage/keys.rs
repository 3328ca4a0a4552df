//! Every Redis key coldsend owns, in one place (apalis-redis names its own queue keys
//! under `p:queue:*`). ARCHITECTURE.md lists them with their types.
//!
//! Per-mailbox keys carry the account id in braces (`{acct}`): a Redis Cluster hash
//! tag, so a mailbox's cap counter, gap marker and chain token share a slot.

use chrono::NaiveDate;

use crate::account::AccountId;
use crate::campaign::CampaignId;
use crate::send_key::SendKey;

/// `format!` with room for a whole key from the start: `format!` sizes its string from the
/// literal parts alone (none, for a key that starts with the prefix), so each key grew
/// through several reallocations, and the send path builds about twenty keys per email.
macro_rules! key {
    ($($arg:tt)*) => {{
        use std::fmt::Write as _;
        let mut key = String::with_capacity(128);
        let _ = write!(key, $($arg)*);
        key
    }};
}

#[derive(Debug, Clone)]
pub struct Keys {
    p: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { p: prefix.to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.p
    }

    // --- campaigns and leads -------------------------------------------------
    /// hash: `record` (campaign JSON), `state`.
    pub fn campaign(&self, c: &CampaignId) -> String {
        key!("{}:campaign:{c}", self.p)
    }
    /// zset: campaign ids by creation time.
    pub fn campaigns(&self) -> String {
        key!("{}:campaigns", self.p)
    }
    /// set: campaigns an account sends for.
    pub fn account_campaigns(&self, a: &AccountId) -> String {
        key!("{}:account-campaigns:{{{a}}}", self.p)
    }
    /// hash: lead id → lead JSON.
    pub fn leads(&self, c: &CampaignId) -> String {
        key!("{}:leads:{c}", self.p)
    }
    /// hash: lead id → lead state.
    pub fn lead_states(&self, c: &CampaignId) -> String {
        key!("{}:lead-state:{c}", self.p)
    }
    /// hash: lead id → why it was skipped or failed.
    pub fn lead_errors(&self, c: &CampaignId) -> String {
        key!("{}:lead-error:{c}", self.p)
    }
    /// hash: lead id → the account all its steps go out from.
    pub fn lead_accounts(&self, c: &CampaignId) -> String {
        key!("{}:lead-account:{c}", self.p)
    }
    /// hash: lead id → steps sent to it.
    pub fn lead_progress(&self, c: &CampaignId) -> String {
        key!("{}:lead-progress:{c}", self.p)
    }
    /// hash: counters (sent, failed, bounced, uncertain, skipped).
    pub fn stats(&self, c: &CampaignId) -> String {
        key!("{}:stats:{c}", self.p)
    }
    /// string: the campaign's sends on one day of its schedule's time zone.
    pub fn campaign_day(&self, c: &CampaignId, date: NaiveDate) -> String {
        key!("{}:campaign-day:{c}:{date}", self.p)
    }
    /// hash: address (lower-case) → reason. Never mailed, by any campaign.
    pub fn suppression(&self) -> String {
        key!("{}:suppression", self.p)
    }

    // --- sends ---------------------------------------------------------------
    /// hash: `state` QUEUED|SENDING|SENT|FAILED|UNCERTAIN|CANCELLED, `account`,
    /// `attempts`, `attempt`, `phase`, `message_id`, `error`, `at`, `sent_at`.
    pub fn send(&self, k: &SendKey) -> String {
        key!("{}:send:{k}", self.p)
    }
    /// zset: due follow-ups of one campaign on one mailbox (score = due time, ms).
    pub fn due_followups(&self, a: &AccountId, c: &CampaignId) -> String {
        key!("{}:due-followup:{{{a}}}:{c}", self.p)
    }
    /// zset: due first steps of one campaign on one mailbox.
    pub fn due_first(&self, a: &AccountId, c: &CampaignId) -> String {
        key!("{}:due-first:{{{a}}}:{c}", self.p)
    }
    /// zset: sends in SENDING, scored by reservation time (for the stale-send sweep).
    pub fn inflight(&self) -> String {
        key!("{}:inflight", self.p)
    }
    /// hash: Message-ID → send member (reply and bounce matching).
    pub fn message_ids(&self) -> String {
        key!("{}:message-ids", self.p)
    }

    /// hash: webhook endpoint id → endpoint JSON (url, event types, created_at).
    pub fn webhooks(&self) -> String {
        key!("{}:webhooks", self.p)
    }
    /// hash: one endpoint's sealed secret, `enabled`, and its delivery record.
    pub fn webhook(&self, id: &str) -> String {
        key!("{}:webhook:{id}", self.p)
    }
    /// stream: events waiting to be fanned out to the webhook endpoints.
    pub fn outbox(&self) -> String {
        key!("{}:outbox", self.p)
    }

    /// hash: one test send (request, state, results); expires after a week.
    pub fn test_send(&self, id: &str) -> String {
        key!("{}:test-send:{id}", self.p)
    }

    // --- per mailbox ----------------------------------------------------------
    /// string: sends of the mailbox on its local date.
    pub fn cap(&self, a: &AccountId, date: NaiveDate) -> String {
        key!("{}:cap:{{{a}}}:{date}", self.p)
    }
    /// list: the mailbox's last sends (members, newest first, at most 1,000).
    pub fn recent_sends(&self, a: &AccountId) -> String {
        key!("{}:recent-sends:{{{a}}}", self.p)
    }
    /// string (EX): a dashboard session, JSON `SessionRecord`, under the digest of its token.
    pub fn dashboard_session(&self, digest: &str) -> String {
        key!("{}:dashboard:session:{digest}", self.p)
    }
    /// hash: the mailbox's sends per UTC hour ("0".."23") of one UTC day (`YYYYMMDD`), kept
    /// 8 days (the dashboard's chart).
    pub fn hourly_sends(&self, a: &AccountId, day: &str) -> String {
        key!("{}:hourly-sends:{{{a}}}:{day}", self.p)
    }
    /// set: the mailbox's sends that hard-bounced (30 days).
    pub fn bounced_sends(&self, a: &AccountId) -> String {
        key!("{}:bounced-sends:{{{a}}}", self.p)
    }
    /// string: earliest time (ms) of the mailbox's next send.
    pub fn next_send(&self, a: &AccountId) -> String {
        key!("{}:next-send:{{{a}}}", self.p)
    }
    /// string (with a lease TTL): the token of the mailbox's live dispatch chain.
    pub fn chain(&self, a: &AccountId) -> String {
        key!("{}:chain:{{{a}}}", self.p)
    }
    /// hash: `record` (account JSON, no secrets), `email` (lower-case), `smtp_password` /
    /// `imap_password` (sealed), `status`, `generation`, `report`, `sending`; for OAuth2
    /// accounts instead of passwords `oauth_refresh`, `oauth_client_secret`, `oauth_access`
    /// (sealed), `oauth_expires_ms`, `oauth_lifetime_ms`.
    pub fn account(&self, a: &AccountId) -> String {
        key!("{}:account:{a}", self.p)
    }
    /// string (PX): holder of the account's OAuth2 token refresh, so replicas refresh once.
    pub fn oauth_lease(&self, a: &AccountId) -> String {
        key!("{}:oauth-lease:{a}", self.p)
    }
    /// string (PX, sealed): a started OAuth2 sign-in awaiting its callback, by `state`.
    pub fn oauth_consent(&self, state: &str) -> String {
        key!("{}:oauth-consent:{state}", self.p)
    }
    /// hash: lower-case address → account id (one account per address).
    pub fn account_emails(&self) -> String {
        key!("{}:account-emails", self.p)
    }
    /// zset: account ids by creation time.
    pub fn accounts(&self) -> String {
        key!("{}:accounts", self.p)
    }

    /// zset: the mailbox's recent sender-side refusals (score = ms), for the pause rule.
    pub fn sender_refusals(&self, a: &AccountId) -> String {
        key!("{}:sender-refusals:{{{a}}}", self.p)
    }
    /// string (with a TTL to its end): the mailbox's sending pause, JSON `MailboxPause`.
    pub fn mailbox_pause(&self, a: &AccountId) -> String {
        key!("{}:mailbox-pause:{{{a}}}", self.p)
    }

    // --- IMAP scanning ----------------------------------------------------------
    /// hash: `uidvalidity`, `last_uid` of one folder of a mailbox.
    pub fn scan_state(&self, a: &AccountId, folder: &str) -> String {
        key!("{}:scan:{{{a}}}:{folder}", self.p)
    }
    /// string (with a lease TTL): the token of the mailbox's live scan chain.
    pub fn scan_chain(&self, a: &AccountId) -> String {
        key!("{}:scan-chain:{{{a}}}", self.p)
    }
    /// string (PX lease): the replica watching the mailbox's INBOX with IMAP IDLE.
    pub fn idle_watch(&self, a: &AccountId) -> String {
        key!("{}:idle-watch:{{{a}}}", self.p)
    }
    /// zset: replicas that watch mailboxes, by when their heartbeat runs out (ms).
    pub fn idle_watchers(&self) -> String {
        key!("{}:idle-watchers", self.p)
    }
    /// hash: `at` (ms), `fetched`, `folders` of the mailbox's last scan.
    pub fn scan_last(&self, a: &AccountId) -> String {
        key!("{}:scan-last:{{{a}}}", self.p)
    }
    /// zset: Message-IDs already acted on for a mailbox (score = ms), so a resync or a
    /// rebuilt mailbox records nothing twice.
    pub fn processed(&self, a: &AccountId) -> String {
        key!("{}:processed:{{{a}}}", self.p)
    }
    /// stream: the master inbox (replies, auto-replies, bounces, complaints).
    pub fn events(&self) -> String {
        key!("{}:events", self.p)
    }
    /// zset: paused leads (`campaign:lead`) by the time they resume (ms).
    pub fn resumes(&self) -> String {
        key!("{}:resumes", self.p)
    }
    /// zset: a mailbox's UNCERTAIN sends by the time they became uncertain (ms).
    pub fn uncertain(&self, a: &AccountId) -> String {
        key!("{}:uncertain:{{{a}}}", self.p)
    }
    /// hash: address → soft bounces so far.
    pub fn soft_bounces(&self) -> String {
        key!("{}:soft-bounces", self.p)
    }

    // --- commands from other languages ----------------------------------------
    /// stream: versioned JSON commands (see ARCHITECTURE.md, "Redis-level contract").
    pub fn commands(&self) -> String {
        key!("{}:commands", self.p)
    }
    /// stream: outcomes of handled commands.
    pub fn commands_done(&self) -> String {
        key!("{}:commands:done", self.p)
    }
    /// stream: rejected commands with their reason.
    pub fn commands_dead(&self) -> String {
        key!("{}:commands:dead", self.p)
    }
}
