//! The loop that consumes the Redis-level command stream (`p:commands`), one per worker
//! process, in the consumer group `coldsend`.
//!
//! - Each round: entries a dead consumer left pending for 30 s are claimed, our own
//!   pending entries whose retry time has come are taken again, then new entries are read
//!   (XREADGROUP BLOCK on a connection of its own).
//! - A command that can never be carried out goes to `p:commands:dead` with its reason;
//!   one that failed for a reason that may pass (Redis) is retried with backoff, at most
//!   [`MAX_ATTEMPTS`] times, then dead-lettered too. Meanwhile other commands flow: a
//!   retry waits in the pending list, not in the loop.
//! - What is recorded is the redacted command: no secret reaches the done or dead streams.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::commands::{CommandEntry, CommandStream, Filed};
use coldsend_service::commands::{CommandHandler, Outcome, redacted};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long one XREADGROUP waits for new commands (the connection's response timeout
/// must be longer).
pub const READ_BLOCK: Duration = Duration::from_secs(1);
/// Attempts of a command that keeps failing transiently before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 6;
/// A pending entry idle this long belongs to a dead consumer and is claimed.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
const BATCH: usize = 10;

pub struct CommandConsumer {
    stream: CommandStream,
    handler: CommandHandler,
    key: SealingKey,
    /// Entries waiting for a retry: attempts so far and when the next may start.
    retries: HashMap<String, (u32, Instant)>,
}

impl CommandConsumer {
    pub fn new(stream: CommandStream, handler: CommandHandler, key: SealingKey) -> Self {
        Self { stream, handler, key, retries: HashMap::new() }
    }

    /// Consumes until `stop` turns true. A Redis outage is waited out with backoff.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                return;
            }
            match self.round().await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "command stream unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn round(&mut self) -> redis::RedisResult<()> {
        self.stream.ensure_group().await?;
        let now = Instant::now();
        let mut entries = self.stream.claim_abandoned(ABANDONED_AFTER, BATCH).await?;
        let retry_due = |e: &CommandEntry| self.retries.get(&e.id).is_none_or(|(_, at)| *at <= now);
        entries.extend(self.stream.own_pending(BATCH * 10).await?.into_iter().filter(retry_due));
        if entries.is_empty() {
            let block = self
                .retries
                .values()
                .map(|(_, at)| at.saturating_duration_since(now))
                .min()
                .unwrap_or(READ_BLOCK)
                .clamp(Duration::from_millis(10), READ_BLOCK);
            entries = self.stream.read_new(BATCH, block).await?;
        }
        let mut seen = std::collections::HashSet::new();
        for entry in entries {
            if seen.insert(entry.id.clone()) {
                self.process(entry).await?;
            }
        }
        Ok(())
    }

    async fn process(&mut self, entry: CommandEntry) -> redis::RedisResult<()> {
        let Some(raw) = entry.command.as_deref() else {
            return self.file(&entry, Filed::Dead, "", "entry has no 'command' field").await;
        };
        match self.handler.handle(raw).await {
            Outcome::Done(result) => self.file(&entry, Filed::Done, raw, &result.to_string()).await,
            Outcome::Refused(reason) => {
                warn!(entry = %entry.id, reason = %reason, "command refused: dead-lettered");
                self.file(&entry, Filed::Dead, raw, &reason).await
            }
            Outcome::Transient(error) => {
                let previous = self.retries.get(&entry.id).map_or(0, |(n, _)| *n);
                // Deliveries count attempts made by consumers that died, too.
                let attempts = (previous + 1).max(u32::try_from(entry.deliveries).unwrap_or(u32::MAX));
                if attempts >= MAX_ATTEMPTS {
                    let reason = format!("gave up after {attempts} attempts; last error: {error}");
                    warn!(entry = %entry.id, reason = %reason, "command dead-lettered");
                    return self.file(&entry, Filed::Dead, raw, &reason).await;
                }
                let wait = Duration::from_millis(250 * (1u64 << attempts.min(6)));
                warn!(entry = %entry.id, attempt = attempts, retry_in_ms = wait.as_millis() as u64, error = %error, "command failed; will retry");
                self.retries.insert(entry.id, (attempts, Instant::now() + wait));
                Ok(())
            }
        }
    }

    async fn file(&mut self, entry: &CommandEntry, filed: Filed, raw: &str, detail: &str) -> redis::RedisResult<()> {
        let text = if raw.is_empty() { String::new() } else { redacted(raw, &self.key, &entry.id) };
        self.stream.file(&entry.id, filed, &text, detail).await?;
        self.retries.remove(&entry.id);
        if filed == Filed::Done {
            info!(entry = %entry.id, "command carried out");
        }
        Ok(())
    }
}
