//! Faults that once broke coldsend's guarantees, repeated: Redis crashes and dropped
//! connections must never leave a queue without a consumer; a worker killed while the
//! server holds the answer to DATA must never cause a duplicate, nor one killed before
//! its body a lost email.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coldsend_tests::fixtures::StallingSmtp;
use coldsend_tests::{Api, FAST_SENDING, Mail, Redis, Stack, account_json};
use reqwest::Method;
use serde_json::json;

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until the campaign counts one email SENT; says whether it counted one UNCERTAIN
/// on the way.
async fn wait_sent_once(api: &Api, cid: &str, what: &str) -> bool {
    wait_sent(api, cid, 1, what).await
}

/// Waits until the campaign counts `n` emails SENT; says whether it counted one UNCERTAIN
/// on the way.
async fn wait_sent(api: &Api, cid: &str, n: u64, what: &str) -> bool {
    let mut went_uncertain = false;
    wait_for(what, 60, async || {
        let s = api.get(&format!("/campaigns/{cid}")).await.1["stats"].clone();
        went_uncertain |= s["uncertain"].as_u64().unwrap_or(0) > 0;
        s["sent"].as_u64() == Some(n)
    })
    .await;
    went_uncertain
}

/// The mailbox's cap slots taken, over all its days' counters.
fn cap_slots_used(conn: &mut redis::Connection, account: &str) -> u32 {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("cstest:cap:{{{account}}}:*")).query(conn).expect("keys");
    keys.iter().map(|k| redis::cmd("GET").arg(k).query::<u32>(conn).unwrap_or(0)).sum()
}

fn env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
        ("RUST_LOG", "info"),
    ]);
    env.extend(extra);
    env
}

#[tokio::test]
async fn every_queue_consumes_again_after_redis_crashes_and_dropped_connections() {
    const ROUNDS: usize = 10;
    let users: String = std::iter::once("ann:annpw".to_owned())
        .chain((0..=ROUNDS).map(|i| format!("lead{i:02}:x")))
        .collect::<Vec<_>>()
        .join(" ");
    let mail = Mail::start(&users);
    let stack = Stack::start_on(Redis::start_persistent(), Some(&mail), &env(&[]), 1);
    let mut stack = stack;
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 500)).await;
    let cid = api.start_campaign("blips", &ann, &["lead00@example.test"]).await;
    wait_for("the first email", 30, async || mail.messages("lead00").len() == 1).await;

    for round in 1..=ROUNDS {
        let fault = if round % 2 == 1 { "redis kill -9 + restart" } else { "CLIENT KILL TYPE normal" };
        if round % 2 == 1 {
            stack.redis.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.redis.restart();
        } else {
            stack.redis.kill_clients();
        }
        let started = Instant::now();
        let worker = &stack.workers[0];
        wait_for(&format!("round {round} ({fault}): ready"), 60, async || worker.health_get("/readyz").0 == 200).await;

        // validate: a re-validation runs to its end (the API's first call after the fault
        // may find its own connection gone: 503, and it reconnects)
        wait_for(&format!("round {round} ({fault}): the API"), 30, async || {
            api.call(Method::POST, &format!("/sender-accounts/{ann}/validate"), None).await.0.is_success()
        })
        .await;
        let settled = api.settled(&ann).await;
        assert_eq!(settled["status"], "ACTIVE", "round {round} ({fault}): {settled}");

        // dispatch: a new lead's email goes out
        let lead = format!("lead{round:02}");
        let leads = json!({"leads": [{"email": format!("{lead}@example.test")}]});
        wait_for(&format!("round {round} ({fault}): the lead added"), 30, async || {
            api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await.0.is_success()
        })
        .await;
        wait_for(&format!("round {round} ({fault}): an email to {lead}"), 60, async || mail.messages(&lead).len() == 1)
            .await;

        // scan: a new message in ann's INBOX is read
        let id = format!("blip-{round}-{}@example.test", std::process::id());
        let msg = format!(
            "From: someone@example.test\r\nTo: ann@example.test\r\nSubject: note {round}\r\nMessage-ID: <{id}>\r\n\r\nhello\r\n"
        );
        mail.doveadm(&["save", "-u", "ann@example.test"], Some(msg.as_bytes()));
        let processed = format!("cstest:processed:{{{ann}}}");
        wait_for(&format!("round {round} ({fault}): the message scanned"), 60, async || {
            let mut conn = stack.redis.connection();
            let score: Option<f64> =
                redis::cmd("ZSCORE").arg(&processed).arg(format!("in:{id}")).query(&mut conn).unwrap_or(None);
            score.is_some()
        })
        .await;
        eprintln!("round {round} ({fault}): all three queues consumed again within {:?}", started.elapsed());
    }
    assert!(stack.workers[0].is_running(), "the worker survived every fault");
    for i in 0..=ROUNDS {
        assert_eq!(mail.messages(&format!("lead{i:02}")).len(), 1, "lead{i:02}: exactly one email");
    }
}

