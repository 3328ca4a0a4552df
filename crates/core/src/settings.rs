//! Settings: `config/coldsend.toml`, overridden by `COLDSEND_*` environment variables.
//!
//! Nested keys use a double underscore: `COLDSEND_REDIS__URL` sets `redis.url`.
//! `COLDSEND_CONFIG` names the file (default `config/coldsend.toml`, optional).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::sealed::{SealError, SealingKey};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub api: ApiSettings,
    pub secrets: SecretSettings,
    pub validation: ValidationSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub listen: String,
    /// SHA-256 hashes (hex) of the accepted API keys.
    pub key_hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSettings {
    /// File holding the 32-byte credential encryption key (hex or base64). Wins over the env var.
    pub encryption_key_file: Option<PathBuf>,
    /// Environment variable holding the key when no file is given.
    pub encryption_key_env: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// Each protocol's check must finish within this many seconds.
    pub timeout_secs: u64,
    /// Extra PEM CA certificates trusted besides the public web roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// Name sent in EHLO; empty means this machine's host name.
    pub helo_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Validation jobs one worker runs at once.
    pub validate_concurrency: usize,
    /// Replica name prefix; empty means the host name. A boot id is always appended.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// tracing-subscriber EnvFilter directive; RUST_LOG wins when set.
    pub filter: String,
    /// "auto" (text on a terminal, JSON otherwise), "text" or "json".
    pub format: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".into(), key_prefix: "coldsend".into() }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), key_hashes: Vec::new() }
    }
}

impl Default for SecretSettings {
    fn default() -> Self {
        Self { encryption_key_file: None, encryption_key_env: "COLDSEND_ENCRYPTION_KEY".into() }
    }
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self { timeout_secs: 10, extra_ca_files: Vec::new(), helo_name: String::new() }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { validate_concurrency: 8, name: String::new() }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { filter: "info".into(), format: "auto".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("encryption key: {0}")]
    Key(String),
}

impl Settings {
    /// Loads defaults, then the file (if present), then `COLDSEND_*` variables.
    /// An explicitly named file that does not exist is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Self, SettingsError> {
        let from_env = std::env::var_os("COLDSEND_CONFIG").map(PathBuf::from);
        let (path, required) = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(p) => (p, true),
            None => (PathBuf::from("config/coldsend.toml"), false),
        };
        if required && !path.exists() {
            return Err(SettingsError::Invalid {
                field: "config",
                message: format!("config file {} does not exist", path.display()),
            });
        }
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&path))
            // Only nested keys: COLDSEND_CONFIG and the key variable are not settings.
            .merge(Env::prefixed("COLDSEND_").split("__").filter(|k| k.as_str().contains('.')))
            .extract()
            .map_err(Box::new)?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let invalid = |field, message: &str| Err(SettingsError::Invalid { field, message: message.into() });
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return invalid("redis.url", "must start with redis:// or rediss://");
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(char::is_whitespace) {
            return invalid("redis.key_prefix", "must be non-empty without spaces");
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("api.listen", "must be an address such as 127.0.0.1:8080");
        }
        if let Some(bad) =
            self.api.key_hashes.iter().find(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            let shown: String = bad.chars().take(8).collect();
            return invalid(
                "api.key_hashes",
                &format!("'{shown}…' is not a SHA-256 hex digest (use `coldsend keys hash`)"),
            );
        }
        if !(1..=300).contains(&self.validation.timeout_secs) {
            return invalid("validation.timeout_secs", "must be 1-300");
        }
        if !(1..=1000).contains(&self.worker.validate_concurrency) {
            return invalid("worker.validate_concurrency", "must be 1-1000");
        }
        if !["auto", "text", "json"].contains(&self.log.format.as_str()) {
            return invalid("log.format", "must be auto, text or json");
        }
        Ok(())
    }

    /// Reads the credential encryption key from the file or the environment variable.
    pub fn sealing_key(&self) -> Result<SealingKey, SettingsError> {
        let text = match &self.secrets.encryption_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| SettingsError::Key(format!("cannot read {}: {e}", path.display())))?,
            None => std::env::var(&self.secrets.encryption_key_env).map_err(|_| {
                SettingsError::Key(format!(
                    "set secrets.encryption_key_file or the {} environment variable \
                     (generate one with `coldsend keys new-encryption-key`)",
                    self.secrets.encryption_key_env
                ))
            })?,
        };
        SealingKey::from_text(&SecretString::from(text)).map_err(|e: SealError| SettingsError::Key(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/coldsend.toml");
        let from_file: Settings = Figment::from(Toml::file(&path)).extract().expect("config parses");
        assert_eq!(
            serde_json::to_value(&from_file).expect("json"),
            serde_json::to_value(Settings::default()).expect("json"),
            "config/coldsend.toml must list every setting with its default"
        );
    }
}
