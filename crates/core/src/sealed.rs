//! Secrets sealed at rest with XChaCha20-Poly1305.
//!
//! A sealed value is `v1.` + base64(nonce ‖ ciphertext). The associated data binds
//! each ciphertext to its account and field, so a value copied onto another account
//! or field fails to open instead of leaking a credential into the wrong place.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

const VERSION: &str = "v1.";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the encryption key must be 32 bytes, given as 64 hex characters or base64 (got {0} bytes)")]
    BadKeyLength(usize),
    #[error("the encryption key is neither hex nor base64")]
    BadKeyEncoding,
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value does not open with this key (wrong key, or tampered)")]
    Open,
}

/// The key that seals and opens credentials. Never printed.
#[derive(Clone)]
pub struct SealingKey {
    aead: XChaCha20Poly1305,
    raw: [u8; 32],
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey([REDACTED])")
    }
}

impl SealingKey {
    /// Parses 32 bytes written as 64 hex characters or as base64.
    pub fn from_text(text: &SecretString) -> Result<Self, SealError> {
        let t = text.expose_secret().trim();
        let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            decode_hex(t).ok_or(SealError::BadKeyEncoding)?
        } else {
            B64.decode(t).map_err(|_| SealError::BadKeyEncoding)?
        };
        if bytes.len() != 32 {
            return Err(SealError::BadKeyLength(bytes.len()));
        }
        let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::BadKeyLength(bytes.len()))?;
        Ok(Self { aead: XChaCha20Poly1305::new(&raw.into()), raw })
    }

    /// A fresh random key as 64 hex characters (for `coldsend keys new-encryption-key`).
    pub fn generate_text() -> String {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A separate 32-byte key for another purpose (e.g. signing unsubscribe links),
    /// so one secret in config serves both without reusing key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"coldsend key derivation\0");
        h.update(purpose.as_bytes());
        h.update(self.raw);
        h.finalize().into()
    }

    pub fn seal(&self, plaintext: &SecretString, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload { msg: plaintext.expose_secret().as_bytes(), aad: context.as_bytes() };
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ct = self.aead.encrypt(XNonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{VERSION}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SealError> {
        let body = sealed.strip_prefix(VERSION).ok_or(SealError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
        if raw.len() <= NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() })
            .map_err(|_| SealError::Open)?;
        String::from_utf8(pt).map(SecretString::from).map_err(|_| SealError::Malformed)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_text(&SecretString::from(SealingKey::generate_text())).expect("key")
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let s = k.seal(&SecretString::from("hunter2"), "acct-1/smtp");
        assert!(!s.contains("hunter2"));
        assert_eq!(k.open(&s, "acct-1/smtp").expect("opens").expose_secret(), "hunter2");
        assert!(matches!(k.open(&s, "acct-2/smtp"), Err(SealError::Open)));
        assert!(matches!(key().open(&s, "acct-1/smtp"), Err(SealError::Open)));
    }

    #[test]
    fn key_formats() {
        assert!(SealingKey::from_text(&SecretString::from("00".repeat(32))).is_ok());
        assert!(SealingKey::from_text(&SecretString::from(B64.encode([7u8; 32]))).is_ok());
        assert!(SealingKey::from_text(&SecretString::from("abcd")).is_err());
    }
}
