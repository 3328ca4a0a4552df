//! Sender-account operations, shared by the HTTP API and the CLI.

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use coldsend_core::account::{AccountId, NewSenderAccount, SenderAccount};
use coldsend_core::jobs::ValidateAccount;
use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::accounts::{AccountRow, AccountStore, StoreError, Updated};
use coldsend_core::storage::mailboxes::{MailboxHealth, MailboxPause};
use coldsend_core::storage::oauth::OAuthTokens;
use coldsend_core::{AccountStatus, InboxType, ProbeFailure, RequestError, SenderAccountRequest};
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("an account for {email} already exists ({id})")]
    Duplicate { email: String, id: String },
    #[error("no sender account with id '{0}'")]
    NotFound(String),
    /// Redis could not be reached, or stored data cannot be read (see [`StoreError::is_transient`]).
    #[error("storage unavailable: {0}")]
    Store(StoreError),
    #[error("account {id} is stored but its validation could not be queued ({reason}); retry with validate")]
    Enqueue { id: String, reason: String },
}

impl AccountError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            AccountError::Store(e) => e.is_transient(),
            AccountError::Enqueue { .. } => true,
            _ => false,
        }
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate { email, id } => Self::Duplicate { email, id },
            other => Self::Store(other),
        }
    }
}

/// An account as the API and CLI show it: the request's fields minus passwords,
/// plus its status and the last validation's outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub email_address: String,
    pub display_name: String,
    pub inbox_type: InboxType,
    pub daily_limit: u32,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_use_tls: bool,
    pub imap_host: String,
    pub imap_port: u16,
    pub imap_username: String,
    pub imap_use_ssl: bool,
    /// How coldsend signs in: `{"type": "PASSWORD"}`, or `{"type": "OAUTH2", "provider": …}`
    /// (never a secret).
    #[schema(value_type = Object)]
    pub auth: coldsend_core::oauth::AuthMethod,
    pub status: AccountStatus,
    /// The failure that keeps the account from ACTIVE (SMTP's first), if any.
    pub error: Option<ProbeFailure>,
    /// Both protocols' outcomes of the last finished validation.
    pub validation: Option<ValidationView>,
    /// Set while sending is paused after sender-side refusals (blocked, spam, DMARC,
    /// quota): until when, why, and the server's words. `POST …/resume-sending` ends it.
    pub sending_pause: Option<MailboxPause>,
    /// While DISCONNECTED: when the next automatic re-validation runs (`POST …/validate`
    /// runs one at once).
    #[schema(format = DateTime)]
    pub next_revalidation_at: Option<String>,
    /// Whether the mailbox works now, and if not why, in one place.
    pub health: HealthView,
    /// Today's usage against the effective cap, which limit binds, the warm-up stage and
    /// when it ends, the next allowed send and the last scan (`GET …/{id}` only).
    pub today: Option<crate::campaigns::UsageView>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The mailbox's health: what it can do now and, if something stops it, why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    pub state: HealthState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// ACTIVE: sends and scans.
    Healthy,
    /// Being validated.
    Pending,
    /// ACTIVE, but sending is paused (sender-side refusals, a quota, the bounce rate).
    SendingPaused,
    Disconnected,
    NeedsReauth,
    ValidationFailed,
}

