//! IMAP scanning end to end: real bounces from Postfix, replies and out-of-office
//! messages sent over SMTP by local users, read back from Dovecot by the scanner.

use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use lettre::{Message, SmtpTransport, Transport};
use reqwest::Method;
use serde_json::{Value, json};

const SCAN_FAST: [(&str, &str); 3] = [
    ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
    ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
    ("COLDSEND_SCAN__UNCERTAIN_GRACE_SECS", "3"),
];

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn setup(users: &str) -> (Mail, Stack) {
    let mail = Mail::start(users);
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(SCAN_FAST);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    (mail, stack)
}

async fn active(api: &Api, mail: &Mail, user: &str) -> String {
    let body = account_json(user, &format!("{user}pw"), mail.submission_port(), true, mail.imaps_port(), 100);
    let (_, created) = api.create(&body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(api.settled(&id).await["status"], "ACTIVE");
    let sending = json!({"timezone": "UTC", "warmup": false, "append_to_sent": false});
    api.call(Method::PUT, &format!("/sender-accounts/{id}/sending"), Some(&sending)).await;
    id
}

async fn campaign(api: &Api, account: &str, leads: &[&str], follow_up_delay: &str) -> String {
    let body = json!({"name": "scan", "sender_account_ids": [account], "steps": [
        {"subject": "Quick question", "text": "Hello"},
        {"text": "Following up", "delay": follow_up_delay}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<Value> = leads.iter().map(|e| json!({"email": e})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    cid
}

async fn lead_state(api: &Api, cid: &str, email: &str) -> Value {
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    leads.as_array().and_then(|l| l.iter().find(|x| x["email"] == email).cloned()).unwrap_or(Value::Null)
}

fn header(msg: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    msg.lines().find(|l| l.to_ascii_lowercase().starts_with(&prefix)).map(|l| l[prefix.len()..].trim().to_owned())
}

/// Mail from a local user to ann, through Postfix (no AUTH on the 25-style port).
fn send_to_ann(mail: &Mail, message: Message) {
    let smtp = SmtpTransport::builder_dangerous("127.0.0.1").port(mail.smtp_port()).build();
    smtp.send(&message).expect("send to ann");
}

#[tokio::test]
async fn a_real_bounce_marks_the_lead_bounced_and_suppressed() {
    let (mail, stack) = setup("ann:annpw").await;
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    let cid = campaign(&api, &ann, &["nosuch@example.test"], "1h").await;
    wait_for("the bounce", 60, async || lead_state(&api, &cid, "nosuch@example.test").await["state"] == "BOUNCED")
        .await;
    let lead = lead_state(&api, &cid, "nosuch@example.test").await;
    assert!(lead["error"].as_str().unwrap_or("").contains("5.1.1"), "{lead}");
    let (_, page) = api.get(&format!("/inbox?kind=bounce&account={ann}")).await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["events"][0]["campaign_id"], cid.as_str());
    // Suppressed everywhere: a later campaign never mails it.
    let later = campaign(&api, &ann, &["nosuch@example.test"], "1h").await;
    assert_eq!(lead_state(&api, &later, "nosuch@example.test").await["state"], "SUPPRESSED");
}

#[tokio::test]
async fn replies_stop_sequences_and_out_of_office_pauses() {
    let (mail, stack) = setup("ann:annpw lead01:x lead02:x lead03:x lead04:x").await;
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    let leads = ["lead01@example.test", "lead02@example.test", "lead03@example.test", "lead04@example.test"];
    let cid = campaign(&api, &ann, &leads, "8s").await;
    wait_for("first steps", 30, async || (1..=4).all(|i| mail.messages(&format!("lead0{i}")).len() == 1)).await;
    let first_id = |i: u32| header(&mail.messages(&format!("lead0{i}"))[0], "Message-ID").expect("Message-ID");
    let ann_addr = "ann@example.test".parse().expect("addr");
    let from = |i: u32| format!("lead0{i}@example.test").parse().expect("addr");
    // lead01: In-Reply-To. lead02: References only. lead03: neither, "Re:" subject.
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(1))
            .to(ann_addr)
            .subject("Re: Quick question")
            .in_reply_to(first_id(1))
            .body("Yes, call me".to_owned())
            .expect("msg"),
    );
    let ann_addr = "ann@example.test".parse().expect("addr");
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(2))
            .to(ann_addr)
            .subject("Re: Quick question")
            .references(first_id(2))
            .body("Tell me more".to_owned())
            .expect("msg"),
    );
    let ann_addr = "ann@example.test".parse().expect("addr");
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(3))
            .to(ann_addr)
            .subject("Re: Quick question")
            .body("Interested".to_owned())
            .expect("msg"),
    );
    // lead04: an out-of-office in German, back today: paused, then resumed.
    let today = chrono::Utc::now().format("%d.%m.%Y").to_string();
    let ann_addr = "ann@example.test".parse().expect("addr");
    let ooo = Message::builder()
        .from(from(4))
        .to(ann_addr)
        .subject("Abwesenheitsnotiz: Quick question")
        .in_reply_to(first_id(4))
        .raw_header(lettre::message::header::HeaderValue::new(
            lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ))
        .body(format!("Ich bin bis zum {today} nicht im Büro."))
        .expect("msg");
    let seen_before = mail.inbox_flags("ann");
    send_to_ann(&mail, ooo);

    for (i, _) in [(1, ()), (2, ()), (3, ())] {
        let email = format!("lead0{i}@example.test");
        wait_for("REPLIED", 40, async || lead_state(&api, &cid, &email).await["state"] == "REPLIED").await;
    }
    // The follow-up (due 8 s after the first step) never reaches those who replied…
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 1..=3 {
        assert_eq!(mail.messages(&format!("lead0{i}")).len(), 1, "lead0{i} got a follow-up after replying");
    }
    // …while lead04 (out of office, back today) was paused, never counted as a reply, and resumed.
    wait_for("lead04's follow-up", 40, async || mail.messages("lead04").len() == 2).await;
    let (_, replies) = api.get(&format!("/inbox?kind=reply&campaign={cid}")).await;
    assert_eq!(replies["events"].as_array().map(Vec::len), Some(3), "{replies}");
    let (_, auto) = api.get(&format!("/inbox?kind=auto_reply&campaign={cid}")).await;
    assert_eq!(auto["events"].as_array().map(Vec::len), Some(1), "{auto}");
    assert_eq!(auto["events"][0]["lead_id"], lead_state(&api, &cid, "lead04@example.test").await["id"]);

    // Scanning changed no flag (nothing marked \\Seen), and a later scan fetches nothing.
    let after = mail.inbox_flags("ann");
    assert!(after.iter().all(|f| !f.contains('S')), "a message was marked seen: {after:?} (before: {seen_before:?})");
    let mut conn = stack.redis.connection();
    let last: Option<String> =
        redis::cmd("HGET").arg(format!("cstest:scan-last:{{{ann}}}")).arg("fetched").query(&mut conn).expect("hget");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last_again: Option<String> =
        redis::cmd("HGET").arg(format!("cstest:scan-last:{{{ann}}}")).arg("fetched").query(&mut conn).expect("hget");
    assert_eq!(last_again.as_deref(), Some("0"), "a quiet mailbox fetches nothing (before: {last:?})");
}
