//! OAuth2 for mailboxes: the token endpoint client ([`client`]), access tokens shared by
//! replicas with one refresh at a time ([`broker`]), and the consent flow ([`consent`]).

pub mod broker;
pub mod client;
pub mod consent;

pub use broker::{AccessError, AccessTokens};
pub use client::{ClientSpec, OAuthError, TokenClient};
pub use consent::{Consent, ConsentError, ConsentStart};
