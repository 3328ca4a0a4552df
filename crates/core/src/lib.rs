//! coldsend's domain, free of any protocol adapter.
//!
//! Everything a producer and a worker must agree on lives here: the sender-account
//! types (which cannot hold invalid values), the wire request and its rules, job
//! payloads and queue names, how secrets are sealed at rest, and the Redis keys and
//! scripts that make up the shared state. Nothing in this crate speaks SMTP, IMAP or HTTP.

pub mod account;
pub mod account_patch;
pub mod account_request;
pub mod bounce;
pub mod campaign;
pub mod campaign_patch;
pub mod capacity;
pub mod classify;
pub mod error_code;
pub mod jobs;
pub mod lead;
pub mod oauth;
pub mod schedule;
pub mod sealed;
pub mod send_key;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod template;
pub mod unsubscribe;
pub mod validation;
pub mod webhook;

pub use account::{AccountId, AccountStatus, InboxType, NewSenderAccount, SenderAccount};
pub use account_request::{RequestError, SenderAccountRequest};
pub use validation::{ProbeFailure, Protocol, ValidationCode, ValidationReport};
