//! Edits and deletes against real Postfix + Dovecot + Redis: accounts patched (connection
//! changes re-validate, passwords sealed), campaigns edited while paused (later steps go
//! out as edited), deleted when not running (nothing left in Redis), leads erased or
//! stopped, and a mailbox deleted from under a running campaign (409 unless forced; forced:
//! its leads that had not started move, the threads it started stop, nobody is mailed twice).

use std::time::{Duration, Instant};

use coldsend_tests::fixtures::closed_port;
use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::{Value, json};

async fn wait_for(what: &str, secs: u64, api: &Api, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn patch(api: &Api, path: &str, body: Value) -> (u16, Value) {
    let (status, v) = api.call(Method::PATCH, path, Some(&body)).await;
    (status.as_u16(), v)
}

async fn leads(api: &Api, cid: &str) -> Vec<Value> {
    api.get(&format!("/campaigns/{cid}/leads")).await.1.as_array().cloned().unwrap_or_default()
}

fn lead(i: usize) -> String {
    format!("lead{i:02}")
}

#[tokio::test]
async fn account_edits_revalidate_connection_changes_and_keep_sending_settings() {
    let mail = Mail::start("ann:annpw");
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    let path = format!("/sender-accounts/{ann}");

    // Sending fields: stored at once, no re-validation.
    let (status, v) = patch(&api, &path, json!({"display_name": "Ann Edited", "daily_limit": 7})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["display_name"].as_str(), v["daily_limit"].as_u64(), v["status"].as_str()),
        (Some("Ann Edited"), Some(7), Some("ACTIVE"))
    );

    // A connection change re-validates: a closed port fails, the right one passes.
    let (_socket, closed) = closed_port();
    let (status, v) = patch(&api, &path, json!({"smtp_port": closed})).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("PENDING_VALIDATION")), "{v}");
    let settled = api.settled(&ann).await;
    assert_eq!(settled["status"], "VALIDATION_FAILED", "{settled}");
    assert_eq!(settled["error"]["code"], "CONNECTION_REFUSED", "{settled}");
    patch(&api, &path, json!({"smtp_port": mail.submission_port()})).await;
    assert_eq!(api.settled(&ann).await["status"], "ACTIVE");

    // New passwords are sealed like the first ones, and checked.
    let wrong = "wrong-password-7f3a9c";
    let (status, _) = patch(&api, &path, json!({"smtp_password": wrong, "imap_password": wrong})).await;
    assert_eq!(status, 200);
    let settled = api.settled(&ann).await;
    assert_eq!(settled["error"]["code"], "AUTH_FAILED", "{settled}");
    stack.redis.assert_nowhere(wrong);
    patch(&api, &path, json!({"smtp_password": "annpw", "imap_password": "annpw"})).await;
    assert_eq!(api.settled(&ann).await["status"], "ACTIVE");
    let (_, sending) = api.get(&format!("{path}/sending")).await;
    assert_eq!((sending["timezone"].as_str(), sending["warmup"].as_bool()), (Some("UTC"), Some(false)), "{sending}");

    // Bad patches name the field and change nothing.
    for (body, code) in [
        (json!({"email_address": "x@example.test"}), "invalid_field"),
        (json!({"inbox_type": "OUTLOOK_365"}), "invalid_field"),
        (json!({"smtp_prot": 1}), "unknown_field"),
        (json!({"smtp_port": 70000}), "invalid_port"),
        (json!({}), "invalid_body"),
    ] {
        let (status, v) = patch(&api, &path, body.clone()).await;
        assert!((400..500).contains(&status) && v["error"]["code"] == code, "{body}: {status} {v}");
    }
    let (status, _) =
        patch(&api, "/sender-accounts/00000000-0000-4000-8000-000000000000", json!({"daily_limit": 2})).await;
    assert_eq!(status, 404);
    let (_, v) = api.get(&path).await;
    assert_eq!(
        (v["daily_limit"].as_u64(), v["smtp_port"].as_u64()),
        (Some(7), Some(u64::from(mail.submission_port())))
    );
}

