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
    pub sending: SendingConfig,
    pub scan: ScanConfig,
    pub health: HealthConfig,
    pub webhooks: WebhookConfig,
    pub oauth: OAuthSettings,
    pub dashboard: DashboardSettings,
    pub log: LogSettings,
}

/// The web dashboard `coldsend serve` offers under `/dashboard`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    pub enabled: bool,
    /// The path a reverse proxy serves coldsend under (e.g. `/coldsend` when
    /// `https://ops.example.com/coldsend/dashboard` reaches `coldsend serve`'s `/dashboard`);
    /// links, redirects and the session cookie carry it. Empty: served at the root.
    pub path_prefix: String,
    /// A session ends this many hours after sign-in.
    pub session_hours: u64,
    /// Mark the session cookie `Secure` always. Without it, it is `Secure` when the request
    /// came over TLS through a proxy (`X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self { enabled: true, path_prefix: String::new(), session_hours: 12, secure_cookies: false }
    }
}

/// OAuth2 sign-in: the clients coldsend is registered as at Google and Microsoft, and
/// where the provider sends the browser back after consent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    /// The public URL of `coldsend serve`'s `/oauth/callback`, registered as a redirect
    /// URI at each provider (e.g. `https://coldsend.example.com/oauth/callback`). Empty:
    /// `http://<api.listen>/oauth/callback`.
    pub redirect_url: String,
    /// How long a started sign-in waits for its callback, in seconds.
    pub consent_ttl_secs: u64,
    /// Each token endpoint request must answer within this many seconds.
    pub request_timeout_secs: u64,
    pub google: OAuthProviderSettings,
    pub microsoft: OAuthProviderSettings,
}

/// One provider's OAuth client and endpoints. (Fields left out of the file keep that
/// provider's defaults: the file is layered over [`OAuthSettings::default`].)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthProviderSettings {
    pub client_id: String,
    /// File holding the client secret; wins over the env var. Neither: a public client (PKCE only).
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: String,
    pub authorize_url: String,
    pub token_url: String,
    /// Device authorization endpoint (RFC 8628), for `coldsend accounts connect --device`.
    pub device_url: String,
    pub scopes: Vec<String>,
}

