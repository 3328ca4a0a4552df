//! IMAP IDLE watchers: new mail in INBOX is acted on within seconds of its arrival
//! instead of at the mailbox's next scheduled pass.
//!
//! Each replica runs one [`run`] loop for its whole life (not per generation of queue
//! consumers: a Redis blip must not log every watched mailbox out and in). Every round it beats its heart in
//! Redis, renews its mailboxes' leases ([`IdleLeases`]), works out its fair share
//! (ACTIVE mailboxes ÷ live replicas, at most `scan.idle_max_mailboxes`), releases any
//! excess (a replica joined) and claims unwatched mailboxes up to the share (a replica
//! died or left). A watcher per leased mailbox holds one IMAP session: EXAMINE INBOX,
//! IDLE; on EXISTS it ends IDLE, reads INBOX through the same code as a scan pass
//! ([`crate::scan::scan_folder`]), and idles again. IDLE is re-issued every
//! `scan.idle_renew_secs` (RFC 2177: under 29 minutes); a connection that closes or does
//! not answer DONE is replaced, with backoff.
//!
//! The watcher also runs the mailbox's full passes (INBOX, extra folders, Sent, UNCERTAIN
//! sends) on its own session, every scan interval, so a watched mailbox holds one IMAP
//! connection and logs in once, not at every pass. The scheduled scan chain stands back
//! while those passes keep coming (it reads the last pass's time) and takes over when
//! they stop: watcher gone, resting or failing. Every message is acted on at most once
//! per mailbox whichever of the two reads it first.
//!
//! A server that does not offer IDLE is held all the same: its watcher keeps the session
//! (NOOP at each wake proves it alive) and runs the passes on it, so a polled-only mailbox
//! too is one replica's, on one connection, with one login; new mail waits for the next
//! pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use chrono::Utc;
use coldsend_core::AccountStatus;
use coldsend_core::account::{AccountId, SenderAccount};
use coldsend_core::capacity::SendingSettings;
use coldsend_core::storage::idle_watch::IdleLeases;
use rand::seq::SliceRandom;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::probe::ImapSession;
use crate::scan::{ScanError, ScanState, finish_pass, login, pass_interval, scan_folder, scan_folders};

/// Why a mailbox's watcher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to (lease lost or released, shutdown).
    Stopped,
    /// The mailbox is gone or no longer ACTIVE.
    NotActive,
    /// The account turned IDLE off (`imap_idle: false`).
    Disabled,
    /// Too many failures in a row; the scheduled scans go on.
    Failing,
    /// The server refused the credentials.
    Refused,
}

impl Ended {
    /// How long this replica leaves the mailbox alone before trying to watch it again.
    fn cooldown(self) -> Duration {
        match self {
            Ended::Stopped => Duration::ZERO,
            Ended::NotActive | Ended::Failing => Duration::from_secs(60),
            Ended::Disabled | Ended::Refused => Duration::from_secs(1800),
        }
    }
}

/// Failures in a row (connect, sign-in, IDLE, DONE) before a watcher gives up for a while.
const FAILURES_BEFORE_GIVING_UP: u32 = 5;

struct Watcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<Ended>,
}

/// This replica's watchers, and the mailboxes it leaves alone for a while.
struct Watchers {
    scans: Arc<ScanState>,
    leases: IdleLeases,
    running: HashMap<AccountId, Watcher>,
    resting: HashMap<AccountId, Instant>,
}

