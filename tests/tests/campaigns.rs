//! Campaign sending end to end: the API, worker processes, Redis, and real Postfix +
//! Dovecot; every count is taken from the recipients' Maildirs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coldsend_tests::fixtures::Relay;
use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json, free_port};
use reqwest::Method;
use serde_json::{Value, json};

fn users(senders: &[&str], leads: usize) -> String {
    let mut u: Vec<String> = senders.iter().map(|s| format!("{s}:{s}pw")).collect();
    u.extend((1..=leads).map(|i| format!("lead{i:02}:x")));
    u.join(" ")
}

async fn active_account(api: &Api, mail: &Mail, user: &str, daily_limit: u32) -> String {
    let body = coldsend_tests::account_json(
        user,
        &format!("{user}pw"),
        mail.submission_port(),
        true,
        mail.imaps_port(),
        daily_limit,
    );
    api.active_account(&body).await
}

fn lead(i: usize) -> Value {
    json!({"email": format!("lead{i:02}@example.test"), "first_name": format!("Lead{i}"), "company": "Acme",
           "variables": {"city": "Riga"}})
}

#[tokio::test]
async fn a_template_mistake_is_refused_when_the_campaign_is_created() {
    let stack = Stack::start(None);
    let api = Api::new(&stack);
    let (_, account) = api.create(&coldsend_tests::account_json("ann", "pw", 1, false, 1, 10)).await;
    let body = json!({"name": "typo", "sender_account_ids": [account["id"]],
        "steps": [{"subject": "Hi", "text": "Hello"}, {"text": "Dear {{ frist_name }},", "delay": "1d"}]});
    let (status, error) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "invalid_template");
    assert_eq!(error["error"]["field"], "steps[1].text");
    let message = error["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("frist_name") && message.contains("line 1, column 9"), "{message}");
    let (_, list) = api.get("/campaigns").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing stored");
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
    // `city` is a custom variable of these leads: declared, so the template may use it.
    let cid = campaign(&api, &[&ann, &ben], steps, json!({"lead_variables": ["city"]})).await;
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

async fn usage(api: &Api, account: &str) -> Value {
    let (status, u) = api.get(&format!("/sender-accounts/{account}/usage")).await;
    assert_eq!(status, 200, "{u}");
    u
}

async fn set_timezone(api: &Api, account: &str, tz: &str) {
    let body = json!({"timezone": tz, "warmup": false, "append_to_sent": false});
    let (status, s) = api.call(Method::PUT, &format!("/sender-accounts/{account}/sending"), Some(&body)).await;
    assert_eq!(status, 200, "{s}");
}

fn one_step() -> Value {
    json!([{"subject": "Hello {{ first_name }}", "text": "Hi"}])
}

#[tokio::test]
async fn daily_cap_holds_across_three_workers_restarts_and_days() {
    let mail = Mail::start(&users(&["ann"], 30));
    let mut stack = Stack::start_with(Some(&mail), &FAST_SENDING, 3);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 5).await;
    // UTC-12 now; later UTC+14, whose calendar date is always a different day.
    set_timezone(&api, &ann, "Etc/GMT+12").await;
    let cid = campaign(&api, &[&ann], one_step(), json!({})).await;
    add_leads(&api, &cid, (1..=30).map(lead).collect()).await;
    act(&api, &cid, "start").await;

    wait_for("5 emails", 30, || total_delivered(&mail, 30) >= 5).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total_delivered(&mail, 30), 5, "cap 5 with 3 workers");
    let u = usage(&api, &ann).await;
    assert_eq!((u["sent_today"].clone(), u["effective_cap"].clone()), (json!(5), json!(5)), "{u}");

    // Every worker restarted: the count lives in Redis, not in a process.
    stack.workers.clear();
    for _ in 0..3 {
        stack.add_worker();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(total_delivered(&mail, 30), 5, "still 5 after restarting every worker");

    // The account's next local day: the next 5, and no more.
    set_timezone(&api, &ann, "Etc/GMT-14").await;
    wait_for("10 emails", 30, || total_delivered(&mail, 30) >= 10).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total_delivered(&mail, 30), 10, "5 more on the next day");
    assert_eq!(usage(&api, &ann).await["sent_today"], 5);
}

