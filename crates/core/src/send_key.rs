//! The identity of one email: (campaign, lead, step). Everything about a send — its
//! record, its place in the due queues, its Message-ID — derives from this key, so a
//! send is recognisable and idempotent wherever it shows up again.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use crate::campaign::CampaignId;
use crate::lead::LeadId;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendKey {
    pub campaign: CampaignId,
    pub lead: LeadId,
    pub step: usize,
}

impl SendKey {
    /// `campaign:lead:step`, the member stored in due queues.
    pub fn member(&self) -> String {
        // Sized once (`format!` would start from nothing and grow).
        let mut member = String::with_capacity(80);
        let _ = write!(member, "{self}");
        member
    }

    pub fn parse_member(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let campaign = parts.next()?.parse().ok()?;
        let lead = LeadId::parse(parts.next()?)?;
        let step = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self { campaign, lead, step })
    }

    pub fn next_step(&self) -> Self {
        Self { step: self.step + 1, ..self.clone() }
    }

    /// Deterministic Message-ID (without angle brackets) in the sender's domain.
    pub fn message_id(&self, sender_domain: &str) -> String {
        let digest = Sha256::digest(self.member().as_bytes());
        let mut id = String::with_capacity(40 + sender_domain.len());
        let _ = write!(id, "cs.{}.", self.step);
        for b in &digest[..12] {
            let _ = write!(id, "{b:02x}");
        }
        id.push('@');
        id.push_str(sender_domain);
        id
    }
}

impl fmt::Display for SendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.campaign, self.lead, self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::EmailAddress;

    #[test]
    fn member_round_trip_and_stable_message_id() {
        let key = SendKey {
            campaign: CampaignId::new_random(),
            lead: LeadId::for_email(&EmailAddress::parse("a@b.co").expect("email")),
            step: 2,
        };
        assert_eq!(SendKey::parse_member(&key.member()), Some(key.clone()));
        assert_eq!(key.to_string(), key.member(), "keys are built from the Display form");
        assert_eq!(key.message_id("x.com"), key.clone().message_id("x.com"));
        assert_ne!(key.message_id("x.com"), key.next_step().message_id("x.com"));
        assert!(SendKey::parse_member("junk").is_none());
    }
}