/// Runs this replica's share of IDLE watchers until `shutdown`; then ends them, gives
/// their leases back (so other replicas take over at once) and leaves.
pub async fn run(scans: Arc<ScanState>, leases: IdleLeases, mut shutdown: watch::Receiver<bool>) {
    if !scans.config.idle {
        return;
    }
    let lease = Duration::from_secs(scans.config.idle_lease_secs);
    let every = (lease / 3).max(Duration::from_secs(1));
    let mut w = Watchers { scans, leases, running: HashMap::new(), resting: HashMap::new() };
    loop {
        if let Err(e) = w.round(lease).await {
            warn!(error = %e, "IDLE watch round failed; retrying next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => break,
        }
    }
    let all: Vec<AccountId> = w.running.keys().copied().collect();
    w.stop(&all).await;
    if let Err(e) = w.leases.release(&all).await {
        debug!(error = %e, "IDLE leases not released; they run out on their own");
    }
    let _ = w.leases.heartbeat(Utc::now().timestamp_millis(), 0).await;
}

impl Watchers {
    async fn round(&mut self, lease: Duration) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let lease_ms = lease.as_millis() as u64;
        let now = Instant::now();
        let live = self.leases.heartbeat(Utc::now().timestamp_millis(), lease_ms).await?.max(1);
        // Watchers that ended on their own give their lease back and rest.
        let ended: Vec<AccountId> =
            self.running.iter().filter(|(_, w)| w.task.is_finished()).map(|(a, _)| *a).collect();
        for a in &ended {
            if let Some(w) = self.running.remove(a) {
                let why = w.task.await.unwrap_or(Ended::Failing);
                self.resting.insert(*a, now + why.cooldown());
            }
        }
        self.leases.release(&ended).await?;
        self.resting.retain(|_, until| *until > now);

        let held: Vec<AccountId> = self.running.keys().copied().collect();
        let lost = self.leases.renew(&held, lease_ms).await?;
        if !lost.is_empty() {
            warn!(mailboxes = lost.len(), "IDLE leases taken over by another replica; stopping those watchers");
            self.stop(&lost).await;
        }

        let active = self.scans.accounts.active_ids().await?;
        let still: std::collections::HashSet<&AccountId> = active.iter().collect();
        let gone: Vec<AccountId> = self.running.keys().filter(|a| !still.contains(a)).copied().collect();
        self.stop(&gone).await;
        self.leases.release(&gone).await?;

        let share = active.len().div_ceil(live).min(self.scans.config.idle_max_mailboxes);
        if self.running.len() > share {
            // A replica joined: hand the excess over (it claims them next round).
            let excess: Vec<AccountId> = self.running.keys().take(self.running.len() - share).copied().collect();
            self.stop(&excess).await;
            let n = self.leases.release(&excess).await?;
            info!(released = n, share, "IDLE watchers handed over to a new replica");
        } else if self.running.len() < share {
            let mut candidates: Vec<AccountId> =
                active.into_iter().filter(|a| !self.running.contains_key(a) && !self.resting.contains_key(a)).collect();
            // Shuffled, so replicas claiming at once do not all try the same mailboxes first.
            candidates.shuffle(&mut rand::thread_rng());
            for a in self.leases.claim(&candidates, share - self.running.len(), lease_ms).await? {
                self.start(a);
            }
        }
        metrics::gauge!("coldsend_imap_idle_mailboxes").set(self.running.len() as f64);
        Ok(())
    }

    fn start(&mut self, account: AccountId) {
        let (stop, stopped) = watch::channel(false);
        let span = info_span!("idle", account_id = %account, replica = %self.leases.replica());
        let task = tokio::spawn(watch_mailbox(self.scans.clone(), account, stopped).instrument(span));
        self.running.insert(account, Watcher { stop, task });
    }

    /// Ends these watchers: each says DONE and LOGOUT at its next wait. One in the middle
    /// of reading INBOX is not aborted (that could leave a message recorded as acted on
    /// but not acted on); after a few seconds it is left to finish and stop by itself.
    async fn stop(&mut self, accounts: &[AccountId]) {
        let stopping: Vec<Watcher> = accounts.iter().filter_map(|a| self.running.remove(a)).collect();
        for w in &stopping {
            let _ = w.stop.send(true);
        }
        let waits = stopping.into_iter().map(|w| tokio::time::timeout(Duration::from_secs(5), w.task));
        futures::future::join_all(waits).await;
    }
}