/// Every lead got each of `steps` exactly once (distinct Message-IDs, none repeated).
fn assert_each_once(mail: &Mail, leads: usize, steps: usize) {
    for i in 1..=leads {
        let msgs = inbox(mail, i);
        let mut ids: Vec<String> = msgs.iter().filter_map(|m| header(m, "Message-ID")).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            (msgs.len(), ids.len()),
            (steps, steps),
            "lead{i:02}: {} emails, {} distinct",
            msgs.len(),
            ids.len()
        );
    }
}

#[tokio::test]
async fn killing_workers_mid_campaign_never_doubles_a_send() {
    let mail = Mail::start(&users(&["ann"], 12));
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.push(("COLDSEND_SENDING__MIN_GAP_SECS", "1"));
    let mut stack = Stack::start_with(Some(&mail), &env, 2);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    let steps = json!([{"subject": "Hello {{ first_name }}", "text": "Hi"}, {"text": "Again", "delay": "1s"}]);
    let cid = campaign(&api, &[&ann], steps, json!({})).await;
    add_leads(&api, &cid, (1..=12).map(lead).collect()).await;
    act(&api, &cid, "start").await;

    for target in [4, 10] {
        wait_for("progress", 60, || total_delivered(&mail, 12) >= target).await.or_dump(&stack);
        // kill -9 both workers (whichever holds the mailbox), then bring two back.
        stack.workers.clear();
        stack.add_worker();
        stack.add_worker();
    }
    wait_for("24 emails", 120, || total_delivered(&mail, 12) >= 24).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_each_once(&mail, 12, 2);
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!((c["stats"]["sent"].clone(), c["stats"]["uncertain"].clone()), (json!(24), json!(0)), "{c}");
}

