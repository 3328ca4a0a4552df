//! `/healthz`, `/readyz` and `/metrics` on their own port, for both processes.
//!
//! - `/healthz`: the process is alive (always 200 while it serves).
//! - `/readyz`: 200 only when Redis answers, the process's workers (or API) are
//!   running and it is not draining; 503 with the reason otherwise.
//! - `/metrics`: Prometheus text from the `metrics` facade (metrics-exporter-prometheus).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use coldsend_core::storage::queues as apalis_queues;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

/// What readiness depends on; set by the process as things change.
#[derive(Debug, Default)]
pub struct Health {
    redis: AtomicBool,
    running: AtomicBool,
    draining: AtomicBool,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    redis: bool,
    running: bool,
    draining: bool,
}

impl Health {
    pub fn set_redis(&self, ok: bool) {
        self.redis.store(ok, Ordering::Relaxed);
    }
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
    pub fn ready(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
            && self.running.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
    }
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: self.ready(),
            redis: self.redis.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Relaxed),
        }
    }
}

/// Installs the process-wide Prometheus recorder.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())
}

#[derive(Clone)]
struct HealthApp {
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<HealthApp>) -> impl IntoResponse {
    let r = app.health.readiness();
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}

async fn metrics(State(app): State<HealthApp>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}

/// Serves the health endpoints until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    handle: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HealthApp { health, metrics: handle });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// Pings Redis every 2 s (its own connection, so a stuck pool cannot fake health),
/// records reachability and queue depths, and counts failures.
pub async fn watch_redis(
    url: String,
    queues: Vec<String>,
    health: Arc<Health>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let ok = probe(&url, &mut conn, &queues).await;
        if !ok {
            conn = None;
            metrics::counter!("coldsend_redis_errors_total").increment(1);
        }
        health.set_redis(ok);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn probe(url: &str, conn: &mut Option<redis::aio::MultiplexedConnection>, queues: &[String]) -> bool {
    let attempt = async {
        if conn.is_none() {
            let client = redis::Client::open(url)?;
            *conn = Some(client.get_multiplexed_async_connection().await?);
        }
        let Some(c) = conn.as_mut() else { return Ok::<bool, redis::RedisError>(false) };
        apalis_queues::ping(c).await?;
        if !queues.is_empty() {
            for (q, (ready, scheduled)) in queues.iter().zip(apalis_queues::depths(c, queues).await?) {
                metrics::gauge!("coldsend_queue_depth", "queue" => q.clone(), "state" => "ready").set(ready as f64);
                metrics::gauge!("coldsend_queue_depth", "queue" => q.clone(), "state" => "scheduled")
                    .set(scheduled as f64);
            }
        }
        Ok(true)
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Ok(true)))
}
