//! Leads: the people a campaign writes to.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::EmailAddress;

/// Deterministic from the (lower-cased) address, so adding a lead twice is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeadId(String);

impl LeadId {
    pub fn for_email(email: &EmailAddress) -> Self {
        let digest = Sha256::digest(email.as_str().to_ascii_lowercase().as_bytes());
        Self(digest.iter().take(10).map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 20 && s.chars().all(|c| c.is_ascii_hexdigit())).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a lead is in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LeadState {
    /// Waiting for or receiving its steps.
    Active,
    /// Every step sent.
    Completed,
    Replied,
    Bounced,
    Unsubscribed,
    /// On the suppression list when it would have been mailed.
    Suppressed,
    /// Paused by an out-of-office or a domain reply.
    Paused,
    /// A permanent SMTP failure, or a template that cannot be rendered for it.
    Failed,
    /// Taken out by an operator after its thread had started (a lead with sends is
    /// stopped, never erased).
    Stopped,
}

impl LeadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Completed => "COMPLETED",
            Self::Replied => "REPLIED",
            Self::Bounced => "BOUNCED",
            Self::Unsubscribed => "UNSUBSCRIBED",
            Self::Suppressed => "SUPPRESSED",
            Self::Paused => "PAUSED",
            Self::Failed => "FAILED",
            Self::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Completed,
            Self::Replied,
            Self::Bounced,
            Self::Unsubscribed,
            Self::Suppressed,
            Self::Paused,
            Self::Failed,
            Self::Stopped,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A lead as given (JSON or a CSV row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeadInput {
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200, pattern = r"^[^\x00-\x1f]*$"))]
    pub first_name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200, pattern = r"^[^\x00-\x1f]*$"))]
    pub last_name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200, pattern = r"^[^\x00-\x1f]*$"))]
    pub company: Option<String>,
    /// Free-form template variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// A valid lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub id: LeadId,
    pub email: EmailAddress,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub variables: BTreeMap<String, String>,
}

impl Lead {
    /// The lead's own time zone: its `timezone` variable (a CSV column of that name), when
    /// it is an IANA name.
    pub fn timezone(&self) -> Option<chrono_tz::Tz> {
        self.variables.get("timezone").and_then(|t| t.trim().parse().ok())
    }
}

impl LeadInput {
    pub fn into_lead(self) -> Result<Lead, String> {
        let email = EmailAddress::parse(&self.email)?;
        let clean = |v: Option<String>, what: &str| -> Result<Option<String>, String> {
            match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
                Some(s) if s.chars().any(char::is_control) => Err(format!("{what} contains control characters")),
                Some(s) if s.chars().count() > 200 => Err(format!("{what} is longer than 200 characters")),
                other => Ok(other),
            }
        };
        let first_name = clean(self.first_name, "first_name")?;
        let last_name = clean(self.last_name, "last_name")?;
        let company = clean(self.company, "company")?;
        for (k, v) in &self.variables {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("variable name '{k}' must be letters, digits and _"));
            }
            if v.len() > 10_000 {
                return Err(format!("variable '{k}' is longer than 10000 bytes"));
            }
            if k == "timezone" && !v.trim().is_empty() && v.trim().parse::<chrono_tz::Tz>().is_err() {
                return Err(format!("timezone '{v}' is not an IANA time zone such as America/New_York"));
            }
        }
        Ok(Lead { id: LeadId::for_email(&email), email, first_name, last_name, company, variables: self.variables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_address_same_id() {
        let a = EmailAddress::parse("Ann@Example.com").expect("email");
        let b = EmailAddress::parse("ann@example.com").expect("email");
        assert_eq!(LeadId::for_email(&a), LeadId::for_email(&b));
        assert!(LeadId::parse(LeadId::for_email(&a).as_str()).is_some());
    }

    #[test]
    fn rejects_bad_rows() {
        let input = |email: &str| LeadInput {
            email: email.into(),
            first_name: Some("Ann\r\nBcc: x".into()),
            last_name: None,
            company: None,
            variables: BTreeMap::new(),
        };
        assert!(input("not-an-email").into_lead().is_err());
        assert!(input("ann@example.com").into_lead().is_err());
    }
}
