//! Wiring: settings → Redis, queues, workers; runs until a shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use coldsend_core::campaign_store::CampaignStore;
use coldsend_core::jobs::{Dispatch, Queues, ValidateAccount, queue_storage};
use coldsend_core::ledger::Ledger;
use coldsend_core::settings::Settings;
use coldsend_core::store::AccountStore;
use coldsend_core::unsubscribe::UnsubscribeSigner;
use lettre::transport::smtp::extension::ClientId;

use crate::dispatch::{DispatchState, dispatch};
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
    let probe = ProbeContext { trust, helo, time_limit: Duration::from_secs(settings.validation.timeout_secs) };
    let dispatch_storage = queue_storage::<Dispatch>(conn.clone(), queues.dispatch());
    let dispatch_state = Arc::new(DispatchState {
        accounts: AccountStore::new(conn.clone(), prefix),
        campaigns: CampaignStore::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        signer: UnsubscribeSigner::new(key.derive("unsubscribe")),
        key: key.clone(),
        probe: probe.clone(),
        pacer: DispatchState::pacer_for(&settings.sending),
        config: settings.sending.clone(),
        queue: dispatch_storage.clone(),
        sessions: Default::default(),
    });
    let state = Arc::new(ValidateState { store: AccountStore::new(conn.clone(), prefix), key, probe });
    let name = replica_name(&settings);
    tracing::info!(worker = %name, queue = %queues.validate_account(), "worker starting");
    let validate_storage = queue_storage::<ValidateAccount>(conn.clone(), queues.validate_account());
    let concurrency = settings.worker.validate_concurrency;
    let dispatch_concurrency = settings.worker.dispatch_concurrency;
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(crate::sweeper::run(dispatch_state.clone(), background_stopped.clone()));
    // Commands enqueued with plain Redis by programs in any language.
    let services = coldsend_producer::connect::services_on(conn.clone(), &settings, dispatch_state.key.clone());
    // XREADGROUP blocks its connection: the consumer reads on one of its own.
    let blocking = redis::aio::ConnectionManager::new(redis::Client::open(settings.redis.url.as_str())?).await?;
    let consumer = coldsend_producer::commands::CommandConsumer::new(blocking, prefix, services, &name);
    let commands = tokio::spawn(consumer.run(background_stopped));
    let dispatch_name = format!("{name}-dispatch");
    let result = Monitor::new()
        .register(move |_restarts| {
            WorkerBuilder::new(format!("{name}-validate"))
                .backend(validate_storage.clone())
                .data(state.clone())
                .concurrency(concurrency)
                .build(validate_account)
        })
        .register(move |_restarts| {
            WorkerBuilder::new(dispatch_name.clone())
                .backend(dispatch_storage.clone())
                .data(dispatch_state.clone())
                .concurrency(dispatch_concurrency)
                .build(dispatch)
        })
        .shutdown_timeout(Duration::from_secs(20))
        .run_with_signal(shutdown)
        .await
        .context("worker monitor");
    let _ = stop_background.send(true);
    let _ = sweeper.await;
    let _ = commands.await;
    result?;
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
