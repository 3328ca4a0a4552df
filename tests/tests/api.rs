//! The sender-accounts API end to end: `coldsend serve` and `coldsend-worker` as real
//! processes, on a real Redis, validating against real Postfix + Dovecot.

use coldsend_tests::{API_KEY, Api, Mail, Stack};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A password distinctive enough to grep for in every place it must not appear.
const SECRET: &str = "Zq8-unique-Secret-4417";
const USERS: &str = "alice:alicepw bob:bobpw carol:Zq8-unique-Secret-4417";

fn account(mail: &Mail, user: &str, password: &str) -> Value {
    json!({
        "email_address": format!("{user}@example.test"),
        "display_name": format!("{user} from Example"),
        "inbox_type": "CUSTOM_SMTP",
        "daily_limit": 100,
        "smtp_host": "127.0.0.1",
        "smtp_port": mail.submission_port(),
        "smtp_username": format!("{user}@example.test"),
        "smtp_password": password,
        "smtp_use_tls": true,
        "imap_host": "127.0.0.1",
        "imap_port": mail.imaps_port(),
        "imap_username": format!("{user}@example.test"),
        "imap_password": password,
        "imap_use_ssl": true
    })
}

#[tokio::test]
async fn accounts_validate_to_active_over_starttls_and_implicit_tls() {
    let mail = Mail::start(USERS);
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);

    // 587-style STARTTLS + IMAPS.
    let (status, created) = api.create(&account(&mail, "alice", "alicepw")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "PENDING_VALIDATION");
    let alice = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(alice["status"], "ACTIVE", "{alice}");
    assert_eq!(alice["validation"]["smtp"]["ok"], true);
    assert_eq!(alice["validation"]["imap"]["ok"], true);
    assert!(alice["error"].is_null());

    // 465-style implicit TLS + IMAP with STARTTLS (imap_use_ssl off, server offers STARTTLS).
    let mut bob = account(&mail, "bob", "bobpw");
    bob["smtp_port"] = json!(mail.smtps_port());
    bob["imap_port"] = json!(mail.imap_port());
    bob["imap_use_ssl"] = json!(false);
    let (status, created) = api.create(&bob).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bob = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(bob["status"], "ACTIVE", "{bob}");

    let (status, list) = api.get("/sender-accounts").await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<_> = list.as_array().expect("array").iter().map(|a| a["email_address"].clone()).collect();
    assert_eq!(emails, vec![json!("alice@example.test"), json!("bob@example.test")]);
}

#[tokio::test]
async fn a_failing_protocol_keeps_the_account_from_active() {
    let mail = Mail::start(USERS);
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);

    // SMTP refuses the password, IMAP accepts its own: never ACTIVE.
    let mut body = account(&mail, "alice", "alicepw");
    body["smtp_password"] = json!("wrong-password");
    let (_, created) = api.create(&body).await;
    let a = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(a["status"], "VALIDATION_FAILED", "{a}");
    assert_eq!(a["error"]["protocol"], "SMTP");
    assert_eq!(a["error"]["code"], "AUTH_FAILED");
    assert!(a["error"]["message"].as_str().unwrap_or("").contains("535"), "server text: {a}");
    assert_eq!(a["validation"]["imap"]["ok"], true);

    // The other way round: the failing protocol is IMAP.
    let mut body = account(&mail, "bob", "bobpw");
    body["imap_password"] = json!("wrong-password");
    let (_, created) = api.create(&body).await;
    let b = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(b["status"], "VALIDATION_FAILED", "{b}");
    assert_eq!((b["error"]["protocol"].clone(), b["error"]["code"].clone()), (json!("IMAP"), json!("AUTH_FAILED")));

    // A host that cannot resolve and a closed port are reported with their codes.
    let mut body = account(&mail, "carol", SECRET);
    body["smtp_host"] = json!("smtp.coldsend.invalid");
    let (_, created) = api.create(&body).await;
    let c = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(
        (c["error"]["protocol"].clone(), c["error"]["code"].clone()),
        (json!("SMTP"), json!("HOST_NOT_FOUND")),
        "{c}"
    );
}