#[tokio::test]
async fn pause_resume_and_stop_never_resend() {
    let mail = Mail::start(&users(&["ann", "ben"], 10));
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.push(("COLDSEND_SENDING__MIN_GAP_SECS", "1"));
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    let cid = campaign(&api, &[&ann], one_step(), json!({})).await;
    add_leads(&api, &cid, (1..=10).map(lead).collect()).await;
    act(&api, &cid, "start").await;
    wait_for("3 emails", 30, || total_delivered(&mail, 10) >= 3).await.or_dump(&stack);
    assert_eq!(act(&api, &cid, "pause").await["state"], "PAUSED");
    tokio::time::sleep(Duration::from_millis(1500)).await; // an in-flight send may land
    let paused_at = total_delivered(&mail, 10);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total_delivered(&mail, 10), paused_at, "nothing sent while paused");
    act(&api, &cid, "resume").await;
    wait_for("10 emails", 60, || total_delivered(&mail, 10) >= 10).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_each_once(&mail, 10, 1);

    // Stop: nothing more, and it cannot be resumed.
    let ben = active_account(&api, &mail, "ben", 100).await;
    let steps = json!([{"subject": "Second {{ first_name }}", "text": "Hi"}]);
    let cid2 = campaign(&api, &[&ben], steps, json!({})).await;
    add_leads(&api, &cid2, (1..=10).map(lead).collect()).await;
    act(&api, &cid2, "start").await;
    wait_for("2 more", 30, || total_delivered(&mail, 10) >= 12).await.or_dump(&stack);
    assert_eq!(act(&api, &cid2, "stop").await["state"], "STOPPED");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped_at = total_delivered(&mail, 10);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total_delivered(&mail, 10), stopped_at, "nothing sent after stop");
    let (status, _) = api.call(Method::POST, &format!("/campaigns/{cid2}/resume"), None).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn temporary_failures_retry_permanent_ones_never() {
    let mail = Mail::start(&users(&["ann"], 4));
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    mail.set_recipient_rule("lead01@example.test", Some("450 4.2.1 mailbox busy, try later"));
    mail.set_recipient_rule("lead02@example.test", Some("550 5.1.1 no such user here"));
    mail.set_recipient_rule("lead03@example.test", Some("554 5.7.1 rejected by policy"));
    let cid = campaign(&api, &[&ann], one_step(), json!({})).await;
    add_leads(&api, &cid, (1..=4).map(lead).collect()).await;
    act(&api, &cid, "start").await;

    wait_for("lead04", 30, || inbox(&mail, 4).len() == 1).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(3)).await; // lead01 is retried meanwhile
    assert!(inbox(&mail, 1).is_empty());
    mail.set_recipient_rule("lead01@example.test", None);
    wait_for("lead01 after the rule is lifted", 60, || inbox(&mail, 1).len() == 1).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_each_once(&mail, 1, 1);
    assert!(inbox(&mail, 2).is_empty() && inbox(&mail, 3).is_empty());

    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    let by_email = |e: &str| leads.as_array().expect("leads").iter().find(|l| l["email"] == e).expect("lead").clone();
    let l2 = by_email("lead02@example.test");
    assert_eq!(l2["state"], "BOUNCED", "{l2}");
    assert!(l2["error"].as_str().unwrap_or("").contains("5.1.1"), "reason stored: {l2}");
    let l3 = by_email("lead03@example.test");
    // A policy refusal is about our sender, not the lead: the lead stays, its step waits
    // for a later try, and the master inbox tells the operator.
    assert_eq!(l3["state"], "ACTIVE", "{l3}");
    let (_, refusals) = api.get("/inbox?kind=sender_refused").await;
    let events = refusals["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["snippet"].as_str().unwrap_or("").contains("5.7.1")), "{refusals}");
    assert_eq!(by_email("lead01@example.test")["state"], "COMPLETED");
    // Each permanent refusal was met exactly once: never retried.
    for who in ["lead02@example.test", "lead03@example.test"] {
        let rejections = mail.log_tail("reject: RCPT").lines().filter(|l| l.contains(who)).count();
        assert_eq!(rejections, 1, "{who} tried {rejections} times");
    }
    let retries = mail.log_tail("reject: RCPT").lines().filter(|l| l.contains("lead01@example.test")).count();
    assert!(retries >= 2, "the 4xx was retried ({retries} attempts)");
}

/// An envelope written ahead (behind the last body) is answered like any other: a
/// recipient refused there is bounced on that one answer — never asked a second time, which
/// a server counts against the sender — and the session goes on to the next lead.
#[tokio::test]
async fn a_recipient_refused_in_an_envelope_written_ahead_is_bounced_on_that_one_answer() {
    let mail = Mail::start(&users(&["ann"], 5));
    let mut env = FAST_SENDING.to_vec();
    env.push(("RUST_LOG", "info"));
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    // lead01 goes alone and its record finds the rest: lead03's envelope rides behind
    // lead02's body.
    mail.set_recipient_rule("lead03@example.test", Some("550 5.1.1 no such user here"));
    let cid = campaign(&api, &[&ann], one_step(), json!({})).await;
    add_leads(&api, &cid, (1..=5).map(lead).collect()).await;
    act(&api, &cid, "start").await;

    wait_for("lead05", 30, || inbox(&mail, 5).len() == 1).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stack.logs().contains("the envelope written ahead was refused"), "the refusal came ahead");
    for i in [1, 2, 4, 5] {
        assert_eq!(inbox(&mail, i).len(), 1, "lead{i:02} once");
    }
    assert!(inbox(&mail, 3).is_empty());
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    let l3 = leads.as_array().expect("leads").iter().find(|l| l["email"] == "lead03@example.test").expect("lead03");
    assert_eq!(l3["state"], "BOUNCED", "{l3}");
    assert!(l3["error"].as_str().unwrap_or("").contains("5.1.1"), "reason stored: {l3}");
    let rejections = mail.log_tail("reject: RCPT").lines().filter(|l| l.contains("lead03@example.test")).count();
    assert_eq!(rejections, 1, "lead03 was asked {rejections} times");
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["stats"]["sent"], json!(4), "{c}");
}

