//! `coldsend webhooks …`: endpoints that receive coldsend's events.

use clap::Subcommand;
use coldsend_service::webhooks::WebhookService;

use super::json;

#[derive(Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Add an endpoint; prints it with its signing secret (shown this once).
    Add {
        /// Where events are POSTed (http:// or https://).
        #[arg(long)]
        url: String,
        /// An event type to receive (repeat for several; default: all). Types: sent, reply,
        /// bounce, auto_reply, complaint, unsubscribe, sender_refused, lead_state,
        /// account_health, campaign_state, webhook_disabled.
        #[arg(long = "event")]
        events: Vec<String>,
    },
    /// Endpoints with their delivery record (enabled, delivered, failed, last response).
    List,
    /// One endpoint with its delivery record.
    Show { id: String },
    /// Enable an endpoint that was disabled for failing.
    Enable { id: String },
    /// Remove an endpoint; deliveries queued for it are dropped.
    Rm { id: String },
}

impl WebhooksCommand {
    /// Whether the command only reads (and so runs without the encryption key).
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, Self::List | Self::Show { .. })
    }
}

pub(crate) async fn webhooks(service: &WebhookService, cmd: WebhooksCommand) -> anyhow::Result<()> {
    match cmd {
        WebhooksCommand::Add { url, events } => {
            let events = (!events.is_empty()).then_some(events);
            let body = serde_json::json!({"url": url, "events": events});
            json(&service.create(&serde_json::to_vec(&body)?).await?)
        }
        WebhooksCommand::List => json(&service.list().await?),
        WebhooksCommand::Show { id } => json(&service.get(&id).await?),
        WebhooksCommand::Enable { id } => json(&service.enable(&id).await?),
        WebhooksCommand::Rm { id } => {
            service.delete(&id).await?;
            eprintln!("removed {id}");
            Ok(())
        }
    }
}
