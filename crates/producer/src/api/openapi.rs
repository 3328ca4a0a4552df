//! The OpenAPI document, generated from the handlers and types themselves so it
//! cannot drift from what the server does.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{campaigns, previews, sender_accounts, suppression, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "coldsend API", description = "Sender accounts and campaigns for cold-email outreach"),
    paths(
        sender_accounts::create,
        sender_accounts::list,
        sender_accounts::show,
        sender_accounts::remove,
        sender_accounts::update,
        sender_accounts::validate,
        sender_accounts::relink,
        super::oauth::start,
        sender_accounts::resume_sending,
        sender_accounts::pause_sending,
        campaigns::usage,
        campaigns::get_sending,
        campaigns::put_sending,
        campaigns::create,
        campaigns::list,
        campaigns::show,
        campaigns::update,
        campaigns::remove,
        campaigns::remove_lead,
        campaigns::export_leads,
        campaigns::export_inbox,
        previews::preview,
        previews::test_send,
        previews::get_test_send,
        webhooks::create,
        webhooks::list,
        webhooks::show,
        webhooks::remove,
        webhooks::enable,
        campaigns::add_leads,
        campaigns::leads,
        campaigns::act,
        campaigns::unsubscribe,
        campaigns::unsubscribe_page,
        campaigns::inbox,
        suppression::list,
        suppression::add,
        suppression::remove,
        suppression::export,
        suppression::import,
    ),
    components(schemas(coldsend_core::campaign::CampaignAction)),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
