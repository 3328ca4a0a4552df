//! Campaigns: the list with progress and reply/bounce rates; a campaign's funnel per step,
//! its leads, schedule and actions (start, pause, resume, stop, edit while paused,
//! preview, test send, add leads from a CSV with the row-by-row report).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coldsend_core::campaign::{CampaignAction, CampaignState};
use coldsend_core::lead::LeadState;
use coldsend_service::campaigns::{AddLeadsReport, AddOptions, CampaignView, LeadView};
use coldsend_service::preview::PreviewView;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::{Ctx, DashError, FormData, badge, charts, label, meter};
use crate::api::AppState;

/// Steps the create and edit forms offer.
const FORM_STEPS: usize = 3;
/// Leads listed on a campaign's page (all of them are in the CSV export).
const LEADS_SHOWN: usize = 500;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn state_badge(s: CampaignState) -> Markup {
    let kind = match s {
        CampaignState::Running => "ok",
        CampaignState::Paused => "warn",
        CampaignState::Draft => "muted",
        CampaignState::Completed => "ok",
        CampaignState::Stopped => "bad",
    };
    badge(s.as_str(), kind)
}

fn lead_badge(s: Option<LeadState>) -> Markup {
    let Some(s) = s else { return badge("?", "muted") };
    let kind = match s {
        LeadState::Active | LeadState::Completed => "ok",
        LeadState::Replied => "info",
        LeadState::Paused => "warn",
        _ => "bad",
    };
    badge(s.as_str(), kind)
}

fn replied(c: &CampaignView) -> u64 {
    c.stats.lead_states.get("REPLIED").copied().unwrap_or(0)
}

fn progress(c: &CampaignView) -> Markup {
    meter(c.stats.sent, c.stats.sent + c.stats.remaining_steps)
}

pub async fn list(State(state): State<AppState>, ctx: Ctx, headers: HeaderMap) -> Result<Response, DashError> {
    let campaigns = state.campaigns.list().await?;
    let rows: Vec<(String, f64, f64)> = campaigns
        .iter()
        .filter(|c| c.stats.sent > 0)
        .map(|c| (c.name.clone(), charts::rate(replied(c), c.stats.sent), charts::rate(c.stats.bounced, c.stats.sent)))
        .collect();
    let table = html! {
        div.scroll {
            table #campaigns {
                caption.sr { "Campaigns" }
                thead { tr {
                    th scope="col" { "Campaign" } th scope="col" { "State" } th scope="col" { "Leads" }
                    th scope="col" { "Progress (emails)" } th scope="col" { "Replied" } th scope="col" { "Bounced" }
                } }
                tbody {
                    @for c in &campaigns {
                        tr data-campaign=(c.id) {
                            td { a href=(ctx.url(&format!("/campaigns/{}", c.id))) { (c.name) } }
                            td { (state_badge(c.state)) }
                            td { (c.stats.leads) }
                            td { (progress(c)) }
                            td { (replied(c)) " (" (format!("{:.1}", charts::rate(replied(c), c.stats.sent))) " %)" }
                            td { (c.stats.bounced) " (" (format!("{:.1}", charts::rate(c.stats.bounced, c.stats.sent))) " %)" }
                        }
                    }
                }
            }
        }
        @if campaigns.is_empty() { p { "No campaign yet." } }
        @if !rows.is_empty() { h2 { "Reply and bounce rates" } (charts::rates(&rows)) }
    };
    Ok(ctx.list_page(
        &headers,
        ("Campaigns", "/campaigns", "/campaigns"),
        Some(("/campaigns/new", "New campaign")),
        table,
    ))
}

