//! IMAP IDLE against a real Dovecot: new mail is acted on within seconds although the
//! scheduled scan is ten minutes away; a watcher whose IMAP process is killed comes back,
//! one whose connection goes silent is replaced, one outlives Redis dropping its clients;
//! replicas share the mailboxes under leases, a killed replica's share moves, a new
//! replica takes a share; nothing is filed twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use lettre::{Message, SmtpTransport, Transport};

/// Scans ten minutes apart (so only IDLE can explain a reply seen within seconds), short
/// leases and IDLE renewals so the test sees takeovers and renewals happen.
const IDLE_FAST: [(&str, &str); 6] = [
    ("COLDSEND_SCAN__INTERVAL_SECS", "600"),
    ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
    ("COLDSEND_SCAN__IDLE_LEASE_SECS", "3"),
    ("COLDSEND_SCAN__IDLE_RENEW_SECS", "4"),
    ("COLDSEND_SCAN__COMMAND_TIMEOUT_SECS", "5"),
    ("COLDSEND_SCAN__IDLE", "true"),
];

fn stack(mail: &Mail, workers: usize) -> Stack {
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(IDLE_FAST);
    Stack::start_with(Some(mail), &env, workers)
}

async fn active(api: &Api, mail: &Mail, user: &str) -> String {
    api.active_account(&account_json(user, &format!("{user}pw"), mail.submission_port(), true, mail.imaps_port(), 100))
        .await
}

/// A reply from `from` to `to`, through Postfix into Dovecot.
fn deliver(mail: &Mail, from: &str, to: &str, subject: &str) {
    let message = Message::builder()
        .from(format!("{from}@example.test").parse().expect("from"))
        .to(format!("{to}@example.test").parse().expect("to"))
        .subject(subject)
        .in_reply_to("<earlier@example.test>".into())
        .body("Sounds good, tell me more".to_owned())
        .expect("message");
    let smtp = SmtpTransport::builder_dangerous("127.0.0.1").port(mail.smtp_port()).build();
    smtp.send(&message).expect("deliver");
}