impl OAuthProviderSettings {
    /// The client secret from its file or env var, if either is set.
    pub fn client_secret(&self) -> Result<Option<SecretString>, SettingsError> {
        if let Some(path) = &self.client_secret_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError::Key(format!("cannot read {}: {e}", path.display())))?;
            return Ok(Some(SecretString::from(text.trim().to_owned())));
        }
        Ok(std::env::var(&self.client_secret_env).ok().filter(|v| !v.is_empty()).map(SecretString::from))
    }
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            redirect_url: String::new(),
            consent_ttl_secs: 600,
            request_timeout_secs: 15,
            google: OAuthProviderSettings {
                client_id: String::new(),
                client_secret_file: None,
                client_secret_env: "COLDSEND_OAUTH_GOOGLE_CLIENT_SECRET".into(),
                authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token_url: "https://oauth2.googleapis.com/token".into(),
                device_url: "https://oauth2.googleapis.com/device/code".into(),
                scopes: vec!["https://mail.google.com/".into()],
            },
            microsoft: OAuthProviderSettings {
                client_id: String::new(),
                client_secret_file: None,
                client_secret_env: "COLDSEND_OAUTH_MICROSOFT_CLIENT_SECRET".into(),
                authorize_url: "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize".into(),
                token_url: "https://login.microsoftonline.com/organizations/oauth2/v2.0/token".into(),
                device_url: "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode".into(),
                scopes: vec![
                    "https://outlook.office.com/SMTP.Send".into(),
                    "https://outlook.office.com/IMAP.AccessAsUser.All".into(),
                    "offline_access".into(),
                ],
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Seconds between two scans of a mailbox (an account may set its own).
    pub interval_secs: u64,
    /// No mailbox is scanned more often than this, whatever it asks for.
    pub min_interval_secs: u64,
    /// Folders scanned besides INBOX and Sent, e.g. ["Junk"] (skipped where absent).
    pub extra_folders: Vec<String>,
    /// After a UIDVALIDITY change (or on the first scan), how many recent messages are re-read.
    pub resync_window: u32,
    /// Each IMAP command must answer within this many seconds.
    pub command_timeout_secs: u64,
    /// An out-of-office without a return date pauses the lead this many days.
    pub ooo_pause_days: u32,
    /// Soft bounces of one address before it is suppressed.
    pub soft_bounce_limit: u32,
    /// An UNCERTAIN send not found in Sent after this many seconds is sent again.
    pub uncertain_grace_secs: u64,
    /// IMAP sessions one worker keeps logged in between scans (0: reconnect every scan).
    pub keep_sessions: usize,
    /// A kept session idle longer than this is closed rather than reused.
    pub session_idle_secs: u64,
    /// How long a mailbox's folder list (which folders exist, which is Sent) is reused
    /// between passes before it is listed again (0: every pass). Any folder error lists
    /// again at the next pass.
    pub folder_list_secs: u64,
    /// Watch INBOX with IMAP IDLE where the server offers it (an account may turn it off):
    /// new mail is acted on within seconds; the scheduled passes still run.
    pub idle: bool,
    /// Seconds after which IDLE is ended and issued again (RFC 2177: at most 29 minutes);
    /// the DONE's answer also proves the connection alive.
    pub idle_renew_secs: u64,
    /// Seconds a replica's claim on watching a mailbox lasts without renewal: a dead
    /// replica's mailboxes move to the others within this (plus one claim round).
    pub idle_lease_secs: u64,
    /// Mailboxes one replica watches at most (the rest fall back to polling).
    pub idle_max_mailboxes: usize,
    /// Fresh IMAP logins per second to one server from one replica (providers throttle
    /// bursts of logins from one address); scans and IDLE watchers queue for it.
    pub logins_per_server_per_sec: u32,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            min_interval_secs: 30,
            extra_folders: Vec::new(),
            resync_window: 200,
            command_timeout_secs: 30,
            ooo_pause_days: 7,
            soft_bounce_limit: 3,
            uncertain_grace_secs: 3600,
            keep_sessions: 10_000,
            session_idle_secs: 240,
            folder_list_secs: 600,
            idle: true,
            idle_renew_secs: 300,
            idle_lease_secs: 60,
            idle_max_mailboxes: 10_000,
            logins_per_server_per_sec: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingConfig {
    /// Minimum seconds between two sends of one mailbox (across all workers).
    pub min_gap_secs: u64,
    /// Random extra seconds (0..jitter) added to each gap.
    pub jitter_secs: u64,
    /// Time zone of an account's day when it has none of its own.
    pub default_timezone: String,
    /// Limit for each SMTP step (connect, MAIL, RCPT, DATA, body).
    pub smtp_timeout_secs: u64,
    /// Transient failures (4xx, timeouts before DATA) before a send is FAILED.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base_secs: u64,
    /// A send left SENDING this long by a dead worker is requeued (before DATA) or UNCERTAIN.
    pub stale_send_secs: u64,
    /// A mailbox's dispatcher waits in-process up to this long; longer waits are scheduled jobs.
    pub max_inline_wait_secs: u64,
    /// How often an idle mailbox looks for new work, at most.
    pub idle_poll_secs: u64,
    /// Public base URL of the API for https List-Unsubscribe links; empty: mailto only.
    pub public_base_url: String,
    /// Warm-up ramp per day by account age.
    pub warmup: crate::capacity::WarmupRamp,
    /// How campaigns that do not choose pace their sends: spread over the window, or fast.
    pub pacing: crate::campaign::Pacing,
    /// Sender-side refusals (our mailbox, domain, IP or content refused) within
    /// `sender_refusal_window_secs` that pause a mailbox's sending.
    pub sender_refusal_limit: u32,
    pub sender_refusal_window_secs: u64,
    /// How long such a pause lasts unless an operator resumes the mailbox or a later
    /// validation succeeds.
    pub sender_refusal_pause_secs: u64,
    /// When a sender-side refusal is retried (the step is kept, not failed).
    pub sender_refusal_retry_secs: u64,
}

impl Default for SendingConfig {
    fn default() -> Self {
        Self {
            min_gap_secs: 120,
            jitter_secs: 60,
            default_timezone: "UTC".into(),
            smtp_timeout_secs: 60,
            max_attempts: 8,
            retry_base_secs: 60,
            stale_send_secs: 300,
            max_inline_wait_secs: 30,
            idle_poll_secs: 60,
            public_base_url: String::new(),
            warmup: crate::capacity::WarmupRamp::default(),
            pacing: crate::campaign::Pacing::Spread,
            sender_refusal_limit: 3,
            sender_refusal_window_secs: 3600,
            sender_refusal_pause_secs: 86_400,
            sender_refusal_retry_secs: 3600,
        }
    }
}

/// How webhook deliveries are made and retried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Each delivery (connect, send, answer) must finish within this many seconds.
    pub timeout_secs: u64,
    /// Attempts per event and endpoint before the event is given up for that endpoint.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// Failed deliveries in a row that disable an endpoint (an event tells the operator).
    pub disable_after_failures: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            max_attempts: 10,
            retry_base_secs: 10,
            retry_max_secs: 3600,
            disable_after_failures: 50,
        }
    }
}

