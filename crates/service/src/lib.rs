//! What both binaries run, so that neither needs the other: producer (`coldsend`) and
//! worker (`coldsend-worker`) meet only through Redis.
//!
//! - [`accounts`]: register, list, show, edit, re-validate and remove sender accounts;
//!   [`account_removal`]: taking a mailbox out of its campaigns before it is deleted;
//! - [`campaigns`]: campaigns, leads, usage and unsubscribe; [`leads_csv`]: CSV import;
//!   [`campaign_edits`]: editing and deleting campaigns, taking leads out;
//! - [`commands`]: what one Redis-level command means (parsing, redaction, carrying it
//!   out); the worker owns the loop that reads the stream;
//! - [`exports`]: CSV of a campaign's leads and of the master inbox;
//! - [`connect`]: settings → Redis connection → [`connect::Services`];
//! - [`outgoing`]: one campaign email for one lead at one step, as sent, previewed and test-sent;
//! - [`preview`]: previews and test sends of a campaign's emails;
//! - [`suppression`]: the global suppression list (addresses and domains);
//! - [`webhooks`]: webhook endpoints (the worker delivers);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` on their own port, for both processes.

pub mod account_removal;
pub mod accounts;
pub mod campaign_edits;
pub mod campaigns;
pub mod commands;
pub mod connect;
pub mod exports;
pub mod health;
pub mod leads_csv;
pub mod oauth;
pub mod outgoing;
pub mod preview;
pub mod suppression;
pub mod webhooks;
