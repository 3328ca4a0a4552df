//! Wiring: settings → Redis, queues, workers, health; runs until a shutdown signal.
//!
//! Lifecycle:
//! - the health port comes up first (`/healthz` answers at once; `/readyz` only once
//!   Redis answers and the workers run);
//! - the apalis workers run under a supervisor: if they stop because Redis went away,
//!   the supervisor waits for Redis with backoff and starts them again under a new
//!   replica name, so the process neither exits nor spins;
//! - on SIGTERM/SIGINT `/readyz` turns false, workers take no new jobs, in-flight sends
//!   finish (a dispatch chain hands over between sends), and anything still running
//!   after `worker.shutdown_grace_secs` is left to apalis-redis to hand to another
//!   replica. The process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use coldsend_core::campaign_store::CampaignStore;
use coldsend_core::jobs::{Dispatch, Queues, Scan, ValidateAccount, queue_storage};
use coldsend_core::ledger::Ledger;
use coldsend_core::settings::{Settings, redact_url};
use coldsend_core::store::AccountStore;
use coldsend_core::unsubscribe::UnsubscribeSigner;
use coldsend_producer::health::{self, Health};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::dispatch::{DispatchState, dispatch};
use crate::probe::ProbeContext;
use crate::scan::{ScanState, scan};
use crate::trust::TrustStore;
use crate::validate_job::{ValidateState, validate_account};

/// A replica name unique per process and per start: apalis-redis refuses a name still
/// alive, and a reused one would strand a crashed replica's jobs.
pub fn replica_name(settings: &Settings) -> String {
    let base = if settings.worker.name.is_empty() {
        hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "coldsend".into())
    } else {
        settings.worker.name.clone()
    };
    let boot = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}-{}", &boot[..8])
}

/// Everything built once per process.
struct Shared {
    settings: Settings,
    key: coldsend_core::sealed::SealingKey,
    probe: ProbeContext,
    health: Arc<Health>,
}

pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = std::io::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    let key = settings.sealing_key()?;
    let trust = TrustStore::load(&settings.validation.extra_ca_files)?;
    let helo = if settings.validation.helo_name.is_empty() {
        ClientId::default()
    } else {
        ClientId::Domain(settings.validation.helo_name.clone())
    };
    let probe = ProbeContext { trust, helo, time_limit: Duration::from_secs(settings.validation.timeout_secs) };
    let health = Arc::new(Health::default());
    let metrics = health::install_metrics().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(&settings.worker.health_listen)
        .await
        .with_context(|| format!("binding worker.health_listen {}", settings.worker.health_listen))?;
    info!(listen = %listener.local_addr()?, "health endpoints listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let health_server = tokio::spawn(health::serve(listener, health.clone(), metrics, stop_rx.clone()));
    let queues = Queues::new(&settings.redis.key_prefix);
    let watcher = tokio::spawn(health::watch_redis(
        settings.redis.url.clone(),
        vec![queues.validate_account(), queues.dispatch(), queues.scan()],
        health.clone(),
        stop_rx.clone(),
    ));
    // The signal flips the shared flag; everything else watches the flag.
    let signal_health = health.clone();
    let signal_tx = stop_tx.clone();
    let signal = tokio::spawn(async move {
        if let Err(e) = shutdown.await {
            warn!(error = %e, "cannot wait for signals");
            return;
        }
        info!("shutdown requested: draining");
        signal_health.set_draining();
        let _ = signal_tx.send(true);
    });

    let shared = Shared { settings, key, probe, health: health.clone() };
    let result = supervise(&shared, stop_rx).await;
    let _ = stop_tx.send(true);
    signal.abort();
    let _ = watcher.await;
    let _ = health_server.await;
    info!("worker stopped");
    result
}

