//! What IMAP scanning keeps in Redis: per-folder cursors (UIDVALIDITY, last UID), the
//! "already acted on" record per mailbox, the last pass's facts, soft-bounce counts and
//! the out-of-office resume schedule (keys: [`super::keys`]).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::keys::Keys;
use crate::account::AccountId;
use crate::campaign::CampaignId;
use crate::lead::LeadId;
use crate::send_key::SendKey;

/// One message a mailbox has been acted on for, scoped by where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed<'a> {
    /// Arrived in INBOX (or an extra folder): a reply, bounce, auto-reply, complaint.
    Incoming(&'a str),
    /// Seen in the Sent folder: confirms a send.
    Sent(&'a str),
}

impl Processed<'_> {
    fn member(&self) -> String {
        match self {
            Processed::Incoming(id) => format!("in:{id}"),
            Processed::Sent(id) => format!("sent:{id}"),
        }
    }
}

/// A folder's scan position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderCursor {
    pub uid_validity: u32,
    pub last_uid: u32,
}

#[derive(Clone)]
pub struct ScanStore {
    conn: ConnectionManager,
    keys: Keys,
}

impl ScanStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn cursor(&self, account: &AccountId, folder: &str) -> Result<Option<FolderCursor>, redis::RedisError> {
        let (validity, last): (Option<u32>, Option<u32>) = redis::cmd("HMGET")
            .arg(self.keys.scan_state(account, folder))
            .arg("uidvalidity")
            .arg("last_uid")
            .query_async(&mut self.conn())
            .await?;
        Ok(validity.map(|uid_validity| FolderCursor { uid_validity, last_uid: last.unwrap_or(0) }))
    }

    pub async fn set_cursor(
        &self,
        account: &AccountId,
        folder: &str,
        cursor: FolderCursor,
    ) -> Result<(), redis::RedisError> {
        self.conn()
            .hset_multiple(
                self.keys.scan_state(account, folder),
                &[("uidvalidity", cursor.uid_validity), ("last_uid", cursor.last_uid)],
            )
            .await
    }

    /// Records that the mailbox acts on this message now; `false` if it already did.
    pub async fn mark_processed(
        &self,
        account: &AccountId,
        p: &Processed<'_>,
        now_ms: i64,
    ) -> Result<bool, redis::RedisError> {
        let added: i64 = self.conn().zadd(self.keys.processed(account), p.member(), now_ms).await?;
        Ok(added == 1)
    }

    /// Forgets a record (its effect failed, so the next scan tries again).
    pub async fn forget_processed(&self, account: &AccountId, p: &Processed<'_>) -> Result<(), redis::RedisError> {
        let _: i64 = self.conn().zrem(self.keys.processed(account), p.member()).await?;
        Ok(())
    }

    pub async fn was_processed(&self, account: &AccountId, p: &Processed<'_>) -> Result<bool, redis::RedisError> {
        let score: Option<f64> = self.conn().zscore(self.keys.processed(account), p.member()).await?;
        Ok(score.is_some())
    }

    /// Drops "already acted on" records older than `before_ms`, and stores the pass's facts.
    pub async fn finish_pass(
        &self,
        account: &AccountId,
        before_ms: i64,
        now_ms: i64,
        fetched: usize,
    ) -> Result<(), redis::RedisError> {
        redis::pipe()
            .zrembyscore(self.keys.processed(account), "-inf", before_ms)
            .ignore()
            .hset_multiple(
                self.keys.scan_last(account),
                &[("at", now_ms.to_string()), ("fetched", fetched.to_string())],
            )
            .ignore()
            .query_async(&mut self.conn())
            .await
    }

    /// The mailbox's last pass: when (ms) and how many messages it fetched.
    pub async fn last_pass(&self, account: &AccountId) -> Result<Option<(i64, u64)>, redis::RedisError> {
        let (at, fetched): (Option<i64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.keys.scan_last(account))
            .arg(&["at", "fetched"])
            .query_async(&mut self.conn())
            .await?;
        Ok(at.map(|at| (at, fetched.unwrap_or(0))))
    }

    /// The replica watching the mailbox's INBOX with IMAP IDLE, if one does (the lease
    /// itself is written only by [`super::idle_watch::IdleLeases`]).
    pub async fn idle_watcher(&self, account: &AccountId) -> Result<Option<String>, redis::RedisError> {
        self.conn().get(self.keys.idle_watch(account)).await
    }

    /// The send a Message-ID belongs to, if coldsend sent it.
    pub async fn send_for_message_id(&self, message_id: &str) -> Result<Option<SendKey>, redis::RedisError> {
        let member: Option<String> = self.conn().hget(self.keys.message_ids(), message_id).await?;
        Ok(member.as_deref().and_then(SendKey::parse_member))
    }

    /// When an UNCERTAIN send of the mailbox became uncertain (ms), if it still is.
    pub async fn uncertain_since(&self, account: &AccountId, key: &SendKey) -> Result<Option<i64>, redis::RedisError> {
        let score: Option<f64> = self.conn().zscore(self.keys.uncertain(account), key.member()).await?;
        Ok(score.map(|s| s as i64))
    }

    /// Counts one more soft bounce for the address; returns the total.
    pub async fn add_soft_bounce(&self, email: &str) -> Result<u32, redis::RedisError> {
        self.conn().hincr(self.keys.soft_bounces(), email.to_ascii_lowercase(), 1).await
    }

    /// Schedules a paused lead's resume.
    pub async fn schedule_resume(
        &self,
        campaign: &CampaignId,
        lead: &LeadId,
        at_ms: i64,
    ) -> Result<(), redis::RedisError> {
        self.conn().zadd(self.keys.resumes(), format!("{campaign}:{lead}"), at_ms).await
    }
}
