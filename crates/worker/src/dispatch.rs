//! The `Dispatch` job: one mailbox's send loop.
//!
//! Each mailbox has at most one live chain, named by a token in Redis. A `Dispatch`
//! job holding the current token sends due emails one at a time — due follow-ups before
//! first steps — until the next send is further away than `max_inline_wait_secs`, then
//! schedules its successor for that moment and ends. Any other copy (a redelivered job, a
//! chain replaced by a poke) sees a stale token and ends at once.
//!
//! The chain is an efficiency, not the safety net: every send is claimed by the
//! ledger's `reserve` script, which alone enforces the daily cap, the gap and
//! at-most-once, whatever runs concurrently.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskBuilder, TaskSink, WorkerContext};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use coldsend_core::AccountStatus;
use coldsend_core::account::{AccountId, SenderAccount};
use coldsend_core::bounce::{BounceClass, BounceReason, SenderLimit};
use coldsend_core::campaign::Pacing;
use coldsend_core::campaign::{Campaign, CampaignId, CampaignState};
use coldsend_core::capacity::{self, SendingSettings};
use coldsend_core::jobs::Dispatch;
use coldsend_core::lead::{Lead, LeadState};
use coldsend_core::sealed::SealingKey;
use coldsend_core::send_key::SendKey;
use coldsend_core::settings::SendingConfig;
use coldsend_core::storage::accounts::AccountStore;
use coldsend_core::storage::campaigns::CampaignStore;
use coldsend_core::storage::inbox::{Inbox, InboxEvent, InboxKind};
use coldsend_core::storage::ledger::{
    Accepted, Claim, DueSend, Ledger, MarkedSent, Peek, Released, Reservation, ReserveArgs, SendPhase, SendState,
};
use coldsend_core::storage::mailboxes::{MailboxHealth, MailboxPause};
use coldsend_core::unsubscribe::UnsubscribeSigner;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use lettre::transport::smtp::commands::Rset;
use rand::Rng;
use tokio::sync::Mutex;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::lookahead::{self, Lookahead};
use crate::mailer::{self, Delivery};
use crate::metrics;
use crate::probe::{self, ProbeContext};
use crate::sent_copy;
use coldsend_service::outgoing::{self, Email, Unsendable, UnsubscribeLinks};

/// Sends one dispatch job makes at most before handing over to a successor.
const MAX_BURST: usize = 200;

pub struct DispatchState {
    pub accounts: AccountStore,
    pub campaigns: CampaignStore,
    pub ledger: Ledger,
    pub key: SealingKey,
    pub probe: ProbeContext,
    pub config: SendingConfig,
    pub queue: RedisStorage<Dispatch>,
    pub signer: UnsubscribeSigner,
    /// In-process pacing per mailbox (governor); Redis stays the authority.
    pub pacer: Option<DefaultKeyedRateLimiter<AccountId>>,
    /// Open SMTP sessions, one per mailbox (only its chain sends from it), with the
    /// server settings they were opened with (a PATCH may change them).
    pub sessions: Mutex<HashMap<AccountId, (coldsend_core::account::Endpoint, probe::SmtpSession)>>,
    /// Sender-side refusals and the sending pause they lead to.
    pub health: MailboxHealth,
    /// The master inbox, where a mailbox's refusals are told.
    pub inbox: Inbox,
    /// Passwords or OAuth2 access tokens.
    pub signin: crate::signin::SignIn,
    /// Failures to connect or sign in count toward DISCONNECTED.
    pub connection: crate::connection_health::ConnectionHealth,
    /// Hard bounces count toward the mailbox's bounce rate.
    pub bounces: crate::bounce_rate::BounceGuard,
}

/// Why a session to the account's server could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    SignIn(#[from] crate::signin::SignInError),
    #[error("{:?} {}: {}", .0.protocol, .0.code.as_str(), .0.message)]
    Refused(coldsend_core::ProbeFailure),
    #[error("connecting timed out")]
    Timeout,
}

impl From<crate::signin::OpenError> for SessionError {
    fn from(e: crate::signin::OpenError) -> Self {
        match e {
            crate::signin::OpenError::SignIn(e) => Self::SignIn(e),
            crate::signin::OpenError::Refused(f) => Self::Refused(f),
        }
    }
}

impl SessionError {
    /// As the failure a validation would have reported.
    fn to_failure(&self) -> coldsend_core::ProbeFailure {
        use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
        match self {
            SessionError::SignIn(e) => e.to_failure(Protocol::Smtp),
            SessionError::Refused(f) => f.clone(),
            SessionError::Timeout => ProbeFailure {
                protocol: Protocol::Smtp,
                code: ValidationCode::Timeout,
                message: "connecting and signing in timed out".into(),
            },
        }
    }

    /// Whether trying again later can help (the network, the server) or not until an
    /// operator acts (credentials refused, unopenable or gone).
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::SignIn(e) => e.is_transient(),
            SessionError::Refused(f) => f.code != coldsend_core::ValidationCode::AuthFailed,
            SessionError::Timeout => true,
        }
    }
}

impl DispatchState {
    /// A probe context whose steps are bounded by `limit`.
    pub fn connect_context(&self, limit: Duration) -> ProbeContext {
        ProbeContext { time_limit: limit, ..self.probe.clone() }
    }

    pub fn pacer_for(config: &SendingConfig) -> Option<DefaultKeyedRateLimiter<AccountId>> {
        let gap = Duration::from_secs(config.min_gap_secs);
        Quota::with_period(gap).map(|q| RateLimiter::keyed(q.allow_burst(NonZeroU32::MIN)))
    }
}

/// What the loop decided to do next.
enum Next {
    /// Send again now.
    Continue,
    /// Wait (in-process if short, else a scheduled successor job).
    WaitUntil(DateTime<Utc>),
    /// The chain is superseded or the mailbox can no longer send: stop.
    End,
    /// Something changed (a campaign paused or capped): reload the view and go on.
    Refresh,
}