#[tokio::test]
async fn send_window_and_one_click_unsubscribe() {
    let mail = Mail::start(&users(&["ann"], 3));
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;

    // A window twelve hours from now: closed.
    let now = chrono::Utc::now();
    let start = (now + chrono::Duration::hours(12)).format("%H:00").to_string();
    let end = (now + chrono::Duration::hours(12)).format("%H:59").to_string();
    let closed = json!({"schedule": {"timezone": "UTC", "days": ["mon","tue","wed","thu","fri","sat","sun"], "start": start, "end": end}});
    let cid = campaign(&api, &[&ann], one_step(), closed).await;
    add_leads(&api, &cid, vec![lead(3)]).await;
    act(&api, &cid, "start").await;

    // An open campaign mails lead01; its one-click link unsubscribes lead01 everywhere.
    let open = campaign(&api, &[&ann], one_step(), json!({})).await;
    add_leads(&api, &open, vec![lead(1)]).await;
    act(&api, &open, "start").await;
    wait_for("lead01", 30, || inbox(&mail, 1).len() == 1).await.or_dump(&stack);
    let link = header(&inbox(&mail, 1)[0], "List-Unsubscribe").expect("List-Unsubscribe");
    let token = link.split("token=").nth(1).and_then(|t| t.split('>').next()).expect("token").to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/public/v1/unsubscribe?token={token}", stack.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("unsubscribe");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let forged = reqwest::Client::new()
        .post(format!("{}/api/public/v1/unsubscribe?token={}x", stack.base_url, &token[..token.len() - 2]))
        .send()
        .await
        .expect("unsubscribe");
    assert_eq!(forged.status(), 400);

    let later =
        campaign(&api, &[&ann], json!([{"subject": "Another {{ first_name }}", "text": "Hi"}]), json!({})).await;
    let report = add_leads(&api, &later, vec![lead(1), lead(2)]).await;
    assert_eq!(report["suppressed"], 1, "{report}");
    act(&api, &later, "start").await;
    wait_for("lead02", 30, || inbox(&mail, 2).len() == 1).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(inbox(&mail, 1).len(), 1, "unsubscribed lead01 got nothing more");
    assert!(inbox(&mail, 3).is_empty(), "nothing outside the send window");
    let (_, l) = api.get(&format!("/campaigns/{later}/leads")).await;
    assert!(
        l.as_array().expect("leads").iter().any(|x| x["email"] == "lead01@example.test" && x["state"] == "SUPPRESSED"),
        "{l}"
    );
}

#[tokio::test]
async fn custom_smtp_copies_land_in_the_sent_folder_and_campaign_limits_hold() {
    let mail = Mail::start(&users(&["ann"], 4));
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    // CUSTOM_SMTP files a copy itself unless told otherwise: turn it back on.
    let body = json!({"timezone": "UTC", "warmup": false, "append_to_sent": true});
    let (status, _) = api.call(Method::PUT, &format!("/sender-accounts/{ann}/sending"), Some(&body)).await;
    assert_eq!(status, 200);
    // A campaign limited to 2 emails a day.
    let cid = campaign(&api, &[&ann], one_step(), json!({"daily_limit": 2})).await;
    add_leads(&api, &cid, (1..=4).map(lead).collect()).await;
    act(&api, &cid, "start").await;
    wait_for("2 emails", 30, || total_delivered(&mail, 4) >= 2).await.or_dump(&stack);
    wait_for("2 copies in Sent", 30, || mail.folder_messages("ann", "Sent").len() >= 2).await.or_dump(&stack);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(total_delivered(&mail, 4), 2, "the campaign's own daily limit");
    let sent = mail.folder_messages("ann", "Sent");
    assert_eq!(sent.len(), 2);
    let delivered_ids: Vec<String> =
        (1..=4).flat_map(|i| inbox(&mail, i)).filter_map(|m| header(&m, "Message-ID")).collect();
    for copy in &sent {
        let id = header(copy, "Message-ID").expect("Message-ID");
        assert!(delivered_ids.contains(&id), "the Sent copy is the delivered message");
    }
}

