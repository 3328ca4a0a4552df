//! coldsend's worker: takes jobs from Redis and runs them against real mail servers.
//!
//! - [`probe`]: the SMTP and IMAP connection checks (lettre, async-imap), each failure
//!   mapped to exactly one [`coldsend_core::ValidationCode`];
//! - [`trust`]: which certificates a TLS connection accepts;
//! - [`validate_job`]: the `ValidateAccount` job handler;
//! - [`connection_health`]: repeated connection failures → DISCONNECTED, and back;
//! - [`runtime`]: wiring of queues, workers and shutdown.

pub mod bounce_rate;
pub mod command_stream;
pub mod connection_health;
pub mod dispatch;
pub mod idle;
pub mod login_pacer;
pub mod lookahead;
pub mod mailer;
pub mod metrics;
pub mod probe;
pub mod runtime;
pub mod scan;
pub mod sent_copy;
pub mod signin;
pub mod sweeper;
pub mod test_send;
pub mod trust;
pub mod validate_job;
pub mod webhooks;
