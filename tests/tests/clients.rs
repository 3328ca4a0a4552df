//! Clients of the API other than our own: the documentation's Python example, and the
//! `coldsend` CLI.

use std::process::Command;

use coldsend_tests::{API_KEY, Mail, Stack, repo_root, run};
use serde_json::Value;

#[test]
fn python_requests_example_registers_an_active_account() {
    let mail = Mail::start("alice:alicepw");
    let stack = Stack::start(Some(&mail));
    let out = Command::new("python3")
        .arg(repo_root().join("tests/python/provider_example.py"))
        .env("COLDSEND_BASE_URL", &stack.base_url)
        .env("COLDSEND_API_KEY", API_KEY)
        // The certificate names localhost; the servers listen on 127.0.0.1.
        .env("MAIL_HOST", "localhost")
        .env("MAIL_USER", "alice@example.test")
        .env("MAIL_PASSWORD", "alicepw")
        .env("SMTP_PORT", mail.submission_port().to_string())
        .env("IMAP_PORT", mail.imaps_port().to_string())
        .output()
        .expect("python3 (scripts/test.sh installs requests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("POST 201"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ACTIVE"), "{stdout}");
}

#[test]
fn cli_adds_lists_shows_validates_and_removes() {
    let mail = Mail::start("alice:alicepw bob:bobpw");
    let stack = Stack::start(Some(&mail));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("account.json");
    let body = serde_json::json!({
        "email_address": "bob@example.test", "display_name": "Bob", "inbox_type": "CUSTOM_SMTP",
        "daily_limit": 30, "smtp_host": "127.0.0.1", "smtp_port": mail.submission_port(),
        "smtp_username": "bob@example.test", "smtp_password": "bobpw", "smtp_use_tls": true,
        "imap_host": "127.0.0.1", "imap_port": mail.imaps_port(), "imap_username": "bob@example.test",
        "imap_password": "bobpw", "imap_use_ssl": true
    });
    std::fs::write(&file, body.to_string()).expect("write");
    let path = file.to_string_lossy().into_owned();
    let env = &stack.env;

    let (ok, out, err) = run("coldsend", &["accounts", "add", "--file", &path, "--wait"], env);
    assert!(ok, "add: {out}{err}");
    let added: Value = serde_json::from_str(&out).expect("add prints JSON");
    assert_eq!(added["status"], "ACTIVE", "{out}");
    assert!(!out.contains("bobpw"));
    let id = added["id"].as_str().expect("id").to_owned();

    let (ok, out, _) = run("coldsend", &["accounts", "list"], env);
    assert!(ok && out.contains(&id) && out.contains("ACTIVE") && out.contains("bob@example.test"), "{out}");

    let (ok, out, _) = run("coldsend", &["accounts", "show", &id], env);
    assert!(ok, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["email_address"], "bob@example.test");

    let (ok, out, err) = run("coldsend", &["accounts", "validate", &id, "--wait"], env);
    assert!(ok, "validate: {out}{err}");

    // A bad file is refused with the field named, and nothing is stored.
    std::fs::write(&file, body.to_string().replace("\"daily_limit\":30", "\"daily_limit\":100001")).expect("write");
    let (ok, _, err) = run("coldsend", &["accounts", "add", "--file", &path], env);
    assert!(!ok && err.contains("daily_limit"), "{err}");

    let (ok, _, err) = run("coldsend", &["accounts", "rm", &id], env);
    assert!(ok, "{err}");
    let (ok, _, err) = run("coldsend", &["accounts", "show", &id], env);
    assert!(!ok && err.contains("no sender account"), "{err}");
    let (ok, out, _) = run("coldsend", &["accounts", "list", "--json"], env);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json"), serde_json::json!([]));
}