#[tokio::test]
async fn starting_says_whether_it_sends_now_and_if_not_why_and_when() {
    let mail = Mail::start("ann:annpw lead01:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann = active_account(&api, &mail, "ann", 100).await;
    let steps = json!([{"subject": "Hi", "text": "Hello"}]);

    let empty = campaign(&api, &[&ann], steps.clone(), json!({})).await;
    let started = act(&api, &empty, "start").await;
    assert_eq!(started["outlook"]["sending_now"], false, "{started}");
    assert_eq!(started["outlook"]["reason"], "no_leads", "{started}");

    // A window open only tomorrow (UTC).
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%a").to_string().to_lowercase();
    let schedule = json!({"schedule": {"timezone": "UTC", "days": [tomorrow], "start": "00:00", "end": "23:59"}});
    let closed = campaign(&api, &[&ann], steps.clone(), schedule).await;
    add_leads(&api, &closed, vec![lead(1)]).await;
    let started = act(&api, &closed, "start").await;
    assert_eq!(started["outlook"]["reason"], "window_closed", "{started}");
    let from = started["outlook"]["from"].as_str().expect("from");
    let from = chrono::DateTime::parse_from_rfc3339(from).expect("RFC 3339");
    assert!(from > chrono::Utc::now(), "{started}");

    let open = campaign(&api, &[&ann], steps, json!({})).await;
    add_leads(&api, &open, vec![lead(1)]).await;
    let started = act(&api, &open, "start").await;
    assert_eq!(
        (started["outlook"]["sending_now"].clone(), started["outlook"]["reason"].clone()),
        (json!(true), json!("sending")),
        "{started}"
    );
    // A plain read does not carry the outlook.
    let (_, view) = api.get(&format!("/campaigns/{open}")).await;
    assert!(view.get("outlook").is_none(), "{view}");
}

/// Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write,
/// two round trips fewer per email, and while the mailbox sends back to back the next
/// email's envelope goes out behind the last body (message content may open a group):
/// one round trip per email. Where it does not, one command at a time (pipelining then
/// would break the protocol). Either way every email is delivered once. Postfix's
/// smtp-sink with and without `-p` (its switch for not offering it), behind a relay that
/// records what the worker writes: a client that waits for each answer can never put MAIL
/// and RCPT, or a body and the next MAIL, in one read.
#[tokio::test]
async fn smtp_commands_are_pipelined_only_where_the_server_offers_it() {
    for offered in [true, false] {
        let mail = Mail::start("ann:annpw");
        let sink = Sink::start(offered);
        let relay = Relay::start(sink.port);
        let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
        let api = Api::new(&stack);
        let ann = api.active_account(&account_json("ann", "annpw", relay.port, false, mail.imaps_port(), 100)).await;
        // A line that starts with a dot must reach the server doubled (RFC 5321 4.5.2).
        let steps = json!([{"subject": "Hello {{ first_name }}", "text": "Hi {{ first_name }}\n.dotted line"}]);
        let cid = campaign(&api, &[&ann], steps, json!({})).await;
        add_leads(&api, &cid, (1..=3).map(lead).collect()).await;
        act(&api, &cid, "start").await;
        wait_for("3 emails in the sink", 60, || sink.delivered() >= 3).await.or_dump_mail(&stack, &mail);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sink.delivered(), 3, "offered: {offered}: each once");

        let reads = relay.client_reads();
        let envelopes: usize = reads.iter().map(|r| r.matches("MAIL FROM:").count()).sum();
        assert_eq!(envelopes, 3, "offered: {offered}: {reads:?}");
        for r in reads.iter().filter(|r| r.contains("MAIL FROM:")) {
            let together = r.contains("RCPT TO:") && r.ends_with("DATA\r\n");
            assert_eq!(together, offered, "offered: {offered}: {r:?}");
        }
        // The first email's record finds the other two: the third's envelope rides
        // behind the second's body.
        let behind_a_body = reads.iter().filter(|r| r.contains("Subject: Hello") && r.contains("MAIL FROM:")).count();
        assert_eq!(behind_a_body, usize::from(offered), "offered: {offered}: {reads:?}");
        // Each message arrives whole with its ending dot line, dot-stuffed.
        let bodies: Vec<&String> = reads.iter().filter(|r| r.contains("Subject: Hello")).collect();
        assert_eq!(bodies.len(), 3, "offered: {offered}: {reads:?}");
        for r in bodies {
            let body = r.split("MAIL FROM:").next().unwrap_or_default();
            assert!(body.contains("\r\n..dotted line") && body.ends_with("\r\n.\r\n"), "offered: {offered}: {r:?}");
        }
        // ...and the server takes the doubling off again: the text arrives as written.
        for text in sink.messages() {
            assert!(text.contains("\n.dotted line\n") && !text.contains(".."), "offered: {offered}: {text:?}");
        }
    }
}

