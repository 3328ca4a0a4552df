//! `coldsend serve`: the HTTP API with its health port, until SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context as _;
use coldsend_core::settings::Settings;
use coldsend_producer::api::{AppState, router};
use coldsend_producer::api_key::KeyVerifier;
use coldsend_service::connect::services;
use coldsend_service::health::{self, Health};

pub(crate) async fn serve(settings: Settings) -> anyhow::Result<()> {
    let keys = KeyVerifier::from_hex(&settings.api.key_hashes);
    if keys.is_empty() {
        tracing::warn!("api.key_hashes is empty: every request will be refused (create one with `coldsend keys new`)");
    }
    let health = Arc::new(Health::default());
    let metrics = health::install_metrics().map_err(anyhow::Error::msg)?;
    let health_listener = tokio::net::TcpListener::bind(&settings.api.health_listen)
        .await
        .with_context(|| format!("binding api.health_listen {}", settings.api.health_listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health_server = tokio::spawn(health::serve(health_listener, health.clone(), metrics, stop_rx.clone()));
    let watcher = tokio::spawn(health::watch_redis(settings.redis.url.clone(), Vec::new(), health.clone(), stop_rx));
    let s = services(&settings).await.context("connecting")?;
    let app = router(AppState {
        inbox: s.inbox,
        accounts: s.accounts,
        campaigns: s.campaigns,
        suppression: s.suppression,
        signer: s.signer,
        keys: Arc::new(keys),
        consent: s.consent,
        previews: s.previews,
        webhooks: s.webhooks,
        dashboard: s.dashboard,
        dashboard_settings: Arc::new(settings.dashboard.clone()),
        queues: Arc::new(coldsend_core::jobs::Queues::new(&settings.redis.key_prefix).all().to_vec()),
    });
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding {}", settings.api.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    health.set_running(true);
    let draining = health.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.set_draining();
        })
        .await
        .context("serving")?;
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = health_server.await;
    tracing::info!("API stopped");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
