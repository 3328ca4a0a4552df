//! SMTP check: connect, greeting, EHLO, STARTTLS (or implicit TLS: port 465, or a
//! server silent in plaintext), EHLO, AUTH, QUIT.

use coldsend_core::account::Endpoint;
use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::Ehlo;
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Login, ProbeContext, classify_network, failure, resolve, within_limit};

const SMTP: Protocol = Protocol::Smtp;
/// The port where TLS starts before the greeting (RFC 8314).
const IMPLICIT_TLS_PORT: u16 = 465;
/// Ports that always greet in plaintext (STARTTLS follows). Other ports are sniffed.
const PLAINTEXT_PORTS: [u16; 3] = [25, 587, 2525];

pub async fn probe_smtp(ctx: &ProbeContext, ep: &Endpoint, login: &Login) -> Result<(), ProbeFailure> {
    within_limit(ctx, SMTP, async {
        let mut session = open_session(ctx, ep, login).await?;
        // A failed QUIT after a successful AUTH does not make the account unusable.
        let _ = session.conn.quit().await;
        Ok(())
    })
    .await
}

/// An authenticated SMTP session, and whether its server takes MAIL, RCPT and DATA in one
/// write (RFC 2920 PIPELINING: two round trips fewer per email). lettre neither uses nor
/// records PIPELINING, so the session reads the EHLO answer once more, before AUTH (a
/// client repeats EHLO there after STARTTLS anyway; after AUTH a server might forget it).
pub struct SmtpSession {
    pub conn: AsyncSmtpConnection,
    pub pipelining: bool,
    /// The send whose envelope went out behind the last body (pipelined) and whose
    /// answers are still unread: if they say 354, the server waits for that send's body,
    /// so the session is good for that send alone (or for dropping, which aborts it).
    pub envelope_ahead: Option<coldsend_core::send_key::SendKey>,
}

/// Connects, secures and authenticates: a session ready for MAIL FROM. The caller
/// bounds the time (every step here waits on the network).
pub async fn open_session(ctx: &ProbeContext, ep: &Endpoint, login: &Login) -> Result<SmtpSession, ProbeFailure> {
    let addrs = resolve(SMTP, ep).await?;
    let tls = || {
        ctx.trust
            .smtp_tls(ep.host.as_str())
            .map_err(|e| failure(SMTP, ValidationCode::SslError, format!("TLS setup: {e}")))
    };
    let port = ep.port.get();
    let mut implicit_tls = ep.tls && port == IMPLICIT_TLS_PORT;
    let mut conn = if implicit_tls {
        connect(ctx, ep, &addrs, true).await
    } else if !ep.tls || PLAINTEXT_PORTS.contains(&port) {
        connect(ctx, ep, &addrs, false).await
    } else {
        // An unusual port with TLS on: the server either greets in plaintext (then
        // STARTTLS) or waits for a TLS handshake (implicit TLS). Silence for half the
        // limit suggests the latter; a plaintext reply to our handshake means the
        // server was merely slow, so fall back to plaintext.
        match tokio::time::timeout(ctx.time_limit / 2, connect(ctx, ep, &addrs, false)).await {
            Ok(result) => result,
            Err(_) => match connect(ctx, ep, &addrs, true).await {
                Ok(c) => {
                    implicit_tls = true;
                    Ok(c)
                }
                Err(ConnectError::PlaintextReply(_)) => connect(ctx, ep, &addrs, false).await,
                Err(e) => Err(e),
            },
        }
    }
    .map_err(ConnectError::into_failure)?;
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
    let offered = conn.command(Ehlo::new(ctx.helo.clone())).await.map_err(|e| classify_smtp(&e, "EHLO"))?;
    let pipelining =
        offered.message().any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING")));
    let (secret, mechanisms): (_, &[Mechanism]) = match login {
        Login::Password(p) => (p, &[Mechanism::Plain, Mechanism::Login]),
        // lettre leaves XOAUTH2 out of its defaults: it is asked for by name.
        Login::Bearer(t) => (t, &[Mechanism::Xoauth2]),
    };
    let creds = Credentials::new(ep.username.clone(), secret.expose_secret().to_owned());
    let auth = conn.auth(mechanisms, &creds).await;
    if let Err(e) = auth {
        conn.abort().await;
        return Err(if login.is_bearer() { classify_bearer(&e) } else { classify_auth(&e) });
    }
    Ok(SmtpSession { conn, pipelining, envelope_ahead: None })
}