/// A Redis that answers slowly (a snapshot fork of a large dataset, a loaded host) is not a
/// broken Redis: a worker waits for the answer instead of dropping its connection and
/// restarting every queue consumer, which would park in-flight jobs until their lease ran out.
#[tokio::test]
async fn a_redis_stalled_for_seconds_restarts_no_consumer_and_loses_no_job() {
    const ROUNDS: usize = 4;
    let mail = Mail::start("ann:annpw lead00:x");
    let stack = Stack::start_with(Some(&mail), &env(&[]), 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 500)).await;
    for round in 1..=ROUNDS {
        let (status, _) = api.call(Method::POST, &format!("/sender-accounts/{ann}/validate"), None).await;
        assert_eq!(status, 202, "round {round}");
        // Stall Redis while the validation job is being fetched, run and recorded.
        stack.redis.stall(2.0);
        let settled = api.settled(&ann).await;
        assert_eq!(settled["status"], "ACTIVE", "round {round}: {settled}");
    }
    let logs = stack.logs();
    for sign in ["workers stopped", "restarting"] {
        assert!(!logs.contains(sign), "a stall was taken for a broken Redis ({sign}):\n{}", api.trouble());
    }
    assert!(stack.workers[0].health_get("/readyz").0 == 200, "the worker is ready after the stalls");
}

#[tokio::test]
async fn a_worker_killed_inside_data_never_causes_a_duplicate_where_sent_cannot_tell() {
    const KILLS: usize = 3;
    let users: String = std::iter::once("ann:annpw".to_owned())
        .chain((0..KILLS).map(|i| format!("lead{i:02}:x")))
        .collect::<Vec<_>>()
        .join(" ");
    let mail = Mail::start(&users);
    // The server takes the whole message, then holds its answer for a minute.
    let smtp = StallingSmtp::start(Duration::from_secs(60));
    let extra = [
        ("COLDSEND_SENDING__STALE_SEND_SECS", "3"),
        ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "2"),
        ("COLDSEND_SCAN__UNCERTAIN_GRACE_SECS", "2"),
    ];
    let mut stack = Stack::start_on(Redis::start(), Some(&mail), &env(&extra), 1);
    let api = Api::new(&stack);
    // Custom SMTP: coldsend makes the Sent copy itself, after a 250 — so Sent cannot tell.
    let ann = api.active_account(&account_json("ann", "annpw", smtp.port, false, mail.imaps_port(), 100)).await;
    let leads: Vec<String> = (0..KILLS).map(|i| format!("lead{i:02}@example.test")).collect();
    let cid = api.start_campaign("stall", &ann, &leads.iter().map(String::as_str).collect::<Vec<_>>()).await;

    for kill in 1..=KILLS {
        let bodies = &smtp.bodies_received;
        wait_for(&format!("body {kill} at the server"), 60, async || bodies.load(Ordering::SeqCst) == kill).await;
        // The worst moment: the server has the message, its answer has not come.
        stack.workers[0].kill9();
        stack.workers.remove(0);
        stack.add_worker();
    }
    // Past the sweep and the grace period, with scans every second.
    let mut conn = stack.redis.connection();
    wait_for("every send settled without a resend", 60, async || {
        let settled: usize = redis::cmd("EVAL")
            .arg("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do if redis.call('HEXISTS', k, 'settled') == 1 then n = n + 1 end end return n")
            .arg(0)
            .arg(format!("cstest:send:{cid}:*"))
            .query(&mut stack.redis.connection())
            .unwrap_or(0);
        settled == KILLS
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(smtp.bodies_received.load(Ordering::SeqCst), KILLS, "no step was sent twice");
    let (_, view) = api.get(&format!("/campaigns/{cid}")).await;
    let stats = &view["stats"];
    assert_eq!((stats["uncertain"].clone(), stats["sent"].clone()), (json!(KILLS), json!(0)), "{view}");
    assert_eq!(view["stats"]["lead_states"]["COMPLETED"], json!(KILLS), "the sequences went on: {view}");
    let uncertain: usize =
        redis::cmd("ZCARD").arg(format!("cstest:uncertain:{{{ann}}}")).query(&mut conn).expect("zcard");
    assert_eq!(uncertain, 0, "nothing left waiting");
    assert_eq!(cap_slots_used(&mut conn, &ann), KILLS as u32, "each uncertain send keeps its one cap slot");
}

/// A custom server's send whose worker is killed while the server holds the answer to its
/// RCPT: the claim is still in phase `pre` (the DATA mark, one HDEL, comes only after the
/// envelope's answers), so the sweep requeues it with its cap slot and another worker sends
/// it — one body at the server, SENT, never UNCERTAIN, one slot used.
#[tokio::test]
async fn a_worker_killed_before_the_body_has_its_send_requeued_and_sent_once() {
    let mail = Mail::start("ann:annpw lead01:x");
    let smtp = StallingSmtp::stalling_first_rcpt(Duration::from_secs(60));
    let extra = [
        // The SMTP timeout long enough that the worker still waits at RCPT when it is
        // killed; the stale period (which must be longer) as short as that allows.
        ("COLDSEND_SENDING__STALE_SEND_SECS", "8"),
        ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "6"),
    ];
    let mut stack = Stack::start_on(Redis::start(), Some(&mail), &env(&extra), 1);
    let api = Api::new(&stack);
    let ann = api.active_account(&account_json("ann", "annpw", smtp.port, false, mail.imaps_port(), 100)).await;
    let cid = api.start_campaign("kill", &ann, &["lead01@example.test"]).await;

    let mut conn = stack.redis.connection();
    let record = |conn: &mut redis::Connection| -> (Option<String>, Option<String>) {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("cstest:send:{cid}:*")).query(conn).expect("keys");
        let Some(key) = keys.first() else { return (None, None) };
        redis::cmd("HMGET").arg(key).arg("state").arg("phase").query(conn).expect("hmget")
    };
    wait_for("the send claimed", 30, async || record(&mut conn).0.as_deref() == Some("SENDING")).await;
    // The envelope is at the server, its RCPT unanswered: the worst moment before the body.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(record(&mut conn), (Some("SENDING".into()), Some("pre".into())), "no mark before RCPT's answer");
    stack.workers[0].kill9();
    stack.workers.remove(0);
    stack.add_worker();

    // The dead attempt's slot went back; the new one took one.
    each_sent_once_by_the_new_worker(&api, &cid, &smtp, &mut conn, &ann, 1).await;
}

