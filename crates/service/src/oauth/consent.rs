//! The authorization-code flow with PKCE, run by coldsend: `start` checks the account's
//! fields and answers the provider's consent URL; the provider sends the browser back to
//! `/oauth/callback`, where `finish` exchanges the code and creates the account (or gives
//! an existing OAuth2 account its new grant) and queues its validation.
//!
//! The pending sign-in (the account's fields, the PKCE verifier, the redirect URL) is
//! sealed in Redis under a random `state` for `oauth.consent_ttl_secs` and taken out once.

use std::time::Duration;

use coldsend_core::SenderAccountRequest;
use coldsend_core::account_request::RequestError;
use coldsend_core::error_code::ErrorCode;
use coldsend_core::oauth::{AuthMethod, OAuthProvider};
use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::OAuthSettings;
use coldsend_core::storage::oauth::OAuthTokens;
use oauth2::{CsrfToken, PkceCodeChallenge, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{ClientSpec, OAuthError, TokenClient, basic};
use crate::accounts::{AccountError, AccountService, AccountView};

/// What `start` answers: where to send the user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentStart {
    /// Open this in a browser; the provider asks the user to sign in and consent.
    pub authorization_url: String,
    pub state: String,
    pub expires_in: u64,
    /// Where the provider will send the browser back (must be registered with the provider).
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("this sign-in is unknown or expired (it is good for one callback within its time); start again")]
    UnknownState,
    #[error("the provider did not grant access: {0}")]
    Denied(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("storage unavailable: {0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Serialize, Deserialize)]
struct Pending {
    request: Value,
    verifier: String,
    redirect_url: String,
}

/// Runs sign-ins.
#[derive(Clone)]
pub struct Consent {
    tokens: OAuthTokens,
    accounts: AccountService,
    key: SealingKey,
    client: TokenClient,
    settings: OAuthSettings,
    redirect_url: String,
}

impl Consent {
    pub fn new(
        tokens: OAuthTokens,
        accounts: AccountService,
        key: SealingKey,
        settings: OAuthSettings,
        default_redirect: String,
    ) -> Result<Self, OAuthError> {
        let client = TokenClient::new(Duration::from_secs(settings.request_timeout_secs.max(1)))?;
        let redirect_url =
            if settings.redirect_url.is_empty() { default_redirect } else { settings.redirect_url.clone() };
        Ok(Self { tokens, accounts, key, client, settings, redirect_url })
    }

    /// Checks the account's fields (the registration JSON without a refresh token) and
    /// answers the consent URL. `redirect_url` overrides the configured one (the CLI's
    /// loopback listener).
    pub async fn start(
        &self,
        provider: &str,
        body: &[u8],
        redirect_url: Option<String>,
    ) -> Result<ConsentStart, ConsentError> {
        let provider = OAuthProvider::from_slug(provider).ok_or_else(|| {
            RequestError::new(
                ErrorCode::InvalidAuth,
                format!("unknown provider '{provider}'; expected google, microsoft or custom"),
                None,
            )
        })?;
        let mut request: Value = serde_json::from_slice(body).map_err(|e| {
            RequestError::new(ErrorCode::InvalidJson, format!("request body is not valid JSON: {e}"), None)
        })?;
        let Some(object) = request.as_object_mut() else {
            return Err(RequestError::new(ErrorCode::InvalidJson, "request body must be a JSON object", None).into());
        };
        let auth = object.entry("auth").or_insert_with(|| serde_json::json!({}));
        let Some(auth) = auth.as_object_mut() else {
            return Err(RequestError::new(ErrorCode::InvalidAuth, "auth must be an object", Some("auth")).into());
        };
        if auth.contains_key("refresh_token") {
            return Err(RequestError::new(
                ErrorCode::InvalidAuth,
                "auth.refresh_token comes from the sign-in; leave it out (or register with POST /sender-accounts)",
                Some("auth.refresh_token"),
            )
            .into());
        }
        auth.insert("type".into(), "OAUTH2".into());
        auth.insert("provider".into(), provider.as_str().into());
        // Every field is checked now, with a stand-in token, so a mistake shows before
        // the user goes through the provider's pages.
        let mut probe = request.clone();
        probe["auth"]["refresh_token"] = "pending".into();
        let new = SenderAccountRequest::parse_value(probe)?;
        let secret = match &new.secrets {
            coldsend_core::account::AccountSecrets::OAuth2 { client_secret, .. } => client_secret.clone(),
            coldsend_core::account::AccountSecrets::Password { .. } => None,
        };
        let spec = ClientSpec::for_account(&self.settings, &new.auth, secret)?;
        let redirect_url = redirect_url.unwrap_or_else(|| self.redirect_url.clone());
        let redirect = oauth2::RedirectUrl::new(redirect_url.clone())
            .map_err(|e| OAuthError::Misconfigured(format!("redirect URL {redirect_url}: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = basic(&spec)?.set_auth_uri(spec.auth_url()?).set_redirect_uri(redirect);
        let mut url = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(spec.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .add_extra_param("login_hint", new.email.as_str());
        if provider == OAuthProvider::Google {
            // Google issues a refresh token only for offline access, and again only on consent.
            url = url.add_extra_param("access_type", "offline").add_extra_param("prompt", "consent");
        }
        let (url, state) = url.url();
        let pending = Pending { request, verifier: verifier.secret().clone(), redirect_url: redirect_url.clone() };
        let json = SecretString::from(serde_json::to_string(&pending).unwrap_or_default());
        let sealed = self.key.seal(&json, &consent_context(state.secret()));
        let ttl = Duration::from_secs(self.settings.consent_ttl_secs.max(1));
        self.tokens.save_consent(state.secret(), &sealed, ttl).await?;
        tracing::info!(email = %new.email, provider = provider.slug(), "OAuth2 sign-in started");
        Ok(ConsentStart {
            authorization_url: url.to_string(),
            state: state.secret().clone(),
            expires_in: ttl.as_secs(),
            redirect_url,
        })
    }

    /// The provider's callback: exchanges the code, stores the grant, queues validation.
    pub async fn finish(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Result<AccountView, ConsentError> {
        let sealed = self.tokens.take_consent(state).await?.ok_or(ConsentError::UnknownState)?;
        let json = self.key.open(&sealed, &consent_context(state)).map_err(|_| ConsentError::UnknownState)?;
        let pending: Pending = serde_json::from_str(json.expose_secret()).map_err(|_| ConsentError::UnknownState)?;
        if let Some(error) = error {
            return Err(ConsentError::Denied(error.to_owned()));
        }
        let code = code.ok_or_else(|| ConsentError::Denied("the callback carried no code".into()))?;
        let mut request = pending.request;
        let mut probe = request.clone();
        probe["auth"]["refresh_token"] = "pending".into();
        let parsed = SenderAccountRequest::parse_value(probe)?;
        let secret = match &parsed.secrets {
            coldsend_core::account::AccountSecrets::OAuth2 { client_secret, .. } => client_secret.clone(),
            coldsend_core::account::AccountSecrets::Password { .. } => None,
        };
        let spec = ClientSpec::for_account(&self.settings, &parsed.auth, secret.clone())?;
        let verifier = SecretString::from(pending.verifier);
        let tokens = self.client.exchange_code(&spec, code, &verifier, &pending.redirect_url).await?;
        let refresh = tokens.refresh.ok_or_else(|| {
            OAuthError::Misconfigured(
                "the provider issued no refresh token (Microsoft: add the offline_access scope)".into(),
            )
        })?;
        // An OAuth2 account with this address gets the new grant; otherwise a new account.
        if let Some(row) = self.accounts.find_by_email(parsed.email.as_str()).await?
            && matches!(row.account.auth, AuthMethod::OAuth2 { .. })
        {
            tracing::info!(account_id = %row.account.id, "OAuth2 sign-in renewed an existing account's grant");
            return Ok(self.accounts.relink_grant(&row.account, refresh, secret).await?);
        }
        request["auth"]["refresh_token"] = refresh.expose_secret().into();
        let new = SenderAccountRequest::parse_value(request)?;
        Ok(self.accounts.register_parsed(new).await?)
    }
}

fn consent_context(state: &str) -> String {
    format!("coldsend/oauth-consent/{state}")
}