/// Postfix's smtp-sink on a free port, writing each message it takes to a file of its own.
struct Sink {
    child: std::process::Child,
    port: u16,
    dumps: tempfile::TempDir,
}

impl Sink {
    /// With `pipelining` false it does not offer PIPELINING (its `-p`).
    fn start(pipelining: bool) -> Self {
        let port = free_port();
        let dumps = tempfile::tempdir().expect("tempdir");
        // smtp-sink writes as the postfix user.
        std::fs::set_permissions(dumps.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        let mut args = vec!["-u".to_owned(), "postfix".into(), "-d".into(), format!("{}/%M.", dumps.path().display())];
        if !pipelining {
            args.push("-p".into());
        }
        args.extend([format!("127.0.0.1:{port}"), "64".into()]);
        let child = std::process::Command::new("smtp-sink")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("smtp-sink (package postfix)");
        std::thread::sleep(Duration::from_millis(300));
        Self { child, port, dumps }
    }

    fn delivered(&self) -> usize {
        std::fs::read_dir(self.dumps.path()).map(|d| d.count()).unwrap_or(0)
    }

    fn messages(&self) -> Vec<String> {
        let dumps = std::fs::read_dir(self.dumps.path()).expect("dumps").flatten();
        dumps.map(|d| std::fs::read_to_string(d.path()).expect("dump")).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ann, sending into `sink` (Dovecot for IMAP), with a one-step campaign to `emails`
/// leads, not started yet; its id.
async fn one_step_into_sink(api: &Api, mail: &Mail, sink: &Sink, emails: usize) -> String {
    let ann = api.active_account(&account_json("ann", "annpw", sink.port, false, mail.imaps_port(), 1000)).await;
    let cid = campaign(api, &[&ann], json!([{"subject": "Hello {{ first_name }}", "text": "Hi"}]), json!({})).await;
    let leads: Vec<Value> =
        (1..=emails).map(|i| json!({"email": format!("l{i}@example.test"), "first_name": format!("L{i}")})).collect();
    add_leads(api, &cid, leads).await;
    cid
}

/// A mailbox that sends back to back needs two Redis round trips per email: the claim
/// before DATA, and one call that records the email and claims the next (the `sent` and
/// `reserve` scripts of two emails in one EVALSHA). Counted with Redis's own per-command
/// statistics over 150 emails into smtp-sink; each arrives once and is recorded SENT.
#[tokio::test]
async fn a_mailbox_sending_back_to_back_records_one_email_and_claims_the_next_in_one_call() {
    const EMAILS: usize = 150;
    let mail = Mail::start("ann:annpw");
    let sink = Sink::start(true);
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let cid = one_step_into_sink(&api, &mail, &sink, EMAILS).await;
    let evalsha = |redis: &coldsend_tests::Redis| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(&mut redis.connection()).expect("INFO");
        let line = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")).unwrap_or("calls=0,");
        line.split(['=', ',']).nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    // What the rest of the stack calls per second while nothing is sent (queue polls,
    // chains, heartbeats), taken off the count below so a slow machine does not inflate it.
    let idle_from = (evalsha(&stack.redis), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rate = (evalsha(&stack.redis) - idle_from.0) as f64 / idle_from.1.elapsed().as_secs_f64();
    let before = (evalsha(&stack.redis), Instant::now());
    act(&api, &cid, "start").await;
    wait_for("every email in the sink", 90, || sink.delivered() >= EMAILS).await.or_dump(&stack);
    let calls = (evalsha(&stack.redis) - before.0) as f64 - idle_rate * before.1.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.delivered(), EMAILS, "each once");
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!((c["stats"]["sent"].clone(), c["stats"]["uncertain"].clone()), (json!(EMAILS), json!(0)), "{c}");
    // 2 per email, plus a lone record each time the lookahead runs dry (1 in 16) and the
    // start's own calls; 3 when every email had its own `reserve` and `sent`.
    let per_email = calls / EMAILS as f64;
    eprintln!("{per_email:.2} script calls per email ({idle_rate:.1}/s while idle)");
    assert!(per_email < 2.5, "{per_email:.2} script calls per email");
}

/// A held record (an accepted email whose record waits for the next claim) is the newest
/// thing a `kill -9` can lose. Killed three times while one mailbox sends back to back into
/// smtp-sink: no lead gets two emails, every email the sink took is SENT or — its record
/// lost with the worker — UNCERTAIN (never resent), every SENT one arrived, and each kill
/// leaves at most two sends unknown (the held one and the one in flight).
#[tokio::test]
async fn killing_a_worker_that_holds_a_record_never_doubles_or_loses_a_send() {
    const EMAILS: usize = 400;
    const KILLS: [usize; 3] = [60, 170, 280];
    let mail = Mail::start("ann:annpw");
    let sink = Sink::start(true);
    let mut env = FAST_SENDING.to_vec();
    // A dead chain's lease (twice this) runs out quickly, and its stuck sends are swept.
    env.extend([("COLDSEND_SENDING__STALE_SEND_SECS", "5"), ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "4")]);
    let mut stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let cid = one_step_into_sink(&api, &mail, &sink, EMAILS).await;
    act(&api, &cid, "start").await;
    for at in KILLS {
        wait_for("progress", 90, || sink.delivered() >= at).await.or_dump(&stack);
        stack.workers.clear();
        stack.add_worker();
    }
    let mut stats = json!({});
    let settled = Instant::now() + Duration::from_secs(120);
    while Instant::now() < settled {
        stats = api.get(&format!("/campaigns/{cid}")).await.1["stats"].clone();
        let n = |k: &str| stats[k].as_u64().unwrap_or(0) as usize;
        if n("sent") + n("uncertain") + n("failed") >= EMAILS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let n = |k: &str| stats[k].as_u64().unwrap_or(0) as usize;
    eprintln!("after {} kills: {stats}, {} in the sink", KILLS.len(), sink.delivered());
    assert_eq!((n("sent") + n("uncertain"), n("failed")), (EMAILS, 0), "every send accounted for: {stats}");

    let mut per_lead: HashMap<String, usize> = HashMap::new();
    for text in sink.messages() {
        let to = text.lines().find_map(|l| l.strip_prefix("To: ")).unwrap_or("?").trim().to_owned();
        *per_lead.entry(to).or_default() += 1;
    }
    let doubled: Vec<_> = per_lead.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    let delivered = sink.delivered();
    assert!(delivered >= n("sent") && delivered <= EMAILS, "{delivered} delivered: {stats}");
    assert!(n("uncertain") <= 2 * KILLS.len(), "{stats}");
}
