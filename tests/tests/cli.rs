//! The command line as an operator meets it: `--version`, help that describes every
//! subcommand, shell completions, edits and exports, and read-only commands that work
//! with only the Redis URL (no encryption key) while writes without it say what is missing.

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json, run};
use reqwest::Method;
use serde_json::{Value, json};

#[test]
fn version_help_and_completions() {
    for bin in ["coldsend", "coldsend-worker"] {
        let (ok, out, _) = run(bin, &["--version"], &[]);
        assert!(ok && out.starts_with(&format!("{bin} ")), "{out}");
    }
    let (ok, help, _) = run("coldsend", &["--help"], &[]);
    assert!(ok, "{help}");
    // Every subcommand is listed with a description.
    let commands: Vec<&str> =
        help.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1).take_while(|l| l.starts_with("  ")).collect();
    assert!(commands.len() >= 10, "{help}");
    for line in &commands {
        assert!(line.split_whitespace().count() >= 2, "no description: {line:?}");
    }
    for sub in ["campaigns", "webhooks", "leads", "accounts", "suppression", "keys"].map(|s| [s, "--help"]) {
        let (ok, out, _) = run("coldsend", &sub, &[]);
        assert!(ok, "{out}");
        let listed: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        let undocumented: Vec<&&str> = listed.iter().filter(|l| l.split_whitespace().count() < 2).collect();
        assert!(undocumented.is_empty(), "{sub:?}: {undocumented:?}");
    }
    let (ok, bash, _) = run("coldsend", &["completions", "bash"], &[]);
    assert!(ok && bash.contains("test-send") && bash.contains("webhooks"), "bash completion");
    let (ok, zsh, _) = run("coldsend", &["completions", "zsh"], &[]);
    assert!(ok && zsh.contains("#compdef coldsend"), "zsh completion");
}

#[tokio::test]
async fn edits_and_exports_from_the_cli_and_reading_without_the_key() {
    let mail = Mail::start("ann:annpw lead01:x");
    let stack = Stack::start_with(Some(&mail), &FAST_SENDING, 1);
    let api = Api::new(&stack);
    let ann =
        api.active_account(&account_json("ann", "annpw", mail.submission_port(), true, mail.imaps_port(), 50)).await;
    let env = &stack.env;

    let (ok, out, err) =
        run("coldsend", &["accounts", "edit", &ann, "--daily-limit", "9", "--display-name", "Ann B"], env);
    assert!(ok, "{out}{err}");
    let edited: Value = serde_json::from_str(&out).expect("json");
    assert_eq!((edited["daily_limit"].as_u64(), edited["display_name"].as_str()), (Some(9), Some("Ann B")));

    let body = json!({"name": "cli", "sender_account_ids": [ann], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test", "first_name": "Lee"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while mail.messages("lead01").is_empty() {
        assert!(std::time::Instant::now() < deadline, "sent\n{}", api.trouble());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Read-only commands with only the Redis URL.
    let keyless: Vec<(String, String)> = env.iter().filter(|(k, _)| k != "COLDSEND_ENCRYPTION_KEY").cloned().collect();
    for args in [
        vec!["campaigns", "list"],
        vec!["campaigns", "status", &cid],
        vec!["leads", "list", &cid],
        vec!["accounts", "list"],
        vec!["accounts", "show", &ann],
        vec!["inbox"],
        vec!["suppression", "list"],
        vec!["webhooks", "list"],
    ] {
        let (ok, out, err) = run("coldsend", &args, &keyless);
        assert!(ok, "{args:?} without the key: {out}{err}");
    }
    let (ok, csv, err) = run("coldsend", &["leads", "export", &cid], &keyless);
    assert!(ok, "{err}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,email,first_name,last_name,company,state,error,sender_account_id,steps_sent"));
    let row = lines.next().expect("a lead");
    assert!(row.contains("lead01@example.test,Lee,") && row.ends_with(&format!("{ann},1")), "{row}");
    let (ok, inbox_csv, _) = run("coldsend", &["inbox", "--csv"], &keyless);
    assert!(ok && inbox_csv.starts_with("id,received_at,kind,"), "{inbox_csv}");
    // A write without the key says what is missing.
    let (ok, out, err) = run("coldsend", &["accounts", "edit", &ann, "--daily-limit", "8"], &keyless);
    assert!(!ok && err.contains("COLDSEND_ENCRYPTION_KEY"), "{out}{err}");

    // The API's exports match.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/public/v1/campaigns/{cid}/leads/export", stack.base_url))
        .header("X-API-Key", coldsend_tests::API_KEY)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/csv"));
    assert_eq!(resp.text().await.expect("body"), csv);
    let (_, view) = api.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(view["stats"]["per_step"][0]["sent"], 1, "{view}");
}
