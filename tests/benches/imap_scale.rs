//! Scanning at scale: one worker scanning 1,000 (or 10,000) mailboxes at a 60-second interval.
//! Messages are delivered to random mailboxes throughout; for each, the lag from
//! delivery to its classification (the master-inbox event) is measured.
//!
//! Run: `scripts/bench.sh scale` (BENCH_MAILBOXES=1000, BENCH_INTERVAL=60, BENCH_SECONDS=180,
//! BENCH_LATENCY_MS=0: one-way delay added between the worker and Dovecot's IMAP port by
//! proxies (`latency-proxy` processes, 4,000 mailboxes each), 100 for a provider's real
//! round trips; BENCH_KEEP_SESSIONS and
//! BENCH_SCAN_CONCURRENCY set the worker's `scan.keep_sessions` and
//! `worker.scan_concurrency`; BENCH_IDLE=1 watches every mailbox with IMAP IDLE as well,
//! BENCH_LOGINS_PER_SEC paces logins to the server). Prints polls per second, the schedule lag (scan start vs due
//! time) and the delivery → classified lag, worker CPU per poll, resident memory per
//! mailbox, connections opened, and Dovecot's CPU.

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

/// Full passes run, by scan jobs and by IDLE watchers (a watched mailbox's passes run on
/// its watcher's session; its scan job then only checks that they keep coming).
fn scan_jobs(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("coldsend_scan_passes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A quantile of a summary the worker exports (over its last minute or so).
fn quantile(metrics: &str, name: &str, q: &str) -> Option<f64> {
    let prefix = format!("{name}{{quantile=\"{q}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// CPU seconds of a process and of its reaped children.
fn cpu_with_children(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

/// CPU seconds of Dovecot: the master with its reaped children, plus every live child.
fn dovecot_cpu(master: u32) -> f64 {
    let mut total = cpu_with_children(master);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let ppid: u32 = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == master {
            total += proc_stat(pid).0;
        }
    }
    total
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The delaying proxies, each in a process of its own (`src/bin/latency-proxy.rs`): a
/// process may hold 20,000 file descriptors here, two per proxied connection, so each
/// serves at most 4,000 mailboxes.
struct Proxies {
    children: Vec<std::process::Child>,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Proxies {
    fn start(target: u16, one_way_ms: u64, mailboxes: usize) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut children, mut ports) = (Vec::new(), Vec::new());
        for k in 0..mailboxes.div_ceil(4000).max(1) {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latency-proxy"))
                .arg(target.to_string())
                .arg(one_way_ms.to_string())
                .arg(dir.path().join(format!("accepted-{k}")))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("latency-proxy");
            let mut line = String::new();
            let stdout = child.stdout.take().expect("stdout");
            std::io::BufReader::new(stdout).read_line(&mut line).expect("read");
            ports.push(line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT <n>"));
            children.push(child);
        }
        Self { children, ports, dir }
    }

    fn port_for(&self, mailbox: usize) -> u16 {
        self.ports[mailbox % self.ports.len()]
    }

    /// Connections accepted so far, by all of them.
    fn accepted(&self) -> usize {
        (0..self.ports.len())
            .filter_map(|k| std::fs::read_to_string(self.dir.path().join(format!("accepted-{k}"))).ok())
            .filter_map(|n| n.trim().parse::<usize>().ok())
            .sum()
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_MAILBOXES", 1000) as usize;
    let interval = env_num("BENCH_INTERVAL", 60);
    let seconds = env_num("BENCH_SECONDS", 180);
    let latency_ms = env_num("BENCH_LATENCY_MS", 0);
    let keep = env_num("BENCH_KEEP_SESSIONS", 50).to_string();
    let scan_concurrency = env_num("BENCH_SCAN_CONCURRENCY", 64).to_string();
    let idle = env_num("BENCH_IDLE", 0) == 1;
    let logins = env_num("BENCH_LOGINS_PER_SEC", 50).to_string();
    let users: Vec<String> = (0..n).map(|i| format!("u{i:04}:pw{i}")).collect();
    // Past a few thousand sessions Dovecot needs its login processes shared (see start.sh).
    let large: &[(&str, &str)] = if n > 4000 { &[("MH_DOVECOT_LARGE", "1")] } else { &[] };
    let mail = Mail::start_with(&users.join(" "), large);
    // The worker reaches IMAP through the delaying proxies; validation and delivery do not care.
    let proxies = Proxies::start(mail.imaps_port(), latency_ms, n);
    let interval_s = interval.to_string();
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SCAN__INTERVAL_SECS", interval_s.as_str()),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__KEEP_SESSIONS", keep.as_str()),
        ("COLDSEND_WORKER__SCAN_CONCURRENCY", scan_concurrency.as_str()),
        ("COLDSEND_WORKER__DISPATCH_CONCURRENCY", "128"),
        ("COLDSEND_SCAN__IDLE", if idle { "true" } else { "false" }),
        ("COLDSEND_SCAN__LOGINS_PER_SERVER_PER_SEC", logins.as_str()),
        ("COLDSEND_WORKER__VALIDATE_CONCURRENCY", "16"),
        // Registering 1,000 mailboxes while the first ones already scan loads Dovecot.
        ("COLDSEND_VALIDATION__TIMEOUT_SECS", "30"),
        ("RUST_LOG", "warn"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let registering = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let body = account_json(
            &format!("u{i:04}"),
            &format!("pw{i}"),
            mail.submission_port(),
            true,
            proxies.port_for(i),
            100,
        );
        let (_, created) = api.create(&body).await;
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    // Under this load Dovecot now and then drops a login (the harness shares two cores
    // with everything): such a mailbox is validated again, as an operator would.
    let mut revalidated = 0;
    for id in &ids {
        let mut settled = api.settled(id).await;
        for _ in 0..3 {
            if settled["status"] == "ACTIVE" {
                break;
            }
            revalidated += 1;
            api.call(reqwest::Method::POST, &format!("/sender-accounts/{id}/validate"), None).await;
            settled = api.settled(id).await;
        }
        assert_eq!(settled["status"], "ACTIVE", "{settled}");
    }
    if revalidated > 0 {
        eprintln!("{revalidated} validations failed under load and were run again");
    }
    eprintln!("{n} mailboxes registered and validated in {:.0} s", registering.elapsed().as_secs_f64());
    // Let every mailbox's scan chain start and settle into its interval.
    tokio::time::sleep(Duration::from_secs(interval.min(30) + 10)).await;

    let worker = &stack.workers[0];
    if idle {
        let watching = Instant::now();
        let gauge = |m: &str| {
            m.lines()
                .find_map(|l| l.strip_prefix("coldsend_imap_idle_mailboxes ")?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        while gauge(&worker.health_get("/metrics").1) < n as f64 && watching.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!(
            "{} of {n} mailboxes watched with IDLE after {:.0} more s",
            gauge(&worker.health_get("/metrics").1),
            watching.elapsed().as_secs_f64()
        );
        // Claimed is not yet idling: the watchers log in at the paced rate, and each scan
        // chain stands back (logging its kept session out) only at its next check, up to
        // one and a half intervals later. Measure the steady state, not that hand-over.
        let settle = n as u64 / logins.parse::<u64>().unwrap_or(50).max(1) + interval * 3 / 2;
        eprintln!("waiting {settle} s for the watchers to log in and the scan chains to stand back");
        tokio::time::sleep(Duration::from_secs(settle)).await;
    }
    let pid = worker.pid();
    let (cpu0, _) = proc_stat(pid);
    let dovecot = mail.dovecot_pid().expect("Dovecot's master.pid");
    let dovecot0 = dovecot_cpu(dovecot);
    let connections0 = proxies.accepted();
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
    let dovecot1 = dovecot_cpu(dovecot);
    let connections = proxies.accepted() - connections0;
    let open_sessions = mail.imap_session_count();
    let metrics = worker.health_get("/metrics").1;
    let polls = scan_jobs(&metrics) - polls0;
    let lag = |q| quantile(&metrics, "coldsend_scan_schedule_lag_seconds", q).unwrap_or(f64::NAN);
    let (lag50, lag99, lag_max) = (lag("0.5"), lag("0.99"), lag("1"));
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
    println!(
        "scan scale: {n} mailboxes, {interval} s interval, one worker, {window:.0} s window, {k} probe messages, \
         {latency_ms} ms added each way, keep_sessions {keep}, scan_concurrency {scan_concurrency}, IDLE {}",
        if idle { "on" } else { "off" }
    );
    println!(
        "polls/s       {:>8.1}  (expected {:.1} = mailboxes / interval)",
        polls / window,
        n as f64 / interval as f64
    );
    if !lags.is_empty() {
        println!(
            "delivered → classified  p50 {:.1} s   p99 {:.1} s   ({} of {k} classified)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags.len()
        );
    }
    println!(
        "schedule lag  p50 {lag50:.2} s   p99 {lag99:.2} s   max {lag_max:.2} s  (scan start vs due, last minute)"
    );
    println!("CPU per poll  {:>8.2} ms (worker)", (cpu1 - cpu0) * 1000.0 / polls.max(1.0));
    println!(
        "connections   {:>8.2} per poll ({connections} opened in the window; {open_sessions} IMAP sessions open at its end)",
        connections as f64 / polls.max(1.0)
    );
    println!(
        "Dovecot CPU   {:>8.2} ms per poll, {:.0} % of one core",
        (dovecot1 - dovecot0) * 1000.0 / polls.max(1.0),
        (dovecot1 - dovecot0) * 100.0 / window
    );
    println!("memory        {:>8.1} MB resident, {:.1} KB per mailbox", rss_mb, rss_mb * 1024.0 / n as f64);
    // Why passes failed, if any did (a failed pass logs its kept session out).
    let log = worker.log_text();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("scan failed")).collect();
    if !failed.is_empty() {
        println!("scan passes failed: {} (first: {})", failed.len(), &failed[0][..failed[0].len().min(300)]);
    }
    if idle {
        let count =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
        println!(
            "IDLE          {:.0} mailboxes watched, {:.0} wake-ups, {:.0} reconnects since the worker started",
            count("coldsend_imap_idle_mailboxes "),
            count("coldsend_imap_idle_wakeups_total "),
            count("coldsend_imap_idle_reconnects_total ")
        );
    }
}