impl AccountView {
    /// Sets the sending pause and, from it and the status, the health.
    fn with_pause(mut self, pause: Option<MailboxPause>) -> Self {
        let failure = self.error.as_ref().map(|f| format!("{:?} {}: {}", f.protocol, f.code.as_str(), f.message));
        self.health = match (self.status, &pause) {
            (AccountStatus::Active, Some(p)) => {
                HealthView { state: HealthState::SendingPaused, reason: Some(format!("{}: {}", p.reason, p.message)) }
            }
            (AccountStatus::Active, None) => HealthView { state: HealthState::Healthy, reason: None },
            (AccountStatus::PendingValidation, _) => HealthView { state: HealthState::Pending, reason: None },
            (AccountStatus::Disconnected, _) => HealthView { state: HealthState::Disconnected, reason: failure },
            (AccountStatus::NeedsReauth, _) => HealthView { state: HealthState::NeedsReauth, reason: failure },
            (AccountStatus::ValidationFailed, _) => {
                HealthView { state: HealthState::ValidationFailed, reason: failure }
            }
        };
        self.sending_pause = pause;
        self
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationView {
    pub smtp: ProbeView,
    pub imap: ProbeView,
    #[schema(format = DateTime)]
    pub checked_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProbeView {
    pub ok: bool,
    pub code: Option<coldsend_core::ValidationCode>,
    pub message: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl From<AccountRow> for AccountView {
    fn from(row: AccountRow) -> Self {
        let a = row.account;
        let probe = |f: &Option<ProbeFailure>| ProbeView {
            ok: f.is_none(),
            code: f.as_ref().map(|f| f.code),
            message: f.as_ref().map(|f| f.message.clone()),
        };
        let (error, validation) = match &row.report {
            Some(r) => (
                if matches!(
                    row.status,
                    AccountStatus::ValidationFailed | AccountStatus::NeedsReauth | AccountStatus::Disconnected
                ) {
                    r.first_failure().cloned()
                } else {
                    None
                },
                Some(ValidationView { smtp: probe(&r.smtp), imap: probe(&r.imap), checked_at: rfc3339(r.checked_at) }),
            ),
            None => (None, None),
        };
        let view = Self {
            id: a.id.to_string(),
            email_address: a.email.to_string(),
            display_name: a.display_name.as_str().to_owned(),
            inbox_type: a.inbox_type,
            daily_limit: a.daily_limit.get(),
            smtp_host: a.smtp.host.to_string(),
            smtp_port: a.smtp.port.get(),
            smtp_username: a.smtp.username,
            smtp_use_tls: a.smtp.tls,
            imap_host: a.imap.host.to_string(),
            imap_port: a.imap.port.get(),
            imap_username: a.imap.username,
            imap_use_ssl: a.imap.tls,
            auth: a.auth,
            status: row.status,
            error,
            validation,
            sending_pause: None,
            health: HealthView { state: HealthState::Pending, reason: None },
            today: None,
            next_revalidation_at: row
                .reconnect_at_ms
                .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
                .map(rfc3339),
            created_at: rfc3339(a.created_at),
        };
        view.with_pause(None)
    }
}

/// Registers accounts and queues their validation.
#[derive(Clone)]
pub struct AccountService {
    store: AccountStore,
    health: MailboxHealth,
    key: SealingKey,
    validate_queue: RedisStorage<ValidateAccount>,
    tokens: OAuthTokens,
}

/// The body of `PUT /sender-accounts/{id}/oauth`: a new grant for an OAuth2 account.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    #[schema(format = Password)]
    pub refresh_token: String,
    /// CUSTOM only: replaces the stored client secret.
    #[schema(format = Password)]
    pub client_secret: Option<String>,
}

impl AccountService {
    pub fn new(
        store: AccountStore,
        health: MailboxHealth,
        key: SealingKey,
        validate_queue: RedisStorage<ValidateAccount>,
        tokens: OAuthTokens,
    ) -> Self {
        Self { store, health, key, validate_queue, tokens }
    }

    /// Gives an OAuth2 account a new grant (after NEEDS_REAUTH, or to switch the consenting
    /// user's token) and validates it again; its campaigns resume once it is ACTIVE.
    pub async fn relink(&self, id: &str, body: &[u8]) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        let bad =
            |m: String| RequestError::new(coldsend_core::error_code::ErrorCode::InvalidAuth, m, Some("refresh_token"));
        let req: GrantRequest = serde_json::from_slice(body).map_err(|e| {
            bad(format!(
                "expected {{\"refresh_token\": \"…\"}}: {}",
                coldsend_core::error_code::without_value(&e.to_string())
            ))
        })?;
        let row = self.store.get(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        if !row.account.auth.is_oauth() {
            return Err(bad("this account signs in with passwords; register it with auth.type OAUTH2".into()).into());
        }
        let valid = |t: &str| !t.is_empty() && t.len() <= 8192 && !t.chars().any(|c| c.is_control() || c == ' ');
        if !valid(&req.refresh_token) || req.client_secret.as_deref().is_some_and(|s| !valid(s)) {
            return Err(bad("refresh_token and client_secret must be 1-8192 printable characters".into()).into());
        }
        self.relink_grant(
            &row.account,
            SecretString::from(req.refresh_token),
            req.client_secret.map(SecretString::from),
        )
        .await
    }

    /// Stores a new grant for an existing OAuth2 account and queues its validation.
    pub async fn relink_grant(
        &self,
        account: &SenderAccount,
        refresh_token: SecretString,
        client_secret: Option<SecretString>,
    ) -> Result<AccountView, AccountError> {
        let generation = self
            .tokens
            .relink(account, &self.key, &refresh_token, client_secret.as_ref())
            .await
            .map_err(|e| AccountError::Store(e.into()))?
            .ok_or_else(|| AccountError::NotFound(account.id.to_string()))?;
        tracing::info!(account_id = %account.id, "OAuth2 grant replaced; validating again");
        self.enqueue(account.id, generation).await?;
        self.get(&account.id.to_string()).await
    }

    /// The stored account with this address (any case), if any.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<AccountRow>, AccountError> {
        match self.store.id_by_email(email).await? {
            Some(id) => Ok(self.store.get(&id).await?),
            None => Ok(None),
        }
    }

    /// Stores a parsed new account and queues its validation.
    pub async fn register_parsed(&self, new: NewSenderAccount) -> Result<AccountView, AccountError> {
        let row = self.store.create(new, &self.key).await?;
        tracing::info!(account_id = %row.account.id, email = %row.account.email, "sender account registered");
        self.enqueue(row.account.id, row.generation).await?;
        Ok(row.into())
    }

    /// The view of a row, with its sending pause.
    async fn view(&self, row: AccountRow) -> Result<AccountView, AccountError> {
        let pause = self.health.pause(&row.account.id).await.map_err(|e| AccountError::Store(e.into()))?;
        Ok(AccountView::from(row).with_pause(pause))
    }

    /// An operator stops the mailbox sending for `hours` (scans go on; its waiting steps
    /// keep their place). `resume_sending` ends it sooner.
    pub async fn pause_sending(&self, id: &str, hours: u32, note: Option<&str>) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        self.store.get(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        let hours = i64::from(hours.clamp(1, 24 * 365));
        let pause = MailboxPause {
            until_ms: chrono::Utc::now().timestamp_millis() + hours * 3_600_000,
            reason: "operator".into(),
            message: note
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .unwrap_or("paused by an operator")
                .chars()
                .take(200)
                .collect(),
        };
        self.health.pause_by_operator(&parsed, &pause).await.map_err(|e| AccountError::Store(e.into()))?;
        tracing::info!(account_id = %parsed, hours, "sending paused by an operator");
        self.get(id).await
    }

    /// Ends a sending pause now (the operator fixed what was refused).
    pub async fn resume_sending(&self, id: &str) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        self.store.get(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        self.health.resume(&parsed).await.map_err(|e| AccountError::Store(e.into()))?;
        tracing::info!(account_id = %parsed, "sending resumed by an operator");
        self.get(id).await
    }

    /// Parses a raw JSON body, stores the account as PENDING_VALIDATION and queues its
    /// validation. A rejected body stores nothing.
    pub async fn register(&self, body: &[u8]) -> Result<AccountView, AccountError> {
        self.register_parsed(SenderAccountRequest::parse_body(body)?).await
    }

    pub async fn list(&self) -> Result<Vec<AccountView>, AccountError> {
        let rows = self.store.list().await?;
        let ids: Vec<AccountId> = rows.iter().map(|r| r.account.id).collect();
        let pauses = self.health.pauses(&ids).await.map_err(|e| AccountError::Store(e.into()))?;
        Ok(rows
            .into_iter()
            .zip(pauses)
            .map(|(row, sending_pause)| AccountView::from(row).with_pause(sending_pause))
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        let row = self.store.get(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        self.view(row).await
    }

    /// Applies a partial registration body (`PATCH`); a change to hosts, ports, TLS,
    /// usernames or passwords validates the account again before it sends or scans.
    pub async fn update(&self, id: &str, body: &[u8]) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        let row = self.store.get(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        let patched = coldsend_core::account_patch::apply(&row.account, body)?;
        match self.store.update(&patched, &self.key).await? {
            Updated::Gone => return Err(AccountError::NotFound(id.to_owned())),
            Updated::Stored => tracing::info!(account_id = %parsed, "sender account edited"),
            Updated::Revalidate(generation) => {
                tracing::info!(account_id = %parsed, "sender account's connection edited; validating again");
                self.enqueue(parsed, generation).await?;
            }
        }
        self.get(id).await
    }

    /// Starts a new validation; an older one still running will not overwrite it.
    pub async fn revalidate(&self, id: &str) -> Result<AccountView, AccountError> {
        let parsed = parse_id(id)?;
        let generation =
            self.store.request_validation(&parsed).await?.ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        self.enqueue(parsed, generation).await?;
        self.get(id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), AccountError> {
        let parsed = parse_id(id)?;
        if self.store.delete(&parsed).await? {
            tracing::info!(account_id = %parsed, "sender account removed");
            Ok(())
        } else {
            Err(AccountError::NotFound(id.to_owned()))
        }
    }

    async fn enqueue(&self, account_id: AccountId, generation: u64) -> Result<(), AccountError> {
        let mut queue = self.validate_queue.clone();
        queue
            .push(ValidateAccount { account_id, generation })
            .await
            .map_err(|e| AccountError::Enqueue { id: account_id.to_string(), reason: e.to_string() })
    }
}

fn parse_id(id: &str) -> Result<AccountId, AccountError> {
    id.parse().map_err(|_| AccountError::NotFound(id.to_owned()))
}
