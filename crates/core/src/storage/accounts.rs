//! Sender accounts in Redis: the account hash (record, sealed passwords, status,
//! validation generation and report, sending settings), the address index (one account
//! per address, compared case-insensitively) and the listing (keys: [`super::keys`]).

use std::collections::HashMap;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::SecretString;

use crate::account::{AccountId, AccountSecrets, AccountStatus, NewSenderAccount, SenderAccount};
use crate::capacity::SendingSettings;
use crate::sealed::{SealError, SealingKey};
use crate::validation::{Protocol, ValidationReport};

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
    /// While DISCONNECTED: when the next automatic re-validation is due (ms).
    pub reconnect_at_ms: Option<i64>,
}

/// Decrypted credentials, only ever held by the worker while it connects.
pub enum Credentials {
    Password {
        smtp_password: SecretString,
        imap_password: SecretString,
    },
    /// An OAuth2 account's grant; [`super::oauth::OAuthTokens`] turns it into access tokens.
    OAuth2(super::oauth::Grant),
}

/// What recording a validation result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// Stored, and the account was DISCONNECTED: it is ACTIVE again.
    Reconnected,
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

lua_script!(UPDATE, "account_update");

lua_script!(CONNECT_FAILED, "account_connect_failed");

lua_script!(RECONNECT_DUE, "account_reconnect_due");

/// What storing a patch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Stored,
    /// Stored; this validation generation must pass before the account is ACTIVE again.
    Revalidate(u64),
    Gone,
}

