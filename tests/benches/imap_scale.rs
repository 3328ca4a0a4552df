//! Scanning at scale: one worker scanning 1,000 mailboxes at a 60-second interval.
//! Messages are delivered to random mailboxes throughout; for each, the lag from
//! delivery to its classification (the master-inbox event) is measured.
//!
//! Run: `scripts/bench.sh scale` (BENCH_MAILBOXES=1000, BENCH_INTERVAL=60, BENCH_SECONDS=180).
//! Prints polls per second, lag p50/p99, worker CPU per poll and resident memory per mailbox.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use rand::Rng;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn proc_stat(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ((ticks(11) + ticks(12)) / 100.0, rss_kb / 1024.0)
}

fn scan_jobs(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("coldsend_jobs_total{queue=\"scan\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_MAILBOXES", 1000) as usize;
    let interval = env_num("BENCH_INTERVAL", 60);
    let seconds = env_num("BENCH_SECONDS", 180);
    let users: Vec<String> = (0..n).map(|i| format!("u{i:04}:pw{i}")).collect();
    let mail = Mail::start(&users.join(" "));
    let interval_s = interval.to_string();
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SCAN__INTERVAL_SECS", interval_s.as_str()),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
        ("COLDSEND_WORKER__DISPATCH_CONCURRENCY", "128"),
        ("COLDSEND_WORKER__VALIDATE_CONCURRENCY", "16"),
        ("RUST_LOG", "warn"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let registering = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let body =
            account_json(&format!("u{i:04}"), &format!("pw{i}"), mail.submission_port(), true, mail.imaps_port(), 100);
        let (_, created) = api.create(&body).await;
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        assert_eq!(api.settled(id).await["status"], "ACTIVE");
    }
    eprintln!("{n} mailboxes registered and validated in {:.0} s", registering.elapsed().as_secs_f64());
    // Let every mailbox's scan chain start and settle into its interval.
    tokio::time::sleep(Duration::from_secs(interval.min(30) + 10)).await;

    let worker = &stack.workers[0];
    let pid = worker.pid();
    let (cpu0, _) = proc_stat(pid);
    let polls0 = scan_jobs(&worker.health_get("/metrics").1);
    let started = Instant::now();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut k = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        let user = rand::thread_rng().gen_range(0..n);
        let token = format!("probe-{k}");
        let msg = format!(
            "From: lead{k}@example.org\r\nTo: u{user:04}@example.test\r\nSubject: Re: hello {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\nyes\r\n"
        );
        mail.doveadm(&["save", "-u", &format!("u{user:04}@example.test"), "-m", "INBOX"], Some(msg.as_bytes()));
        sent.insert(token, Instant::now());
        k += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let window = started.elapsed().as_secs_f64();
    let (cpu1, rss_mb) = proc_stat(pid);
    let polls = scan_jobs(&worker.health_get("/metrics").1) - polls0;
    // Wait one more interval so every probe can be classified, then read the lags.
    tokio::time::sleep(Duration::from_secs(interval + 5)).await;
    let mut lags = Vec::new();
    let mut conn = stack.redis.connection();
    let events: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XRANGE").arg("cstest:events").arg("-").arg("+").query(&mut conn).expect("xrange");
    for (id, fields) in events {
        let Some(token) = fields.get("subject").and_then(|s| s.split_whitespace().last()) else { continue };
        let Some(at) = sent.get(token) else { continue };
        // The stream id's first part is the Redis time (ms) the event was recorded.
        let event_ms: u64 = id.split('-').next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let delivered_ms = now_ms.saturating_sub(at.elapsed().as_millis() as u64);
        lags.push((event_ms.saturating_sub(delivered_ms)) as f64 / 1000.0);
    }
    lags.sort_by(f64::total_cmp);
    println!("scan scale: {n} mailboxes, {interval} s interval, one worker, {window:.0} s window, {k} probe messages");
    println!(
        "polls/s       {:>8.1}  (expected {:.1} = mailboxes / interval)",
        polls / window,
        n as f64 / interval as f64
    );
    if !lags.is_empty() {
        println!(
            "lag p50       {:>8.1} s   p99 {:.1} s   ({} of {k} classified)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags.len()
        );
    }
    println!("CPU per poll  {:>8.2} ms (worker)", (cpu1 - cpu0) * 1000.0 / polls.max(1.0));
    println!("memory        {:>8.1} MB resident, {:.1} KB per mailbox", rss_mb, rss_mb * 1024.0 / n as f64);
}
