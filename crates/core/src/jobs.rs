//! Job payloads and the queues they travel on.
//!
//! Queue names are defined here, once, so a producer and a worker can never disagree
//! (apalis-redis would otherwise name a queue after the Rust type path).

use serde::{Deserialize, Serialize};

use crate::account::AccountId;

/// Check an account's SMTP and IMAP connections and record the outcome.
///
/// Safe to run twice: `generation` names the validation request it answers, and a
/// result for an older generation than the account's current one is discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateAccount {
    pub account_id: AccountId,
    pub generation: u64,
}

/// The queues coldsend uses, under one key prefix.
#[derive(Debug, Clone)]
pub struct Queues {
    prefix: String,
}

impl Queues {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Where [`ValidateAccount`] jobs go.
    pub fn validate_account(&self) -> String {
        format!("{}:queue:validate-account", self.prefix)
    }
}