pub async fn dispatch(
    job: Dispatch,
    state: Data<Arc<DispatchState>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let span = info_span!("dispatch", account_id = %job.account_id, worker = %worker.name());
    let started = std::time::Instant::now();
    let result = run(job, &state, &worker).instrument(span).await;
    metrics::job("dispatch", result.is_ok(), started.elapsed().as_secs_f64());
    result
}

fn lease_ms(state: &DispatchState, wait: Duration) -> u64 {
    // Long enough to cover the wait plus a stalled send; a dead chain's lease runs out
    // and the sweep starts a new one.
    (wait + Duration::from_secs(state.config.stale_send_secs * 2)).as_millis() as u64
}

async fn run(job: Dispatch, state: &DispatchState, worker: &WorkerContext) -> Result<(), BoxDynError> {
    let acct = job.account_id;
    if !state.ledger.keep_chain(&acct, &job.token, lease_ms(state, Duration::ZERO)).await? {
        chain_superseded();
        return Ok(());
    }
    let mut sent = 0usize;
    let mut renewed = std::time::Instant::now();
    let mut view = None;
    // The next due sends and their leads, as the last recorded send's script found them.
    let mut lookahead = Lookahead::default();
    let mut records = HeldRecords::default();
    // The email composed for the next send, whose envelope went out behind the last body.
    let mut ahead: Option<Ahead> = None;
    loop {
        // Renew the lease now and then (not per send: each renewal is a round trip).
        if renewed.elapsed() > Duration::from_secs(state.config.stale_send_secs / 2) {
            if !state.ledger.keep_chain(&acct, &job.token, lease_ms(state, Duration::ZERO)).await? {
                chain_superseded();
                records.write_all(state).await?;
                return Ok(());
            }
            renewed = std::time::Instant::now();
        }
        if worker.is_shutting_down() {
            // Hand over at once: the successor runs on whichever replica is alive.
            records.write_all(state).await?;
            return schedule(state, &job, Utc::now()).await;
        }
        records.carried = records.held.take();
        // No envelope goes out ahead of a send this chain will not make (its burst ends).
        let pipeline = (&mut ahead, sent + 1 < MAX_BURST);
        let stepped = step(state, &job, &mut view, &mut lookahead, &mut records, pipeline).await;
        // A record this step's claim did not carry goes out alone now; so does one this
        // step held when no claim follows at once.
        let written = HeldRecords::write(state, &mut records.carried).await;
        let next = match (stepped, written) {
            (Ok(next), Ok(())) => next,
            (Err(e), _) | (_, Err(e)) => {
                let _ = records.write_all(state).await;
                return Err(e);
            }
        };
        if !matches!(next, Next::Continue) {
            records.write_all(state).await?;
        }
        match next {
            Next::Refresh => {
                view = None;
                lookahead.clear();
            }
            Next::End => {
                state.sessions.lock().await.remove(&acct);
                return Ok(());
            }
            Next::Continue => {
                sent += 1;
                if sent >= MAX_BURST {
                    records.write_all(state).await?;
                    return schedule(state, &job, Utc::now()).await;
                }
            }
            Next::WaitUntil(at) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                if wait > Duration::from_secs(state.config.max_inline_wait_secs) {
                    // Idle for a while: close the session rather than hold it open.
                    if let Some((_, s)) = state.sessions.lock().await.remove(&acct) {
                        close(s).await;
                    }
                    return schedule(state, &job, at).await;
                }
                // Sleep in slices so a shutdown hands the chain over without waiting.
                let until = tokio::time::Instant::now() + wait;
                while tokio::time::Instant::now() < until {
                    if worker.is_shutting_down() {
                        return schedule(state, &job, at).await;
                    }
                    tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(250))).await;
                }
                if !state.ledger.keep_chain(&acct, &job.token, lease_ms(state, Duration::ZERO)).await? {
                    chain_superseded();
                    return Ok(());
                }
                renewed = std::time::Instant::now();
            }
        }
    }
}

/// Ends a session politely, unless the server waits for a body (an envelope went out
/// ahead): there QUIT would be read as the message's first line, and dropping the
/// connection aborts the transaction (RFC 5321 4.1.1.4).
async fn close(mut session: probe::SmtpSession) {
    if session.envelope_ahead.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(5), session.conn.quit()).await;
    }
}

/// Said wherever a chain finds another holding its mailbox (a wake, the sweep or a
/// successor took over) and ends: the quiet way a chain stops.
fn chain_superseded() {
    info!("another dispatch chain holds the mailbox; this one ends");
}

/// Pushes the chain's successor to run at `at` and extends the lease to cover the wait.
async fn schedule(state: &DispatchState, job: &Dispatch, at: DateTime<Utc>) -> Result<(), BoxDynError> {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    if !state.ledger.keep_chain(&job.account_id, &job.token, lease_ms(state, wait)).await? {
        chain_superseded();
        return Ok(());
    }
    let task = TaskBuilder::new(job.clone()).run_after(wait).build();
    state.queue.clone().push_task(task).await?;
    // A wait (not a burst's hand-over) is rare and says why a mailbox is quiet.
    if wait >= Duration::from_secs(1) {
        info!(until = %at, "the mailbox waits; its next dispatch is scheduled");
    }
    Ok(())
}

/// Accepted sends whose records ride with the next claim: while a chain sends back to back
/// (its lookahead already names the next send) the `sent` script of one email and the
/// `reserve` script of the next go out as one call, one round trip per email fewer. A
/// record waits at most one step: that step's claim carries it, or the loop writes it
/// alone as soon as the step is over (or before the chain waits, hands over or ends).
#[derive(Default)]
struct HeldRecords {
    /// Accepted in the previous step: goes out with this step's claim.
    carried: Option<Accepted>,
    /// Accepted in this step: goes out with the next step's claim.
    held: Option<Accepted>,
}

impl HeldRecords {
    /// Writes `record` alone, if there is one.
    async fn write(state: &DispatchState, record: &mut Option<Accepted>) -> Result<(), BoxDynError> {
        let Some(a) = record.take() else { return Ok(()) };
        let marked = state.ledger.record_accepted(&a, None).await;
        match marked {
            Ok(m) => {
                warn_unless_recorded(&a, m.outcome);
                Ok(())
            }
            Err(e) => {
                *record = Some(a);
                Err(e.into())
            }
        }
    }

