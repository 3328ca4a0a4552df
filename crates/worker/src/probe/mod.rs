//! Connection checks for a sender account: can coldsend reach, secure and log in to
//! its SMTP and IMAP servers? Each failure maps to exactly one [`ValidationCode`].
//!
//! Every check runs under one time limit (async-imap has no timeouts of its own, and
//! lettre's covers only the TCP connect), and host names are resolved here first so a
//! DNS failure is told apart from a refused or broken connection.

mod imap;
mod smtp;

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use coldsend_core::account::Endpoint;
use coldsend_core::{ProbeFailure, Protocol, ValidationCode, ValidationReport};
use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;

use crate::trust::TrustStore;

pub use imap::{ImapSession, open_imap_session, probe_imap};
pub use smtp::{SmtpSession, open_session, probe_smtp};

/// What every probe needs besides the account.
#[derive(Clone)]
pub struct ProbeContext {
    pub trust: TrustStore,
    pub helo: ClientId,
    pub time_limit: Duration,
}

/// How to sign in to one protocol: a password (AUTH PLAIN/LOGIN, IMAP LOGIN) or an
/// OAuth2 access token (SASL XOAUTH2 on both).
pub enum Login {
    Password(SecretString),
    Bearer(SecretString),
}

impl Login {
    pub fn is_bearer(&self) -> bool {
        matches!(self, Self::Bearer(_))
    }
}

/// Checks both protocols at once; the account is usable only when both pass.
pub async fn validate(ctx: &ProbeContext, smtp: (&Endpoint, &Login), imap: (&Endpoint, &Login)) -> ValidationReport {
    let (smtp, imap) = tokio::join!(probe_smtp(ctx, smtp.0, smtp.1), probe_imap(ctx, imap.0, imap.1));
    ValidationReport { smtp: smtp.err(), imap: imap.err(), checked_at: time::OffsetDateTime::now_utc() }
}

pub(crate) fn failure(protocol: Protocol, code: ValidationCode, message: impl Into<String>) -> ProbeFailure {
    ProbeFailure { protocol, code, message: message.into() }
}

/// Runs `conversation` under the probe's time limit.
pub(crate) async fn within_limit<F>(ctx: &ProbeContext, protocol: Protocol, conversation: F) -> Result<(), ProbeFailure>
where
    F: Future<Output = Result<(), ProbeFailure>>,
{
    match tokio::time::timeout(ctx.time_limit, conversation).await {
        Ok(result) => result,
        Err(_) => Err(failure(
            protocol,
            ValidationCode::Timeout,
            format!("no complete answer within {} seconds", ctx.time_limit.as_secs_f32()),
        )),
    }
}

/// Resolves the endpoint; failure is HOST_NOT_FOUND.
pub(crate) async fn resolve(protocol: Protocol, ep: &Endpoint) -> Result<Vec<SocketAddr>, ProbeFailure> {
    let host = ep.host.as_str();
    let not_found = |detail: String| {
        failure(protocol, ValidationCode::HostNotFound, format!("cannot resolve host {host}: {detail}"))
    };
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, ep.port.get())).await.map_err(|e| not_found(e.to_string()))?.collect();
    if addrs.is_empty() {
        return Err(not_found("no addresses".into()));
    }
    Ok(addrs)
}

/// Finds the first error of type `T` in a source chain (including io::Error's inner error).
pub(crate) fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
            && let Some(found) = find_in_chain::<T>(inner)
        {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// Maps a network-level error (connect, TLS, read/write) to its code.
pub(crate) fn classify_network(protocol: Protocol, err: &(dyn StdError + 'static), context: &str) -> ProbeFailure {
    if let Some(tls) = find_in_chain::<rustls::Error>(err) {
        return failure(protocol, ValidationCode::SslError, format!("{context}: TLS failed: {tls}"));
    }
    if let Some(io) = find_in_chain::<io::Error>(err) {
        let code = match io.kind() {
            io::ErrorKind::ConnectionRefused => ValidationCode::ConnectionRefused,
            io::ErrorKind::TimedOut => ValidationCode::Timeout,
            _ => ValidationCode::ConnectionFailed,
        };
        return failure(protocol, code, format!("{context}: {io}"));
    }
    failure(protocol, ValidationCode::ConnectionFailed, format!("{context}: {err}"))
}
