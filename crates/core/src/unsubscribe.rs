//! Signed unsubscribe tokens: `base64url(campaign:lead).base64url(hmac)`.
//!
//! Signed so that nobody can unsubscribe an address they did not receive mail at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::campaign::CampaignId;
use crate::lead::LeadId;

pub struct UnsubscribeSigner {
    key: [u8; 32],
}

impl UnsubscribeSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub fn token(&self, campaign: &CampaignId, lead: &LeadId) -> String {
        let payload = format!("{campaign}:{lead}");
        format!("{}.{}", B64.encode(&payload), B64.encode(self.mac(&payload)))
    }

    /// The (campaign, lead) a valid token names.
    pub fn verify(&self, token: &str) -> Option<(CampaignId, LeadId)> {
        let (p, m) = token.split_once('.')?;
        let payload = String::from_utf8(B64.decode(p).ok()?).ok()?;
        let given = B64.decode(m).ok()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&given).ok()?;
        if given.len() != 16 {
            return None;
        }
        let (c, l) = payload.split_once(':')?;
        Some((c.parse().ok()?, LeadId::parse(l)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::EmailAddress;

    #[test]
    fn tokens_verify_and_resist_tampering() {
        let s = UnsubscribeSigner::new([9; 32]);
        let c = CampaignId::new_random();
        let l = LeadId::for_email(&EmailAddress::parse("a@b.co").expect("email"));
        let t = s.token(&c, &l);
        assert_eq!(s.verify(&t), Some((c, l.clone())));
        assert!(UnsubscribeSigner::new([8; 32]).verify(&t).is_none());
        let other = LeadId::for_email(&EmailAddress::parse("x@b.co").expect("email"));
        let forged = format!("{}.{}", B64.encode(format!("{c}:{other}")), t.split_once('.').expect("dot").1);
        assert!(s.verify(&forged).is_none());
        assert!(s.verify("garbage").is_none());
    }
}