/// The create/edit form. `values` refills it after an error; `accounts` are the mailboxes
/// to pick from (`None` on the edit form, where mailboxes are not changed).
fn campaign_form(
    ctx: &Ctx,
    action: &str,
    values: &HashMap<String, Vec<String>>,
    accounts: Option<&[(String, String)]>,
    error: Option<&str>,
) -> Markup {
    let one = |k: &str| values.get(k).and_then(|v| v.first()).cloned();
    let has = |k: &str, v: &str| values.get(k).is_some_and(|all| all.iter().any(|x| x == v));
    let fresh = values.is_empty();
    html! {
        @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
        form.card method="post" action=(ctx.url(action)) {
            (ctx.csrf_field())
            div.field { label for="name" { "Name" } input #name name="name" type="text" required value=[one("name")]; }
            @if let Some(accounts) = accounts {
                fieldset {
                    legend { "Mailboxes to send from" }
                    @for (id, email) in accounts {
                        div.check {
                            input type="checkbox" id={ "m-" (id) } name="mailbox" value=(id) checked[has("mailbox", id)];
                            label for={ "m-" (id) } { (email) }
                        }
                    }
                    @if accounts.is_empty() { p { "Add a mailbox first." } }
                }
            }
            @for i in 0..FORM_STEPS {
                fieldset.step {
                    legend { "Step " (i + 1) @if i > 0 { " (optional follow-up)" } }
                    @if i > 0 {
                        div.field { label for={ "delay" (i) } { "Wait after the previous step (e.g. 3d, 12h)" }
                            input id={ "delay" (i) } name={ "delay" (i) } type="text" value=[one(&format!("delay{i}"))]; }
                    }
                    div.field { label for={ "subject" (i) } { "Subject" @if i > 0 { " (empty: “Re: ” the first)" } }
                        input id={ "subject" (i) } name={ "subject" (i) } type="text" value=[one(&format!("subject{i}"))]; }
                    div.field { label for={ "text" (i) } { "Text (minijinja: {{ first_name }}, {{ company }}, …)" }
                        textarea id={ "text" (i) } name={ "text" (i) } rows="5" { (one(&format!("text{i}")).unwrap_or_default()) } }
                }
            }
            fieldset {
                legend { "Schedule (empty time zone: every day, all day, UTC)" }
                div.grid {
                    div.field { label for="timezone" { "Time zone (IANA)" } input #timezone name="timezone" type="text" placeholder="Europe/Berlin" value=[one("timezone")]; }
                    div.field { label for="start" { "Window start" } input #start name="start" type="time" value=(one("start").unwrap_or_else(|| "09:00".into())); }
                    div.field { label for="end" { "Window end" } input #end name="end" type="time" value=(one("end").unwrap_or_else(|| "17:00".into())); }
                }
                div.days {
                    @for d in DAYS {
                        span.check { input type="checkbox" id={ "d-" (d) } name="days" value=(d) checked[if fresh { !matches!(d, "sat" | "sun") } else { has("days", d) }];
                            label for={ "d-" (d) } { (d) } }
                    }
                }
            }
            div.grid {
                div.field { label for="daily_limit" { "Campaign daily limit (optional)" } input #daily_limit name="daily_limit" type="number" min="1" value=[one("daily_limit")]; }
                div.field { label for="pacing" { "Pacing" }
                    select #pacing name="pacing" {
                        option value="" { "default" }
                        option value="spread" selected[has("pacing", "spread")] { "spread over the window" }
                        option value="fast" selected[has("pacing", "fast")] { "fast (the gap only)" }
                    } }
                div.field { label for="lead_variables" { "Extra lead variables (comma-separated)" } input #lead_variables name="lead_variables" type="text" value=[one("lead_variables")]; }
            }
            div.check { input #stop_on_reply type="checkbox" name="stop_on_reply" checked[fresh || has("stop_on_reply", "on")]; label for="stop_on_reply" { "Stop a lead's sequence when it replies" } }
            button type="submit" { "Save" }
        }
    }
}

fn form_values(form: &FormData) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &form.0 {
        if k != "csrf" {
            out.entry(k.clone()).or_default().push(v.clone());
        }
    }
    out
}

/// The form as the API's campaign body; `with_mailboxes` on creation only.
fn campaign_body(form: &FormData, with_mailboxes: bool) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), form.get("name").unwrap_or_default().into());
    if with_mailboxes {
        body.insert("sender_account_ids".into(), form.all("mailbox").into());
    }
    let mut steps = Vec::new();
    for i in 0..FORM_STEPS {
        let (subject, text) = (form.get(&format!("subject{i}")), form.get(&format!("text{i}")));
        if i > 0 && subject.is_none() && text.is_none() {
            continue;
        }
        let mut step = Map::new();
        if let Some(s) = subject {
            step.insert("subject".into(), s.into());
        }
        step.insert("text".into(), text.unwrap_or_default().into());
        if let Some(d) = form.get(&format!("delay{i}")) {
            step.insert("delay".into(), d.into());
        }
        steps.push(Value::Object(step));
    }
    body.insert("steps".into(), steps.into());
    if let Some(tz) = form.get("timezone") {
        body.insert(
            "schedule".into(),
            json!({"timezone": tz, "days": form.all("days"), "start": form.get("start").unwrap_or_default(),
                   "end": form.get("end").unwrap_or_default()}),
        );
    }
    if let Some(l) = form.get("daily_limit") {
        body.insert("daily_limit".into(), l.parse::<u64>().map(Value::from).unwrap_or_else(|_| l.into()));
    }
    if let Some(p) = form.get("pacing") {
        body.insert("pacing".into(), p.into());
    }
    if let Some(vars) = form.get("lead_variables") {
        let vars: Vec<&str> = vars.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
        body.insert("lead_variables".into(), vars.into());
    }
    body.insert("stop_on_reply".into(), form.checked("stop_on_reply").into());
    Value::Object(body)
}

async fn mailbox_choices(state: &AppState) -> Result<Vec<(String, String)>, DashError> {
    Ok(state.accounts.list().await?.into_iter().map(|a| (a.id, a.email_address)).collect())
}

pub async fn new_form(State(state): State<AppState>, ctx: Ctx) -> Result<Response, DashError> {
    let accounts = mailbox_choices(&state).await?;
    Ok(ctx.layout(
        "New campaign",
        "/campaigns",
        html! { h1 { "New campaign" } (campaign_form(&ctx, "/campaigns/new", &HashMap::new(), Some(&accounts), None)) },
    ))
}

pub async fn create(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let request = campaign_body(&form, true);
    match state.campaigns.create(&serde_json::to_vec(&request).unwrap_or_default()).await {
        Ok(c) => {
            Ok(ctx.see_other(&format!("/campaigns/{}", c.id), "Campaign created as DRAFT: add leads, then start it."))
        }
        Err(e) if !e.is_transient() => {
            let accounts = mailbox_choices(&state).await?;
            let form =
                campaign_form(&ctx, "/campaigns/new", &form_values(&form), Some(&accounts), Some(&e.to_string()));
            Ok(ctx.refused_form("New campaign", "/campaigns", form))
        }
        Err(e) => Err(e.into()),
    }
}

fn funnel(c: &CampaignView, leads: &[LeadView]) -> Markup {
    html! {
           div.scroll {
               table #funnel {
                   caption { "Per step" }
                   thead { tr {
                       th scope="col" { "Step" } th scope="col" { "Waiting" } th scope="col" { "Sent" } th scope="col" { "Replied" }
                       th scope="col" { "Auto-replies" } th scope="col" { "Hard bounces" } th scope="col" { "Soft bounces" }
                       th scope="col" { "Unsubscribed" } th scope="col" { "Complaints" } th scope="col" { "Failed" }
                   } }
                   tbody {
                       @for (i, step) in c.steps.iter().enumerate() {
                           @let s = c.stats.per_step.get(i).cloned().unwrap_or_default();
                           @let waiting = leads.iter().filter(|l| l.state == Some(LeadState::Active) && l.steps_sent == i as u64).count();
    tr data-step=(i + 1) data-waiting=(waiting) data-replied=(s.replied) {
                               th scope="row" { (i + 1) ". " (step.subject.clone().unwrap_or_else(|| "(reply in thread)".into())) }
                               td { (waiting) } td { (s.sent) } td { (s.replied) } td { (s.auto_replied) }
                               td { (s.hard_bounced) } td { (s.soft_bounced) } td { (s.unsubscribed) } td { (s.complained) } td { (s.failed) }
                           }
                       }
                   }
               }
           }
       }
}

fn summary(c: &CampaignView) -> Markup {
    html! {
        dl.facts #summary {
            dt { "State" } dd { (state_badge(c.state)) }
            dt { "Progress" } dd { (progress(c)) }
            dt { "Leads" } dd {
                (c.stats.leads)
                @for (state, n) in &c.stats.lead_states { " · " (state) " " (n) }
            }
            dt { "Sends" } dd { (c.stats.sent) " sent · " (c.stats.failed) " failed · " (c.stats.bounced) " bounced · " (c.stats.uncertain) " uncertain" }
        }
    }
}

