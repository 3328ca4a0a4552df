//! The token endpoint: one OAuth2 client per provider (or per CUSTOM account), built on
//! the `oauth2` crate over reqwest with redirects off (RFC 6749 §10.4 forbids following
//! them with credentials) and no proxy.

use std::time::Duration;

use coldsend_core::oauth::{AuthMethod, OAuthClient, OAuthProvider};
use coldsend_core::settings::{OAuthProviderSettings, OAuthSettings};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};

/// What went wrong talking to an authorization server, and whether waiting helps.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_grant`: the refresh token (or code) is revoked, expired or was used; only
    /// a new consent helps.
    #[error("the authorization server refused the grant ({0}); sign the mailbox in again")]
    Refused(String),
    /// Unreachable, timed out, or answered with a server error: try again later.
    #[error("the authorization server is unavailable: {0}")]
    Unavailable(String),
    /// Our client is not set up (no client id, a refused client, a bad URL): an operator fix.
    #[error("OAuth2 is not set up correctly: {0}")]
    Misconfigured(String),
}

impl OAuthError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Who we are at an authorization server and where its endpoints are.
#[derive(Clone)]
pub struct ClientSpec {
    pub provider: OAuthProvider,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub authorize_url: Option<String>,
    pub token_url: String,
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
}

impl ClientSpec {
    /// Google's or Microsoft's client from the settings.
    pub fn for_provider(settings: &OAuthSettings, provider: OAuthProvider) -> Result<Self, OAuthError> {
        let p: &OAuthProviderSettings = match provider {
            OAuthProvider::Google => &settings.google,
            OAuthProvider::Microsoft => &settings.microsoft,
            OAuthProvider::Custom => {
                return Err(OAuthError::Misconfigured(
                    "a CUSTOM provider's client comes with the account (auth.client_id, auth.token_url)".into(),
                ));
            }
        };
        if p.client_id.is_empty() {
            return Err(OAuthError::Misconfigured(format!(
                "oauth.{}.client_id is empty: register coldsend as an OAuth client at the provider first (README, \"OAuth2\")",
                provider.slug()
            )));
        }
        let client_secret = p.client_secret().map_err(|e| OAuthError::Misconfigured(e.to_string()))?;
        Ok(Self {
            provider,
            client_id: p.client_id.clone(),
            client_secret,
            authorize_url: Some(p.authorize_url.clone()).filter(|u| !u.is_empty()),
            token_url: p.token_url.clone(),
            device_url: Some(p.device_url.clone()).filter(|u| !u.is_empty()),
            scopes: p.scopes.clone(),
        })
    }

    /// A CUSTOM provider's client as given with the account.
    pub fn custom(client: &OAuthClient, client_secret: Option<SecretString>) -> Self {
        Self {
            provider: OAuthProvider::Custom,
            client_id: client.client_id.clone(),
            client_secret,
            authorize_url: client.authorize_url.clone(),
            token_url: client.token_url.clone(),
            device_url: None,
            scopes: client.scopes.clone(),
        }
    }

    /// The client that refreshes an account's tokens.
    pub fn for_account(
        settings: &OAuthSettings,
        auth: &AuthMethod,
        client_secret: Option<SecretString>,
    ) -> Result<Self, OAuthError> {
        match auth {
            AuthMethod::OAuth2 { provider: OAuthProvider::Custom, client: Some(c) } => {
                Ok(Self::custom(c, client_secret))
            }
            AuthMethod::OAuth2 { provider, .. } => Self::for_provider(settings, *provider),
            AuthMethod::Password => Err(OAuthError::Misconfigured("the account signs in with passwords".into())),
        }
    }

    pub(crate) fn token_url(&self) -> Result<TokenUrl, OAuthError> {
        TokenUrl::new(self.token_url.clone()).map_err(|e| OAuthError::Misconfigured(format!("token URL: {e}")))
    }

    pub(crate) fn auth_url(&self) -> Result<AuthUrl, OAuthError> {
        let url = self
            .authorize_url
            .clone()
            .ok_or_else(|| OAuthError::Misconfigured("no authorization URL (auth.authorize_url for CUSTOM)".into()))?;
        AuthUrl::new(url).map_err(|e| OAuthError::Misconfigured(format!("authorization URL: {e}")))
    }
}

/// Tokens from one token endpoint answer.
pub struct Tokens {
    pub access: SecretString,
    /// A new refresh token, when the server rotated it (Microsoft does; Google does not).
    pub refresh: Option<SecretString>,
    pub lifetime: Duration,
}

/// Talks to token endpoints.
#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
}

/// Assumed when a server leaves `expires_in` out (RFC 6749 makes it optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl TokenClient {
    pub fn new(timeout: Duration) -> Result<Self, OAuthError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| OAuthError::Misconfigured(format!("HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, spec: &ClientSpec, refresh_token: &SecretString) -> Result<Tokens, OAuthError> {
        let client = basic(spec)?.set_token_uri(spec.token_url()?);
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned()))
            .request_async(&self.http)
            .await;
        tokens(answer)
    }

    /// `grant_type=authorization_code` with the PKCE verifier.
    pub async fn exchange_code(
        &self,
        spec: &ClientSpec,
        code: &str,
        verifier: &SecretString,
        redirect_url: &str,
    ) -> Result<Tokens, OAuthError> {
        let redirect = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|e| OAuthError::Misconfigured(format!("redirect URL: {e}")))?;
        let client = basic(spec)?.set_token_uri(spec.token_url()?).set_redirect_uri(redirect);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()))
            .request_async(&self.http)
            .await;
        tokens(answer)
    }
}

pub(crate) fn basic(spec: &ClientSpec) -> Result<BasicClient, OAuthError> {
    let mut client = BasicClient::new(ClientId::new(spec.client_id.clone()));
    if let Some(secret) = &spec.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
    }
    Ok(client)
}

type Answer = Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<oauth2::HttpClientError<reqwest::Error>, oauth2::basic::BasicErrorResponse>,
>;

fn tokens(answer: Answer) -> Result<Tokens, OAuthError> {
    match answer {
        Ok(t) => Ok(Tokens {
            access: SecretString::from(t.access_token().secret().to_owned()),
            refresh: t.refresh_token().map(|r| SecretString::from(r.secret().to_owned())),
            lifetime: t.expires_in().filter(|d| !d.is_zero()).unwrap_or(DEFAULT_LIFETIME),
        }),
        Err(RequestTokenError::ServerResponse(r)) => {
            let detail = match r.error_description() {
                Some(d) => format!("{}: {d}", r.error()),
                None => r.error().to_string(),
            };
            Err(match r.error() {
                BasicErrorResponseType::InvalidGrant => OAuthError::Refused(detail),
                BasicErrorResponseType::Extension(e) if e == "temporarily_unavailable" || e == "server_error" => {
                    OAuthError::Unavailable(detail)
                }
                _ => OAuthError::Misconfigured(detail),
            })
        }
        // Network errors, timeouts, and non-JSON answers (a proxy's or a 5xx HTML page).
        Err(RequestTokenError::Request(e)) => Err(OAuthError::Unavailable(format!("{e}"))),
        Err(RequestTokenError::Parse(e, _)) => Err(OAuthError::Unavailable(format!("unreadable answer: {e}"))),
        Err(RequestTokenError::Other(e)) => Err(OAuthError::Unavailable(e)),
    }
}
