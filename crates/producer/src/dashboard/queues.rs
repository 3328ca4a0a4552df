//! Queues: depth of each queue, the workers consuming it with their last heartbeat, sends
//! in flight and uncertain, dead-lettered commands with their reasons, and recent trouble
//! (sender refusals, disconnections, sign-ins refused, bounce-rate pauses).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use coldsend_core::storage::inbox::{InboxFilter, InboxKind};
use maud::html;

use super::{Ctx, DashError, badge, relative};
use crate::api::AppState;

/// A consumer whose heartbeat is older than this is shown as gone.
const STALE_SECS: i64 = 90;
const TROUBLE: [InboxKind; 4] =
    [InboxKind::SenderRefused, InboxKind::Disconnected, InboxKind::NeedsReauth, InboxKind::BounceRatePaused];

pub async fn page(State(state): State<AppState>, ctx: Ctx, headers: HeaderMap) -> Result<Response, DashError> {
    let names: Vec<String> = state.queues.iter().map(|(_, q)| q.clone()).collect();
    let rows = state.dashboard.queues(&names).await?;
    let accounts = state.accounts.list().await?;
    let ids: Vec<_> = accounts.iter().filter_map(|a| a.id.parse().ok()).collect();
    let (inflight, uncertain) = state.dashboard.sends_in_doubt(&ids).await?;
    let dead = state.dashboard.dead_commands(20).await?;
    let (recent, _) = state.inbox.page(&InboxFilter::default(), None, 500).await?;
    let trouble: Vec<_> = recent.into_iter().filter(|e| TROUBLE.contains(&e.kind)).take(20).collect();
    let now = chrono::Utc::now();
    let now_s = now.timestamp();
    // A worker registers `<replica>-<short>` on each queue: one line per replica.
    let mut replicas: Vec<(String, i64)> = state
        .queues
        .iter()
        .zip(&rows)
        .flat_map(|((short, _), r)| {
            r.workers.iter().map(move |(n, beat)| (n.strip_suffix(&format!("-{short}")).unwrap_or(n).to_owned(), *beat))
        })
        .collect();
    replicas.sort();
    replicas.dedup_by(|a, b| {
        if a.0 == b.0 {
            b.1 = b.1.max(a.1);
            true
        } else {
            false
        }
    });
    let body = html! {
        div.scroll {
            table #queues {
                caption { "Queues" }
                thead { tr { th scope="col" { "Queue" } th scope="col" { "Ready" } th scope="col" { "Scheduled" } th scope="col" { "Running" } th scope="col" { "Dead" } th scope="col" { "Consumers" } } }
                tbody {
                    @for ((short, _), r) in state.queues.iter().zip(&rows) {
                        tr data-queue=(short) {
                            th scope="row" { (short) }
                            td { (r.ready) } td { (r.scheduled) } td { (r.running) } td { (r.dead) }
                            td { (r.workers.iter().filter(|(_, b)| now_s - b <= STALE_SECS).count()) " alive" }
                        }
                    }
                }
            }
        }
        h2 { "Workers" }
        @if replicas.is_empty() { p #workers { "No worker has registered: start coldsend-worker." } }
        @else {
            ul #workers { @for (name, beat) in &replicas {
                li { code { (name) } " — last heartbeat " (now_s - beat) " s ago "
                    @if now_s - beat > STALE_SECS { (badge("gone", "bad")) } @else { (badge("alive", "ok")) } }
            } }
        }
        h2 { "Sends" }
        dl.facts {
            dt { "In flight (SENDING)" } dd #inflight { (inflight) }
            dt { "Uncertain (the Sent folder will settle them)" } dd #uncertain { (uncertain.iter().sum::<u64>()) }
        }
        @let doubtful: Vec<_> = accounts.iter().zip(&uncertain).filter(|(_, n)| **n > 0).collect();
        @if !doubtful.is_empty() {
            ul { @for (a, n) in doubtful { li { a href=(ctx.url(&format!("/mailboxes/{}", a.id))) { (a.email_address) } ": " (n) " uncertain" } } }
        }
        h2 { "Dead-lettered commands" }
        @if dead.is_empty() { p { "None." } }
        @else {
            div.scroll { table #dead {
                thead { tr { th scope="col" { "Entry" } th scope="col" { "Command (secrets removed)" } th scope="col" { "Reason" } } }
                tbody { @for d in &dead { tr { td { code { (d.id) } } td { code { (d.command) } } td { (d.reason) } } } }
            } }
        }
        h2 { "Recent trouble" }
        @if trouble.is_empty() { p { "None." } }
        @else {
            ul #trouble { @for e in &trouble {
                li { (relative(&e.received_at, now)) " · " (badge(e.kind.as_str(), "warn")) " " (e.from) ": " (e.subject) " — " small { (e.snippet) } }
            } }
        }
    };
    Ok(ctx.list_page(&headers, ("Queues", "/queues", "/queues"), None, body))
}
