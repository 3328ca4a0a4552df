//! Signing in: an API key buys a session cookie (HttpOnly, SameSite=Strict, Secure behind
//! TLS) that names a session kept in Redis under the digest of its token, so any API
//! replica knows it and signing out ends it everywhere. Every request but the sign-in page
//! and the assets needs a live session; every POST also needs the session's CSRF token, in
//! the form (`csrf`) or the `X-CSRF-Token` header.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use coldsend_core::storage::dashboard::SessionRecord;
use maud::{DOCTYPE, html};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{DashError, FormData, UPLOAD_LIMIT, base};
use crate::api::AppState;

const COOKIE: &str = "coldsend_session";
const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in session, put in the request's extensions by [`require`].
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    digest: String,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.dashboard_settings.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> String {
    format!(
        "{COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        base(state),
        if secure(state, headers) { "; Secure" } else { "" }
    )
}

/// Lets a request through only with a live session (and, for POST, its CSRF token).
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let fragment = request.headers().contains_key("x-fragment");
    let record = match cookie_token(request.headers()) {
        Some(token) => {
            let d = digest(&token);
            match state.dashboard.session(&d).await {
                Ok(r) => r.map(|r| (r, d)),
                Err(e) => return DashError::from(e).into_response(),
            }
        }
        None => None,
    };
    let Some((record, digest)) = record else {
        if request.method() == Method::GET && !fragment {
            return Redirect::to(&format!("{}/signin", base(&state))).into_response();
        }
        return DashError::new(StatusCode::UNAUTHORIZED, "sign in first: this needs a dashboard session")
            .into_response();
    };
    let mut request = if request.method() == Method::GET || request.method() == Method::HEAD {
        request
    } else {
        match checked_csrf(request, &record.csrf).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    };
    request.extensions_mut().insert(Session { csrf: record.csrf, digest });
    next.run(request).await
}

/// The request back, its body intact, if it carries the session's CSRF token.
async fn checked_csrf(request: Request, expected: &str) -> Result<Request, DashError> {
    let refused =
        || DashError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token: reload the page and try again");
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, UPLOAD_LIMIT)
        .await
        .map_err(|_| DashError::new(StatusCode::PAYLOAD_TOO_LARGE, "the upload is larger than 10 MB"))?;
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let presented = match parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(h) => Some(h.to_owned()),
        None if content_type.starts_with("application/x-www-form-urlencoded") => {
            FormData::parse(&bytes).ok().and_then(|f| f.get("csrf").map(str::to_owned))
        }
        None if content_type.starts_with("multipart/form-data") => multipart_csrf(&content_type, bytes.clone()).await,
        None => None,
    };
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

async fn multipart_csrf(content_type: &str, bytes: axum::body::Bytes) -> Option<String> {
    let request = Request::builder().header(header::CONTENT_TYPE, content_type).body(Body::from(bytes)).ok()?;
    let mut multipart = Multipart::from_request(request, &()).await.ok()?;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("csrf") {
            return field.text().await.ok();
        }
    }
    None
}

fn sign_in_page(state: &AppState, error: Option<&str>) -> maud::Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · coldsend" }
                link rel="stylesheet" href={ (base(state)) "/assets/app.css" };
            }
            body.signin {
                main #main {
                    h1 { "coldsend" }
                    form.card method="post" action={ (base(state)) "/signin" } {
                        @if let Some(e) = error { p.error role="alert" { (e) } }
                        label for="key" { "API key" }
                        input #key type="password" name="key" autocomplete="current-password" required autofocus;
                        p.hint { "A key from " code { "coldsend keys new" } " (its hash in api.key_hashes)." }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub async fn sign_in_form(State(state): State<AppState>) -> maud::Markup {
    sign_in_page(&state, None)
}

pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let key = FormData::parse(&body).ok().and_then(|f| f.get("key").map(str::to_owned));
    if !key.is_some_and(|k| state.keys.verify(&k)) {
        tracing::warn!("dashboard sign-in refused: wrong API key");
        return (StatusCode::UNAUTHORIZED, sign_in_page(&state, Some("That API key is not accepted."))).into_response();
    }
    let token = random_token();
    let ttl = state.dashboard_settings.session_hours * 3600;
    let record = SessionRecord { csrf: random_token(), created_ms: chrono::Utc::now().timestamp_millis() };
    if let Err(e) = state.dashboard.create_session(&digest(&token), &record, ttl).await {
        return DashError::from(e).into_response();
    }
    tracing::info!("dashboard session started");
    let mut response = Redirect::to(&format!("{}/mailboxes", base(&state))).into_response();
    if let Ok(v) = cookie(&state, &headers, &token, ttl).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    if let Err(e) = state.dashboard.end_session(&session.digest).await {
        return DashError::from(e).into_response();
    }
    let mut response = Redirect::to(&format!("{}/signin", base(&state))).into_response();
    if let Ok(v) = cookie(&state, &headers, "", 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let token = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("other=1; {COOKIE}={token}").parse().expect("header"));
        assert_eq!(cookie_token(&h), Some(token));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, format!("{COOKIE}=../../etc").parse().expect("header"));
        assert_eq!(cookie_token(&bad), None);
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_digests() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(digest(&a), a);
        assert_eq!(digest(&a), digest(&a));
    }
}
