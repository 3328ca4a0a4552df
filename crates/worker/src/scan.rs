//! The `Scan` job: read what arrived in a mailbox's folders since the last scan and act
//! on it, then schedule the next scan. A mailbox whose IDLE watcher keeps up runs its
//! passes there ([`crate::idle`]); its chain then only checks that they keep coming.
//!
//! Incremental and read-only: per folder, (UIDVALIDITY, last UID) live in Redis; STATUS
//! skips unchanged folders; EXAMINE (never SELECT) and `BODY.PEEK[]` leave every flag,
//! `\Seen` included, as it was. A UIDVALIDITY change (or a first scan) re-reads a bounded
//! recent window, and every message is acted on at most once per mailbox (by Message-ID),
//! so a rebuilt mailbox records nothing twice. Each IMAP command runs under a timeout.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskBuilder, TaskSink, WorkerContext};
use apalis_redis::RedisStorage;
use chrono::Utc;
use coldsend_core::account::SenderAccount;
use coldsend_core::campaign::Campaign;
use coldsend_core::capacity::SendingSettings;
use coldsend_core::classify::{Bounce, BounceClass, Classified, Kind, Verdict, classify};
use coldsend_core::jobs::{Dispatch, Scan, wake_mailbox};
use coldsend_core::lead::{Lead, LeadId, LeadState};
use coldsend_core::sealed::SealingKey;
use coldsend_core::send_key::SendKey;
use coldsend_core::settings::{ScanConfig, SendingConfig};
use coldsend_core::storage::accounts::AccountStore;
use coldsend_core::storage::campaigns::{CampaignCounter, CampaignStore, StepMetric, SuppressionReason};
use coldsend_core::storage::inbox::{BounceFacts, Inbox, InboxEvent, InboxKind};
use coldsend_core::storage::ledger::{Ledger, MarkedSent};
use coldsend_core::storage::mailboxes::{MailboxHealth, MailboxPause};
use coldsend_core::storage::scan::{FolderCursor, Processed, ScanStore};
use coldsend_core::{AccountStatus, account::EmailAddress};
use futures::TryStreamExt;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::probe::{ImapSession, ProbeContext, open_imap_session};
use crate::sent_copy::{list_folders, pick_sent_folder};

