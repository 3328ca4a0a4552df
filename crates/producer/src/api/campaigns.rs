//! `/campaigns`, account usage and sending settings, and the one-click unsubscribe link.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use coldsend_core::campaign::{CampaignAction, CampaignRequest};
use coldsend_core::capacity::SendingSettings;
use coldsend_core::error_code::ErrorCode;
use coldsend_core::lead::LeadInput;
use coldsend_core::storage::inbox::{Cursor, InboxKind};
use serde::Deserialize;

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};
use coldsend_service::campaigns::{AddLeadsReport, AddOptions, CampaignView, LeadView, UsageView};

/// Create a campaign (state DRAFT).
#[utoipa::path(post, path = "/api/public/v1/campaigns", operation_id = "createCampaign", tag = "campaigns", request_body = CampaignRequest,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.campaigns.create(&read_body(b)?).await?)))
}

/// All campaigns with their statistics.
#[utoipa::path(get, path = "/api/public/v1/campaigns", operation_id = "listCampaigns", tag = "campaigns",
    responses((status = 200, body = Vec<CampaignView>), (status = 401, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<CampaignView>>, ApiError> {
    Ok(Json(state.campaigns.list().await?))
}

/// One campaign with its statistics.
#[utoipa::path(get, path = "/api/public/v1/campaigns/{id}", operation_id = "getCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(state.campaigns.get(&id).await?))
}

/// Edit a DRAFT or PAUSED campaign: any of name, sender_account_ids, steps, schedule,
/// daily_limit, stop_on_reply, stop_on_domain_reply, lead_variables. Templates are compiled
/// as at creation. Steps already sent stay as sent; a mailbox taken out hands its leads
/// that have not started to the others.
#[utoipa::path(patch, path = "/api/public/v1/campaigns/{id}", operation_id = "updateCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    request_body(content = Object, description = "A subset of the creation fields, e.g. {\"name\": \"Q4 v2\"}"),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not DRAFT or PAUSED", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(state.campaigns.update(&id, &read_body(b)?).await?))
}

/// Delete a campaign that is not RUNNING, with its leads and send records.
#[utoipa::path(delete, path = "/api/public/v1/campaigns/{id}", operation_id = "deleteCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "RUNNING", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.campaigns.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What taking a lead out did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LeadRemoved {
    /// `erased` (nothing had been sent) or `stopped` (its thread had started: it stays, STOPPED).
    pub outcome: coldsend_service::campaign_edits::LeadRemoval,
}

/// Take a lead out of a campaign: erased if nothing was sent to it, else STOPPED.
#[utoipa::path(delete, path = "/api/public/v1/campaigns/{id}/leads/{lead_id}", operation_id = "removeLead", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), ("lead_id" = String, Path, description = "Lead id")),
    responses((status = 200, body = LeadRemoved), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove_lead(
    State(state): State<AppState>,
    Path((id, lead_id)): Path<(String, String)>,
) -> Result<Json<LeadRemoved>, ApiError> {
    Ok(Json(LeadRemoved { outcome: state.campaigns.remove_lead(&id, &lead_id).await? }))
}

/// The documented body shape (parsed by hand so each row is judged on its own).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LeadsBody {
    pub leads: Vec<LeadInput>,
    /// Leave out leads that replied in another campaign (default false; they are reported
    /// in `elsewhere` either way).
    pub skip_replied_elsewhere: Option<bool>,
}

/// Add leads (`{"leads": [...]}` or a bare array). Invalid rows are reported and skipped;
/// addresses already in the campaign are ignored.
#[utoipa::path(post, path = "/api/public/v1/campaigns/{id}/leads", operation_id = "addLeads", tag = "campaigns", request_body = LeadsBody,
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = AddLeadsReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add_leads(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<AddLeadsReport>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&read_body(b)?).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, format!("request body is not valid JSON: {e}"))
    })?;
    let expected = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            "expected {\"leads\": [...], \"skip_replied_elsewhere\": false}",
        )
    };
    let mut options = AddOptions::default();
    let rows = match value {
        serde_json::Value::Array(rows) => rows,
        serde_json::Value::Object(mut m) => {
            match m.remove("skip_replied_elsewhere") {
                Some(serde_json::Value::Bool(b)) => options.skip_replied_elsewhere = b,
                Some(_) => return Err(expected()),
                None => {}
            }
            match m.remove("leads") {
                Some(serde_json::Value::Array(rows)) if m.is_empty() => rows,
                _ => return Err(expected()),
            }
        }
        _ => return Err(expected()),
    };
    Ok(Json(state.campaigns.add_leads_with(&id, rows, options).await?))
}

/// The campaign's leads with their state.
#[utoipa::path(get, path = "/api/public/v1/campaigns/{id}/leads", operation_id = "listLeads", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = Vec<LeadView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn leads(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<LeadView>>, ApiError> {
    Ok(Json(state.campaigns.leads(&id).await?))
}

/// start | pause | resume | stop.
#[utoipa::path(post, path = "/api/public/v1/campaigns/{id}/{action}", operation_id = "actOnCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), ("action" = CampaignAction, Path, description = "start, pause, resume or stop")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not allowed from the current state", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<CampaignView>, ApiError> {
    let action: CampaignAction =
        action.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e))?;
    Ok(Json(state.campaigns.act(&id, action).await?))
}