    async fn write_all(&mut self, state: &DispatchState) -> Result<(), BoxDynError> {
        Self::write(state, &mut self.carried).await?;
        Self::write(state, &mut self.held).await
    }
}

fn warn_unless_recorded(a: &Accepted, outcome: MarkedSent) {
    if outcome != MarkedSent::Recorded {
        warn!(campaign_id = %a.key.campaign, lead_id = %a.key.lead, step = a.key.step, outcome = ?outcome,
            "accepted, but the send record was not this attempt's to write");
    }
}

/// What a mailbox's loop needs to know about the account and its campaigns. Cached for
/// a moment to spare round trips; staleness is harmless because `reserve` re-checks
/// everything that matters (campaign state, cap, gap) atomically.
struct MailboxView {
    account: SenderAccount,
    settings: SendingSettings,
    running: Vec<Campaign>,
    /// Sending paused after sender-side refusals, until then.
    paused_until: Option<DateTime<Utc>>,
    loaded: std::time::Instant,
}

const VIEW_TTL: Duration = Duration::from_secs(2);
/// Longest wait before a send retries a server it could not reach.
const MAX_UNREACHABLE_RETRY_MS: i64 = 5 * 60 * 1000;
/// A send that could not sign in (token endpoint down) waits this long.
const SIGN_IN_RETRY: Duration = Duration::from_secs(30);

async fn load_view(state: &DispatchState, acct: &AccountId) -> Result<Option<MailboxView>, BoxDynError> {
    let Some(row) = state.accounts.get(acct).await? else { return Ok(None) };
    if row.status != AccountStatus::Active {
        info!(status = row.status.as_str(), "account not ACTIVE; its sends wait");
        return Ok(None);
    }
    let settings = state.accounts.sending_settings(&row.account, &state.config.default_timezone).await?;
    let mut running = Vec::new();
    for cid in state.campaigns.account_campaigns(acct).await? {
        if let Some(c) = state.campaigns.get(&cid).await?
            && c.state == CampaignState::Running
        {
            running.push(c.campaign);
        }
    }
    let paused_until = state.health.pause(acct).await?.and_then(|p| DateTime::<Utc>::from_timestamp_millis(p.until_ms));
    Ok(Some(MailboxView { account: row.account, settings, running, paused_until, loaded: std::time::Instant::now() }))
}

/// One decision: find the most urgent due email and try to send it. `pipeline` holds the
/// email composed for it in the last step, if any, and whether the next one may be
/// composed now to have its envelope written behind this one's body.
async fn step(
    state: &DispatchState,
    job: &Dispatch,
    cache: &mut Option<MailboxView>,
    lookahead: &mut Lookahead,
    records: &mut HeldRecords,
    (ahead, may_pipeline): (&mut Option<Ahead>, bool),
) -> Result<Next, BoxDynError> {
    let acct = &job.account_id;
    if cache.as_ref().is_none_or(|v| v.loaded.elapsed() > VIEW_TTL) {
        *cache = load_view(state, acct).await?;
    }
    let Some(view) = cache.as_ref() else {
        state.ledger.keep_chain(acct, &job.token, 0).await?;
        return Ok(Next::End);
    };
    if view.running.is_empty() {
        // Nothing to do until a campaign starts or resumes, which wakes the mailbox.
        info!("no running campaign sends from the mailbox; the chain ends");
        state.ledger.keep_chain(acct, &job.token, 0).await?;
        return Ok(Next::End);
    }
    let now = Utc::now();
    if let Some(until) = view.paused_until.filter(|u| *u > now) {
        // Paused after sender-side refusals: nothing goes out until it ends (or an operator
        // resumes the mailbox, which wakes this chain).
        info!(%until, "the mailbox's sending is paused; the chain waits");
        return Ok(Next::WaitUntil(until));
    }
    let idle = now + chrono::Duration::seconds(state.config.idle_poll_secs as i64);
    let cap = capacity::effective_cap(&view.account, &view.settings, &state.config.warmup, now);
    let cap_key = state.ledger.keys().cap(acct, capacity::local_date(&view.settings, now));

    // Campaigns this mailbox may send for right now.
    let mut eligible: Vec<&Campaign> = Vec::new();
    let mut opens: Vec<DateTime<Utc>> = Vec::new();
    for c in &view.running {
        // With lead time zones the window is judged per lead, once its email is picked.
        if !c.lead_timezones && !c.schedule.is_open(now) {
            opens.push(c.schedule.next_open(now));
            continue;
        }
        if let Some((key, limit)) = campaign_cap(state, c, now)
            && state.ledger.used(&key).await? >= limit
        {
            continue;
        }
        eligible.push(c);
    }
    let ids: Vec<_> = eligible.iter().map(|c| c.id).collect();
    // The last record's script already picked the next sends as `next_due` does, among
    // the same campaigns: take the next one without a read of its own.
    let peek = lookahead.next(&ids, now.timestamp_millis());
    let (due, known_lead) = match peek {
        Some(p) => (Some(p.due), p.lead),
        None => (state.ledger.next_due(acct, &ids, now.timestamp_millis()).await?, None),
    };
    let Some(due) = due else {
        let mut wake = opens.into_iter().min().unwrap_or(idle).min(idle);
        if let Some(ms) = state.ledger.earliest_due(acct, &ids).await?
            && let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms)
        {
            wake = wake.min(t.max(now));
        }
        return Ok(Next::WaitUntil(wake.max(now + chrono::Duration::milliseconds(200))));
    };
    let Some(campaign) = eligible.iter().find(|c| c.id == due.key.campaign).copied() else {
        return Ok(Next::WaitUntil(idle));
    };

    if let Some(pacer) = &state.pacer
        && let Err(not_until) = pacer.check_key(acct)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        return Ok(Next::WaitUntil(now + chrono::Duration::from_std(wait).unwrap_or_default()));
    }
    let composed = ahead.take().filter(|a| a.key == due.key).map(|a| a.email);
    let next_ahead = match may_pipeline {
        true => compose_ahead(state, view, &eligible, lookahead, &ids, now),
        false => None,
    };
    let from = Sender { account: &view.account, settings: &view.settings, campaign, cap, cap_key };
    let emails = Emails { this: composed, ahead: next_ahead, composed_ahead: ahead };
    let next = send_one(state, job, from, &due, known_lead, now, emails, (&ids, lookahead), records).await?;
    if matches!(next, Next::Refresh) {
        *cache = None;
        return Ok(Next::Continue);
    }
    Ok(next)
}