fn leads_table(ctx: &Ctx, c: &CampaignView, leads: &[LeadView], emails: &HashMap<String, String>) -> Markup {
    html! {
        div.scroll {
            table #leads {
                caption { "Leads" @if leads.len() > LEADS_SHOWN { " (first " (LEADS_SHOWN) " of " (leads.len()) ")" } }
                thead { tr {
                    th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Company" } th scope="col" { "State" }
                    th scope="col" { "Steps sent" } th scope="col" { "Last event" } th scope="col" { "Mailbox" }
                } }
                tbody {
                    @for l in leads.iter().take(LEADS_SHOWN) {
                        tr id={ "lead-" (l.id) } data-lead=(l.email) data-state=(l.state.map(|s| s.as_str()).unwrap_or("")) {
                            td { (l.email) }
                            td { (l.first_name.clone().unwrap_or_default()) " " (l.last_name.clone().unwrap_or_default()) }
                            td { (l.company.clone().unwrap_or_default()) }
                            td { (lead_badge(l.state)) }
                            td { (l.steps_sent) " / " (c.steps.len()) }
                            td { small { (l.error.clone().unwrap_or_default()) } }
                            td { small { (l.sender_account_id.as_ref().and_then(|a| emails.get(a)).cloned().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
        p { a href=(ctx.url(&format!("/campaigns/{}/leads.csv", c.id))) { "Download every lead as CSV" } }
    }
}

fn actions(ctx: &Ctx, c: &CampaignView) -> Markup {
    let path = format!("/campaigns/{}", c.id);
    let allowed: &[(&str, &str)] = match c.state {
        CampaignState::Draft => &[("start", "Start")],
        CampaignState::Running => &[("pause", "Pause"), ("stop", "Stop")],
        CampaignState::Paused => &[("resume", "Resume"), ("stop", "Stop")],
        CampaignState::Completed | CampaignState::Stopped => &[],
    };
    html! {
        div.actions {
            @for (action, text) in allowed {
                (ctx.button(&format!("{path}/act/{action}"), text, if *action == "stop" { "danger" } else { "" }))
            }
            @if matches!(c.state, CampaignState::Draft | CampaignState::Paused) {
                a.button href=(ctx.url(&format!("{path}/edit"))) { "Edit" }
            }
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    if headers.contains_key("x-fragment") {
        // The live part is what moves; the leads table (up to 500 rows) is drawn once.
        let c = state.campaigns.get(&id).await?;
        let leads = state.campaigns.leads(&id).await?;
        return Ok(html! { (summary(&c)) (funnel(&c, &leads)) }.into_response());
    }
    page_with(&state, &ctx, &id, None).await
}

/// A campaign's page; `extra` (a preview, a test send's outcome, an upload report) shows
/// above the forms.
fn page(
    ctx: &Ctx,
    c: &CampaignView,
    leads: &[LeadView],
    emails: &HashMap<String, String>,
    live: Markup,
    extra: Option<Markup>,
) -> Markup {
    let path = format!("/campaigns/{}", c.id);
    html! {
        div.head { h1 { (c.name) } (actions(ctx, c)) }
        p.hint {
            "Schedule: " (c.schedule.timezone) ", " (c.schedule.days.join(" ")) ", " (c.schedule.start) "–" (c.schedule.end)
            " · pacing " (label(&c.pacing))
            @if let Some(l) = c.daily_limit { " · at most " (l) " a day" }
            @if c.lead_timezones { " · in each lead's time zone" }
            " · mailboxes: " (c.sender_account_ids.iter().filter_map(|a| emails.get(a)).cloned().collect::<Vec<_>>().join(", "))
        }
        @if let Some(extra) = extra { section #result { (extra) } }
        div data-live=(ctx.url(&path)) { (live) }
        (leads_table(ctx, c, leads, emails))
        div.cols {
            section {
                h2 { "Add leads from a CSV" }
                p.hint { "A header row with " code { "email" } " and optionally first_name, last_name, company, timezone; other columns become variables." }
                form.card method="post" enctype="multipart/form-data" action=(ctx.url(&format!("{path}/leads"))) {
                    (ctx.csrf_field())
                    div.field { label for="csv" { "CSV file" } input #csv type="file" name="csv" accept=".csv,text/csv" required; }
                    div.check { input #skip type="checkbox" name="skip_replied_elsewhere"; label for="skip" { "Leave out leads that replied in another campaign" } }
                    button type="submit" { "Upload" }
                }
            }
            section {
                h2 { "Preview" }
                form.card method="post" action=(ctx.url(&format!("{path}/preview"))) {
                    (ctx.csrf_field())
                    div.field { label for="preview-lead" { "Lead" }
                        select #preview-lead name="lead_id" {
                            @for l in leads.iter().take(200) { option value=(l.id) { (l.email) } }
                        } }
                    button type="submit" disabled[leads.is_empty()] { "Preview every step" }
                }
                h2 { "Test send" }
                form.card method="post" action=(ctx.url(&format!("{path}/test-send"))) {
                    (ctx.csrf_field())
                    div.field { label for="test-to" { "Send to" } input #test-to type="email" name="to" required; }
                    div.field { label for="test-from" { "From mailbox" }
                        select #test-from name="sender_account_id" {
                            @for a in &c.sender_account_ids { option value=(a) { (emails.get(a).cloned().unwrap_or_else(|| a.clone())) } }
                        } }
                    div.field { label for="test-lead" { "Fill the templates from lead" }
                        select #test-lead name="lead_id" {
                            option value="" { "none (only the address)" }
                            @for (i, l) in leads.iter().take(200).enumerate() { option value=(l.id) selected[i == 0] { (l.email) } }
                        } }
                    button type="submit" { "Send the steps as tests" }
                }
            }
        }
    }
}

/// A campaign's page, with `extra` (a preview, a test send's outcome, an upload report).
async fn page_with(state: &AppState, ctx: &Ctx, id: &str, extra: Option<Markup>) -> Result<Response, DashError> {
    let c = state.campaigns.get(id).await?;
    let leads = state.campaigns.leads(id).await?;
    let emails: HashMap<String, String> =
        state.accounts.list().await?.into_iter().map(|a| (a.id, a.email_address)).collect();
    let live = html! { (summary(&c)) (funnel(&c, &leads)) };
    Ok(ctx.layout(&c.name, "/campaigns", page(ctx, &c, &leads, &emails, live, extra)))
}

pub async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, DashError> {
    let action: CampaignAction = action.parse().map_err(|e: String| DashError::new(StatusCode::NOT_FOUND, e))?;
    let c = state.campaigns.act(&id, action).await?;
    let mut notice = format!("Campaign is {}.", c.state.as_str());
    if let Some(o) = &c.outlook
        && !o.sending_now
    {
        notice.push_str(&format!(" Not sending yet: {}", label(&o.reason)));
        if let Some(from) = &o.from {
            notice.push_str(&format!(" (from {from})"));
        }
    }
    Ok(ctx.see_other(&format!("/campaigns/{id}"), &notice))
}

pub async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Result<Response, DashError> {
    let c = state.campaigns.get(&id).await?;
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    let mut put = |k: String, v: String| {
        values.insert(k, vec![v]);
    };
    put("name".into(), c.name.clone());
    for (i, s) in c.steps.iter().enumerate().take(FORM_STEPS) {
        put(format!("subject{i}"), s.subject.clone().unwrap_or_default());
        put(format!("text{i}"), s.text.clone());
        if i > 0 {
            put(format!("delay{i}"), humantime_short(s.delay_secs));
        }
    }
    put("timezone".into(), c.schedule.timezone.clone());
    put("start".into(), c.schedule.start.clone());
    put("end".into(), c.schedule.end.clone());
    put("pacing".into(), label(&c.pacing));
    put("lead_variables".into(), c.lead_variables.join(", "));
    if let Some(l) = c.daily_limit {
        put("daily_limit".into(), l.to_string());
    }
    if c.stop_on_reply {
        put("stop_on_reply".into(), "on".into());
    }
    values.insert("days".into(), c.schedule.days.clone());
    let path = format!("/campaigns/{id}/edit");
    Ok(ctx.layout(
        "Edit campaign",
        "/campaigns",
        html! {
            h1 { "Edit " (c.name) }
            @if c.steps.len() > FORM_STEPS { p.error { "This campaign has more steps than the form shows; edit it with the API." } }
            @else { (campaign_form(&ctx, &path, &values, None, None)) }
        },
    ))
}

/// A delay as the API writes it (`3d`, `12h`, `90s`).
fn humantime_short(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 604_800 == 0 => format!("{}w", s / 604_800),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub async fn edit(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let mut request = campaign_body(&form, false);
    if form.get("timezone").is_none() {
        // The form shows the stored schedule; an emptied time zone means "every day, all day, UTC".
        request["schedule"] = json!({"timezone": "UTC", "days": DAYS, "start": "00:00", "end": "23:59"});
    }
    match state.campaigns.update(&id, &serde_json::to_vec(&request).unwrap_or_default()).await {
        Ok(_) => Ok(ctx.see_other(&format!("/campaigns/{id}"), "Saved.")),
        Err(e) if !e.is_transient() => {
            let path = format!("/campaigns/{id}/edit");
            let form = campaign_form(&ctx, &path, &form_values(&form), None, Some(&e.to_string()));
            Ok(ctx.refused_form("Edit campaign", "/campaigns", form))
        }
        Err(e) => Err(e.into()),
    }
}

fn preview_view(p: &PreviewView) -> Markup {
    html! {
        h2 { "Preview" }
        @for lead in &p.previews {
            p { "For " strong { (lead.email) } }
            @for s in &lead.steps {
                article.preview data-step=(s.step) {
                    h3 { "Step " (s.step + 1) ": " (s.subject.clone().unwrap_or_default()) }
                    @if let Some(e) = &s.error { p.error role="alert" { "Cannot be sent to this lead: " (e) } }
                    details { summary { "Headers" }
                        table { tbody { @for h in &s.headers { tr { th scope="row" { (h.name) } td { (h.value) } } } } } }
                    @if let Some(t) = &s.text { pre.mail { (t) } }
                    @if let Some(h) = &s.html {
                        iframe.mail sandbox="" title={ "HTML of step " (s.step + 1) } srcdoc=(h) {}
                    }
                }
            }
        }
    }
}

pub async fn preview(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let request = match form.get("lead_id") {
        Some(lead) => json!({ "lead_id": lead }),
        None => json!({ "first": 1 }),
    };
    let p = state.previews.preview(&id, &serde_json::to_vec(&request).unwrap_or_default()).await?;
    page_with(&state, &ctx, &id, Some(preview_view(&p))).await
}

pub async fn test_send(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body)?;
    let mut request = json!({
        "to": form.get("to").unwrap_or_default(),
        "sender_account_id": form.get("sender_account_id").unwrap_or_default(),
    });
    if let Some(lead) = form.get("lead_id") {
        request["lead_id"] = lead.into();
    }
    let t = state
        .previews
        .test_send(&id, &serde_json::to_vec(&request).unwrap_or_default(), Duration::from_secs(20))
        .await?;
    let result = html! {
        h2 { "Test send to " (t.request.to) }
        p { "State: " (label(&t.state)) }
        ul { @for r in &t.results { li { "Step " (r.step + 1) ": " (label(&r.outcome)) " — " (r.detail) } } }
    };
    page_with(&state, &ctx, &id, Some(result)).await
}

fn report_view(r: &AddLeadsReport) -> Markup {
    html! {
        h2 { "Upload report" }
        p #report { (r.added) " added · " (r.duplicates) " duplicates · " (r.suppressed) " suppressed · "
            (r.invalid.len()) " invalid · " (r.skipped) " skipped (replied elsewhere)" }
        @if !r.invalid.is_empty() {
            table { caption { "Rows not added" }
                thead { tr { th scope="col" { "Line" } th scope="col" { "Email" } th scope="col" { "Why" } } }
                tbody { @for i in &r.invalid { tr { td { (i.row) } td { (i.email.clone().unwrap_or_default()) } td { (i.error) } } } } }
        }
        @if !r.elsewhere.is_empty() {
            table { caption { "Seen in other campaigns" }
                tbody { @for e in &r.elsewhere { tr { td { (e.email) } td { (e.state.as_str()) } td { (e.campaign_id) } } } } }
        }
    }
}

pub async fn add_leads(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, DashError> {
    let mut csv = None;
    let mut options = AddOptions::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| DashError::bad_request(format!("the upload could not be read: {e}")))?
    {
        match field.name() {
            Some("csv") => {
                csv = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| DashError::bad_request(format!("the file could not be read: {e}")))?,
                )
            }
            Some("skip_replied_elsewhere") => options.skip_replied_elsewhere = true,
            _ => {}
        }
    }
    let csv = csv.filter(|b| !b.is_empty()).ok_or_else(|| DashError::bad_request("choose a CSV file to upload"))?;
    let (leads, invalid) = coldsend_service::leads_csv::parse(&csv).map_err(DashError::bad_request)?;
    let report =
        state.campaigns.add_valid_leads(&id, leads, AddLeadsReport { invalid, ..Default::default() }, options).await?;
    page_with(&state, &ctx, &id, Some(report_view(&report))).await
}

pub async fn export_leads(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, DashError> {
    let csv = state.campaigns.leads_csv(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"leads-{id}.csv\"")),
        ],
        csv,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_api_body() {
        let form = FormData::parse(
            b"name=Q4&mailbox=a&mailbox=b&subject0=Hi&text0=Hello&subject1=&text1=Again&delay1=3d&subject2=&text2=&timezone=Europe%2FBerlin&days=mon&days=tue&start=09%3A00&end=17%3A00&daily_limit=x&stop_on_reply=on",
        )
        .expect("form");
        let body = campaign_body(&form, true);
        assert_eq!(body["sender_account_ids"], json!(["a", "b"]));
        assert_eq!(body["steps"], json!([{"subject": "Hi", "text": "Hello"}, {"text": "Again", "delay": "3d"}]));
        assert_eq!(body["schedule"]["days"], json!(["mon", "tue"]));
        // Not a number: passed on as typed, so the API's check names the field.
        assert_eq!(body["daily_limit"], "x");
        assert_eq!(body["stop_on_reply"], true);
        assert!(campaign_body(&form, false).get("sender_account_ids").is_none());
    }

    #[test]
    fn delays_are_written_as_the_api_reads_them() {
        assert_eq!(humantime_short(3 * 86_400), "3d");
        assert_eq!(humantime_short(12 * 3600), "12h");
        assert_eq!(humantime_short(1_209_600), "2w");
        assert_eq!(humantime_short(90), "90s");
    }
}
