//! OAuth2 sign-in: start (API key) and the provider's callback (no key: the one-time
//! `state` is the credential).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use coldsend_core::error_code::ErrorCode;
use coldsend_service::oauth::{ConsentError, ConsentStart};

use super::error::read_body;
use super::{ApiError, AppState, ErrorBody};

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        let message = e.to_string();
        match e {
            ConsentError::Invalid(r) => ApiError::from(coldsend_service::accounts::AccountError::Invalid(r)),
            ConsentError::Account(a) => ApiError::from(a),
            ConsentError::UnknownState | ConsentError::Denied(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::OauthFailed, message)
            }
            ConsentError::OAuth(o) if o.is_transient() => {
                tracing::error!(error = %message, "OAuth2 token endpoint unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::OauthFailed, message)
            }
            ConsentError::OAuth(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::OauthFailed, message),
            ConsentError::Redis(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StorageUnavailable, message)
            }
        }
    }
}

/// Start signing a mailbox in with OAuth2: the body is the registration JSON without
/// passwords or refresh token (a CUSTOM provider's client goes in `auth`). Open the
/// answer's `authorization_url` in a browser; after consent the provider returns to
/// `/oauth/callback`, which creates the account (or renews an existing one's grant).
#[utoipa::path(post, path = "/api/public/v1/sender-accounts/oauth/{provider}/start", operation_id = "startOAuthSignIn", tag = "sender-accounts",
    params(("provider" = String, Path, description = "google, microsoft or custom")),
    request_body = coldsend_core::SenderAccountRequest,
    responses((status = 200, body = ConsentStart), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsentStart>, ApiError> {
    let body = read_body(body)?;
    Ok(Json(state.consent.start(&provider, &body, None).await?))
}

#[derive(serde::Deserialize)]
pub struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back after consent.
pub async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Result<Response, ApiError> {
    let Some(st) = q.state.as_deref() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::OauthFailed, "the callback carried no state"));
    };
    let error = q.error.as_ref().map(|e| match &q.error_description {
        Some(d) => format!("{e}: {d}"),
        None => e.clone(),
    });
    let view = state.consent.finish(st, q.code.as_deref(), error.as_deref()).await?;
    let page = format!(
        "<!doctype html><title>coldsend: mailbox connected</title><h1>{} is connected</h1>\
         <p>coldsend is checking its SMTP and IMAP sign-in now (account <code>{}</code>, status {}). \
         You can close this window, or <a href=\"{}/dashboard/mailboxes/{}\">follow it on the dashboard</a>.</p>",
        html_escape(&view.email_address),
        html_escape(&view.id),
        view.status.as_str(),
        html_escape(&state.dashboard_settings.path_prefix),
        html_escape(&view.id),
    );
    Ok((StatusCode::OK, Html(page)).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
