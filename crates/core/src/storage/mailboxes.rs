//! A mailbox's sending health: sender-side refusals (our mailbox, domain, IP or content
//! refused by recipients' servers) and the pause they lead to (keys: [`super::keys`]).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::lua_script;
use crate::account::AccountId;

lua_script!(REFUSED, "mailbox_refused");

lua_script!(BOUNCE_RATE, "mailbox_bounce_rate");

/// The mailbox's hard-bounce rate after a bounce was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BounceRate {
    /// Hard bounces among the last `sends` sends.
    pub bounced: u32,
    pub sends: u32,
    /// This bounce paused the mailbox's sending.
    pub paused: bool,
}

/// Why and until when a mailbox does not send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailboxPause {
    /// End of the pause (ms since the epoch).
    pub until_ms: i64,
    /// The bounce reason of the last refusal (e.g. `blocked`, `authfailure`, `toomanyconn`).
    pub reason: String,
    /// The server's words.
    pub message: String,
}

/// What counting a refusal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// Refusals within the window, this one included.
    pub recent: u32,
    /// When sending may resume, if the mailbox is now paused.
    pub paused_until_ms: Option<i64>,
}

#[derive(Clone)]
pub struct MailboxHealth {
    conn: ConnectionManager,
    keys: Keys,
}

impl MailboxHealth {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Counts a sender-side refusal; pauses the mailbox until `pause_until_ms` once `limit`
    /// refusals fell within `window_ms` (or at once with `pause_now`, for quota answers).
    #[allow(clippy::too_many_arguments)]
    pub async fn refused(
        &self,
        account: &AccountId,
        now_ms: i64,
        window_ms: u64,
        limit: u32,
        pause: &MailboxPause,
        pause_now: bool,
    ) -> Result<Refusals, redis::RedisError> {
        let json = serde_json::to_string(pause).unwrap_or_default();
        let (recent, until): (u32, i64) = REFUSED
            .key(self.keys.sender_refusals(account))
            .key(self.keys.mailbox_pause(account))
            .arg(now_ms)
            .arg(window_ms)
            .arg(limit)
            .arg(pause.until_ms)
            .arg(json)
            .arg(if pause_now { "1" } else { "0" })
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Refusals { recent, paused_until_ms: (until > 0).then_some(until) })
    }

    /// Records a hard bounce of the mailbox's send `member`; pauses its sending (with
    /// `pause`) when hard bounces among its last `window` sends exceed `limit_permille`
    /// (judged from `min_sends` sends on).
    pub async fn hard_bounce(
        &self,
        account: &AccountId,
        member: &str,
        window: u32,
        limit_permille: u32,
        min_sends: u32,
        pause: &MailboxPause,
    ) -> Result<BounceRate, redis::RedisError> {
        let (bounced, sends, paused): (u32, u32, u32) = BOUNCE_RATE
            .key(self.keys.recent_sends(account))
            .key(self.keys.bounced_sends(account))
            .key(self.keys.mailbox_pause(account))
            .arg(member)
            .arg(window)
            .arg(limit_permille)
            .arg(min_sends)
            .arg(pause.until_ms)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(serde_json::to_string(pause).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(BounceRate { bounced, sends, paused: paused == 1 })
    }

    /// An operator pauses the mailbox's sending until `pause.until_ms` (or ends it with
    /// [`MailboxHealth::resume`]); scans go on.
    pub async fn pause_by_operator(&self, account: &AccountId, pause: &MailboxPause) -> Result<(), redis::RedisError> {
        redis::cmd("SET")
            .arg(self.keys.mailbox_pause(account))
            .arg(serde_json::to_string(pause).unwrap_or_default())
            .arg("PXAT")
            .arg(pause.until_ms)
            .query_async::<()>(&mut self.conn.clone())
            .await
    }

    /// The mailbox's current pause, if any.
    pub async fn pause(&self, account: &AccountId) -> Result<Option<MailboxPause>, redis::RedisError> {
        let raw: Option<String> = self.conn.clone().get(self.keys.mailbox_pause(account)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The pauses of many mailboxes in one round trip (the account listing), in order.
    pub async fn pauses(&self, accounts: &[AccountId]) -> Result<Vec<Option<MailboxPause>>, redis::RedisError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = accounts.iter().map(|a| self.keys.mailbox_pause(a)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut self.conn.clone()).await?;
        Ok(raw.into_iter().map(|r| r.and_then(|r| serde_json::from_str(&r).ok())).collect())
    }

    /// Ends a pause (an operator resumed the mailbox, or a validation succeeded); `true` if
    /// there was one. The refusal count starts over too.
    pub async fn resume(&self, account: &AccountId) -> Result<bool, redis::RedisError> {
        let (paused, _): (i64, i64) = redis::pipe()
            .del(self.keys.mailbox_pause(account))
            .del(self.keys.sender_refusals(account))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(paused > 0)
    }
}
