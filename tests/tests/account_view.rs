//! What the account view tells an operator (real Postfix + Dovecot + Redis): its health,
//! today's usage against the effective cap and which limit binds, the warm-up stage and
//! the day it ends, the next allowed send and the last scan — and that a mailbox's own
//! warm-up (a slower ramp, an earlier start) is what the sending actually obeys.

use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn the_view_explains_the_cap_and_a_mailbox_s_own_warm_up_is_obeyed() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x lead04:x lead05:x");
    let mut env = FAST_SENDING.to_vec();
    env.extend([("COLDSEND_SCAN__INTERVAL_SECS", "1"), ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1")]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    let path = format!("/sender-accounts/{ann}");

    // A slow ramp of its own: three a day while new.
    let sending = json!({"timezone": "UTC", "warmup": true, "append_to_sent": false,
        "warmup_ramp": {"new_per_day": 3, "warming_per_day": 20, "established_per_day": 40}});
    let (status, s) = api.call(Method::PUT, &format!("{path}/sending"), Some(&sending)).await;
    assert_eq!(status, 200, "{s}");
    let too_fast = json!({"timezone": "UTC", "warmup": true, "append_to_sent": false,
        "warmup_ramp": {"new_per_day": 50, "warming_per_day": 60, "established_per_day": 90}});
    let (status, v) = api.call(Method::PUT, &format!("{path}/sending"), Some(&too_fast)).await;
    assert_eq!((status.as_u16(), v["error"]["field"].as_str()), (422, Some("warmup_ramp")), "{v}");

    let body = json!({"name": "view", "sender_account_ids": [ann], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<_> = (1..=5).map(|i| json!({"email": format!("lead{i:02}@example.test")})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    let delivered = || (1..=5).filter(|i| !mail.messages(&format!("lead{i:02}")).is_empty()).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered() < 3 {
        assert!(Instant::now() < deadline, "three sends\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(delivered(), 3, "the mailbox's own ramp caps the day");

    let (_, view) = api.get(&path).await;
    let today = &view["today"];
    assert_eq!(view["health"]["state"], "healthy", "{view}");
    assert_eq!((today["sent_today"].as_u64(), today["effective_cap"].as_u64()), (Some(3), Some(3)), "{today}");
    assert_eq!(today["limit"]["binding"], "warmup", "{today}");
    assert_eq!(today["limit"]["warmup"]["stage"], "new");
    let ends = (chrono::Utc::now().date_naive() + chrono::Duration::days(14)).to_string();
    assert_eq!(today["limit"]["warmup"]["stage_ends_on"], ends.as_str(), "{today}");
    assert!(today["next_allowed_send"].is_string());
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.get(&path).await.1["today"]["last_scan"]["at"].is_null() {
        assert!(Instant::now() < deadline, "a scan pass on record");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An aged mailbox: the ramp counted from weeks ago, its established volume binds.
    let aged = json!({"timezone": "UTC", "warmup": true, "append_to_sent": false,
        "warmup_start": (chrono::Utc::now().date_naive() - chrono::Duration::days(60)).to_string(),
        "warmup_ramp": {"new_per_day": 3, "warming_per_day": 20, "established_per_day": 40}});
    let (status, _) = api.call(Method::PUT, &format!("{path}/sending"), Some(&aged)).await;
    assert_eq!(status, 200);
    let (_, view) = api.get(&path).await;
    let limit = &view["today"]["limit"];
    assert_eq!(
        (limit["effective_cap"].as_u64(), limit["warmup"]["stage"].as_str()),
        (Some(40), Some("established")),
        "{limit}"
    );
    assert!(limit["warmup"]["stage_ends_on"].is_null());

    // Paused sending shows in the health, with the reason.
    for i in 1..=5 {
        mail.set_recipient_rule(
            &format!("lead{i:02}@example.test"),
            Some("550 5.4.5 Daily user sending quota exceeded."),
        );
    }
    api.call(Method::POST, &format!("{path}/resume-sending"), None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get(&path).await.1["health"]["state"] != "sending_paused" {
        assert!(Instant::now() < deadline, "paused\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, view) = api.get(&path).await;
    assert!(view["health"]["reason"].as_str().unwrap_or("").contains("5.4.5"), "{view}");
}
