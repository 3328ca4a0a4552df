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
