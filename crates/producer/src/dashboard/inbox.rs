//! The master inbox across mailboxes: filters (kind, mailbox, campaign), each message with
//! its classification and the reason for it, linked to its lead and campaign; the first
//! page refreshes itself.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coldsend_core::storage::inbox::{Cursor, InboxEvent, InboxFilter, InboxKind};
use maud::{Markup, html};

use super::{Ctx, DashError, badge, relative};
use crate::api::AppState;

const PAGE: usize = 50;

#[derive(Debug, Default, serde::Deserialize)]
pub struct InboxQuery {
    kind: Option<String>,
    account: Option<String>,
    campaign: Option<String>,
    before: Option<String>,
    csv: Option<String>,
}

fn kind_badge(k: InboxKind) -> Markup {
    let kind = match k {
        InboxKind::Reply | InboxKind::Reconnected => "info",
        InboxKind::AutoReply | InboxKind::Other => "muted",
        InboxKind::Bounce | InboxKind::SenderRefused | InboxKind::BounceRatePaused => "warn",
        InboxKind::Complaint | InboxKind::Unsubscribe | InboxKind::NeedsReauth | InboxKind::Disconnected => "bad",
    };
    badge(k.as_str(), kind)
}

fn rows(ctx: &Ctx, events: &[InboxEvent], emails: &HashMap<String, String>, names: &HashMap<String, String>) -> Markup {
    let now = chrono::Utc::now();
    html! {
        div.scroll {
            table #inbox {
                caption.sr { "Messages" }
                thead { tr {
                    th scope="col" { "Received" } th scope="col" { "Kind" } th scope="col" { "From / subject" }
                    th scope="col" { "Why" } th scope="col" { "Mailbox" } th scope="col" { "Campaign" }
                } }
                tbody {
                    @for e in events {
                        tr data-kind=(e.kind.as_str()) data-from=(e.from) {
                            td { (relative(&e.received_at, now)) }
                            td { (kind_badge(e.kind)) }
                            td {
                                strong { (e.from) } br; (e.subject)
                                @if !e.snippet.is_empty() { br; small.snippet { (e.snippet) } }
                            }
                            td.why {
                                (e.why)
                                @if let Some(d) = &e.returns_on { br; strong { "Back on " (d) } }
                                @if let Some(b) = &e.bounce {
                                    br; small { (b.recipient) ": " (b.status.clone().unwrap_or_default()) " " (format!("{:?}", b.reason)) " (" (format!("{:?}", b.class)) ")" }
                                }
                            }
                            td { a href=(ctx.url(&format!("/mailboxes/{}", e.account_id))) { (emails.get(&e.account_id).cloned().unwrap_or_else(|| e.account_id.clone())) } }
                            td {
                                @if let Some(c) = &e.campaign_id {
                                    a href=(ctx.url(&format!("/campaigns/{c}"))) { (names.get(c).cloned().unwrap_or_else(|| c.clone())) }
                                    @if let Some(l) = &e.lead_id {
                                        br; a href=(ctx.url(&format!("/campaigns/{c}#lead-{l}"))) { small { "the lead" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if events.is_empty() { p { "Nothing here yet." } }
    }
}

pub async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(q): Query<InboxQuery>,
) -> Result<Response, DashError> {
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(
            InboxKind::parse(k)
                .ok_or_else(|| DashError::new(StatusCode::BAD_REQUEST, format!("no message kind '{k}'")))?,
        ),
        None => None,
    };
    let filter = InboxFilter {
        account: q.account.clone().filter(|a| !a.is_empty()),
        campaign: q.campaign.clone().filter(|c| !c.is_empty()),
        kind,
    };
    if q.csv.is_some() {
        let csv = coldsend_service::exports::inbox_csv(&state.inbox, &filter).await?;
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"inbox.csv\""),
            ],
            csv,
        )
            .into_response());
    }
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => Some(b.parse::<Cursor>().map_err(|e| DashError::new(StatusCode::BAD_REQUEST, e))?),
        None => None,
    };
    let (events, next) = state.inbox.page(&filter, before, PAGE).await?;
    let accounts = state.accounts.list().await?;
    let emails: HashMap<String, String> = accounts.iter().map(|a| (a.id.clone(), a.email_address.clone())).collect();
    let campaigns = state.campaigns.list().await?;
    let names: HashMap<String, String> = campaigns.iter().map(|c| (c.id.clone(), c.name.clone())).collect();
    let table = rows(&ctx, &events, &emails, &names);
    if headers.contains_key("x-fragment") {
        return Ok(table.into_response());
    }
    let query = |extra: &[(&str, &str)]| {
        let mut pairs: Vec<(&str, &str)> =
            [("kind", q.kind.as_deref()), ("account", q.account.as_deref()), ("campaign", q.campaign.as_deref())]
                .into_iter()
                .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
                .collect();
        pairs.extend_from_slice(extra);
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    };
    let live = q.before.is_none();
    Ok(ctx.layout(
        "Inbox",
        "/inbox",
        html! {
            h1 { "Inbox" }
            form.filters method="get" action=(ctx.url("/inbox")) {
                div.field { label for="kind" { "Kind" }
                    select #kind name="kind" {
                        option value="" { "all" }
                        @for k in InboxKind::ALL { option value=(k.as_str()) selected[kind == Some(k)] { (k.as_str()) } }
                    } }
                div.field { label for="account" { "Mailbox" }
                    select #account name="account" {
                        option value="" { "all" }
                        @for a in &accounts { option value=(a.id) selected[filter.account.as_deref() == Some(a.id.as_str())] { (a.email_address) } }
                    } }
                div.field { label for="campaign" { "Campaign" }
                    select #campaign name="campaign" {
                        option value="" { "all" }
                        @for c in &campaigns { option value=(c.id) selected[filter.campaign.as_deref() == Some(c.id.as_str())] { (c.name) } }
                    } }
                button type="submit" { "Filter" }
                a href={ (ctx.url("/inbox")) "?" (query(&[("csv", "1")])) } { "Export CSV" }
            }
            @if live {
                div data-live={ (ctx.url("/inbox")) "?" (query(&[])) } { (table) }
            } @else {
                (table)
            }
            @if let Some(n) = next { p { a href={ (ctx.url("/inbox")) "?" (query(&[("before", &n)])) } { "Older" } } }
        },
    ))
}
