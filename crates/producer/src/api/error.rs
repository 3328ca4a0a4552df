//! Every error answers `{ "error": { "code", "message", "field" } }` — including the
//! ones axum produces itself (405, bad query strings and path parameters), which
//! [`json_errors`] rewrites into the same shape.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coldsend_core::error_code::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

use coldsend_service::accounts::AccountError;
use coldsend_service::campaigns::CampaignError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_email`, `unauthorized`.
    pub code: ErrorCode,
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
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, detail: ErrorDetail { code, message: message.into(), field: None } }
    }

    fn from_request(r: coldsend_core::RequestError) -> Self {
        let status = match r.code {
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidJson | ErrorCode::InvalidCursor | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self { status, detail: ErrorDetail { code: r.code, message: r.message, field: r.field } }
    }

    /// A server-side failure: logged with its cause, answered 503 (retrying later can help).
    fn unavailable(code: ErrorCode, message: String) -> Self {
        tracing::error!(error = %message, code = %code, "request failed on the server side");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
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
            AccountError::Invalid(r) => Self::from_request(r),
            AccountError::Duplicate { .. } => Self {
                status: StatusCode::CONFLICT,
                detail: ErrorDetail { code: ErrorCode::DuplicateAccount, message, field: Some("email_address".into()) },
            },
            AccountError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
            AccountError::Store(_) => Self::unavailable(ErrorCode::StorageUnavailable, message),
            AccountError::Enqueue { .. } => Self::unavailable(ErrorCode::EnqueueFailed, message),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        let message = e.to_string();
        match e {
            CampaignError::Invalid(r) => Self::from_request(r),
            CampaignError::NotFound(_) | CampaignError::NotSuppressed(_) | CampaignError::Missing(_) => {
                Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
            }
            CampaignError::NotAllowed(_) | CampaignError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            CampaignError::Unavailable(_) | CampaignError::Corrupt(_) => {
                Self::unavailable(ErrorCode::StorageUnavailable, message)
            }
        }
    }
}

impl From<coldsend_service::webhooks::WebhookError> for ApiError {
    fn from(e: coldsend_service::webhooks::WebhookError) -> Self {
        use coldsend_service::webhooks::WebhookError;
        let message = e.to_string();
        match e {
            WebhookError::Invalid(r) => Self::from_request(r),
            WebhookError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
            WebhookError::Store(_) => Self::unavailable(ErrorCode::StorageUnavailable, message),
        }
    }
}

/// The raw request body, or the JSON error for one that could not be read (413 over the limit).
pub fn read_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                "request body is larger than 65536 bytes",
            )
        } else {
            ApiError::new(r.status(), ErrorCode::InvalidBody, r.body_text())
        }
    })
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint; see /api/public/v1/openapi.json")
}

/// Rewrites an error answer that is not already JSON (axum's own 405 with an empty body,
/// its text/plain query and path rejections) into the JSON error shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        _ if text.starts_with("Failed to deserialize query string") => ErrorCode::InvalidQuery,
        _ if status == StatusCode::BAD_REQUEST && is_path_rejection(&text) => ErrorCode::InvalidPath,
        _ if status.is_server_error() => ErrorCode::StorageUnavailable,
        _ => ErrorCode::InvalidBody,
    };
    let message = match (code, text.is_empty()) {
        (ErrorCode::MethodNotAllowed, _) => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("method not allowed here; allowed: {allowed}")
        }
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, false) => text,
    };
    let mut rebuilt = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

fn is_path_rejection(text: &str) -> bool {
    ["Invalid URL", "Wrong number of path arguments", "Cannot parse", "Path"].iter().any(|p| text.starts_with(p))
}
