//! The HTTP API under `/api/public/v1`, built on axum.

mod auth;
mod campaigns;
mod error;
mod oauth;
mod openapi;
mod previews;
mod sender_accounts;
mod suppression;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use coldsend_core::account_request::MAX_BODY_BYTES;
use tower_http::trace::TraceLayer;

use coldsend_core::unsubscribe::UnsubscribeSigner;

use crate::api_key::KeyVerifier;
use coldsend_service::accounts::AccountService;
use coldsend_service::campaigns::CampaignService;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::ApiDoc;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub inbox: coldsend_core::storage::inbox::Inbox,
    pub accounts: AccountService,
    pub campaigns: CampaignService,
    pub suppression: coldsend_service::suppression::SuppressionService,
    pub signer: Arc<UnsubscribeSigner>,
    pub keys: Arc<KeyVerifier>,
    pub consent: coldsend_service::oauth::Consent,
    pub previews: coldsend_service::preview::PreviewService,
    pub webhooks: coldsend_service::webhooks::WebhookService,
    /// The dashboard's sessions and overviews.
    pub dashboard: coldsend_core::storage::dashboard::Dashboard,
    pub dashboard_settings: Arc<coldsend_core::settings::DashboardSettings>,
    /// Every queue: (short name, apalis queue name).
    pub queues: Arc<Vec<(&'static str, String)>>,
}

/// The whole API. `openapi.json` and the unsubscribe link need no key; everything else does.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/sender-accounts", post(sender_accounts::create).get(sender_accounts::list))
        .route(
            "/sender-accounts/{id}",
            get(sender_accounts::show).delete(sender_accounts::remove).patch(sender_accounts::update),
        )
        .route("/sender-accounts/{id}/validate", post(sender_accounts::validate))
        .route("/sender-accounts/{id}/oauth", axum::routing::put(sender_accounts::relink))
        .route("/sender-accounts/oauth/{provider}/start", post(oauth::start))
        .route("/sender-accounts/{id}/resume-sending", post(sender_accounts::resume_sending))
        .route("/sender-accounts/{id}/pause-sending", post(sender_accounts::pause_sending))
        .route("/sender-accounts/{id}/usage", get(campaigns::usage))
        .route("/sender-accounts/{id}/sending", get(campaigns::get_sending).put(campaigns::put_sending))
        .route("/campaigns", post(campaigns::create).get(campaigns::list))
        .route("/campaigns/{id}", get(campaigns::show).patch(campaigns::update).delete(campaigns::remove))
        .route("/campaigns/{id}/leads/{lead_id}", axum::routing::delete(campaigns::remove_lead))
        .route("/campaigns/{id}/leads", post(campaigns::add_leads).get(campaigns::leads))
        .route("/campaigns/{id}/preview", post(previews::preview))
        .route("/campaigns/{id}/test-send", post(previews::test_send))
        .route("/test-sends/{id}", get(previews::get_test_send))
        .route("/campaigns/{id}/{action}", post(campaigns::act))
        .route("/inbox", get(campaigns::inbox))
        .route("/inbox/export", get(campaigns::export_inbox))
        .route("/campaigns/{id}/leads/export", get(campaigns::export_leads))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{id}", get(webhooks::show).delete(webhooks::remove))
        .route("/webhooks/{id}/enable", post(webhooks::enable))
        .route("/suppression", get(suppression::list).post(suppression::add))
        .route("/suppression/export", get(suppression::export))
        .route("/suppression/import", post(suppression::import))
        .route("/suppression/{entry}", axum::routing::delete(suppression::remove))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_api_key));
    let v1 = protected
        .route("/openapi.json", get(openapi::serve))
        .route("/unsubscribe", get(campaigns::unsubscribe_page).post(campaigns::unsubscribe));
    let mut app = Router::new().nest("/api/public/v1", v1).route("/oauth/callback", get(oauth::callback));
    if state.dashboard_settings.enabled {
        app = app.merge(crate::dashboard::router(state.clone()));
    }
    app.fallback(error::not_found)
        .layer(middleware::map_response(error::json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
