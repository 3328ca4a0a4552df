//! Sends that look human (real Postfix + Dovecot + Redis): with spread pacing a mailbox's
//! next send waits for its share of the window left (the window time left over the sends
//! its cap still allows today, ±20 %), shown as `usage.next_allowed_send`; a campaign set to
//! `fast` sends as fast as the gap allows under the same settings.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::json;

/// A window open now that closes about ten minutes from now: a fixed-offset zone in which
/// it is around noon (so the window cannot wrap past midnight).
fn closing_window() -> (serde_json::Value, chrono::DateTime<Utc>) {
    let now = Utc::now();
    let offset = i64::from(now.hour()) - 12; // Etc/GMT+N is N hours behind UTC.
    let tz = if offset >= 0 { format!("Etc/GMT+{offset}") } else { format!("Etc/GMT-{}", -offset) };
    let end_local = now - chrono::Duration::hours(offset) + chrono::Duration::minutes(10);
    let end_local = end_local.with_second(0).unwrap_or(end_local);
    let schedule = json!({"timezone": tz, "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": "00:00", "end": end_local.format("%H:%M").to_string()});
    (schedule, end_local + chrono::Duration::hours(offset))
}

#[tokio::test]
async fn spread_pacing_gives_each_send_its_share_of_the_window_and_fast_does_not() {
    let mail = Mail::start("ann:annpw bob:bobpw lead01:x lead02:x lead03:x lead04:x");
    let env: Vec<(&str, &str)> =
        FAST_SENDING.iter().copied().filter(|(k, _)| *k != "COLDSEND_SENDING__PACING").collect();
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let (schedule, window_end) = closing_window();

    // Spread (the configured default): cap 10, so the first send leaves a tenth of the window.
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 10)).await;
    let body = json!({"name": "spread", "sender_account_ids": [ann], "schedule": schedule,
        "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (status, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    assert_eq!(status, 201, "{c}");
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test"}, {"email": "lead02@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    let delivered = || ["lead01", "lead02"].iter().filter(|l| !mail.messages(l).is_empty()).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered() == 0 {
        assert!(Instant::now() < deadline, "the first send\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent_at = Utc::now();
    let (_, usage) = api.get(&format!("/sender-accounts/{ann}/usage")).await;
    let next: chrono::DateTime<Utc> =
        usage["next_allowed_send"].as_str().and_then(|t| t.parse().ok()).expect("next_allowed_send");
    let share = (window_end - sent_at).num_milliseconds() as f64 / 10.0;
    let wait = (next - sent_at).num_milliseconds() as f64;
    assert!(
        wait > share * 0.8 - 3_000.0 && wait < share * 1.2 + 1_000.0,
        "waits {wait} ms for a share of {share}: {usage}"
    );
    assert!(wait > 30_000.0, "{usage}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(delivered(), 1, "the second send waits for its share of the window");

    // The same settings, a campaign that chose fast: both at once (no gap configured).
    let bob =
        api.active_account(&account_json("bob", "bobpw", mail.submission_port(), true, mail.imaps_port(), 10)).await;
    let body = json!({"name": "fast", "sender_account_ids": [bob], "schedule": schedule, "pacing": "fast",
        "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let fast = c["id"].as_str().expect("id").to_owned();
    assert_eq!(c["pacing"], "fast", "{c}");
    let leads = json!({"leads": [{"email": "lead03@example.test"}, {"email": "lead04@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{fast}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{fast}/start"), None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ["lead03", "lead04"].iter().any(|l| mail.messages(l).is_empty()) {
        assert!(Instant::now() < deadline, "both fast sends\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered(), 1, "the spread campaign still waits");
}

fn etc_zone(hours_behind_utc: i64) -> String {
    if hours_behind_utc >= 0 { format!("Etc/GMT+{hours_behind_utc}") } else { format!("Etc/GMT-{}", -hours_behind_utc) }
}

#[tokio::test]
async fn with_lead_time_zones_each_lead_gets_its_email_inside_its_own_window() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    // A zone where it is about noon now (inside 09:00-17:00) and one where it is about
    // midnight (outside); the campaign's own zone is the midnight one.
    let h = i64::from(Utc::now().hour());
    let noon = etc_zone(h - 12);
    let midnight = etc_zone(if h <= 12 { h } else { h - 24 });
    let body = json!({"name": "zones", "sender_account_ids": [ann], "lead_timezones": true, "pacing": "fast",
        "schedule": {"timezone": midnight, "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                     "start": "09:00", "end": "17:00"},
        "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (status, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    assert_eq!((status.as_u16(), c["lead_timezones"].as_bool()), (201, Some(true)), "{c}");
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [
        {"email": "lead01@example.test", "variables": {"timezone": noon}},
        {"email": "lead02@example.test", "variables": {"timezone": midnight}},
        {"email": "lead03@example.test"},
        {"email": "lead04@example.test", "variables": {"timezone": "Mars/Olympus_Mons"}}]});
    let (_, report) = api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    assert_eq!(report["added"], 3, "{report}");
    assert!(report["invalid"][0]["error"].as_str().unwrap_or("").contains("IANA"), "{report}");
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mail.messages("lead01").is_empty() {
        assert!(Instant::now() < deadline, "the lead whose window is open\n{}", api.trouble());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(mail.messages("lead02").is_empty(), "its own window is closed");
    assert!(mail.messages("lead03").is_empty(), "no zone of its own: the campaign's, closed");
}
