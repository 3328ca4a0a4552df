//! OAuth2 tokens of an account in Redis: the sealed grant beside the account's other
//! fields, the refresh lease that lets one replica at a time refresh an account's access
//! token, and the single write that keeps a rotated refresh token with its access token.

use redis::aio::ConnectionManager;
use secrecy::SecretString;

use crate::account::{AccountId, SenderAccount};
use crate::sealed::SealingKey;

use super::accounts::seal_context;
use super::keys::Keys;
use super::{lua_script, unexpected};

/// An OAuth2 account's grant as stored, opened.
pub struct Grant {
    pub refresh_token: SecretString,
    pub client_secret: Option<SecretString>,
    /// The last access token any replica obtained.
    pub access: Option<AccessToken>,
    /// The refresh token as sealed in Redis: the fence of [`OAuthTokens::store`] and
    /// [`OAuthTokens::needs_reauth`] (a grant replaced meanwhile is never overwritten).
    pub refresh_sealed: String,
}

/// An access token and when it stops being accepted.
#[derive(Clone)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at_ms: i64,
    pub lifetime_ms: i64,
}

impl AccessToken {
    /// Whether it is time to fetch the next one (see [`crate::oauth::renew_at_ms`]).
    pub fn due(&self, now_ms: i64) -> bool {
        now_ms >= crate::oauth::renew_at_ms(self.expires_at_ms, self.lifetime_ms)
    }
}

/// What storing a refreshed token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// The grant was replaced meanwhile (a re-consent); these tokens are discarded.
    Superseded,
    Gone,
}

/// What marking an account NEEDS_REAUTH did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// The status changed now (exactly one caller sees this per refusal).
    Marked,
    Already,
    Superseded,
    Gone,
}

lua_script!(STORE, "oauth_store_tokens");
lua_script!(NEEDS_REAUTH, "oauth_needs_reauth");
lua_script!(RELINK, "oauth_relink");
lua_script!(RELEASE, "oauth_lease_release");

/// OAuth2 token state of accounts.
#[derive(Clone)]
pub struct OAuthTokens {
    conn: ConnectionManager,
    keys: Keys,
}

impl OAuthTokens {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Takes the account's refresh lease for `ttl` if nobody holds it.
    pub async fn try_lease(
        &self,
        id: &AccountId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, redis::RedisError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.oauth_lease(id))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Ends the lease if `holder` still has it.
    pub async fn release_lease(&self, id: &AccountId, holder: &str) -> Result<bool, redis::RedisError> {
        let n: i64 = RELEASE.key(self.keys.oauth_lease(id)).arg(holder).invoke_async(&mut self.conn.clone()).await?;
        Ok(n == 1)
    }

    /// Stores a refreshed access token with the refresh token to keep (the rotated one,
    /// or the one used), fenced on the refresh token used.
    pub async fn store(
        &self,
        id: &AccountId,
        key: &SealingKey,
        used_sealed: &str,
        rotated: Option<&SecretString>,
        access: &AccessToken,
    ) -> Result<Stored, redis::RedisError> {
        let keep = match rotated {
            Some(new) => key.seal(new, &seal_context(id, "oauth_refresh")),
            None => used_sealed.to_owned(),
        };
        let answer: String = STORE
            .key(self.keys.account(id))
            .arg(used_sealed)
            .arg(keep)
            .arg(key.seal(&access.token, &seal_context(id, "oauth_access")))
            .arg(access.expires_at_ms)
            .arg(access.lifetime_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer.as_str() {
            "stored" => Stored::Stored,
            "superseded" => Stored::Superseded,
            "gone" => Stored::Gone,
            other => return Err(unexpected("oauth_store_tokens", other)),
        })
    }

    /// Marks the account NEEDS_REAUTH because `refused_sealed` was refused.
    pub async fn needs_reauth(
        &self,
        id: &AccountId,
        refused_sealed: &str,
        report: &crate::validation::ValidationReport,
    ) -> Result<Marked, redis::RedisError> {
        let json = serde_json::to_string(report)
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::Client, "report", e.to_string())))?;
        let answer: String = NEEDS_REAUTH
            .key(self.keys.account(id))
            .arg(refused_sealed)
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer.as_str() {
            "marked" => Marked::Marked,
            "already" => Marked::Already,
            "superseded" => Marked::Superseded,
            "gone" => Marked::Gone,
            other => return Err(unexpected("oauth_needs_reauth", other)),
        })
    }

    /// Gives an existing account a new grant and a new validation generation (a client
    /// secret, when given, replaces the stored one); `None` if the account does not exist.
    pub async fn relink(
        &self,
        account: &SenderAccount,
        key: &SealingKey,
        refresh_token: &SecretString,
        client_secret: Option<&SecretString>,
    ) -> Result<Option<u64>, redis::RedisError> {
        let id = &account.id;
        let record = serde_json::to_string(account)
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::Client, "account record", e.to_string())))?;
        let generation: i64 = RELINK
            .key(self.keys.account(id))
            .arg(record)
            .arg(key.seal(refresh_token, &seal_context(id, "oauth_refresh")))
            .arg(client_secret.map(|s| key.seal(s, &seal_context(id, "oauth_client_secret"))).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(u64::try_from(generation).ok())
    }

    /// Keeps a started sign-in (sealed by the caller) until its callback, for `ttl`.
    pub async fn save_consent(
        &self,
        state: &str,
        sealed: &str,
        ttl: std::time::Duration,
    ) -> Result<(), redis::RedisError> {
        redis::cmd("SET")
            .arg(self.keys.oauth_consent(state))
            .arg(sealed)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Takes a started sign-in out (once: a replayed callback finds nothing).
    pub async fn take_consent(&self, state: &str) -> Result<Option<String>, redis::RedisError> {
        redis::cmd("GETDEL").arg(self.keys.oauth_consent(state)).query_async(&mut self.conn.clone()).await
    }
}
