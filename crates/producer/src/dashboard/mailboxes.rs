//! Mailboxes: each account's health, today's sends against its cap, what binds the cap,
//! warm-up, next send, last scan and sends per hour; add (password or OAuth2), validate,
//! edit, pause, resume, remove.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coldsend_core::InboxType;
use coldsend_service::accounts::{AccountView, HealthState};
use coldsend_service::campaigns::UsageView;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::{Ctx, DashError, FormData, badge, charts, label, meter, relative};
use crate::api::AppState;

/// Days of sends per hour on the list (per row) and on a mailbox's page.
const LIST_DAYS: u32 = 3;
const PAGE_DAYS: u32 = 7;

fn health_badge(v: &AccountView) -> Markup {
    let (text, kind) = match v.health.state {
        HealthState::Healthy => ("ACTIVE", "ok"),
        HealthState::Pending => ("VALIDATING", "muted"),
        HealthState::SendingPaused => ("PAUSED", "warn"),
        HealthState::Disconnected => ("DISCONNECTED", "bad"),
        HealthState::NeedsReauth => ("NEEDS_REAUTH", "bad"),
        HealthState::ValidationFailed => ("VALIDATION_FAILED", "bad"),
    };
    badge(text, kind)
}

fn auth_type(v: &AccountView) -> String {
    let auth = serde_json::to_value(&v.auth).unwrap_or_default();
    match (auth["type"].as_str(), auth["provider"].as_str()) {
        (Some(t), Some(p)) => format!("{t} ({p})"),
        (Some(t), None) => t.to_owned(),
        _ => "?".into(),
    }
}

fn binding(u: &UsageView) -> String {
    let why = match label(&u.limit.binding).as_str() {
        "daily_limit" => format!("daily limit {}", u.limit.daily_limit),
        "inbox_maximum" => format!("provider maximum {}", u.limit.inbox_maximum),
        "warmup" => "warm-up".to_owned(),
        other => other.to_owned(),
    };
    match &u.limit.warmup {
        Some(w) => match w.stage_ends_on {
            Some(end) => format!("{why}; warm-up {} ({}/day) until {end}", label(&w.stage), w.per_day),
            None => format!("{why}; warm-up {} ({}/day)", label(&w.stage), w.per_day),
        },
        None => why,
    }
}