/// What counting a connection or sign-in failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Counted: this many in a row so far.
    Counted(u32),
    /// That was one too many: the account is DISCONNECTED now.
    Disconnected,
    /// The account is not ACTIVE (already DISCONNECTED, being validated) or is gone.
    NotActive,
}

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
        let (account, secrets) = new.into_stored(id, now);
        let record = serde_json::to_string(&account).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let created_ms = now.unix_timestamp_nanos() / 1_000_000;
        let mut call = CREATE.key(self.account_key(&id));
        call.key(self.emails_key())
            .key(self.index_key())
            .arg(id.to_string())
            // The index is case-insensitive: Carol@Example.Test and carol@example.test are one mailbox.
            .arg(account.email.as_str().to_ascii_lowercase())
            .arg(record)
            .arg(created_ms.to_string());
        for (field, value) in sealed_secrets(&id, &secrets, key) {
            call.arg(field).arg(value);
        }
        let (created, existing): (i64, String) = call.invoke_async(&mut self.conn.clone()).await?;
        if created == 0 {
            return Err(StoreError::Duplicate { email: account.email.to_string(), id: existing });
        }
        Ok(AccountRow {
            account,
            status: AccountStatus::PendingValidation,
            generation: 1,
            report: None,
            reconnect_at_ms: None,
        })
    }

    pub async fn get(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError> {
        let fields: HashMap<String, String> = self.conn.clone().hgetall(self.account_key(id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        row_from_fields(id, &fields).map(Some)
    }

    /// The id of the account with this address (any case), from the address index.
    pub async fn id_by_email(&self, email: &str) -> Result<Option<AccountId>, StoreError> {
        let raw: Option<String> = self.conn.clone().hget(self.emails_key(), email.to_ascii_lowercase()).await?;
        Ok(raw.and_then(|r| r.parse().ok()))
    }

    /// All accounts, oldest first.
    pub async fn list(&self) -> Result<Vec<AccountRow>, StoreError> {
        self.list_each().await?.into_iter().collect()
    }

    /// All accounts, oldest first, each read on its own: one unreadable record is its own
    /// error, not the whole list's (the sweep must go on for every other mailbox).
    pub async fn list_each(&self) -> Result<Vec<Result<AccountRow, StoreError>>, StoreError> {
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
        let rows = ids.iter().zip(all).filter(|(_, fields)| !fields.is_empty());
        Ok(rows.map(|(id, fields)| row_from_fields(id, &fields)).collect())
    }

    /// The ids of the ACTIVE accounts, reading only each account's `status` (one pipelined
    /// round trip): for loops that run often over every mailbox and need nothing else.
    pub async fn active_ids(&self) -> Result<Vec<AccountId>, StoreError> {
        let raw: Vec<String> = self.conn.clone().zrange(self.index_key(), 0, -1).await?;
        let ids: Vec<AccountId> = raw.iter().filter_map(|r| r.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.account_key(id), "status");
        }
        let statuses: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let active = AccountStatus::Active.as_str();
        Ok(ids.into_iter().zip(statuses).filter(|(_, s)| s.as_deref() == Some(active)).map(|(id, _)| id).collect())
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
        let (outcome, before): (String, String) = RECORD
            .key(self.account_key(id))
            .arg(generation.to_string())
            .arg(status.as_str())
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match outcome.as_str() {
            "stored" if status == AccountStatus::Active && before == AccountStatus::Disconnected.as_str() => {
                Recorded::Reconnected
            }
            "stored" => Recorded::Stored,
            "stale" => Recorded::Stale,
            "gone" => Recorded::Gone,
            other => return Err(unexpected("account_record_validation", other).into()),
        })
    }

    /// Stores a patched account (and its new passwords, sealed); when its connection
    /// settings or credentials changed, a new validation generation starts.
    pub async fn update(
        &self,
        patched: &crate::account_patch::PatchedAccount,
        key: &SealingKey,
    ) -> Result<Updated, StoreError> {
        let id = patched.account.id;
        let record =
            serde_json::to_string(&patched.account).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let mut call = UPDATE.key(self.account_key(&id));
        call.arg(record).arg(if patched.revalidate { "1" } else { "0" });
        for (field, secret) in &patched.passwords {
            call.arg(*field).arg(key.seal(secret, &seal_context(&id, field)));
        }
        let n: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(match u64::try_from(n) {
            Err(_) => Updated::Gone,
            Ok(0) => Updated::Stored,
            Ok(generation) => Updated::Revalidate(generation),
        })
    }

    /// Counts a failure to connect to or sign in at the account's SMTP or IMAP server
    /// (the protocol of `report`'s failure); the `limit`-th in a row for that protocol
    /// (no session opened between) makes an ACTIVE account DISCONNECTED with
    /// `report` saying which protocol failed how, first re-validated at `reconnect_at_ms`.
    pub async fn connect_failed(
        &self,
        id: &AccountId,
        report: &ValidationReport,
        limit: u32,
        reconnect_at_ms: i64,
    ) -> Result<ConnectFailure, StoreError> {
        let json = serde_json::to_string(report).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        let (outcome, n): (String, u32) = CONNECT_FAILED
            .key(self.account_key(id))
            .arg(limit)
            .arg(json)
            .arg(reconnect_at_ms)
            .arg(connect_failures_field(report.first_failure().map_or(Protocol::Smtp, |f| f.protocol)))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match outcome.as_str() {
            "counted" => ConnectFailure::Counted(n),
            "disconnected" => ConnectFailure::Disconnected,
            "inactive" | "gone" => ConnectFailure::NotActive,
            other => return Err(unexpected("account_connect_failed", other).into()),
        })
    }

    /// A session opened with `protocol`: its count of failures in a row starts over.
    pub async fn connect_succeeded(&self, id: &AccountId, protocol: Protocol) -> Result<(), StoreError> {
        let _: i64 = self.conn.clone().hdel(self.account_key(id), connect_failures_field(protocol)).await?;
        Ok(())
    }

    /// The generation of an automatic re-validation of a DISCONNECTED account, if one is
    /// due now (the next is moved out: `first_delay_ms` doubling up to `max_delay_ms`).
    pub async fn reconnect_due(
        &self,
        id: &AccountId,
        now_ms: i64,
        first_delay_ms: u64,
        max_delay_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let generation: i64 = RECONNECT_DUE
            .key(self.account_key(id))
            .arg(now_ms)
            .arg(first_delay_ms)
            .arg(max_delay_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(u64::try_from(generation).ok())
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
        Ok(SendingSettings::defaults(default_timezone, account.inbox_type == crate::account::InboxType::CustomSmtp))
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

    /// Opens the account's sealed secrets: its passwords, or its OAuth2 grant (refresh
    /// token, client secret and the last access token).
    pub async fn credentials(&self, id: &AccountId, key: &SealingKey) -> Result<Option<Credentials>, StoreError> {
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.account_key(id))
            .arg(&SECRET_FIELDS)
            .query_async(&mut self.conn.clone())
            .await?;
        let get = |i: usize| fields.get(i).cloned().flatten();
        let open = |sealed: &str, field: &str| {
            key.open(sealed, &seal_context(id, field)).map_err(|e| StoreError::Credentials(id.to_string(), e))
        };
        if let Some(refresh_sealed) = get(2) {
            let access = match (get(4), get(5).and_then(|v| v.parse().ok()), get(6).and_then(|v| v.parse().ok())) {
                (Some(sealed), Some(expires_at_ms), Some(lifetime_ms)) => Some(super::oauth::AccessToken {
                    token: open(&sealed, "oauth_access")?,
                    expires_at_ms,
                    lifetime_ms,
                }),
                _ => None,
            };
            return Ok(Some(Credentials::OAuth2(super::oauth::Grant {
                refresh_token: open(&refresh_sealed, "oauth_refresh")?,
                client_secret: get(3).map(|s| open(&s, "oauth_client_secret")).transpose()?,
                access,
                refresh_sealed,
            })));
        }
        let (Some(smtp), Some(imap)) = (get(0), get(1)) else { return Ok(None) };
        Ok(Some(Credentials::Password {
            smtp_password: open(&smtp, "smtp_password")?,
            imap_password: open(&imap, "imap_password")?,
        }))
    }
}

