//! The dashboard in a real browser (Debian's Chromium over WebDriver, headless) against the
//! real stack: Redis, Postfix + Dovecot, the API and a worker. It signs in, adds a mailbox
//! and sees it turn ACTIVE, creates a campaign, uploads leads from a CSV, previews, starts
//! it and sees the progress move, sees a reply land in the inbox with its reason and the
//! lead marked REPLIED, pauses the mailbox, and proves that no page answers without a
//! session and no change happens without the CSRF token. Screenshots of every page go to
//! `docs/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coldsend_tests::{API_KEY, FAST_SENDING, Mail, Stack, free_port, repo_root};
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/install-deps.sh test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    async fn browser(&self) -> Client {
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update"]
            }
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!("an object literal") };
        // chromedriver listens on loopback: plain HTTP, no TLS stack needed.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session in Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ui {
    b: Client,
    base: String,
    shots: PathBuf,
}

impl Ui {
    async fn go(&self, path: &str) {
        self.b.goto(&format!("{}/dashboard{path}", self.base)).await.expect("goto");
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        match self.b.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(selector)).await {
            Ok(el) => el,
            Err(e) => {
                let path = self.path().await;
                let text = match self.b.find(Locator::Css("main")).await {
                    Ok(main) => main.text().await.unwrap_or_default(),
                    Err(_) => self.b.source().await.unwrap_or_default(),
                };
                panic!("no element {selector} at {path} ({e}); the page says:\n{}", &text[..text.len().min(3000)])
            }
        }
    }

    async fn fill(&self, selector: &str, text: &str) {
        let el = self.css(selector).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Clicks `selector` (a checkbox, say) on this page.
    async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.expect("click");
    }

    /// Clicks `selector` and waits for the new page it leads to (a form's answer or redirect).
    async fn submit(&self, selector: &str) {
        let el = self.css(selector).await;
        self.b.execute("window.__before_submit = true;", vec![]).await.expect("mark page");
        el.click().await.expect("click");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fresh = self
                .b
                .execute("return window.__before_submit !== true && document.readyState === 'complete';", vec![])
                .await;
            if fresh.ok() == Some(serde_json::Value::Bool(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {selector} never led to a new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.expect("text")
    }

    async fn path(&self) -> String {
        self.b.current_url().await.expect("url").path().to_owned()
    }

    /// Waits for the browser to arrive at a path starting with `prefix` (a form's redirect).
    async fn arrive(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) {
                return path;
            }
            if Instant::now() > deadline {
                let source = self.b.source().await.unwrap_or_default();
                panic!("never arrived at {prefix}; at {path}: {}", &source[..source.len().min(3000)]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reloads `path` until `selector`'s text contains `needle` (the page's own live
    /// refresh would do too; a reload also proves the server side).
    async fn wait_text(&self, path: &str, selector: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.go(path).await;
            let text = self.text(selector).await;
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{path} {selector} never showed '{needle}'; last: {text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.b.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// Requests made without a browser: no session, or a session without its CSRF token.
async fn refused_without_a_session(base: &str) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for path in ["/mailboxes", "/campaigns", "/inbox", "/queues", "/suppression", "/mailboxes/new"] {
        let r = http.get(format!("{base}/dashboard{path}")).send().await.expect("get");
        assert_eq!(r.status(), 303, "{path} without a session");
        assert_eq!(r.headers()["location"], "/dashboard/signin", "{path}");
        let body = r.text().await.unwrap_or_default();
        assert!(!body.contains("example.test"), "{path} leaked data: {body}");
        // A live fragment without a session: refused, not redirected.
        let r = http.get(format!("{base}/dashboard{path}")).header("x-fragment", "1").send().await.expect("get");
        assert_eq!(r.status(), 401, "{path} fragment without a session");
    }
    let r = http.post(format!("{base}/dashboard/suppression")).form(&[("entries", "x@example.test")]).send().await;
    assert_eq!(r.expect("post").status(), 401, "a change without a session");
    // A forged cookie is no session either.
    let r = http
        .get(format!("{base}/dashboard/mailboxes"))
        .header("cookie", format!("coldsend_session={}", "ab".repeat(32)))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);
    // A wrong key does not sign in.
    let r = http.post(format!("{base}/dashboard/signin")).form(&[("key", "cs_wrong")]).send().await.expect("post");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
}

/// A second `coldsend serve` on the same Redis, as a reverse proxy would see it under
/// `/cs` over TLS: every link, redirect and the cookie carry the prefix; the cookie is Secure.
async fn behind_a_proxy_under_a_path(stack: &Stack, mail: &Mail) {
    let port = free_port();
    let mut env = coldsend_tests::coldsend_env(&stack.redis, Some(mail), port);
    env.push(("COLDSEND_DASHBOARD__PATH_PREFIX".into(), "/cs".into()));
    let _api = coldsend_tests::Proc::spawn("coldsend", &["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the second API never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let page = http.get(format!("{base}/dashboard/signin")).send().await.expect("get").text().await.expect("body");
    assert!(
        page.contains(r#"action="/cs/dashboard/signin""#) && page.contains(r#"href="/cs/dashboard/assets/app.css""#),
        "{page}"
    );
    let r = http
        .post(format!("{base}/dashboard/signin"))
        .header("x-forwarded-proto", "https")
        .form(&[("key", API_KEY)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/cs/dashboard/mailboxes");
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        cookie.contains("Path=/cs/dashboard") && cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = http.get(format!("{base}/dashboard/queues")).header("cookie", &session).send().await.expect("get");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains(r#"href="/cs/dashboard/mailboxes""#) && !page.contains(r#"href="/dashboard/"#), "{page}");
}

#[tokio::test]
async fn an_operator_runs_a_campaign_from_the_dashboard() {
    let mail = Mail::start("ann:annpw lead01:x lead02:x lead03:x tester:x");
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend([
        ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
        ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
        // Only so the Google button has a client to send the browser off with.
        ("COLDSEND_OAUTH__GOOGLE__CLIENT_ID", "coldsend-test.apps.example"),
    ]);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    refused_without_a_session(&stack.base_url).await;
    behind_a_proxy_under_a_path(&stack, &mail).await;

    let driver = Driver::start();
    let shots = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let ui = Ui { b: driver.browser().await, base: stack.base_url.clone(), shots };

    // Sign in.
    ui.go("/mailboxes").await;
    assert_eq!(ui.path().await, "/dashboard/signin", "a page without a session sends the browser to sign in");
    ui.shot("signin").await;
    ui.fill("#key", "cs_wrong").await;
    ui.submit("button[type=submit]").await;
    assert!(ui.text("[role=alert]").await.contains("not accepted"));
    ui.fill("#key", API_KEY).await;
    ui.submit("button[type=submit]").await;
    ui.arrive("/dashboard/mailboxes").await;
    let cookie = ui.b.get_named_cookie("coldsend_session").await.expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

    // Add a mailbox; a mistake first: the form comes back with the error and the values typed.
    ui.go("/mailboxes/new").await;
    let fields = [
        ("#email_address", "ann@example.test".to_owned()),
        ("#display_name", "Ann at Example".to_owned()),
        ("#daily_limit", "0".to_owned()),
        ("#smtp_host", "127.0.0.1".to_owned()),
        ("#smtp_port", mail.submission_port().to_string()),
        ("#smtp_username", "ann@example.test".to_owned()),
        ("#smtp_password", "annpw".to_owned()),
        ("#imap_host", "127.0.0.1".to_owned()),
        ("#imap_port", mail.imaps_port().to_string()),
        ("#imap_username", "ann@example.test".to_owned()),
        ("#imap_password", "annpw".to_owned()),
    ];
    for (sel, value) in &fields {
        ui.fill(sel, value).await;
    }
    ui.submit("form.card button[type=submit]").await;
    assert!(ui.text("#form-error").await.contains("daily_limit"), "the error names the field");
    assert_eq!(ui.css("#smtp_host").await.prop("value").await.expect("value").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        ui.css("#smtp_password").await.prop("value").await.expect("value").as_deref(),
        Some(""),
        "passwords never come back"
    );
    ui.fill("#daily_limit", "20").await;
    ui.fill("#smtp_password", "annpw").await;
    ui.fill("#imap_password", "annpw").await;
    ui.submit("form.card button[type=submit]").await;
    let mailbox_path = ui.path().await;
    assert!(mailbox_path.starts_with("/dashboard/mailboxes/"), "{mailbox_path}");
    let account_id = mailbox_path.rsplit('/').next().expect("id").to_owned();
    let mailbox_page = mailbox_path.trim_start_matches("/dashboard").to_owned();
    ui.wait_text(&mailbox_page, "#status", "ACTIVE", 60).await;
    assert!(!ui.b.source().await.expect("source").contains("annpw"), "no password is ever rendered");

    // Edit: a lower daily limit is today's cap at once (no re-validation for it).
    ui.fill("#daily_limit", "15").await;
    ui.submit(&format!("form[action$='/mailboxes/{account_id}'] button")).await;
    assert!(ui.text("[role=status]").await.contains("Saved."));
    assert!(ui.text("#status").await.contains("/ 15"), "{}", ui.text("#status").await);
    assert!(ui.text("#status").await.contains("ACTIVE"));

    // The Google button sends the browser to Google's consent page (followed here only as
    // far as the redirect: nothing leaves the machine).
    let csrf = ui.css("input[name=csrf]").await.prop("value").await.expect("csrf").expect("csrf value");
    let session = ui.b.get_named_cookie("coldsend_session").await.expect("cookie").value().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = http
        .post(format!("{}/dashboard/mailboxes/connect/google", stack.base_url))
        .header("cookie", format!("coldsend_session={session}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email_address", "bob@example.test"),
            ("display_name", "Bob"),
            ("daily_limit", "30"),
        ])
        .send()
        .await
        .expect("connect");
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let location = r.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with("https://accounts.google.com/"), "{location}");
    assert!(
        location.contains("client_id=coldsend-test.apps.example") && location.contains("login_hint=bob%40example.test"),
        "{location}"
    );

    // A campaign, its leads from a CSV (one bad row), a preview, then start.
    ui.go("/campaigns/new").await;
    ui.fill("#name", "Dashboard launch").await;
    ui.click(&format!("#m-{account_id}")).await;
    ui.fill("#subject0", "Hello {{ first_name }}").await;
    ui.fill("#text0", "Hi {{ first_name }}, a quick question.").await;
    ui.fill("#text1", "Following up, {{ first_name }}.").await;
    ui.fill("#delay1", "1h").await;
    ui.fill("#timezone", "").await;
    ui.submit("form.card > button[type=submit]").await;
    assert!(ui.text("[role=status]").await.contains("DRAFT"));
    let campaign_page = ui.path().await.trim_start_matches("/dashboard").to_owned();
    let csv = tempfile::NamedTempFile::with_suffix(".csv").expect("csv");
    std::fs::write(
        csv.path(),
        "email,first_name\nlead01@example.test,Lea\nlead02@example.test,Leo\nnot-an-address,Nobody\nlead03@example.test,Lou\n",
    )
    .expect("write csv");
    ui.css("#csv").await.send_keys(&csv.path().display().to_string()).await.expect("choose file");
    ui.submit("form[enctype='multipart/form-data'] button[type=submit]").await;
    let report = ui.text("#report").await;
    assert!(report.contains("3 added") && report.contains("1 invalid"), "{report}");
    assert!(ui.text("#result").await.contains("not-an-address"), "the bad row is named");

    ui.css("#preview-lead").await.select_by_label("lead01@example.test").await.expect("select lead");
    ui.submit("form[action$='/preview'] button").await;
    let preview = ui.text("article.preview").await;
    assert!(preview.contains("Hello Lea") && preview.contains("Hi Lea, a quick question."), "{preview}");
    assert!(mail.messages("lead01").is_empty(), "a preview sends nothing");

    // A test send of both steps to a tester, from the campaign's mailbox.
    ui.fill("#test-to", "tester@example.test").await;
    ui.submit("form[action$='/test-send'] button").await;
    let result = ui.text("#result").await;
    assert!(result.contains("Step 1: sent") && result.contains("Step 2: sent"), "{result}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while mail.messages("tester").len() < 2 {
        assert!(Instant::now() < deadline, "the tester never got both test emails");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mail.messages("lead01").is_empty(), "a test send never reaches a lead");

    ui.submit("form[action$='/act/start'] button").await;
    assert!(ui.text("[role=status]").await.contains("RUNNING"));
    ui.wait_text(&campaign_page, "#summary", "3 sent", 60).await;
    ui.shot("campaign").await;
    for lead in ["lead01", "lead02", "lead03"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while mail.messages(lead).len() != 1 {
            assert!(Instant::now() < deadline, "{lead} never got its email");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // lead01 answers: the inbox shows it as a reply with the reason, the lead is REPLIED.
    let first = mail.messages("lead01")[0]
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: ").or_else(|| l.strip_prefix("Message-Id: ")).map(str::to_owned))
        .expect("Message-ID");
    let reply = format!(
        "From: lead01@example.test\r\nTo: ann@example.test\r\nSubject: Re: Hello Lea\r\nMessage-ID: <dash-reply@example.test>\r\nIn-Reply-To: {}\r\n\r\nYes, tell me more.\r\n",
        first.trim()
    );
    // The inbox is open when the reply arrives: it shows up without a reload.
    ui.go("/inbox").await;
    assert!(!ui.text("#inbox").await.contains("lead01@example.test"));
    mail.doveadm(&["save", "-u", "ann@example.test"], Some(reply.as_bytes()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        let text = ui.text("#inbox").await;
        if text.contains("lead01@example.test") {
            break text;
        }
        assert!(Instant::now() < deadline, "the reply never appeared on the open inbox page: {text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        ui.css("[data-live]").await.attr("data-refreshed").await.expect("attr").is_some(),
        "refreshed by the page's script"
    );
    assert!(row.contains("reply") && row.contains("In-Reply-To"), "kind and reason shown: {row}");
    ui.shot("inbox").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        ui.go(&campaign_page).await;
        let s = ui.css("tr[data-lead='lead01@example.test']").await.attr("data-state").await.expect("attr");
        if s.as_deref() == Some("REPLIED") {
            break;
        }
        assert!(Instant::now() < deadline, "lead01 never REPLIED on the page: {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The funnel: step 1 sent 3 and got the reply; lead01 no longer waits for step 2.
    let step1 = ui.css("#funnel tr[data-step='1']").await;
    assert_eq!(step1.attr("data-replied").await.expect("attr").as_deref(), Some("1"));
    let step2 = ui.css("#funnel tr[data-step='2']").await;
    assert_eq!(step2.attr("data-waiting").await.expect("attr").as_deref(), Some("2"), "lead02 and lead03 wait");

    // Pause, edit the follow-up, preview it, resume.
    ui.submit("form[action$='/act/pause'] button").await;
    assert!(ui.text("[role=status]").await.contains("PAUSED"));
    ui.submit("a[href$='/edit']").await;
    ui.fill("#text1", "Edited follow-up, {{ first_name }}.").await;
    ui.submit("form.card > button[type=submit]").await;
    assert!(ui.text("[role=status]").await.contains("Saved."));
    ui.css("#preview-lead").await.select_by_label("lead02@example.test").await.expect("select lead");
    ui.submit("form[action$='/preview'] button").await;
    let step2 = ui.text("article.preview[data-step='1']").await;
    assert!(step2.contains("Edited follow-up, Leo."), "{step2}");
    ui.submit("form[action$='/act/resume'] button").await;
    assert!(ui.text("[role=status]").await.contains("RUNNING"));

    // The other pages render with what happened.
    ui.go("/campaigns").await;
    assert!(ui.text("#campaigns").await.contains("Dashboard launch"));
    ui.shot("campaigns").await;
    ui.go("/queues").await;
    assert!(ui.text("#workers").await.contains("alive"), "the worker is listed alive");
    ui.shot("queues").await;

    // A change without the CSRF token is refused (the browser's own session cookie rides along).
    let pause_url = format!("{}/dashboard/mailboxes/{account_id}/pause", stack.base_url);
    let status =
        ui.b.execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', body: new URLSearchParams({hours: '1'}), credentials: 'same-origin'})
               .then(r => done(r.status)).catch(e => done(String(e)));",
            vec![serde_json::json!(pause_url)],
        )
        .await
        .expect("fetch");
    assert_eq!(status, serde_json::json!(403), "no CSRF token, no change");
    ui.go(&mailbox_page).await;
    assert!(ui.text("#status").await.contains("ACTIVE"), "still sending after the refused request");

    // Pause the mailbox from its page.
    ui.fill("#hours", "2").await;
    ui.submit("form[action$='/pause'] button").await;
    assert!(ui.text("[role=status]").await.contains("paused for 2 h"));
    assert!(ui.text("#status").await.contains("PAUSED"));
    ui.go("/mailboxes").await;
    let row = ui.css(&format!("tr[data-account='{account_id}']")).await;
    assert_eq!(row.attr("data-health").await.expect("attr").as_deref(), Some("sending_paused"));
    ui.shot("mailboxes").await;
    ui.go(&mailbox_page).await;
    ui.shot("mailbox").await;

    // Suppression: add, find, remove.
    ui.go("/suppression").await;
    ui.fill("#entries", "blocked@example.test\n@spam.example").await;
    ui.submit("#add-entries button").await;
    assert!(ui.text("[role=status]").await.contains("2 added"));
    assert!(ui.text("#suppression").await.contains("blocked@example.test"));
    ui.shot("suppression").await;

    // On a phone-sized screen the pages still work.
    ui.b.set_window_size(390, 844).await.expect("resize");
    ui.go("/inbox").await;
    assert!(ui.text("#inbox").await.contains("lead01@example.test"));
    ui.shot("inbox-phone").await;
    ui.b.set_window_size(1280, 900).await.expect("resize");

    // Sign out: the session is gone for this browser and for its cookie anywhere.
    ui.submit("header form button").await;
    assert_eq!(ui.path().await, "/dashboard/signin");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = http
        .get(format!("{}/dashboard/inbox", stack.base_url))
        .header("cookie", format!("coldsend_session={}", cookie.value()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303, "the old cookie no longer opens anything");
    ui.b.clone().close().await.expect("close");
    // The mailbox kept its three emails; nothing was sent twice.
    for lead in ["lead01", "lead02", "lead03"] {
        assert_eq!(mail.messages(lead).len(), 1, "{lead}");
    }
}