async fn subjects(api: &Api, account: &str) -> Vec<String> {
    let (_, page) = api.get(&format!("/inbox?account={account}&limit=100")).await;
    page["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["subject"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits until `account`'s master inbox holds `subject`; returns how long that took.
async fn seen_within(api: &Api, account: &str, subject: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while !subjects(api, account).await.iter().any(|s| s == subject) {
        assert!(started.elapsed() < limit, "'{subject}' not classified within {limit:?}\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Which replica watches each mailbox (from the leases in Redis).
fn holders(stack: &Stack, accounts: &[String]) -> BTreeMap<String, Option<String>> {
    let mut conn = stack.redis.connection();
    accounts
        .iter()
        .map(|a| {
            let holder: Option<String> =
                redis::cmd("GET").arg(format!("cstest:idle-watch:{{{a}}}")).query(&mut conn).expect("GET lease");
            (a.clone(), holder)
        })
        .collect()
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Waits until `account` (user `user`) is watched: its lease held and its IMAP session
/// open; then a moment for the watcher to issue IDLE.
async fn until_watched(stack: &Stack, mail: &Mail, user: &str, account: &str) {
    let accounts = [account.to_owned()];
    wait_for("the mailbox's watcher", 30, || holders(stack, &accounts)[account].is_some()).await;
    wait_for("its IMAP session", 30, || !mail.imap_pids(user).is_empty()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn replicas(h: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for holder in h.values().flatten() {
        *count.entry(holder.clone()).or_default() += 1;
    }
    count
}

#[tokio::test]
async fn idle_sees_new_mail_in_seconds_and_outlives_killed_connections() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    let stack = stack(&mail, 1);
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    until_watched(&stack, &mail, "ann", &ann).await;

    let mut took = Vec::new();
    for round in 0..4 {
        let subject = format!("Re: idle round {round}");
        deliver(&mail, "bob", "ann", &subject);
        // The next scheduled scan is ten minutes away: only IDLE explains this.
        took.push(seen_within(&api, &ann, &subject, Duration::from_secs(15)).await);
        // Kill ann's IMAP processes (the watcher's session among them): the server side
        // of the connection dies mid-IDLE. The watcher must notice and come back.
        for pid in mail.imap_pids("ann") {
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        // Mail that lands while nobody watches is caught by the reconnect's catch-up read.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let subject = "Re: after the last kill";
    deliver(&mail, "bob", "ann", subject);
    took.push(seen_within(&api, &ann, subject, Duration::from_secs(20)).await);

    // Redis drops every client (twice): the queue consumers restart, the watchers do not
    // log out — the same IMAP session is still there afterwards — and still act on mail.
    let watching = mail.imap_pids("ann");
    for _ in 0..2 {
        stack.redis.kill_clients();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let still = mail.imap_pids("ann");
    assert!(stack.workers[0].log_text().contains("restarting"), "the blips restarted the queue consumers");
    assert!(watching.iter().any(|p| still.contains(p)), "the watching session survived: {watching:?} -> {still:?}");
    let subject = "Re: after the Redis blips";
    deliver(&mail, "bob", "ann", subject);
    took.push(seen_within(&api, &ann, subject, Duration::from_secs(15)).await);

    // Two renewals (IDLE ended with DONE and issued again every 4 s on the same
    // connection), and the renewed IDLE still sees new mail.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let subject = "Re: after two renewals";
    deliver(&mail, "bob", "ann", subject);
    took.push(seen_within(&api, &ann, subject, Duration::from_secs(15)).await);

    // Every message filed once; one reconnect per kill, none for renewals.
    let all = subjects(&api, &ann).await;
    assert_eq!(all.len(), 7, "each reply filed exactly once: {all:?}");
    eprintln!("delivery -> classified: {took:?}");
    let metrics = stack.workers[0].health_get("/metrics").1;
    assert!(metrics.contains("coldsend_imap_idle_reconnects_total 4"), "{metrics}");
    let log = stack.workers[0].log_text();
    let renewals = log.matches("IDLE renewed").count();
    assert!(renewals >= 2, "IDLE re-issued on schedule: {renewals} renewals");
}

#[tokio::test]
async fn replicas_share_watched_mailboxes_and_a_killed_replicas_share_moves() {
    let users = ["ann", "bea", "cal", "dan"];
    let mail = Mail::start("ann:annpw bea:beapw cal:calpw dan:danpw bob:bobpw");
    let mut stack = stack(&mail, 2);
    let api = Api::new(&stack);
    let mut accounts = Vec::new();
    for u in users {
        accounts.push(active(&api, &mail, u).await);
    }
    // Two replicas, four mailboxes: two each, every mailbox watched once.
    wait_for("an even split", 30, || {
        let h = holders(&stack, &accounts);
        h.values().all(Option::is_some) && replicas(&h).values().all(|n| *n == 2) && replicas(&h).len() == 2
    })
    .await;
    let before = holders(&stack, &accounts);
    // kill -9 the first worker: no handler runs, its leases just stop being renewed.
    let victim_pid = stack.workers[0].pid();
    stack.workers[0].kill9();
    let survivor = wait_for("the survivor to hold all four", 30, || {
        let h = holders(&stack, &accounts);
        h.values().all(Option::is_some) && replicas(&h).len() == 1
    })
    .await;
    eprintln!("killed replica (pid {victim_pid}): its mailboxes moved in {survivor:?}");
    // Lease 3 s, claim rounds every second.
    assert!(survivor < Duration::from_secs(10), "takeover took {survivor:?}");
    let after = holders(&stack, &accounts);
    let moved: Vec<&String> = accounts.iter().filter(|a| before[*a] != after[*a]).collect();
    assert_eq!(moved.len(), 2, "exactly the dead replica's share moved: {before:?} -> {after:?}");
    // A moved mailbox is watched again: its new mail is seen in seconds.
    let (i, _) = users.iter().enumerate().find(|(i, _)| moved.contains(&&accounts[*i])).expect("a moved mailbox");
    deliver(&mail, "bob", users[i], "Re: after the takeover");
    seen_within(&api, &accounts[i], "Re: after the takeover", Duration::from_secs(15)).await;

    // A new replica takes a share without a restart of the other.
    stack.add_worker();
    let rebalanced = wait_for("a new replica's share", 30, || {
        let h = holders(&stack, &accounts);
        h.values().all(Option::is_some) && replicas(&h).len() == 2 && replicas(&h).values().all(|n| *n == 2)
    })
    .await;
    eprintln!("new replica took its share in {rebalanced:?}");
    // Each mailbox has one watching session at most (Dovecot's own count), whatever moved.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for u in users {
        let n = mail.imap_pids(u).len();
        assert!(n <= 2, "{u}: {n} IMAP sessions (one watcher, one kept scan session at most)");
    }
    let filed = subjects(&api, &accounts[i]).await;
    assert_eq!(filed, vec!["Re: after the takeover".to_owned()], "filed once: {filed:?}");
    // The mailbox's usage view names its watcher (what the dashboard shows).
    let h = holders(&stack, &accounts);
    for a in &accounts {
        let (_, usage) = api.get(&format!("/sender-accounts/{a}/usage")).await;
        assert_eq!(usage["idle_watcher"].as_str(), h[a].as_deref(), "{usage}");
    }
    let metrics = stack.workers[1].health_get("/metrics").1;
    assert!(metrics.contains("coldsend_imap_idle_mailboxes 2"), "the survivor reports its share:\n{metrics}");
}

#[tokio::test]
async fn a_silently_dead_connection_is_noticed_and_replaced() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    // The worker reaches IMAP through a relay that can go silent without closing anything.
    let relay = coldsend_tests::fixtures::Relay::start(mail.imaps_port());
    let stack = stack(&mail, 1);
    let api = Api::new(&stack);
    let ann = api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, relay.port, 100)).await;
    until_watched(&stack, &mail, "ann", &ann).await;

    // Silence: Dovecot's EXISTS never arrives, and neither does the answer to DONE at
    // the next renewal (4 s); the command timeout (5 s) must declare the connection dead.
    relay.freeze();
    deliver(&mail, "bob", "ann", "Re: sent into the silence");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(subjects(&api, &ann).await.is_empty(), "nothing can be read through a silent connection");
    relay.thaw();
    let after = seen_within(&api, &ann, "Re: sent into the silence", Duration::from_secs(30)).await;
    eprintln!("classified {after:?} after the network came back");
    let metrics = stack.workers[0].health_get("/metrics").1;
    let reconnects: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("coldsend_imap_idle_reconnects_total ")?.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(reconnects >= 1.0, "the dead connection was replaced: {metrics}");
    // A watcher again: new mail is seen in seconds, once.
    deliver(&mail, "bob", "ann", "Re: after the silence");
    seen_within(&api, &ann, "Re: after the silence", Duration::from_secs(15)).await;
    assert_eq!(subjects(&api, &ann).await.len(), 2);
}

#[tokio::test]
async fn a_watcher_whose_sign_in_is_refused_stops_instead_of_retrying() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    let stack = stack(&mail, 1);
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    until_watched(&stack, &mail, "ann", &ann).await;
    let accounts = [ann.clone()];
    // The password changes on the server and the watcher's connection drops: its next
    // login is refused. Retrying would only get the account locked by a real provider.
    mail.set_password("ann", "changed-elsewhere");
    let refused_before = mail.dovecot_log_count("auth failed");
    for pid in mail.imap_pids("ann") {
        let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    wait_for("the lease to be given back", 30, || holders(&stack, &accounts)[&ann].is_none()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Every refused login is accounted for: the watcher's one, and any scheduled pass's
    // (those count toward DISCONNECTED, as before).
    let refused = mail.dovecot_log_count("auth failed") - refused_before;
    let log = stack.workers[0].log_text();
    let by_watcher = log.matches("IDLE watcher stops: sign-in refused").count();
    let by_scans = log.lines().filter(|l| l.contains("scan failed") && l.contains("AUTH_FAILED")).count();
    assert_eq!(by_watcher, 1, "the watcher tried once and stopped");
    assert_eq!(refused, by_watcher + by_scans, "no other login attempts");
    assert!(stack.workers[0].log_text().contains("sign-in refused"));
    assert!(holders(&stack, &accounts)[&ann].is_none(), "not claimed again while it rests");
}

/// The scan-last time of `account`'s most recent full pass (ms), 0 before the first.
fn last_pass(stack: &Stack, account: &str) -> i64 {
    let at: Option<i64> = redis::cmd("HGET")
        .arg(format!("cstest:scan-last:{{{account}}}"))
        .arg("at")
        .query(&mut stack.redis.connection())
        .expect("HGET scan-last");
    at.unwrap_or(0)
}

/// Watches `account`'s passes for `secs`: their times, and the most IMAP sessions `user`
/// had open at once meanwhile (Dovecot's own count).
async fn passes_for(stack: &Stack, mail: &Mail, user: &str, account: &str, secs: u64) -> (Vec<i64>, usize) {
    let mut passes = vec![last_pass(stack, account)];
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        most = most.max(mail.imap_pids(user).len());
        let at = last_pass(stack, account);
        if Some(&at) != passes.last() {
            passes.push(at);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (passes.split_off(1), most)
}

/// Watches ann's passes (every 2 s) for 9 s: at least three, all run by a watcher (the
/// workers' `coldsend_scan_passes_total{by="watcher"}`), on one IMAP session, with no login.
async fn passes_on_one_session(stack: &Stack, mail: &Mail, ann: &str) {
    let logins = || mail.dovecot_log_count("imap-login: Login: user=<ann@example.test>");
    let before = logins();
    let (passes, most) = passes_for(stack, mail, "ann", ann, 9).await;
    assert!(passes.len() >= 3, "full passes every 2 s: {passes:?}");
    assert_eq!(most, 1, "one IMAP session for the mailbox, across every replica");
    assert_eq!(logins() - before, 0, "{} passes without logging in again", passes.len());
    let by_watcher: f64 = stack
        .workers
        .iter()
        .filter_map(|w| {
            let metrics = w.health_get("/metrics").1;
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("coldsend_scan_passes_total{by=\"watcher\"} ")?.trim().parse::<f64>().ok())
        })
        .sum();
    assert!(by_watcher >= passes.len() as f64, "a watcher ran the passes: {by_watcher} of {passes:?}");
}

/// `workers` workers watching with IDLE (`IDLE_FAST`), full passes every `secs` seconds,
/// Junk scanned as an extra folder (create it first).
fn stack_passing_every(mail: &Mail, secs: &'static str, workers: usize) -> Stack {
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(IDLE_FAST.iter().filter(|(k, _)| *k != "COLDSEND_SCAN__INTERVAL_SECS"));
    env.push(("COLDSEND_SCAN__INTERVAL_SECS", secs));
    env.push(("COLDSEND_SCAN__EXTRA_FOLDERS", "[\"Junk\"]"));
    Stack::start_with(Some(mail), &env, workers)
}

fn junk_reply(mail: &Mail, user: &str, subject: &str) {
    let reply = format!(
        "From: bob@example.test\r\nTo: {user}@example.test\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\nIn-Reply-To: <earlier@example.test>\r\n\r\nSure.\r\n",
        subject.replace([' ', ':', ','], "-")
    );
    mail.doveadm(&["save", "-u", &format!("{user}@example.test"), "-m", "Junk"], Some(reply.as_bytes()));
}

/// A server that does not offer IDLE: the mailbox is still one replica's, on one session
/// logged in once, its passes run there at their interval (new mail waits for the next).
#[tokio::test]
async fn a_mailbox_whose_server_offers_no_idle_is_held_by_one_replica_and_passed_on_one_session() {
    let mail = Mail::start_with("ann:annpw bob:bobpw", &[("MH_DOVECOT_NO_IDLE", "1")]);
    mail.doveadm(&["mailbox", "create", "-u", "ann@example.test", "Junk"], None);
    let stack = stack_passing_every(&mail, "2", 2);
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    until_watched(&stack, &mail, "ann", &ann).await;
    let said = |needle: &str| stack.workers.iter().any(|w| w.log_text().contains(needle));
    assert!(said("does not offer IDLE"), "the server really offers no IDLE");

    let logins = || mail.dovecot_log_count("imap-login: Login: user=<ann@example.test>");
    let before = logins();
    // The holder runs them (not the scan chain, which polls with no lease), and holds on.
    passes_on_one_session(&stack, &mail, &ann).await;
    let accounts = [ann.clone()];
    assert!(holders(&stack, &accounts)[&ann].is_some(), "still held");
    deliver(&mail, "bob", "ann", "Re: polled on the held session");
    junk_reply(&mail, "ann", "Re: into junk, held");
    for subject in ["Re: polled on the held session", "Re: into junk, held"] {
        seen_within(&api, &ann, subject, Duration::from_secs(10)).await;
    }
    assert_eq!(logins() - before, 0, "still the one login");
    let all = subjects(&api, &ann).await;
    assert_eq!(all.len(), 2, "each reply filed once: {all:?}");
}

#[tokio::test]
async fn a_watched_mailbox_is_scanned_on_the_watchers_session_and_the_chain_takes_over_without_it() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    mail.doveadm(&["mailbox", "create", "-u", "ann@example.test", "Junk"], None);
    // Full passes every 2 s (Junk included), IDLE renewed every 4 s. Kept scan sessions
    // are on (the defaults), so a pass the chain ran itself would show as a second session.
    let stack = stack_passing_every(&mail, "2", 1);
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    until_watched(&stack, &mail, "ann", &ann).await;

    // Passes keep coming, on the one watching session: no login, no second session.
    passes_on_one_session(&stack, &mail, &ann).await;
    // They are full passes: a reply filed into Junk (which IDLE on INBOX never sees).
    junk_reply(&mail, "ann", "Re: into junk while watched");
    seen_within(&api, &ann, "Re: into junk while watched", Duration::from_secs(10)).await;

    // Watching turned off for the mailbox: the watcher stops at its next wake and the
    // scheduled chain runs the passes again, without a gap longer than its grace.
    let own = serde_json::json!({"timezone": "UTC", "warmup": false, "append_to_sent": false, "imap_idle": false});
    api.call(reqwest::Method::PUT, &format!("/sender-accounts/{ann}/sending"), Some(&own)).await;
    let accounts = [ann.clone()];
    wait_for("the watcher to stop", 15, || holders(&stack, &accounts)[&ann].is_none()).await;
    let (passes, _) = passes_for(&stack, &mail, "ann", &ann, 8).await;
    assert!(passes.len() >= 2, "the chain runs the passes: {passes:?}");
    junk_reply(&mail, "ann", "Re: into junk, polled");
    seen_within(&api, &ann, "Re: into junk, polled", Duration::from_secs(10)).await;
    let all = subjects(&api, &ann).await;
    assert_eq!(all.len(), 2, "each reply filed once: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_landing_while_a_pass_reads_other_folders_is_seen_by_idle_not_left_for_the_next_pass() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    mail.doveadm(&["mailbox", "create", "-u", "ann@example.test", "Junk"], None);
    // 150 ms each way. A pass starts 8 s after the last one ended: DONE, STATUS INBOX,
    // STATUS Junk, STATUS Sent, the pass recorded, EXAMINE INBOX, IDLE. Mail landing after
    // INBOX's STATUS and before that EXAMINE (≈ 8.5–9.3 s after the last pass ended) raises
    // no EXISTS once IDLE starts (EXAMINE already counted it).
    let proxy = coldsend_tests::fixtures::LatencyProxy::start(mail.imaps_port(), Duration::from_millis(150)).await;
    let stack = stack_passing_every(&mail, "8", 1);
    let api = Api::new(&stack);
    let ann = api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, proxy.port, 100)).await;
    until_watched(&stack, &mail, "ann", &ann).await;

    let now_ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    };
    let mut took = Vec::new();
    for round in 0..2 {
        // One reply aimed into the next pass's window, then nothing else (another message
        // would raise EXISTS and carry a missed one along with it).
        let before = last_pass(&stack, &ann);
        wait_for("a pass to end", 30, || last_pass(&stack, &ann) != before).await;
        let aim = last_pass(&stack, &ann) as u64 + 8_900;
        tokio::time::sleep(Duration::from_millis(aim.saturating_sub(now_ms()))).await;
        let token = format!("probe-{round}");
        let msg = format!(
            "From: bob@example.test\r\nTo: ann@example.test\r\nSubject: Re: {token}\r\nMessage-ID: <{token}@example.test>\r\n\r\nyes\r\n"
        );
        mail.doveadm(&["save", "-u", "ann@example.test", "-m", "INBOX"], Some(msg.as_bytes()));
        let landed = now_ms();
        wait_for("the reply classified", 20, || classified(&stack).contains_key(&token)).await;
        took.push(classified(&stack)[&token].saturating_sub(landed));
    }
    eprintln!("landed -> classified (ms): {took:?}");
    // Read before IDLE: seconds at most, never the next pass 8 s later.
    assert!(took.iter().all(|ms| *ms < 4_000), "left for the next pass (ms after landing): {took:?}");
    assert_eq!(subjects(&api, &ann).await.len(), 2, "each filed once");
}

/// The probe tokens in the event stream with when each event was recorded (ms, the
/// stream id's time).
fn classified(stack: &Stack) -> BTreeMap<String, u64> {
    let events: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("cstest:events")
        .arg("-")
        .arg("+")
        .query(&mut stack.redis.connection())
        .expect("XRANGE events");
    events
        .into_iter()
        .filter_map(|(id, fields)| {
            let token = fields.get("subject")?.strip_prefix("Re: ")?.to_owned();
            Some((token, id.split('-').next()?.parse().ok()?))
        })
        .collect()
}
