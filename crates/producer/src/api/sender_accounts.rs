//! `/sender-accounts` handlers: thin adapters over [`AccountService`](coldsend_service::accounts::AccountService).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use coldsend_core::SenderAccountRequest;

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};
use coldsend_service::accounts::AccountView;

/// Register a sender account; it is validated in the background.
#[utoipa::path(post, path = "/api/public/v1/sender-accounts", operation_id = "createSenderAccount", tag = "sender-accounts",
    request_body = SenderAccountRequest,
    responses(
        (status = 201, description = "Stored as PENDING_VALIDATION; a validation job is queued", body = AccountView),
        (status = 400, description = "Body is not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody),
        (status = 409, description = "An account with this email_address exists", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = read_body(body)?;
    let view = state.accounts.register(&body).await?;
    let location = format!("/api/public/v1/sender-accounts/{}", view.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)))
}

/// List all sender accounts, oldest first.
#[utoipa::path(get, path = "/api/public/v1/sender-accounts", operation_id = "listSenderAccounts", tag = "sender-accounts",
    responses((status = 200, body = Vec<AccountView>), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<AccountView>>, ApiError> {
    Ok(Json(state.accounts.list().await?))
}

/// One sender account with its health, its validation outcome and `today`: usage against
/// the effective cap, which limit binds, the warm-up stage and when it ends, the next
/// allowed send and the last scan.
#[utoipa::path(get, path = "/api/public/v1/sender-accounts/{id}", operation_id = "getSenderAccount", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AccountView>, ApiError> {
    let view = state.accounts.get(&id).await?;
    Ok(Json(AccountView { today: Some(state.campaigns.usage(&id).await?), ..view }))
}

/// `?force=true` on a delete.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete even though running campaigns send from the account: its leads that have not
    /// started move to the campaigns' other mailboxes, the threads it started stop.
    #[serde(default)]
    pub force: bool,
}

/// Remove a sender account and its stored credentials. It leaves every unfinished
/// campaign first (see `force`); a campaign it is the only mailbox of refuses (409).
#[utoipa::path(delete, path = "/api/public/v1/sender-accounts/{id}", operation_id = "deleteSenderAccount", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id"), DeleteQuery),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Running campaigns send from it (names them), or it is a campaign's only mailbox", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let force = query.force;
    state.accounts.get(&id).await?;
    state.campaigns.release_account(&id, force).await?;
    state.accounts.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Edit a sender account: any field of the registration body except `email_address`,
/// `inbox_type` and the sign-in method. Changing hosts, ports, TLS, usernames or passwords
/// validates it again (PENDING_VALIDATION until it passes); sending settings stay.
#[utoipa::path(patch, path = "/api/public/v1/sender-accounts/{id}", operation_id = "updateSenderAccount", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body(content = Object, description = "A subset of the registration fields, e.g. {\"daily_limit\": 80}"),
    responses((status = 200, description = "Stored (and queued for validation when the connection changed)", body = AccountView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, description = "A field is unknown, not editable or invalid", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let body = read_body(body)?;
    Ok(Json(state.accounts.update(&id, &body).await?))
}

/// Give an OAuth2 account a new grant (a refresh token from a new sign-in): ends
/// NEEDS_REAUTH once the account validates, and its campaigns go on.
#[utoipa::path(put, path = "/api/public/v1/sender-accounts/{id}/oauth", operation_id = "relinkSenderAccount", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body = coldsend_service::accounts::GrantRequest,
    responses((status = 202, description = "Stored; a validation job is queued", body = AccountView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn relink(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let body = read_body(body)?;
    let view = state.accounts.relink(&id, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Validate the account's SMTP and IMAP connections again.
#[utoipa::path(post, path = "/api/public/v1/sender-accounts/{id}/validate", operation_id = "validateSenderAccount", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 202, description = "PENDING_VALIDATION; a validation job is queued", body = AccountView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn validate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.accounts.revalidate(&id).await?)))
}

/// Body of `POST …/pause-sending`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseSending {
    /// How long (1 h to 1 year; default 24).
    pub hours: Option<u32>,
    /// Shown as the pause's reason.
    pub note: Option<String>,
}

/// Stop the mailbox sending for a while (scans go on, waiting steps keep their place);
/// `resume-sending` ends the pause sooner.
#[utoipa::path(post, path = "/api/public/v1/sender-accounts/{id}/pause-sending", operation_id = "pauseSending", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body(content = PauseSending, description = "Optional"),
    responses((status = 200, body = AccountView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn pause_sending(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AccountView>, ApiError> {
    let request: PauseSending = if body.iter().all(u8::is_ascii_whitespace) {
        PauseSending::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, coldsend_core::error_code::ErrorCode::InvalidJson, e.to_string())
        })?
    };
    Ok(Json(state.accounts.pause_sending(&id, request.hours.unwrap_or(24), request.note.as_deref()).await?))
}

/// End a sending pause now (after sender-side refusals: blocked, spam, DMARC, quota), once
/// what was refused is fixed. The mailbox's waiting steps go out again at once.
#[utoipa::path(post, path = "/api/public/v1/sender-accounts/{id}/resume-sending", operation_id = "resumeSending", tag = "sender-accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resume_sending(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let view = state.accounts.resume_sending(&id).await?;
    state.campaigns.wake(&id).await?;
    Ok(Json(view))
}
