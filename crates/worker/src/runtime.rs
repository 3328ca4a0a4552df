//! Wiring: settings → Redis, queues, workers, health; runs until a shutdown signal.
//!
//! Lifecycle:
//! - the health port comes up first (`/healthz` answers at once; `/readyz` only once
//!   Redis answers and the workers run);
//! - the apalis workers run under a supervisor: if they stop because Redis went away,
//!   the supervisor waits for Redis with backoff and starts them again under a new
//!   replica name, so the process neither exits nor spins;
//! - the IMAP IDLE watchers run beside the supervisor for the whole process, on a
//!   connection manager of their own that reconnects by itself;
//! - on SIGTERM/SIGINT `/readyz` turns false, workers take no new jobs, in-flight sends
//!   finish (a dispatch chain hands over between sends), and anything still running
//!   after `worker.shutdown_grace_secs` is left to apalis-redis to hand to another
//!   replica. The process exits 0.

use std::sync::Arc;
use std::time::Duration;

use crate::connection_health::ConnectionHealth;
use anyhow::Context as _;
use apalis::prelude::{EventListenerExt, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use coldsend_core::jobs::{Dispatch, Queues, Scan, ValidateAccount, queue_storage};
use coldsend_core::settings::{Settings, redact_url};
use coldsend_core::storage;
use coldsend_core::storage::accounts::AccountStore;
use coldsend_core::storage::campaigns::CampaignStore;
use coldsend_core::storage::commands::CommandStream;
use coldsend_core::storage::inbox::Inbox;
use coldsend_core::storage::ledger::Ledger;
use coldsend_core::storage::mailboxes::MailboxHealth;
use coldsend_core::storage::oauth::OAuthTokens;
use coldsend_service::oauth::AccessTokens;

use crate::signin::SignIn;
use coldsend_core::storage::scan::ScanStore;
use coldsend_core::unsubscribe::UnsubscribeSigner;
use coldsend_service::commands::CommandHandler;
use coldsend_service::health::{self, Health};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::command_stream;
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
    /// This process's name as an IDLE watcher.
    watcher: String,
    /// Fresh IMAP logins per server, shared by every generation's scans and the watchers.
    logins: Arc<crate::login_pacer::LoginPacer>,
}

/// The IMAP IDLE watchers live as long as the process, not per generation: a Redis blip
/// that restarts the queue consumers must not log every watched mailbox out and in again
/// (their connection manager reconnects by itself; a round that fails is retried).
async fn watch_idle(shared: &Shared, mut stop: watch::Receiver<bool>) {
    let settings = &shared.settings;
    if !settings.scan.idle {
        return;
    }
    let mut backoff = Duration::from_millis(500);
    let conn = loop {
        let connecting = async {
            let client = redis::Client::open(settings.redis.url.as_str())?;
            storage::connect(client, &settings.redis, Duration::ZERO).await
        };
        match connecting.await {
            Ok(c) => break c,
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "IDLE watchers wait for Redis");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let states = match build_states(shared, &conn, &Queues::new(&settings.redis.key_prefix)) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "IDLE watchers not started");
            return;
        }
    };
    let leases = coldsend_core::storage::idle_watch::IdleLeases::new(conn, &settings.redis.key_prefix, &shared.watcher);
    crate::idle::run(states.scan, leases, stop).await;
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

    let idle_name = replica_name(&settings);
    let logins = Arc::new(crate::login_pacer::LoginPacer::new(settings.scan.logins_per_server_per_sec));
    let shared = Shared { settings, key, probe, health: health.clone(), watcher: idle_name, logins };
    let idle_stop = stop_rx.clone();
    let workers = async {
        let result = supervise(&shared, stop_rx).await;
        let _ = stop_tx.send(true);
        result
    };
    let (result, ()) = tokio::join!(workers, watch_idle(&shared, idle_stop));
    let _ = stop_tx.send(true);
    signal.abort();
    let _ = watcher.await;
    let _ = health_server.await;
    info!("worker stopped");
    result
}

/// Runs the workers; restarts them (after Redis is back) if they stop without a shutdown.
/// The backoff grows while generations fail at once and starts over after one that ran.
async fn supervise(shared: &Shared, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    const FIRST: Duration = Duration::from_millis(500);
    let mut backoff = FIRST;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match run_workers(shared, stop.clone()).await {
            Ok(()) if *stop.borrow() => return Ok(()),
            Ok(()) => warn!("workers stopped without a shutdown; restarting"),
            Err(e) => {
                warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "workers stopped; restarting when Redis answers")
            }
        }
        shared.health.set_running(false);
        // A generation that got going (Redis answered) earns a fresh start; one that
        // failed at once (Redis still down) waits longer each time.
        if started.elapsed() > Duration::from_secs(2) {
            backoff = FIRST;
        }
        let mut stop_wait = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_wait.wait_for(|s| *s) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One generation of workers: connections, queues, one apalis monitor per queue, the
