//! Webhooks end to end (real Postfix + Dovecot + Redis, a receiver on loopback): every
//! delivery is signed and verifies; a receiver that answers 503 gets its events again
//! once it recovers; events arrive once per id after deduplication, whatever their order;
//! an endpoint that cannot be reached is disabled after its failures in a row, with a
//! `webhook_disabled` event, and its record shows why.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use coldsend_tests::fixtures::closed_port;
use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::{Value, json};

/// What the receiver saw: each request's event and whether it answered 2xx.
#[derive(Default)]
struct Seen {
    requests: Vec<(Value, bool)>,
    bad_signatures: usize,
    secret: String,
}

/// A receiver on loopback that answers 503 to its first `down_for` requests (as if it were
/// down), 200 after, and checks every signature.
async fn receiver(down_for: usize) -> (String, Arc<Mutex<Seen>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let mut s = state.lock().expect("lock");
                let sig = headers.get("coldsend-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                let now = chrono::Utc::now().timestamp();
                if !coldsend_core::webhook::verify(s.secret.as_bytes(), sig, &body, now, 300) {
                    s.bad_signatures += 1;
                }
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let ok = s.requests.len() >= down_for;
                s.requests.push((event, ok));
                if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Events the receiver accepted, once per id (redeliveries folded), by type.
fn accepted(seen: &Seen) -> BTreeMap<String, Vec<Value>> {
    let mut ids = HashSet::new();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (e, ok) in &seen.requests {
        if *ok && ids.insert(e["id"].as_str().unwrap_or("").to_owned()) {
            out.entry(e["type"].as_str().unwrap_or("").to_owned()).or_default().push(e.clone());
        }
    }
    out
}

async fn wait_for(what: &str, secs: u64, api: &Api, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn events_are_signed_redelivered_after_an_outage_and_a_dead_endpoint_is_disabled() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_WEBHOOKS__RETRY_BASE_SECS", "1"),
        ("COLDSEND_WEBHOOKS__RETRY_MAX_SECS", "2"),
        ("COLDSEND_WEBHOOKS__MAX_ATTEMPTS", "30"),
        ("COLDSEND_WEBHOOKS__DISABLE_AFTER_FAILURES", "8"),
        ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let (url, seen) = receiver(4).await;

    // Endpoints: the receiver (every event) and one nobody listens on (sends only).
    let (status, hook) = api.call(Method::POST, "/webhooks", Some(&json!({"url": url}))).await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    seen.lock().expect("lock").secret = secret.clone();
    let (_socket, closed) = closed_port();
    let dead_url = format!("http://127.0.0.1:{closed}/hook");
    let (_, dead) = api.call(Method::POST, "/webhooks", Some(&json!({"url": dead_url, "events": ["sent"]}))).await;
    let dead_id = dead["id"].as_str().expect("id").to_owned();
    for (body, field) in [(json!({"url": "ftp://x.test/"}), "url"), (json!({"url": url, "events": ["nope"]}), "events")]
    {
        let (status, v) = api.call(Method::POST, "/webhooks", Some(&body)).await;
        assert_eq!((status.as_u16(), v["error"]["field"].as_str()), (422, Some(field)), "{v}");
    }
    let (_, list) = api.get("/webhooks").await;
    assert!(!list.to_string().contains(&secret), "the secret is shown once only");
    stack.redis.assert_nowhere(&secret);

    // A campaign: two sends, one of them to an address that bounces (a DSN found by scanning).
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    let body = json!({"name": "hooks", "sender_account_ids": [ann], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test"}, {"email": "nosuch@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;

    let complete = || {
        let s = seen.lock().expect("lock");
        let a = accepted(&s);
        let n = |t: &str| a.get(t).map_or(0, Vec::len);
        n("sent") == 2 && n("campaign_state") >= 1 && n("bounce") == 1 && n("webhook_disabled") == 1
    };
    wait_for("every event at the receiver", 90, &api, complete).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    {
        let s = seen.lock().expect("lock");
        assert_eq!(s.bad_signatures, 0, "every delivery carries a valid signature");
        let a = accepted(&s);
        // The four answered 503 came again and were accepted: nothing lost to the outage.
        let refused: HashSet<&str> =
            s.requests.iter().filter(|(_, ok)| !ok).filter_map(|(e, _)| e["id"].as_str()).collect();
        let delivered: HashSet<&str> =
            s.requests.iter().filter(|(_, ok)| *ok).filter_map(|(e, _)| e["id"].as_str()).collect();
        assert_eq!(s.requests.iter().filter(|(_, ok)| !ok).count(), 4);
        assert!(refused.is_subset(&delivered), "redelivered after the outage: {refused:?}");
        let sent: HashSet<&str> = a["sent"].iter().filter_map(|e| e["data"]["lead_id"].as_str()).collect();
        assert_eq!(sent.len(), 2, "one sent event per lead: {:?}", a["sent"]);
        assert!(
            a["sent"].iter().all(|e| e["data"]["campaign_id"] == cid.as_str() && e["data"]["message_id"].is_string())
        );
        let to: HashSet<&str> = a["sent"].iter().filter_map(|e| e["data"]["to"].as_str()).collect();
        assert_eq!(to, HashSet::from(["lead01@example.test", "nosuch@example.test"]), "{:?}", a["sent"]);
        assert_eq!(a["bounce"][0]["data"]["bounce"]["recipient"], "nosuch@example.test", "{:?}", a["bounce"]);
        assert!(a["campaign_state"].iter().any(|e| e["data"]["state"] == "RUNNING"), "{:?}", a["campaign_state"]);
        // Each lead's last email sent and its COMPLETED are one outbox entry: both arrive.
        let completed: HashSet<&str> = a
            .get("lead_state")
            .into_iter()
            .flatten()
            .filter(|e| e["data"]["state"] == "COMPLETED")
            .filter_map(|e| e["data"]["lead_id"].as_str())
            .collect();
        assert_eq!(completed, sent, "a COMPLETED per lead sent to: {a:?}");
        assert_eq!(a["webhook_disabled"][0]["data"]["webhook_id"], dead_id.as_str());
    }

    // Each endpoint's record says what happened.
    let (_, ok) = api.get(&format!("/webhooks/{}", hook["id"].as_str().unwrap_or(""))).await;
    assert_eq!(
        (ok["enabled"].as_bool(), ok["failed"].as_u64(), ok["last_status"].as_u64()),
        (Some(true), Some(4), Some(200)),
        "{ok}"
    );
    let (_, gone) = api.get(&format!("/webhooks/{dead_id}")).await;
    assert_eq!(gone["enabled"], false, "{gone}");
    assert!(gone["consecutive_failures"].as_u64() >= Some(8) && gone["last_error"].is_string(), "{gone}");

    // Enabled again, then removed.
    let (status, again) = api.call(Method::POST, &format!("/webhooks/{dead_id}/enable"), None).await;
    assert_eq!(
        (status.as_u16(), again["enabled"].as_bool(), again["consecutive_failures"].as_u64()),
        (200, Some(true), Some(0))
    );
    let (status, _) = api.call(Method::DELETE, &format!("/webhooks/{dead_id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(api.get(&format!("/webhooks/{dead_id}")).await.0, 404);
}
