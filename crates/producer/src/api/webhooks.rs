//! `/webhooks`: endpoints that receive coldsend's events, signed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coldsend_core::storage::webhooks::EndpointStatus;
use coldsend_service::webhooks::{CreatedWebhook, WebhookRequest};

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};

/// Add an endpoint. Events (`sent`, `reply`, `bounce`, `auto_reply`, `complaint`,
/// `unsubscribe`, `sender_refused`, `lead_state`, `account_health`, `campaign_state`,
/// `webhook_disabled`; default all) are POSTed as JSON `{id, type, occurred_at, data}` with
/// `Coldsend-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, retried with
/// exponential backoff, at least once (deduplicate by `id`). The secret is in this answer only.
#[utoipa::path(post, path = "/api/public/v1/webhooks", operation_id = "createWebhook", tag = "webhooks",
    request_body = WebhookRequest,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.webhooks.create(&read_body(b)?).await?)))
}

/// Every endpoint with its delivery record: enabled, delivered, failed, failures in a row,
/// the last attempt's time, status and error.
#[utoipa::path(get, path = "/api/public/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks",
    responses((status = 200, body = Vec<EndpointStatus>), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<EndpointStatus>>, ApiError> {
    Ok(Json(state.webhooks.list().await?))
}

/// One endpoint with its delivery record.
#[utoipa::path(get, path = "/api/public/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = EndpointStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<EndpointStatus>, ApiError> {
    Ok(Json(state.webhooks.get(&id).await?))
}

/// Remove an endpoint; queued deliveries to it are dropped.
#[utoipa::path(delete, path = "/api/public/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable an endpoint again (after it was disabled for failing); its failure count restarts.
#[utoipa::path(post, path = "/api/public/v1/webhooks/{id}/enable", operation_id = "enableWebhook", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = EndpointStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn enable(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<EndpointStatus>, ApiError> {
    Ok(Json(state.webhooks.enable(&id).await?))
}
