//! The global suppression list through the API: addresses and whole domains, search,
//! import and export; suppressed leads are never mailed, whenever they were suppressed.

use std::time::{Duration, Instant};

use coldsend_tests::{API_KEY, Api, FAST_SENDING, Mail, Stack, account_json};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn addresses_and_domains_are_suppressed_listed_imported_exported_and_removed() {
    let stack = Stack::start(None);
    let api = Api::new(&stack);
    let body = json!({"addresses": ["Ann@Example.com", "not an address"], "domains": ["competitor.example", "nodot"]});
    let (status, report) = api.call(Method::POST, "/suppression", Some(&body)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["added"].clone(), report["already"].clone()), (json!(2), json!(0)), "{report}");
    let invalid: Vec<&str> =
        report["invalid"].as_array().expect("invalid").iter().filter_map(|i| i["entry"].as_str()).collect();
    assert_eq!(invalid, ["not an address", "nodot"], "{report}");
    let (_, again) = api.call(Method::POST, "/suppression", Some(&json!({"addresses": ["ann@example.com"]}))).await;
    assert_eq!(again["already"], 1, "nothing twice: {again}");

    let (_, page) = api.get("/suppression?search=competitor").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(
        (entries[0]["entry"].clone(), entries[0]["kind"].clone(), entries[0]["reason"].clone()),
        (json!("@competitor.example"), json!("domain"), json!("manual"))
    );

    let http = reqwest::Client::new();
    let imported: Value = http
        .post(format!("{}/suppression/import", api.base))
        .header("X-API-Key", API_KEY)
        .header("Content-Type", "text/csv")
        .body("email,note\nbob@example.org,x\n@partner.example\nbroken line\n")
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("json");
    assert_eq!(imported["added"], 2, "{imported}");
    assert_eq!(imported["invalid"][0]["at"], 4, "bad lines reported by number: {imported}");

    let csv = http
        .get(format!("{}/suppression/export", api.base))
        .header("X-API-Key", API_KEY)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("text");
    for line in [
        "entry,kind,reason",
        "ann@example.com,address,manual",
        "@competitor.example,domain,manual",
        "bob@example.org,address,manual",
        "@partner.example,domain,manual",
    ] {
        assert!(csv.lines().any(|l| l == line), "{line} missing from:\n{csv}");
    }

    let (status, _) = api.call(Method::DELETE, "/suppression/competitor.example", None).await;
    assert_eq!(status, 204);
    let (status, gone) = api.call(Method::DELETE, "/suppression/competitor.example", None).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_suppressed_domain_is_never_mailed_whether_suppressed_before_or_after_the_lead_was_added() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
    // A whole domain suppressed before leads at it arrive…
    api.call(Method::POST, "/suppression", Some(&json!({"domains": ["blocked.example"]}))).await;
    let body = json!({"name": "s", "sender_account_ids": [ann], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "someone@blocked.example"}, {"email": "lead01@example.test"}, {"email": "lead02@example.test"}]});
    let (_, added) = api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    assert_eq!(added["suppressed"], 1, "{added}");
    // …and one suppressed after its lead was added: `reserve` checks the domain too.
    api.call(Method::POST, "/suppression", Some(&json!({"addresses": ["lead02@example.test"]}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while mail.messages("lead01").is_empty() {
        assert!(Instant::now() < deadline, "lead01 never mailed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(mail.messages("lead02").is_empty(), "a suppressed address is never mailed");
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    let state = |e: &str| leads.as_array().expect("leads").iter().find(|l| l["email"] == e).map(|l| l["state"].clone());
    assert_eq!(state("someone@blocked.example"), Some(json!("SUPPRESSED")));
    assert_eq!(state("lead02@example.test"), Some(json!("SUPPRESSED")));
    assert_eq!(state("lead01@example.test"), Some(json!("COMPLETED")));
}

#[test]
fn the_cli_adds_lists_exports_and_removes_entries() {
    let stack = Stack::start(None);
    let env = &stack.env;
    let (ok, out, err) = coldsend_tests::run(
        "coldsend",
        &["suppression", "add", "--address", "Zed@Example.org", "--domain", "spam.example"],
        env,
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["added"], 2, "{out}");
    let (ok, out, _) = coldsend_tests::run("coldsend", &["suppression", "list", "--search", "example.org"], env);
    assert!(ok && out.contains("zed@example.org") && !out.contains("spam.example"), "{out}");
    let (ok, out, _) = coldsend_tests::run("coldsend", &["suppression", "export"], env);
    assert!(ok && out.contains("@spam.example,domain,manual"), "{out}");
    let (ok, _, err) = coldsend_tests::run("coldsend", &["suppression", "rm", "spam.example"], env);
    assert!(ok, "{err}");
    let (ok, _, err) = coldsend_tests::run("coldsend", &["suppression", "rm", "spam.example"], env);
    assert!(!ok && err.contains("is not on the suppression list"), "{err}");
}
