//! OAuth2 accounts against the real thing: Dovecot's oauth2 passdb checking JWT access
//! tokens (SMTP AUTH goes through Postfix to Dovecot too) and a real authorization server
//! (oidc-provider) that issues, refreshes, rotates and revokes them — tests/harness.

use std::time::{Duration, Instant};

use coldsend_core::ValidationCode;
use coldsend_core::account::{Endpoint, Host, Port};
use coldsend_tests::{Api, FAST_SENDING, Mail, Stack};
use coldsend_worker::probe::{Login, ProbeContext, probe_imap, probe_smtp};
use coldsend_worker::trust::TrustStore;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A CUSTOM_SMTP account at the harness that signs in with `refresh_token` (the
/// harness's confidential client; its own token endpoint).
fn oauth_account(mail: &Mail, user: &str, refresh_token: &str) -> Value {
    json!({
        "email_address": format!("{user}@example.test"), "display_name": format!("{user} at Example"),
        "inbox_type": "CUSTOM_SMTP", "daily_limit": 100,
        "smtp_host": "127.0.0.1", "smtp_port": mail.submission_port(), "smtp_use_tls": true,
        "imap_host": "127.0.0.1", "imap_port": mail.imaps_port(), "imap_use_ssl": true,
        "auth": {
            "type": "OAUTH2", "provider": "CUSTOM", "refresh_token": refresh_token,
            "client_id": mail.setting("MH_OAUTH_CLIENT_ID"), "client_secret": mail.setting("MH_OAUTH_CLIENT_SECRET"),
            "token_url": mail.setting("MH_OAUTH_TOKEN_URL"), "scopes": [mail.setting("MH_OAUTH_SCOPE")]
        }
    })
}

/// ann plus `n` leads at the harness (with its settings), and the leads' addresses.
fn mail_with_leads(n: usize, settings: &[(&str, &str)]) -> (Mail, Vec<String>) {
    let leads: Vec<String> = (1..=n).map(|i| format!("lead{i:02}@example.test")).collect();
    let users = std::iter::once("ann:annpw".to_owned())
        .chain((1..=n).map(|i| format!("lead{i:02}:x")))
        .collect::<Vec<_>>()
        .join(" ");
    (Mail::start_with(&users, settings), leads)
}

/// Quick sends `gap` seconds apart and a scan every second.
fn paced(gap: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut env = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SENDING__MIN_GAP_SECS", gap),
        ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
    ]);
    env
}

/// The registration JSON for the consent flow: no refresh token; the harness's client and
/// its endpoints in `auth`.
fn consent_body(mail: &Mail) -> Value {
    json!({
        "email_address": "ann@example.test", "display_name": "Ann", "inbox_type": "CUSTOM_SMTP", "daily_limit": 50,
        "smtp_host": "127.0.0.1", "smtp_port": mail.submission_port(), "smtp_use_tls": true,
        "imap_host": "127.0.0.1", "imap_port": mail.imaps_port(), "imap_use_ssl": true,
        "auth": {"client_id": mail.setting("MH_OAUTH_CLIENT_ID"), "client_secret": mail.setting("MH_OAUTH_CLIENT_SECRET"),
                 "token_url": mail.setting("MH_OAUTH_TOKEN_URL"), "authorize_url": mail.setting("MH_OAUTH_AUTH_URL"),
                 "scopes": [mail.setting("MH_OAUTH_SCOPE")]}
    })
}