/// An email composed one step early, for the send after the current one.
struct Ahead {
    key: SendKey,
    email: Email,
}

/// The emails one send deals with: its own if the last step composed it, the next one's
/// to write its envelope behind this body, and where that one is kept for its own step.
struct Emails<'a> {
    this: Option<Email>,
    ahead: Option<Ahead>,
    composed_ahead: &'a mut Option<Ahead>,
}

/// The email after the current one, composed now so that its envelope can go out behind
/// the current body: only while the mailbox sends back to back (a paced send's claim would
/// wait), and only for the send the lookahead names next with its lead.
fn compose_ahead(
    state: &DispatchState,
    view: &MailboxView,
    eligible: &[&Campaign],
    lookahead: &Lookahead,
    among: &[CampaignId],
    now: DateTime<Utc>,
) -> Option<Ahead> {
    let next = lookahead.peek(among, now.timestamp_millis())?;
    let lead = next.lead.as_ref()?;
    let campaign = eligible.iter().find(|c| c.id == next.due.key.campaign)?;
    if lookahead_size(&state.config, campaign) == 1
        || (campaign.lead_timezones && !lead_schedule(campaign, lead).is_open(now))
    {
        return None;
    }
    let email = compose_for(state, &view.account, campaign, &next.due.key, lead).ok()?;
    Some(Ahead { key: next.due.key.clone(), email })
}

fn campaign_cap(state: &DispatchState, c: &Campaign, now: DateTime<Utc>) -> Option<(String, u32)> {
    let limit = c.daily_limit?;
    Some((state.ledger.keys().campaign_day(&c.id, now.with_timezone(&c.schedule.timezone()).date_naive()), limit))
}

/// How many due sends a record peeks at: a batch when the mailbox sends back to back,
/// one when its sends are paced apart (the rest would be stale before their turn).
fn lookahead_size(config: &SendingConfig, campaign: &Campaign) -> usize {
    let back_to_back = config.min_gap_secs == 0
        && config.jitter_secs == 0
        && campaign.pacing.unwrap_or(config.pacing) != Pacing::Spread;
    if back_to_back { lookahead::BATCH } else { 1 }
}

fn gap_ms(config: &SendingConfig) -> i64 {
    let jitter = if config.jitter_secs > 0 { rand::thread_rng().gen_range(0..=config.jitter_secs * 1000) } else { 0 };
    (config.min_gap_secs * 1000 + jitter) as i64
}

/// The campaign's schedule as it applies to `lead`: read in the lead's own time zone
/// when the campaign sends in lead time zones and the lead has one.
fn lead_schedule(campaign: &Campaign, lead: &Lead) -> coldsend_core::schedule::Schedule {
    match lead.timezone().filter(|_| campaign.lead_timezones) {
        Some(tz) => campaign.schedule.in_timezone(tz),
        None => campaign.schedule.clone(),
    }
}

/// Spread pacing's window end and jitter (±20 %), for a campaign that spreads its sends.
fn spread(
    config: &SendingConfig,
    campaign: &Campaign,
    schedule: &coldsend_core::schedule::Schedule,
    now: DateTime<Utc>,
) -> Option<(i64, u32)> {
    if campaign.pacing.unwrap_or(config.pacing) != Pacing::Spread {
        return None;
    }
    let end = schedule.window_end(now)?;
    Some((end.timestamp_millis(), rand::thread_rng().gen_range(800..=1200)))
}

/// What one send needs to know about where it goes from.
struct Sender<'a> {
    account: &'a SenderAccount,
    settings: &'a SendingSettings,
    campaign: &'a Campaign,
    /// The mailbox's effective cap today and the counter it is taken from.
    cap: u32,
    cap_key: String,
}