fn table(ctx: &Ctx, rows: &[(AccountView, Option<UsageView>, Vec<u64>)]) -> Markup {
    let now = chrono::Utc::now();
    html! {
        div.scroll {
            table #mailboxes {
                caption.sr { "Mailboxes" }
                thead { tr {
                    th scope="col" { "Mailbox" } th scope="col" { "Provider" } th scope="col" { "Health" }
                    th scope="col" { "Today" } th scope="col" { "Cap set by" } th scope="col" { "Next send" }
                    th scope="col" { "Last scan" } th scope="col" { "Sends per hour, " (LIST_DAYS) " days" }
                } }
                tbody {
                    @for (v, usage, hourly) in rows {
                        tr data-account=(v.id) data-health=(label(&v.health.state)) {
                            td { a href=(ctx.url(&format!("/mailboxes/{}", v.id))) { (v.email_address) } br; small { (v.display_name) } }
                            td { (label(&v.inbox_type)) br; small { (auth_type(v)) } }
                            td { (health_badge(v)) @if let Some(r) = &v.health.reason { br; small.reason { (r) } } }
                            @if let Some(u) = usage {
                                td { (meter(u64::from(u.sent_today), u64::from(u.effective_cap))) }
                                td { small { (binding(u)) } }
                                td { (relative(&u.next_allowed_send, now)) }
                                td { @match &u.last_scan {
                                    Some(s) => { (relative(&s.at, now)) br; small { (s.fetched) " fetched" } },
                                    None => { "never" },
                                } }
                            } @else {
                                td colspan="4" { small { "usage unavailable" } }
                            }
                            td { (charts::hourly(hourly, &format!("{} sends per hour", v.email_address), 216, 28)) }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p { "No mailbox yet. " a href=(ctx.url("/mailboxes/new")) { "Add one" } "." } }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    /// 1-based.
    page: Option<usize>,
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, DashError> {
    let all = state.accounts.list().await?;
    let pages = all.len().div_ceil(PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    // Today's usage takes a few reads per mailbox: only for the page shown.
    let accounts: Vec<AccountView> = all.into_iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).collect();
    let ids: Vec<_> = accounts.iter().filter_map(|a| a.id.parse().ok()).collect();
    let hourly = state.dashboard.hourly_sends(&ids, chrono::Utc::now().timestamp_millis(), LIST_DAYS).await?;
    let mut rows = Vec::with_capacity(accounts.len());
    for (v, h) in accounts.into_iter().zip(hourly) {
        let usage = state.campaigns.usage(&v.id).await.ok();
        rows.push((v, usage, h));
    }
    let t = html! {
        (table(&ctx, &rows))
        @if pages > 1 {
            nav.pages aria-label="Pages" {
                @for p in 1..=pages {
                    @if p == page { span aria-current="page" { (p) } }
                    @else { a href={ (ctx.url("/mailboxes")) "?page=" (p) } { (p) } }
                }
            }
        }
    };
    let live = format!("/mailboxes?page={page}");
    Ok(ctx.list_page(&headers, ("Mailboxes", "/mailboxes", &live), Some(("/mailboxes/new", "Add a mailbox")), t))
}

/// Mailboxes per page of the list.
const PER_PAGE: usize = 100;

/// The registration fields, in the provider documentation's order.
const TEXT_FIELDS: [(&str, &str, &str); 11] = [
    ("email_address", "Email address", "email"),
    ("display_name", "Display name", "text"),
    ("daily_limit", "Daily limit", "number"),
    ("smtp_host", "SMTP host", "text"),
    ("smtp_port", "SMTP port", "number"),
    ("smtp_username", "SMTP username", "text"),
    ("smtp_password", "SMTP password", "password"),
    ("imap_host", "IMAP host", "text"),
    ("imap_port", "IMAP port", "number"),
    ("imap_username", "IMAP username", "text"),
    ("imap_password", "IMAP password", "password"),
];

fn field(name: &str, text: &str, kind: &str, values: &HashMap<String, String>, required: bool) -> Markup {
    // Passwords are never sent back to the browser, even after an error.
    let value = if kind == "password" { None } else { values.get(name).cloned() };
    html! {
        div.field {
            label for=(name) { (text) }
            input id=(name) name=(name) type=(kind) value=[value] required[required]
                autocomplete=(if kind == "password" { "new-password" } else { "off" });
        }
    }
}

fn account_form(ctx: &Ctx, values: &HashMap<String, String>, error: Option<&str>) -> Markup {
    let selected = values.get("inbox_type").map(String::as_str).unwrap_or("CUSTOM_SMTP");
    let tls = values.is_empty() || values.contains_key("smtp_use_tls");
    let ssl = values.is_empty() || values.contains_key("imap_use_ssl");
    html! {
        @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
        form.card method="post" action=(ctx.url("/mailboxes/new")) {
            (ctx.csrf_field())
            div.field {
                label for="inbox_type" { "Provider" }
                select #inbox_type name="inbox_type" {
                    @for t in InboxType::ALL {
                        option value=(t.as_str()) selected[t.as_str() == selected] { (t.as_str()) }
                    }
                }
            }
            div.grid {
                @for (name, text, kind) in TEXT_FIELDS {
                    (field(name, text, kind, values, name != "smtp_username" && name != "imap_username"))
                }
            }
            div.field.check { input #smtp_use_tls type="checkbox" name="smtp_use_tls" checked[tls]; label for="smtp_use_tls" { "SMTP over TLS (STARTTLS on 587, implicit on 465)" } }
            div.field.check { input #imap_use_ssl type="checkbox" name="imap_use_ssl" checked[ssl]; label for="imap_use_ssl" { "IMAP over SSL" } }
            button type="submit" { "Add and validate" }
        }
    }
}

fn connect_form(ctx: &Ctx, provider: &str, name: &str) -> Markup {
    html! {
        form.card method="post" action=(ctx.url(&format!("/mailboxes/connect/{provider}"))) {
            (ctx.csrf_field())
            h3 { "Connect " (name) }
            div.field { label for={ (provider) "-email" } { "Email address" } input id={ (provider) "-email" } type="email" name="email_address" required; }
            div.field { label for={ (provider) "-name" } { "Display name" } input id={ (provider) "-name" } type="text" name="display_name" required; }
            div.field { label for={ (provider) "-limit" } { "Daily limit" } input id={ (provider) "-limit" } type="number" name="daily_limit" value="30" min="1" required; }
            button type="submit" { "Sign in with " (name) }
        }
    }
}

fn new_page(ctx: &Ctx, values: &HashMap<String, String>, error: Option<&str>) -> Response {
    ctx.layout(
        "Add a mailbox",
        "/mailboxes",
        html! {
            h1 { "Add a mailbox" }
            div.cols {
                section {
                    h2 { "With a password" }
                    p.hint { "The fields of the provider documentation. coldsend signs in to SMTP and IMAP before the mailbox sends." }
                    (account_form(ctx, values, error))
                }
                section {
                    h2 { "With OAuth2" }
                    p.hint { "You are sent to the provider to sign in and consent; coldsend keeps only the refresh token, sealed." }
                    (connect_form(ctx, "google", "Google"))
                    (connect_form(ctx, "microsoft", "Microsoft"))
                }
            }
        },
    )
}

pub async fn new_form(ctx: Ctx) -> Response {
    new_page(&ctx, &HashMap::new(), None)
}

/// A number field as a JSON number, or as the text typed (so the API's own check names
/// the field and the problem).
fn number_or_text(s: &str) -> Value {
    s.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(s))
}

fn registration(form: &FormData) -> Value {
    let mut body = Map::new();
    body.insert("inbox_type".into(), form.get("inbox_type").unwrap_or("CUSTOM_SMTP").into());
    for (name, _, kind) in TEXT_FIELDS {
        if let Some(v) = form.get(name) {
            body.insert(name.into(), if kind == "number" { number_or_text(v) } else { v.into() });
        }
    }
    body.insert("smtp_use_tls".into(), form.checked("smtp_use_tls").into());
    body.insert("imap_use_ssl".into(), form.checked("imap_use_ssl").into());
    Value::Object(body)
}

pub async fn create(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let request = registration(&form);
    match state.accounts.register(&serde_json::to_vec(&request).unwrap_or_default()).await {
        Ok(view) => {
            Ok(ctx.see_other(&format!("/mailboxes/{}", view.id), "Mailbox added: coldsend is validating it now."))
        }
        Err(e) if !e.is_transient() => {
            let message = e.to_string();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, new_page(&ctx, &form.values(), Some(&message))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn connect(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let (inbox_type, smtp, imap) = match provider.as_str() {
        "google" => ("GOOGLE_WORKSPACE", "smtp.gmail.com", "imap.gmail.com"),
        "microsoft" => ("OUTLOOK_365", "smtp.office365.com", "outlook.office365.com"),
        other => return Err(DashError::new(StatusCode::NOT_FOUND, format!("no OAuth2 provider '{other}'"))),
    };
    let request = json!({
        "email_address": form.get("email_address").unwrap_or_default(),
        "display_name": form.get("display_name").unwrap_or_default(),
        "daily_limit": number_or_text(form.get("daily_limit").unwrap_or("30")),
        "inbox_type": inbox_type,
        "smtp_host": smtp, "smtp_port": 587, "smtp_use_tls": true,
        "imap_host": imap, "imap_port": 993, "imap_use_ssl": true,
    });
    let started = state.consent.start(&provider, &serde_json::to_vec(&request).unwrap_or_default(), None).await?;
    Ok(Redirect::to(&started.authorization_url).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let v = state.accounts.get(&id).await?;
    let usage = Some(state.campaigns.usage(&id).await?);
    let parsed: Vec<_> = v.id.parse().into_iter().collect();
    let hourly = state
        .dashboard
        .hourly_sends(&parsed, chrono::Utc::now().timestamp_millis(), PAGE_DAYS)
        .await?
        .pop()
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let status = html! {
        dl.facts #status {
            dt { "Health" } dd { (health_badge(&v)) @if let Some(r) = &v.health.reason { " " small.reason { (r) } } }
            @if let Some(p) = &v.sending_pause {
                dt { "Paused until" } dd { (chrono::DateTime::from_timestamp_millis(p.until_ms).map(|t| t.to_rfc3339()).unwrap_or_default()) }
            }
            @if let Some(next) = &v.next_revalidation_at { dt { "Next automatic validation" } dd { (relative(next, now)) } }
            @if let Some(u) = &usage {
                dt { "Today (" (u.date) ", " (u.timezone) ")" } dd { (meter(u64::from(u.sent_today), u64::from(u.effective_cap))) }
                dt { "Cap set by" } dd { (binding(u)) }
                dt { "Next allowed send" } dd { (relative(&u.next_allowed_send, now)) " (" (u.next_allowed_send) ")" }
                dt { "Last scan" } dd { @match &u.last_scan { Some(s) => { (relative(&s.at, now)) ", " (s.fetched) " messages fetched" }, None => { "never" } } }
                dt { "New mail" } dd { @match &u.idle_watcher { Some(r) => { "watched with IMAP IDLE by " code { (r) } }, None => { "seen at the next scan (not watched with IMAP IDLE)" } } }
            }
            @if let Some(val) = &v.validation {
                dt { "Last validation" } dd {
                    (relative(&val.checked_at, now)) ": SMTP " (if val.smtp.ok { "ok" } else { "failed" })
                    @if let Some(m) = &val.smtp.message { " (" (m) ")" }
                    ", IMAP " (if val.imap.ok { "ok" } else { "failed" })
                    @if let Some(m) = &val.imap.message { " (" (m) ")" }
                }
            }
        }
    };
    if headers.contains_key("x-fragment") {
        return Ok(status.into_response());
    }
    let path = format!("/mailboxes/{}", v.id);
    let values: HashMap<String, String> = [
        ("display_name", v.display_name.clone()),
        ("daily_limit", v.daily_limit.to_string()),
        ("smtp_host", v.smtp_host.clone()),
        ("smtp_port", v.smtp_port.to_string()),
        ("smtp_username", v.smtp_username.clone()),
        ("imap_host", v.imap_host.clone()),
        ("imap_port", v.imap_port.to_string()),
        ("imap_username", v.imap_username.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Ok(ctx.layout(
        &v.email_address,
        "/mailboxes",
        html! {
            h1 { (v.email_address) }
            p.hint { (v.display_name) " · " (label(&v.inbox_type)) " · " (auth_type(&v)) " · SMTP " (v.smtp_host) ":" (v.smtp_port) " · IMAP " (v.imap_host) ":" (v.imap_port) }
            div.actions {
                (ctx.button(&format!("{path}/validate"), "Validate now", ""))
                @if v.sending_pause.is_some() {
                    (ctx.button(&format!("{path}/resume"), "Resume sending", ""))
                } @else {
                    form.inline method="post" action=(ctx.url(&format!("{path}/pause"))) {
                        (ctx.csrf_field())
                        label for="hours" { "Pause sending for" }
                        input #hours type="number" name="hours" value="24" min="1" max="8760";
                        " hours "
                        button type="submit" { "Pause sending" }
                    }
                }
            }
            div data-live=(ctx.url(&path)) { (status) }
            h2 { "Sends per hour, last " (PAGE_DAYS) " days (UTC)" }
            (charts::hourly(&hourly, "Sends per hour", 672, 80))
            h2 { "Edit" }
            p.hint { "Leave a password empty to keep it. A change to a host, port, TLS, username or password validates the mailbox again." }
            form.card method="post" action=(ctx.url(&path)) {
                (ctx.csrf_field())
                div.grid {
                    @for (name, text, kind) in TEXT_FIELDS.iter().filter(|(n, _, _)| *n != "email_address") {
                        (field(name, text, kind, &values, false))
                    }
                }
                button type="submit" { "Save" }
            }
            h2 { "Remove" }
            form.card method="post" action=(ctx.url(&format!("{path}/delete"))) {
                (ctx.csrf_field())
                div.field.check {
                    input #force type="checkbox" name="force";
                    label for="force" { "Also when running campaigns use it (their unstarted leads move to their other mailboxes)" }
                }
                button.danger type="submit" { "Remove this mailbox" }
            }
        },
    ))
}

/// Saves the edit form: only fields that changed are sent, as the API's PATCH body.
pub async fn edit(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let current = serde_json::to_value(state.accounts.get(&id).await?).unwrap_or_default();
    let mut patch = Map::new();
    for (name, _, kind) in TEXT_FIELDS.iter().filter(|(n, _, _)| *n != "email_address") {
        let Some(value) = form.get(name) else { continue };
        let new = if *kind == "number" { number_or_text(value) } else { Value::from(value) };
        if *kind == "password" || current.get(*name) != Some(&new) {
            patch.insert((*name).into(), new);
        }
    }
    if patch.is_empty() {
        return Ok(ctx.see_other(&format!("/mailboxes/{id}"), "Nothing changed."));
    }
    state.accounts.update(&id, &serde_json::to_vec(&Value::Object(patch)).unwrap_or_default()).await?;
    Ok(ctx.see_other(&format!("/mailboxes/{id}"), "Saved."))
}

pub async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let path = format!("/mailboxes/{id}");
    match action.as_str() {
        "validate" => {
            state.accounts.revalidate(&id).await?;
            Ok(ctx.see_other(&path, "Validation queued."))
        }
        "pause" => {
            let hours = form.get("hours").unwrap_or("24");
            let hours: u32 = hours
                .parse()
                .map_err(|_| DashError::bad_request(format!("hours must be a whole number, not '{hours}'")))?;
            state.accounts.pause_sending(&id, hours, Some("paused from the dashboard")).await?;
            Ok(ctx.see_other(&path, &format!("Sending paused for {hours} h.")))
        }
        "resume" => {
            state.accounts.resume_sending(&id).await?;
            state.campaigns.wake(&id).await?;
            Ok(ctx.see_other(&path, "Sending resumed."))
        }
        "delete" => {
            state.accounts.get(&id).await?;
            state.campaigns.release_account(&id, form.checked("force")).await?;
            state.accounts.delete(&id).await?;
            Ok(ctx.see_other("/mailboxes", "Mailbox removed."))
        }
        other => Err(DashError::new(StatusCode::NOT_FOUND, format!("no mailbox action '{other}'"))),
    }
}