/// Watches one mailbox until told to stop or until watching is pointless; failures are
/// retried with backoff.
async fn watch_mailbox(scans: Arc<ScanState>, account: AccountId, mut stop: watch::Receiver<bool>) -> Ended {
    let mut failures = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let mut idled = false;
        let error = match watch_session(&scans, &account, &mut stop, &mut idled).await {
            Ok(Some(ended)) => return ended,
            // The account's IMAP settings changed: a new session at once.
            Ok(None) => continue,
            Err(e) => e,
        };
        metrics::counter!("coldsend_imap_idle_reconnects_total").increment(1);
        if started.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        // A connection lost while idling is retried soon; one that cannot get that far
        // (server down, sign-in refused) backs off further each time.
        if idled {
            backoff = Duration::from_secs(1);
        }
        failures += 1;
        // Credentials refused: trying again only risks the provider locking the account;
        // the scheduled scans count the failure toward DISCONNECTED.
        if !error.is_transient() {
            warn!(error = %error, "IDLE watcher stops: sign-in refused; scheduled scans go on");
            return Ended::Refused;
        }
        if failures >= FAILURES_BEFORE_GIVING_UP {
            warn!(error = %error, failures, "IDLE watcher gives up for now; scheduled scans go on");
            return Ended::Failing;
        }
        warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "IDLE connection lost; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// One IMAP session of a watcher: sign in, catch up on INBOX, then IDLE until told to
/// stop. `Ok(None)`: the account's settings changed, start a new session.
async fn watch_session(
    scans: &ScanState,
    account_id: &AccountId,
    stop: &mut watch::Receiver<bool>,
    idled: &mut bool,
) -> Result<Option<Ended>, ScanError> {
    let t = Duration::from_secs(scans.config.command_timeout_secs);
    let renew = Duration::from_secs(scans.config.idle_renew_secs);
    let Some(row) = scans.accounts.get(account_id).await? else { return Ok(Some(Ended::NotActive)) };
    if row.status != AccountStatus::Active {
        return Ok(Some(Ended::NotActive));
    }
    let mut account = row.account;
    let mut settings = scans.accounts.sending_settings(&account, &scans.sending.default_timezone).await?;
    if !settings.imap_idle.unwrap_or(scans.config.idle) {
        return Ok(Some(Ended::Disabled));
    }
    let mut session = login(scans, &account, t).await?;
    if *stop.borrow() {
        // Stopped while waiting for a login slot.
        let _ = tokio::time::timeout(t, session.logout()).await;
        return Ok(Some(Ended::Stopped));
    }
    let caps = tokio::time::timeout(t, session.capabilities())
        .await
        .map_err(|_| ScanError::timeout("CAPABILITY", ""))?
        .map_err(|e| ScanError::imap("CAPABILITY", "", e))?;
    // Without IDLE the session is still the mailbox's one connection: its passes run on
    // it at their interval, and new mail waits for the next pass.
    let offers_idle = caps.has_str("IDLE");
    if !offers_idle {
        info!("the IMAP server does not offer IDLE; the mailbox's passes run on this session");
    }
    // Catch up: the full pass if one is due (this session now runs the mailbox's passes;
    // the scheduled chain stands back while they keep coming); what arrived in INBOX is
    // read before IDLE either way.
    let mut next_pass = next_pass_at(scans, account_id, pass_interval(&scans.config, &settings)).await;
    if next_pass <= tokio::time::Instant::now() {
        pass_on_session(scans, &account, &mut session, &settings, t).await?;
        next_pass = tokio::time::Instant::now() + pass_interval(&scans.config, &settings);
    }
    if offers_idle {
        ready_to_idle(scans, &account, &mut session, t).await?;
        debug!("watching INBOX");
    }
    loop {
        let until = (tokio::time::Instant::now() + renew).min(next_pass);
        let woke;
        (session, woke) = if offers_idle {
            idle_until(session, until, renew, stop, t, idled).await?
        } else {
            hold_until(session, until, stop, t, idled).await?
        };
        match woke {
            Woke::Stop => {
                let _ = tokio::time::timeout(Duration::from_secs(3), session.logout()).await;
                return Ok(Some(Ended::Stopped));
            }
            Woke::NewMail => {
                metrics::counter!("coldsend_imap_idle_wakeups_total").increment(1);
                scan_folder(scans, &account, &mut session, "INBOX", false, t).await?;
                ready_to_idle(scans, &account, &mut session, t).await?;
                continue;
            }
            Woke::Timer => {}
        }
        // A renewal or a pass: still the same mailbox, still ACTIVE, same server, still
        // watched? (Redis not answering is no reason to drop a working IMAP session: ask
        // again next time.)
        let row = match scans.accounts.get(account_id).await {
            Ok(row) => row,
            Err(e) => {
                warn!(error = %e, "account not re-read at IDLE renewal; idling on");
                continue;
            }
        };
        match row {
            // Same server: the session goes on, with the account as it now reads.
            Some(r) if r.status == AccountStatus::Active && r.account.imap == account.imap => account = r.account,
            Some(r) if r.status == AccountStatus::Active => {
                let _ = tokio::time::timeout(t, session.logout()).await;
                return Ok(None);
            }
            _ => {
                let _ = tokio::time::timeout(t, session.logout()).await;
                return Ok(Some(Ended::NotActive));
            }
        }
        match scans.accounts.sending_settings(&account, &scans.sending.default_timezone).await {
            Ok(s) if !s.imap_idle.unwrap_or(scans.config.idle) => {
                let _ = tokio::time::timeout(t, session.logout()).await;
                return Ok(Some(Ended::Disabled));
            }
            Ok(s) => settings = s,
            Err(e) => warn!(error = %e, "sending settings not re-read; the last ones hold"),
        }
        if tokio::time::Instant::now() < next_pass {
            debug!("IDLE renewed");
            continue;
        }
        // The mailbox's full pass (Sent, extra folders, UNCERTAIN sends) on this session.
        let lag = tokio::time::Instant::now().saturating_duration_since(next_pass);
        metrics::histogram!("coldsend_scan_schedule_lag_seconds").record(lag.as_secs_f64());
        pass_on_session(scans, &account, &mut session, &settings, t).await?;
        next_pass = tokio::time::Instant::now() + pass_interval(&scans.config, &settings);
        if offers_idle {
            ready_to_idle(scans, &account, &mut session, t).await?;
        }
    }
}

/// Why a watcher's wait ended.
enum Woke {
    /// INBOX has new mail (IDLE's EXISTS).
    NewMail,
    /// The renewal or the next full pass is due.
    Timer,
    /// Told to stop.
    Stop,
}

/// IDLE until EXISTS (other updates — flags, expunges — are read past), `until`, or a
/// stop; then DONE, whose tagged OK proves the connection alive (a silently dead one
/// times out here).
async fn idle_until(
    session: ImapSession,
    until: tokio::time::Instant,
    renew: Duration,
    stop: &mut watch::Receiver<bool>,
    t: Duration,
    idled: &mut bool,
) -> Result<(ImapSession, Woke), ScanError> {
    let mut idle = session.idle();
    tokio::time::timeout(t, idle.init())
        .await
        .map_err(|_| ScanError::timeout("IDLE", "INBOX"))?
        .map_err(|e| ScanError::imap("IDLE", "INBOX", e))?;
    *idled = true;
    let woke = loop {
        let (wait, _interrupt) = idle.wait_with_timeout(renew);
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(until, wait) => r,
            _ = stop.wait_for(|s| *s) => break Woke::Stop,
        };
        match outcome {
            Err(_) | Ok(Ok(IdleResponse::Timeout)) => break Woke::Timer,
            Ok(Ok(IdleResponse::NewData(data))) => {
                if matches!(data.parsed(), Response::MailboxData(MailboxDatum::Exists(_))) {
                    break Woke::NewMail;
                }
            }
            // The stream ended: the server closed the connection.
            Ok(Ok(IdleResponse::ManualInterrupt)) => {
                return Err(ScanError::Closed { command: "IDLE", folder: "INBOX".into() });
            }
            Ok(Err(e)) => return Err(ScanError::imap("IDLE", "INBOX", e)),
        }
    };
    let session = tokio::time::timeout(t, idle.done())
        .await
        .map_err(|_| ScanError::timeout("DONE", "INBOX"))?
        .map_err(|e| ScanError::imap("DONE", "INBOX", e))?;
    Ok((session, woke))
}