/// Sends the due email `due` if the ledger grants the claim: render, compose, claim,
/// deliver, record. `known_lead` is the lead when the last record already read it;
/// `emails` has this send's email if it was composed a step early and the next one's,
/// whose envelope goes out behind this body; `peek` names the campaigns the mailbox may
/// send for and receives the next due send among them that this one's record finds;
/// `records` holds what rides with the claim.
///
/// Where the last body carried this send's envelope, its answers are read first and the
/// claim is taken after them, in `Data` since the body follows at once: one SMTP round
/// trip and (on a custom server) the DATA mark fewer. Until the claim the server holds
/// an open transaction and nothing else: a refused claim or a crash drops the session,
/// which aborts it.
#[allow(clippy::too_many_arguments)]
async fn send_one(
    state: &DispatchState,
    job: &Dispatch,
    from: Sender<'_>,
    due: &DueSend,
    known_lead: Option<Lead>,
    now: DateTime<Utc>,
    emails: Emails<'_>,
    peek: (&[CampaignId], &mut Lookahead),
    records: &mut HeldRecords,
) -> Result<Next, BoxDynError> {
    let key = &due.key;
    let span = info_span!("send", campaign_id = %key.campaign, lead_id = %key.lead, step = key.step);
    async move {
        let acct = &from.account.id;
        let lead = match known_lead {
            Some(lead) => Some(lead),
            None => state.campaigns.lead(&key.campaign, &key.lead).await?,
        };
        let Some(lead) = lead else {
            state.ledger.cancel(key, acct, None, "lead no longer exists").await?;
            return Ok(Next::Continue);
        };
        // Sending in the lead's own time zone: outside its window the step waits for it.
        if from.campaign.lead_timezones {
            let schedule = lead_schedule(from.campaign, &lead);
            if !schedule.is_open(now) {
                let opens = schedule.next_open(now);
                state.ledger.defer(key, acct, opens.timestamp_millis()).await?;
                debug!(opens = %opens, "outside the lead's window; the step waits for it");
                return Ok(Next::Continue);
            }
        }
        // Render before claiming: a lead that cannot be personalised is skipped, never sent.
        let composed = match emails.this.map_or_else(|| compose_for(state, from.account, from.campaign, key, &lead), Ok)
        {
            Ok(c) => c,
            // The campaign was edited down to fewer steps than this follow-up: the lead has
            // had every step there is.
            Err(Unsendable::NoSuchStep(step)) if step > 0 => {
                info!(step, "the campaign no longer has this step; the lead is complete");
                state
                    .ledger
                    .cancel(key, acct, Some(LeadState::Completed), "the campaign's later steps were removed")
                    .await?;
                return Ok(Next::Continue);
            }
            Err(e) => {
                warn!(error = %e, "lead skipped: the email cannot be made");
                state.ledger.cancel(key, acct, Some(LeadState::Failed), &e.to_string()).await?;
                metrics::send_outcome(acct, "skipped");
                return Ok(Next::Continue);
            }
        };
        // The server's refusal of this send's envelope, when that went out ahead.
        let mut refused = None;
        let mut waiting = match session_waiting_for(state, from.account, key).await {
            Some(mut session) => match answers_ahead(state, &mut session, records).await? {
                mailer::AheadAnswers::Ready => Some(session),
                mailer::AheadAnswers::Refused { delivery, reset } => {
                    info!(answer = ?delivery, "the envelope written ahead was refused; that answer is the send's");
                    if reset {
                        state.sessions.lock().await.insert(from.account.id, (from.account.smtp.clone(), session));
                    }
                    refused = Some(delivery);
                    None
                }
                mailer::AheadAnswers::Broken => None,
            },
            None => None,
        };
        let phase = match waiting.is_some() || from.settings.sent_folder_is_authoritative(from.account.inbox_type) {
            true => SendPhase::Data,
            false => SendPhase::Pre,
        };
        let claim = match claim(state, job, &from, key, &lead, now, phase, &mut records.carried).await? {
            Ok(claim) => claim,
            // A session waiting for this body is dropped here, which aborts its transaction.
            Err(next) => return Ok(next),
        };
        let delivery = match refused {
            // Recorded under the claim as if it had come the ordinary way: the same
            // outcome, and the recipient is not asked a second time.
            Some(refusal) => {
                *emails.composed_ahead = emails.ahead;
                refusal
            }
            None => {
                // The mailbox's last slot today: the next claim would be refused, so
                // nothing is written ahead of it.
                let ahead = emails.ahead.filter(|_| claim.used < from.cap);
                let waiting = waiting.take();
                let delivery = deliver(state, from.account, &composed.mail, key, &claim, now, waiting, ahead.as_ref());
                let delivery = delivery.await;
                *emails.composed_ahead = ahead;
                delivery
            }
        };
        record(state, &from, due, &claim, &lead, &composed, delivery, peek, &mut records.held).await
    }
    .instrument(span)
    .await
}

/// The email for a due send, composed as every send is (threading, unsubscribe links).
fn compose_for(
    state: &DispatchState,
    account: &SenderAccount,
    campaign: &Campaign,
    key: &SendKey,
    lead: &Lead,
) -> Result<Email, Unsendable> {
    let links = UnsubscribeLinks { signer: &state.signer, public_base_url: &state.config.public_base_url };
    outgoing::email(campaign, account, key, lead, &links)
}

/// Asks the ledger for the send: cap, gap, chain and at-most-once, atomically, in the same
/// call as the `carried` record if there is one. `Err` is what the loop does instead when
/// the claim is refused. `phase` is `Data` where the body may follow without a mark: the
/// Sent folder settles a crash's outcome, or the server already waits for the body.
#[allow(clippy::too_many_arguments)]
async fn claim(
    state: &DispatchState,
    job: &Dispatch,
    from: &Sender<'_>,
    key: &SendKey,
    lead: &Lead,
    now: DateTime<Utc>,
    phase: SendPhase,
    carried: &mut Option<Accepted>,
) -> Result<Result<Claim, Next>, BoxDynError> {
    let acct = &from.account.id;
    let args = ReserveArgs {
        key,
        account: acct,
        email: lead.email.as_str(),
        chain_token: &job.token,
        now_ms: now.timestamp_millis(),
        cap: from.cap,
        cap_key: from.cap_key.clone(),
        campaign_cap: campaign_cap(state, from.campaign, now),
        gap_ms: gap_ms(&state.config),
        spread: spread(&state.config, from.campaign, &lead_schedule(from.campaign, lead), now),
        phase,
    };
    let reservation = match carried.take() {
        None => state.ledger.reserve(&args).await?,
        Some(sent) => match state.ledger.mark_sent_and_reserve(&sent, &args).await {
            Ok((marked, reservation)) => {
                warn_unless_recorded(&sent, marked.outcome);
                reservation
            }
            Err(e) => {
                // Not written: the loop tries it alone before giving up the chain.
                *carried = Some(sent);
                return Err(e.into());
            }
        },
    };
    let next = match reservation {
        Reservation::Claimed(claim) => {
            metrics::cap(acct, claim.used, from.cap);
            debug!(used = claim.used, cap = from.cap, "claimed");
            return Ok(Ok(claim));
        }
        Reservation::StaleChain => {
            chain_superseded();
            Next::End
        }
        Reservation::CampaignNotRunning | Reservation::CampaignCapReached => Next::Refresh,
        Reservation::LeadInactive(Some(LeadState::Paused)) => {
            // Out of office or a colleague replied: the step waits for the resume.
            state.ledger.defer(key, acct, (now + chrono::Duration::hours(1)).timestamp_millis()).await?;
            Next::Continue
        }
        Reservation::LeadInactive(_) | Reservation::Suppressed => {
            state.ledger.cancel(key, acct, None, "lead stopped").await?;
            Next::Continue
        }
        // Claimed by a worker that may have died: the sweep resolves it.
        Reservation::NotQueued(Some(SendState::Sending)) => {
            info!("the next send is still claimed by an earlier attempt; waiting for the sweep");
            Next::WaitUntil(now + chrono::Duration::seconds(state.config.stale_send_secs as i64 / 2 + 1))
        }
        Reservation::NotQueued(_) => {
            state.ledger.cancel(key, acct, None, "already final").await?;
            Next::Continue
        }
        Reservation::CapReached => Next::WaitUntil(capacity::next_local_midnight(from.settings, now)),
        Reservation::Gap(ms) => Next::WaitUntil(DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(now)),
    };
    Ok(Err(next))
}