/// Sent today, the effective cap and the next allowed send of a mailbox.
#[utoipa::path(get, path = "/api/public/v1/sender-accounts/{id}/usage", operation_id = "getAccountUsage", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = UsageView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn usage(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<UsageView>, ApiError> {
    Ok(Json(state.campaigns.usage(&id).await?))
}

/// A mailbox's sending settings (time zone of its day, warm-up ramp, Sent copy).
#[utoipa::path(get, path = "/api/public/v1/sender-accounts/{id}/sending", operation_id = "getSendingSettings", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = SendingSettings), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_sending(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SendingSettings>, ApiError> {
    Ok(Json(state.campaigns.sending(&id).await?))
}

/// Replace a mailbox's sending settings.
#[utoipa::path(put, path = "/api/public/v1/sender-accounts/{id}/sending", operation_id = "putSendingSettings", tag = "sender-accounts",
    request_body = SendingSettings, params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = SendingSettings), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_sending(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<SendingSettings>, ApiError> {
    let settings: SendingSettings = serde_json::from_slice(&read_body(b)?)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSettings, e.to_string()))?;
    Ok(Json(state.campaigns.set_sending(&id, settings).await?))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The (campaign, lead) a token names, or the JSON error for a missing or forged one.
fn verified(
    state: &AppState,
    q: &TokenQuery,
) -> Result<(coldsend_core::campaign::CampaignId, coldsend_core::lead::LeadId), ApiError> {
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidToken, "the link has no token"))?;
    state.signer.verify(token).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidToken, "this unsubscribe link is not valid")
    })
}

/// RFC 8058 one-click unsubscribe (the `List-Unsubscribe` https link). No key: the token is signed.
#[utoipa::path(post, path = "/api/public/v1/unsubscribe", operation_id = "unsubscribe", tag = "unsubscribe",
    params(("token" = String, Query, description = "Signed token from the List-Unsubscribe link")),
    responses((status = 200, description = "Unsubscribed"), (status = 400, body = ErrorBody)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (campaign, lead) = verified(&state, &q)?;
    let email = state.campaigns.unsubscribe(&campaign, &lead).await?;
    Ok(Json(serde_json::json!({ "unsubscribed": email })))
}

/// A person opening the link in a browser: a page with one button that POSTs the
/// unsubscribe. A GET changes nothing, so link scanners that prefetch URLs in incoming
/// mail cannot unsubscribe anyone.
#[utoipa::path(get, path = "/api/public/v1/unsubscribe", operation_id = "unsubscribePage", tag = "unsubscribe",
    params(("token" = String, Query, description = "Signed token from the List-Unsubscribe link")),
    responses((status = 200, description = "A confirmation page (HTML)"), (status = 400, body = ErrorBody)))]
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<impl IntoResponse, ApiError> {
    verified(&state, &q)?;
    // The token is URL-safe base64 plus a dot: nothing to escape in the attribute.
    let page = format!(
        "<!doctype html><title>Unsubscribe</title><form method=\"post\" action=\"?token={}\">\
         <p>Stop receiving these emails?</p><button type=\"submit\">Unsubscribe</button></form>",
        q.token.as_deref().unwrap_or_default()
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct InboxQuery {
    /// Only this sender account.
    account: Option<String>,
    /// Only this campaign.
    campaign: Option<String>,
    /// Only this kind of event.
    kind: Option<InboxKind>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1-500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct InboxExportQuery {
    /// Only this sender account.
    account: Option<String>,
    /// Only this campaign.
    campaign: Option<String>,
    /// Only this kind of event.
    kind: Option<InboxKind>,
}

/// The master inbox as CSV (newest first, up to 100,000 events): id, received_at, kind,
/// account, campaign, lead, from, subject, snippet, and a bounce's recipient, reason, class
/// and status.
#[utoipa::path(get, path = "/api/public/v1/inbox/export", operation_id = "exportInbox", tag = "inbox",
    params(InboxExportQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export_inbox(
    State(state): State<AppState>,
    Query(q): Query<InboxExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = coldsend_core::storage::inbox::InboxFilter { account: q.account, campaign: q.campaign, kind: q.kind };
    let csv = coldsend_service::exports::inbox_csv(&state.inbox, &filter).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

/// A campaign's leads as CSV: id, email, names, company, state, error, sender account and
/// how many steps each was sent.
#[utoipa::path(get, path = "/api/public/v1/campaigns/{id}/leads/export", operation_id = "exportLeads", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export_leads(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let csv = state.campaigns.leads_csv(&id).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct InboxPage {
    events: Vec<coldsend_core::storage::inbox::InboxEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

/// The master inbox: replies, auto-replies, bounces and complaints from every mailbox, newest first.
#[utoipa::path(get, path = "/api/public/v1/inbox", operation_id = "listInbox", tag = "inbox", params(InboxQuery),
    responses((status = 200, body = InboxPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn inbox(State(state): State<AppState>, Query(q): Query<InboxQuery>) -> Result<Json<InboxPage>, ApiError> {
    let filter = coldsend_core::storage::inbox::InboxFilter { account: q.account, campaign: q.campaign, kind: q.kind };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let cursor = q.cursor.as_deref().map(str::parse::<Cursor>).transpose().map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        detail: super::ErrorDetail { code: ErrorCode::InvalidCursor, message: e, field: Some("cursor".into()) },
    })?;
    let (events, next_cursor) =
        state.inbox.page(&filter, cursor, limit).await.map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StorageUnavailable, e.to_string())
        })?;
    Ok(Json(InboxPage { events, next_cursor }))
}
