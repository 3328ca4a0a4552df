//! Whether a mailbox's server still lets us in: sends and scans report each failure to
//! connect or sign in, and each session opened; enough failures in a row make an ACTIVE
//! account DISCONNECTED (it stops sending and scanning), and the sweep re-validates it on
//! a backoff schedule until a validation passes and it is ACTIVE again.
//!
//! The count, the status change and the re-validation schedule live in the account hash
//! and change only inside Lua scripts, so replicas agree on them and one event is told.

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use coldsend_core::account::SenderAccount;
use coldsend_core::jobs::ValidateAccount;
use coldsend_core::settings::HealthConfig;
use coldsend_core::storage::accounts::{AccountRow, AccountStore, ConnectFailure, StoreError};
use coldsend_core::storage::inbox::{Inbox, InboxEvent, InboxKind};
use coldsend_core::{AccountId, AccountStatus, ProbeFailure, Protocol, ValidationReport};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the re-validation could not be queued: {0}")]
    Queue(String),
}

#[derive(Clone)]
pub struct ConnectionHealth {
    accounts: AccountStore,
    inbox: Inbox,
    validations: RedisStorage<ValidateAccount>,
    config: HealthConfig,
}

impl ConnectionHealth {
    pub fn new(
        accounts: AccountStore,
        inbox: Inbox,
        validations: RedisStorage<ValidateAccount>,
        config: HealthConfig,
    ) -> Self {
        Self { accounts, inbox, validations, config }
    }

    /// Counts a failure to connect or sign in; returns whether the mailbox is now
    /// DISCONNECTED (its loops should stop).
    pub async fn failed(&self, account: &SenderAccount, failure: ProbeFailure) -> Result<bool, HealthError> {
        let words = format!("{:?} {}: {}", failure.protocol, failure.code.as_str(), failure.message);
        let subject = format!("{} {}", protocol_name(failure.protocol), failure.code.as_str());
        let report = match failure.protocol {
            Protocol::Smtp => ValidationReport { smtp: Some(failure), imap: None, checked_at: now() },
            Protocol::Imap => ValidationReport { smtp: None, imap: Some(failure), checked_at: now() },
        };
        let first_retry = chrono::Utc::now().timestamp_millis() + (self.config.reconnect_first_secs * 1000) as i64;
        let limit = self.config.disconnect_after_failures;
        match self.accounts.connect_failed(&account.id, &report, limit, first_retry).await? {
            ConnectFailure::Counted(n) => {
                warn!(failures = n, limit, error = %words, "cannot reach the mailbox's server");
                Ok(false)
            }
            ConnectFailure::NotActive => Ok(false),
            ConnectFailure::Disconnected => {
                warn!(error = %words, "mailbox DISCONNECTED: it stops sending and scanning until a validation passes");
                metrics::counter!("coldsend_accounts_disconnected_total").increment(1);
                let event = InboxEvent::about_account(account, InboxKind::Disconnected, &subject, &words);
                self.inbox.record(&event).await?;
                Ok(true)
            }
        }
    }

    /// A session opened: that protocol's failures in a row start over.
    pub async fn succeeded(&self, account: &AccountId, protocol: Protocol) -> Result<(), HealthError> {
        Ok(self.accounts.connect_succeeded(account, protocol).await?)
    }

    /// Tells the master inbox that a DISCONNECTED mailbox validated and is ACTIVE again.
    pub async fn reconnected(&self, account: &SenderAccount) -> Result<(), HealthError> {
        info!("mailbox reconnected: ACTIVE again");
        let event = InboxEvent::about_account(account, InboxKind::Reconnected, "ACTIVE again", "validation passed");
        self.inbox.record(&event).await?;
        Ok(())
    }

    /// Queues a re-validation for each DISCONNECTED mailbox whose time has come (the
    /// sweep calls this; the script lets one replica win each due time).
    pub async fn revalidate_due(&self, rows: &[AccountRow]) -> Result<(), HealthError> {
        let now = chrono::Utc::now().timestamp_millis();
        let (first, max) = (self.config.reconnect_first_secs * 1000, self.config.reconnect_max_secs * 1000);
        for row in rows.iter().filter(|r| r.status == AccountStatus::Disconnected && r.reconnect_at_ms <= Some(now)) {
            let id = row.account.id;
            if let Some(generation) = self.accounts.reconnect_due(&id, now, first, max).await? {
                self.validations
                    .clone()
                    .push(ValidateAccount { account_id: id, generation })
                    .await
                    .map_err(|e| HealthError::Queue(e.to_string()))?;
                info!(account_id = %id, generation, "re-validating a DISCONNECTED mailbox");
            }
        }
        Ok(())
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Smtp => "SMTP",
        Protocol::Imap => "IMAP",
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