/// Records what the server said, under the claim; `Refresh` when the mailbox's state
/// changed (a pause began) so the loop must look again before the next send. A recorded
/// send also peeks at the next due ones (into `lookahead`) when it has none left.
#[allow(clippy::too_many_arguments)]
async fn record(
    state: &DispatchState,
    from: &Sender<'_>,
    due: &DueSend,
    claim: &Claim,
    lead: &Lead,
    composed: &Email,
    delivery: Delivery,
    (among, lookahead): (&[CampaignId], &mut Lookahead),
    held: &mut Option<Accepted>,
) -> Result<Next, BoxDynError> {
    let (key, acct) = (&due.key, &from.account.id);
    let now_ms = Utc::now().timestamp_millis();
    match delivery {
        Delivery::Accepted(reply) => {
            let next_due = from.campaign.steps.get(key.step + 1).map(|s| now_ms + s.delay.as_millis() as i64);
            let peek = lookahead.wants_more().then(|| Peek {
                due_by_ms: now_ms,
                campaigns: among,
                count: lookahead_size(&state.config, from.campaign),
            });
            let accepted = Accepted {
                key: key.clone(),
                account: *acct,
                attempt: claim.attempt.clone(),
                message_id: composed.message_id.clone(),
                now_ms,
                next_due_ms: next_due,
                recipient: lead.email.to_string(),
            };
            match peek {
                // The lookahead names the next send: this record goes out with its claim.
                // (Not when a copy is filed in Sent first: a confirmation from there must
                // find the send recorded.)
                None if !from.settings.append_to_sent => *held = Some(accepted),
                _ => {
                    let marked = state.ledger.record_accepted(&accepted, peek).await?;
                    warn_unless_recorded(&accepted, marked.outcome);
                    if peek.is_some() {
                        lookahead.fill(marked.next);
                    }
                }
            }
            info!(message_id = %composed.message_id, reply = %reply, "sent");
            metrics::send_outcome(acct, "sent");
            if from.settings.append_to_sent {
                sent_copy::append(state, from.account, &composed.mail.bytes).await;
            }
        }
        Delivery::Transient(e) => {
            let attempts = state.ledger.send_record(key).await?.map_or(0, |r| r.attempts);
            let backoff = backoff_ms(&state.config, attempts);
            let outcome = state
                .ledger
                .release(key, acct, due.followup, claim, now_ms + backoff, state.config.max_attempts, &e)
                .await?;
            warn!(error = %e, outcome = ?outcome, retry_in_ms = backoff, "temporary failure");
            metrics::send_outcome(acct, if outcome == Released::Failed { "failed" } else { "retry" });
        }
        Delivery::Permanent { message, recipient } => {
            let bounced = recipient.then(|| lead.email.as_str());
            state.ledger.fail(key, acct, claim, &message, bounced).await?;
            warn!(error = %message, recipient, "permanent failure; not retried");
            metrics::send_outcome(acct, if recipient { "bounced" } else { "failed" });
            if recipient && state.bounces.hard_bounce(from.account, key).await? {
                return Ok(Next::Refresh);
            }
        }
        Delivery::SignInNeeded { message, transient } => {
            // The step is kept with no attempt counted; the chain waits for the token
            // endpoint, or ends (the account is NEEDS_REAUTH) until a new sign-in.
            let retry_at = now_ms + SIGN_IN_RETRY.as_millis() as i64;
            state.ledger.release(key, acct, due.followup, claim, retry_at, u32::MAX, &message).await?;
            warn!(error = %message, "cannot sign in to the mailbox; the lead is kept");
            metrics::send_outcome(acct, "sign_in_needed");
            return Ok(if transient {
                Next::WaitUntil(Utc::now() + chrono::Duration::from_std(SIGN_IN_RETRY).unwrap_or_default())
            } else {
                Next::Refresh
            });
        }
        Delivery::Unreachable(failure) => {
            // The step is kept with no attempt counted; after enough failures in a row the
            // mailbox is DISCONNECTED and this chain ends until a validation passes.
            let failures = state.ledger.send_record(key).await?.map_or(0, |r| r.attempts);
            let retry_at = now_ms + backoff_ms(&state.config, failures).min(MAX_UNREACHABLE_RETRY_MS);
            let message = format!("{:?} {}: {}", failure.protocol, failure.code.as_str(), failure.message);
            state.ledger.release(key, acct, due.followup, claim, retry_at, u32::MAX, &message).await?;
            metrics::send_outcome(acct, "unreachable");
            if state.connection.failed(from.account, failure).await? {
                return Ok(Next::Refresh);
            }
        }
        Delivery::SenderRefused { message, reason, limit } => {
            if sender_refused(state, from, due, claim, lead, &message, reason, limit).await? {
                return Ok(Next::Refresh);
            }
        }
        Delivery::Unknown(e) => {
            state.ledger.uncertain(key, acct, claim, &e).await?;
            warn!(error = %e, "outcome unknown; marked UNCERTAIN, not resent");
            metrics::send_outcome(acct, "uncertain");
        }
        Delivery::ClaimLost => warn!("claim lost before DATA; not sent"),
    }
    Ok(Next::Continue)
}

