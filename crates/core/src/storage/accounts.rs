//! Sender accounts in Redis: the account hash (record, sealed passwords, status,
//! validation generation and report, sending settings), the address index (one account
//! per address, compared case-insensitively) and the listing (keys: [`super::keys`]).

use std::collections::HashMap;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::SecretString;

use crate::account::{AccountId, AccountStatus, NewSenderAccount, SenderAccount};
use crate::capacity::SendingSettings;
use crate::sealed::{SealError, SealingKey};
use crate::validation::ValidationReport;

use super::keys::Keys;
use super::{lua_script, unexpected};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("an account for {email} already exists ({id})")]
    Duplicate { email: String, id: String },
    #[error("stored account {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error(
        "the stored credentials of account {0} cannot be opened ({1}); is secrets.encryption_key the key they were sealed with?"
    )]
    Credentials(String, SealError),
}

impl StoreError {
    /// Whether trying again later can help (Redis unreachable) or not (bad data).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Redis(_))
    }
}

/// A stored account with its validation state.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub account: SenderAccount,
    pub status: AccountStatus,
    pub generation: u64,
    pub report: Option<ValidationReport>,
}

/// Decrypted credentials, only ever held by the worker while it connects.
pub struct Credentials {
    pub smtp_password: SecretString,
    pub imap_password: SecretString,
}

/// What recording a validation result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// The account was deleted meanwhile.
    Gone,
    /// A newer validation request superseded this one.
    Stale,
}

lua_script!(CREATE, "account_create");

lua_script!(REVALIDATE, "account_revalidate");

lua_script!(RECORD, "account_record_validation");

lua_script!(SET_IF_EXISTS, "account_set_field");

lua_script!(DELETE, "account_delete");

/// Sender accounts in Redis.
#[derive(Clone)]
pub struct AccountStore {
    conn: ConnectionManager,
    keys: Keys,
}

