//! Access tokens shared by every replica: the last one obtained is kept (sealed) with
//! the account, and when it is due one replica — the holder of the account's refresh
//! lease — asks the token endpoint while the others wait for its result. Two replicas
//! never present the same refresh token at once: with rotation and reuse detection
//! (Microsoft, most OIDC servers) the second presentation would revoke the whole grant.

use std::time::Duration;

use coldsend_core::account::SenderAccount;
use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::OAuthSettings;
use coldsend_core::storage::accounts::{AccountStore, Credentials, StoreError};
use coldsend_core::storage::inbox::{Inbox, InboxEvent, InboxKind};
use coldsend_core::storage::oauth::{AccessToken, Grant, Marked, OAuthTokens, Stored};
use coldsend_core::{ProbeFailure, Protocol, ValidationCode, ValidationReport};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};

use super::client::{ClientSpec, OAuthError, TokenClient};

/// Longer than a token request may take, so a live holder never loses it mid-request.
const LEASE: Duration = Duration::from_secs(30);
/// How long a replica waits for another's refresh before giving up for now.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The grant was refused: the account is (now) NEEDS_REAUTH.
    #[error("the OAuth2 grant was refused; the account needs a new sign-in")]
    NeedsReauth,
    #[error("the account has no OAuth2 grant")]
    NoGrant,
    #[error("another replica's token refresh did not finish in time")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl AccessError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::OAuth(e) => e.is_transient(),
            Self::Store(e) => e.is_transient(),
            Self::Busy | Self::Redis(_) => true,
            Self::NeedsReauth | Self::NoGrant => false,
        }
    }
}

/// Hands out access tokens for OAuth2 accounts.
#[derive(Clone)]
pub struct AccessTokens {
    accounts: AccountStore,
    tokens: OAuthTokens,
    inbox: Inbox,
    key: SealingKey,
    client: TokenClient,
    settings: OAuthSettings,
}

impl AccessTokens {
    pub fn new(
        accounts: AccountStore,
        tokens: OAuthTokens,
        inbox: Inbox,
        key: SealingKey,
        settings: OAuthSettings,
    ) -> Result<Self, OAuthError> {
        let client = TokenClient::new(Duration::from_secs(settings.request_timeout_secs.max(1)))?;
        Ok(Self { accounts, tokens, inbox, key, client, settings })
    }

    /// A usable access token for `account`. `refused` is one a server just refused
    /// (revoked early, clock skew): a newer one is fetched unless one is stored already.
    pub async fn access_token(
        &self,
        account: &SenderAccount,
        refused: Option<&SecretString>,
    ) -> Result<SecretString, AccessError> {
        let id = &account.id;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let grant = self.grant(account).await?;
            if let Some(token) = usable(&grant, refused) {
                return Ok(token);
            }
            let holder = uuid::Uuid::new_v4().simple().to_string();
            if self.tokens.try_lease(id, &holder, LEASE).await? {
                let outcome = self.refresh_holding(account, refused).await;
                let _ = self.tokens.release_lease(id, &holder).await;
                match outcome? {
                    Some(token) => return Ok(token),
                    // The grant was replaced while we refreshed: read it again.
                    None => continue,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AccessError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn grant(&self, account: &SenderAccount) -> Result<Grant, AccessError> {
        match self.accounts.credentials(&account.id, &self.key).await? {
            Some(Credentials::OAuth2(g)) => Ok(g),
            _ => Err(AccessError::NoGrant),
        }
    }

    /// With the lease held: read again (the previous holder may have just stored a
    /// token), else refresh and store. `None`: superseded, start over.
    async fn refresh_holding(
        &self,
        account: &SenderAccount,
        refused: Option<&SecretString>,
    ) -> Result<Option<SecretString>, AccessError> {
        let id = &account.id;
        let grant = self.grant(account).await?;
        if let Some(token) = usable(&grant, refused) {
            return Ok(Some(token));
        }
        let spec = ClientSpec::for_account(&self.settings, &account.auth, grant.client_secret.clone())?;
        let started = time::OffsetDateTime::now_utc();
        match self.client.refresh(&spec, &grant.refresh_token).await {
            Ok(t) => {
                let now_ms = (started.unix_timestamp_nanos() / 1_000_000) as i64;
                let lifetime_ms = t.lifetime.as_millis() as i64;
                let access = AccessToken { token: t.access.clone(), expires_at_ms: now_ms + lifetime_ms, lifetime_ms };
                match self.tokens.store(id, &self.key, &grant.refresh_sealed, t.refresh.as_ref(), &access).await? {
                    Stored::Stored => {
                        metrics::counter!("coldsend_oauth_refreshes_total", "outcome" => "ok").increment(1);
                        info!(account_id = %id, rotated = t.refresh.is_some(), lifetime_s = t.lifetime.as_secs(), "access token refreshed");
                        Ok(Some(t.access))
                    }
                    Stored::Superseded => Ok(None),
                    Stored::Gone => Err(AccessError::NoGrant),
                }
            }
            Err(OAuthError::Refused(why)) => {
                metrics::counter!("coldsend_oauth_refreshes_total", "outcome" => "refused").increment(1);
                self.needs_reauth(account, &grant, &why).await?;
                Err(AccessError::NeedsReauth)
            }
            Err(e) => {
                metrics::counter!("coldsend_oauth_refreshes_total", "outcome" => "failed").increment(1);
                warn!(account_id = %id, error = %e, "token refresh failed");
                Err(e.into())
            }
        }
    }

    /// Marks the account NEEDS_REAUTH (once) and files one event in the master inbox.
    async fn needs_reauth(&self, account: &SenderAccount, grant: &Grant, why: &str) -> Result<(), AccessError> {
        let message = format!(
            "the provider refused the OAuth2 grant ({why}): sign the mailbox in again \
             (POST /api/public/v1/sender-accounts/oauth/{}/start, or `coldsend accounts connect`)",
            match &account.auth {
                coldsend_core::oauth::AuthMethod::OAuth2 { provider, .. } => provider.slug(),
                coldsend_core::oauth::AuthMethod::Password => "custom",
            }
        );
        let failure = |protocol| ProbeFailure { protocol, code: ValidationCode::AuthFailed, message: message.clone() };
        let report = ValidationReport {
            smtp: Some(failure(Protocol::Smtp)),
            imap: Some(failure(Protocol::Imap)),
            checked_at: time::OffsetDateTime::now_utc(),
        };
        if self.tokens.needs_reauth(&account.id, &grant.refresh_sealed, &report).await? == Marked::Marked {
            warn!(account_id = %account.id, reason = %why, "OAuth2 grant refused: account NEEDS_REAUTH");
            metrics::counter!("coldsend_accounts_needs_reauth_total").increment(1);
            self.inbox
                .record(&InboxEvent::about_account(account, InboxKind::NeedsReauth, "OAuth2 sign-in needed", &message))
                .await?;
        }
        Ok(())
    }
}

/// The stored access token, unless it is due or is the one just refused.
fn usable(grant: &Grant, refused: Option<&SecretString>) -> Option<SecretString> {
    let access = grant.access.as_ref()?;
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    if access.due(now_ms) || refused.is_some_and(|r| r.expose_secret() == access.token.expose_secret()) {
        return None;
    }
    Some(access.token.clone())
}
