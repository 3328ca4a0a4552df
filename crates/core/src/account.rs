//! Sender accounts: the mailboxes coldsend sends from.
//!
//! Each field is a type that can only hold a valid value; [`crate::account_request`]
//! is the one place raw input is turned into them.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::oauth::AuthMethod;

/// Opaque identifier of a sender account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(Uuid);

impl AccountId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AccountId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The kind of mailbox; decides the provider defaults and the maximum daily limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InboxType {
    GoogleWorkspace,
    #[serde(rename = "OUTLOOK_365")]
    Outlook365,
    CustomSmtp,
}

impl InboxType {
    pub const ALL: [InboxType; 3] = [Self::GoogleWorkspace, Self::Outlook365, Self::CustomSmtp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GoogleWorkspace => "GOOGLE_WORKSPACE",
            Self::Outlook365 => "OUTLOOK_365",
            Self::CustomSmtp => "CUSTOM_SMTP",
        }
    }

    /// The provider's own ceiling on messages per day.
    pub fn max_daily_limit(self) -> u32 {
        match self {
            Self::GoogleWorkspace => 2_000,
            Self::Outlook365 => 10_000,
            Self::CustomSmtp => 100_000,
        }
    }

    /// Documented server settings, used when a request leaves them out.
    pub fn preset(self) -> Option<ProviderPreset> {
        match self {
            Self::GoogleWorkspace => {
                Some(ProviderPreset { smtp: ("smtp.gmail.com", 587, true), imap: ("imap.gmail.com", 993, true) })
            }
            Self::Outlook365 => Some(ProviderPreset {
                smtp: ("smtp.office365.com", 587, true),
                imap: ("outlook.office365.com", 993, true),
            }),
            Self::CustomSmtp => None,
        }
    }
}

impl FromStr for InboxType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