/// For a server without IDLE: wait until `until` or a stop; then NOOP, whose answer
/// proves the connection alive before the renewal's checks or the pass.
async fn hold_until(
    mut session: ImapSession,
    until: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
    t: Duration,
    idled: &mut bool,
) -> Result<(ImapSession, Woke), ScanError> {
    // Holding the session counts as idling: a connection lost later is retried soon.
    *idled = true;
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = stop.wait_for(|s| *s) => return Ok((session, Woke::Stop)),
    }
    tokio::time::timeout(t, session.noop())
        .await
        .map_err(|_| ScanError::timeout("NOOP", ""))?
        .map_err(|e| ScanError::imap("NOOP", "", e))?;
    Ok((session, Woke::Timer))
}

/// The mailbox's full pass on the watcher's session, recorded as its last pass (so the
/// scheduled chain skips its own). A pass that fails (a folder gone, a message that cannot
/// be acted on yet) is left to the scan chain, which runs it once the recorded pass grows
/// old; the session is kept, and IDLE goes on, if it still answers NOOP.
async fn pass_on_session(
    scans: &ScanState,
    account: &SenderAccount,
    session: &mut ImapSession,
    settings: &SendingSettings,
    t: Duration,
) -> Result<(), ScanError> {
    let started = Instant::now();
    let stats = match scan_folders(scans, account, session, settings, t).await {
        Ok(stats) => stats,
        Err(e) => {
            warn!(error = %e, "full pass on the IDLE session failed; the scheduled scan stands in");
            tokio::time::timeout(t, session.noop())
                .await
                .map_err(|_| ScanError::timeout("NOOP", ""))?
                .map_err(|e| ScanError::imap("NOOP", "", e))?;
            return Ok(());
        }
    };
    metrics::counter!("coldsend_scan_passes_total", "by" => "watcher").increment(1);
    metrics::histogram!("coldsend_scan_duration_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = finish_pass(scans, &account.id, stats.fetched).await {
        // Not recorded: the scheduled chain runs a pass of its own too, which is harmless.
        warn!(error = %e, "pass not recorded");
    }
    Ok(())
}

