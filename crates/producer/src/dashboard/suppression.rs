//! The suppression list: search, add, remove, import a CSV, export.

use axum::extract::{Multipart, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use coldsend_service::suppression::{SuppressionReport, SuppressionRequest};
use maud::html;

use super::{Ctx, DashError, FormData, label};
use crate::api::AppState;

#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    cursor: Option<String>,
}

fn report_notice(r: &SuppressionReport) -> String {
    let mut s = format!("{} added, {} already there, {} invalid", r.added, r.already, r.invalid.len());
    for bad in r.invalid.iter().take(5) {
        s.push_str(&format!("; {} ({}): {}", bad.entry, bad.at, bad.error));
    }
    s
}

pub async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<SearchQuery>,
) -> Result<Response, DashError> {
    let search = q.q.clone().unwrap_or_default();
    let page = state.suppression.list(search.trim(), q.cursor.as_deref().filter(|c| !c.is_empty()), 100).await?;
    Ok(ctx.layout(
        "Suppression",
        "/suppression",
        html! {
            h1 { "Suppression list" }
            p.hint { "Addresses and @domains here are never mailed by any campaign." }
            form.filters method="get" action=(ctx.url("/suppression")) {
                div.field { label for="q" { "Search" } input #q type="search" name="q" value=(search); }
                button type="submit" { "Search" }
                a href=(ctx.url("/suppression/export")) { "Export CSV" }
            }
            div.scroll { table #suppression {
                thead { tr { th scope="col" { "Entry" } th scope="col" { "Kind" } th scope="col" { "Reason" } th scope="col" { span.sr { "Actions" } } } }
                tbody { @for e in &page.entries {
                    tr data-entry=(e.entry) {
                        td { (e.entry) } td { (label(&e.kind)) } td { (e.reason.as_ref().map(label).unwrap_or_default()) }
                        td { form.inline method="post" action=(ctx.url("/suppression/remove")) {
                            (ctx.csrf_field()) input type="hidden" name="entry" value=(e.entry);
                            button.link type="submit" aria-label={ "Remove " (e.entry) } { "Remove" } } }
                    }
                } }
            } }
            @if page.entries.is_empty() { p { "No entry matches." } }
            @if let Some(next) = &page.next_cursor {
                p { a href={ (ctx.url("/suppression")) "?" (serde_urlencoded::to_string([("q", search.as_str()), ("cursor", next.as_str())]).unwrap_or_default()) } { "More" } }
            }
            div.cols {
                section {
                    h2 { "Add" }
                    form.card #add-entries method="post" action=(ctx.url("/suppression")) {
                        (ctx.csrf_field())
                        div.field { label for="entries" { "Addresses or @domains, one per line" } textarea #entries name="entries" rows="4" required {} }
                        button type="submit" { "Add" }
                    }
                }
                section {
                    h2 { "Import a CSV" }
                    form.card method="post" enctype="multipart/form-data" action=(ctx.url("/suppression/import")) {
                        (ctx.csrf_field())
                        div.field { label for="file" { "CSV file (a column named email or entry)" } input #file type="file" name="csv" accept=".csv,text/csv" required; }
                        button type="submit" { "Import" }
                    }
                }
            }
        },
    ))
}

pub async fn add(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let mut request = SuppressionRequest::default();
    for entry in form.get("entries").unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()) {
        match entry.strip_prefix('@') {
            Some(domain) => request.domains.push(domain.to_owned()),
            None => request.addresses.push(entry.to_owned()),
        }
    }
    let report = state.suppression.add(request).await?;
    Ok(ctx.see_other("/suppression", &report_notice(&report)))
}

pub async fn remove(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let entry = form.get("entry").ok_or_else(|| DashError::bad_request("which entry?"))?;
    state.suppression.remove(entry).await?;
    Ok(ctx.see_other("/suppression", &format!("{entry} removed: it can be mailed again.")))
}

pub async fn import(State(state): State<AppState>, ctx: Ctx, mut multipart: Multipart) -> Result<Response, DashError> {
    let mut csv = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| DashError::bad_request(format!("the upload could not be read: {e}")))?
    {
        if field.name() == Some("csv") {
            csv = Some(
                field.bytes().await.map_err(|e| DashError::bad_request(format!("the file could not be read: {e}")))?,
            );
        }
    }
    let csv = csv.filter(|b| !b.is_empty()).ok_or_else(|| DashError::bad_request("choose a CSV file to import"))?;
    let report = state.suppression.import_csv(&csv).await?;
    Ok(ctx.see_other("/suppression", &report_notice(&report)))
}

pub async fn export(State(state): State<AppState>) -> Result<Response, DashError> {
    let csv = state.suppression.export_csv().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"suppression.csv\""),
        ],
        csv,
    )
        .into_response())
}
