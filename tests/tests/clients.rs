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
