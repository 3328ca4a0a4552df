//! Misbehaving TCP servers for the failure codes a real mail server won't produce on
//! demand: one that never greets, one that hangs up at once, one that speaks another
//! protocol. They are real sockets on 127.0.0.1, each on its own thread, living until
//! the process exits.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn serve(handle: impl Fn(TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            handle(stream);
        }
    });
    port
}

/// Accepts and keeps the connection open without ever sending a byte.
pub fn silent_server() -> u16 {
    serve(|stream| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            drop(stream);
        });
    })
}

/// Accepts and closes at once.
pub fn hangup_server() -> u16 {
    serve(drop)
}

/// Greets like an SSH server, then closes.
pub fn foreign_protocol_server() -> u16 {
    serve(|mut stream| {
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        std::thread::sleep(Duration::from_millis(200));
    })
}

/// A port that refuses connections: bound (so no other test can take it) but not
/// listening. Keep the returned socket alive while the port is in use.
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// A tiny SMTP server that accepts everything but holds its reply to the message body
/// for `stall`: to catch a worker in the middle of a send. Counts bodies received and
/// replies sent.
pub struct StallingSmtp {
    pub port: u16,
    pub bodies_received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StallingSmtp {
    pub fn start(stall: Duration) -> Self {
        use std::io::{BufRead, BufReader};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let bodies_received = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (b, a) = (bodies_received.clone(), accepted.clone());
        let port = serve(move |stream| {
            let (b, a) = (b.clone(), a.clone());
            std::thread::spawn(move || {
                let mut out = stream.try_clone().expect("clone");
                let mut lines = BufReader::new(stream);
                let _ = out.write_all(b"220 stall.test ESMTP\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if verb.starts_with("EHLO") {
                        b"250-stall.test\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if verb.starts_with("AUTH") {
                        b"235 2.7.0 ok\r\n"
                    } else if verb.starts_with("DATA") {
                        let _ = out.write_all(b"354 go ahead\r\n");
                        // Read the body up to the lone dot.
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        b.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(stall);
                        a.fetch_add(1, Ordering::SeqCst);
                        b"250 2.0.0 queued\r\n"
                    } else if verb.starts_with("QUIT") {
                        let _ = out.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = out.write_all(reply);
                }
            });
        });
        Self { port, bodies_received, accepted }
    }
}
