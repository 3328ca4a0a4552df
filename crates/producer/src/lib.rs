//! coldsend's producer side: the HTTP API and what only the `coldsend` binary needs.
//!
//! - [`api`]: the HTTP API (axum) and its OpenAPI document, thin adapters over the
//!   services in `coldsend-service`;
//! - [`api_key`]: API keys and their stored hashes;
//! - [`dashboard`]: the web dashboard (server-rendered pages over the same services).
//!
//! The use cases themselves (accounts, campaigns, commands) live in `coldsend-service`,
//! which the worker uses too; nothing here is reachable from the worker.

pub mod api;
pub mod api_key;
pub mod dashboard;
