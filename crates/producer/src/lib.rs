//! coldsend's producer side: everything that puts work into Redis.
//!
//! - [`accounts`]: register, list, show, re-validate and remove sender accounts; the
//!   one service both the HTTP API and the CLI call;
//! - [`api_key`]: API keys and their stored hashes;
//! - [`api`]: the HTTP API (axum) and its OpenAPI document;
//! - [`campaigns`]: campaigns, leads, usage and unsubscribe; [`leads_csv`]: CSV import;
//! - [`commands`]: the Redis-level command stream for producers in any language;
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` (used by the worker too);
//! - [`connect`]: opening Redis and the queues from settings.

pub mod accounts;
pub mod api;
pub mod api_key;
pub mod campaigns;
pub mod commands;
pub mod connect;
pub mod health;
pub mod leads_csv;
