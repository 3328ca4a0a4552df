//! End-to-end send-path benchmark: queue → worker → SMTP, into Postfix's smtp-sink,
//! against smtp-source into the same sink (same message size, same concurrency,
//! connections reused on both sides) in the same run.
//!
//! Run: `scripts/bench.sh send` (release build). Knobs: BENCH_MESSAGES (default 3000),
//! BENCH_MAILBOXES (default 8, = concurrency), BENCH_SENT_AUTHORITATIVE (1: the mailboxes
//! are set up as Google Workspace and Microsoft 365 accounts are, their Sent folder the
//! provider's record, so their claims are taken in phase `data`; smtp-sink files nothing,
//! which no run without a crash needs), BENCH_WORKER_THREADS (the worker's runtime
//! threads; default one per core), BENCH_WORKERS (worker processes sharing the
//! mailboxes, as replicas do; default 1; their CPU is summed).
//!
//! Prints coldsend's msg/s, smtp-source's msg/s and their ratio, the worker's CPU
//! seconds per 1,000 messages beside Redis's, smtp-sink's and the whole machine's (with
//! how busy its cores were in each run: a run short of 100 % waits on round trips, not
//! on CPU), Redis commands per sent email (INFO commandstats, Lua included) and the
//! time in them, and — in a second, untimed campaign watched by MONITOR — the top-level
//! commands per sent email: an upper bound on round trips (each command of a pipeline
//! counts, Lua-internal calls do not).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, free_port};
use reqwest::Method;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // fields 14 and 15 of stat; USER_HZ is 100 on Linux
}

/// Redis's own CPU seconds (user + system), from INFO.
fn redis_cpu_seconds(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).expect("INFO");
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    field("used_cpu_user") + field("used_cpu_sys")
}

/// The whole machine's busy and total CPU time so far (seconds over all cores), from
/// /proc/stat: how close a run came to the cores it had.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: f64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}

/// Calls and microseconds per command since the last CONFIG RESETSTAT (commands run
/// inside Lua scripts count too, and a script's time includes theirs), most frequent first.
fn redis_calls(conn: &mut redis::Connection) -> Vec<(String, u64, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).expect("INFO");
    let mut calls: Vec<(String, u64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| rest.split(f).nth(1)?.split(',').next()?.parse().ok();
            Some((name.to_owned(), field("calls=")?, field("usec=")?))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    calls
}

/// Counts the commands clients send (not those run inside scripts) while it runs.
struct Monitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<(String, u64)>)>,
}

impl Monitor {
    fn start(url: &str) -> Self {
        let mut con = redis::Client::open(url).expect("url").get_connection().expect("connect");
        con.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let _: () = redis::cmd("MONITOR").query(&mut con).expect("MONITOR");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut top_level = 0u64;
            let mut by_name: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match con.recv_response() {
                    Ok(redis::Value::SimpleString(line)) if !line.contains(" lua] ") => {
                        top_level += 1;
                        // `<time> [<db> <client>] "<COMMAND>" …`
                        let name = line.split('"').nth(1).unwrap_or("?").to_ascii_lowercase();
                        *by_name.entry(name).or_default() += 1;
                    }
                    Ok(_) => {}
                    Err(e) if e.is_timeout() => {}
                    Err(e) => panic!("MONITOR: {e}"),
                }
            }
            let mut by_name: Vec<(String, u64)> = by_name.into_iter().collect();
            by_name.sort_by_key(|c| std::cmp::Reverse(c.1));
            (top_level, by_name)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (u64, Vec<(String, u64)>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("monitor thread")
    }
}

