//! Webhook delivery, in two parts that never hold up sending or scanning:
//! - the fan-out loop reads the outbox stream in a consumer group and queues one
//!   `DeliverWebhook` job per event and subscribed endpoint, acknowledging an entry only
//!   after its jobs are queued (a dead reader's entries are claimed by another replica);
//! - the `DeliverWebhook` handler POSTs one signed event once; a failure is recorded on
//!   the endpoint and the next attempt is a new job after an exponential backoff with
//!   jitter, up to `webhooks.max_attempts`; `webhooks.disable_after_failures` failures in a
//!   row disable the endpoint and publish a `webhook_disabled` event.
//!
//! At least once: an event may arrive twice (a redelivery, a retry after a lost answer);
//! receivers deduplicate by its id. Order is not guaranteed: each event carries its time.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use coldsend_core::jobs::DeliverWebhook;
use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::WebhookConfig;
use coldsend_core::storage::webhooks::{Outbox, Outcome, Webhooks};
use coldsend_core::webhook::{Event, EventType, signature};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

/// How long one read of the outbox waits for new events.
pub const READ_BLOCK: Duration = Duration::from_secs(2);
/// An entry another replica read but did not acknowledge for this long is taken over.
const ABANDONED: Duration = Duration::from_secs(60);
/// Most events taken in one round.
const BATCH: usize = 1000;
/// After a round that was not full, events are left to gather this long before the next
/// read: while a campaign sends thousands a second, a round then carries hundreds of events
/// instead of a handful (each round costs its reads, the endpoint list and an ack), for at
/// most this much more delay to a webhook.
const GATHER: Duration = Duration::from_millis(100);

/// The fan-out loop of one replica.
pub struct FanOut {
    /// On its own connection (its reads block).
    pub outbox: Outbox,
    pub webhooks: Webhooks,
    pub queue: RedisStorage<DeliverWebhook>,
    pub consumer: String,
}

/// Which entries a round reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// This consumer's own unacknowledged entries: at start and after a failed round.
    Own,
    /// Entries a dead replica left pending: now and then (every `ABANDONED / 4`).
    Abandoned,
    /// New entries.
    New,
}