enum ConnectError {
    Failed(ProbeFailure),
    /// Our TLS handshake got a plaintext SMTP line back.
    PlaintextReply(ProbeFailure),
}

impl ConnectError {
    fn into_failure(self) -> ProbeFailure {
        match self {
            Self::Failed(f) | Self::PlaintextReply(f) => f,
        }
    }
}

/// TCP (with TCP_NODELAY: lettre writes a message body and its final dot separately,
/// and Nagle's algorithm would hold the dot for a delayed ACK), then implicit TLS if
/// asked, then lettre reads the greeting and sends EHLO.
async fn connect(
    ctx: &ProbeContext,
    ep: &Endpoint,
    addrs: &[std::net::SocketAddr],
    implicit_tls: bool,
) -> Result<AsyncSmtpConnection, ConnectError> {
    let tcp =
        TcpStream::connect(addrs).await.map_err(|e| ConnectError::Failed(classify_network(SMTP, &e, "connect")))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn AsyncTokioStream> = if implicit_tls {
        let name = ServerName::try_from(ep.host.as_str().to_owned()).map_err(|e| {
            ConnectError::Failed(failure(SMTP, ValidationCode::SslError, format!("host is not a valid TLS name: {e}")))
        })?;
        let tls = TlsConnector::from(ctx.trust.rustls_config()).connect(name, tcp).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return ConnectError::Failed(failure(
                    SMTP,
                    ValidationCode::ConnectionFailed,
                    "server closed the connection during the TLS handshake",
                ));
            }
            let f = classify_network(SMTP, &e, "TLS handshake");
            if matches!(super::find_in_chain::<rustls::Error>(&e), Some(rustls::Error::InvalidMessage(_))) {
                ConnectError::PlaintextReply(f)
            } else {
                ConnectError::Failed(f)
            }
        })?;
        Box::new(TlsTcp(tls))
    } else {
        Box::new(tcp)
    };
    AsyncSmtpConnection::connect_with_transport(stream, &ctx.helo)
        .await
        .map_err(|e| ConnectError::Failed(classify_smtp(&e, "greeting")))
}

/// Implicit-TLS stream handed to lettre as its transport.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsTcp {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
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

/// What to do when a provider refuses password (Basic) authentication itself.
pub fn basic_auth_hint(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    if t.contains("5.7.139") || t.contains("5.7.30") || t.contains("smtpclientauthentication is disabled") {
        Some("Microsoft 365 no longer accepts passwords for SMTP on this tenant: connect the account with OAuth2")
    } else if t.contains("5.7.9") && t.contains("application-specific password") {
        Some("Google requires an app password (2-Step Verification) or OAuth2 for this account")
    } else {
        None
    }
}

fn classify_auth(err: &lettre::transport::smtp::Error) -> ProbeFailure {
    if err.is_permanent() {
        // 535 5.7.8 and friends: the credentials were refused.
        let text = err.to_string();
        let hint = basic_auth_hint(&text).map(|h| format!(" — {h}")).unwrap_or_default();
        return failure(SMTP, ValidationCode::AuthFailed, format!("AUTH: server replied {text}{hint}"));
    }
    if err.is_client() {
        // No mechanism in common: this server will not accept these credentials.
        return failure(SMTP, ValidationCode::AuthFailed, format!("AUTH: {err} (coldsend supports PLAIN and LOGIN)"));
    }
    classify_smtp(err, "AUTH")
}

/// A refused XOAUTH2 token: the server sends an error challenge (334 + JSON) before its
/// 535, which lettre 0.11 reports as a client error ("does not expect a challenge"),
/// neither permanent nor transient. Either way the token was not accepted.
fn classify_bearer(err: &lettre::transport::smtp::Error) -> ProbeFailure {
    if err.is_permanent() || err.is_client() {
        let said = if err.is_permanent() { format!(": server replied {err}") } else { String::new() };
        return failure(
            SMTP,
            ValidationCode::AuthFailed,
            format!("AUTH XOAUTH2: the OAuth2 access token was refused{said}"),
        );
    }
    classify_smtp(err, "AUTH XOAUTH2")
}

#[cfg(test)]
mod hint_tests {
    #[test]
    fn basic_auth_refusals_say_what_to_do() {
        let ms = super::basic_auth_hint(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
        );
        assert!(ms.is_some_and(|h| h.contains("OAuth2")));
        assert!(super::basic_auth_hint("534 5.7.9 Application-specific password required").is_some());
        assert!(super::basic_auth_hint("535 5.7.8 Error: authentication failed").is_none());
    }
}
