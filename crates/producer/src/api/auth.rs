//! `X-API-Key` check in front of every protected route.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use coldsend_core::error_code::ErrorCode;

pub const HEADER: &str = "x-api-key";

pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request.headers().get(HEADER).and_then(|v| v.to_str().ok());
    match presented {
        Some(key) if state.keys.verify(key) => Ok(next.run(request).await),
        _ => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "missing or invalid X-API-Key header"))
        }
    }
}
