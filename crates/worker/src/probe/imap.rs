//! IMAP check: connect (implicit TLS, or STARTTLS when offered), greeting, LOGIN (or
//! AUTHENTICATE XOAUTH2), LOGOUT.

use std::fmt::Debug;

use async_imap::imap_proto::{Capability, Response, ResponseCode, Status};
use coldsend_core::account::Endpoint;
use coldsend_core::{ProbeFailure, Protocol, ValidationCode};
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Login, ProbeContext, classify_network, failure, resolve, within_limit};

const IMAP: Protocol = Protocol::Imap;

/// Any stream an IMAP session runs over (TLS or, where the user chose it, plain TCP).
pub trait ImapIo: AsyncRead + AsyncWrite + Unpin + Debug + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Debug + Send> ImapIo for T {}

/// A logged-in IMAP session.
pub type ImapSession = async_imap::Session<Box<dyn ImapIo>>;

pub async fn probe_imap(ctx: &ProbeContext, ep: &Endpoint, login: &Login) -> Result<(), ProbeFailure> {
    within_limit(ctx, IMAP, async {
        let mut session = open_imap_session(ctx, ep, login).await?;
        // A failed LOGOUT after a successful LOGIN does not make the account unusable.
        let _ = session.logout().await;
        Ok(())
    })
    .await
}

/// Connects, secures and logs in. The caller bounds the time.
pub async fn open_imap_session(ctx: &ProbeContext, ep: &Endpoint, login: &Login) -> Result<ImapSession, ProbeFailure> {
    let password = login;
    let addrs = resolve(IMAP, ep).await?;
    let tcp = TcpStream::connect(addrs.as_slice()).await.map_err(|e| classify_network(IMAP, &e, "connect"))?;
    if ep.tls {
        let tls: Box<dyn ImapIo> = Box::new(wrap_tls(ctx, ep, tcp).await?);
        let mut client = async_imap::Client::new(tls);
        read_greeting(&mut client).await?;
        return self::login(client, ep, password).await;
    }
    let mut client = async_imap::Client::new(tcp);
    let offers_starttls = read_greeting(&mut client).await?;
    // Greetings usually list capabilities; without a list, just try STARTTLS.
    if offers_starttls != Some(false) {
        match client.run_command_and_check_ok("STARTTLS", None).await {
            Ok(()) => {
                let tls: Box<dyn ImapIo> = Box::new(wrap_tls(ctx, ep, client.into_inner()).await?);
                return self::login(async_imap::Client::new(tls), ep, password).await;
            }
            Err(async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)) => {}
            Err(e) => return Err(classify_imap(&e, "STARTTLS")),
        }
    }
    let plain: Box<dyn ImapIo> = Box::new(client.into_inner());
    self::login(async_imap::Client::new(plain), ep, password).await
}

async fn wrap_tls(
    ctx: &ProbeContext,
    ep: &Endpoint,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeFailure> {
    let name = ServerName::try_from(ep.host.as_str().to_owned())
        .map_err(|e| failure(IMAP, ValidationCode::SslError, format!("host is not a valid TLS name: {e}")))?;
    TlsConnector::from(ctx.trust.rustls_config()).connect(name, tcp).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            failure(IMAP, ValidationCode::ConnectionFailed, "server closed the connection during the TLS handshake")
        } else {
            classify_network(IMAP, &e, "TLS handshake")
        }
    })
}

/// Reads the server greeting; returns whether it offers STARTTLS, if it lists capabilities.
async fn read_greeting<T>(client: &mut async_imap::Client<T>) -> Result<Option<bool>, ProbeFailure>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let response = client
        .read_response()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other => {
                failure(IMAP, ValidationCode::ConnectionFailed, format!("greeting is not IMAP: {e}"))
            }
            _ => classify_network(IMAP, &e, "greeting"),
        })?
        .ok_or_else(|| {
            failure(IMAP, ValidationCode::ConnectionFailed, "server closed the connection before greeting")
        })?;
    match response.parsed() {
        Response::Data { status: Status::Ok | Status::PreAuth, outcome } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(caps)) => {
                Some(caps.iter().any(|c| matches!(c, Capability::Atom(a) if a.eq_ignore_ascii_case("STARTTLS"))))
            }
            _ => None,
        }),
        other => Err(failure(IMAP, ValidationCode::ConnectionFailed, format!("unexpected greeting: {other:?}"))),
    }
}

async fn login(
    client: async_imap::Client<Box<dyn ImapIo>>,
    ep: &Endpoint,
    login: &Login,
) -> Result<ImapSession, ProbeFailure> {
    let (step, answer) = match login {
        Login::Password(p) => ("LOGIN", client.login(&ep.username, p.expose_secret()).await),
        Login::Bearer(t) => (
            "AUTHENTICATE XOAUTH2",
            client.authenticate("XOAUTH2", XOAuth2 { user: &ep.username, token: t.expose_secret(), sent: false }).await,
        ),
    };
    match answer {
        Ok(session) => Ok(session),
        Err((async_imap::error::Error::No(msg), _)) => {
            let what = if login.is_bearer() { "the OAuth2 access token was refused" } else { "refused" };
            Err(failure(IMAP, ValidationCode::AuthFailed, format!("{step}: {what}: {msg}")))
        }
        Err((e, _)) => Err(classify_imap(&e, step)),
    }
}

/// SASL XOAUTH2 (Google's and Microsoft's IMAP and SMTP sign-in with an access token):
/// `user=… ^A auth=Bearer … ^A ^A`. A refused token gets an error challenge (JSON) that
/// must be answered with an empty line before the server's NO.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if std::mem::replace(&mut self.sent, true) {
            return Vec::new();
        }
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token).into_bytes()
    }
}

fn classify_imap(err: &async_imap::error::Error, step: &str) -> ProbeFailure {
    match err {
        async_imap::error::Error::Io(io) => classify_network(IMAP, io, step),
        other => failure(IMAP, ValidationCode::ConnectionFailed, format!("{step}: {other}")),
    }
}