async fn campaign(api: &Api, account: &str, leads: &[String]) -> String {
    let body = json!({"name": "oauth", "sender_account_ids": [account], "steps": [{"subject": "Hello", "text": "Hi"}]});
    let (status, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    assert_eq!(status, 201, "{c}");
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<Value> = leads.iter().map(|e| json!({"email": e})).collect();
    let (status, r) = api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    assert!(status.is_success(), "{r}");
    let (status, r) = api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    assert_eq!(status, 200, "{r}");
    cid
}

/// Sending settings: a copy of every send filed in Sent over IMAP, so each send signs in
/// anew (with whatever access token is current).
async fn file_copies_in_sent(api: &Api, id: &str) {
    let sending = json!({"timezone": "UTC", "warmup": false, "append_to_sent": true});
    let (status, s) = api.call(Method::PUT, &format!("/sender-accounts/{id}/sending"), Some(&sending)).await;
    assert_eq!(status, 200, "{s}");
}

#[tokio::test]
async fn an_oauth_account_sends_and_scans_across_refreshes_with_one_refresh_per_expiry_for_two_replicas() {
    const TTL: u64 = 5;
    let ttl = TTL.to_string();
    let (mail, leads) = mail_with_leads(8, &[("MH_OAUTH_ACCESS_TTL", &ttl)]);
    let stack = Stack::start_with(Some(&mail), &paced("2"), 2);
    let api = Api::new(&stack);

    let first_refresh_token = mail.refresh_token("ann@example.test", "annpw");
    let (status, created) = api.create(&oauth_account(&mail, "ann", &first_refresh_token)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["auth"]["type"], "OAUTH2", "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let settled = api.settled(&id).await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    file_copies_in_sent(&api, &id).await;

    let started = Instant::now();
    let cid = campaign(&api, &id, &leads).await;
    wait_for("every lead's email", 90, async || leads.iter().all(|l| mail.messages(&l[..6]).len() == 1)).await;
    // Scans keep running on the same grant for another token lifetime.
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    let elapsed = started.elapsed();

    for lead in &leads {
        assert_eq!(mail.messages(&lead[..6]).len(), 1, "{lead}: exactly one email");
    }
    assert_eq!(mail.folder_messages("ann", "Sent").len(), leads.len(), "a copy of each send filed over IMAP");
    let (_, leads_now) = api.get(&format!("/campaigns/{cid}/leads")).await;
    assert!(leads_now.as_array().expect("leads").iter().all(|l| l["state"] != "FAILED"), "{leads_now}");

    // Tokens were renewed during the run, once per expiry between both replicas (a
    // quarter of the lifetime early), not once per replica or per session.
    let refreshes = mail.tokens_issued("refresh_token");
    let per_expiry = (TTL as f64 * 0.75).max(1.0);
    let most = (elapsed.as_secs_f64() / per_expiry).ceil() as usize + 2;
    eprintln!("{refreshes} refreshes by 2 replicas in {elapsed:?} with {TTL} s access tokens (at most {most} allowed)");
    assert!(refreshes >= 2, "the run outlived the first access tokens: {refreshes} refreshes in {elapsed:?}");
    assert!(refreshes <= most, "{refreshes} refreshes in {elapsed:?}: more than one per expiry ({most})");

    // No sign-in was refused along the way, and the account never lost its grant (a
    // rotated-out refresh token presented again would have revoked it).
    assert_eq!(mail.dovecot_log_count("oauth2 failed"), 0, "Dovecot refused a token");
    let logs = stack.logs();
    assert!(!logs.contains("access token refused"), "a token was refused:\n{}", api.trouble());
    assert_eq!(api.get(&format!("/sender-accounts/{id}")).await.1["status"], "ACTIVE");
    stack.redis.assert_nowhere(&first_refresh_token);
    assert!(!logs.contains(&first_refresh_token), "the refresh token reached a log");
    // The first refresh token was rotated out long ago: the server no longer takes it.
    let reuse = mail.oauth(&["refresh", &first_refresh_token]);
    assert_eq!(reuse["error"], "invalid_grant", "{reuse}");
}

#[tokio::test]
async fn a_revoked_grant_pauses_the_mailbox_without_failing_a_lead_and_a_new_grant_resumes_it() {
    // Like Google: the refresh token is not rotated, so revoking it ends the grant.
    let (mail, leads) = mail_with_leads(6, &[("MH_OAUTH_ACCESS_TTL", "3"), ("MH_OAUTH_ROTATE", "false")]);
    let stack = Stack::start_with(Some(&mail), &paced("3"), 1);
    let api = Api::new(&stack);
    let refresh_token = mail.refresh_token("ann@example.test", "annpw");
    let (status, created) = api.create(&oauth_account(&mail, "ann", &refresh_token)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(api.settled(&id).await["status"], "ACTIVE");
    file_copies_in_sent(&api, &id).await;
    let cid = campaign(&api, &id, &leads).await;
    let delivered = || leads.iter().filter(|l| mail.messages(&l[..6]).len() == 1).count();
    wait_for("the first email", 30, async || delivered() >= 1).await;

    // The user withdraws consent.
    let revoked = mail.oauth(&["revoke", &refresh_token]);
    assert!(revoked.is_object(), "{revoked}");
    wait_for("NEEDS_REAUTH", 30, async || {
        api.get(&format!("/sender-accounts/{id}")).await.1["status"] == "NEEDS_REAUTH"
    })
    .await;
    let (_, account) = api.get(&format!("/sender-accounts/{id}")).await;
    assert_eq!(account["error"]["code"], "AUTH_FAILED", "{account}");
    assert!(account["error"]["message"].as_str().unwrap_or("").contains("invalid_grant"), "{account}");
    // Sends stop (one in flight at the change may finish) and no lead is failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_pause = delivered();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(delivered(), at_pause, "nothing is sent while the account needs a new sign-in");
    assert!(at_pause < leads.len(), "the grant was revoked before the campaign ended");
    let (_, leads_now) = api.get(&format!("/campaigns/{cid}/leads")).await;
    assert!(leads_now.as_array().expect("leads").iter().all(|l| l["state"] != "FAILED"), "{leads_now}");
    let (_, events) = api.get(&format!("/inbox?kind=needs_reauth&account={id}")).await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1), "one event: {events}");

    // Signing in again (a new grant) brings the account back and the campaign goes on.
    let new_token = mail.refresh_token("ann@example.test", "annpw");
    let body = json!({"refresh_token": new_token});
    let (status, r) = api.call(Method::PUT, &format!("/sender-accounts/{id}/oauth"), Some(&body)).await;
    assert_eq!(status, 202, "{r}");
    let settled = api.settled(&id).await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    wait_for("the rest of the campaign", 60, async || delivered() == leads.len()).await;
    for lead in &leads {
        assert_eq!(mail.messages(&lead[..6]).len(), 1, "{lead}: exactly one email");
    }
    stack.redis.assert_nowhere(&new_token);
}

#[tokio::test]
async fn tokens_dovecot_refuses_are_auth_failed_for_smtp_and_imap_and_a_wrong_users_grant_never_validates() {
    let mail = Mail::start("ann:annpw bob:bobpw");
    let ctx = ProbeContext {
        trust: TrustStore::load(&[mail.ca_cert()]).expect("trust"),
        helo: lettre::transport::smtp::extension::ClientId::Domain("oauth.test".into()),
        time_limit: Duration::from_secs(10),
    };
    let ep = |port: u16| Endpoint {
        host: Host::parse("127.0.0.1").expect("host"),
        port: Port::parse(i64::from(port)).expect("port"),
        tls: true,
        username: "ann@example.test".into(),
    };
    let (smtp, imap) = (ep(mail.submission_port()), ep(mail.imaps_port()));
    let bearer = |t: &str| Login::Bearer(SecretString::from(t.to_owned()));

    // A real access token for ann: both servers take it over XOAUTH2.
    let good = mail.oauth(&["login", "ann@example.test", "annpw"]);
    let token = good["access_token"].as_str().expect("access token");
    probe_smtp(&ctx, &smtp, &bearer(token)).await.expect("SMTP XOAUTH2");
    probe_imap(&ctx, &imap, &bearer(token)).await.expect("IMAP XOAUTH2");

    // Expired (signed with the real key), forged (another key), and bob's token for ann.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = |exp: u64| {
        json!({"email": "ann@example.test", "sub": "ann@example.test", "exp": exp, "iat": exp - 60,
               "iss": mail.setting("MH_OAUTH_ISSUER"), "scope": mail.setting("MH_OAUTH_SCOPE")})
        .to_string()
    };
    let expired = mint(&mail, &mail.setting("MH_OAUTH_SIGNING_KEY"), &claims(now - 120));
    let other_key = std::env::temp_dir().join(format!("coldsend-forger-{}.pem", std::process::id()));
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&other_key)
        .status()
        .expect("openssl");
    assert!(made.success());
    let forged = mint(&mail, other_key.to_str().expect("path"), &claims(now + 600));
    let _ = std::fs::remove_file(&other_key);
    let bobs = mail.oauth(&["login", "bob@example.test", "bobpw"]);
    let bobs = bobs["access_token"].as_str().expect("bob's token").to_owned();
    for (what, t) in [("expired", expired.as_str()), ("forged", forged.as_str()), ("bob's", bobs.as_str())] {
        let s = probe_smtp(&ctx, &smtp, &bearer(t)).await.expect_err(what);
        assert_eq!(s.code, ValidationCode::AuthFailed, "{what} over SMTP: {s:?}");
        assert!(s.message.contains("access token was refused"), "{what}: {}", s.message);
        let i = probe_imap(&ctx, &imap, &bearer(t)).await.expect_err(what);
        assert_eq!(i.code, ValidationCode::AuthFailed, "{what} over IMAP: {i:?}");
    }
    assert!(mail.dovecot_log_count("Token has expired") >= 1, "Dovecot saw the expired token");

    // End to end: an account for ann holding bob's grant fails validation with AUTH_FAILED
    // (a fresh token is tried once more, and refused again), never ACTIVE.
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let bob_refresh = mail.refresh_token("bob@example.test", "bobpw");
    let (status, created) = api.create(&oauth_account(&mail, "ann", &bob_refresh)).await;
    assert_eq!(status, 201, "{created}");
    let settled = api.settled(created["id"].as_str().expect("id")).await;
    assert_eq!(settled["status"], "VALIDATION_FAILED", "{settled}");
    assert_eq!(settled["error"]["code"], "AUTH_FAILED", "{settled}");
    // A refresh token the server never issued: the grant is refused, the account waits for a sign-in.
    let (_, bogus) = api.create(&oauth_account(&mail, "bob", "not-a-refresh-token")).await;
    let settled = api.settled(bogus["id"].as_str().expect("id")).await;
    assert_eq!(settled["status"], "NEEDS_REAUTH", "{settled}");
}

