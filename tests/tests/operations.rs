//! Operating coldsend: graceful shutdown, health and metrics, Redis outages, replica
//! names, configuration checks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coldsend_tests::fixtures::StallingSmtp;
use coldsend_tests::{Api, ENCRYPTION_KEY, FAST_SENDING, Mail, Stack, run};
use serde_json::json;

fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn account(api: &Api, mail: &Mail, user: &str, smtp_port: u16, smtp_tls: bool) -> String {
    let body = coldsend_tests::account_json(user, &format!("{user}pw"), smtp_port, smtp_tls, mail.imaps_port(), 100);
    api.active_account(&body).await
}

#[tokio::test]
async fn sigterm_mid_send_finishes_the_send_and_exits_zero() {
    let mail = Mail::start("ann:annpw");
    let smtp = StallingSmtp::start(Duration::from_secs(4));
    let mut stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = account(&api, &mail, "ann", smtp.port, false).await;
    let cid = api.start_campaign("ops", &ann, &["lead01@example.test"]).await;

    wait("the message body at the server", 30, || smtp.bodies_received.load(Ordering::SeqCst) == 1);
    let stopping = Instant::now();
    stack.workers[0].terminate();
    let code = stack.workers[0].wait_exit(Duration::from_secs(25));
    assert_eq!(code, Some(0), "exit code; log:\n{}", stack.workers[0].log_text());
    assert!(stopping.elapsed() < Duration::from_secs(20), "within the grace period");
    assert_eq!(smtp.accepted.load(Ordering::SeqCst), 1, "the stalled send was completed, not abandoned");

    // Another replica takes over: nothing is sent again, nothing is lost.
    stack.add_worker();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(smtp.bodies_received.load(Ordering::SeqCst), 1, "not doubled");
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!((c["stats"]["sent"].clone(), c["stats"]["uncertain"].clone()), (json!(1), json!(0)), "{c}");
}

#[tokio::test]
async fn metrics_and_readiness_follow_sends_and_redis() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    // One runtime thread (as on a small machine shared with Redis): everything still runs.
    let mut env = FAST_SENDING.to_vec();
    env.push(("COLDSEND_WORKER__RUNTIME_THREADS", "1"));
    let mut stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann = account(&api, &mail, "ann", mail.submission_port(), true).await;
    api.start_campaign("ops", &ann, &["lead01@example.test", "lead02@example.test"]).await;
    wait("2 emails", 30, || mail.messages("lead01").len() + mail.messages("lead02").len() == 2);

    let worker = &stack.workers[0];
    wait("ready", 10, || worker.health_get("/readyz").0 == 200);
    assert_eq!(worker.health_get("/healthz").0, 200);
    let mut metrics = String::new();
    wait("sends in /metrics", 10, || {
        metrics = worker.health_get("/metrics").1;
        metrics.contains(&format!("coldsend_sends_total{{account=\"{ann}\",outcome=\"sent\"}} 2"))
    });
    for series in [
        format!("coldsend_cap_used{{account=\"{ann}\"}} 2"),
        format!("coldsend_cap_effective{{account=\"{ann}\"}} 100"),
        "coldsend_jobs_total{queue=\"validate-account\",outcome=\"ok\"}".to_owned(),
        "coldsend_jobs_total{queue=\"dispatch\",outcome=\"ok\"}".to_owned(),
        "coldsend_queue_depth{queue=\"cstest:queue:dispatch\",state=\"scheduled\"}".to_owned(),
        "coldsend_job_duration_seconds".to_owned(),
    ] {
        assert!(metrics.contains(&series), "{series} missing from:\n{metrics}");
    }
    assert_eq!(stack.api.health_get("/readyz").0, 200);

    // Redis goes away: not ready, still running; Redis back: ready again.
    stack.redis.kill();
    let worker = &stack.workers[0];
    wait("worker not ready", 15, || worker.health_get("/readyz").0 == 503);
    wait("API not ready", 15, || stack.api.health_get("/readyz").0 == 503);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.workers[0].is_running() && stack.api.is_running(), "no crash while Redis is down");
    let errors = stack.workers[0].health_get("/metrics").1;
    assert!(errors.contains("coldsend_redis_errors_total"), "Redis errors counted");
    stack.redis.restart();
    let worker = &stack.workers[0];
    wait("worker ready again", 60, || worker.health_get("/readyz").0 == 200);
    wait("API ready again", 30, || stack.api.health_get("/readyz").0 == 200);
    assert!(stack.workers[0].is_running() && stack.api.is_running());
}

