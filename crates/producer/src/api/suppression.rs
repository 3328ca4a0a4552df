//! `/suppression`: the global suppression list — addresses and whole domains no campaign
//! ever mails.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use coldsend_core::error_code::ErrorCode;
use coldsend_service::suppression::{SuppressionPage, SuppressionReport, SuppressionRequest};
use serde::Deserialize;

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only entries containing this text.
    search: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]+$")]
    cursor: Option<String>,
    /// 1-1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Suppressed addresses and domains, with why.
#[utoipa::path(get, path = "/api/public/v1/suppression", operation_id = "listSuppression", tag = "suppression",
    params(ListQuery),
    responses((status = 200, body = SuppressionPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SuppressionPage>, ApiError> {
    let page =
        state.suppression.list(q.search.as_deref().unwrap_or(""), q.cursor.as_deref(), q.limit.unwrap_or(100)).await?;
    Ok(Json(page))
}

/// Suppress addresses and/or whole domains (reason `manual`); invalid entries are
/// reported and skipped.
#[utoipa::path(post, path = "/api/public/v1/suppression", operation_id = "addSuppression", tag = "suppression",
    request_body = SuppressionRequest,
    responses((status = 200, body = SuppressionReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<SuppressionReport>, ApiError> {
    let request: SuppressionRequest = serde_json::from_slice(&read_body(b)?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("expected {{\"addresses\": [...], \"domains\": [...]}}: {e}"),
        )
    })?;
    Ok(Json(state.suppression.add(request).await?))
}

/// Take an address, or a domain (`example.com` or `@example.com`), off the list.
#[utoipa::path(delete, path = "/api/public/v1/suppression/{entry}", operation_id = "removeSuppression", tag = "suppression",
    params(("entry" = String, Path, description = "An address, or a domain")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove(State(state): State<AppState>, Path(entry): Path<String>) -> Result<StatusCode, ApiError> {
    state.suppression.remove(&entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole list as CSV (`entry,kind,reason`).
#[utoipa::path(get, path = "/api/public/v1/suppression/export", operation_id = "exportSuppression", tag = "suppression",
    responses((status = 200, description = "CSV", content_type = "text/csv"), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let csv = state.suppression.export_csv().await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

/// Add the entries of a CSV (first column: an address, `@domain` or `domain`; a header
/// line is skipped); bad lines are reported by number.
#[utoipa::path(post, path = "/api/public/v1/suppression/import", operation_id = "importSuppression", tag = "suppression",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = SuppressionReport), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn import(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<SuppressionReport>, ApiError> {
    Ok(Json(state.suppression.import_csv(&read_body(b)?).await?))
}