#[tokio::test]
async fn campaigns_are_edited_while_paused_and_deleted_without_a_trace() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    let body = json!({"name": "edit me", "sender_account_ids": [ann],
        "steps": [{"subject": "Hi", "text": "First"}, {"text": "Original follow-up", "delay": "1h"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let path = format!("/campaigns/{cid}");
    let added = json!({"leads": [{"email": "lead01@example.test"}, {"email": "lead02@example.test"}]});
    api.call(Method::POST, &format!("{path}/leads"), Some(&added)).await;

    // A DRAFT lead nothing was sent to is erased.
    let l2 = leads(&api, &cid).await.into_iter().find(|l| l["email"] == "lead02@example.test").expect("lead02");
    let (status, v) =
        api.call(Method::DELETE, &format!("{path}/leads/{}", l2["id"].as_str().unwrap_or("")), None).await;
    assert_eq!((status.as_u16(), v["outcome"].as_str()), (200, Some("erased")), "{v}");
    assert_eq!(leads(&api, &cid).await.len(), 1);

    // Templates are compiled on edit too.
    let (status, v) = patch(&api, &path, json!({"steps": [{"subject": "Hi {{ frist_name }}", "text": "x"}]})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (422, Some("invalid_template"), Some("steps[0].subject")),
        "{v}"
    );

    api.call(Method::POST, &format!("{path}/start"), None).await;
    wait_for("the first step", 30, &api, async || mail.messages("lead01").len() == 1).await;
    let (status, v) = patch(&api, &path, json!({"name": "running"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("conflict")), "not while RUNNING: {v}");
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "no delete while RUNNING");

    // Paused, edited (new text, the delay cut from an hour to 2 s: the queued follow-up
    // moves with it), resumed: the follow-up goes out as edited, now.
    api.call(Method::POST, &format!("{path}/pause"), None).await;
    let steps = json!([{"subject": "Hi", "text": "First"}, {"text": "Edited follow-up", "delay": "2s"}]);
    let (status, v) = patch(&api, &path, json!({"steps": steps, "name": "edited"})).await;
    assert_eq!((status, v["name"].as_str()), (200, Some("edited")), "{v}");
    api.call(Method::POST, &format!("{path}/resume"), None).await;
    wait_for("the follow-up", 30, &api, async || mail.messages("lead01").len() == 2).await;
    let bodies = mail.messages("lead01");
    assert!(bodies.iter().any(|m| m.contains("Edited follow-up")), "edited text sent");
    assert!(!bodies.iter().any(|m| m.contains("Original follow-up")), "old text never sent");

    // Deleted once not running: the campaign and every key of it are gone.
    api.call(Method::POST, &format!("{path}/pause"), None).await;
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(api.get(&path).await.0, 404);
    let mut conn = stack.redis.connection();
    let left: Vec<String> = redis::cmd("KEYS").arg(format!("*{cid}*")).query(&mut conn).expect("keys");
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let listed: Vec<String> =
        redis::cmd("SMEMBERS").arg(format!("cstest:account-campaigns:{ann}")).query(&mut conn).expect("smembers");
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(mail.messages("lead01").len(), 2);
}

#[tokio::test]
async fn deleting_a_mailbox_under_a_running_campaign_moves_unstarted_leads_and_stops_its_threads() {
    const LEADS: usize = 6;
    let users: Vec<String> = (1..=LEADS).map(|i| format!("{}:x", lead(i))).collect();
    let mail = Mail::start(&format!("ann:annpw bob:bobpw {}", users.join(" ")));
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    // A cap of one each: each mailbox sends one first step, the rest wait.
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 1)).await;
    let bob =
        api.active_account(&account_json("bob", "bobpw", mail.submission_port(), true, mail.imaps_port(), 1)).await;
    let body = json!({"name": "shared", "sender_account_ids": [ann, bob],
        "steps": [{"subject": "Hi", "text": "First"}, {"text": "Later", "delay": "1h"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let all: Vec<Value> = (1..=LEADS).map(|i| json!({"email": format!("{}@example.test", lead(i))})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": all}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    let delivered = || (1..=LEADS).map(|i| mail.messages(&lead(i)).len()).sum::<usize>();
    wait_for("one email from each mailbox", 30, &api, async || delivered() == 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(delivered(), 2, "caps hold");
    let from_ann: Vec<usize> =
        (1..=LEADS).filter(|i| mail.messages(&lead(*i)).iter().any(|m| m.contains("ann@example.test"))).collect();
    assert_eq!(from_ann.len(), 1);

    // Refused while a running campaign sends from it, naming the campaign.
    let (status, v) = api.call(Method::DELETE, &format!("/sender-accounts/{ann}"), None).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains(&cid), "{v}");

    // Forced: ann's two leads that had not started move to bob (whose cap is raised first).
    patch(&api, &format!("/sender-accounts/{bob}"), json!({"daily_limit": 100})).await;
    let (status, v) = api.call(Method::DELETE, &format!("/sender-accounts/{ann}?force=true"), None).await;
    assert_eq!(status, 204, "{v}");
    assert_eq!(api.get(&format!("/sender-accounts/{ann}")).await.0, 404);
    wait_for("every lead's first step", 30, &api, async || delivered() == LEADS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 1..=LEADS {
        assert_eq!(mail.messages(&lead(i)).len(), 1, "{}: exactly once", lead(i));
    }
    let (_, campaign) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(campaign["sender_account_ids"], json!([bob]), "{campaign}");
    let states = leads(&api, &cid).await;
    let stopped = states.iter().find(|l| l["email"] == format!("{}@example.test", lead(from_ann[0]))).expect("lead");
    assert_eq!(stopped["state"], "FAILED", "the thread ann started stops: {stopped}");
    assert!(stopped["error"].as_str().unwrap_or("").contains("sender account was deleted"), "{stopped}");
    assert_eq!(states.iter().filter(|l| l["state"] == "ACTIVE").count(), LEADS - 1, "the rest wait for step 2");

    // A lead with a send is stopped, not erased.
    let other = states.iter().find(|l| l["state"] == "ACTIVE").expect("active lead");
    let lid = other["id"].as_str().expect("id");
    let (status, v) = api.call(Method::DELETE, &format!("/campaigns/{cid}/leads/{lid}"), None).await;
    assert_eq!((status.as_u16(), v["outcome"].as_str()), (200, Some("stopped")), "{v}");
    let states = leads(&api, &cid).await;
    assert_eq!(states.iter().find(|l| l["id"] == lid).map(|l| l["state"].clone()), Some(json!("STOPPED")));

    // A campaign whose only mailbox this is refuses even a forced delete.
    let solo = json!({"name": "solo", "sender_account_ids": [bob], "steps": [{"subject": "Hi", "text": "x"}]});
    let (_, s) = api.call(Method::POST, "/campaigns", Some(&solo)).await;
    let (status, v) = api.call(Method::DELETE, &format!("/sender-accounts/{bob}?force=true"), None).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains(s["id"].as_str().unwrap_or("?")), "{v}");
    assert_eq!(api.get(&format!("/sender-accounts/{bob}")).await.0, 200);
}