/// When a mailbox stops by itself: repeated connection failures (DISCONNECTED).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Sends or scans in a row that fail to connect or sign in before an ACTIVE mailbox
    /// becomes DISCONNECTED (stops sending and scanning).
    pub disconnect_after_failures: u32,
    /// First automatic re-validation of a DISCONNECTED mailbox, seconds after it stopped;
    /// the delay doubles after each failed one, up to `reconnect_max_secs`.
    pub reconnect_first_secs: u64,
    pub reconnect_max_secs: u64,
    /// Bounce-rate guard: a mailbox whose hard bounces among its last `bounce_rate_window`
    /// sends exceed `bounce_rate_limit_percent` (judged once it has `bounce_rate_min_sends`)
    /// stops sending for `bounce_rate_pause_secs` or until an operator resumes it.
    pub bounce_rate_window: u32,
    pub bounce_rate_limit_percent: f64,
    pub bounce_rate_min_sends: u32,
    pub bounce_rate_pause_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            disconnect_after_failures: 5,
            reconnect_first_secs: 60,
            reconnect_max_secs: 3600,
            bounce_rate_window: 100,
            bounce_rate_limit_percent: 5.0,
            bounce_rate_min_sends: 20,
            bounce_rate_pause_secs: 30 * 86_400,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    /// How long one Redis command may take before the connection counts as broken.
    /// The client library's default (500 ms) is shorter than one fork for a snapshot
    /// of a large dataset or a loaded host's scheduling delay, and a broken connection
    /// restarts every queue consumer of a worker.
    pub response_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub listen: String,
    /// /healthz, /readyz and /metrics of the API process.
    pub health_listen: String,
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
    /// Mailboxes one worker sends from at once.
    pub dispatch_concurrency: usize,
    /// Mailboxes one worker scans at once (IMAP round trips mostly wait on the network).
    pub scan_concurrency: usize,
    /// Replica name prefix; empty means the host name. A boot id is always appended.
    pub name: String,
    /// /healthz, /readyz and /metrics of the worker process.
    pub health_listen: String,
    /// On SIGTERM/SIGINT, in-flight jobs get this long to finish (keep it under the
    /// orchestrator's kill timeout: Kubernetes' default is 30 s).
    pub shutdown_grace_secs: u64,
    /// Threads the worker's runtime runs jobs on; 0: one per core it may use (or
    /// `TOKIO_WORKER_THREADS`). Fewer threads hand jobs to one another less often: on a small
    /// machine shared with Redis, 1 sends faster (docs/BENCHMARKS.md).
    pub runtime_threads: usize,
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
        Self { url: "redis://127.0.0.1:6379".into(), key_prefix: "coldsend".into(), response_timeout_secs: 5 }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), health_listen: "127.0.0.1:9091".into(), key_hashes: Vec::new() }
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
        Self {
            validate_concurrency: 8,
            dispatch_concurrency: 64,
            scan_concurrency: 64,
            name: String::new(),
            health_listen: "127.0.0.1:9090".into(),
            shutdown_grace_secs: 20,
            runtime_threads: 0,
        }
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
        let prefix = &self.dashboard.path_prefix;
        if !prefix.is_empty()
            && (!prefix.starts_with('/')
                || prefix.ends_with('/')
                || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c)))
        {
            return invalid("dashboard.path_prefix", "must be empty or a path such as /coldsend (no trailing slash)");
        }
        if self.dashboard.session_hours == 0 || self.dashboard.session_hours > 24 * 30 {
            return invalid("dashboard.session_hours", "must be between 1 and 720");
        }
        for (field, addr) in
            [("api.health_listen", &self.api.health_listen), ("worker.health_listen", &self.worker.health_listen)]
        {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return invalid(field, "must be an address such as 127.0.0.1:9090");
            }
        }
        if !(1..=3600).contains(&self.worker.shutdown_grace_secs) {
            return invalid("worker.shutdown_grace_secs", "must be 1-3600");
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
        if self.worker.runtime_threads > 1024 {
            return invalid("worker.runtime_threads", "must be 0 (one per core) to 1024");
        }
        if !(1..=1000).contains(&self.worker.validate_concurrency) {
            return invalid("worker.validate_concurrency", "must be 1-1000");
        }
        if !(1..=10_000).contains(&self.worker.dispatch_concurrency) {
            return invalid("worker.dispatch_concurrency", "must be 1-10000");
        }
        if !(1..=29 * 60).contains(&self.scan.idle_renew_secs) {
            return invalid("scan.idle_renew_secs", "must be 1-1740 (RFC 2177: IDLE is re-issued within 29 minutes)");
        }
        if !(3..=3600).contains(&self.scan.idle_lease_secs) {
            return invalid("scan.idle_lease_secs", "must be 3-3600");
        }
        if !(1..=10_000).contains(&self.scan.logins_per_server_per_sec) {
            return invalid("scan.logins_per_server_per_sec", "must be 1-10000");
        }
        if !(1..=10_000).contains(&self.worker.scan_concurrency) {
            return invalid("worker.scan_concurrency", "must be 1-10000");
        }
        if self.sending.default_timezone.parse::<chrono_tz::Tz>().is_err() {
            return invalid("sending.default_timezone", "must be an IANA time zone such as Europe/Berlin");
        }
        if self.sending.smtp_timeout_secs == 0 || self.sending.max_attempts == 0 {
            return invalid("sending", "smtp_timeout_secs and max_attempts must be at least 1");
        }
        if self.sending.stale_send_secs <= self.sending.smtp_timeout_secs {
            return invalid("sending.stale_send_secs", "must be longer than smtp_timeout_secs");
        }
        if let Err(e) = self.sending.warmup.check() {
            return invalid("sending.warmup", &e);
        }
        if !self.sending.public_base_url.is_empty()
            && !self.sending.public_base_url.starts_with("https://")
            && !self.sending.public_base_url.starts_with("http://")
        {
            return invalid("sending.public_base_url", "must start with https:// (or http://)");
        }
        if !(1..=1000).contains(&self.health.disconnect_after_failures) {
            return invalid("health.disconnect_after_failures", "must be 1-1000");
        }
        if self.health.reconnect_first_secs == 0 || self.health.reconnect_max_secs < self.health.reconnect_first_secs {
            return invalid("health", "reconnect_first_secs must be at least 1 and at most reconnect_max_secs");
        }
        if !(1..=1000).contains(&self.health.bounce_rate_window)
            || !(0.0..=100.0).contains(&self.health.bounce_rate_limit_percent)
            || self.health.bounce_rate_min_sends == 0
            || self.health.bounce_rate_min_sends > self.health.bounce_rate_window
        {
            return invalid(
                "health",
                "bounce_rate_window 1-1000, bounce_rate_limit_percent 0-100, bounce_rate_min_sends 1-bounce_rate_window",
            );
        }
        if !(1..=300).contains(&self.webhooks.timeout_secs)
            || self.webhooks.max_attempts == 0
            || self.webhooks.retry_base_secs == 0
            || self.webhooks.retry_max_secs < self.webhooks.retry_base_secs
            || self.webhooks.disable_after_failures == 0
        {
            return invalid(
                "webhooks",
                "timeout_secs 1-300; max_attempts, retry_base_secs and disable_after_failures at least 1; \
                 retry_max_secs at least retry_base_secs",
            );
        }
        if !["auto", "text", "json"].contains(&self.log.format.as_str()) {
            return invalid("log.format", "must be auto, text or json");
        }
        Ok(())
    }

    /// The effective settings as TOML with secrets masked (the password in a Redis URL;
    /// API key hashes are shown only as a count), for `--check-config`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.redis.url = redact_url(&self.redis.url);
        shown.api.key_hashes = vec![format!("<{} hash(es)>", self.api.key_hashes.len())];
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render settings: {e}"))
    }

    /// Where the encryption key comes from, for messages (never the key itself).
    pub fn key_source(&self) -> String {
        match &self.secrets.encryption_key_file {
            Some(p) => format!("file {}", p.display()),
            None => format!("environment variable {}", self.secrets.encryption_key_env),
        }
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

/// `--check-config` for both binaries: loads the settings, prints them with secrets
/// masked, checks the encryption key loads and whatever `extra` checks, and returns the
/// exit code (0 usable, 2 not). Never prints a secret.
pub fn check_config_report(path: Option<&Path>, extra: impl Fn(&Settings) -> Result<(), String>) -> i32 {
    let settings = match Settings::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return 2;
        }
    };
    println!("{}", settings.redacted_toml());
    if let Err(e) = settings.sealing_key() {
        eprintln!("invalid configuration: {e} (from {})", settings.key_source());
        return 2;
    }
    if let Err(e) = extra(&settings) {
        eprintln!("invalid configuration: {e}");
        return 2;
    }
    eprintln!("configuration OK (encryption key from {})", settings.key_source());
    0
}

/// A Redis URL with its password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact_url("rediss://app:s3cret@host"), "rediss://app:***@host");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