/// Runs the workers; restarts them (after Redis is back) if they stop without a shutdown.
async fn supervise(shared: &Shared, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match run_workers(shared, stop.clone()).await {
            Ok(()) if *stop.borrow() => return Ok(()),
            Ok(()) => warn!("workers stopped without a shutdown; restarting"),
            Err(e) => {
                warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "workers stopped; restarting when Redis answers")
            }
        }
        shared.health.set_running(false);
        let mut stop_wait = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_wait.wait_for(|s| *s) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One generation of workers: connections, queues, monitor. Returns when the monitor ends.
async fn run_workers(shared: &Shared, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = &shared.settings;
    let client = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let conn = redis::aio::ConnectionManager::new(client.clone())
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&settings.redis.url)))?;
    // XREADGROUP blocks its connection: the command consumer reads on one of its own.
    // Its replies may take as long as the BLOCK: give it a response timeout beyond that.
    let blocking_config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(coldsend_producer::commands::READ_BLOCK + Duration::from_secs(5)));
    let blocking = redis::aio::ConnectionManager::new_with_config(client, blocking_config)
        .await
        .context("second Redis connection")?;
    let prefix = &settings.redis.key_prefix;
    let queues = Queues::new(prefix);
    let dispatch_storage = queue_storage::<Dispatch>(conn.clone(), queues.dispatch());
    let dispatch_state = Arc::new(DispatchState {
        accounts: AccountStore::new(conn.clone(), prefix),
        campaigns: CampaignStore::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        signer: UnsubscribeSigner::new(shared.key.derive("unsubscribe")),
        key: shared.key.clone(),
        probe: shared.probe.clone(),
        pacer: DispatchState::pacer_for(&settings.sending),
        config: settings.sending.clone(),
        queue: dispatch_storage.clone(),
        sessions: Default::default(),
    });
    let state = Arc::new(ValidateState {
        store: AccountStore::new(conn.clone(), prefix),
        key: shared.key.clone(),
        probe: shared.probe.clone(),
    });
    let name = replica_name(settings);
    info!(worker = %name, "workers starting");
    let validate_storage = queue_storage::<ValidateAccount>(conn.clone(), queues.validate_account());
    let concurrency = settings.worker.validate_concurrency;
    let dispatch_concurrency = settings.worker.dispatch_concurrency;

    let scan_storage = queue_storage::<Scan>(conn.clone(), queues.scan());
    let scan_state = Arc::new(ScanState {
        conn: conn.clone(),
        keys: coldsend_core::keys::Keys::new(prefix),
        accounts: AccountStore::new(conn.clone(), prefix),
        campaigns: CampaignStore::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        inbox: coldsend_core::inbox::Inbox::new(conn.clone(), prefix),
        key: shared.key.clone(),
        probe: shared.probe.clone(),
        config: settings.scan.clone(),
        sending: settings.sending.clone(),
        queue: scan_storage.clone(),
        dispatch_queue: dispatch_storage.clone(),
        sessions: Default::default(),
    });
    let sessions_to_close = scan_state.clone();
    let sweeper = tokio::spawn(crate::sweeper::run(dispatch_state.clone(), scan_state.clone(), stop.clone()));
    let services = coldsend_producer::connect::services_on(conn.clone(), settings, shared.key.clone());
    let consumer = coldsend_producer::commands::CommandConsumer::new(blocking, prefix, services, &name);
    let commands = tokio::spawn(consumer.run(stop.clone()));

    let dispatch_name = format!("{name}-dispatch");
    let scan_name = format!("{name}-scan");
    shared.health.set_running(true);
    let mut signal = stop.clone();
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
        .register(move |_restarts| {
            WorkerBuilder::new(scan_name.clone())
                .backend(scan_storage.clone())
                .data(scan_state.clone())
                .concurrency(dispatch_concurrency)
                .build(scan)
        })
        .shutdown_timeout(Duration::from_secs(settings.worker.shutdown_grace_secs))
        .run_with_signal(async move {
            let _ = signal.wait_for(|s| *s).await;
            Ok(())
        })
        .await
        .context("workers");
    shared.health.set_running(false);
    sessions_to_close.close_sessions().await;
    // Background loops stop with the process, or are replaced with the next generation.
    sweeper.abort();
    commands.abort();
    result
}