#[tokio::test]
async fn every_rejection_rule_answers_4xx_and_stores_nothing() {
    let mail = Mail::start(USERS);
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let good = account(&mail, "alice", "alicepw");
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().expect("object").remove(field);
        b
    };
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        ("over the inbox maximum", with("daily_limit", json!(100_001)), "daily_limit_exceeded", Some("daily_limit")),
        (
            "google over 2000",
            {
                let mut b = with("inbox_type", json!("GOOGLE_WORKSPACE"));
                b["daily_limit"] = json!(2001);
                b
            },
            "daily_limit_exceeded",
            Some("daily_limit"),
        ),
        (
            "outlook over 10000",
            {
                let mut b = with("inbox_type", json!("OUTLOOK_365"));
                b["daily_limit"] = json!(10_001);
                b
            },
            "daily_limit_exceeded",
            Some("daily_limit"),
        ),
        ("invalid email", with("email_address", json!("alice.example.test")), "invalid_email", Some("email_address")),
        ("unknown inbox type", with("inbox_type", json!("YAHOO_MAIL")), "invalid_inbox_type", Some("inbox_type")),
        ("port 0", with("smtp_port", json!(0)), "invalid_port", Some("smtp_port")),
        ("port 65536", with("imap_port", json!(65_536)), "invalid_port", Some("imap_port")),
        (
            "CR/LF in display name",
            with("display_name", json!("Alice\r\nBcc: all@example.test")),
            "invalid_display_name",
            Some("display_name"),
        ),
        ("missing field", without("smtp_password"), "missing_field", Some("smtp_password")),
        ("missing host for custom", without("imap_host"), "missing_field", Some("imap_host")),
        ("unknown field", with("smtp_pasword", json!("x")), "unknown_field", Some("smtp_pasword")),
        ("wrong type", with("daily_limit", json!("fifty")), "invalid_type", Some("daily_limit")),
        ("not an object", json!(["alice"]), "invalid_json", None),
    ];
    for (name, body, code, field) in cases {
        let (status, err) = api.create(&body).await;
        assert!(status.is_client_error(), "{name}: {status} {err}");
        assert_eq!(err["error"]["code"], code, "{name}: {err}");
        assert_eq!(err["error"]["field"].as_str(), field, "{name}: {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {err}");
    }
    // Over 64 KiB.
    let mut big = good.clone();
    big["display_name"] = json!("x".repeat(70 * 1024));
    let (status, err) = api.create(&big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "body_too_large");
    // Broken JSON.
    let resp = api
        .http
        .post(format!("{}/sender-accounts", api.base))
        .header("X-API-Key", API_KEY)
        .header("content-type", "application/json")
        .body("{\"email_address\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Nothing was stored by any of them.
    let (_, list) = api.get("/sender-accounts").await;
    assert_eq!(list, json!([]));
    let mut conn = stack.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("cstest:account*").query(&mut conn).expect("keys");
    assert!(keys.is_empty(), "stored by a rejected request: {keys:?}");

    // A duplicate address is a conflict, and the first account stays.
    let (status, _) = api.create(&good).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, err) = api.create(&good).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "duplicate_account");
}