impl FanOut {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.outbox.ensure_group().await {
            warn!(error = %e, "webhook outbox group not created; retrying on the next read");
        }
        let mut recover = true;
        let mut claimed_at: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let source = if recover {
                Source::Own
            } else if claimed_at.is_none_or(|t| t.elapsed() > ABANDONED / 4) {
                claimed_at = Some(std::time::Instant::now());
                Source::Abandoned
            } else {
                Source::New
            };
            let round = tokio::select! {
                r = self.round(source) => r,
                _ = stop.changed() => return,
            };
            let pause = match round {
                Ok(taken) => {
                    // Own and abandoned entries are read until none are left.
                    if source == Source::Own && taken == 0 {
                        recover = false;
                    }
                    (source == Source::New && taken < BATCH).then_some(GATHER)
                }
                Err(e) => {
                    warn!(error = %e, "webhook fan-out failed; retrying");
                    let _ = self.outbox.ensure_group().await;
                    recover = true;
                    Some(Duration::from_secs(1))
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// One batch: queue a delivery per subscribed endpoint, then acknowledge the batch.
    /// Returns how many entries it took.
    async fn round(&self, source: Source) -> Result<usize, BoxDynError> {
        let entries = match source {
            Source::Own => self.outbox.read_own(&self.consumer, BATCH).await?,
            Source::Abandoned => self.outbox.claim_abandoned(&self.consumer, BATCH, ABANDONED).await?,
            Source::New => self.outbox.read_new(&self.consumer, BATCH, READ_BLOCK).await?,
        };
        if entries.is_empty() {
            return Ok(0);
        }
        let endpoints = self.webhooks.list().await?;
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            // Nothing to deliver to (the last endpoint went after the entry was published):
            // the entry is acknowledged unread.
            if !endpoints.is_empty() {
                let read = entry.events();
                for event in &read.events {
                    for e in endpoints.iter().filter(|e| e.events.contains(&event.kind)) {
                        let job = DeliverWebhook { endpoint_id: e.id.clone(), event: event.clone(), attempt: 1 };
                        self.queue.clone().push(job).await?;
                    }
                }
                if read.unreadable > 0 {
                    warn!(entry = %entry.id, unreadable = read.unreadable, "outbox entry with an unreadable event; skipped");
                }
            }
            ids.push(entry.id);
        }
        self.outbox.ack(&ids).await?;
        debug!(entries = ids.len(), endpoints = endpoints.len(), ?source, "outbox entries fanned out");
        Ok(ids.len())
    }
}

/// What the delivery handler needs.
pub struct DeliveryState {
    pub webhooks: Webhooks,
    pub outbox: Outbox,
    pub key: SealingKey,
    pub http: reqwest::Client,
    pub config: WebhookConfig,
    pub queue: RedisStorage<DeliverWebhook>,
}

impl DeliveryState {
    /// The HTTP client deliveries use: bounded in time, no redirects, no proxy.
    pub fn client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("coldsend-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

pub async fn deliver(job: DeliverWebhook, state: Data<Arc<DeliveryState>>) -> Result<(), BoxDynError> {
    let span = info_span!("webhook", webhook_id = %job.endpoint_id, event_id = %job.event.id, attempt = job.attempt);
    let started = std::time::Instant::now();
    let result = attempt(&job, &state).instrument(span).await;
    crate::metrics::job("webhook", result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn attempt(job: &DeliverWebhook, state: &DeliveryState) -> Result<(), BoxDynError> {
    let (Some(endpoint), Some((enabled, secret))) =
        (state.webhooks.get(&job.endpoint_id).await?, state.webhooks.signing(&job.endpoint_id, &state.key).await?)
    else {
        debug!("endpoint removed; event dropped for it");
        return Ok(());
    };
    if !enabled {
        info!("endpoint disabled; event dropped for it");
        return Ok(());
    }
    let body = serde_json::to_vec(&job.event)?;
    let now = chrono::Utc::now();
    let sent = state
        .http
        .post(&endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Coldsend-Signature", signature(secret.expose_secret().as_bytes(), now.timestamp(), &body))
        .header("Coldsend-Event-Id", &job.event.id)
        .header("Coldsend-Event-Type", job.event.kind.as_str())
        .body(body)
        .send()
        .await;
    let (delivered, status, error) = match sent {
        Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), String::new()),
        Ok(mut r) => {
            // Only the start of the answer is kept: a receiver's error page can be any size.
            let code = r.status().as_u16();
            let first = r.chunk().await.ok().flatten().unwrap_or_default();
            let text: String = String::from_utf8_lossy(&first[..first.len().min(400)]).chars().take(200).collect();
            (false, Some(code), format!("HTTP {code}: {text}"))
        }
        Err(e) => (false, None, e.to_string()),
    };
    let cfg = &state.config;
    let outcome = state
        .webhooks
        .record(&job.endpoint_id, delivered, now.timestamp_millis(), status, &error, cfg.disable_after_failures)
        .await?;
    metrics::counter!("coldsend_webhook_deliveries_total", "outcome" => if delivered { "delivered" } else { "failed" })
        .increment(1);
    match outcome {
        Outcome::Delivered => debug!(status = ?status, "delivered"),
        Outcome::Gone => {}
        Outcome::Disabled => {
            warn!(error = %error, "webhook endpoint disabled after repeated failures");
            let data = serde_json::json!({"webhook_id": endpoint.id, "url": endpoint.url, "last_error": error});
            state.outbox.publish(&Event::new(EventType::WebhookDisabled, data)).await?;
        }
        Outcome::Failed if job.attempt >= cfg.max_attempts => {
            warn!(error = %error, "webhook delivery failed; attempts used up, event dropped for this endpoint");
        }
        Outcome::Failed => {
            let wait = backoff(cfg, job.attempt);
            warn!(error = %error, retry_in_secs = wait.as_secs(), "webhook delivery failed; will retry");
            let next = DeliverWebhook { attempt: job.attempt + 1, ..job.clone() };
            state.queue.clone().push_task(TaskBuilder::new(next).run_after(wait).build()).await?;
        }
    }
    Ok(())
}

/// `retry_base_secs` doubling per attempt, capped, plus up to a quarter of jitter.
fn backoff(cfg: &WebhookConfig, attempt: u32) -> Duration {
    let base = cfg.retry_base_secs.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(cfg.retry_max_secs);
    let jitter = rand::thread_rng().gen_range(0..=base.max(1) * 250);
    Duration::from_millis(base * 1000 + jitter)
}
