//! The Redis-level contract: commands any language can enqueue with plain Redis.
//!
//! ```text
//! XADD <prefix>:commands * command '{"v": 1, "type": "add_leads", "campaign_id": "…", "leads": [{"email": "…"}]}'
//! ```
//! Types (v1): `register_account` (`account`: the sender-accounts API body),
//! `add_leads` (`campaign_id`, `leads`), `start_campaign` / `pause_campaign` /
//! `resume_campaign` / `stop_campaign` (`campaign_id`). An optional `request_id` is
//! echoed in the outcome. Workers consume the stream in the consumer group `coldsend`;
//! each command is acknowledged once handled. A command that cannot be carried out
//! (malformed JSON, unknown type or version, invalid fields, unknown campaign) is
//! moved to `<prefix>:commands:dead` with `reason`, never dropped silently; outcomes of
//! handled commands go to `<prefix>:commands:done`. Both streams are capped at ~10,000
//! entries. A command whose handling failed for a transient reason (Redis) stays
//! pending and is claimed again after 30 s.

use std::time::Duration;

use coldsend_core::campaign::CampaignAction;
use coldsend_core::keys::Keys;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use serde::Deserialize;
use serde_json::Value;

use crate::accounts::AccountError;
use crate::campaigns::CampaignError;
use crate::connect::Services;

pub const GROUP: &str = "coldsend";
/// How long one XREADGROUP waits for new commands (the connection's response timeout
/// must be longer).
pub const READ_BLOCK: Duration = Duration::from_secs(1);
const STREAM_CAP: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    RegisterAccount { account: Value, request_id: Option<String> },
    AddLeads { campaign_id: String, leads: Vec<Value>, request_id: Option<String> },
    StartCampaign { campaign_id: String, request_id: Option<String> },
    PauseCampaign { campaign_id: String, request_id: Option<String> },
    ResumeCampaign { campaign_id: String, request_id: Option<String> },
    StopCampaign { campaign_id: String, request_id: Option<String> },
}

/// Why a command was refused for good.
struct Rejected(String);

enum Outcome {
    Done(Value),
    Rejected(Rejected),
    /// Try again later (not acknowledged).
    Retry(String),
}

pub struct CommandConsumer {
    conn: ConnectionManager,
    keys: Keys,
    services: Services,
    consumer: String,
}

impl CommandConsumer {
    /// `conn` must not be shared: XREADGROUP BLOCK holds it while it waits.
    pub fn new(conn: ConnectionManager, prefix: &str, services: Services, consumer: &str) -> Self {
        Self { conn, keys: Keys::new(prefix), services, consumer: consumer.to_owned() }
    }

