//! Signing in to a mailbox: the account's stored credentials become a [`Login`] per
//! protocol — its password, or an OAuth2 access token from the shared
//! [`AccessTokens`] — and a server that refuses an access token gets one more try with a
//! token fetched anew (tokens can be revoked or expire early; a password cannot change
//! under us).

use coldsend_core::account::SenderAccount;
use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::accounts::{AccountStore, Credentials, StoreError};
use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
use coldsend_service::oauth::{AccessError, AccessTokens};
use secrecy::SecretString;

use crate::probe::Login;

#[derive(Clone)]
pub struct SignIn {
    accounts: AccountStore,
    key: SealingKey,
    tokens: AccessTokens,
}

/// Why no login could be made for an account.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the account's credentials are gone")]
    Gone,
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl SignInError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Gone => false,
            Self::Access(e) => e.is_transient(),
        }
    }

    /// The OAuth2 grant was refused: the account is NEEDS_REAUTH now.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, Self::Access(AccessError::NeedsReauth))
    }

    /// As a probe failure (validation): every sign-in problem is AUTH_FAILED, its message
    /// naming the cause.
    pub fn to_failure(&self, protocol: Protocol) -> ProbeFailure {
        ProbeFailure { protocol, code: ValidationCode::AuthFailed, message: self.to_string() }
    }
}

/// A session could not be opened: no login, or the server said no.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    SignIn(#[from] SignInError),
    #[error("{:?} {}: {}", .0.protocol, .0.code.as_str(), .0.message)]
    Refused(ProbeFailure),
}

impl SignIn {
    pub fn new(accounts: AccountStore, key: SealingKey, tokens: AccessTokens) -> Self {
        Self { accounts, key, tokens }
    }

    /// The login for `protocol`. `refused`: an access token a server just refused.
    pub async fn login(
        &self,
        account: &SenderAccount,
        protocol: Protocol,
        refused: Option<&SecretString>,
    ) -> Result<Login, SignInError> {
        match self.accounts.credentials(&account.id, &self.key).await? {
            None => Err(SignInError::Gone),
            Some(Credentials::Password { smtp_password, imap_password }) => Ok(Login::Password(match protocol {
                Protocol::Smtp => smtp_password,
                Protocol::Imap => imap_password,
            })),
            Some(Credentials::OAuth2(_)) => Ok(Login::Bearer(self.tokens.access_token(account, refused).await?)),
        }
    }

    /// Opens a session with `open`; an access token refused with AUTH_FAILED is replaced
    /// once by a freshly fetched one.
    pub async fn open<T, F, Fut>(
        &self,
        account: &SenderAccount,
        protocol: Protocol,
        mut open: F,
    ) -> Result<T, OpenError>
    where
        F: FnMut(Login) -> Fut,
        Fut: Future<Output = Result<T, ProbeFailure>>,
    {
        let login = self.login(account, protocol, None).await?;
        let token = match &login {
            Login::Bearer(t) => Some(t.clone()),
            Login::Password(_) => None,
        };
        match (open(login).await, token) {
            (Ok(session), _) => Ok(session),
            (Err(f), Some(token)) if f.code == ValidationCode::AuthFailed => {
                tracing::info!(account_id = %account.id, ?protocol, "access token refused; fetching a new one");
                let login = self.login(account, protocol, Some(&token)).await?;
                open(login).await.map_err(OpenError::Refused)
            }
            (Err(f), _) => Err(OpenError::Refused(f)),
        }
    }
}