/// Why a scan pass (or one of its effects) failed; the next pass tries again either way,
/// but only a transient failure is worth retrying sooner.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("IMAP {command} {folder} timed out")]
    Timeout { command: &'static str, folder: String },
    #[error("IMAP {command} {folder}: {source}")]
    Imap {
        command: &'static str,
        folder: String,
        #[source]
        source: async_imap::error::Error,
    },
    #[error("IMAP {command} {folder}: the server closed the connection")]
    Closed { command: &'static str, folder: String },
    #[error("IMAP STATUS {folder}: no UIDVALIDITY/UIDNEXT in the answer")]
    Incomplete { folder: String },
    #[error("IMAP login: {} {}", .0.code.as_str(), .0.message)]
    Login(coldsend_core::ProbeFailure),
    #[error("IMAP sign-in: {0}")]
    SignIn(#[from] crate::signin::SignInError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Accounts(#[from] coldsend_core::storage::accounts::StoreError),
    #[error(transparent)]
    Campaigns(#[from] coldsend_core::storage::campaigns::CampaignStoreError),
    #[error(transparent)]
    Wake(#[from] coldsend_core::jobs::WakeError),
}

impl ScanError {
    pub(crate) fn timeout(command: &'static str, folder: &str) -> Self {
        ScanError::Timeout { command, folder: folder.to_owned() }
    }

    pub(crate) fn imap(command: &'static str, folder: &str, source: async_imap::error::Error) -> Self {
        ScanError::Imap { command, folder: folder.to_owned(), source }
    }

    /// The failure to reach or sign in at the IMAP server, when that is what went wrong
    /// (it counts toward DISCONNECTED; a folder's trouble or Redis's does not). An
    /// OAuth2 grant refused is NEEDS_REAUTH instead, and a token endpoint down is not
    /// the mailbox's fault.
    fn login_failure(&self) -> Option<coldsend_core::ProbeFailure> {
        use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
        match self {
            ScanError::Login(f) => Some(f.clone()),
            ScanError::Timeout { command: "LOGIN", .. } => Some(ProbeFailure {
                protocol: Protocol::Imap,
                code: ValidationCode::Timeout,
                message: "connecting and logging in timed out".into(),
            }),
            ScanError::SignIn(e) if !matches!(e, crate::signin::SignInError::Access(_)) && !e.is_transient() => {
                Some(e.to_failure(Protocol::Imap))
            }
            _ => None,
        }
    }

    /// Whether trying again soon can help (network, server, Redis) or not before an
    /// operator acts (credentials refused or unopenable).
    pub fn is_transient(&self) -> bool {
        match self {
            ScanError::Login(f) => f.code != coldsend_core::ValidationCode::AuthFailed,
            ScanError::SignIn(e) => e.is_transient(),
            ScanError::Accounts(e) => e.is_transient(),
            ScanError::Campaigns(e) => e.is_transient(),
            _ => true,
        }
    }
}

pub struct ScanState {
    pub store: ScanStore,
    /// Sender-side bounces count against the mailbox (and may pause its sending).
    pub health: MailboxHealth,
    pub accounts: AccountStore,
    /// Passwords or OAuth2 access tokens.
    pub signin: crate::signin::SignIn,
    pub campaigns: CampaignStore,
    pub ledger: Ledger,
    pub inbox: Inbox,
    pub key: SealingKey,
    pub probe: ProbeContext,
    pub config: ScanConfig,
    pub sending: SendingConfig,
    pub queue: RedisStorage<Scan>,
    pub dispatch_queue: RedisStorage<Dispatch>,
    /// Sessions kept logged in between scans, by mailbox, with when they were last used.
    pub sessions: tokio::sync::Mutex<std::collections::HashMap<coldsend_core::AccountId, KeptSession>>,
    /// Failures to log in count toward DISCONNECTED.
    pub connection: crate::connection_health::ConnectionHealth,
    /// Hard bounces count toward the mailbox's bounce rate.
    pub bounces: crate::bounce_rate::BounceGuard,
    /// Each mailbox's folders to scan (and which is Sent), from its last LIST: when listed,
    /// and the configured Sent folder it was picked with.
    pub folders: tokio::sync::Mutex<std::collections::HashMap<coldsend_core::AccountId, ListedFolders>>,
    /// Fresh logins per server, shared by scans and IDLE watchers.
    pub logins: Arc<crate::login_pacer::LoginPacer>,
}

/// A mailbox's folders to scan as of a LIST.
pub struct ListedFolders {
    folders: Vec<(String, bool)>,
    at: std::time::Instant,
    sent_setting: Option<String>,
}

/// A logged-in IMAP session, when it was last used, and the server settings it was
/// opened with (an edited account's old session is not reused).
pub type KeptSession = (ImapSession, std::time::Instant, coldsend_core::account::Endpoint);

impl ScanState {
    /// The mailbox's folders from a LIST younger than `scan.folder_list_secs`, listed
    /// with the same Sent-folder setting.
    async fn cached_folders(
        &self,
        account: &coldsend_core::AccountId,
        settings: &SendingSettings,
    ) -> Option<Vec<(String, bool)>> {
        let max = Duration::from_secs(self.config.folder_list_secs);
        let map = self.folders.lock().await;
        let l = map.get(account)?;
        (l.at.elapsed() < max && l.sent_setting == settings.imap_sent_folder).then(|| l.folders.clone())
    }

    async fn keep_folders(&self, account: coldsend_core::AccountId, settings: &SendingSettings, f: &[(String, bool)]) {
        let listed = ListedFolders {
            folders: f.to_vec(),
            at: std::time::Instant::now(),
            sent_setting: settings.imap_sent_folder.clone(),
        };
        self.folders.lock().await.insert(account, listed);
    }

    /// Logs out every kept session (at shutdown).
    pub async fn close_sessions(&self) {
        let drained: Vec<_> = self.sessions.lock().await.drain().collect();
        for (_, (mut s, _, _)) in drained {
            let _ = tokio::time::timeout(Duration::from_secs(3), s.logout()).await;
        }
    }

    /// A kept session for the mailbox if it is fresh, opened with its current settings
    /// and still answers NOOP.
    async fn reuse(&self, account: &SenderAccount, t: Duration) -> Option<ImapSession> {
        let idle = Duration::from_secs(self.config.session_idle_secs);
        let (mut s, used, endpoint) = self.sessions.lock().await.remove(&account.id)?;
        if used.elapsed() < idle
            && endpoint == account.imap
            && matches!(tokio::time::timeout(t, s.noop()).await, Ok(Ok(())))
        {
            return Some(s);
        }
        let _ = tokio::time::timeout(t, s.logout()).await;
        None
    }

    /// Keeps a session for the next scan, closing the stalest beyond the cap and any idle too long.
    async fn keep(&self, account: &SenderAccount, session: ImapSession) {
        let idle = Duration::from_secs(self.config.session_idle_secs);
        let mut closing = Vec::new();
        {
            let mut map = self.sessions.lock().await;
            let expired: Vec<_> =
                map.iter().filter(|(_, (_, used, _))| used.elapsed() >= idle).map(|(k, _)| *k).collect();
            for k in expired {
                closing.extend(map.remove(&k));
            }
            while map.len() >= self.config.keep_sessions.max(1) {
                let Some(oldest) = map.iter().min_by_key(|(_, (_, used, _))| *used).map(|(k, _)| *k) else { break };
                closing.extend(map.remove(&oldest));
            }
            map.insert(account.id, (session, std::time::Instant::now(), account.imap.clone()));
        }
        for (mut s, _, _) in closing {
            let _ = tokio::time::timeout(Duration::from_secs(3), s.logout()).await;
        }
    }
}

/// Starts a mailbox's scan chain unless one is alive (`replace` supersedes it).
pub async fn wake_scan(
    state: &ScanState,
    account: &coldsend_core::AccountId,
    replace: bool,
) -> Result<bool, BoxDynError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lease = state.config.interval_secs.max(60) * 3 * 1000;
    if !state.ledger.start_chain_at(&state.store.keys().scan_chain(account), &token, lease, !replace).await? {
        return Ok(false);
    }
    state.queue.clone().push(Scan { account_id: *account, token, due_ms: Utc::now().timestamp_millis() }).await?;
    Ok(true)
}

pub async fn scan(job: Scan, state: Data<Arc<ScanState>>, worker: WorkerContext) -> Result<(), BoxDynError> {
    let span = info_span!("scan", account_id = %job.account_id, worker = %worker.name());
    let started = std::time::Instant::now();
    if job.due_ms > 0 {
        // How late the scan starts against its schedule (the queue, the concurrency limit
        // and a busy worker all show up here).
        let lag_ms = (Utc::now().timestamp_millis() - job.due_ms).max(0);
        metrics::histogram!("coldsend_scan_schedule_lag_seconds").record(lag_ms as f64 / 1000.0);
    }
    let result = run(&job, &state).instrument(span).await;
    crate::metrics::job("scan", result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn run(job: &Scan, state: &ScanState) -> Result<(), BoxDynError> {
    let acct = &job.account_id;
    let chain = state.store.keys().scan_chain(acct);
    let timeout = Duration::from_secs(state.config.command_timeout_secs);
    // Holds the mailbox for the scan; a stale token means another chain owns it.
    if !state.ledger.keep_chain_at(&chain, &job.token, (timeout * 40).as_millis() as u64).await? {
        return Ok(());
    }
    let Some(row) = state.accounts.get(acct).await? else {
        state.ledger.keep_chain_at(&chain, &job.token, 0).await?;
        return Ok(());
    };
    if row.status != AccountStatus::Active {
        // A kept session may be for settings that changed (PATCH) or a server now gone.
        if let Some((mut s, _, _)) = state.sessions.lock().await.remove(acct) {
            let _ = tokio::time::timeout(timeout, s.logout()).await;
        }
        state.ledger.keep_chain_at(&chain, &job.token, 0).await?;
        return Ok(());
    }
    let settings = state.accounts.sending_settings(&row.account, &state.sending.default_timezone).await?;
    let interval = pass_interval(&state.config, &settings);
    if let Some(last_ms) = watcher_keeps_up(state, acct, interval).await? {
        // The mailbox's IDLE watcher runs its passes on its own session: this chain only
        // looks again once the watcher's next pass is overdue by half an interval, and
        // runs it itself if it did not happen (watcher gone, resting, or failing).
        if let Some((mut s, _, _)) = state.sessions.lock().await.remove(acct) {
            let _ = tokio::time::timeout(timeout, s.logout()).await;
        }
        let due = last_ms + watcher_grace(interval).as_millis() as i64;
        let wait = Duration::from_millis((due - Utc::now().timestamp_millis()).max(1000) as u64);
        return schedule_next(state, job, wait).await;
    }
    // Keep the session for the next scan only when it comes soon enough to find it alive.
    let keep = state.config.keep_sessions > 0 && interval < Duration::from_secs(state.config.session_idle_secs);
    metrics::counter!("coldsend_scan_passes_total", "by" => "chain").increment(1);
    let started = std::time::Instant::now();
    let passed = scan_mailbox(state, &row.account, &settings, keep).await;
    metrics::histogram!("coldsend_scan_duration_seconds").record(started.elapsed().as_secs_f64());
    let fetched = match passed {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, transient = e.is_transient(), "scan failed; next scan as scheduled");
            if let Some(failure) = e.login_failure()
                && state.connection.failed(&row.account, failure).await?
            {
                // DISCONNECTED: no more scans until a validation passes (the sweep then
                // starts a new chain).
                state.ledger.keep_chain_at(&chain, &job.token, 0).await?;
                return Ok(());
            }
            0
        }
    };
    finish_pass(state, acct, fetched).await?;
    // The successor is scheduled only after this scan ends: a slow scan never piles up ticks.
    schedule_next(state, job, interval).await
}

/// Records a pass's end (the time the watcher and the API read).
pub(crate) async fn finish_pass(
    state: &ScanState,
    account: &coldsend_core::AccountId,
    fetched: usize,
) -> Result<(), redis::RedisError> {
    let now = Utc::now().timestamp_millis();
    // Keep a year of "already acted on" records: enough for any resync window.
    state.store.finish_pass(account, now - 365 * 86_400_000, now, fetched).await
}

/// Queues the chain's next scan `wait` from now, if this job still holds the chain.
async fn schedule_next(state: &ScanState, job: &Scan, wait: Duration) -> Result<(), BoxDynError> {
    let chain = state.store.keys().scan_chain(&job.account_id);
    let timeout = Duration::from_secs(state.config.command_timeout_secs);
    if state.ledger.keep_chain_at(&chain, &job.token, (wait + timeout * 40).as_millis() as u64).await? {
        let next = Scan { due_ms: Utc::now().timestamp_millis() + wait.as_millis() as i64, ..job.clone() };
        state.queue.clone().push_task(TaskBuilder::new(next).run_after(wait).build()).await?;
    }
    Ok(())
}

/// How often the mailbox gets a full pass: its own interval, else the configured one.
pub(crate) fn pass_interval(config: &ScanConfig, settings: &SendingSettings) -> Duration {
    Duration::from_secs(
        settings.scan_interval_secs.unwrap_or(config.interval_secs).max(config.min_interval_secs).max(1),
    )
}

/// How long a watched mailbox's chain waits for the watcher's next pass before running it
/// itself: half an interval of slack, so the two never settle into passing side by side.
fn watcher_grace(interval: Duration) -> Duration {
    interval + interval / 2
}

/// When the mailbox is watched with IDLE and its last pass is younger than
/// [`watcher_grace`], that pass's time (ms): the watcher is keeping up and the scheduled
/// pass is skipped.
async fn watcher_keeps_up(
    state: &ScanState,
    account: &coldsend_core::AccountId,
    interval: Duration,
) -> Result<Option<i64>, BoxDynError> {
    if !state.config.idle || state.store.idle_watcher(account).await?.is_none() {
        return Ok(None);
    }
    let now = Utc::now().timestamp_millis();
    let grace = watcher_grace(interval).as_millis() as i64;
    Ok(state.store.last_pass(account).await?.map(|(at, _)| at).filter(|at| now - at < grace))
}

/// What one pass did (the benchmark reads it).
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub fetched: usize,
    /// Time spent in UID FETCH alone, all folders.
    pub fetch: Duration,
}

/// One pass over INBOX, the configured extra folders and Sent. Returns messages fetched.
async fn scan_mailbox(
    state: &ScanState,
    account: &SenderAccount,
    settings: &SendingSettings,
    keep: bool,
) -> Result<usize, ScanError> {
    scan_pass(state, account, settings, keep).await.map(|s| s.fetched)
}

/// One scan pass, as the scheduled job runs it (public for the poll benchmark). With
/// `keep`, the session is kept logged in for the mailbox's next scan.
pub async fn scan_pass(
    state: &ScanState,
    account: &SenderAccount,
    settings: &SendingSettings,
    keep: bool,
) -> Result<PassStats, ScanError> {
    let t = Duration::from_secs(state.config.command_timeout_secs);
    let mut session = match state.reuse(account, t).await {
        Some(kept) => kept,
        None => login(state, account, t).await?,
    };
    let result = scan_folders(state, account, &mut session, settings, t).await;
    if result.is_ok() && keep {
        state.keep(account, session).await;
    } else {
        let _ = tokio::time::timeout(t, session.logout()).await;
    }
    result
}

/// A fresh IMAP session for the mailbox (paced per server), signed in with its password
/// or OAuth2 token.
pub(crate) async fn login(state: &ScanState, account: &SenderAccount, t: Duration) -> Result<ImapSession, ScanError> {
    state.logins.until_ready(account.imap.host.as_str()).await;
    let ctx = &ProbeContext { time_limit: t, ..state.probe.clone() };
    let opening = state.signin.open(account, coldsend_core::Protocol::Imap, |login| async move {
        open_imap_session(ctx, &account.imap, &login).await
    });
    match tokio::time::timeout(t, opening).await.map_err(|_| ScanError::timeout("LOGIN", ""))? {
        Ok(s) => {
            // A fresh login worked: IMAP failures in a row start over. Passes over a kept
            // session skip this write (one per login, not one per pass).
            if let Err(e) = state.connection.succeeded(&account.id, coldsend_core::Protocol::Imap).await {
                warn!(error = %e, "could not reset the mailbox's failure count");
            }
            Ok(s)
        }
        Err(crate::signin::OpenError::Refused(f)) => Err(ScanError::Login(f)),
        Err(crate::signin::OpenError::SignIn(e)) => Err(ScanError::SignIn(e)),
    }
}

pub(crate) async fn scan_folders(
    state: &ScanState,
    account: &SenderAccount,
    session: &mut ImapSession,
    settings: &SendingSettings,
    t: Duration,
) -> Result<PassStats, ScanError> {
    let folders = match state.cached_folders(&account.id, settings).await {
        Some(f) => f,
        None => {
            let listed = tokio::time::timeout(t, list_folders(session))
                .await
                .map_err(|_| ScanError::timeout("LIST", ""))?
                .map_err(|e| ScanError::imap("LIST", "", e))?;
            let mut folders: Vec<(String, bool)> = vec![("INBOX".to_owned(), false)];
            for extra in &state.config.extra_folders {
                if listed.iter().any(|(n, _)| n == extra) {
                    folders.push((extra.clone(), false));
                }
            }
            if let Some(s) = pick_sent_folder(&listed, settings.imap_sent_folder.as_deref()) {
                folders.push((s, true));
            }
            state.keep_folders(account.id, settings, &folders).await;
            folders
        }
    };
    let mut total = PassStats::default();
    for (folder, is_sent) in folders {
        let s = match scan_folder(state, account, session, &folder, is_sent, t).await {
            Ok(s) => s,
            Err(e) => {
                // A folder gone or renamed: list again next pass.
                state.folders.lock().await.remove(&account.id);
                return Err(e);
            }
        };
        total.fetched += s.fetched;
        total.fetch += s.fetch;
    }
    match resolve_uncertain(state, account, settings).await {
        Ok(r) if r.requeued > 0 => info!(requeued = r.requeued, "UNCERTAIN sends not found in Sent: sent again"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "UNCERTAIN sends not resolved; next pass retries"),
    }
    Ok(total)
}

pub(crate) async fn scan_folder(
    state: &ScanState,
    account: &SenderAccount,
    session: &mut ImapSession,
    folder: &str,
    is_sent: bool,
    t: Duration,
) -> Result<PassStats, ScanError> {
    let status = tokio::time::timeout(t, session.status(folder, "(UIDNEXT UIDVALIDITY)"))
        .await
        .map_err(|_| ScanError::timeout("STATUS", folder))?
        .map_err(|e| ScanError::imap("STATUS", folder, e))?;
    let (Some(validity), Some(uid_next)) = (status.uid_validity, status.uid_next) else {
        return Err(ScanError::Incomplete { folder: folder.to_owned() });
    };
    let stored = state.store.cursor(&account.id, folder).await?;
    let reset = stored.map(|c| c.uid_validity) != Some(validity);
    let last_uid = if reset { 0 } else { stored.map_or(0, |c| c.last_uid) };
    if !reset && uid_next.saturating_sub(1) <= last_uid {
        debug!(folder, "unchanged");
        return Ok(PassStats::default());
    }
    let from_uid = if reset { uid_next.saturating_sub(state.config.resync_window).max(1) } else { last_uid + 1 };
    tokio::time::timeout(t, session.examine(folder))
        .await
        .map_err(|_| ScanError::timeout("EXAMINE", folder))?
        .map_err(|e| ScanError::imap("EXAMINE", folder, e))?;
    let fetch_started = std::time::Instant::now();
    let fetched: Vec<(u32, Vec<u8>)> = tokio::time::timeout(t * 4, async {
        let stream = session.uid_fetch(format!("{from_uid}:*"), "(UID BODY.PEEK[])").await?;
        stream
            .try_filter_map(|f| async move { Ok(f.uid.filter(|u| *u >= from_uid).zip(f.body().map(<[u8]>::to_vec))) })
            .try_collect()
            .await
    })
    .await
    .map_err(|_| ScanError::timeout("FETCH", folder))?
    .map_err(|e| ScanError::imap("FETCH", folder, e))?;
    let fetch = fetch_started.elapsed();
    let mut max_uid = uid_next.saturating_sub(1);
    let count = fetched.len();
    for (uid, raw) in fetched {
        max_uid = max_uid.max(uid);
        let c = classify(&raw);
        let id = c.message_id.clone().unwrap_or_else(|| format!("uid:{validity}:{uid}"));
        let marker = if is_sent { Processed::Sent(&id) } else { Processed::Incoming(&id) };
        let first_time = state.store.mark_processed(&account.id, &marker, Utc::now().timestamp_millis()).await?;
        if !first_time {
            continue;
        }
        let outcome = if is_sent { confirm(state, &c).await } else { act(state, account, &c).await };
        if let Err(e) = outcome {
            // Forget it so the next scan tries again.
            let _ = state.store.forget_processed(&account.id, &marker).await;
            return Err(e);
        }
        metrics::counter!("coldsend_messages_classified_total", "kind" => inbox_kind(c.kind()).as_str()).increment(1);
    }
    state.store.set_cursor(&account.id, folder, FolderCursor { uid_validity: validity, last_uid: max_uid }).await?;
    debug!(folder, fetched = count, "folder scanned");
    Ok(PassStats { fetched: count, fetch })
}

fn inbox_kind(k: Kind) -> InboxKind {
    match k {
        Kind::Bounce => InboxKind::Bounce,
        Kind::AutoReply => InboxKind::AutoReply,
        Kind::Reply => InboxKind::Reply,
        Kind::Complaint => InboxKind::Complaint,
        Kind::Unsubscribe => InboxKind::Unsubscribe,
        Kind::Other => InboxKind::Other,
    }
}

/// A message in Sent: its send is confirmed (and an UNCERTAIN one is SENT after all).
async fn confirm(state: &ScanState, c: &Classified) -> Result<(), ScanError> {
    let Some(id) = &c.message_id else { return Ok(()) };
    let Some(key) = state.store.send_for_message_id(id).await? else { return Ok(()) };
    let next_due = match state.campaigns.get(&key.campaign).await? {
        Some(row) => {
            row.campaign.steps.get(key.step + 1).map(|s| Utc::now().timestamp_millis() + s.delay.as_millis() as i64)
        }
        None => None,
    };
    let outcome = state.ledger.confirm_sent(&key, id, next_due).await?;
    if matches!(outcome, MarkedSent::Recorded | MarkedSent::Confirmed) {
        info!(send = %key, "confirmed in Sent");
    }
    Ok(())
}

/// UNCERTAIN sends, once a pass has read Sent: seen there (now or in an earlier scan) →
/// SENT. Older than the grace period and still not seen → sent again only where the Sent
/// folder is authoritative; elsewhere settled without a resend (a missing email is better
/// than a duplicate) and the lead's sequence goes on.
async fn resolve_uncertain(
    state: &ScanState,
    account: &SenderAccount,
    settings: &SendingSettings,
) -> Result<Resolved, ScanError> {
    let cutoff = Utc::now().timestamp_millis() - (state.config.uncertain_grace_secs * 1000) as i64;
    let authoritative = settings.sent_folder_is_authoritative(account.inbox_type);
    let mut resolved = Resolved::default();
    for key in state.ledger.uncertain_before(&account.id, i64::MAX).await? {
        let message_id = key.message_id(account.email.domain());
        let next_due = next_step_due(state, &key).await?;
        if state.store.was_processed(&account.id, &Processed::Sent(&message_id)).await? {
            state.ledger.confirm_sent(&key, &message_id, next_due).await?;
            info!(send = %key, "UNCERTAIN send found in Sent: SENT");
            resolved.confirmed += 1;
            continue;
        }
        if state.store.uncertain_since(&account.id, &key).await?.is_none_or(|t| t >= cutoff) {
            continue;
        }
        if authoritative {
            if state.ledger.requeue_uncertain(&key, &account.id).await? {
                resolved.requeued += 1;
            }
        } else if state.ledger.settle_uncertain(&key, &account.id, next_due).await? {
            warn!(send = %key, "UNCERTAIN send not provable from Sent: not resent");
            resolved.settled += 1;
        }
    }
    if resolved.requeued + resolved.settled > 0 {
        wake_mailbox(&state.ledger, &state.dispatch_queue, &account.id, true).await?;
    }
    Ok(resolved)
}

/// What resolving a mailbox's UNCERTAIN sends did.
#[derive(Debug, Default, Clone, Copy)]
struct Resolved {
    confirmed: usize,
    requeued: usize,
    settled: usize,
}

/// When the step after `key` becomes due if `key` counts as sent now.
async fn next_step_due(state: &ScanState, key: &SendKey) -> Result<Option<i64>, ScanError> {
    let row = state.campaigns.get(&key.campaign).await?;
    Ok(row.and_then(|r| {
        r.campaign.steps.get(key.step + 1).map(|s| Utc::now().timestamp_millis() + s.delay.as_millis() as i64)
    }))
}

/// The (campaign, lead) pairs a message is about: the send its headers name, else a lead
/// with the sender's (or bounced recipient's) address in this mailbox's campaigns.
async fn matching_leads(
    state: &ScanState,
    account: &SenderAccount,
    ids: &[String],
    address: Option<&str>,
) -> Result<Vec<SendKey>, ScanError> {
    for id in ids {
        if let Some(key) = state.store.send_for_message_id(id).await? {
            return Ok(vec![key]);
        }
    }
    let Some(email) = address.and_then(|a| EmailAddress::parse(a).ok()) else { return Ok(Vec::new()) };
    let lead = LeadId::for_email(&email);
    let mut out = Vec::new();
    for cid in state.campaigns.account_campaigns(&account.id).await? {
        let assigned = state.ledger.lead_account(&cid, &lead).await?;
        if assigned == Some(account.id) {
            out.push(SendKey { campaign: cid, lead: lead.clone(), step: 0 });
        }
    }
    Ok(out)
}

/// Applies a classified incoming message to the leads it concerns, and files the event.
async fn act(state: &ScanState, account: &SenderAccount, c: &Classified) -> Result<(), ScanError> {
    let (ids, address): (Vec<String>, Option<String>) = match &c.verdict {
        Verdict::Bounce(b) => (b.original_message_id.iter().cloned().collect(), b.recipient.clone()),
        Verdict::Reply | Verdict::AutoReply { .. } | Verdict::Complaint | Verdict::Unsubscribe => {
            (c.refers_to.clone(), c.from.clone())
        }
        Verdict::Other => return Ok(()),
    };
    let matches = matching_leads(state, account, &ids, address.as_deref()).await?;
    let now = Utc::now();
    for key in &matches {
        let Some(row) = state.campaigns.get(&key.campaign).await? else { continue };
        let Some(lead) = state.campaigns.lead(&key.campaign, &key.lead).await? else { continue };
        let metric = match &c.verdict {
            Verdict::Reply => Some(StepMetric::Replied),
            Verdict::AutoReply { .. } => Some(StepMetric::AutoReplied),
            Verdict::Bounce(b) if b.class == BounceClass::AddressBad => Some(StepMetric::HardBounced),
            Verdict::Bounce(b) if b.class == BounceClass::RecipientTemporary => Some(StepMetric::SoftBounced),
            Verdict::Complaint => Some(StepMetric::Complained),
            Verdict::Unsubscribe => Some(StepMetric::Unsubscribed),
            Verdict::Bounce(_) | Verdict::Other => None,
        };
        if let Some(m) = metric {
            state.campaigns.count_step(&key.campaign, key.step, m).await?;
        }
        match &c.verdict {
            Verdict::Reply => on_reply(state, key, &row.campaign, &lead).await?,
            Verdict::AutoReply { returns_on } => on_auto_reply(state, key, *returns_on, now).await?,
            Verdict::Bounce(b) => on_bounce(state, account, key, &lead, b).await?,
            Verdict::Complaint => on_complaint(state, key, &lead).await?,
            Verdict::Unsubscribe => on_unsubscribe(state, key, &lead).await?,
            Verdict::Other => {}
        }
    }
    file_event(state, account, c, matches.first(), now).await
}

/// A reply stops the lead's sequence (and, if the campaign says so, its domain's).
async fn on_reply(state: &ScanState, key: &SendKey, campaign: &Campaign, lead: &Lead) -> Result<(), ScanError> {
    if campaign.stop_on_reply {
        state.campaigns.set_lead_state(&key.campaign, &key.lead, None, LeadState::Replied, None).await?;
    }
    if campaign.stop_on_domain_reply {
        pause_domain(state, &key.campaign, lead.email.domain()).await?;
    }
    info!(campaign_id = %key.campaign, lead_id = %key.lead, "reply: sequence stopped");
    Ok(())
}

/// An out-of-office pauses the lead until the return date it gives (or a configured pause).
async fn on_auto_reply(
    state: &ScanState,
    key: &SendKey,
    returns_on: Option<chrono::NaiveDate>,
    now: chrono::DateTime<Utc>,
) -> Result<(), ScanError> {
    let resume = returns_on
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or(now + chrono::Duration::days(i64::from(state.config.ooo_pause_days)));
    let paused = state
        .campaigns
        .set_lead_state(&key.campaign, &key.lead, Some(LeadState::Active), LeadState::Paused, Some("out of office"))
        .await?;
    if paused {
        state.store.schedule_resume(&key.campaign, &key.lead, resume.timestamp_millis()).await?;
    }
    info!(campaign_id = %key.campaign, lead_id = %key.lead, resume = %resume, "out of office: lead paused");
    Ok(())
}

/// What a bounce does depends on whose problem it is: a bad address bounces the lead and
/// is suppressed; a recipient side that cannot take mail now stops the lead (never
/// suppressed) after `scan.soft_bounce_limit` such bounces; a refusal of our sender leaves
/// the lead alone (the master-inbox event tells the operator).
async fn on_bounce(
    state: &ScanState,
    account: &SenderAccount,
    key: &SendKey,
    lead: &Lead,
    b: &Bounce,
) -> Result<(), ScanError> {
    let email = lead.email.as_str();
    let why = format!(
        "bounce {} ({}): {}",
        b.status.as_deref().unwrap_or("?"),
        b.reason.as_str(),
        b.diagnostic.as_deref().unwrap_or("")
    );
    match b.class {
        BounceClass::AddressBad => {
            let bounced =
                state.campaigns.set_lead_state(&key.campaign, &key.lead, None, LeadState::Bounced, Some(&why)).await?;
            state.campaigns.suppress(email, SuppressionReason::HardBounce).await?;
            if bounced {
                state.campaigns.count(&key.campaign, CampaignCounter::Bounced).await?;
            }
            info!(campaign_id = %key.campaign, lead_id = %key.lead, reason = b.reason.as_str(), "address bad: lead bounced and suppressed");
            if bounced {
                state.bounces.hard_bounce(account, key).await?;
            }
        }
        BounceClass::RecipientTemporary => {
            let n = state.store.add_soft_bounce(email).await?;
            if n >= state.config.soft_bounce_limit {
                let why = format!("{n} soft bounces, the last: {why}");
                state
                    .campaigns
                    .set_lead_state(&key.campaign, &key.lead, Some(LeadState::Active), LeadState::Failed, Some(&why))
                    .await?;
                info!(campaign_id = %key.campaign, lead_id = %key.lead, soft_bounces = n, "soft bounces: lead stopped, not suppressed");
            }
        }
        BounceClass::SenderSide => {
            // Counted against the mailbox like a refusal at send time.
            let cfg = &state.sending;
            let now = Utc::now();
            let pause = MailboxPause {
                until_ms: (now + chrono::Duration::seconds(cfg.sender_refusal_pause_secs as i64)).timestamp_millis(),
                reason: b.reason.as_str().to_owned(),
                message: b.diagnostic.clone().unwrap_or_default(),
            };
            let refusals = state
                .health
                .refused(
                    &account.id,
                    now.timestamp_millis(),
                    cfg.sender_refusal_window_secs * 1000,
                    cfg.sender_refusal_limit,
                    &pause,
                    false,
                )
                .await?;
            warn!(campaign_id = %key.campaign, lead_id = %key.lead, reason = b.reason.as_str(), recent = refusals.recent,
                paused_until_ms = ?refusals.paused_until_ms, "sender-side bounce: the lead is kept");
        }
    }
    Ok(())
}

/// A spam complaint suppresses the address and unsubscribes the lead.
async fn on_complaint(state: &ScanState, key: &SendKey, lead: &Lead) -> Result<(), ScanError> {
    state.campaigns.suppress(lead.email.as_str(), SuppressionReason::Complaint).await?;
    state
        .campaigns
        .set_lead_state(&key.campaign, &key.lead, None, LeadState::Unsubscribed, Some("spam complaint"))
        .await?;
    Ok(())
}

/// A reply asking to be taken off: suppressed everywhere, the lead unsubscribed.
async fn on_unsubscribe(state: &ScanState, key: &SendKey, lead: &Lead) -> Result<(), ScanError> {
    state.campaigns.suppress(lead.email.as_str(), SuppressionReason::Unsubscribed).await?;
    state
        .campaigns
        .set_lead_state(&key.campaign, &key.lead, None, LeadState::Unsubscribed, Some("asked to unsubscribe by reply"))
        .await?;
    info!(campaign_id = %key.campaign, lead_id = %key.lead, "unsubscribe by reply: suppressed");
    Ok(())
}

/// Files the message in the master inbox, linked to the first lead it concerns.
async fn file_event(
    state: &ScanState,
    account: &SenderAccount,
    c: &Classified,
    first: Option<&SendKey>,
    now: chrono::DateTime<Utc>,
) -> Result<(), ScanError> {
    state
        .inbox
        .record(&InboxEvent {
            id: String::new(),
            account_id: account.id.to_string(),
            campaign_id: first.map(|k| k.campaign.to_string()),
            lead_id: first.map(|k| k.lead.to_string()),
            kind: inbox_kind(c.kind()),
            from: c.from.clone().unwrap_or_default(),
            subject: c.subject.clone().unwrap_or_default(),
            snippet: c.snippet.clone(),
            received_at: now.to_rfc3339(),
            bounce: c.bounce().map(|b| BounceFacts {
                recipient: b.recipient.clone().unwrap_or_default(),
                reason: b.reason,
                class: b.class,
                status: b.status.clone(),
            }),
            why: c.why.clone(),
            returns_on: c.returns_on().map(|d| d.to_string()),
        })
        .await?;
    Ok(())
}

/// A reply from one address pauses every active lead of its domain in the campaign.
async fn pause_domain(
    state: &ScanState,
    campaign: &coldsend_core::campaign::CampaignId,
    domain: &str,
) -> Result<(), ScanError> {
    let leads = state.campaigns.leads(campaign).await?;
    for (id, lead) in leads {
        if lead.email.domain().eq_ignore_ascii_case(domain)
            && let Some(lid) = LeadId::parse(&id)
        {
            state
                .campaigns
                .set_lead_state(campaign, &lid, Some(LeadState::Active), LeadState::Paused, Some("a colleague replied"))
                .await?;
        }
    }
    Ok(())
}
