//! `/campaigns/{id}/preview`, `/campaigns/{id}/test-send` and `/test-sends/{id}`: thin
//! adapters over [`PreviewService`](coldsend_service::preview::PreviewService).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coldsend_core::storage::test_sends::{TestSend, TestSendState};
use coldsend_service::preview::{PreviewRequest, PreviewView, TestSendBody};

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};

/// How long `POST …/test-send` waits for a worker before answering 202.
const TEST_SEND_WAIT: Duration = Duration::from_secs(20);

/// Render and compose every step for chosen leads (one lead by id, an inline lead, or the
/// first N), exactly as they would be sent: subject, text, HTML, headers. A step that
/// cannot be made for a lead says why instead. Nothing is sent or stored.
#[utoipa::path(post, path = "/api/public/v1/campaigns/{id}/preview", operation_id = "previewCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")), request_body = PreviewRequest,
    responses((status = 200, body = PreviewView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<PreviewView>, ApiError> {
    Ok(Json(state.previews.preview(&id, &read_body(b)?).await?))
}

/// Send chosen steps to an address from one of the campaign's mailboxes, marked as tests
/// ("[TEST]" subject, `X-Coldsend-Test` header, their own Message-IDs), counted against
/// the mailbox's daily cap, never recorded as a lead's step. Answers 200 with each step's
/// outcome once a worker sent them (within 20 s), else 202: poll `GET /test-sends/{id}`.
#[utoipa::path(post, path = "/api/public/v1/campaigns/{id}/test-send", operation_id = "testSendCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")), request_body = TestSendBody,
    responses((status = 200, description = "Done", body = TestSend), (status = 202, description = "Queued or sending", body = TestSend),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The mailbox is not ACTIVE", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TestSend>), ApiError> {
    let record = state.previews.test_send(&id, &read_body(b)?, TEST_SEND_WAIT).await?;
    let status = if record.state == TestSendState::Done { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(record)))
}

/// A test send and each step's outcome so far (kept for a week).
#[utoipa::path(get, path = "/api/public/v1/test-sends/{id}", operation_id = "getTestSend", tag = "campaigns",
    params(("id" = String, Path, description = "Test send id")),
    responses((status = 200, body = TestSend), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_test_send(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TestSend>, ApiError> {
    Ok(Json(state.previews.get_test_send(&id).await?))
}
