//! Test sends: chosen steps of a campaign sent to a chosen address from a chosen mailbox,
//! marked as tests, counted against the mailbox's daily cap, never recorded as a lead's
//! step (keys: [`super::keys`]). The record is claimed once before anything is sent, so a
//! redelivered job sends nothing twice.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::lua_script;

lua_script!(CLAIM, "test_send_claim");

lua_script!(RESERVE, "test_send_reserve");

/// A record lives this long after it was asked for.
const TTL_SECS: u64 = 7 * 86_400;

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestSendRequest {
    pub campaign_id: String,
    pub sender_account_id: String,
    /// Where the test emails go.
    pub to: String,
    /// Step indexes (0 = first step), in the order sent.
    pub steps: Vec<usize>,
    /// Whose fields fill the templates; none: only the `to` address.
    pub lead_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TestSendState {
    Queued,
    Sending,
    Done,
}

impl TestSendState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "sending" => Some(Self::Sending),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TestOutcome {
    /// Accepted by the mailbox's SMTP server.
    Sent,
    /// The mailbox's daily cap is spent: not sent.
    CapReached,
    /// The step cannot be made (template error, no such step): not sent.
    Unsendable,
    /// The server refused it, or it could not be reached.
    Failed,
    /// The connection died after the body: it may have been accepted.
    Unknown,
}

/// How one step's test email went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestStepResult {
    pub step: usize,
    pub outcome: TestOutcome,
    /// The server's answer or the reason.
    pub detail: String,
    pub message_id: Option<String>,
}

/// A test send as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestSend {
    pub id: String,
    pub state: TestSendState,
    pub request: TestSendRequest,
    pub results: Vec<TestStepResult>,
}

#[derive(Clone)]
pub struct TestSends {
    conn: ConnectionManager,
    keys: Keys,
}

impl TestSends {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Stores a new queued test send; returns its id.
    pub async fn create(&self, request: &TestSendRequest) -> Result<String, redis::RedisError> {
        let id = uuid::Uuid::new_v4().to_string();
        let key = self.keys.test_send(&id);
        let json = serde_json::to_string(request).unwrap_or_default();
        redis::pipe()
            .atomic()
            .hset_multiple(&key, &[("request", json.as_str()), ("state", "queued"), ("results", "[]")])
            .ignore()
            .expire(&key, TTL_SECS as i64)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(id)
    }

    pub async fn get(&self, id: &str) -> Result<Option<TestSend>, redis::RedisError> {
        let (request, state, results): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.test_send(id))
            .arg(&["request", "state", "results"])
            .query_async(&mut self.conn.clone())
            .await?;
        let (Some(request), Some(state)) = (request, state) else { return Ok(None) };
        let (Ok(request), Some(state)) = (serde_json::from_str(&request), TestSendState::parse(&state)) else {
            return Ok(None);
        };
        let results = results.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default();
        Ok(Some(TestSend { id: id.to_owned(), state, request, results }))
    }

    /// Takes the test send for sending; `false` if another run took it (or it is gone).
    pub async fn claim(&self, id: &str) -> Result<bool, redis::RedisError> {
        let n: i64 = CLAIM.key(self.keys.test_send(id)).invoke_async(&mut self.conn.clone()).await?;
        Ok(n == 1)
    }

    /// Records the outcome so far (`done` when every step was tried).
    pub async fn record(&self, id: &str, results: &[TestStepResult], done: bool) -> Result<(), redis::RedisError> {
        let json = serde_json::to_string(results).unwrap_or_default();
        let state = if done { "done" } else { "sending" };
        let _: () = self
            .conn
            .clone()
            .hset_multiple(self.keys.test_send(id), &[("results", json.as_str()), ("state", state)])
            .await?;
        Ok(())
    }

    /// Counts one test email against the mailbox's cap (`cap_key`, the ledger's counter
    /// for its local day); `false` when the cap is spent.
    pub async fn reserve(&self, cap_key: &str, cap: u32) -> Result<bool, redis::RedisError> {
        let n: i64 = RESERVE.key(cap_key).arg(cap).arg(2 * 86_400).invoke_async(&mut self.conn.clone()).await?;
        Ok(n == 1)
    }
}