#[tokio::test]
async fn without_a_valid_key_every_route_is_401() {
    let stack = Stack::start(None);
    let http = reqwest::Client::new();
    let base = format!("{}/api/public/v1", stack.base_url);
    let id = "00000000-0000-4000-8000-000000000000";
    let routes = [
        (reqwest::Method::POST, "/sender-accounts".to_owned()),
        (reqwest::Method::GET, "/sender-accounts".to_owned()),
        (reqwest::Method::GET, format!("/sender-accounts/{id}")),
        (reqwest::Method::DELETE, format!("/sender-accounts/{id}")),
        (reqwest::Method::POST, format!("/sender-accounts/{id}/validate")),
    ];
    for (method, path) in routes {
        for key in [None, Some("wrong-key"), Some("")] {
            let mut req = http.request(method.clone(), format!("{base}{path}")).json(&json!({}));
            if let Some(k) = key {
                req = req.header("X-API-Key", k);
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            let body: Value = resp.json().await.expect("json error");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn passwords_never_appear_in_responses_redis_or_logs() {
    let mail = Mail::start(USERS);
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let (status, created) = api.create(&account(&mail, "carol", SECRET)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().expect("id").to_owned();
    let settled = api.settled(&id).await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    let (_, revalidated) = api.call(reqwest::Method::POST, &format!("/sender-accounts/{id}/validate"), None).await;
    let settled_again = api.settled(&id).await;
    let (_, list) = api.get("/sender-accounts").await;

    for body in [&created, &settled, &revalidated, &settled_again, &list] {
        let text = body.to_string();
        assert!(!text.contains(SECRET), "password in a response: {text}");
        assert!(!text.contains("password"), "a password field in a response: {text}");
    }

    // Every value of every key in Redis, whatever its type (queues and job data included).
    let mut conn = stack.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).expect("keys");
    assert!(keys.iter().any(|k| k.starts_with("cstest:account:")), "account stored: {keys:?}");
    stack.redis.assert_nowhere(SECRET);

    // The logs were written at trace level, the most verbose there is.
    let logs = stack.logs();
    assert!(logs.contains("account validated"), "worker logged its work");
    assert!(!logs.contains(SECRET), "password in the logs");
}

#[tokio::test]
async fn show_revalidate_and_delete() {
    let mail = Mail::start(USERS);
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let (_, created) = api.create(&account(&mail, "alice", "alicepw")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(api.settled(&id).await["status"], "ACTIVE");

    let (status, body) = api.call(reqwest::Method::POST, &format!("/sender-accounts/{id}/validate"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "PENDING_VALIDATION");
    assert_eq!(api.settled(&id).await["status"], "ACTIVE");

    let (status, _) = api.call(reqwest::Method::DELETE, &format!("/sender-accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = api.get(&format!("/sender-accounts/{id}")).await;
    assert_eq!((status, err["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));
    let (status, _) = api.call(reqwest::Method::DELETE, &format!("/sender-accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get("/sender-accounts/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The address is free again once deleted.
    let (status, _) = api.create(&account(&mail, "alice", "alicepw")).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let stack = Stack::start(None);
    let api = Api::new(&stack);
    let resp = reqwest::get(format!("{}/openapi.json", api.base)).await.expect("openapi");
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.expect("json");
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["name"], "X-API-Key");
    let request = &doc["components"]["schemas"]["SenderAccountRequest"]["properties"];
    for f in coldsend_core::account_request::FIELDS {
        assert!(request.get(f).is_some(), "request field {f} documented");
    }
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, ops) in paths {
        for method in ops.as_object().expect("ops").keys() {
            documented += 1;
            let concrete = path
                .replace("{id}", "00000000-0000-4000-8000-000000000000")
                .replace("{action}", "start")
                .replace("/api/public/v1", "")
                + if path.ends_with("/unsubscribe") { "?token=forged" } else { "" };
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (status, body) = api.call(m, &concrete, Some(&json!({}))).await;
            // Every documented operation is routed: no 405, and a 404 only as the JSON "no such …".
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                assert!(
                    body["error"]["message"].as_str().is_some_and(|m| {
                        m.starts_with("no sender account")
                            || m.starts_with("no campaign")
                            || m.ends_with("is not on the suppression list")
                            || m.starts_with("no webhook")
                            || m.starts_with("no test send")
                            || m.starts_with("no lead")
                    }),
                    "{method} {path}: {body}"
                );
            }
            let documented_codes: Vec<u16> = ops[method]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            assert!(documented_codes.contains(&status.as_u16()), "{method} {path} answered undocumented {status}");
        }
    }
    assert_eq!(documented, 40, "every route is documented");
}

/// A job that fails says so in the worker's log (apalis hands a job's error to event
/// handlers only): here the validation of an account whose stored record is unreadable.
/// The sweep names that account and goes on with every other one.
#[tokio::test]
async fn a_job_that_fails_is_logged_and_an_unreadable_account_stops_no_sweep() {
    // A sweep every 5 s (a quarter of the stale period).
    let stack = Stack::start_with(None, &coldsend_tests::FAST_SENDING, 1);
    let api = Api::new(&stack);
    let body = coldsend_tests::account_json("ann", "annpw", 9, true, 9, 10);
    let (status, created) = api.create(&body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id: coldsend_core::AccountId = created["id"].as_str().expect("id").parse().expect("account id");
    let key = coldsend_core::storage::keys::Keys::new("cstest").account(&id);
    let mut conn = redis::Client::open(stack.redis.url()).expect("url").get_connection().expect("redis");
    let _: () = redis::cmd("HSET").arg(&key).arg("record").arg("{not json").query(&mut conn).expect("hset");
    api.call(reqwest::Method::POST, &format!("/sender-accounts/{id}/validate"), None).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let failed = |logs: &str| logs.lines().any(|l| l.contains("job failed") && l.contains(&id.to_string()));
    while !failed(&stack.logs()) {
        assert!(std::time::Instant::now() < deadline, "no `job failed` line:\n{}", api.trouble());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let skipped =
        |logs: &str| logs.lines().any(|l| l.contains("the sweep leaves it out") && l.contains(&id.to_string()));
    while !skipped(&stack.logs()) {
        assert!(std::time::Instant::now() < deadline, "the sweep did not name the account:\n{}", api.trouble());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!stack.logs().contains("sweep failed"), "one account stopped the sweep:\n{}", api.trouble());
}