/// After a killed worker's replacement took over: `n` emails SENT, none UNCERTAIN on the
/// way (nothing claimed was in doubt), `n` bodies at the server and `n` cap slots used.
async fn each_sent_once_by_the_new_worker(
    api: &Api,
    cid: &str,
    smtp: &StallingSmtp,
    conn: &mut redis::Connection,
    account: &str,
    n: u64,
) {
    let went_uncertain = wait_sent(api, cid, n, "every email sent by the new worker").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!went_uncertain, "a send that never reached its body is requeued or still queued, never UNCERTAIN");
    assert_eq!(smtp.bodies_received.load(Ordering::SeqCst) as u64, n, "one body per email at the server");
    let s = api.get(&format!("/campaigns/{cid}")).await.1["stats"].clone();
    assert_eq!((s["sent"].as_u64(), s["uncertain"].as_u64()), (Some(n), Some(0)), "{s}");
    assert_eq!(cap_slots_used(conn, account), n as u32, "one cap slot per email");
}

/// Back to back, a send's envelope goes out behind the last body and its claim waits for
/// the envelope's answers. A worker killed while the server holds the RCPT of such an
/// envelope: the send was never claimed (nothing to sweep: it is simply still QUEUED), the
/// record of the email before it did not wait on the slow server (it went out alone after
/// the bounded wait), and the dropped connection aborts the open transaction. The new
/// worker sends the rest: four bodies for four leads, all SENT, none UNCERTAIN, four slots.
#[tokio::test]
async fn a_worker_killed_while_an_envelope_written_ahead_waits_for_its_answers_loses_and_doubles_nothing() {
    let leads = ["lead01@example.test", "lead02@example.test", "lead03@example.test", "lead04@example.test"];
    let mail = Mail::start("ann:annpw");
    // The first email goes alone; its record finds the other three, so the third's envelope
    // rides behind the second's body: the third RCPT of the server's life.
    let smtp = StallingSmtp::pipelining_stalling_rcpt(3, Duration::from_secs(60));
    let extra = [("COLDSEND_SENDING__STALE_SEND_SECS", "8"), ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "6")];
    let mut stack = Stack::start_on(Redis::start(), Some(&mail), &env(&extra), 1);
    let api = Api::new(&stack);
    let ann = api.active_account(&account_json("ann", "annpw", smtp.port, false, mail.imaps_port(), 100)).await;
    let cid = api.start_campaign("ahead", &ann, &leads).await;

    let mut conn = stack.redis.connection();
    let states = |conn: &mut redis::Connection| -> Vec<String> {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("cstest:send:{cid}:*")).query(conn).expect("keys");
        let mut states: Vec<String> = keys
            .iter()
            .map(|k| {
                redis::cmd("HGET").arg(k).arg("state").query::<Option<String>>(conn).expect("hget").unwrap_or_default()
            })
            .collect();
        states.sort();
        states
    };
    wait_for("the third RCPT at the server", 30, async || smtp.rcpts.load(Ordering::SeqCst) >= 3).await;
    // The second email's record rode with nothing: it is written within the bounded wait.
    wait_for("the second email recorded", 10, async || states(&mut conn).iter().filter(|s| *s == "SENT").count() == 2)
        .await;
    assert_eq!(smtp.bodies_received.load(Ordering::SeqCst), 2);
    assert_eq!(states(&mut conn), ["QUEUED", "QUEUED", "SENT", "SENT"], "the third is not claimed before its answers");
    stack.workers[0].kill9();
    stack.workers.remove(0);
    stack.add_worker();

    each_sent_once_by_the_new_worker(&api, &cid, &smtp, &mut conn, &ann, 4).await;
}