#[tokio::test]
async fn two_workers_with_the_same_configuration_both_run() {
    let stack = Stack::start_with(None, &FAST_SENDING, 2);
    for w in &stack.workers {
        wait("both ready", 20, || w.health_get("/readyz").0 == 200);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut conn = stack.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*worker*").query(&mut conn).expect("keys");
    let mut names = std::collections::BTreeSet::new();
    for k in keys.iter().filter(|k| k.ends_with(":workers")) {
        let members: Vec<String> = redis::cmd("ZRANGE").arg(k).arg(0).arg(-1).query(&mut conn).unwrap_or_default();
        names.extend(members);
    }
    assert!(names.len() >= 4, "two replicas x two queues with distinct names: {names:?} in {keys:?}");
    for w in &stack.workers {
        assert_eq!(w.health_get("/readyz").0, 200, "{}", w.log_text());
    }
}

#[test]
fn check_config_accepts_good_rejects_bad_and_never_prints_secrets() {
    let base = vec![
        ("COLDSEND_REDIS__URL".to_owned(), "redis://:topsecret-redis-pw@127.0.0.1:6390/0".to_owned()),
        ("COLDSEND_ENCRYPTION_KEY".to_owned(), ENCRYPTION_KEY.to_owned()),
        ("COLDSEND_API__KEY_HASHES".to_owned(), format!("[\"{}\"]", "ab".repeat(32))),
    ];
    for bin in ["coldsend", "coldsend-worker"] {
        let (ok, out, err) = run(bin, &["--check-config"], &base);
        assert!(ok, "{bin}: {out}{err}");
        assert!(out.contains("redis://:***@127.0.0.1:6390/0"), "{out}");
        assert!(out.contains("shutdown_grace_secs = 20"), "effective settings printed: {out}");
        for secret in ["topsecret-redis-pw", ENCRYPTION_KEY, &"ab".repeat(32)] {
            assert!(!out.contains(secret) && !err.contains(secret), "{bin} printed a secret");
        }

        let mut bad = base.clone();
        bad.push(("COLDSEND_WORKER__SHUTDOWN_GRACE_SECS".into(), "0".into()));
        let (ok, _, err) = run(bin, &["--check-config"], &bad);
        assert!(!ok && err.contains("worker.shutdown_grace_secs"), "{bin}: {err}");

        let mut bad = base.clone();
        bad.push(("COLDSEND_WORKER__RUNTIME_THREADS".into(), "5000".into()));
        let (ok, _, err) = run(bin, &["--check-config"], &bad);
        assert!(!ok && err.contains("worker.runtime_threads"), "{bin}: {err}");

        let mut bad = base.clone();
        bad.push(("COLDSEND_SENDING__DEFAULT_TIMEZONE".into(), "Mars/Olympus".into()));
        let (ok, _, err) = run(bin, &["--check-config"], &bad);
        assert!(!ok && err.contains("sending.default_timezone"), "{bin}: {err}");

        let mut bad = base.clone();
        bad.retain(|(k, _)| k != "COLDSEND_ENCRYPTION_KEY");
        bad.push(("COLDSEND_ENCRYPTION_KEY".into(), "not-a-key-but-a-secret-ish-value".into()));
        let (ok, out, err) = run(bin, &["--check-config"], &bad);
        assert!(!ok && err.contains("encryption key"), "{bin}: {err}");
        assert!(!out.contains("not-a-key-but") && !err.contains("not-a-key-but"), "{bin} printed the bad key");
    }
}
