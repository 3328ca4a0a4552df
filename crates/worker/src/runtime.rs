//! Wiring: settings → Redis, queues, workers; runs until a shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use coldsend_core::jobs::{Queues, ValidateAccount, queue_storage};
use coldsend_core::settings::Settings;
use coldsend_core::store::AccountStore;
use lettre::transport::smtp::extension::ClientId;

use crate::probe::ProbeContext;
use crate::trust::TrustStore;
use crate::validate_job::{ValidateState, validate_account};

/// A replica name unique per process: apalis-redis refuses a name still alive, and a
/// reused one would strand a crashed replica's jobs.
pub fn replica_name(settings: &Settings) -> String {
    let base = if settings.worker.name.is_empty() {
        hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "coldsend".into())
    } else {
        settings.worker.name.clone()
    };
    let boot = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}-{}", &boot[..8])
}

pub async fn run(settings: Settings, shutdown: impl Future<Output = std::io::Result<()>> + Send) -> anyhow::Result<()> {
    let key = settings.sealing_key()?;
    let trust = TrustStore::load(&settings.validation.extra_ca_files)?;
    let helo = if settings.validation.helo_name.is_empty() {
        ClientId::default()
    } else {
        ClientId::Domain(settings.validation.helo_name.clone())
    };
    let client = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&settings.redis.url)))?;
    let prefix = &settings.redis.key_prefix;
    let queues = Queues::new(prefix);
    let state = Arc::new(ValidateState {
        store: AccountStore::new(conn.clone(), prefix),
        key,
        probe: ProbeContext { trust, helo, time_limit: Duration::from_secs(settings.validation.timeout_secs) },
    });
    let name = replica_name(&settings);
    tracing::info!(worker = %name, queue = %queues.validate_account(), "worker starting");
    let validate_storage = queue_storage::<ValidateAccount>(conn, queues.validate_account());
    let concurrency = settings.worker.validate_concurrency;
    Monitor::new()
        .register(move |_restarts| {
            WorkerBuilder::new(format!("{name}-validate"))
                .backend(validate_storage.clone())
                .data(state.clone())
                .concurrency(concurrency)
                .build(validate_account)
        })
        .shutdown_timeout(Duration::from_secs(20))
        .run_with_signal(shutdown)
        .await
        .context("worker monitor")?;
    tracing::info!("worker stopped");
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}
