//! The outcome of validating a sender account's SMTP and IMAP connections.

use serde::{Deserialize, Serialize};

/// The protocol a probe spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Protocol {
    Smtp,
    Imap,
}

/// Why a connection check failed: exactly one of six codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ValidationCode {
    /// The server rejected the username or password.
    AuthFailed,
    /// The server was reached but the conversation broke (no or bad greeting,
    /// closed connection, protocol error).
    ConnectionFailed,
    /// The protocol did not finish within the time limit.
    Timeout,
    /// The host name did not resolve.
    HostNotFound,
    /// The TLS handshake or certificate verification failed.
    SslError,
    /// Nothing accepts connections on that port.
    ConnectionRefused,
}

impl ValidationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthFailed => "AUTH_FAILED",
            Self::ConnectionFailed => "CONNECTION_FAILED",
            Self::Timeout => "TIMEOUT",
            Self::HostNotFound => "HOST_NOT_FOUND",
            Self::SslError => "SSL_ERROR",
            Self::ConnectionRefused => "CONNECTION_REFUSED",
        }
    }
}

/// One failed probe: which code, and what the server or the network said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeFailure {
    pub protocol: Protocol,
    pub code: ValidationCode,
    /// The server's reply or the network error, never a credential.
    pub message: String,
}

/// Both probes of one validation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationReport {
    /// `None` when the SMTP check passed.
    pub smtp: Option<ProbeFailure>,
    /// `None` when the IMAP check passed.
    pub imap: Option<ProbeFailure>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub checked_at: time::OffsetDateTime,
}

impl ValidationReport {
    /// An account is usable only when both protocols passed.
    pub fn passed(&self) -> bool {
        self.smtp.is_none() && self.imap.is_none()
    }

    /// The failure to show first: SMTP's, since sending is what the account is for.
    pub fn first_failure(&self) -> Option<&ProbeFailure> {
        self.smtp.as_ref().or(self.imap.as_ref())
    }
}
