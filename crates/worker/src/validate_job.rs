//! The `ValidateAccount` job: probe both protocols and record the outcome.
//!
//! Safe to run twice (apalis-redis delivers at least once): probing has no side
//! effects on the servers, and the outcome is stored only if the job's generation is
//! still the account's current one, so a late duplicate cannot overwrite a newer result.

use std::sync::Arc;

use apalis::prelude::{BoxDynError, Data};
use apalis_redis::RedisStorage;
use coldsend_core::account::SenderAccount;
use coldsend_core::jobs::{Dispatch, ValidateAccount, wake_mailbox};
use coldsend_core::storage::accounts::{AccountStore, Recorded, StoreError};
use coldsend_core::storage::ledger::Ledger;
use coldsend_core::storage::mailboxes::MailboxHealth;
use coldsend_core::{ProbeFailure, Protocol, ValidationCode, ValidationReport};
use tracing::{Instrument, info, info_span, warn};

use crate::probe::{self, Login, ProbeContext};
use crate::signin::{SignIn, SignInError};

/// What the handler needs, shared by all its runs.
pub struct ValidateState {
    pub store: AccountStore,
    pub signin: SignIn,
    pub probe: ProbeContext,
    /// A successful validation ends a sending pause and wakes the mailbox's send loop.
    pub health: MailboxHealth,
    pub ledger: Ledger,
    pub dispatch_queue: RedisStorage<Dispatch>,
    /// Tells the master inbox when a DISCONNECTED mailbox is back.
    pub connection: crate::connection_health::ConnectionHealth,
}

pub async fn validate_account(job: ValidateAccount, state: Data<Arc<ValidateState>>) -> Result<(), BoxDynError> {
    let span = info_span!("validate_account", account_id = %job.account_id, generation = job.generation);
    let started = std::time::Instant::now();
    let result = run(job, &state).instrument(span).await;
    crate::metrics::job("validate-account", result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn run(job: ValidateAccount, state: &ValidateState) -> Result<(), BoxDynError> {
    let Some(row) = state.store.get(&job.account_id).await? else {
        info!("account no longer exists; nothing to validate");
        return Ok(());
    };
    if row.generation != job.generation {
        info!(current = row.generation, "a newer validation was requested; skipping this one");
        return Ok(());
    }
    let report = match check(state, &row.account).await {
        Ok(report) => report,
        Err(SignInError::Gone) => return Ok(()),
        // A wrong encryption key is an operator error that retrying cannot fix: the account
        // says so instead of waiting in PENDING_VALIDATION forever.
        Err(SignInError::Store(e @ StoreError::Credentials(..))) => unopenable(&e),
        Err(SignInError::Store(e)) => return Err(e.into()),
        // The grant was refused: the account is NEEDS_REAUTH (status, report and event
        // already written); a validation result would only hide that.
        Err(e) if e.needs_reauth() => {
            info!("OAuth2 grant refused; the account needs a new sign-in");
            return Ok(());
        }
        // No access token (token endpoint unreachable, client misconfigured): AUTH_FAILED
        // with the cause, so the operator sees it.
        Err(e) => ValidationReport {
            smtp: Some(e.to_failure(Protocol::Smtp)),
            imap: Some(e.to_failure(Protocol::Imap)),
            checked_at: time::OffsetDateTime::now_utc(),
        },
    };
    match state.store.record_validation(&job.account_id, job.generation, &report).await? {
        Recorded::Stored if report.passed() => {
            info!(status = "ACTIVE", "account validated");
            if state.health.resume(&job.account_id).await? {
                info!("sending pause ended by a successful validation");
                wake_mailbox(&state.ledger, &state.dispatch_queue, &job.account_id, true).await?;
            }
        }
        Recorded::Reconnected => {
            state.connection.reconnected(&row.account).await?;
            state.health.resume(&job.account_id).await?;
            wake_mailbox(&state.ledger, &state.dispatch_queue, &job.account_id, true).await?;
        }
        Recorded::Stored => {
            for f in [&report.smtp, &report.imap].into_iter().flatten() {
                warn!(protocol = ?f.protocol, code = f.code.as_str(), message = %f.message, "validation failed");
            }
        }
        Recorded::Stale => info!("a newer validation was requested meanwhile; result discarded"),
        Recorded::Gone => info!("account was deleted meanwhile; result discarded"),
    }
    Ok(())
}

/// Probes both protocols with the account's logins; an OAuth2 access token refused by
/// either server is fetched anew and both are probed once more.
async fn check(state: &ValidateState, account: &SenderAccount) -> Result<ValidationReport, SignInError> {
    let smtp = state.signin.login(account, Protocol::Smtp, None).await?;
    let Login::Bearer(token) = &smtp else {
        let imap = state.signin.login(account, Protocol::Imap, None).await?;
        return Ok(probe::validate(&state.probe, (&account.smtp, &smtp), (&account.imap, &imap)).await);
    };
    let report = probe::validate(&state.probe, (&account.smtp, &smtp), (&account.imap, &smtp)).await;
    let refused = [&report.smtp, &report.imap].into_iter().flatten().any(|f| f.code == ValidationCode::AuthFailed);
    if !refused {
        return Ok(report);
    }
    info!("access token refused during validation; fetching a new one");
    let fresh = state.signin.login(account, Protocol::Smtp, Some(token)).await?;
    Ok(probe::validate(&state.probe, (&account.smtp, &fresh), (&account.imap, &fresh)).await)
}

/// The report for an account whose sealed passwords this worker's key cannot open.
fn unopenable(e: &StoreError) -> ValidationReport {
    warn!(error = %e, "stored credentials cannot be opened");
    let failure = |protocol| ProbeFailure {
        protocol,
        code: ValidationCode::AuthFailed,
        message: format!(
            "the stored password cannot be decrypted with this worker's encryption key \
             (secrets.encryption_key_file / COLDSEND_ENCRYPTION_KEY differs from the key it was stored with); \
             configure the original key, or register the account again: {e}"
        ),
    };
    ValidationReport {
        smtp: Some(failure(Protocol::Smtp)),
        imap: Some(failure(Protocol::Imap)),
        checked_at: time::OffsetDateTime::now_utc(),
    }
}
