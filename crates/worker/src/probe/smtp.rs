//! SMTP check: connect, greeting, EHLO, STARTTLS (or implicit TLS: port 465, or a
//! server silent in plaintext), AUTH, QUIT.

use coldsend_core::account::Endpoint;
use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use secrecy::{ExposeSecret, SecretString};

use super::{ProbeContext, classify_network, failure, resolve, within_limit};

const SMTP: Protocol = Protocol::Smtp;
/// The port where TLS starts before the greeting (RFC 8314).
const IMPLICIT_TLS_PORT: u16 = 465;
/// Ports that always greet in plaintext (STARTTLS follows). Other ports are sniffed.
const PLAINTEXT_PORTS: [u16; 3] = [25, 587, 2525];

pub async fn probe_smtp(ctx: &ProbeContext, ep: &Endpoint, password: &SecretString) -> Result<(), ProbeFailure> {
    within_limit(ctx, SMTP, async {
        let mut conn = open_session(ctx, ep, password).await?;
        // A failed QUIT after a successful AUTH does not make the account unusable.
        let _ = conn.quit().await;
        Ok(())
    })
    .await
}

/// Connects, secures and authenticates: a session ready for MAIL FROM. The caller
/// bounds the time (every step here waits on the network).
pub async fn open_session(
    ctx: &ProbeContext,
    ep: &Endpoint,
    password: &SecretString,
) -> Result<AsyncSmtpConnection, ProbeFailure> {
    let addrs = resolve(SMTP, ep).await?;
    let tls = || {
        ctx.trust
            .smtp_tls(ep.host.as_str())
            .map_err(|e| failure(SMTP, ValidationCode::SslError, format!("TLS setup: {e}")))
    };
    // lettre reads the greeting and sends EHLO as part of connecting.
    let connect =
        |wrapper| AsyncSmtpConnection::connect_tokio1(addrs.as_slice(), Some(ctx.time_limit), &ctx.helo, wrapper, None);
    let port = ep.port.get();
    let mut implicit_tls = ep.tls && port == IMPLICIT_TLS_PORT;
    let mut conn = if implicit_tls {
        connect(Some(tls()?)).await
    } else if !ep.tls || PLAINTEXT_PORTS.contains(&port) {
        connect(None).await
    } else {
        // An unusual port with TLS on: the server either greets in plaintext (then
        // STARTTLS) or waits for a TLS handshake (implicit TLS). Silence for half the
        // limit suggests the latter; a plaintext reply to our handshake means the
        // server was merely slow, so fall back to plaintext.
        match tokio::time::timeout(ctx.time_limit / 2, connect(None)).await {
            Ok(result) => result,
            Err(_) => match connect(Some(tls()?)).await {
                Ok(c) => {
                    implicit_tls = true;
                    Ok(c)
                }
                Err(e) if answered_in_plaintext(&e) => connect(None).await,
                Err(e) => Err(e),
            },
        }
    }
    .map_err(|e| classify_smtp(&e, "connect"))?;
    if ep.tls && !implicit_tls {
        if !conn.can_starttls() {
            conn.abort().await;
            return Err(failure(
                SMTP,
                ValidationCode::SslError,
                "server does not offer STARTTLS, and smtp_use_tls is on".to_owned(),
            ));
        }
        conn.starttls(tls()?, &ctx.helo).await.map_err(|e| classify_smtp(&e, "STARTTLS"))?;
    }
    let creds = Credentials::new(ep.username.clone(), password.expose_secret().to_owned());
    let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds).await;
    if let Err(e) = auth {
        conn.abort().await;
        return Err(classify_auth(&e));
    }
    Ok(conn)
}

/// Our TLS handshake got a plaintext SMTP line back.
fn answered_in_plaintext(err: &lettre::transport::smtp::Error) -> bool {
    matches!(super::find_in_chain::<rustls::Error>(err), Some(rustls::Error::InvalidMessage(_)))
}

fn classify_smtp(err: &lettre::transport::smtp::Error, step: &str) -> ProbeFailure {
    if err.is_permanent() || err.is_transient() {
        return failure(SMTP, ValidationCode::ConnectionFailed, format!("{step}: server replied {err}"));
    }
    if err.is_timeout() {
        return failure(SMTP, ValidationCode::Timeout, format!("{step}: {err}"));
    }
    classify_network(SMTP, err, step)
}

fn classify_auth(err: &lettre::transport::smtp::Error) -> ProbeFailure {
    if err.is_permanent() {
        // 535 5.7.8 and friends: the credentials were refused.
        return failure(SMTP, ValidationCode::AuthFailed, format!("AUTH: server replied {err}"));
    }
    if err.is_client() {
        // No mechanism in common: this server will not accept these credentials.
        return failure(SMTP, ValidationCode::AuthFailed, format!("AUTH: {err} (coldsend supports PLAIN and LOGIN)"));
    }
    classify_smtp(err, "AUTH")
}
