//! Job payloads and the queues they travel on.
//!
//! Queue names are defined here, once, so a producer and a worker can never disagree
//! (apalis-redis would otherwise name a queue after the Rust type path).

use std::time::Duration;

use apalis_redis::RedisStorage;
use serde::{Deserialize, Serialize};

use crate::account::AccountId;

/// How often a worker proves it is alive; a replica silent for
/// `HEARTBEAT × MISSED_HEARTBEATS` has its jobs handed to another.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const MISSED_HEARTBEATS: usize = 10;

/// Check an account's SMTP and IMAP connections and record the outcome.
///
/// Safe to run twice: `generation` names the validation request it answers, and a
/// result for an older generation than the account's current one is discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateAccount {
    pub account_id: AccountId,
    pub generation: u64,
}

/// Send at most a burst of due emails from one mailbox, then hand over to a successor
/// job scheduled for the mailbox's next send. Only the job holding the mailbox's current
/// chain `token` may send; any other copy (a redelivery, a superseded chain) ends at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub account_id: AccountId,
    pub token: String,
}

/// Scan one mailbox's folders once, then schedule the next scan. Only the job holding
/// the mailbox's current scan-chain token scans, so no mailbox is scanned twice at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub account_id: AccountId,
    pub token: String,
    /// When the scan is due (ms since the epoch; 0 when queued by an older version): how
    /// late it starts is the schedule lag the worker reports.
    #[serde(default)]
    pub due_ms: i64,
}

/// Send a stored test send (see [`crate::storage::test_sends`]). Safe to run twice: the
/// record is claimed once before anything goes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSendJob {
    pub id: String,
}

/// Deliver one event to one webhook endpoint (one attempt; a failure schedules the next
/// attempt as a new job). Receivers deduplicate by the event's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverWebhook {
    pub endpoint_id: String,
    pub event: crate::webhook::Event,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// The queues coldsend uses, under one key prefix.
#[derive(Debug, Clone)]
pub struct Queues {
    prefix: String,
}

impl Queues {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Where [`ValidateAccount`] jobs go.
    pub fn validate_account(&self) -> String {
        format!("{}:queue:validate-account", self.prefix)
    }

    /// Where [`Scan`] jobs go.
    pub fn scan(&self) -> String {
        format!("{}:queue:scan", self.prefix)
    }

    /// Where [`TestSendJob`] jobs go.
    pub fn test_send(&self) -> String {
        format!("{}:queue:test-send", self.prefix)
    }

    /// Where [`DeliverWebhook`] jobs go.
    pub fn webhook(&self) -> String {
        format!("{}:queue:webhook", self.prefix)
    }

    /// Where [`Dispatch`] jobs go.
    pub fn dispatch(&self) -> String {
        format!("{}:queue:dispatch", self.prefix)
    }

    /// Every queue with its short name: the one people see, and the suffix of the
    /// consumer names a worker registers on it (`<replica>-<short>`).
    pub fn all(&self) -> [(&'static str, String); 5] {
        [
            ("validate", self.validate_account()),
            ("dispatch", self.dispatch()),
            ("scan", self.scan()),
            ("test-send", self.test_send()),
            ("webhook", self.webhook()),
        ]
    }
}

/// The apalis-redis storage of one queue, configured identically for producers and workers.
pub fn queue_storage<T>(conn: redis::aio::ConnectionManager, queue: String) -> RedisStorage<T> {
    let config =
        apalis_redis::Config::default().queue(queue).heartbeat_interval(HEARTBEAT).missed_heartbeats(MISSED_HEARTBEATS);
    RedisStorage::new(conn).with_config(config)
}

#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("queue: {0}")]
    Queue(String),
}

/// Starts a mailbox's dispatch chain now. With `replace`, any sleeping chain is
/// superseded (used when new work arrives); without, only a missing chain is started
/// (used by the sweep, so replicas do not start one each).
pub async fn wake_mailbox(
    ledger: &crate::storage::ledger::Ledger,
    queue: &RedisStorage<Dispatch>,
    account: &AccountId,
    replace: bool,
) -> Result<bool, WakeError> {
    use apalis_core::backend::TaskSink;
    let token = uuid::Uuid::new_v4().simple().to_string();
    // The new job must start within the lease, or the sweep will start another.
    if !ledger.start_chain(account, &token, 10 * 60 * 1000, !replace).await? {
        return Ok(false);
    }
    queue.clone().push(Dispatch { account_id: *account, token }).await.map_err(|e| WakeError::Queue(e.to_string()))?;
    Ok(true)
}