#[tokio::test]
async fn python_redis_producer_adds_leads_and_starts_a_campaign() {
    use coldsend_tests::{Api, FAST_SENDING};
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let body = coldsend_tests::account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 10);
    let account = api.active_account(&body).await;
    let campaign = serde_json::json!({"name": "from python", "sender_account_ids": [account],
        "steps": [{"subject": "Hi {{ first_name }}", "text": "Hello"}]});
    let (status, c) = api.call(reqwest::Method::POST, "/campaigns", Some(&campaign)).await;
    assert_eq!(status, 201, "{c}");
    let cid = c["id"].as_str().expect("id").to_owned();

    let out = Command::new("python3")
        .arg(repo_root().join("tests/python/redis_contract.py"))
        .env("REDIS_URL", stack.redis.url())
        .env("PREFIX", "cstest")
        .env("CAMPAIGN_ID", &cid)
        .output()
        .expect("python3 (scripts/test.sh installs redis)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.logs().lines().filter(|l| l.contains("command")).collect::<Vec<_>>().join("\n")
    );
    let dead: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DEAD "))
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(dead.len(), 3, "{stdout}");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap_or("")).collect();
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("launch_rockets"), "{reasons:?}");
    assert!(reasons[2].contains("no campaign"), "{reasons:?}");
    assert!(dead.iter().all(|d| !d["command"].as_str().unwrap_or("").is_empty()), "the original command is kept");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (1..=3).map(|i| mail.messages(&format!("lead{i:02}")).len()).sum::<usize>() < 3 {
        assert!(std::time::Instant::now() < deadline, "leads enqueued from Python were not mailed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, c) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["stats"]["leads"], 3, "{c}");
}

#[tokio::test]
async fn cli_runs_a_campaign_from_a_csv_file() {
    use coldsend_tests::{Api, FAST_SENDING};
    let mail = Mail::start("ann:annpw lead01:x lead02:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let body = coldsend_tests::account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 10);
    let account = api.active_account(&body).await;
    let env = &stack.env;
    let (ok, _, err) = run("coldsend", &["accounts", "sending", &account, "--warmup", "false"], env);
    assert!(ok, "{err}");
    let (ok, out, _) = run("coldsend", &["accounts", "usage", &account], env);
    assert!(ok && out.contains("\"effective_cap\": 10"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = dir.path().join("campaign.json");
    std::fs::write(
        &campaign,
        serde_json::json!({"name": "cli", "sender_account_ids": [account], "lead_variables": ["city"],
            "steps": [{"subject": "Hi {{ first_name }}", "text": "Hello from {{ city }}"}]})
        .to_string(),
    )
    .expect("write");
    let (ok, out, err) = run("coldsend", &["campaigns", "create", "--file", &campaign.to_string_lossy()], env);
    assert!(ok, "{err}");
    let cid = serde_json::from_str::<Value>(&out).expect("json")["id"].as_str().expect("id").to_owned();

    let csv = dir.path().join("leads.csv");
    std::fs::write(
        &csv,
        "email,first_name,city\nlead01@example.test,Ann,Riga\nnot an email,Bob,Oslo\nlead02@example.test,Cid,Bergen\n",
    )
    .expect("write");
    let (ok, out, err) = run("coldsend", &["leads", "add", &cid, "--csv", &csv.to_string_lossy()], env);
    assert!(ok, "{err}");
    assert!(err.contains("line 3"), "bad rows reported by line: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["added"], 2, "{out}");

    let (ok, _, err) = run("coldsend", &["campaigns", "start", &cid], env);
    assert!(ok, "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while mail.messages("lead01").len() + mail.messages("lead02").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "CLI campaign did not send");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(mail.messages("lead02")[0].contains("Hello from Bergen"));
    // `status --watch` ends by itself once the campaign is complete.
    let (ok, out, err) = run("coldsend", &["campaigns", "status", &cid, "--watch"], env);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run("coldsend", &["campaigns", "status", &cid], env);
    assert!(ok && out.contains("COMPLETED") && out.contains("sent 2"), "{out}");
}

#[test]
fn classify_command_prints_a_line_per_message_and_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("crlf.eml"),
        "From: a@b.example\r\nSubject: Re: hi\r\nIn-Reply-To: <x@y>\r\n\r\nyes\r\n",
    )
    .expect("w");
    std::fs::write(dir.path().join("cr-only.eml"), "From: a@b.example\rSubject: hello\r\rbody\r").expect("w");
    std::fs::write(dir.path().join("truncated.eml"), "Content-Type: multipart/report; report-type=delivery-status; boundary=\"X\"\n\n--X\nContent-Type: message/delivery-").expect("w");
    std::fs::write(
        dir.path().join("charset.eml"),
        b"Subject: =?koi8-r?B?8NLJ18XU?=\nContent-Type: text/plain; charset=x-unknown\n\n\xff\xfe\x80".as_slice(),
    )
    .expect("w");
    std::fs::write(dir.path().join("empty.eml"), "").expect("w");
    let corpus = repo_root().join("crates/core/tests/corpus");
    let (ok, out, err) = run("coldsend", &["classify", &dir.path().to_string_lossy(), &corpus.to_string_lossy()], &[]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let cases = std::fs::read_dir(&corpus)
        .expect("corpus")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .count();
    assert!(cases >= 14);
    assert_eq!(lines.len(), 5 + cases, "{out}");
    let by_file =
        |suffix: &str| lines.iter().find(|l| l["file"].as_str().unwrap_or("").ends_with(suffix)).expect("line").clone();
    assert_eq!(by_file("crlf.eml")["kind"], "reply");
    let bounce = by_file("postfix-unknown-user.eml");
    assert_eq!(bounce["kind"], "bounce");
    assert_eq!(bounce["bounce"]["hard"], true);
    assert_eq!(bounce["bounce"]["reason"], "userunknown");
    assert_eq!(bounce["bounce"]["class"], "address_bad");
    assert_eq!(bounce["bounce"]["status"], "5.1.1");
    assert_eq!(bounce["bounce"]["recipient"], "nosuch@example.test");
    assert_eq!(by_file("ooo-german.eml")["kind"], "auto_reply");
}
