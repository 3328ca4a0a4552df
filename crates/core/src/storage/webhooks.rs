//! Webhooks in Redis (keys: [`super::keys`]): the endpoints operators configure (URL,
//! event types, a sealed signing secret, enabled or not, and the record of their
//! deliveries), and the outbox stream events are published to. Publishing is one XADD,
//! so it never waits on an endpoint, made only while an endpoint exists (the script that
//! publishes checks); a worker fans the outbox out to delivery jobs.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::{lua_script, unexpected};
use crate::sealed::{SealError, SealingKey};
use crate::webhook::{Event, EventType};

lua_script!(DELIVERED, "webhook_delivered");

lua_script!(DELETE, "webhook_delete");

lua_script!(PUBLISH, "outbox_publish");

/// The consumer group of the outbox (every worker reads in it).
pub const GROUP: &str = "webhooks";
/// Events kept in the outbox stream (approximately).
const OUTBOX_CAP: usize = 100_000;

/// An endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// RFC 3339.
    pub created_at: String,
}

/// An endpoint with whether it is enabled and how its deliveries went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointStatus {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub created_at: String,
    pub enabled: bool,
    pub delivered: u64,
    pub failed: u64,
    pub consecutive_failures: u64,
    /// The last attempt (ms since the epoch), its HTTP status (if any answer came) and
    /// error (if it failed).
    pub last_attempt_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// How a delivery's outcome changed the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
    /// Failed, and that disabled the endpoint.
    Disabled,
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the secret of webhook {0} cannot be opened: {1}")]
    Secret(String, SealError),
}

#[derive(Clone)]
pub struct Webhooks {
    conn: ConnectionManager,
    keys: Keys,
}

fn seal_context(id: &str) -> String {
    format!("coldsend/webhook/{id}/secret")
}

impl Webhooks {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Stores a new endpoint, enabled, with its secret sealed.
    pub async fn create(&self, e: &Endpoint, secret: &SecretString, key: &SealingKey) -> Result<(), WebhookStoreError> {
        let json = serde_json::to_string(e).unwrap_or_default();
        let sealed = key.seal(secret, &seal_context(&e.id));
        redis::pipe()
            .atomic()
            .hset(self.keys.webhooks(), &e.id, json)
            .ignore()
            .hset_multiple(self.keys.webhook(&e.id), &[("secret", sealed.as_str()), ("enabled", "1")])
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Every endpoint, oldest first.
    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookStoreError> {
        let all: HashMap<String, String> = self.conn.clone().hgetall(self.keys.webhooks()).await?;
        let mut out: Vec<Endpoint> = all.values().filter_map(|v| serde_json::from_str(v).ok()).collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Endpoint>, WebhookStoreError> {
        let raw: Option<String> = self.conn.clone().hget(self.keys.webhooks(), id).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The endpoint with its delivery record.
    pub async fn status(&self, e: &Endpoint) -> Result<EndpointStatus, WebhookStoreError> {
        let f: HashMap<String, String> = self.conn.clone().hgetall(self.keys.webhook(&e.id)).await?;
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(EndpointStatus {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            created_at: e.created_at.clone(),
            enabled: f.get("enabled").is_some_and(|v| v == "1"),
            delivered: num("delivered"),
            failed: num("failed"),
            consecutive_failures: num("consecutive_failures"),
            last_attempt_ms: f.get("last_attempt_at").and_then(|v| v.parse().ok()),
            last_status: f.get("last_status").and_then(|v| v.parse().ok()),
            last_error: f.get("last_error").filter(|v| !v.is_empty()).cloned(),
        })
    }

    /// Whether the endpoint is enabled, and its opened secret (`None`: gone).
    pub async fn signing(&self, id: &str, key: &SealingKey) -> Result<Option<(bool, SecretString)>, WebhookStoreError> {
        let (enabled, sealed): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.webhook(id))
            .arg(&["enabled", "secret"])
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(sealed) = sealed else { return Ok(None) };
        let secret = key.open(&sealed, &seal_context(id)).map_err(|e| WebhookStoreError::Secret(id.to_owned(), e))?;
        Ok(Some((enabled.as_deref() == Some("1"), secret)))
    }

    /// Enables an endpoint again with a clean failure count; `false` if it does not exist.
    pub async fn enable(&self, id: &str) -> Result<bool, WebhookStoreError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        let _: () = self
            .conn
            .clone()
            .hset_multiple(self.keys.webhook(id), &[("enabled", "1"), ("consecutive_failures", "0")])
            .await?;
        Ok(true)
    }

    pub async fn delete(&self, id: &str) -> Result<bool, WebhookStoreError> {
        let n: i64 = DELETE
            .key(self.keys.webhooks())
            .key(self.keys.webhook(id))
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Records one delivery attempt's outcome.
    pub async fn record(
        &self,
        id: &str,
        delivered: bool,
        now_ms: i64,
        status: Option<u16>,
        error: &str,
        disable_after: u32,
    ) -> Result<Outcome, WebhookStoreError> {
        let outcome: String = DELIVERED
            .key(self.keys.webhook(id))
            .arg(if delivered { "1" } else { "0" })
            .arg(now_ms)
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .arg(error.chars().take(500).collect::<String>())
            .arg(disable_after)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match outcome.as_str() {
            "delivered" => Outcome::Delivered,
            "failed" => Outcome::Failed,
            "disabled" => Outcome::Disabled,
            "gone" => Outcome::Gone,
            other => return Err(unexpected("webhook_delivered", other).into()),
        })
    }
}

/// The outbox: events published by anything that changes state, read by the workers'
/// fan-out in a consumer group (at least once: an entry is acknowledged only after its
/// delivery jobs are queued; a dead reader's entries are claimed by another).
#[derive(Clone)]
pub struct Outbox {
    conn: ConnectionManager,
    keys: Keys,
}

impl Outbox {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Publishes an event, if a webhook endpoint exists (`outbox_publish.lua`).
    pub async fn publish(&self, event: &Event) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        self.publish_in(&mut pipe, event);
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// The script of `publish`, to put in the same transaction as another write. Loaded
    /// first in the same pipeline: inside MULTI an unloaded script would fail alone while
    /// the transaction's other writes stand (a pipeline's EVALSHA is not retried).
    pub(super) fn publish_in(&self, pipe: &mut redis::Pipeline, event: &Event) {
        let mut publish = PUBLISH.key(self.keys.webhooks());
        publish.key(self.keys.outbox()).arg(serde_json::to_string(event).unwrap_or_default()).arg(OUTBOX_CAP);
        pipe.load_script(&PUBLISH).ignore().invoke_script(&publish).ignore();
    }