/// When the mailbox's next full pass is due: `interval` after its last (now if none, or
/// if Redis cannot say).
async fn next_pass_at(scans: &ScanState, account: &AccountId, interval: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match scans.store.last_pass(account).await {
        Ok(Some((at, _))) => {
            let age = Duration::from_millis((Utc::now().timestamp_millis() - at).max(0) as u64);
            now + interval.saturating_sub(age)
        }
        Ok(None) => now,
        Err(e) => {
            warn!(error = %e, "last pass not read; passing now");
            now
        }
    }
}

/// EXAMINE INBOX, so IDLE watches it. Mail that arrived after INBOX was last read and
/// before this EXAMINE raises no EXISTS during IDLE (EXAMINE already counted it): when
/// EXAMINE's UIDNEXT is past what the last read recorded, INBOX is read again first.
async fn ready_to_idle(
    scans: &ScanState,
    account: &SenderAccount,
    session: &mut ImapSession,
    t: Duration,
) -> Result<(), ScanError> {
    // Bounded: a server whose STATUS and EXAMINE disagree must not keep the watcher here.
    for _ in 0..3 {
        let inbox = tokio::time::timeout(t, session.examine("INBOX"))
            .await
            .map_err(|_| ScanError::timeout("EXAMINE", "INBOX"))?
            .map_err(|e| ScanError::imap("EXAMINE", "INBOX", e))?;
        let read = scans.store.cursor(&account.id, "INBOX").await?;
        let behind = match (inbox.uid_next, read) {
            (Some(next), Some(c)) => Some(c.uid_validity) != inbox.uid_validity || next.saturating_sub(1) > c.last_uid,
            // Never read: read it now.
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !behind {
            return Ok(());
        }
        debug!("mail arrived while INBOX was being read; reading it before IDLE");
        scan_folder(scans, account, session, "INBOX", false, t).await?;
    }
    Ok(())
}