/// Signs `claims` (JSON) with the PEM key at `key`, as the harness's authorization server
/// would (ES256, typ JWT, its kid).
fn mint(mail: &Mail, key: &str, claims: &str) -> String {
    let out = std::process::Command::new("node")
        .arg(coldsend_tests::repo_root().join("tests/harness/oauth-as/mint-jwt.mjs"))
        .args([key, &mail.setting("MH_OAUTH_KID"), claims])
        .output()
        .expect("node mint-jwt.mjs");
    assert!(out.status.success(), "mint-jwt: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The consent flow through the API: start answers the provider's URL; the user signs in
/// and consents there (scripted here against the real authorization server's pages); the
/// provider sends the browser to coldsend's callback, which creates the account; running
/// it again for the same address renews that account's grant instead of a duplicate.
#[tokio::test]
async fn the_consent_flow_creates_the_account_and_a_second_sign_in_renews_its_grant() {
    let mail = Mail::start("ann:annpw");
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let body = consent_body(&mail);
    // Mistakes show before anyone visits the provider.
    let mut bad = body.clone();
    bad["daily_limit"] = json!(0);
    let (status, e) = api.call(Method::POST, "/sender-accounts/oauth/custom/start", Some(&bad)).await;
    assert_eq!(status, 422, "{e}");
    let (status, e) = api.call(Method::POST, "/sender-accounts/oauth/yahoo/start", Some(&body)).await;
    assert_eq!(status, 422, "{e}");

    let mut ids = Vec::new();
    for round in 0..2 {
        let (status, started) = api.call(Method::POST, "/sender-accounts/oauth/custom/start", Some(&body)).await;
        assert_eq!(status, 200, "{started}");
        let callback = consent(&mail, started["authorization_url"].as_str().expect("url"), "annpw").await;
        assert!(callback.starts_with(&format!("{}/oauth/callback?", stack.base_url)), "{callback}");
        let page = reqwest::get(&callback).await.expect("callback");
        assert_eq!(page.status(), 200, "round {round}: {}", page.text().await.unwrap_or_default());
        // The state is good for one callback: a replay is refused and changes nothing.
        let replay = reqwest::get(&callback).await.expect("replay");
        assert_eq!(replay.status(), 400);
        let (_, list) = api.get("/sender-accounts").await;
        let accounts = list.as_array().expect("list");
        assert_eq!(accounts.len(), 1, "round {round}: one account for the address: {list}");
        let id = accounts[0]["id"].as_str().expect("id").to_owned();
        let settled = api.settled(&id).await;
        assert_eq!(settled["status"], "ACTIVE", "round {round}: {settled}");
        assert_eq!(settled["auth"]["provider"], "CUSTOM");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "the second sign-in renewed the same account");

    // A denied consent: the callback says so, nothing is created.
    let (_, started) = api.call(Method::POST, "/sender-accounts/oauth/custom/start", Some(&body)).await;
    let denied = reqwest::get(format!(
        "{}/oauth/callback?state={}&error=access_denied",
        stack.base_url,
        started["state"].as_str().expect("state")
    ))
    .await
    .expect("callback");
    assert_eq!(denied.status(), 400);
    let text = denied.text().await.unwrap_or_default();
    assert!(text.contains("access_denied"), "{text}");
}

/// Drives the authorization server's sign-in pages like a browser (cookies, no automatic
/// redirects) and returns the URL it finally redirects to (the app's callback).
async fn consent(mail: &Mail, authorization_url: &str, password: &str) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client");
    let issuer = mail.setting("MH_OAUTH_ISSUER");
    let absolute = |loc: &str| if loc.starts_with("http") { loc.to_owned() } else { format!("{issuer}{loc}") };
    let location = |r: &reqwest::Response| {
        r.headers().get("location").and_then(|v| v.to_str().ok()).map(absolute).expect("a redirect")
    };
    let first = browser.get(authorization_url).send().await.expect("authorize");
    let interaction = location(&first);
    let uid = interaction.rsplit('/').next().expect("uid").to_owned();
    browser.get(&interaction).send().await.expect("login page");
    let email = "ann@example.test";
    let mut next = browser
        .post(format!("{issuer}/interaction/{uid}/login"))
        .form(&[("login", email), ("password", password)])
        .send()
        .await
        .expect("login");
    for _ in 0..10 {
        let to = location(&next);
        if !to.starts_with(&issuer) {
            return to;
        }
        next = browser.get(&to).send().await.expect("redirect");
    }
    panic!("the authorization server never redirected back");
}

/// The CLI's loopback sign-in: `coldsend accounts connect` prints the URL, takes the
/// provider's redirect on its own 127.0.0.1 port, and registers the account.
#[tokio::test]
async fn the_cli_connects_a_mailbox_through_a_loopback_redirect() {
    use std::io::BufRead;
    let mail = Mail::start("ann:annpw");
    let stack = Stack::start(Some(&mail));
    let api = Api::new(&stack);
    let body = consent_body(&mail);
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), body.to_string()).expect("write");
    let mut cli = std::process::Command::new(coldsend_tests::bin("coldsend"))
        .args(["accounts", "connect", "custom", "--wait", "--timeout", "60", "--file"])
        .arg(file.path())
        .envs(stack.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("coldsend accounts connect");
    let mut out = std::io::BufReader::new(cli.stdout.take().expect("stdout"));
    let mut url = String::new();
    out.read_line(&mut url).expect("the sign-in URL");
    let callback = consent(&mail, url.trim(), "annpw").await;
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let page =
        reqwest::Client::builder().no_proxy().build().expect("client").get(&callback).send().await.expect("callback");
    assert_eq!(page.status(), 200);
    let status = tokio::task::spawn_blocking(move || cli.wait_with_output()).await.expect("join").expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("output");
    assert!(status.status.success(), "{rest}\n{}", String::from_utf8_lossy(&status.stderr));
    let printed: Value = serde_json::from_str(&rest).expect("the account as JSON");
    assert_eq!(printed["status"], "ACTIVE", "{printed}");
    assert_eq!(api.get("/sender-accounts").await.1.as_array().map(Vec::len), Some(1));
}