    pub async fn ensure_group(&self) -> redis::RedisResult<()> {
        super::ensure_group(&self.conn, self.keys.outbox(), GROUP).await
    }

    /// Entries this consumer read before but did not acknowledge (it died or failed mid-batch).
    pub async fn read_own(&self, consumer: &str, count: usize) -> redis::RedisResult<Vec<OutboxEntry>> {
        let own = StreamReadOptions::default().group(GROUP, consumer).count(count);
        let reply: StreamReadReply = self.conn.clone().xread_options(&[self.keys.outbox()], &["0"], &own).await?;
        Ok(entries(reply))
    }

    /// Entries another consumer left unacknowledged for longer than `idle` (it died).
    pub async fn claim_abandoned(
        &self,
        consumer: &str,
        count: usize,
        idle: Duration,
    ) -> redis::RedisResult<Vec<OutboxEntry>> {
        let claimed: StreamAutoClaimReply = self
            .conn
            .clone()
            .xautoclaim_options(
                self.keys.outbox(),
                GROUP,
                consumer,
                idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await?;
        Ok(claimed.claimed.iter().map(OutboxEntry::of).collect())
    }

    /// Entries no consumer has read yet, waiting up to `block` for the first.
    pub async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> redis::RedisResult<Vec<OutboxEntry>> {
        let new = StreamReadOptions::default().group(GROUP, consumer).count(count).block(block.as_millis() as usize);
        let reply: StreamReadReply = self.conn.clone().xread_options(&[self.keys.outbox()], &[">"], &new).await?;
        Ok(entries(reply))
    }

    pub async fn ack(&self, ids: &[String]) -> redis::RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self.conn.clone().xack(self.keys.outbox(), GROUP, ids).await?;
        Ok(())
    }
}

/// One outbox entry: the events one step published, in order. A step that tells two
/// things (a lead's last email sent, and so the lead completed) writes both in one entry,
/// the first in `event`, the second in `then`. Their JSON is parsed only when read
/// ([`OutboxEntry::events`]): with no endpoint to deliver to, the fan-out acknowledges
/// entries without parsing one.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: String,
    /// The fields that hold events, in the order they were published (`None`: not a string).
    fields: Vec<Option<String>>,
}

/// What an entry holds, read.
#[derive(Debug, Clone, Default)]
pub struct EntryEvents {
    pub events: Vec<Event>,
    /// Fields that held no readable event (skipped, and said so by the reader).
    pub unreadable: usize,
}

/// The fields of an entry that hold events, in the order they were published.
const EVENT_FIELDS: [&str; 2] = ["event", "then"];

impl OutboxEntry {
    fn of(e: &redis::streams::StreamId) -> Self {
        let fields = EVENT_FIELDS.iter().filter(|f| e.contains_key(f)).map(|f| e.get::<String>(f)).collect();
        OutboxEntry { id: e.id.clone(), fields }
    }

    /// The entry's events; an entry with none at all counts as one unreadable.
    pub fn events(&self) -> EntryEvents {
        let mut read = EntryEvents::default();
        for field in &self.fields {
            match field.as_deref().and_then(|j| serde_json::from_str(j).ok()) {
                Some(event) => read.events.push(event),
                None => read.unreadable += 1,
            }
        }
        if read.events.is_empty() && read.unreadable == 0 {
            read.unreadable = 1;
        }
        read
    }
}

fn entries(reply: StreamReadReply) -> Vec<OutboxEntry> {
    reply.keys.into_iter().flat_map(|k| k.ids).map(|e| OutboxEntry::of(&e)).collect()
}
