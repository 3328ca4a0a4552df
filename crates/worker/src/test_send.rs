//! The `TestSendJob` handler: sends a stored test send's steps over a fresh SMTP session
//! from the chosen mailbox. Each email is counted against the mailbox's daily cap first;
//! nothing is recorded as a lead's step (no send record, no thread, no Sent copy). Safe
//! to run twice: the record is claimed once before anything goes out.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use coldsend_core::account::EmailAddress;
use coldsend_core::capacity;
use coldsend_core::jobs::TestSendJob;
use coldsend_core::lead::{Lead, LeadId};
use coldsend_core::storage::test_sends::{TestOutcome, TestSendRequest, TestSends, TestStepResult};
use coldsend_core::{AccountStatus, Protocol};
use coldsend_service::outgoing;
use tracing::{Instrument, info, info_span, warn};

use crate::dispatch::DispatchState;
use crate::mailer::{self, Delivery};
use crate::probe;

pub struct TestSendState {
    pub dispatch: Arc<DispatchState>,
    pub store: TestSends,
}

pub async fn test_send(job: TestSendJob, state: Data<Arc<TestSendState>>) -> Result<(), BoxDynError> {
    let span = info_span!("test_send", test_send_id = %job.id);
    let started = std::time::Instant::now();
    let result = run(&job, &state).instrument(span).await;
    crate::metrics::job("test-send", result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn run(job: &TestSendJob, state: &TestSendState) -> Result<(), BoxDynError> {
    let Some(record) = state.store.get(&job.id).await? else {
        info!("test send expired or unknown; nothing to send");
        return Ok(());
    };
    if !state.store.claim(&job.id).await? {
        info!("test send already taken; not sent again");
        return Ok(());
    }
    let results = send_steps(state, &job.id, &record.request).await?;
    state.store.record(&job.id, &results, true).await?;
    info!(steps = results.len(), "test send done");
    Ok(())
}

/// Every step's outcome; a step that cannot go out says why and the others still try.
async fn send_steps(
    state: &TestSendState,
    id: &str,
    req: &TestSendRequest,
) -> Result<Vec<TestStepResult>, BoxDynError> {
    let d = &state.dispatch;
    let result = |step, outcome, detail: String, message_id| TestStepResult { step, outcome, detail, message_id };
    let all_fail = |why: String| req.steps.iter().map(|s| result(*s, TestOutcome::Failed, why.clone(), None)).collect();
    let (Ok(cid), Ok(acct)) = (req.campaign_id.parse(), req.sender_account_id.parse()) else {
        return Ok(all_fail("the stored request is corrupt".into()));
    };
    let (Some(campaign), Some(row)) = (d.campaigns.get(&cid).await?, d.accounts.get(&acct).await?) else {
        return Ok(all_fail("the campaign or the mailbox no longer exists".into()));
    };
    if row.status != AccountStatus::Active {
        return Ok(all_fail(format!("the mailbox is {}", row.status.as_str())));
    }
    let (campaign, account) = (campaign.campaign, row.account);
    let to = EmailAddress::parse(&req.to).map_err(|e| format!("to: {e}"))?;
    let mut lead = match req.lead_id.as_deref().and_then(LeadId::parse) {
        Some(lid) => d.campaigns.lead(&cid, &lid).await?,
        None => None,
    }
    .unwrap_or_else(|| Lead {
        id: LeadId::for_email(&to),
        email: to.clone(),
        first_name: None,
        last_name: None,
        company: None,
        variables: Default::default(),
    });
    lead.email = to;
    let settings = d.accounts.sending_settings(&account, &d.config.default_timezone).await?;
    let step_timeout = Duration::from_secs(d.config.smtp_timeout_secs);
    let mut session = None;
    let mut results = Vec::new();
    for (i, &step) in req.steps.iter().enumerate() {
        let email = match outgoing::test_email(&campaign, &account, &lead, id, step, &req.steps[..i]) {
            Ok(e) => e,
            Err(e) => {
                results.push(result(step, TestOutcome::Unsendable, e.to_string(), None));
                continue;
            }
        };
        let now = Utc::now();
        let cap = capacity::effective_cap(&account, &settings, &d.config.warmup, now);
        let cap_key = d.ledger.keys().cap(&account.id, capacity::local_date(&settings, now));
        if !state.store.reserve(&cap_key, cap).await? {
            results.push(result(
                step,
                TestOutcome::CapReached,
                format!("the mailbox's cap of {cap} is spent today"),
                None,
            ));
            continue;
        }
        if session.is_none() {
            let ctx = &d.connect_context(step_timeout);
            let account = &account;
            let opening = d.signin.open(account, Protocol::Smtp, |login| async move {
                probe::open_session(ctx, &account.smtp, &login).await
            });
            match tokio::time::timeout(step_timeout, opening).await {
                Ok(Ok(s)) => session = Some(s),
                Ok(Err(e)) => {
                    results.push(result(step, TestOutcome::Failed, e.to_string(), None));
                    continue;
                }
                Err(_) => {
                    results.push(result(step, TestOutcome::Failed, "connecting timed out".into(), None));
                    continue;
                }
            }
        }
        let Some(conn) = session.as_mut() else { continue };
        let delivery = mailer::deliver(conn, &email.mail, step_timeout, || async { true }, None).await;
        let (outcome, detail) = match delivery {
            Delivery::Accepted(reply) => (TestOutcome::Sent, reply),
            Delivery::Unknown(e) => (TestOutcome::Unknown, e),
            other => (TestOutcome::Failed, format!("{other:?}")),
        };
        if outcome != TestOutcome::Sent {
            warn!(step, detail = %detail, "test email not sent");
            session = None;
        }
        results.push(result(step, outcome, detail, Some(email.message_id)));
        state.store.record(id, &results, false).await?;
    }
    if let Some(mut s) = session {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.conn.quit()).await;
    }
    Ok(results)
}
