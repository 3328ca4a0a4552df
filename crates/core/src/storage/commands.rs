//! The command streams: `p:commands` (what producers in any language write),
//! `p:commands:done` (outcomes) and `p:commands:dead` (refusals with their reasons).
//! What a command means lives in `coldsend-service`; the loop that reads the stream in the
//! worker. Entries recorded here never hold a secret: callers pass the redacted text.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};

use super::keys::Keys;

/// The consumer group every worker reads in.
pub const GROUP: &str = "coldsend";
/// Entries kept in the done and dead streams (approximately).
const STREAM_CAP: usize = 10_000;

/// One entry of the command stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEntry {
    pub id: String,
    /// The `command` field; `None` when the entry has none.
    pub command: Option<String>,
    /// How many times the group delivered it (1 on first delivery).
    pub deliveries: u64,
}

/// Which stream an outcome goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// `p:commands:done`, with `result`.
    Done,
    /// `p:commands:dead`, with `reason`.
    Dead,
}

#[derive(Clone)]
pub struct CommandStream {
    conn: ConnectionManager,
    keys: Keys,
    consumer: String,
}

impl CommandStream {
    /// `conn` must not be shared: XREADGROUP BLOCK holds it while it waits, so its response
    /// timeout must exceed the block.
    pub fn new(conn: ConnectionManager, prefix: &str, consumer: &str) -> Self {
        Self { conn, keys: Keys::new(prefix), consumer: consumer.to_owned() }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub async fn ensure_group(&self) -> redis::RedisResult<()> {
        super::ensure_group(&self.conn, self.keys.commands(), GROUP).await
    }

    /// Entries another consumer left pending longer than `idle` (it died): now ours.
    pub async fn claim_abandoned(&self, idle: Duration, count: usize) -> redis::RedisResult<Vec<CommandEntry>> {
        let claimed: StreamAutoClaimReply = redis::AsyncCommands::xautoclaim_options(
            &mut self.conn.clone(),
            self.keys.commands(),
            GROUP,
            &self.consumer,
            idle.as_millis() as u64,
            "0-0",
            StreamAutoClaimOptions::default().count(count),
        )
        .await?;
        let ids: Vec<String> = claimed.claimed.iter().map(|e| e.id.clone()).collect();
        let counts = self.delivery_counts(&ids).await?;
        Ok(claimed
            .claimed
            .into_iter()
            .map(|e| CommandEntry {
                deliveries: counts.get(&e.id).copied().unwrap_or(1),
                command: e.get::<String>("command"),
                id: e.id,
            })
            .collect())
    }

    /// Our own entries delivered but not yet acknowledged (retries, or replies lost).
    /// Reading them counts as a delivery in Redis, so `deliveries` is not reported here
    /// (1): the consumer counts its own attempts.
    pub async fn own_pending(&self, count: usize) -> redis::RedisResult<Vec<CommandEntry>> {
        let opts = StreamReadOptions::default().group(GROUP, &self.consumer).count(count);
        let reply: StreamReadReply =
            redis::AsyncCommands::xread_options(&mut self.conn.clone(), &[self.keys.commands()], &["0"], &opts).await?;
        Ok(first_deliveries(reply))
    }

    /// New entries, waiting up to `block` for some.
    pub async fn read_new(&self, count: usize, block: Duration) -> redis::RedisResult<Vec<CommandEntry>> {
        let opts =
            StreamReadOptions::default().group(GROUP, &self.consumer).count(count).block(block.as_millis() as usize);
        let reply: StreamReadReply =
            redis::AsyncCommands::xread_options(&mut self.conn.clone(), &[self.keys.commands()], &[">"], &opts).await?;
        Ok(first_deliveries(reply))
    }

    /// How often the group delivered each entry (XPENDING), for bounded retries.
    async fn delivery_counts(&self, ids: &[String]) -> redis::RedisResult<std::collections::HashMap<String, u64>> {
        let Some(first) = ids.iter().min() else { return Ok(Default::default()) };
        let Some(last) = ids.iter().max() else { return Ok(Default::default()) };
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(self.keys.commands())
            .arg(GROUP)
            .arg(first)
            .arg(last)
            .arg(ids.len().max(10) * 4)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(rows.into_iter().map(|(id, _, _, n)| (id, n)).collect())
    }

    /// Files the outcome (redacted command text) and removes the entry: one transaction,
    /// so an entry is never both pending and filed.
    pub async fn file(
        &self,
        entry_id: &str,
        filed: Filed,
        redacted_command: &str,
        detail: &str,
    ) -> redis::RedisResult<()> {
        let (stream, field) = match filed {
            Filed::Done => (self.keys.commands_done(), "result"),
            Filed::Dead => (self.keys.commands_dead(), "reason"),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_CAP)
            .arg("*")
            .arg("entry")
            .arg(entry_id)
            .arg("command")
            .arg(redacted_command)
            .arg(field)
            .arg(detail)
            .ignore()
            .cmd("XACK")
            .arg(self.keys.commands())
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(self.keys.commands())
            .arg(entry_id)
            .ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }
}

/// The entries of a read, each counted as delivered once (the consumer counts retries).
fn first_deliveries(reply: StreamReadReply) -> Vec<CommandEntry> {
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| CommandEntry { command: e.get::<String>("command"), id: e.id, deliveries: 1 })
        .collect()
}
