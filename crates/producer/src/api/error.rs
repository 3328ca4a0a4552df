//! Every error answers `{ "error": { "code", "message", "field" } }`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_email`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, detail: ErrorDetail { code: code.into(), message: message.into(), field: None } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let message = e.to_string();
        match e {
            AccountError::Invalid(r) => {
                let status = match r.code {
                    "body_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_json" => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Self { status, detail: ErrorDetail { code: r.code.into(), message: r.message, field: r.field } }
            }
            AccountError::Duplicate { .. } => Self {
                status: StatusCode::CONFLICT,
                detail: ErrorDetail { code: "duplicate_account".into(), message, field: Some("email_address".into()) },
            },
            AccountError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            AccountError::Store(ref inner) => {
                tracing::error!(error = %inner, "storage error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message)
            }
            AccountError::Enqueue { .. } => {
                tracing::error!(error = %message, "enqueue failed");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "enqueue_failed", message)
            }
        }
    }
}

impl From<crate::campaigns::CampaignError> for ApiError {
    fn from(e: crate::campaigns::CampaignError) -> Self {
        use crate::campaigns::CampaignError as E;
        let message = e.to_string();
        match e {
            E::Invalid(r) => {
                let status =
                    if r.code == "invalid_json" { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
                Self { status, detail: ErrorDetail { code: r.code.into(), message: r.message, field: r.field } }
            }
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            E::Store(_) => {
                tracing::error!(error = %message, "storage error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message)
            }
        }
    }
}

/// The raw request body, or the JSON error for one that could not be read (413 over the limit).
pub fn read_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body is larger than 65536 bytes")
        } else {
            ApiError::new(r.status(), "invalid_body", r.body_text())
        }
    })
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /api/public/v1/openapi.json")
}