impl AccountStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    fn account_key(&self, id: &AccountId) -> String {
        self.keys.account(id)
    }

    fn emails_key(&self) -> String {
        self.keys.account_emails()
    }

    fn index_key(&self) -> String {
        self.keys.accounts()
    }

    /// Stores a new account as PENDING_VALIDATION (generation 1), sealing its passwords.
    pub async fn create(&self, new: NewSenderAccount, key: &SealingKey) -> Result<AccountRow, StoreError> {
        let id = AccountId::new_random();
        let now = time::OffsetDateTime::now_utc();
        let account = SenderAccount {
            id,
            email: new.email,
            display_name: new.display_name,
            inbox_type: new.inbox_type,
            daily_limit: new.daily_limit,
            smtp: new.smtp,
            imap: new.imap,
            created_at: now,
        };
        let record = serde_json::to_string(&account).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let smtp = key.seal(&new.smtp_password, &seal_context(&id, "smtp"));
        let imap = key.seal(&new.imap_password, &seal_context(&id, "imap"));
        let created_ms = now.unix_timestamp_nanos() / 1_000_000;
        let (created, existing): (i64, String) = CREATE
            .key(self.account_key(&id))
            .key(self.emails_key())
            .key(self.index_key())
            .arg(id.to_string())
            // The index is case-insensitive: Carol@Example.Test and carol@example.test are one mailbox.
            .arg(account.email.as_str().to_ascii_lowercase())
            .arg(record)
            .arg(smtp)
            .arg(imap)
            .arg(created_ms.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        if created == 0 {
            return Err(StoreError::Duplicate { email: account.email.to_string(), id: existing });
        }
        Ok(AccountRow { account, status: AccountStatus::PendingValidation, generation: 1, report: None })
    }

    pub async fn get(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError> {
        let fields: HashMap<String, String> = self.conn.clone().hgetall(self.account_key(id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        row_from_fields(id, &fields).map(Some)
    }

    /// All accounts, oldest first.
    pub async fn list(&self) -> Result<Vec<AccountRow>, StoreError> {
        let ids: Vec<AccountId> = {
            let raw: Vec<String> = self.conn.clone().zrange(self.index_key(), 0, -1).await?;
            raw.iter().filter_map(|r| r.parse().ok()).collect()
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One pipelined round trip for all accounts (the sweep lists them every few seconds).
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.account_key(id));
        }
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut rows = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(all) {
            if !fields.is_empty() {
                rows.push(row_from_fields(id, &fields)?);
            }
        }
        Ok(rows)
    }

    /// Marks the account PENDING_VALIDATION under a new generation; `None` if it does not exist.
    pub async fn request_validation(&self, id: &AccountId) -> Result<Option<u64>, StoreError> {
        let generation: i64 = REVALIDATE.key(self.account_key(id)).invoke_async(&mut self.conn.clone()).await?;
        Ok(u64::try_from(generation).ok())
    }

    /// Records a validation outcome if it answers the account's current generation.
    pub async fn record_validation(
        &self,
        id: &AccountId,
        generation: u64,
        report: &ValidationReport,
    ) -> Result<Recorded, StoreError> {
        let status = if report.passed() { AccountStatus::Active } else { AccountStatus::ValidationFailed };
        let json = serde_json::to_string(report).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let outcome: String = RECORD
            .key(self.account_key(id))
            .arg(generation.to_string())
            .arg(status.as_str())
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match outcome.as_str() {
            "stored" => Recorded::Stored,
            "stale" => Recorded::Stale,
            "gone" => Recorded::Gone,
            other => return Err(unexpected("account_record_validation", other).into()),
        })
    }

    /// Removes the account and its credentials; `false` if it did not exist.
    pub async fn delete(&self, id: &AccountId) -> Result<bool, StoreError> {
        let n: i64 = DELETE
            .key(self.account_key(id))
            .key(self.emails_key())
            .key(self.index_key())
            .arg(id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// The account's sending settings; defaults (config time zone, warm-up on, Sent copy
    /// for CUSTOM_SMTP only) until set.
    pub async fn sending_settings(
        &self,
        account: &SenderAccount,
        default_timezone: &str,
    ) -> Result<SendingSettings, StoreError> {
        let raw: Option<String> = self.conn.clone().hget(self.account_key(&account.id), "sending").await?;
        if let Some(s) = raw.and_then(|r| serde_json::from_str(&r).ok()) {
            return Ok(s);
        }
        Ok(SendingSettings {
            timezone: default_timezone.to_owned(),
            warmup: true,
            append_to_sent: account.inbox_type == crate::account::InboxType::CustomSmtp,
            scan_interval_secs: None,
            imap_sent_folder: None,
            sent_folder_authoritative: None,
        })
    }

    /// Stores the account's sending settings; `false` if the account does not exist.
    pub async fn set_sending_settings(&self, id: &AccountId, settings: &SendingSettings) -> Result<bool, StoreError> {
        let json = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let n: i64 = SET_IF_EXISTS
            .key(self.account_key(id))
            .arg("sending")
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Opens the account's sealed passwords.
    pub async fn credentials(&self, id: &AccountId, key: &SealingKey) -> Result<Option<Credentials>, StoreError> {
        let (smtp, imap): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.account_key(id))
            .arg("smtp_password")
            .arg("imap_password")
            .query_async(&mut self.conn.clone())
            .await?;
        let (Some(smtp), Some(imap)) = (smtp, imap) else { return Ok(None) };
        let open = |sealed: &str, proto: &str| {
            key.open(sealed, &seal_context(id, proto)).map_err(|e| StoreError::Credentials(id.to_string(), e))
        };
        Ok(Some(Credentials { smtp_password: open(&smtp, "smtp")?, imap_password: open(&imap, "imap")? }))
    }
}

fn seal_context(id: &AccountId, proto: &str) -> String {
    format!("coldsend/account/{id}/{proto}_password")
}

fn row_from_fields(id: &AccountId, f: &HashMap<String, String>) -> Result<AccountRow, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(id.to_string(), what.to_owned());
    let account: SenderAccount = serde_json::from_str(f.get("record").ok_or_else(|| corrupt("no record"))?)
        .map_err(|e| corrupt(&e.to_string()))?;
    let status: AccountStatus = serde_json::from_value(serde_json::Value::String(
        f.get("status").cloned().ok_or_else(|| corrupt("no status"))?,
    ))
    .map_err(|e| corrupt(&e.to_string()))?;
    let generation = f.get("generation").and_then(|g| g.parse().ok()).ok_or_else(|| corrupt("bad generation"))?;
    let report = match f.get("report") {
        Some(r) => Some(serde_json::from_str(r).map_err(|e| corrupt(&e.to_string()))?),
        None => None,
    };
    Ok(AccountRow { account, status, generation, report })
}