/// Our sender was refused (blocked, spam, DMARC, policy) or hit its provider's quota: the
/// lead is not at fault, so its step waits (never failed, never suppressed); the refusal is
/// counted against the mailbox, which pauses after `sending.sender_refusal_limit` of them
/// (at once, until its next day, for a daily quota); the master inbox is told. Returns
/// whether the mailbox is now paused.
#[allow(clippy::too_many_arguments)]
async fn sender_refused(
    state: &DispatchState,
    from: &Sender<'_>,
    due: &DueSend,
    claim: &Claim,
    lead: &Lead,
    message: &str,
    reason: BounceReason,
    limit: Option<SenderLimit>,
) -> Result<bool, BoxDynError> {
    let (key, acct, cfg) = (&due.key, &from.account.id, &state.config);
    let now = Utc::now();
    let pause_until = match limit {
        Some(SenderLimit::Daily) => capacity::next_local_midnight(from.settings, now),
        Some(SenderLimit::Rate) => now + chrono::Duration::minutes(15),
        None => now + chrono::Duration::seconds(cfg.sender_refusal_pause_secs as i64),
    };
    let retry_at = match limit {
        Some(_) => pause_until,
        None => now + chrono::Duration::seconds(cfg.sender_refusal_retry_secs as i64),
    };
    // The step is kept: no attempt limit applies to refusals that are not the lead's.
    state.ledger.release(key, acct, due.followup, claim, retry_at.timestamp_millis(), u32::MAX, message).await?;
    let pause = MailboxPause {
        until_ms: pause_until.timestamp_millis(),
        reason: reason.as_str().to_owned(),
        message: message.to_owned(),
    };
    let refusals = state
        .health
        .refused(
            acct,
            now.timestamp_millis(),
            cfg.sender_refusal_window_secs * 1000,
            cfg.sender_refusal_limit,
            &pause,
            limit.is_some(),
        )
        .await?;
    warn!(reason = reason.as_str(), error = %message, recent = refusals.recent, paused_until_ms = ?refusals.paused_until_ms,
        "sender-side refusal: the lead is kept, the step waits");
    metrics::send_outcome(acct, "sender_refused");
    state
        .inbox
        .record(&InboxEvent {
            id: String::new(),
            account_id: acct.to_string(),
            campaign_id: Some(key.campaign.to_string()),
            lead_id: Some(key.lead.to_string()),
            kind: InboxKind::SenderRefused,
            from: lead.email.to_string(),
            subject: match refusals.paused_until_ms {
                Some(_) => format!("{}: mailbox paused", reason.as_str()),
                None => reason.as_str().to_owned(),
            },
            snippet: message.chars().take(200).collect(),
            received_at: now.to_rfc3339(),
            bounce: Some(coldsend_core::storage::inbox::BounceFacts {
                recipient: lead.email.to_string(),
                reason,
                class: BounceClass::SenderSide,
                status: None,
            }),
            why: format!("the recipient's server refused our mailbox during the send ({})", reason.as_str()),
            returns_on: None,
        })
        .await?;
    Ok(refusals.paused_until_ms.is_some())
}

fn backoff_ms(config: &SendingConfig, attempts: u32) -> i64 {
    let base = config.retry_base_secs.max(1) * 1000;
    let exp = base.saturating_mul(1u64 << attempts.min(10));
    let capped = exp.min(6 * 3600 * 1000);
    (capped + rand::thread_rng().gen_range(0..=capped / 4)) as i64
}

/// Sends over the mailbox's open session (opening one if needed). A reused session
/// that broke before DATA is replaced once. `claimed_at` is the time the claim was
/// asked for (the sweep's clock for it). `waiting` is a session whose server already
/// waits for this body; `ahead` is the next send, whose envelope goes out behind it.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    state: &DispatchState,
    account: &SenderAccount,
    composed: &mailer::Composed,
    key: &SendKey,
    claim: &Claim,
    claimed_at: DateTime<Utc>,
    waiting: Option<probe::SmtpSession>,
    ahead: Option<&Ahead>,
) -> Delivery {
    let step_timeout = Duration::from_secs(state.config.smtp_timeout_secs);
    let ledger = &state.ledger;
    let mark = || async move {
        match data_mark(claim, claimed_at, Utc::now(), state.config.stale_send_secs) {
            DataMark::None => true,
            DataMark::Unchecked => ledger.mark_data_unchecked(key).await.unwrap_or(false),
            DataMark::Checked => ledger.mark_data_phase(key, &claim.attempt).await.unwrap_or(false),
        }
    };
    let ahead = || ahead.map(|a| mailer::EnvelopeAhead { key: &a.key, mail: &a.email.mail });
    if let Some(mut conn) = waiting {
        let outcome = match mark().await {
            true => mailer::body(&mut conn, composed, step_timeout, ahead()).await,
            false => Delivery::ClaimLost,
        };
        return keep_session(state, account, conn, outcome, step_timeout).await;
    }
    for fresh in [false, true] {
        let cached = match fresh {
            true => None,
            // A session opened with other settings (the account was edited) is not reused,
            // nor one whose server waits for another send's body.
            false => state
                .sessions
                .lock()
                .await
                .remove(&account.id)
                .filter(|(e, c)| *e == account.smtp && c.envelope_ahead.is_none())
                .map(|(_, c)| c),
        };
        let reused = cached.is_some();
        let mut conn = match cached {
            Some(c) => c,
            None => match open(state, account, step_timeout).await {
                Ok(c) => c,
                // An OAuth2 account without a usable grant (refused: NEEDS_REAUTH now; or
                // its token endpoint down): nobody's fault but the sign-in's.
                Err(SessionError::SignIn(e)) if matches!(e, crate::signin::SignInError::Access(_)) => {
                    return Delivery::SignInNeeded { message: e.to_string(), transient: e.is_transient() };
                }
                // Unreachable, or credentials refused, unopenable or gone: the mailbox's
                // problem, never the lead's.
                Err(e) => return Delivery::Unreachable(e.to_failure()),
            },
        };
        let outcome = mailer::deliver(&mut conn, composed, step_timeout, mark, ahead()).await;
        match outcome {
            Delivery::Transient(_) if reused => continue,
            other => return keep_session(state, account, conn, other, step_timeout).await,
        }
    }
    Delivery::Transient("could not send over a fresh session".into())
}

