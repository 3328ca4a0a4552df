//! No secret reaches Redis unsealed by any entry point (API, CLI, command stream,
//! dead-letter), and a poisoned command neither stalls the stream nor spins a core.

use std::time::{Duration, Instant};

use coldsend_tests::{Api, Mail, Stack, account_json, bin};
use reqwest::Method;
use serde_json::{Value, json};

fn xadd(stack: &Stack, command: &str) -> String {
    let mut conn = stack.redis.connection();
    redis::cmd("XADD").arg("cstest:commands").arg("*").arg("command").arg(command).query(&mut conn).expect("xadd")
}

fn stream_len(stack: &Stack, stream: &str) -> usize {
    let mut conn = stack.redis.connection();
    redis::cmd("XLEN").arg(stream).query(&mut conn).expect("xlen")
}

/// The dead-lettered entries: (entry id, recorded command, reason).
fn dead(stack: &Stack) -> Vec<(String, String, String)> {
    let mut conn = stack.redis.connection();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> =
        redis::cmd("XRANGE").arg("cstest:commands:dead").arg("-").arg("+").query(&mut conn).expect("xrange");
    entries
        .into_iter()
        .map(|(_, f)| {
            let get = |k: &str| f.get(k).cloned().unwrap_or_default();
            (get("entry"), get("command"), get("reason"))
        })
        .collect()
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_password_reaches_redis_unsealed_by_any_entry_point() {
    let mail = Mail::start("carol:pw-carol-7Q dave:pw-dave-8R erin:pw-erin-9S");
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let body = |user: &str, pw: &str| account_json(user, pw, mail.submission_port(), true, mail.imaps_port(), 50);
    let mut secrets = Vec::new();

    // API: valid, invalid (bad port), a password of the wrong type (never echoed back).
    let (status, _) = api.create(&body("carol", "pw-carol-7Q")).await;
    assert_eq!(status, 201);
    let mut bad = body("carol2", "pw-api-invalid-1A");
    bad["smtp_port"] = json!(70000);
    assert_eq!(api.create(&bad).await.0, 422);
    let mut typed = body("carol3", "x");
    typed["smtp_password"] = json!(987_654_321_123_u64);
    let (status, answer) = api.create(&typed).await;
    assert_eq!(status, 422, "{answer}");
    assert!(!answer.to_string().contains("987654321123"), "the password was echoed: {answer}");
    secrets.extend(["pw-carol-7Q", "pw-api-invalid-1A", "987654321123"]);

    // CLI: valid and invalid files.
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = |file: &Value| {
        let path = dir.path().join("account.json");
        std::fs::write(&path, file.to_string()).expect("write");
        std::process::Command::new(bin("coldsend"))
            .args(["accounts", "add", "--file"])
            .arg(&path)
            .envs(stack.env.iter().cloned())
            .output()
            .expect("coldsend")
    };
    assert!(cli(&body("dave", "pw-dave-8R")).status.success());
    let mut bad = body("dave2", "pw-cli-invalid-2B");
    bad["inbox_type"] = json!("YAHOO");
    let out = cli(&bad);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pw-cli-invalid-2B"));
    secrets.extend(["pw-dave-8R", "pw-cli-invalid-2B"]);

    // Command stream: valid, invalid fields, not JSON, a password of the wrong type.
    let command = |account: &Value| json!({"v": 1, "type": "register_account", "account": account}).to_string();
    xadd(&stack, &command(&body("erin", "pw-erin-9S")));
    let mut bad = body("erin2", "pw-stream-invalid-3C");
    bad["daily_limit"] = json!(999_999);
    xadd(&stack, &command(&bad));
    xadd(&stack, r#"{"v": 1, "type": "register_account", "account": {"smtp_password": "pw-stream-broken-4D""#);
    let mut typed = body("erin3", "x");
    typed["imap_password"] = json!(["pw-stream-typed-5E"]);
    xadd(&stack, &command(&typed));
    secrets.extend(["pw-erin-9S", "pw-stream-invalid-3C", "pw-stream-broken-4D", "pw-stream-typed-5E"]);
    wait_until("all four commands handled", 30, || {
        stream_len(&stack, "cstest:commands:done") + stream_len(&stack, "cstest:commands:dead") == 4
    })
    .await;
    wait_until("the command stream drained", 10, || stream_len(&stack, "cstest:commands") == 0).await;
    assert_eq!(dead(&stack).len(), 3, "{:?}", dead(&stack));
    let dead_text = format!("{:?}", dead(&stack));
    assert!(dead_text.contains("[redacted]") && dead_text.contains("sealed:"), "{dead_text}");

    // Every account settles (the worker opened what was sealed), then nothing anywhere holds a secret.
    let (_, list) = api.get("/sender-accounts").await;
    for a in list.as_array().expect("list") {
        assert_eq!(api.settled(a["id"].as_str().expect("id")).await["status"], "ACTIVE", "{a}");
    }
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    for secret in &secrets {
        stack.redis.assert_nowhere(secret);
    }
    let logs = stack.logs();
    for secret in &secrets {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test]
async fn a_poisoned_command_is_dead_lettered_after_bounded_retries_while_others_flow() {
    let stack = Stack::start(None);
    let api = Api::new(&stack);
    // An account that never validates is enough to create campaigns.
    let (status, account) = api.create(&account_json("ann", "pw", 1, false, 1, 10)).await;
    assert_eq!(status, 201);
    let acct = account["id"].as_str().expect("id").to_owned();
    let mut campaigns = Vec::new();
    for name in ["corrupt", "wrongtype", "healthy"] {
        let body = json!({"name": name, "sender_account_ids": [acct], "steps": [{"subject": "Hi", "text": "x"}]});
        let (status, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
        assert_eq!(status, 201, "{c}");
        campaigns.push(c["id"].as_str().expect("id").to_owned());
    }
    let mut conn = stack.redis.connection();
    // A corrupt record can never be read: refused at once.
    let _: () = redis::cmd("HSET")
        .arg(format!("cstest:campaign:{}", campaigns[0]))
        .arg("record")
        .arg("{not json")
        .query(&mut conn)
        .expect("hset");
    // A key of the wrong type fails every write with a Redis error: retried, but not forever.
    let _: () = redis::cmd("SET").arg(format!("cstest:leads:{}", campaigns[1])).arg("x").query(&mut conn).expect("set");

    let started = Instant::now();
    let add =
        |cid: &str| json!({"v": 1, "type": "add_leads", "campaign_id": cid, "leads": [{"email": "l@example.test"}]});
    xadd(&stack, &add(&campaigns[0]).to_string());
    xadd(&stack, &add(&campaigns[1]).to_string());
    xadd(&stack, &add(&campaigns[2]).to_string());
    // The healthy command behind the poisoned ones is carried out at once.
    wait_until("the healthy command", 10, || stream_len(&stack, "cstest:commands:done") == 1).await;
    let (_, healthy) = api.get(&format!("/campaigns/{}", campaigns[2])).await;
    assert_eq!(healthy["stats"]["leads"], 1, "{healthy}");

    wait_until("both poisoned commands dead-lettered", 60, || dead(&stack).len() == 2).await;
    let reasons: Vec<String> = dead(&stack).into_iter().map(|(_, _, r)| r).collect();
    assert!(reasons.iter().any(|r| r.contains("corrupt")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("gave up after 6 attempts") && r.contains("WRONGTYPE")), "{reasons:?}");
    assert!(started.elapsed() < Duration::from_secs(40), "bounded: {:?}", started.elapsed());
    assert_eq!(stream_len(&stack, "cstest:commands"), 0, "nothing left pending");

    // Bounded retries, not a spin: a handful of warnings, not thousands.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retries = stack.workers[0].log_text().matches("command failed; will retry").count();
    assert!((1..=6).contains(&retries), "{retries} retry warnings");

    // The stream keeps flowing afterwards.
    xadd(&stack, &json!({"v": 1, "type": "pause_campaign", "campaign_id": campaigns[2]}).to_string());
    wait_until("a later command", 10, || {
        stream_len(&stack, "cstest:commands:done") + stream_len(&stack, "cstest:commands:dead") == 4
    })
    .await;
}
