//! Each of the six failure codes, for SMTP and for IMAP, against real servers
//! (Postfix + Dovecot from the harness, or real sockets that misbehave).

use std::time::Duration;

use coldsend_core::account::{Endpoint, Host, Port};
use coldsend_core::{ProbeFailure, ValidationCode};
use coldsend_tests::{Mail, fixtures};
use coldsend_worker::probe::{Login, ProbeContext, probe_imap, probe_smtp};
use coldsend_worker::trust::TrustStore;
use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;

const USERS: &str = "alice:alicepw bob:bobpw";

/// The production limit (10 s): real servers must pass or fail within it even on a busy machine.
fn ctx(trust_harness_ca: Option<&Mail>) -> ProbeContext {
    ctx_with(trust_harness_ca, Duration::from_secs(10))
}

fn ctx_with(trust_harness_ca: Option<&Mail>, time_limit: Duration) -> ProbeContext {
    let cas: Vec<_> = trust_harness_ca.map(|m| m.ca_cert()).into_iter().collect();
    ProbeContext {
        trust: TrustStore::load(&cas).expect("trust store"),
        helo: ClientId::Domain("coldsend.test".into()),
        time_limit,
    }
}

fn ep(host: &str, port: u16, tls: bool, user: &str) -> Endpoint {
    Endpoint {
        host: Host::parse(host).expect("host"),
        port: Port::parse(i64::from(port)).expect("port"),
        tls,
        username: user.into(),
    }
}

fn pw(p: &str) -> Login {
    Login::Password(SecretString::from(p.to_owned()))
}

fn code(r: Result<(), ProbeFailure>) -> ValidationCode {
    match r {
        Ok(()) => panic!("probe unexpectedly passed"),
        Err(f) => {
            assert!(!f.message.is_empty(), "failure without a message");
            f.code
        }
    }
}

#[tokio::test]
async fn smtp_and_imap_pass_in_every_tls_mode() {
    let mail = Mail::start(USERS);
    let c = ctx(Some(&mail));
    let alice = "alice@example.test";
    probe_smtp(&c, &ep("127.0.0.1", mail.submission_port(), true, alice), &pw("alicepw")).await.expect("587 STARTTLS");
    probe_smtp(&c, &ep("127.0.0.1", mail.smtps_port(), true, alice), &pw("alicepw")).await.expect("465 implicit TLS");
    probe_imap(&c, &ep("127.0.0.1", mail.imaps_port(), true, alice), &pw("alicepw")).await.expect("993 IMAPS");
    probe_imap(&c, &ep("127.0.0.1", mail.imap_port(), false, alice), &pw("alicepw")).await.expect("143 STARTTLS");
    // Host names are verified too: the certificate names localhost.
    probe_imap(&c, &ep("localhost", mail.imaps_port(), true, alice), &pw("alicepw")).await.expect("by name");
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let mail = Mail::start(USERS);
    let c = ctx(Some(&mail));
    let alice = "alice@example.test";
    let smtp = probe_smtp(&c, &ep("127.0.0.1", mail.submission_port(), true, alice), &pw("WRONG")).await;
    let failure = smtp.clone().expect_err("wrong password accepted");
    assert!(failure.message.contains("535"), "server text kept: {}", failure.message);
    assert_eq!(code(smtp), ValidationCode::AuthFailed);
    assert_eq!(
        code(probe_smtp(&c, &ep("127.0.0.1", mail.smtps_port(), true, alice), &pw("WRONG")).await),
        ValidationCode::AuthFailed
    );
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", mail.imaps_port(), true, alice), &pw("WRONG")).await),
        ValidationCode::AuthFailed
    );
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", mail.imap_port(), false, alice), &pw("WRONG")).await),
        ValidationCode::AuthFailed
    );
}

#[tokio::test]
async fn untrusted_certificate_is_ssl_error() {
    let mail = Mail::start(USERS);
    // The harness CA is not added: its certificate must be refused.
    let c = ctx(None);
    let alice = "alice@example.test";
    assert_eq!(
        code(probe_smtp(&c, &ep("127.0.0.1", mail.submission_port(), true, alice), &pw("alicepw")).await),
        ValidationCode::SslError
    );
    assert_eq!(
        code(probe_smtp(&c, &ep("127.0.0.1", mail.smtps_port(), true, alice), &pw("alicepw")).await),
        ValidationCode::SslError
    );
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", mail.imaps_port(), true, alice), &pw("alicepw")).await),
        ValidationCode::SslError
    );
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", mail.imap_port(), false, alice), &pw("alicepw")).await),
        ValidationCode::SslError
    );
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let c = ctx(None);
    let (_bound, port) = fixtures::closed_port();
    assert_eq!(
        code(probe_smtp(&c, &ep("127.0.0.1", port, true, "u"), &pw("p")).await),
        ValidationCode::ConnectionRefused
    );
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", port, true, "u"), &pw("p")).await),
        ValidationCode::ConnectionRefused
    );
}

#[tokio::test]
async fn unresolvable_host_is_host_not_found() {
    let c = ctx(None);
    assert_eq!(
        code(probe_smtp(&c, &ep("mail.coldsend.invalid", 587, true, "u"), &pw("p")).await),
        ValidationCode::HostNotFound
    );
    assert_eq!(
        code(probe_imap(&c, &ep("mail.coldsend.invalid", 993, true, "u"), &pw("p")).await),
        ValidationCode::HostNotFound
    );
}

#[tokio::test]
async fn silent_server_is_timeout() {
    // A short limit so the test is quick; the code path is the same at 10 s.
    let c = ctx_with(None, Duration::from_secs(2));
    let port = fixtures::silent_server();
    let started = std::time::Instant::now();
    assert_eq!(code(probe_smtp(&c, &ep("127.0.0.1", port, true, "u"), &pw("p")).await), ValidationCode::Timeout);
    assert_eq!(code(probe_imap(&c, &ep("127.0.0.1", port, false, "u"), &pw("p")).await), ValidationCode::Timeout);
    assert_eq!(code(probe_imap(&c, &ep("127.0.0.1", port, true, "u"), &pw("p")).await), ValidationCode::Timeout);
    // The limit is enforced, not merely reported: three probes at 2 s each.
    assert!(started.elapsed() < Duration::from_secs(12), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn hangup_or_foreign_protocol_is_connection_failed() {
    let c = ctx(None);
    for port in [fixtures::hangup_server(), fixtures::foreign_protocol_server()] {
        assert_eq!(
            code(probe_smtp(&c, &ep("127.0.0.1", port, true, "u"), &pw("p")).await),
            ValidationCode::ConnectionFailed
        );
        assert_eq!(
            code(probe_imap(&c, &ep("127.0.0.1", port, false, "u"), &pw("p")).await),
            ValidationCode::ConnectionFailed
        );
    }
    // Implicit TLS to a server that hangs up during the handshake: the conversation broke.
    assert_eq!(
        code(probe_imap(&c, &ep("127.0.0.1", fixtures::hangup_server(), true, "u"), &pw("p")).await),
        ValidationCode::ConnectionFailed
    );
}
