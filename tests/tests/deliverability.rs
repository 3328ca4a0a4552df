//! What a refusal does depends on whose problem it is (real Postfix answers): a bad
//! address bounces and is suppressed; our sender being refused (blocked, policy, quota)
//! keeps the lead, pauses the mailbox after repeated refusals and tells the operator.

use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::{Value, json};

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start(api: &Api, account: &str, leads: &[&str]) -> String {
    let body = json!({"name": "d", "sender_account_ids": [account], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<Value> = leads.iter().map(|e| json!({"email": e})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    cid
}

/// A two-step campaign to lead01 (follow-up after `delay`), started; its campaign id and
/// the first step as delivered.
async fn first_step_to_lead01(api: &Api, mail: &Mail, account: &str, delay: &str) -> (String, String) {
    let body = json!({"name": "one lead", "sender_account_ids": [account],
        "steps": [{"subject": "Hi", "text": "Hello"}, {"text": "Following up", "delay": delay}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    wait_for("the first step", 30, async || mail.messages("lead01").len() == 1).await;
    (cid, mail.messages("lead01").remove(0))
}

async fn lead_states(api: &Api, cid: &str) -> Vec<(String, String)> {
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    leads
        .as_array()
        .expect("leads")
        .iter()
        .map(|l| (l["email"].as_str().unwrap_or("").to_owned(), l["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test]
async fn sender_side_refusals_pause_the_mailbox_and_suppress_nobody() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([("COLDSEND_SENDING__SENDER_REFUSAL_LIMIT", "2"), ("COLDSEND_SENDING__SENDER_REFUSAL_RETRY_SECS", "2")]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    let blocked = "554 5.7.1 Client host rejected: blocked using zen.spamhaus.org";
    for l in ["lead01", "lead02", "lead03"] {
        mail.set_recipient_rule(&format!("{l}@example.test"), Some(blocked));
    }
    let cid = start(&api, &ann, &["lead01@example.test", "lead02@example.test", "lead03@example.test"]).await;

    // Two refusals: the mailbox pauses, with the reason and the server's words.
    wait_for("the mailbox paused", 60, async || {
        api.get(&format!("/sender-accounts/{ann}")).await.1["sending_pause"].is_object()
    })
    .await;
    let (_, account) = api.get(&format!("/sender-accounts/{ann}")).await;
    assert_eq!(account["sending_pause"]["reason"], "blocked", "{account}");
    assert!(account["sending_pause"]["message"].as_str().unwrap_or("").contains("5.7.1"), "{account}");
    let refused_before = mail.log_tail("reject: RCPT").lines().count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(mail.log_tail("reject: RCPT").lines().count(), refused_before, "nothing is tried while paused");
    assert_eq!(refused_before, 2, "paused after the second refusal");

    // Nobody is bounced, failed or suppressed; the operator sees why.
    for (email, state) in lead_states(&api, &cid).await {
        assert_eq!(state, "ACTIVE", "{email}");
    }
    let mut conn = stack.redis.connection();
    let suppressed: usize = redis::cmd("HLEN").arg("cstest:suppression").query(&mut conn).expect("hlen");
    assert_eq!(suppressed, 0);
    let (_, inbox) = api.get("/inbox?kind=sender_refused").await;
    let events = inbox["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{inbox}");
    assert!(events.iter().all(|e| e["bounce"]["class"] == "sender_side" && e["account_id"] == ann.as_str()), "{inbox}");

    // Fixed: resumed by the operator, every step goes out once.
    for l in ["lead01", "lead02", "lead03"] {
        mail.set_recipient_rule(&format!("{l}@example.test"), None);
    }
    let (status, resumed) = api.call(Method::POST, &format!("/sender-accounts/{ann}/resume-sending"), None).await;
    assert_eq!(status, 200, "{resumed}");
    assert!(resumed["sending_pause"].is_null(), "{resumed}");
    wait_for("all three delivered", 60, async || {
        ["lead01", "lead02", "lead03"].iter().all(|l| mail.messages(l).len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for l in ["lead01", "lead02", "lead03"] {
        assert_eq!(mail.messages(l).len(), 1, "{l}: exactly once");
    }
}

#[tokio::test]
async fn a_daily_quota_answer_stops_the_mailbox_for_its_day_and_fails_no_lead() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    mail.set_recipient_rule("lead01@example.test", Some("550 5.4.5 Daily user sending quota exceeded."));
    let cid = start(&api, &ann, &["lead01@example.test"]).await;

    wait_for("the mailbox stopped", 60, async || {
        api.get(&format!("/sender-accounts/{ann}")).await.1["sending_pause"].is_object()
    })
    .await;
    let (_, account) = api.get(&format!("/sender-accounts/{ann}")).await;
    let until = account["sending_pause"]["until_ms"].as_i64().expect("until");
    let (_, usage) = api.get(&format!("/sender-accounts/{ann}/usage")).await;
    // Until the mailbox's next local midnight (UTC here): more than a few minutes away
    // unless the test runs just before midnight.
    let midnight =
        (chrono::Utc::now() + chrono::Duration::days(1)).date_naive().and_hms_opt(0, 0, 0).expect("t").and_utc();
    assert_eq!(until, midnight.timestamp_millis(), "paused to the next local day: {account} {usage}");
    // A lead added now (which wakes the mailbox) waits for tomorrow too.
    let more = json!({"leads": [{"email": "lead02@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&more)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(mail.messages("lead02").is_empty(), "nothing else goes out today");
    for (email, state) in lead_states(&api, &cid).await {
        assert_eq!(state, "ACTIVE", "{email}: no lead failed");
    }
}

#[tokio::test]
async fn a_reply_to_the_mailto_unsubscribe_address_suppresses_the_lead() {
    use lettre::{Message, SmtpTransport, Transport};
    let mail = Mail::start("ann:annpw lead01:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([("COLDSEND_SCAN__INTERVAL_SECS", "1"), ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1")]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    let (cid, sent) = first_step_to_lead01(&api, &mail, &ann, "8s").await;
    assert!(
        sent.contains("List-Unsubscribe:") && sent.contains("<mailto:ann@example.test?subject=unsubscribe>"),
        "{sent}"
    );

    // What a mail client does with the mailto: link: a message to it, subject "unsubscribe".
    let message = Message::builder()
        .from("lead01@example.test".parse().expect("addr"))
        .to("ann@example.test".parse().expect("addr"))
        .subject("unsubscribe")
        .body(String::new())
        .expect("message");
    SmtpTransport::builder_dangerous("127.0.0.1").port(mail.smtp_port()).build().send(&message).expect("send");

    wait_for("the lead unsubscribed", 30, async || {
        lead_states(&api, &cid).await.iter().any(|(_, s)| s == "UNSUBSCRIBED")
    })
    .await;
    let mut conn = stack.redis.connection();
    let reason: Option<String> =
        redis::cmd("HGET").arg("cstest:suppression").arg("lead01@example.test").query(&mut conn).expect("hget");
    assert_eq!(reason.as_deref(), Some("unsubscribed"));
    let (_, inbox) = api.get("/inbox?kind=unsubscribe").await;
    assert_eq!(inbox["events"].as_array().map(Vec::len), Some(1), "{inbox}");
    // The follow-up (due 8 s after the first) never goes out.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(mail.messages("lead01").len(), 1, "no follow-up after unsubscribing");
}

#[tokio::test]
async fn a_dsn_for_a_sender_side_refusal_pauses_the_mailbox_and_suppresses_nobody() {
    use lettre::{SmtpTransport, Transport};
    let mail = Mail::start("ann:annpw lead01:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
        ("COLDSEND_SENDING__SENDER_REFUSAL_LIMIT", "1"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    let (cid, sent) = first_step_to_lead01(&api, &mail, &ann, "1h").await;
    let message_id =
        sent.lines().find_map(|l| l.strip_prefix("Message-ID:").map(|v| v.trim().to_owned())).expect("Message-ID");

    // A remote MTA's later bounce, as Postfix writes them: our IP is on a blocklist.
    let dsn = format!(
        "From: MAILER-DAEMON@mx.remote.example (Mail Delivery System)\r\nTo: ann@example.test\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-sender-side@mx.remote.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.remote.example.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.example\r\n\r\n\
         Final-Recipient: rfc822; lead01@example.test\r\nAction: failed\r\nStatus: 5.7.1\r\n\
         Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked\r\n using zen.spamhaus.org\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: ann@example.test\r\nTo: lead01@example.test\r\n\
         Subject: Hi\r\nMessage-ID: {message_id}\r\n\r\n--B--\r\n"
    );
    let envelope =
        lettre::address::Envelope::new(None, vec!["ann@example.test".parse().expect("addr")]).expect("envelope");
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(mail.smtp_port())
        .build()
        .send_raw(&envelope, dsn.as_bytes())
        .expect("deliver the DSN");

    wait_for("the mailbox paused", 30, async || {
        api.get(&format!("/sender-accounts/{ann}")).await.1["sending_pause"].is_object()
    })
    .await;
    let (_, account) = api.get(&format!("/sender-accounts/{ann}")).await;
    assert_eq!(account["sending_pause"]["reason"], "blocked", "{account}");
    for (email, state) in lead_states(&api, &cid).await {
        assert_eq!(state, "ACTIVE", "{email}: a sender-side bounce leaves the lead alone");
    }
    let mut conn = stack.redis.connection();
    let suppressed: usize = redis::cmd("HLEN").arg("cstest:suppression").query(&mut conn).expect("hlen");
    assert_eq!(suppressed, 0, "nobody suppressed");
    let (_, inbox) = api.get("/inbox?kind=bounce").await;
    let event = &inbox["events"][0];
    assert_eq!(event["bounce"]["class"], "sender_side", "{inbox}");
    assert_eq!(event["bounce"]["reason"], "blocked", "{inbox}");
    assert_eq!(event["bounce"]["recipient"], "lead01@example.test", "{inbox}");
}

#[tokio::test]
async fn a_mailbox_whose_hard_bounces_pass_the_rate_limit_pauses_once_and_resumes_when_told() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x lead04:x lead05:x lead06:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_HEALTH__BOUNCE_RATE_WINDOW", "100"),
        ("COLDSEND_HEALTH__BOUNCE_RATE_LIMIT_PERCENT", "30"),
        ("COLDSEND_HEALTH__BOUNCE_RATE_MIN_SENDS", "3"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    // Four of six addresses do not exist: whatever the order, by the fourth bounce more
    // than 30 % of at least four sends bounced.
    let bad = ["lead01", "lead02", "lead03", "lead04"];
    for l in bad {
        mail.set_recipient_rule(&format!("{l}@example.test"), Some("550 5.1.1 User unknown"));
    }
    let all: Vec<String> = (1..=6).map(|i| format!("lead{i:02}@example.test")).collect();
    let cid = start(&api, &ann, &all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    wait_for("the bounce-rate pause", 60, async || {
        api.get(&format!("/sender-accounts/{ann}")).await.1["sending_pause"]["reason"] == "bounce_rate"
    })
    .await;
    let tried =
        || mail.log_tail("RCPT").lines().count() + mail.messages("lead05").len() + mail.messages("lead06").len();
    let before = tried();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(tried(), before, "nothing goes out while paused");
    let (_, events) = api.get("/inbox?kind=bounce_rate_paused").await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1), "told once: {events}");
    let states = lead_states(&api, &cid).await;
    let bounced = states.iter().filter(|(_, s)| s == "BOUNCED").count();
    assert!(
        bounced >= 1 && states.iter().all(|(_, s)| s == "BOUNCED" || s == "ACTIVE" || s == "COMPLETED"),
        "{states:?}"
    );

    // Lists cleaned, sending resumed: the good addresses get their email, once.
    for l in bad {
        mail.set_recipient_rule(&format!("{l}@example.test"), None);
    }
    let (status, _) = api.call(Method::POST, &format!("/sender-accounts/{ann}/resume-sending"), None).await;
    assert_eq!(status, 200);
    wait_for("the good leads", 60, async || mail.messages("lead05").len() == 1 && mail.messages("lead06").len() == 1)
        .await;
}
