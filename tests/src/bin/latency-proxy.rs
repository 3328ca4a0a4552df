//! The scale benchmark's delaying proxy in a process of its own: one process may hold
//! only so many connections (this machine allows 20,000 file descriptors, two per
//! proxied connection), so 10,000 mailboxes are spread over several.
//!
//! Usage: `latency-proxy TARGET_PORT ONE_WAY_MS COUNT_FILE` — prints `PORT <n>` once
//! listening, then keeps the number of connections accepted so far in COUNT_FILE. It exits
//! when its standard input closes, so a benchmark that dies (even by `kill -9`) leaves no
//! proxy behind.

use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(target), Some(one_way), Some(count_file)) =
        (args.get(1).and_then(|a| a.parse().ok()), args.get(2).and_then(|a| a.parse().ok()), args.get(3))
    else {
        eprintln!("usage: latency-proxy TARGET_PORT ONE_WAY_MS COUNT_FILE");
        std::process::exit(2);
    };
    let proxy = coldsend_tests::fixtures::LatencyProxy::start(target, Duration::from_millis(one_way)).await;
    println!("PORT {}", proxy.port);
    std::thread::spawn(|| {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    loop {
        let n = proxy.accepted.load(std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::write(count_file, n.to_string());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