/// sweeper and the command consumer. Returns when any queue's consumer ends (a Redis
/// connection dropped, or shutdown); the others are stopped with it, so the supervisor
/// restarts the whole set and no queue is ever silently left without a consumer.
async fn run_workers(shared: &Shared, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = &shared.settings;
    let client = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let conn = storage::connect(client.clone(), &settings.redis, Duration::ZERO)
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&settings.redis.url)))?;
    // XREADGROUP blocks its connection: the command consumer reads on one of its own,
    // whose replies may take as long as the BLOCK.
    let blocking = storage::connect(client.clone(), &settings.redis, command_stream::READ_BLOCK)
        .await
        .context("second Redis connection")?;
    // The webhook fan-out blocks on the outbox stream: a connection of its own too.
    let outbox_conn = storage::connect(client, &settings.redis, crate::webhooks::READ_BLOCK)
        .await
        .context("third Redis connection")?;
    let name = replica_name(settings);
    info!(worker = %name, "workers starting");
    let queues = Queues::new(&settings.redis.key_prefix);
    let states = build_states(shared, &conn, &queues)?;

    // The generation stops when the process stops or when any of its queues stops.
    let (gen_tx, gen_rx) = watch::channel(false);
    let forward = {
        let (mut stop, gen_tx) = (stop.clone(), gen_tx.clone());
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = gen_tx.send(true);
        })
    };
    let sweeper = tokio::spawn(crate::sweeper::run(states.dispatch.clone(), states.scan.clone(), gen_rx.clone()));

    let services = coldsend_service::connect::services_on(conn.clone(), settings, shared.key.clone())?;
    let consumer = command_stream::CommandConsumer::new(
        CommandStream::new(blocking, &settings.redis.key_prefix, &name),
        CommandHandler::new(services),
        shared.key.clone(),
    );
    let commands = tokio::spawn(consumer.run(gen_rx.clone()));
    let prefix = &settings.redis.key_prefix;
    let webhook_queue = queue_storage::<coldsend_core::jobs::DeliverWebhook>(conn.clone(), queues.webhook());
    let fan_out = crate::webhooks::FanOut {
        outbox: coldsend_core::storage::webhooks::Outbox::new(outbox_conn, prefix),
        webhooks: coldsend_core::storage::webhooks::Webhooks::new(conn.clone(), prefix),
        queue: webhook_queue.clone(),
        consumer: name.clone(),
    };
    let fan_out = tokio::spawn(fan_out.run(gen_rx.clone()));
    let delivery = Arc::new(crate::webhooks::DeliveryState {
        webhooks: coldsend_core::storage::webhooks::Webhooks::new(conn.clone(), prefix),
        outbox: coldsend_core::storage::webhooks::Outbox::new(conn.clone(), prefix),
        key: shared.key.clone(),
        http: crate::webhooks::DeliveryState::client(&settings.webhooks).context("webhook HTTP client")?,
        config: settings.webhooks.clone(),
        queue: webhook_queue.clone(),
    });

    let grace = Duration::from_secs(settings.worker.shutdown_grace_secs);
    let w = &settings.worker;
    let validate = queue_monitor!(
        "validate",
        name,
        queue_storage::<ValidateAccount>(conn.clone(), queues.validate_account()),
        states.validate.clone(),
        w.validate_concurrency,
        validate_account
    );
    let dispatch = queue_monitor!(
        "dispatch",
        name,
        states.dispatch.queue.clone(),
        states.dispatch.clone(),
        w.dispatch_concurrency,
        dispatch
    );
    let scan = queue_monitor!("scan", name, states.scan.queue.clone(), states.scan.clone(), w.scan_concurrency, scan);
    let test_send = queue_monitor!(
        "test-send",
        name,
        queue_storage::<coldsend_core::jobs::TestSendJob>(conn.clone(), queues.test_send()),
        states.test_send.clone(),
        w.validate_concurrency,
        crate::test_send::test_send
    );
    let webhook =
        queue_monitor!("webhook", name, webhook_queue, delivery, w.validate_concurrency, crate::webhooks::deliver);
    let monitors: Vec<_> = [validate, dispatch, scan, test_send, webhook]
        .into_iter()
        .map(|(queue, monitor)| {
            let mut signal = gen_rx.clone();
            let run = monitor.shutdown_timeout(grace).run_with_signal(async move {
                let _ = signal.wait_for(|s| *s).await;
                Ok(())
            });
            tokio::spawn(async move { (queue, run.await) })
        })
        .collect();
    shared.health.set_running(true);

    let (first, _, rest) = futures::future::select_all(monitors).await;
    // One queue without a consumer means the replica is not ready, whatever the others do.
    shared.health.set_running(false);
    let result = match first {
        Ok((queue, outcome)) if !*stop.borrow() => {
            warn!(queue, outcome = ?outcome.err().map(|e| e.to_string()), "a queue's consumer stopped; restarting all of them");
            Err(anyhow::anyhow!("the {queue} queue's consumer stopped"))
        }
        Ok((_, outcome)) => outcome.context("workers"),
        Err(join) => Err(anyhow::anyhow!("a queue's consumer panicked: {join}")),
    };
    let _ = gen_tx.send(true);
    for other in rest {
        let _ = other.await;
    }
    states.scan.close_sessions().await;
    // Background loops stop with their generation.
    let _ = commands.await;
    let _ = fan_out.await;
    let _ = sweeper.await;
    forward.abort();
    result
}

