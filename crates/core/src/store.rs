//! The Redis contract for sender accounts: keys, their fields, and the scripts that
//! change them atomically.
//!
//! Keys (all under one configurable prefix `p`, so deployments and tests can share a
//! Redis):
//! - `p:account:{id}` hash: `record` (account JSON, no secrets), `email`,
//!   `smtp_password` / `imap_password` (sealed, see [`crate::sealed`]), `status`,
//!   `generation` (bumped by each validation request), `report` (last validation JSON);
//! - `p:account-emails` hash: email address → id (one account per address);
//! - `p:accounts` sorted set: id scored by creation time (listing order).

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::SecretString;

use crate::account::{AccountId, AccountStatus, NewSenderAccount, SenderAccount};
use crate::capacity::SendingSettings;
use crate::sealed::{SealError, SealingKey};
use crate::validation::ValidationReport;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("an account for {email} already exists ({id})")]
    Duplicate { email: String, id: String },
    #[error("stored account {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("credentials of account {0}: {1}")]
    Credentials(String, SealError),
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

static CREATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local existing = redis.call('HGET', KEYS[2], ARGV[2])
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'email', ARGV[2], 'smtp_password', ARGV[4],
  'imap_password', ARGV[5], 'status', 'PENDING_VALIDATION', 'generation', 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return {1, ARGV[1]}
"#,
    )
});

static REVALIDATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'status', 'PENDING_VALIDATION')
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
"#,
    )
});

static RECORD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 'stale' end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'report', ARGV[3])
return 'stored'
"#,
    )
});

static SET_IF_EXISTS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#,
    )
});

static DELETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local email = redis.call('HGET', KEYS[1], 'email')
if not email then return 0 end
if redis.call('HGET', KEYS[2], email) == ARGV[1] then redis.call('HDEL', KEYS[2], email) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"#,
    )
});

/// Sender accounts in Redis.
#[derive(Clone)]
pub struct AccountStore {
    conn: ConnectionManager,
    prefix: String,
}

impl AccountStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, prefix: prefix.to_owned() }
    }

    fn account_key(&self, id: &AccountId) -> String {
        format!("{}:account:{id}", self.prefix)
    }

    fn emails_key(&self) -> String {
        format!("{}:account-emails", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:accounts", self.prefix)
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
            .arg(account.email.as_str())
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
            _ => Recorded::Gone,
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
