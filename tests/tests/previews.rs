//! Previews and test sends against real Postfix + Dovecot + Redis: a preview shows each
//! step as a lead would get it (or why it cannot be made) and sends nothing; a test send
//! delivers chosen steps to a chosen address marked as tests, threaded among themselves,
//! counted against the mailbox's cap and never recorded as a lead's step.

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json, run};
use reqwest::Method;
use serde_json::{Value, json};

fn header<'a>(step: &'a Value, name: &str) -> Option<&'a str> {
    step["headers"].as_array()?.iter().find(|h| h["name"].as_str() == Some(name))?["value"].as_str()
}

fn mail_header(msg: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    msg.lines()
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// Waits until `user`'s Maildir holds `n` messages (Postfix delivers after it accepts).
async fn wait_for_messages(mail: &Mail, user: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while mail.messages(user).len() < n {
        assert!(std::time::Instant::now() < deadline, "{user} never got {n} messages");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn previews_show_every_step_and_test_sends_reach_only_the_tester() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x tester:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 3)).await;
    let body = json!({"name": "preview", "sender_account_ids": [ann], "steps": [
        {"subject": "Hi {{ first_name }}", "text": "Hello {{ first_name }} at {{ company }}", "html": "<p>Hello {{ first_name }}</p>"},
        {"text": "Following up, {{ first_name }}", "delay": "2d"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test", "first_name": "Ann", "company": "Acme"},
                                 {"email": "lead02@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;

    // The first two leads: lead01 renders, lead02 lacks first_name and says so per step.
    let (status, p) = api.call(Method::POST, &format!("/campaigns/{cid}/preview"), Some(&json!({"first": 2}))).await;
    assert_eq!(status, 200, "{p}");
    let previews = p["previews"].as_array().expect("previews");
    assert_eq!(previews.len(), 2, "{p}");
    let one = previews.iter().find(|l| l["email"] == "lead01@example.test").expect("lead01");
    let two = previews.iter().find(|l| l["email"] == "lead02@example.test").expect("lead02");
    let (s0, s1) = (&one["steps"][0], &one["steps"][1]);
    assert_eq!((s0["subject"].as_str(), s0["text"].as_str()), (Some("Hi Ann"), Some("Hello Ann at Acme")), "{s0}");
    assert_eq!(s0["html"], "<p>Hello Ann</p>");
    assert_eq!(s1["subject"], "Re: Hi Ann");
    assert_eq!(header(s0, "To").map(|t| t.contains("lead01@example.test")), Some(true), "{s0}");
    assert_eq!(header(s0, "From").map(|f| f.contains("ann@example.test")), Some(true), "{s0}");
    assert!(header(s0, "List-Unsubscribe").is_some_and(|u| u.contains("https://coldsend.example.test")), "{s0}");
    assert_eq!(header(s1, "In-Reply-To"), header(s0, "Message-ID"), "threaded: {s1}");
    for step in two["steps"].as_array().expect("steps") {
        assert!(step["error"].as_str().unwrap_or("").contains("first_name"), "{step}");
    }
    // An inline lead, and the CLI.
    let inline = json!({"lead": {"email": "zed@example.test", "first_name": "Zed", "company": "Q"}});
    let (_, p) = api.call(Method::POST, &format!("/campaigns/{cid}/preview"), Some(&inline)).await;
    assert_eq!(p["previews"][0]["steps"][0]["subject"], "Hi Zed", "{p}");
    let lead01 = one["lead_id"].as_str().expect("lead id").to_owned();
    let (ok, out, err) = run("coldsend", &["campaigns", "preview", &cid, "--lead", &lead01], &stack.env);
    assert!(ok && out.contains("Hello Ann at Acme"), "{out}{err}");
    assert!(mail.messages("lead01").is_empty() && mail.messages("lead02").is_empty(), "a preview sends nothing");

    // A test send: both steps to the tester, filled with lead01's fields.
    let t = json!({"to": "tester@example.test", "sender_account_id": ann, "lead_id": lead01});
    let (status, sent) = api.call(Method::POST, &format!("/campaigns/{cid}/test-send"), Some(&t)).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["state"], "done");
    assert!(sent["results"].as_array().expect("results").iter().all(|r| r["outcome"] == "sent"), "{sent}");
    // Accepted by Postfix; delivered to the Maildir a moment later.
    wait_for_messages(&mail, "tester", 2).await;
    let got = mail.messages("tester");
    assert_eq!(got.len(), 2);
    let first = got.iter().find(|m| mail_header(m, "Subject").as_deref() == Some("[TEST] Hi Ann")).expect("step 0");
    let second =
        got.iter().find(|m| mail_header(m, "Subject").as_deref() == Some("[TEST] Re: Hi Ann")).expect("step 1");
    assert!(mail_header(first, "X-Coldsend-Test").is_some());
    assert_eq!(mail_header(second, "In-Reply-To"), mail_header(first, "Message-ID"), "test steps threaded");
    assert!(mail_header(first, "Message-ID").is_some_and(|id| id.contains("cs-test.")), "own Message-IDs");
    assert!(mail.messages("lead01").is_empty(), "never the lead");
    let (_, view) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(view["stats"]["sent"], 0, "not a lead's step: {view}");

    // Counted against the cap (3): two used, so of two more only one goes out.
    let (_, usage) = api.get(&format!("/sender-accounts/{ann}/usage")).await;
    assert_eq!(usage["sent_today"], 2, "{usage}");
    let (ok, out, err) = run(
        "coldsend",
        &[
            "campaigns",
            "test-send",
            &cid,
            "--to",
            "tester@example.test",
            "--from",
            &ann,
            "--step",
            "0",
            "--step",
            "1",
            "--lead",
            &lead01,
        ],
        &stack.env,
    );
    assert!(!ok, "a capped step fails the command: {out}{err}");
    let record: Value = serde_json::from_str(&out).expect("json");
    let outcomes: Vec<&str> =
        record["results"].as_array().expect("results").iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["sent", "cap_reached"], "{record}");
    wait_for_messages(&mail, "tester", 3).await;
    let (status, again) = api.get(&format!("/test-sends/{}", record["id"].as_str().unwrap_or(""))).await;
    assert_eq!((status.as_u16(), &again["results"]), (200, &record["results"]));

    // Bad requests name their field; unknown ids are 404.
    for (body, field) in [
        (json!({"to": "nope", "sender_account_id": ann}), "to"),
        (json!({"to": "tester@example.test", "sender_account_id": ann, "steps": [5]}), "steps"),
        (
            json!({"to": "tester@example.test", "sender_account_id": "00000000-0000-4000-8000-000000000000"}),
            "sender_account_id",
        ),
    ] {
        let (status, v) = api.call(Method::POST, &format!("/campaigns/{cid}/test-send"), Some(&body)).await;
        assert_eq!((status.as_u16(), v["error"]["field"].as_str()), (422, Some(field)), "{body}: {v}");
    }
    assert_eq!(api.get("/test-sends/unknown").await.0, 404);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(mail.messages("tester").len(), 3, "nothing more sent");
}