/// The handlers' shared state of one generation.
struct States {
    validate: Arc<ValidateState>,
    dispatch: Arc<DispatchState>,
    scan: Arc<ScanState>,
    test_send: Arc<crate::test_send::TestSendState>,
}

fn build_states(shared: &Shared, conn: &redis::aio::ConnectionManager, queues: &Queues) -> anyhow::Result<States> {
    let settings = &shared.settings;
    let prefix = &settings.redis.key_prefix;
    let tokens = AccessTokens::new(
        AccountStore::new(conn.clone(), prefix),
        OAuthTokens::new(conn.clone(), prefix),
        Inbox::new(conn.clone(), prefix),
        shared.key.clone(),
        settings.oauth.clone(),
    )
    .context("OAuth2 token client")?;
    let signin = SignIn::new(AccountStore::new(conn.clone(), prefix), shared.key.clone(), tokens);
    let dispatch_storage = queue_storage::<Dispatch>(conn.clone(), queues.dispatch());
    let connection = ConnectionHealth::new(
        AccountStore::new(conn.clone(), prefix),
        Inbox::new(conn.clone(), prefix),
        queue_storage::<ValidateAccount>(conn.clone(), queues.validate_account()),
        settings.health.clone(),
    );
    let bounces = crate::bounce_rate::BounceGuard {
        health: MailboxHealth::new(conn.clone(), prefix),
        inbox: Inbox::new(conn.clone(), prefix),
        config: settings.health.clone(),
    };
    let dispatch = Arc::new(DispatchState {
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
        health: MailboxHealth::new(conn.clone(), prefix),
        inbox: Inbox::new(conn.clone(), prefix),
        signin: signin.clone(),
        connection: connection.clone(),
        bounces: bounces.clone(),
    });
    let validate = Arc::new(ValidateState {
        store: AccountStore::new(conn.clone(), prefix),
        signin: signin.clone(),
        probe: shared.probe.clone(),
        health: MailboxHealth::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        dispatch_queue: dispatch_storage.clone(),
        connection: connection.clone(),
    });
    let scan = Arc::new(ScanState {
        store: ScanStore::new(conn.clone(), prefix),
        health: MailboxHealth::new(conn.clone(), prefix),
        accounts: AccountStore::new(conn.clone(), prefix),
        signin,
        campaigns: CampaignStore::new(conn.clone(), prefix),
        ledger: Ledger::new(conn.clone(), prefix),
        inbox: Inbox::new(conn.clone(), prefix),
        key: shared.key.clone(),
        probe: shared.probe.clone(),
        config: settings.scan.clone(),
        sending: settings.sending.clone(),
        queue: queue_storage::<Scan>(conn.clone(), queues.scan()),
        dispatch_queue: dispatch_storage,
        sessions: Default::default(),
        connection,
        bounces,
        folders: Default::default(),
        logins: shared.logins.clone(),
    });
    let test_send = Arc::new(crate::test_send::TestSendState {
        dispatch: dispatch.clone(),
        store: coldsend_core::storage::test_sends::TestSends::new(conn.clone(), prefix),
    });
    Ok(States { validate, dispatch, scan, test_send })
}

/// `(queue, Monitor)`: a monitor running one queue's worker (a macro because apalis's
/// handler bounds are not worth spelling out).
macro_rules! queue_monitor {
    ($queue:literal, $replica:expr, $storage:expr, $state:expr, $concurrency:expr, $handler:expr) => {{
        let name = format!("{}-{}", $replica, $queue);
        let (storage, state, concurrency) = ($storage, $state, $concurrency);
        let monitor = Monitor::new().register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(storage.clone())
                .data(state.clone())
                .concurrency(concurrency)
                // apalis hands a job's error to this handler only (its own says it at
                // DEBUG) and runs the job again later (apalis-redis: up to 25 attempts,
                // then dead): without it a failing job would leave nothing in the log.
                .on_event(|worker, event| {
                    if let apalis::prelude::Event::Error(e) = event {
                        tracing::warn!(worker = %worker.name(), error = %e, "job failed; apalis runs it again later");
                    }
                })
                // Each job on its own tokio task: a worker's jobs use every core instead of
                // sharing the one task apalis polls them from.
                .parallelize(tokio::spawn)
                .build($handler)
        });
        ($queue, monitor)
    }};
}
use queue_monitor;
