//! The web dashboard under `/dashboard`: server-rendered pages (maud) over the same
//! services as the API, plain HTML forms for every change (so it works without
//! JavaScript), and one small script that refreshes the parts marked `data-live`.
//!
//! - [`session`]: sign-in with an API key into a session cookie, CSRF on every POST;
//! - [`mailboxes`], [`campaigns`], [`inbox`], [`queues`], [`suppression`]: the pages;
//! - [`charts`]: inline SVG charts (no script, no external asset).
//!
//! Assets are compiled into the binary; every link carries `dashboard.path_prefix`, so the
//! pages work behind a reverse proxy that serves coldsend under a path.

mod campaigns;
mod charts;
mod inbox;
mod mailboxes;
mod queues;
mod session;
mod suppression;

use std::collections::HashMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::api::{ApiError, AppState};
pub use session::Session;

/// CSV uploads (leads, suppression imports) may be this large.
const UPLOAD_LIMIT: usize = 10 * 1024 * 1024;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The dashboard's routes, to be merged at the root of `coldsend serve`'s router.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(|ctx: Ctx| async move { Redirect::to(&ctx.url("/mailboxes")) }))
        .route("/mailboxes", get(mailboxes::list))
        .route("/mailboxes/new", get(mailboxes::new_form).post(mailboxes::create))
        .route("/mailboxes/connect/{provider}", post(mailboxes::connect))
        .route("/mailboxes/{id}", get(mailboxes::show).post(mailboxes::edit))
        .route("/mailboxes/{id}/{action}", post(mailboxes::act))
        .route("/campaigns", get(campaigns::list))
        .route("/campaigns/new", get(campaigns::new_form).post(campaigns::create))
        .route("/campaigns/{id}", get(campaigns::show))
        .route("/campaigns/{id}/edit", get(campaigns::edit_form).post(campaigns::edit))
        .route("/campaigns/{id}/preview", post(campaigns::preview))
        .route("/campaigns/{id}/test-send", post(campaigns::test_send))
        .route("/campaigns/{id}/leads", post(campaigns::add_leads))
        .route("/campaigns/{id}/leads.csv", get(campaigns::export_leads))
        .route("/campaigns/{id}/act/{action}", post(campaigns::act))
        .route("/inbox", get(inbox::page))
        .route("/queues", get(queues::page))
        .route("/suppression", get(suppression::page).post(suppression::add))
        .route("/suppression/import", post(suppression::import))
        .route("/suppression/export", get(suppression::export))
        .route("/suppression/remove", post(suppression::remove))
        .route("/signout", post(session::sign_out))
        .route_layer(middleware::from_fn_with_state(state, session::require))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT));
    let open = Router::new()
        .route("/signin", get(session::sign_in_form).post(session::sign_in))
        .route("/assets/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }));
    Router::new().nest("/dashboard", pages.merge(open).fallback(not_found)).layer(middleware::map_response(
        |mut r: Response| async move {
            // Pages hold account data: never cached, never framed by another site.
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                     frame-src 'self'; form-action 'self' https:; frame-ancestors 'none'",
                ),
            );
            r
        },
    ))
}

async fn not_found() -> DashError {
    DashError::new(StatusCode::NOT_FOUND, "no such page")
}

/// What every page handler knows: where the dashboard lives, the session's CSRF token
/// and a notice carried over a redirect.
#[derive(Clone)]
pub struct Ctx {
    base: String,
    csrf: String,
    notice: Option<String>,
}

impl axum::extract::FromRequestParts<AppState> for Ctx {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, DashError> {
        let session = parts
            .extensions
            .get::<Session>()
            .ok_or_else(|| DashError::new(StatusCode::UNAUTHORIZED, "sign in first"))?;
        let notice = parts.uri.query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "notice")
                .map(|(_, v)| v.chars().take(300).collect())
        });
        Ok(Self { base: base(state), csrf: session.csrf.clone(), notice })
    }
}

/// Where the dashboard is, as the browser sees it.
fn base(state: &AppState) -> String {
    format!("{}/dashboard", state.dashboard_settings.path_prefix)
}

impl Ctx {
    /// A link inside the dashboard.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Redirects (303) to `path` with a notice shown once on arrival.
    pub fn see_other(&self, path: &str, notice: &str) -> Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        let query = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
        Redirect::to(&format!("{}{path}{sep}{query}", self.base)).into_response()
    }

    /// The hidden CSRF field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A one-button form posting to `path`.
    pub fn button(&self, path: &str, label: &str, class: &str) -> Markup {
        html! {
            form.inline method="post" action=(self.url(path)) {
                (self.csrf_field())
                button type="submit" class=(class) { (label) }
            }
        }
    }

    /// A list page: its heading with an optional action link, and `list` refreshing itself
    /// from `live` (a path with its query; asked with `X-Fragment`, only `list` is answered).
    pub fn list_page(
        &self,
        headers: &axum::http::HeaderMap,
        (title, active, live): (&str, &str, &str),
        action: Option<(&str, &str)>,
        list: Markup,
    ) -> Response {
        if headers.contains_key("x-fragment") {
            return list.into_response();
        }
        self.layout(
            title,
            active,
            html! {
                div.head {
                    h1 { (title) }
                    @if let Some((path, text)) = action { a.button href=(self.url(path)) { (text) } }
                }
                div data-live=(self.url(live)) { (list) }
            },
        )
    }

    /// A form sent back with the error that refused it (422), filled as it was sent.
    pub fn refused_form(&self, title: &str, active: &str, form: Markup) -> Response {
        (StatusCode::UNPROCESSABLE_ENTITY, self.layout(title, active, html! { h1 { (title) } (form) })).into_response()
    }

    /// The page around `body`, with the navigation (`active` marks the current page).
    pub fn layout(&self, title: &str, active: &str, body: Markup) -> Response {
        let nav = [
            ("/mailboxes", "Mailboxes"),
            ("/campaigns", "Campaigns"),
            ("/inbox", "Inbox"),
            ("/queues", "Queues"),
            ("/suppression", "Suppression"),
        ];
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · coldsend" }
                    link rel="stylesheet" href=(self.url("/assets/app.css"));
                    script src=(self.url("/assets/app.js")) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        span.brand { "coldsend" }
                        nav aria-label="Main" {
                            ul {
                                @for (path, name) in nav {
                                    li {
                                        @if path == active {
                                            a href=(self.url(path)) aria-current="page" { (name) }
                                        } @else {
                                            a href=(self.url(path)) { (name) }
                                        }
                                    }
                                }
                            }
                        }
                        (self.button("/signout", "Sign out", "link"))
                    }
                    main #main {
                        @if let Some(n) = &self.notice {
                            p.notice role="status" { (n) }
                        }
                        (body)
                    }
                }
            }
        };
        page.into_response()
    }
}

