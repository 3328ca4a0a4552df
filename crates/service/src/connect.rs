//! Opening Redis and the queues from settings.

use coldsend_core::jobs::{Queues, queue_storage};
use coldsend_core::settings::Settings;
use coldsend_core::storage::accounts::AccountStore;

use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::campaigns::CampaignStore;
use coldsend_core::storage::ledger::Ledger;
use coldsend_core::unsubscribe::UnsubscribeSigner;

use crate::accounts::AccountService;
use crate::campaigns::CampaignService;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("redis.url: {0}")]
    Url(redis::RedisError),
    #[error("cannot reach Redis: {0}")]
    Unreachable(redis::RedisError),
    #[error(transparent)]
    Settings(#[from] coldsend_core::settings::SettingsError),
    #[error("OAuth2: {0}")]
    OAuth(String),
}

/// The producer's services on one Redis connection.
#[derive(Clone)]
pub struct Services {
    pub inbox: coldsend_core::storage::inbox::Inbox,
    pub accounts: AccountService,
    pub campaigns: CampaignService,
    pub suppression: crate::suppression::SuppressionService,
    pub signer: std::sync::Arc<UnsubscribeSigner>,
    /// OAuth2 sign-ins (the consent flow).
    pub consent: crate::oauth::Consent,
    /// Previews and test sends.
    pub previews: crate::preview::PreviewService,
    /// Webhook endpoints.
    pub webhooks: crate::webhooks::WebhookService,
    /// The dashboard's sessions and overviews.
    pub dashboard: coldsend_core::storage::dashboard::Dashboard,
}

/// Connects to Redis and builds the services.
pub async fn services(settings: &Settings) -> Result<Services, ConnectError> {
    let key = settings.sealing_key()?;
    services_on(redis_connection(settings).await?, settings, key)
}

async fn redis_connection(settings: &Settings) -> Result<redis::aio::ConnectionManager, ConnectError> {
    let client = redis::Client::open(settings.redis.url.as_str()).map_err(ConnectError::Url)?;
    coldsend_core::storage::connect(client, &settings.redis, std::time::Duration::ZERO)
        .await
        .map_err(ConnectError::Unreachable)
}

/// Connects for commands that only read: with the configured encryption key if it loads,
/// else with a throwaway one. Nothing is sealed or opened on this path (listing accounts,
/// campaigns, leads, the inbox, the suppression list), so an operator can inspect a
/// deployment with only its Redis URL.
pub async fn services_read_only(settings: &Settings) -> Result<Services, ConnectError> {
    let key = match settings.sealing_key() {
        Ok(k) => k,
        Err(_) => SealingKey::from_text(&secrecy::SecretString::from(SealingKey::generate_text()))
            .map_err(|e| ConnectError::Settings(coldsend_core::settings::SettingsError::Key(e.to_string())))?,
    };
    services_on(redis_connection(settings).await?, settings, key)
}

/// Builds the services on an existing connection (the worker shares its own).
pub fn services_on(
    conn: redis::aio::ConnectionManager,
    settings: &Settings,
    key: SealingKey,
) -> Result<Services, ConnectError> {
    let key_for_consent = key.clone();
    let prefix = &settings.redis.key_prefix;
    let queues = Queues::new(prefix);
    let signer = std::sync::Arc::new(UnsubscribeSigner::new(key.derive("unsubscribe")));
    let conn_for_inbox = conn.clone();
    let validate = queue_storage(conn.clone(), queues.validate_account());
    let accounts = AccountService::new(
        AccountStore::new(conn.clone(), prefix),
        coldsend_core::storage::mailboxes::MailboxHealth::new(conn.clone(), prefix),
        key,
        validate,
        coldsend_core::storage::oauth::OAuthTokens::new(conn.clone(), prefix),
    );
    let campaigns = CampaignService {
        accounts: AccountStore::new(conn.clone(), prefix),
        store: CampaignStore::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        health: coldsend_core::storage::mailboxes::MailboxHealth::new(conn.clone(), prefix),
        dispatch_queue: queue_storage(conn.clone(), queues.dispatch()),
        config: settings.sending.clone(),
        outbox: coldsend_core::storage::webhooks::Outbox::new(conn.clone(), prefix),
        scans: coldsend_core::storage::scan::ScanStore::new(conn.clone(), prefix),
    };
    let webhooks = crate::webhooks::WebhookService::new(
        coldsend_core::storage::webhooks::Webhooks::new(conn.clone(), prefix),
        key_for_consent.clone(),
    );
    let previews = crate::preview::PreviewService::new(
        campaigns.clone(),
        signer.clone(),
        coldsend_core::storage::test_sends::TestSends::new(conn.clone(), prefix),
        queue_storage(conn, queues.test_send()),
    );
    let suppression = crate::suppression::SuppressionService::new(CampaignStore::new(conn_for_inbox.clone(), prefix));
    let consent = crate::oauth::Consent::new(
        coldsend_core::storage::oauth::OAuthTokens::new(conn_for_inbox.clone(), prefix),
        accounts.clone(),
        key_for_consent,
        settings.oauth.clone(),
        format!("http://{}/oauth/callback", settings.api.listen),
    )
    .map_err(|e| ConnectError::OAuth(e.to_string()))?;
    Ok(Services {
        dashboard: coldsend_core::storage::dashboard::Dashboard::new(conn_for_inbox.clone(), prefix),
        inbox: coldsend_core::storage::inbox::Inbox::new(conn_for_inbox, prefix),
        consent,
        accounts,
        campaigns,
        suppression,
        signer,
        previews,
        webhooks,
    })
}
