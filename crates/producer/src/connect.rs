//! Opening Redis and the queues from settings.

use coldsend_core::jobs::{Queues, queue_storage};
use coldsend_core::settings::Settings;
use coldsend_core::store::AccountStore;

use crate::accounts::AccountService;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("redis.url: {0}")]
    Url(redis::RedisError),
    #[error("cannot reach Redis: {0}")]
    Unreachable(redis::RedisError),
    #[error(transparent)]
    Settings(#[from] coldsend_core::settings::SettingsError),
}

/// Connects to Redis and builds the account service.
pub async fn account_service(settings: &Settings) -> Result<AccountService, ConnectError> {
    let key = settings.sealing_key()?;
    let client = redis::Client::open(settings.redis.url.as_str()).map_err(ConnectError::Url)?;
    let conn = redis::aio::ConnectionManager::new(client).await.map_err(ConnectError::Unreachable)?;
    let prefix = &settings.redis.key_prefix;
    let queue = queue_storage(conn.clone(), Queues::new(prefix).validate_account());
    Ok(AccountService::new(AccountStore::new(conn, prefix), key, queue))
}