/// An error page (or, for a live fragment, just the message) with its status.
#[derive(Debug)]
pub struct DashError {
    status: StatusCode,
    message: String,
}

impl DashError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Error · coldsend" } }
                body {
                    main {
                        h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("Error")) }
                        p role="alert" { (self.message) }
                        p { "Go back and try again; nothing was changed by this request." }
                    }
                }
            }
        };
        (self.status, page).into_response()
    }
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        Self { status: e.status, message: e.detail.message }
    }
}

impl From<coldsend_service::accounts::AccountError> for DashError {
    fn from(e: coldsend_service::accounts::AccountError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<coldsend_service::campaigns::CampaignError> for DashError {
    fn from(e: coldsend_service::campaigns::CampaignError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<coldsend_service::oauth::ConsentError> for DashError {
    fn from(e: coldsend_service::oauth::ConsentError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<redis::RedisError> for DashError {
    fn from(e: redis::RedisError) -> Self {
        tracing::error!(error = %e, "dashboard: Redis unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}"))
    }
}

/// A submitted form's fields (repeated names kept, in order).
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Result<Self, DashError> {
        serde_urlencoded::from_bytes(body)
            .map(Self)
            .map_err(|e| DashError::bad_request(format!("the form could not be read: {e}")))
    }

    /// The first value of `name`, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty()).collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every field as a map, for refilling a form after an error.
    pub fn values(&self) -> HashMap<String, String> {
        self.0.iter().filter(|(k, _)| k != "csrf").cloned().collect()
    }
}

/// The wire name of an enum (its serde string), for display.
pub fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A short relative rendering of an RFC 3339 time ("in 5 min", "3 h ago").
pub fn relative(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_owned();
    };
    let secs = (t.with_timezone(&chrono::Utc) - now).num_seconds();
    let (n, unit) = match secs.unsigned_abs() {
        s if s < 5 => return "now".into(),
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "min"),
        s if s < 86_400 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if secs > 0 { format!("in {n} {unit}") } else { format!("{n} {unit} ago") }
}

/// A status badge: `kind` picks its colour (ok, warn, bad, muted).
pub fn badge(text: &str, kind: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (text) } }
}

/// A usage bar with its numbers as text. Drawn in SVG: the CSP allows no inline style.
pub fn meter(used: u64, of: u64) -> Markup {
    const WIDTH: u64 = 90;
    let filled = (used.min(of) * WIDTH).checked_div(of).unwrap_or(0);
    html! {
        svg.meter width=(WIDTH) height="10" viewBox={ "0 0 " (WIDTH) " 10" } role="img" aria-label={ (used) " of " (of) } {
            rect.track width=(WIDTH) height="10" rx="5" {}
            @if filled > 0 { rect.fill width=(filled) height="10" rx="5" {} }
        }
        " " span.num { (used) " / " (of) }
    }
}

/// Raw HTML that is already safe (our own constants only).
pub fn trusted(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").expect("now").to_utc();
        assert_eq!(relative("2026-12-01T12:00:02Z", now), "now");
        assert_eq!(relative("2026-12-01T12:05:00Z", now), "in 5 min");
        assert_eq!(relative("2026-12-01T09:00:00Z", now), "3 h ago");
        assert_eq!(relative("2026-11-28T12:00:00Z", now), "3 d ago");
        assert_eq!(relative("garbage", now), "garbage");
    }

    #[test]
    fn meters_fill_in_proportion_without_inline_style() {
        let m = meter(3, 5).into_string();
        assert!(m.contains(r#"class="fill" width="54""#), "{m}");
        assert!(m.contains("3 / 5") && !m.contains("style="), "{m}");
        assert!(!meter(0, 0).into_string().contains("class=\"fill\""));
        assert!(meter(9, 5).into_string().contains(r#"class="fill" width="90""#), "capped at full");
    }

    #[test]
    fn forms_keep_repeated_fields_and_drop_blanks() {
        let f = FormData::parse(b"a=1&m=x&m=y&m=&b=%20%20&csrf=t").expect("form");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.all("m"), vec!["x", "y"]);
        assert_eq!(f.get("b"), None);
        assert!(!f.values().contains_key("csrf"));
    }
}