    /// Consumes until `stop` turns true. Redis errors are retried with backoff.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                return;
            }
            match self.round().await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, "command stream unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.commands())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// One read: stale pending entries first (a consumer died), then new ones.
    async fn round(&self) -> redis::RedisResult<()> {
        self.ensure_group().await?;
        let mut conn = self.conn.clone();
        let claimed: StreamAutoClaimReply = redis::AsyncCommands::xautoclaim_options(
            &mut conn,
            self.keys.commands(),
            GROUP,
            &self.consumer,
            30_000,
            "0-0",
            StreamAutoClaimOptions::default().count(10),
        )
        .await?;
        let mut entries: Vec<(String, Option<String>)> =
            claimed.claimed.into_iter().map(|e| (e.id.clone(), e.get::<String>("command"))).collect();
        if entries.is_empty() {
            // Our own entries delivered but never acknowledged (a reply lost to a timeout).
            let opts = StreamReadOptions::default().group(GROUP, &self.consumer).count(10);
            let reply: StreamReadReply =
                redis::AsyncCommands::xread_options(&mut conn, &[self.keys.commands()], &["0"], &opts).await?;
            for key in reply.keys {
                entries.extend(key.ids.into_iter().map(|e| (e.id.clone(), e.get::<String>("command"))));
            }
        }
        if entries.is_empty() {
            let opts = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(10)
                .block(READ_BLOCK.as_millis() as usize);
            let reply: StreamReadReply =
                redis::AsyncCommands::xread_options(&mut conn, &[self.keys.commands()], &[">"], &opts).await?;
            for key in reply.keys {
                entries.extend(key.ids.into_iter().map(|e| (e.id.clone(), e.get::<String>("command"))));
            }
        }
        for (id, raw) in entries {
            let outcome = match &raw {
                None => Outcome::Rejected(Rejected("entry has no 'command' field".into())),
                Some(text) => self.handle(text).await,
            };
            match outcome {
                Outcome::Retry(e) => tracing::warn!(entry = %id, error = %e, "command will be retried"),
                Outcome::Done(result) => {
                    self.record(&self.keys.commands_done(), &id, raw.as_deref(), "result", &result.to_string()).await?;
                    self.ack(&id).await?;
                }
                Outcome::Rejected(Rejected(reason)) => {
                    tracing::warn!(entry = %id, reason = %reason, "command rejected to the dead-letter stream");
                    self.record(&self.keys.commands_dead(), &id, raw.as_deref(), "reason", &reason).await?;
                    self.ack(&id).await?;
                }
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        stream: &str,
        id: &str,
        raw: Option<&str>,
        field: &str,
        value: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_CAP)
            .arg("*")
            .arg("entry")
            .arg(id)
            .arg("command")
            .arg(raw.unwrap_or(""))
            .arg(field)
            .arg(value)
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
    }

    async fn ack(&self, id: &str) -> redis::RedisResult<()> {
        redis::cmd("XACK")
            .arg(self.keys.commands())
            .arg(GROUP)
            .arg(id)
            .query_async::<i64>(&mut self.conn.clone())
            .await?;
        redis::cmd("XDEL")
            .arg(self.keys.commands())
            .arg(id)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
    }

    async fn handle(&self, raw: &str) -> Outcome {
        let mut value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => return Outcome::Rejected(Rejected(format!("not JSON: {e}"))),
        };
        if value.get("v").and_then(Value::as_u64) != Some(1) {
            return Outcome::Rejected(Rejected("unsupported or missing version 'v' (expected 1)".into()));
        }
        if let Some(m) = value.as_object_mut() {
            m.remove("v");
        }
        let command: Command = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(e) => return Outcome::Rejected(Rejected(format!("invalid command: {e}"))),
        };
        let c = &self.services.campaigns;
        let act = |id: String, a: CampaignAction, request_id: Option<String>| async move {
            match c.act(&id, a).await {
                Ok(view) => Ok(serde_json::json!({"request_id": request_id, "campaign_id": id, "state": view.state})),
                // Delivered twice: the second start of a running campaign changes nothing.
                Err(CampaignError::Conflict(m)) if already_there(&m, a) => {
                    Ok(serde_json::json!({"request_id": request_id, "campaign_id": id, "unchanged": m}))
                }
                Err(e) => Err(e),
            }
        };
        let result = match command {
            Command::RegisterAccount { account, request_id, .. } => {
                match self.services.accounts.register(account.to_string().as_bytes()).await {
                    Ok(view) => Ok(serde_json::json!({"request_id": request_id, "account_id": view.id})),
                    Err(AccountError::Store(e)) => return Outcome::Retry(e.to_string()),
                    Err(e) => return Outcome::Rejected(Rejected(e.to_string())),
                }
            }
            Command::AddLeads { campaign_id, leads, request_id, .. } => c
                .add_leads(&campaign_id, leads)
                .await
                .map(|r| serde_json::json!({"request_id": request_id, "campaign_id": campaign_id, "report": r})),
            Command::StartCampaign { campaign_id, request_id, .. } => {
                act(campaign_id, CampaignAction::Start, request_id).await
            }
            Command::PauseCampaign { campaign_id, request_id, .. } => {
                act(campaign_id, CampaignAction::Pause, request_id).await
            }
            Command::ResumeCampaign { campaign_id, request_id, .. } => {
                act(campaign_id, CampaignAction::Resume, request_id).await
            }
            Command::StopCampaign { campaign_id, request_id, .. } => {
                act(campaign_id, CampaignAction::Stop, request_id).await
            }
        };
        match result {
            Ok(v) => Outcome::Done(v),
            Err(CampaignError::Store(e)) => Outcome::Retry(e),
            Err(e) => Outcome::Rejected(Rejected(e.to_string())),
        }
    }
}

fn already_there(message: &str, action: CampaignAction) -> bool {
    let target = match action {
        CampaignAction::Start | CampaignAction::Resume => "RUNNING",
        CampaignAction::Pause => "PAUSED",
        CampaignAction::Stop => "STOPPED",
    };
    message.contains(&format!("a {target} campaign"))
}