/// (host, port, TLS) for SMTP and IMAP of a known provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderPreset {
    pub smtp: (&'static str, u16, bool),
    pub imap: (&'static str, u16, bool),
}

/// A syntactically valid mailbox address (RFC 5321 length limits, no display part).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.len() > 254 {
            return Err("email address is longer than 254 characters".into());
        }
        let parsed = email_address::EmailAddress::from_str(s)
            .map_err(|e| format!("'{raw}' is not a valid email address: {e}"))?;
        // Only a bare address: "Name <a@b>" belongs in display_name.
        if parsed.display_part() != "" || parsed.email() != s {
            return Err(format!("'{raw}' must be a bare address such as name@example.com"));
        }
        let domain = parsed.domain();
        if domain.starts_with('[') || !domain.contains('.') && domain != "localhost" {
            return Err(format!("'{raw}' needs a fully qualified domain"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> String {
        e.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name that is safe inside a `From:` header: no control characters
/// (CR/LF would allow header injection), at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().any(char::is_control) {
            return Err("display name must not contain control characters such as CR or LF".into());
        }
        let s = raw.trim();
        if s.chars().count() > 200 {
            return Err("display name is longer than 200 characters".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<DisplayName> for String {
    fn from(d: DisplayName) -> String {
        d.0
    }
}

/// A DNS name or IP literal to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Host(String);

impl Host {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().trim_end_matches('.');
        if s.is_empty() {
            return Err("host must not be empty".into());
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Self(s.to_owned()));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if s.len() > 253 || !s.split('.').all(label_ok) {
            return Err(format!("'{raw}' is not a valid host name"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Host {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Host> for String {
    fn from(h: Host) -> String {
        h.0
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Port(u16);

impl Port {
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u16::try_from(raw) {
            Ok(p) if p >= 1 => Ok(Self(p)),
            _ => Err(format!("port {raw} is outside 1-65535")),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Port {
    type Error = String;
    fn try_from(p: u16) -> Result<Self, String> {
        Self::parse(i64::from(p))
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

/// A daily sending limit, at least 1 and at most the inbox type's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DailyLimit(u32);

impl DailyLimit {
    pub fn parse(raw: i64, inbox: InboxType) -> Result<Self, String> {
        let max = inbox.max_daily_limit();
        match u32::try_from(raw) {
            Ok(n) if (1..=max).contains(&n) => Ok(Self(n)),
            _ => Err(format!("daily_limit {raw} is outside 1-{max}, the maximum for {}", inbox.as_str())),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where and how to reach one protocol of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: Host,
    pub port: Port,
    /// SMTP: STARTTLS (or implicit TLS on 465). IMAP: implicit TLS.
    pub tls: bool,
    pub username: String,
}

/// A sender account as it arrives, before it is stored: carries its secrets.
#[derive(Debug, Clone)]
pub struct NewSenderAccount {
    pub email: EmailAddress,
    pub display_name: DisplayName,
    pub inbox_type: InboxType,
    pub daily_limit: DailyLimit,
    pub smtp: Endpoint,
    pub imap: Endpoint,
    pub auth: AuthMethod,
    pub secrets: AccountSecrets,
}

impl NewSenderAccount {
    /// The account as stored under `id`, and the secrets to seal apart from it.
    pub fn into_stored(self, id: AccountId, created_at: time::OffsetDateTime) -> (SenderAccount, AccountSecrets) {
        let account = SenderAccount {
            id,
            email: self.email,
            display_name: self.display_name,
            inbox_type: self.inbox_type,
            daily_limit: self.daily_limit,
            smtp: self.smtp,
            imap: self.imap,
            auth: self.auth,
            created_at,
        };
        (account, self.secrets)
    }
}

/// The secrets a new account arrives with; sealed before they are stored.
#[derive(Debug, Clone)]
pub enum AccountSecrets {
    Password { smtp: SecretString, imap: SecretString },
    OAuth2 { refresh_token: SecretString, client_secret: Option<SecretString> },
}

/// Lifecycle of an account: usable for sending only when `Active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AccountStatus {
    PendingValidation,
    Active,
    ValidationFailed,
    /// An OAuth2 account whose grant the provider refused (revoked, expired, consent
    /// withdrawn): it neither sends nor scans until the consent flow is run again.
    NeedsReauth,
    /// Was ACTIVE, then sends or scans failed to connect or sign in too many times in a
    /// row: it neither sends nor scans, and is re-validated on a backoff schedule (or at
    /// once on request) until a validation passes and it is ACTIVE again.
    Disconnected,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 5] =
        [Self::PendingValidation, Self::Active, Self::ValidationFailed, Self::NeedsReauth, Self::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingValidation => "PENDING_VALIDATION",
            Self::Active => "ACTIVE",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::NeedsReauth => "NEEDS_REAUTH",
            Self::Disconnected => "DISCONNECTED",
        }
    }
}

/// A stored sender account, without its passwords (those stay sealed in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderAccount {
    pub id: AccountId,
    pub email: EmailAddress,
    pub display_name: DisplayName,
    pub inbox_type: InboxType,
    pub daily_limit: DailyLimit,
    pub smtp: Endpoint,
    pub imap: Endpoint,
    #[serde(default)]
    pub auth: AuthMethod,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rejects_garbage_and_display_parts() {
        assert!(EmailAddress::parse("john@mydomain.com").is_ok());
        for bad in ["", "john", "john@", "@x.com", "John <john@x.com>", "a b@x.com", "john@nodot"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn display_name_rejects_header_injection() {
        assert!(DisplayName::parse("John Smith from Company").is_ok());
        assert!(DisplayName::parse("John\r\nBcc: victim@x.com").is_err());
        assert!(DisplayName::parse("John\nX").is_err());
    }

    #[test]
    fn daily_limit_obeys_inbox_maximum() {
        assert!(DailyLimit::parse(2_000, InboxType::GoogleWorkspace).is_ok());
        assert!(DailyLimit::parse(2_001, InboxType::GoogleWorkspace).is_err());
        assert!(DailyLimit::parse(10_000, InboxType::Outlook365).is_ok());
        assert!(DailyLimit::parse(10_001, InboxType::Outlook365).is_err());
        assert!(DailyLimit::parse(100_000, InboxType::CustomSmtp).is_ok());
        assert!(DailyLimit::parse(100_001, InboxType::CustomSmtp).is_err());
        assert!(DailyLimit::parse(0, InboxType::CustomSmtp).is_err());
        assert!(DailyLimit::parse(-5, InboxType::CustomSmtp).is_err());
    }

    #[test]
    fn ports_and_hosts() {
        assert!(Port::parse(0).is_err());
        assert!(Port::parse(65_536).is_err());
        assert_eq!(Port::parse(465).map(Port::get), Ok(465));
        assert!(Host::parse("smtp.gmail.com").is_ok());
        assert!(Host::parse("127.0.0.1").is_ok());
        assert!(Host::parse("bad host").is_err());
        assert!(Host::parse("").is_err());
    }
}
