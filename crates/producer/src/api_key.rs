//! API keys: random 32-byte tokens; only their SHA-256 digests are configured.
//!
//! A fast hash is the right tool here: keys are long and random, so there is
//! nothing to brute-force that a slow password hash would protect.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh key, `cs_` + 64 hex characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("cs_{}", hex::encode(bytes))
}

/// The hex digest to put in `api.key_hashes`.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Accepted key digests, compared in constant time.
#[derive(Clone, Default)]
pub struct KeyVerifier {
    digests: Vec<[u8; 32]>,
}

impl KeyVerifier {
    /// From hex digests (already checked by settings).
    pub fn from_hex(hashes: &[String]) -> Self {
        let digests = hashes
            .iter()
            .filter_map(|h| hex::decode(h).ok())
            .filter_map(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .collect();
        Self { digests }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// True if `presented` hashes to a configured digest. Every digest is compared,
    /// so the time taken does not reveal which (if any) matched.
    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digests.iter().fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_configured_keys() {
        let key = generate();
        let v = KeyVerifier::from_hex(&[hash(&key)]);
        assert!(v.verify(&key));
        assert!(!v.verify("cs_wrong"));
        assert!(!v.verify(""));
        assert!(!KeyVerifier::default().verify(&key));
    }
}