/// A claim in phase `pre` held up before its body past the stale period is requeued by
/// the sweep and sent by another attempt; when the held one's DATA is answered, its mark
/// finds the claim lost and no body is written — and the session it holds mid-DATA is
/// dropped, not QUIT (a QUIT there is read as the message and never answered).
#[tokio::test]
async fn a_claim_held_up_past_the_stale_period_writes_no_body() {
    send_held_up_at_rcpt(false).await;
}

/// A claim taken in phase `data` (the mailbox's Sent folder is authoritative) skips the
/// DATA-phase mark only while it is young. Held up past the stale period, the sweep makes
/// it UNCERTAIN and Sent (which never saw it) has it requeued and sent by another attempt:
/// the held one must still mark, find its claim lost and write no body. Without that check
/// the body goes out twice here.
#[tokio::test]
async fn a_claim_in_data_held_up_past_the_stale_period_is_checked_before_its_body() {
    send_held_up_at_rcpt(true).await;
}

/// One send whose first RCPT the server answers only after 11 s: by then the sweep took
/// the claim (stale after 5 s), the send was requeued (at once in phase `pre`; after the
/// 2 s grace from Sent in phase `data`) and a new chain sent it (the held chain's lease ran
/// out). MAIL, RCPT and DATA together may take three SMTP timeouts (12 s).
async fn send_held_up_at_rcpt(sent_authoritative: bool) {
    let mail = Mail::start("ann:annpw lead01:x");
    let smtp = StallingSmtp::stalling_first_rcpt(Duration::from_secs(11));
    let extra = [
        ("COLDSEND_SENDING__STALE_SEND_SECS", "5"),
        ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "4"),
        ("COLDSEND_SCAN__UNCERTAIN_GRACE_SECS", "2"),
    ];
    let stack = Stack::start_on(Redis::start(), Some(&mail), &env(&extra), 1);
    let api = Api::new(&stack);
    let ann = api.active_account(&account_json("ann", "annpw", smtp.port, false, mail.imaps_port(), 100)).await;
    if sent_authoritative {
        api.trust_sent_folder(&ann).await;
    }
    let cid = api.start_campaign("held", &ann, &["lead01@example.test"]).await;

    let went_uncertain = wait_sent_once(&api, &cid, "sent by another attempt").await;
    // Until the held attempt has had its answer to RCPT and done whatever it does.
    let log = async || stack.workers[0].log_text();
    wait_for("the held attempt's end", 30, async || {
        log().await.contains("claim lost before DATA") || smtp.bodies_received.load(Ordering::SeqCst) > 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Phase `pre` is requeued by the sweep itself; phase `data` goes by UNCERTAIN and Sent.
    assert_eq!(went_uncertain, sent_authoritative, "swept as its phase says");
    assert_eq!(smtp.bodies_received.load(Ordering::SeqCst), 1, "the swept claim wrote no body; the new one did");
    let s = api.get(&format!("/campaigns/{cid}")).await.1["stats"].clone();
    assert_eq!((s["sent"].as_u64(), s["uncertain"].as_u64()), (Some(1), Some(0)), "{s}");
    let log = log().await;
    let about_it: Vec<&str> = log.lines().filter(|l| l.contains("lead_id")).collect();
    assert!(log.contains("claim lost before DATA"), "the held attempt found its claim gone at DATA: {about_it:#?}");
}