/// Keeps the session for the mailbox's next send where `outcome` leaves it usable.
async fn keep_session(
    state: &DispatchState,
    account: &SenderAccount,
    mut conn: probe::SmtpSession,
    outcome: Delivery,
    step_timeout: Duration,
) -> Delivery {
    let usable = match &outcome {
        Delivery::Accepted(_) => true,
        // Refused after the body: that transaction is over, and the envelope written behind
        // it must not be cut into.
        Delivery::Permanent { .. } if conn.envelope_ahead.is_some() => true,
        // A refusal leaves the transaction open: reset it before the session is reused.
        Delivery::Permanent { .. } => {
            matches!(tokio::time::timeout(step_timeout, conn.conn.command(Rset)).await, Ok(Ok(_)))
        }
        _ => false,
    };
    if usable {
        state.sessions.lock().await.insert(account.id, (account.smtp.clone(), conn));
    }
    outcome
}

/// The mailbox's session, if its server waits for this send's body (the send's envelope
/// went out behind the last one); taken out of the shared map for the send.
async fn session_waiting_for(
    state: &DispatchState,
    account: &SenderAccount,
    key: &SendKey,
) -> Option<probe::SmtpSession> {
    let mut sessions = state.sessions.lock().await;
    let waiting =
        sessions.get(&account.id).is_some_and(|(e, c)| *e == account.smtp && c.envelope_ahead.as_ref() == Some(key));
    waiting.then(|| sessions.remove(&account.id).map(|(_, c)| c)).flatten()
}

/// How long the record riding with a claim waits for the answers to that claim's envelope
/// before it goes out alone: a slow server does not keep an accepted send unrecorded.
const AHEAD_ANSWERS_WAIT: Duration = Duration::from_secs(2);

/// Reads the answers to the envelope written ahead; past [`AHEAD_ANSWERS_WAIT`] the
/// carried record is written alone meanwhile.
async fn answers_ahead(
    state: &DispatchState,
    session: &mut probe::SmtpSession,
    records: &mut HeldRecords,
) -> Result<mailer::AheadAnswers, BoxDynError> {
    let answers = mailer::envelope_answers(session, Duration::from_secs(state.config.smtp_timeout_secs));
    tokio::pin!(answers);
    if let Ok(answered) = tokio::time::timeout(AHEAD_ANSWERS_WAIT, &mut answers).await {
        return Ok(answered);
    }
    info!("the server is slow to answer the envelope written ahead; the last send is recorded meanwhile");
    HeldRecords::write(state, &mut records.carried).await?;
    Ok(answers.await)
}

/// What the body waits for: the `phase = data` mark (a crash after it leaves the send
/// UNCERTAIN, not requeued) and whether the mark must also prove the claim still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataMark {
    /// A young claim taken in `Data`: nothing to write, nothing to prove.
    None,
    /// A young claim taken in `Pre`: the phase alone (one HDEL; a deleted record shows).
    Unchecked,
    /// A claim old enough to have been swept: the checking script.
    Checked,
}

/// The mark a claim's body waits for. "Young" is under half the stale period: the
/// sweep, which would hand the send to another attempt, acts only on claims older than
/// the whole of it (the half leaves room for replicas' clocks to disagree); a deletion
/// can end a claim at any time, and races the body with or without a mark.
fn data_mark(claim: &Claim, claimed_at: DateTime<Utc>, now: DateTime<Utc>, stale_send_secs: u64) -> DataMark {
    let age = now.signed_duration_since(claimed_at);
    if age >= chrono::Duration::milliseconds(stale_send_secs as i64 * 500) {
        return DataMark::Checked;
    }
    match claim.phase {
        SendPhase::Pre => DataMark::Unchecked,
        SendPhase::Data => DataMark::None,
    }
}

async fn open(
    state: &DispatchState,
    account: &SenderAccount,
    limit: Duration,
) -> Result<probe::SmtpSession, SessionError> {
    let ctx = &state.connect_context(limit);
    let opening = state.signin.open(account, coldsend_core::Protocol::Smtp, |login| async move {
        probe::open_session(ctx, &account.smtp, &login).await
    });
    let session = match tokio::time::timeout(limit, opening).await {
        Ok(result) => result?,
        Err(_) => return Err(SessionError::Timeout),
    };
    if let Err(e) = state.connection.succeeded(&account.id, coldsend_core::Protocol::Smtp).await {
        warn!(error = %e, "could not reset the mailbox's failure count");
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_claim_old_enough_to_have_been_swept_has_its_mark_checked() {
        let claim = |phase| Claim { attempt: "a".into(), phase, used: 1, cap_key: "k".into(), campaign_day_key: None };
        let at = DateTime::<Utc>::from_timestamp_millis(1_000_000).expect("time");
        let after = |ms| at + chrono::Duration::milliseconds(ms);
        // stale_send_secs = 300: half of it is 150 s.
        assert_eq!(data_mark(&claim(SendPhase::Pre), at, at, 300), DataMark::Unchecked);
        assert_eq!(data_mark(&claim(SendPhase::Pre), at, after(149_999), 300), DataMark::Unchecked);
        assert_eq!(data_mark(&claim(SendPhase::Pre), at, after(150_000), 300), DataMark::Checked);
        assert_eq!(data_mark(&claim(SendPhase::Data), at, after(149_999), 300), DataMark::None);
        assert_eq!(data_mark(&claim(SendPhase::Data), at, after(150_000), 300), DataMark::Checked);
        // A clock stepped back reads as young: the half's margin is what covers clocks.
        assert_eq!(data_mark(&claim(SendPhase::Data), at, after(-5_000), 300), DataMark::None);
        assert_eq!(data_mark(&claim(SendPhase::Pre), at, after(-5_000), 300), DataMark::Unchecked);
    }
}
