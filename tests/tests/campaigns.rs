//! Campaign sending end to end: the API, worker processes, Redis, and real Postfix +
//! Dovecot; every count is taken from the recipients' Maildirs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack};
use reqwest::Method;
use serde_json::{Value, json};

fn users(senders: &[&str], leads: usize) -> String {
    let mut u: Vec<String> = senders.iter().map(|s| format!("{s}:{s}pw")).collect();
    u.extend((1..=leads).map(|i| format!("lead{i:02}:x")));
    u.join(" ")
}

async fn active_account(api: &Api, mail: &Mail, user: &str, daily_limit: u32) -> String {
    let body = json!({
        "email_address": format!("{user}@example.test"), "display_name": format!("{user} at Example"),
        "inbox_type": "CUSTOM_SMTP", "daily_limit": daily_limit,
        "smtp_host": "127.0.0.1", "smtp_port": mail.submission_port(), "smtp_username": format!("{user}@example.test"),
        "smtp_password": format!("{user}pw"), "smtp_use_tls": true,
        "imap_host": "127.0.0.1", "imap_port": mail.imaps_port(), "imap_username": format!("{user}@example.test"),
        "imap_password": format!("{user}pw"), "imap_use_ssl": true
    });
    let (status, created) = api.create(&body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let settled = api.settled(&id).await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    // New accounts warm up at 25/day; these tests set their caps through daily_limit.
    let (status, s) = api
        .call(
            Method::PUT,
            &format!("/sender-accounts/{id}/sending"),
            Some(&json!({"timezone": "UTC", "warmup": false, "append_to_sent": false})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    id
}

fn lead(i: usize) -> Value {
    json!({"email": format!("lead{i:02}@example.test"), "first_name": format!("Lead{i}"), "company": "Acme",
           "variables": {"city": "Riga"}})
}

async fn campaign(api: &Api, accounts: &[&str], steps: Value, extra: Value) -> String {
    let mut body = json!({"name": "test campaign", "sender_account_ids": accounts, "steps": steps});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().expect("id").to_owned()
}

async fn add_leads(api: &Api, cid: &str, leads: Vec<Value>) -> Value {
    let (status, report) =
        api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    assert_eq!(status, 200, "{report}");
    report
}

async fn act(api: &Api, cid: &str, action: &str) -> Value {
    let (status, c) = api.call(Method::POST, &format!("/campaigns/{cid}/{action}"), None).await;
    assert_eq!(status, 200, "{action}: {c}");
    c
}

/// Subject → count of each lead's messages.
fn inbox(mail: &Mail, lead: usize) -> Vec<String> {
    mail.messages(&format!("lead{lead:02}"))
}

/// A header's value, unfolded (continuation lines joined).
fn header(msg: &str, name: &str) -> Option<String> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in msg.lines().map(|l| l.trim_end_matches('\r')).take_while(|l| !l.is_empty()) {
        match (line.starts_with([' ', '\t']), unfolded.last_mut()) {
            (true, Some(last)) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => unfolded.push(line.to_owned()),
        }
    }
    let prefix = format!("{}:", name.to_ascii_lowercase());
    unfolded
        .into_iter()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

#[must_use]
struct Waited(Result<(), String>);

impl Waited {
    fn or_dump_mail(self, stack: &Stack, mail: &Mail) {
        if self.0.is_err() {
            eprintln!("postfix: {}", mail.log_tail("status=d"));
        }
        self.or_dump(stack)
    }

    /// Panics with the processes' logs (the errors only) if the wait timed out.
    fn or_dump(self, stack: &Stack) {
        if let Err(what) = self.0 {
            let logs = stack.logs();
            let interesting: Vec<&str> = logs
                .lines()
                .filter(|l| {
                    (l.contains("\"level\":\"INFO") && l.contains("coldsend"))
                        || l.contains("\"level\":\"WARN")
                        || l.contains("\"level\":\"ERROR")
                })
                .take(80)
                .collect();
            panic!("timed out waiting for {what}; log:\n{}", interesting.join("\n"));
        }
    }
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Waited {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            return Waited(Err(what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Waited(Ok(()))
}

fn total_delivered(mail: &Mail, leads: usize) -> usize {
    (1..=leads).map(|i| inbox(mail, i).len()).sum()
}

#[tokio::test]
async fn three_steps_two_accounts_twenty_leads_each_exactly_once() {
    let mail = Mail::start(&users(&["ann", "ben"], 21));
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    let ben = active_account(&api, &mail, "ben", 100).await;
    let steps = json!([
        {"subject": "Hello {{ first_name }}", "text": "Hi {{ first_name }} at {{ company }} in {{ city }}"},
        {"text": "Following up, {{ first_name | default(\"there\") }}", "delay": "1s"},
        {"subject": "Last note for {{ company }}", "text": "Bye {{ first_name }}", "delay": "1s"}
    ]);
    let cid = campaign(&api, &[&ann, &ben], steps, json!({})).await;
    let mut leads: Vec<Value> = (1..=20).map(lead).collect();
    // Lead 21 lacks first_name, which the first step needs without a default.
    leads.push(json!({"email": "lead21@example.test", "company": "Acme", "variables": {"city": "Oslo"}}));
    leads.push(json!({"email": "not-an-email"}));
    leads.push(lead(3)); // duplicate
    let report = add_leads(&api, &cid, leads).await;
    assert_eq!((report["added"].clone(), report["duplicates"].clone()), (json!(21), json!(1)), "{report}");
    assert_eq!(report["invalid"][0]["row"], 22, "{report}");
    act(&api, &cid, "start").await;

    wait_for("60 emails", 60, || total_delivered(&mail, 20) >= 60).await.or_dump_mail(&stack, &mail);

    tokio::time::sleep(Duration::from_secs(2)).await; // anything extra would show up now
    let mut senders: HashMap<String, usize> = HashMap::new();
    for i in 1..=20 {
        let msgs = inbox(&mail, i);
        assert_eq!(msgs.len(), 3, "lead{i:02} got {} emails", msgs.len());
        let mut by_subject: Vec<(String, &String)> =
            msgs.iter().map(|m| (header(m, "Subject").unwrap_or_default(), m)).collect();
        by_subject.sort();
        let subjects: Vec<&str> = by_subject.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            subjects,
            vec![format!("Hello Lead{i}").as_str(), "Last note for Acme", &format!("Re: Hello Lead{i}")]
        );
        let first = by_subject[0].1;
        let from = header(first, "From").expect("From");
        *senders.entry(from.clone()).or_default() += 1;
        assert!(first.contains(&format!("Hi Lead{i} at Acme in Riga")), "personalised: {first}");
        let first_id = header(first, "Message-ID").expect("Message-ID");
        for (_, m) in &by_subject[1..] {
            assert_eq!(header(m, "From").as_deref(), Some(from.as_str()), "follow-ups from the same account");
            assert!(header(m, "References").is_some_and(|r| r.contains(&first_id)), "threaded: {m}");
            assert!(header(m, "In-Reply-To").is_some(), "threaded: {m}");
        }
        for (_, m) in &by_subject {
            let lu = header(m, "List-Unsubscribe").expect("List-Unsubscribe");
            assert!(
                lu.contains("mailto:") && lu.contains("https://coldsend.example.test/api/public/v1/unsubscribe?token="),
                "{lu}"
            );
            assert_eq!(header(m, "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        }
    }
    assert_eq!(senders.len(), 2, "both accounts used: {senders:?}");
    assert!(inbox(&mail, 21).is_empty(), "lead without a required variable is never mailed");
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    let l21 =
        leads.as_array().expect("leads").iter().find(|l| l["email"] == "lead21@example.test").expect("lead21").clone();
    assert_eq!(l21["state"], "FAILED", "{l21}");
    assert!(l21["error"].as_str().unwrap_or("").contains("first_name"), "{l21}");
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["stats"]["sent"], 60, "{c}");
    assert_eq!(c["state"], "COMPLETED", "{c}");
}
