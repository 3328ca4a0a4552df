//! Webhook endpoints: add (the signing secret is made here, shown once, stored sealed),
//! list with each endpoint's delivery record, enable again, remove.

use coldsend_core::RequestError;
use coldsend_core::error_code::ErrorCode;
use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::webhooks::{Endpoint, EndpointStatus, WebhookStoreError, Webhooks};
use coldsend_core::webhook::EventType;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("no webhook with id '{0}'")]
    NotFound(String),
    #[error("storage unavailable: {0}")]
    Store(#[from] WebhookStoreError),
}

impl WebhookError {
    pub fn is_transient(&self) -> bool {
        matches!(self, WebhookError::Store(WebhookStoreError::Redis(_)))
    }
}

/// The body of `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// Event types to receive; default: all of them.
    pub events: Option<Vec<String>>,
}

/// A new endpoint: its status and the signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub endpoint: EndpointStatus,
    /// HMAC-SHA256 key of the `Coldsend-Signature` header. Store it now: it is never shown again.
    pub secret: String,
}

#[derive(Clone)]
pub struct WebhookService {
    store: Webhooks,
    key: SealingKey,
}

impl WebhookService {
    pub fn new(store: Webhooks, key: SealingKey) -> Self {
        Self { store, key }
    }

    pub async fn create(&self, body: &[u8]) -> Result<CreatedWebhook, WebhookError> {
        let bad = |code, field: &str, m: String| RequestError::new(code, m, Some(field));
        let req: WebhookRequest = serde_json::from_slice(body).map_err(|e| {
            RequestError::new(ErrorCode::InvalidBody, format!("expected {{\"url\": …, \"events\": […]}}: {e}"), None)
        })?;
        let url = url::Url::parse(req.url.trim())
            .map_err(|e| bad(ErrorCode::InvalidField, "url", format!("'{}' is not a URL: {e}", req.url)))?;
        if !["http", "https"].contains(&url.scheme()) || url.host_str().is_none() {
            return Err(
                bad(ErrorCode::InvalidField, "url", "the URL must be http:// or https:// with a host".into()).into()
            );
        }
        let events = match req.events {
            None => EventType::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(bad(ErrorCode::InvalidField, "events", "name at least one event type".into()).into());
            }
            Some(names) => {
                let mut out = Vec::new();
                for n in &names {
                    let t = EventType::parse(n).ok_or_else(|| {
                        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        bad(
                            ErrorCode::InvalidField,
                            "events",
                            format!("unknown event type '{n}'; known: {}", known.join(", ")),
                        )
                    })?;
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                out
            }
        };
        let secret = SecretString::from(format!("whsec_{}", coldsend_core::sealed::SealingKey::generate_text()));
        let endpoint = Endpoint {
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_string(),
            events,
            created_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        self.store.create(&endpoint, &secret, &self.key).await?;
        tracing::info!(webhook_id = %endpoint.id, url = %endpoint.url, "webhook endpoint added");
        Ok(CreatedWebhook { endpoint: self.store.status(&endpoint).await?, secret: secret.expose_secret().to_owned() })
    }

    pub async fn list(&self) -> Result<Vec<EndpointStatus>, WebhookError> {
        let mut out = Vec::new();
        for e in self.store.list().await? {
            out.push(self.store.status(&e).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<EndpointStatus, WebhookError> {
        let e = self.store.get(id).await?.ok_or_else(|| WebhookError::NotFound(id.to_owned()))?;
        Ok(self.store.status(&e).await?)
    }

    /// Enables an endpoint again (after it was disabled for failing), failures reset.
    pub async fn enable(&self, id: &str) -> Result<EndpointStatus, WebhookError> {
        if !self.store.enable(id).await? {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        tracing::info!(webhook_id = %id, "webhook endpoint enabled");
        self.get(id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), WebhookError> {
        if !self.store.delete(id).await? {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        tracing::info!(webhook_id = %id, "webhook endpoint removed");
        Ok(())
    }
}