/// The hash field counting one protocol's connection failures in a row.
fn connect_failures_field(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Smtp => "connect_failures_smtp",
        Protocol::Imap => "connect_failures_imap",
    }
}

/// The hash fields holding sealed secrets (and the access token's timing), in the order
/// [`AccountStore::credentials`] reads them.
const SECRET_FIELDS: [&str; 7] = [
    "smtp_password",
    "imap_password",
    "oauth_refresh",
    "oauth_client_secret",
    "oauth_access",
    "oauth_expires_ms",
    "oauth_lifetime_ms",
];

/// The additional data each sealed field is bound to: a sealed value copied into another
/// account or another field does not open.
pub(super) fn seal_context(id: &AccountId, field: &str) -> String {
    format!("coldsend/account/{id}/{field}")
}

/// `(field, sealed value)` for each secret a new account arrives with.
pub(super) fn sealed_secrets(
    id: &AccountId,
    secrets: &AccountSecrets,
    key: &SealingKey,
) -> Vec<(&'static str, String)> {
    let seal = |field: &'static str, v: &SecretString| (field, key.seal(v, &seal_context(id, field)));
    match secrets {
        AccountSecrets::Password { smtp, imap } => vec![seal("smtp_password", smtp), seal("imap_password", imap)],
        AccountSecrets::OAuth2 { refresh_token, client_secret } => {
            std::iter::once(seal("oauth_refresh", refresh_token))
                .chain(client_secret.iter().map(|s| seal("oauth_client_secret", s)))
                .collect()
        }
    }
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
    let reconnect_at_ms = match status {
        AccountStatus::Disconnected => f.get("reconnect_at").and_then(|v| v.parse().ok()),
        _ => None,
    };
    Ok(AccountRow { account, status, generation, report, reconnect_at_ms })
}
