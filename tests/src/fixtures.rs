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
/// for `stall` (or, from `stalling_first_rcpt` and `pipelining_stalling_rcpt`, one reply
/// to RCPT): to catch a worker in the middle of a send. Counts bodies received, replies
/// to them sent, and RCPTs received.
pub struct StallingSmtp {
    pub port: u16,
    pub bodies_received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub rcpts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StallingSmtp {
    pub fn start(stall: Duration) -> Self {
        Self::serve(stall, (1, Duration::ZERO), false)
    }

    /// Answers everything at once except the first RCPT of its life, which it holds for
    /// `stall`: a send held up before its body, long enough for the sweep to take it.
    pub fn stalling_first_rcpt(stall: Duration) -> Self {
        Self::serve(Duration::ZERO, (1, stall), false)
    }

    /// Offers PIPELINING (its commands are read and answered one line at a time, so a
    /// pipelined group is simply answered in order) and holds the `nth` RCPT of its life
    /// (from 1) for `stall`.
    pub fn pipelining_stalling_rcpt(nth: usize, stall: Duration) -> Self {
        Self::serve(Duration::ZERO, (nth, stall), true)
    }

    fn serve(body_stall: Duration, (stalled_rcpt, rcpt_stall): (usize, Duration), pipelining: bool) -> Self {
        use std::io::{BufRead, BufReader};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let bodies_received = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let rcpts = Arc::new(AtomicUsize::new(0));
        let (b, a, r) = (bodies_received.clone(), accepted.clone(), rcpts.clone());
        let port = serve(move |stream| {
            let (b, a, rcpts) = (b.clone(), a.clone(), r.clone());
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
                    let reply: &[u8] = if verb.starts_with("EHLO") && pipelining {
                        b"250-stall.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if verb.starts_with("EHLO") {
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
                        std::thread::sleep(body_stall);
                        a.fetch_add(1, Ordering::SeqCst);
                        b"250 2.0.0 queued\r\n"
                    } else if verb.starts_with("RCPT") {
                        if rcpts.fetch_add(1, Ordering::SeqCst) + 1 == stalled_rcpt {
                            std::thread::sleep(rcpt_stall);
                        }
                        b"250 ok\r\n"
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
        Self { port, bodies_received, accepted, rcpts }
    }
}

/// A TCP relay in front of a real server that can be taken down and brought back on the
/// same port: down, it stops listening (new connections are refused) and cuts every
/// relayed connection, as a server restarting elsewhere or a network outage would.
/// Frozen, it keeps every connection open but loses whatever either side sends (a
/// silent partition: no FIN, no RST, nothing arrives).
pub struct Relay {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections accepted while up.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Every read from a client, as it arrived (one entry per `read`).
    client_reads: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    pub fn start(target: u16) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let client_reads: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (flag, count, lost, reads) = (up.clone(), accepted.clone(), frozen.clone(), client_reads.clone());
        std::thread::spawn(move || {
            let mut listener = Some(first);
            let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            loop {
                if !flag.load(Ordering::SeqCst) {
                    if listener.take().is_some() {
                        for s in live.lock().expect("lock").drain(..) {
                            let _ = s.shutdown(std::net::Shutdown::Both);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let Some(l) = listener.as_ref() else {
                    // Back up: listen on the same port again (std sets SO_REUSEADDR).
                    listener = TcpListener::bind(("127.0.0.1", port)).ok();
                    if let Some(l) = &listener {
                        l.set_nonblocking(true).expect("nonblocking");
                    }
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking");
                match l.accept() {
                    Ok((client, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                        let mut registry = live.lock().expect("lock");
                        for s in [&client, &server] {
                            if let Ok(c) = s.try_clone() {
                                registry.push(c);
                            }
                        }
                        for (mut from, mut to, from_client) in [
                            (client.try_clone().expect("clone"), server.try_clone().expect("clone"), true),
                            (server, client, false),
                        ] {
                            let lost = lost.clone();
                            let reads = reads.clone();
                            std::thread::spawn(move || {
                                use std::io::{Read, Write};
                                let mut buf = [0u8; 16 * 1024];
                                loop {
                                    let n = match from.read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => n,
                                    };
                                    if from_client {
                                        reads.lock().expect("lock").push(buf[..n].to_vec());
                                    }
                                    if !lost.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { port, up, frozen, accepted, client_reads }
    }

    /// What clients sent, one entry per read (text, lossily): bytes a client wrote
    /// together before waiting for an answer arrive in one entry.
    pub fn client_reads(&self) -> Vec<String> {
        let reads = self.client_reads.lock().expect("lock");
        reads.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect()
    }

    /// From now on, loses everything relayed (connections stay open).
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Relays again.
    pub fn thaw(&self) {
        self.frozen.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops listening and cuts every relayed connection.
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Listens again on the same port.
    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy that holds every chunk for `one_way` before passing it on, in each
/// direction: a server that far away, for the scale benchmark (real providers answer in
/// 100–300 ms). Order is kept and throughput is not limited; only the delay is added
/// (the TCP handshake itself is not delayed). Runs on the caller's tokio runtime.
pub struct LatencyProxy {
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LatencyProxy {
    pub async fn start(target: u16, one_way: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        delayed(client_read, server_write, one_way),
                        delayed(server_read, client_write, one_way)
                    );
                });
            }
        });
        Self { port, accepted }
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn delayed(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
