//! OAuth2 sign-in for mailboxes (XOAUTH2): which authorization server issues an
//! account's tokens, and the tokens' lifetimes.
//!
//! An account either signs in with passwords (the provider documentation's JSON) or
//! with OAuth2; an OAuth2 account holds a refresh token (sealed at rest) from which
//! workers get short-lived access tokens. Google and Microsoft take their client and
//! endpoints from `[oauth.google]` / `[oauth.microsoft]`; a `CUSTOM` account carries its
//! own (any RFC 6749 server: a private identity provider, the test harness's).

use serde::{Deserialize, Serialize};

/// Who issues the account's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OAuthProvider {
    Google,
    Microsoft,
    Custom,
}

impl OAuthProvider {
    pub const ALL: [OAuthProvider; 3] = [Self::Google, Self::Microsoft, Self::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "GOOGLE",
            Self::Microsoft => "MICROSOFT",
            Self::Custom => "CUSTOM",
        }
    }

    /// The lower-case name used in URLs and the CLI (`google`, `microsoft`, `custom`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::Custom => "custom",
        }
    }

    pub fn from_slug(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.slug().eq_ignore_ascii_case(s) || p.as_str() == s)
    }
}

/// A `CUSTOM` provider's client and endpoints, stored with the account (its client
/// secret, if any, is sealed beside the refresh token, never here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthClient {
    pub client_id: String,
    pub token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// How coldsend signs in to a mailbox. Records stored before OAuth2 existed have no
/// `auth` and read as `Password`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthMethod {
    #[default]
    Password,
    #[serde(rename = "OAUTH2")]
    OAuth2 {
        provider: OAuthProvider,
        /// Only for `CUSTOM`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<OAuthClient>,
    },
}

impl AuthMethod {
    pub fn is_oauth(&self) -> bool {
        matches!(self, Self::OAuth2 { .. })
    }
}

/// When a fresh access token should be fetched: a margin before it expires of a quarter
/// of its lifetime, at most a minute (so a 30 s token is renewed 7.5 s early, a 1 h
/// token one minute early).
pub fn renew_at_ms(expires_at_ms: i64, lifetime_ms: i64) -> i64 {
    let margin = (lifetime_ms / 4).clamp(0, 60_000);
    expires_at_ms - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_records_read_as_password_and_oauth_round_trips() {
        #[derive(Deserialize)]
        struct Rec {
            #[serde(default)]
            auth: AuthMethod,
        }
        let r: Rec = serde_json::from_str("{}").expect("old record");
        assert_eq!(r.auth, AuthMethod::Password);
        let m = AuthMethod::OAuth2 { provider: OAuthProvider::Microsoft, client: None };
        let j = serde_json::to_value(&m).expect("json");
        assert_eq!(j, serde_json::json!({"type": "OAUTH2", "provider": "MICROSOFT"}));
        assert_eq!(serde_json::from_value::<AuthMethod>(j).expect("back"), m);
    }

    #[test]
    fn renewal_margin_scales_with_lifetime() {
        assert_eq!(renew_at_ms(30_000, 30_000), 22_500);
        assert_eq!(renew_at_ms(3_600_000, 3_600_000), 3_540_000);
        assert_eq!(OAuthProvider::from_slug("google"), Some(OAuthProvider::Google));
        assert_eq!(OAuthProvider::from_slug("MICROSOFT"), Some(OAuthProvider::Microsoft));
        assert_eq!(OAuthProvider::from_slug("x"), None);
    }
}