/// Polls the campaign's sent counter until it reaches `n`.
async fn wait_sent(rconn: &mut redis::Connection, cid: &str, n: usize) {
    let started = Instant::now();
    loop {
        let sent: Option<u64> =
            redis::cmd("HGET").arg(format!("cstest:stats:{cid}")).arg("step:0:sent").query(rconn).expect("HGET");
        if sent.unwrap_or(0) >= n as u64 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "benchmark did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let messages = env_usize("BENCH_MESSAGES", 3000);
    let mailboxes = env_usize("BENCH_MAILBOXES", 8);
    let sent_authoritative = env_usize("BENCH_SENT_AUTHORITATIVE", 0) == 1;
    // Worker replicas (processes) sharing the mailboxes; their CPU is summed.
    let replicas = env_usize("BENCH_WORKERS", 1).max(1);

    // IMAP (for validation) comes from Dovecot; SMTP goes to smtp-sink.
    let users: Vec<String> = (0..mailboxes).map(|i| format!("box{i}:pw{i}")).collect();
    let mail = Mail::start(&users.join(" "));
    let sink_port = free_port();
    let mut sink = Command::new("smtp-sink")
        .args(["-u", "postfix", "-4", &format!("127.0.0.1:{sink_port}"), "1024"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (package postfix)");
    std::thread::sleep(Duration::from_millis(300));

    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.push(("RUST_LOG", "warn"));
    env.push(("COLDSEND_WORKER__DISPATCH_CONCURRENCY", "256"));
    // The worker's runtime threads (`worker.runtime_threads`; default: one per core).
    let threads = std::env::var("BENCH_WORKER_THREADS").unwrap_or_default();
    if !threads.is_empty() {
        env.push(("COLDSEND_WORKER__RUNTIME_THREADS", threads.as_str()));
    }
    let stack = Stack::start_with(Some(&mail), &env, replicas);
    let api = Api::new(&stack);
    let mut accounts = Vec::new();
    for i in 0..mailboxes {
        let body = coldsend_tests::account_json(
            &format!("box{i}"),
            &format!("pw{i}"),
            sink_port,
            false,
            mail.imaps_port(),
            100_000,
        );
        let id = api.active_account(&body).await;
        if sent_authoritative {
            api.trust_sent_folder(&id).await;
        }
        accounts.push(id);
    }
    let text = "Hi {{ first_name }},\n\n".to_owned() + &"I noticed your team is growing quickly. ".repeat(20);
    let body = json!({"name": "bench", "sender_account_ids": accounts,
                      "steps": [{"subject": "Quick question, {{ first_name }}", "text": text}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("campaign").to_owned();
    let leads: Vec<_> =
        (0..messages).map(|i| json!({"email": format!("r{i}@example.test"), "first_name": format!("R{i}")})).collect();
    for chunk in leads.chunks(1000) {
        api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": chunk}))).await;
    }

    // One formatted message, for smtp-source's size.
    let sample = coldsend_service::outgoing::compose(&coldsend_service::outgoing::Outgoing {
        from_name: "Box 0".into(),
        from: "box0@example.test".into(),
        to: "r1@example.test".into(),
        to_name: None,
        subject: "Quick question, R1".into(),
        text: text.replace("{{ first_name }}", "R1"),
        html: None,
        message_id: "cs.0.0123456789abcdef01234567@example.test".into(),
        thread: vec![],
        list_unsubscribe: "<https://coldsend.example.test/api/public/v1/unsubscribe?token=MDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAwOjAwMDAwMDAwMDAwMDAwMDAwMDAw.AAAAAAAAAAAAAAAAAAAAAA>, <mailto:box0@example.test?subject=unsubscribe>".into(),
        extra_headers: vec![],
    })
    .expect("compose");
    let size = sample.bytes.len();

    let mut rconn = stack.redis.connection();
    let worker_pids: Vec<u32> = stack.workers.iter().map(|w| w.pid()).collect();
    let workers_cpu = || worker_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut rconn).expect("RESETSTAT");
    let cpu0 = workers_cpu();
    let (redis0, sink0, machine0) = (redis_cpu_seconds(&mut rconn), cpu_seconds(sink.id()), machine_cpu());
    let started = Instant::now();
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    wait_sent(&mut rconn, &cid, messages).await;
    let coldsend_secs = started.elapsed().as_secs_f64();
    let cpu = workers_cpu() - cpu0;
    let redis_cpu = redis_cpu_seconds(&mut rconn) - redis0;
    let sink_cpu = cpu_seconds(sink.id()) - sink0;
    let machine1 = machine_cpu();
    let calls = redis_calls(&mut rconn);

    // Untimed: a second campaign of the same shape under MONITOR, for the top-level
    // commands per email (MONITOR slows Redis, so it stays out of the timed run).
    let watched = messages.min(2000);
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid2 = c["id"].as_str().expect("campaign").to_owned();
    let leads: Vec<_> =
        (0..watched).map(|i| json!({"email": format!("m{i}@example.test"), "first_name": format!("M{i}")})).collect();
    for chunk in leads.chunks(1000) {
        api.call(Method::POST, &format!("/campaigns/{cid2}/leads"), Some(&json!({"leads": chunk}))).await;
    }
    let monitor = Monitor::start(&stack.redis.url());
    api.call(Method::POST, &format!("/campaigns/{cid2}/start"), None).await;
    wait_sent(&mut rconn, &cid2, watched).await;
    let (top_level, top_level_names) = monitor.finish();

    let (source_sink0, source_machine0) = (cpu_seconds(sink.id()), machine_cpu());
    let started = Instant::now();
    let status = Command::new("smtp-source")
        .args(["-s", &mailboxes.to_string(), "-m", &messages.to_string(), "-l", &size.to_string(), "-d"])
        .args(["-f", "box0@example.test", "-t", "r1@example.test", &format!("127.0.0.1:{sink_port}")])
        .status()
        .expect("smtp-source");
    assert!(status.success());
    let source_secs = started.elapsed().as_secs_f64();
    let source_sink_cpu = cpu_seconds(sink.id()) - source_sink0;
    let source_machine1 = machine_cpu();
    let _ = sink.kill();
    let _ = sink.wait();

    let coldsend_rate = messages as f64 / coldsend_secs;
    let source_rate = messages as f64 / source_secs;
    let claims = match sent_authoritative {
        true => "claims in phase data (Sent folder authoritative)",
        false => "claims in phase pre, a DATA mark unless the envelope went ahead",
    };
    println!(
        "send path: {messages} messages of {size} bytes, concurrency {mailboxes} (one per mailbox), {replicas} worker process(es), sessions reused, {claims}"
    );
    println!("coldsend      {coldsend_rate:>9.1} msg/s  ({coldsend_secs:.2} s, queue → worker → SMTP into smtp-sink)");
    println!("smtp-source   {source_rate:>9.1} msg/s  ({source_secs:.2} s, same sink, -s {mailboxes} -d)");
    println!("ratio         {:>9.3}  (coldsend / smtp-source)", coldsend_rate / source_rate);
    println!("worker CPU    {:>9.3} s per 1,000 messages", cpu * 1000.0 / messages as f64);
    let per_k = |secs: f64| secs * 1000.0 / messages as f64;
    let busy = |(b0, t0): (f64, f64), (b1, t1): (f64, f64)| 100.0 * (b1 - b0) / (t1 - t0).max(f64::EPSILON);
    println!(
        "CPU per 1,000 (coldsend run): worker {:.3} s, redis {:.3} s, smtp-sink {:.3} s, whole machine {:.3} s ({:.0} % of its cores busy)",
        per_k(cpu),
        per_k(redis_cpu),
        per_k(sink_cpu),
        per_k(machine1.0 - machine0.0),
        busy(machine0, machine1)
    );
    println!(
        "CPU per 1,000 (smtp-source run): smtp-sink {:.3} s, whole machine {:.3} s ({:.0} % of its cores busy)",
        per_k(source_sink_cpu),
        per_k(source_machine1.0 - source_machine0.0),
        busy(source_machine0, source_machine1)
    );
    let total: u64 = calls.iter().map(|(_, n, _)| n).sum();
    let per = |n: u64| n as f64 / messages as f64;
    println!("redis         {:>9.1} commands per sent email (all clients, Lua-internal calls included)", per(total));
    let scripts: u64 = calls.iter().filter(|(c, _, _)| c.starts_with("eval")).map(|(_, n, _)| n).sum();
    println!(
        "              {:>9.1} script calls per sent email (reserve and sent; back to back, one sent rides with the next reserve, taken after that email's envelope, written behind the last body, was answered)",
        per(scripts)
    );
    let top: Vec<String> = calls.iter().take(8).map(|(c, n, _)| format!("{c} {:.1}", per(*n))).collect();
    let mut by_time: Vec<(&str, u64)> = calls.iter().map(|(c, _, us)| (c.as_str(), *us)).collect();
    by_time.sort_by_key(|c| std::cmp::Reverse(c.1));
    let by_time: Vec<String> =
        by_time.iter().take(8).map(|(c, us)| format!("{c} {:.1}", *us as f64 / messages as f64)).collect();
    println!("              µs per sent email (a script's time includes its commands'): {}", by_time.join(", "));
    println!("              top: {}", top.join(", "));
    println!(
        "              {:>9.2} top-level commands per sent email (MONITOR, {watched} emails, every client incl. the \
         benchmark's own polling): at most this many round trips",
        top_level as f64 / watched as f64
    );
    let names: Vec<String> =
        top_level_names.iter().take(8).map(|(c, n)| format!("{c} {:.2}", *n as f64 / watched as f64)).collect();
    println!("              top-level: {}", names.join(", "));
}
