//! IMAP scanning end to end: real bounces from Postfix, replies and out-of-office
//! messages sent over SMTP by local users, read back from Dovecot by the scanner.

use std::time::{Duration, Instant};

use coldsend_tests::{Api, FAST_SENDING, Mail, Stack, account_json};
use lettre::{Message, SmtpTransport, Transport};
use reqwest::Method;
use serde_json::{Value, json};

const SCAN_FAST: [(&str, &str); 3] = [
    ("COLDSEND_SCAN__INTERVAL_SECS", "1"),
    ("COLDSEND_SCAN__MIN_INTERVAL_SECS", "1"),
    ("COLDSEND_SCAN__UNCERTAIN_GRACE_SECS", "3"),
];

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn setup(users: &str) -> (Mail, Stack) {
    let mail = Mail::start(users);
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(SCAN_FAST);
    let stack = Stack::start_with(Some(&mail), &env, 1);
    (mail, stack)
}

async fn active(api: &Api, mail: &Mail, user: &str) -> String {
    api.active_account(&account_json(user, &format!("{user}pw"), mail.submission_port(), true, mail.imaps_port(), 100))
        .await
}

async fn campaign(api: &Api, account: &str, leads: &[&str], follow_up_delay: &str) -> String {
    let body = json!({"name": "scan", "sender_account_ids": [account], "steps": [
        {"subject": "Quick question", "text": "Hello"},
        {"text": "Following up", "delay": follow_up_delay}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<Value> = leads.iter().map(|e| json!({"email": e})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;
    cid
}

async fn lead_state(api: &Api, cid: &str, email: &str) -> Value {
    let (_, leads) = api.get(&format!("/campaigns/{cid}/leads")).await;
    leads.as_array().and_then(|l| l.iter().find(|x| x["email"] == email).cloned()).unwrap_or(Value::Null)
}

fn header(msg: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    msg.lines().find(|l| l.to_ascii_lowercase().starts_with(&prefix)).map(|l| l[prefix.len()..].trim().to_owned())
}

/// Mail from a local user to ann, through Postfix (no AUTH on the 25-style port).
fn send_to_ann(mail: &Mail, message: Message) {
    let smtp = SmtpTransport::builder_dangerous("127.0.0.1").port(mail.smtp_port()).build();
    smtp.send(&message).expect("send to ann");
}

#[tokio::test]
async fn a_real_bounce_marks_the_lead_bounced_and_suppressed() {
    let (mail, stack) = setup("ann:annpw").await;
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    let cid = campaign(&api, &ann, &["nosuch@example.test"], "1h").await;
    wait_for("the bounce", 60, async || lead_state(&api, &cid, "nosuch@example.test").await["state"] == "BOUNCED")
        .await;
    let lead = lead_state(&api, &cid, "nosuch@example.test").await;
    assert!(lead["error"].as_str().unwrap_or("").contains("5.1.1"), "{lead}");
    let (_, page) = api.get(&format!("/inbox?kind=bounce&account={ann}")).await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["events"][0]["campaign_id"], cid.as_str());
    // Suppressed everywhere: a later campaign never mails it.
    let later = campaign(&api, &ann, &["nosuch@example.test"], "1h").await;
    assert_eq!(lead_state(&api, &later, "nosuch@example.test").await["state"], "SUPPRESSED");
}

#[tokio::test]
async fn replies_stop_sequences_and_out_of_office_pauses() {
    let (mail, stack) = setup("ann:annpw lead01:x lead02:x lead03:x lead04:x").await;
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    let leads = ["lead01@example.test", "lead02@example.test", "lead03@example.test", "lead04@example.test"];
    let cid = campaign(&api, &ann, &leads, "8s").await;
    wait_for("first steps", 30, async || (1..=4).all(|i| mail.messages(&format!("lead0{i}")).len() == 1)).await;
    let first_id = |i: u32| header(&mail.messages(&format!("lead0{i}"))[0], "Message-ID").expect("Message-ID");
    let ann_addr = "ann@example.test".parse().expect("addr");
    let from = |i: u32| format!("lead0{i}@example.test").parse().expect("addr");
    // lead01: In-Reply-To. lead02: References only. lead03: neither, "Re:" subject.
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(1))
            .to(ann_addr)
            .subject("Re: Quick question")
            .in_reply_to(first_id(1))
            .body("Yes, call me".to_owned())
            .expect("msg"),
    );
    let ann_addr = "ann@example.test".parse().expect("addr");
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(2))
            .to(ann_addr)
            .subject("Re: Quick question")
            .references(first_id(2))
            .body("Tell me more".to_owned())
            .expect("msg"),
    );
    let ann_addr = "ann@example.test".parse().expect("addr");
    send_to_ann(
        &mail,
        Message::builder()
            .from(from(3))
            .to(ann_addr)
            .subject("Re: Quick question")
            .body("Interested".to_owned())
            .expect("msg"),
    );
    // lead04: an out-of-office in German, back today: paused, then resumed.
    let today = chrono::Utc::now().format("%d.%m.%Y").to_string();
    let ann_addr = "ann@example.test".parse().expect("addr");
    let ooo = Message::builder()
        .from(from(4))
        .to(ann_addr)
        .subject("Abwesenheitsnotiz: Quick question")
        .in_reply_to(first_id(4))
        .raw_header(lettre::message::header::HeaderValue::new(
            lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ))
        .body(format!("Ich bin bis zum {today} nicht im Büro."))
        .expect("msg");
    let seen_before = mail.inbox_flags("ann");
    send_to_ann(&mail, ooo);

    for (i, _) in [(1, ()), (2, ()), (3, ())] {
        let email = format!("lead0{i}@example.test");
        wait_for("REPLIED", 40, async || lead_state(&api, &cid, &email).await["state"] == "REPLIED").await;
    }
    // The follow-up (due 8 s after the first step) never reaches those who replied…
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 1..=3 {
        assert_eq!(mail.messages(&format!("lead0{i}")).len(), 1, "lead0{i} got a follow-up after replying");
    }
    // …while lead04 (out of office, back today) was paused, never counted as a reply, and resumed.
    wait_for("lead04's follow-up", 40, async || mail.messages("lead04").len() == 2).await;
    let (_, replies) = api.get(&format!("/inbox?kind=reply&campaign={cid}")).await;
    assert_eq!(replies["events"].as_array().map(Vec::len), Some(3), "{replies}");
    let (_, auto) = api.get(&format!("/inbox?kind=auto_reply&campaign={cid}")).await;
    assert_eq!(auto["events"].as_array().map(Vec::len), Some(1), "{auto}");
    assert_eq!(auto["events"][0]["lead_id"], lead_state(&api, &cid, "lead04@example.test").await["id"]);
    // Cursor pagination over the whole inbox (3 replies + 1 auto-reply), newest first.
    let (_, page1) = api.get(&format!("/inbox?campaign={cid}&limit=2")).await;
    let cursor = page1["next_cursor"].as_str().expect("a second page").to_owned();
    let (_, page2) = api.get(&format!("/inbox?campaign={cid}&limit=2&cursor={cursor}")).await;
    let ids = |p: &Value| {
        p["events"].as_array().map(|e| e.iter().map(|x| x["id"].to_string()).collect::<Vec<_>>()).unwrap_or_default()
    };
    let (first, second) = (ids(&page1), ids(&page2));
    assert_eq!((first.len(), second.len()), (2, 2), "{page1} {page2}");
    assert!(first.iter().all(|i| !second.contains(i)), "pages do not overlap");
    assert!(first[0] > first[1] && first[1] > second[0], "newest first");
    // The CLI reads the same stream.
    let (ok, out, err) = coldsend_tests::run("coldsend", &["inbox", "--kind", "auto_reply"], &stack.env);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("Abwesenheitsnotiz"), "{out}");

    // Scanning changed no flag (nothing marked \\Seen), and a later scan fetches nothing.
    let after = mail.inbox_flags("ann");
    assert!(after.iter().all(|f| !f.contains('S')), "a message was marked seen: {after:?} (before: {seen_before:?})");
    let mut conn = stack.redis.connection();
    let last: Option<String> =
        redis::cmd("HGET").arg(format!("cstest:scan-last:{{{ann}}}")).arg("fetched").query(&mut conn).expect("hget");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last_again: Option<String> =
        redis::cmd("HGET").arg(format!("cstest:scan-last:{{{ann}}}")).arg("fetched").query(&mut conn).expect("hget");
    assert_eq!(last_again.as_deref(), Some("0"), "a quiet mailbox fetches nothing (before: {last:?})");
}

#[tokio::test]
async fn sent_items_without_special_use_confirms_sends_and_resolves_uncertain_both_ways() {
    // nora's only Sent folder is an unflagged "Sent Items".
    let (mail, stack) = setup("nora:norapw:sentnoflag lead01:x lead02:x").await;
    let api = Api::new(&stack);
    let nora = active(&api, &mail, "nora").await;
    let sending = json!({"timezone": "UTC", "warmup": false, "append_to_sent": true});
    api.call(Method::PUT, &format!("/sender-accounts/{nora}/sending"), Some(&sending)).await;
    let body = json!({"name": "sent", "sender_account_ids": [nora], "steps": [{"subject": "Hi", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads = json!({"leads": [{"email": "lead01@example.test"}, {"email": "lead02@example.test"}]});
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&leads)).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;

    let mut conn = stack.redis.connection();
    let lead_id = |i: u32| lead_state_sync(&mut stack.redis.connection(), &cid, i);
    let send_key = |i: u32| format!("cstest:send:{cid}:{}:0", lead_id(i));
    let field = |conn: &mut redis::Connection, key: &str, f: &str| -> Option<String> {
        redis::cmd("HGET").arg(key).arg(f).query(conn).expect("hget")
    };
    let (k1, k2) = (send_key(1), send_key(2));
    wait_for("both confirmed from Sent Items", 60, async || {
        let mut c = stack.redis.connection();
        field(&mut c, &k1, "confirmed").is_some() && field(&mut c, &k2, "confirmed").is_some()
    })
    .await;

    // Force both into UNCERTAIN, as a worker dying during DATA would leave them (the send
    // never recorded, so the lead is still active).
    let uncertain_key = format!("cstest:uncertain:{{{nora}}}");
    for (i, k) in [(1, &k1), (2, &k2)] {
        let _: () = redis::cmd("HSET").arg(k).arg("state").arg("UNCERTAIN").query(&mut conn).expect("hset");
        let lead = lead_state_sync(&mut conn, &cid, i);
        let _: () = redis::cmd("HSET")
            .arg(format!("cstest:lead-state:{cid}"))
            .arg(lead)
            .arg("ACTIVE")
            .query(&mut conn)
            .expect("hset");
        let member = k.trim_start_matches("cstest:send:");
        let _: () = redis::cmd("ZADD").arg(&uncertain_key).arg(0).arg(member).query(&mut conn).expect("zadd");
    }
    // From here the Sent folder stands for a server that files every accepted message itself
    // (coldsend's own copies stop): only then may a send missing from it be sent again.
    api.trust_sent_folder(&nora).await;
    // lead02's copy never reached Sent: take it out (and what the scanner remembers of it).
    let msg2 = header(&mail.messages("lead02")[0], "Message-ID").expect("id").trim_matches(['<', '>']).to_owned();
    mail.doveadm(&["expunge", "-u", "nora@example.test", "mailbox", "Sent Items", "header", "Message-ID", &msg2], None);
    let _: () = redis::cmd("ZREM")
        .arg(format!("cstest:processed:{{{nora}}}"))
        .arg(format!("sent:{msg2}"))
        .query(&mut conn)
        .expect("zrem");

    // Found in Sent → SENT, not resent. Not found after the grace period → sent again.
    wait_for("lead01 resolved to SENT", 30, async || {
        field(&mut stack.redis.connection(), &k1, "state").as_deref() == Some("SENT")
    })
    .await;
    wait_for("lead02 sent again", 60, async || mail.messages("lead02").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mail.messages("lead01").len(), 1, "a send found in Sent is never resent");
    assert_eq!(field(&mut conn, &k2, "state").as_deref(), Some("SENT"));
}

fn lead_state_sync(conn: &mut redis::Connection, cid: &str, i: u32) -> String {
    let leads: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("cstest:leads:{cid}")).query(conn).expect("leads");
    leads
        .into_iter()
        .find(|(_, json)| json.contains(&format!("lead0{i}@example.test")))
        .map(|(id, _)| id)
        .expect("lead id")
}

#[tokio::test]
async fn a_rebuilt_folder_records_nothing_twice_and_intervals_take_effect() {
    let mail = Mail::start("ann:annpw lead01:x");
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(SCAN_FAST);
    env.push(("COLDSEND_SCAN__EXTRA_FOLDERS", "[\"Junk\"]"));
    let stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    let cid = campaign(&api, &ann, &["lead01@example.test"], "1h").await;
    wait_for("first step", 30, async || mail.messages("lead01").len() == 1).await;
    let first = header(&mail.messages("lead01")[0], "Message-ID").expect("id");
    // A reply filed as junk.
    let reply = format!(
        "From: lead01@example.test\r\nTo: ann@example.test\r\nSubject: Re: Quick question\r\nMessage-ID: <reply-1@example.test>\r\nIn-Reply-To: {first}\r\n\r\nSure.\r\n"
    );
    mail.doveadm(&["save", "-u", "ann@example.test", "-m", "Junk"], Some(reply.as_bytes()));
    wait_for("the reply in Junk", 30, async || {
        lead_state(&api, &cid, "lead01@example.test").await["state"] == "REPLIED"
    })
    .await;

    // Delete and recreate the folder (new UIDVALIDITY) with the same message.
    mail.doveadm(&["mailbox", "delete", "-u", "ann@example.test", "Junk"], None);
    mail.doveadm(&["mailbox", "create", "-u", "ann@example.test", "Junk"], None);
    mail.doveadm(&["save", "-u", "ann@example.test", "-m", "Junk"], Some(reply.as_bytes()));
    let mut conn = stack.redis.connection();
    let validity = |conn: &mut redis::Connection| -> Option<String> {
        redis::cmd("HGET").arg(format!("cstest:scan:{{{ann}}}:Junk")).arg("uidvalidity").query(conn).expect("hget")
    };
    let before = validity(&mut conn);
    wait_for("the rebuilt folder rescanned", 30, async || validity(&mut stack.redis.connection()) != before).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, replies) = api.get(&format!("/inbox?kind=reply&account={ann}")).await;
    assert_eq!(replies["events"].as_array().map(Vec::len), Some(1), "recorded once: {replies}");

    // Scans every second (config), then every 4 s (the account's own interval).
    let at = |conn: &mut redis::Connection| -> i64 {
        let v: Option<i64> =
            redis::cmd("HGET").arg(format!("cstest:scan-last:{{{ann}}}")).arg("at").query(conn).expect("hget");
        v.unwrap_or(0)
    };
    let gaps = |conn: &mut redis::Connection, n: usize| {
        let mut seen = vec![at(conn)];
        let deadline = Instant::now() + Duration::from_secs(40);
        while seen.len() <= n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let t = at(conn);
            if Some(&t) != seen.last() {
                seen.push(t);
            }
        }
        seen.windows(2).skip(1).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    };
    let logins_before = mail.dovecot_log_count("imap-login: Login: user=<ann@example.test>");
    let fast = gaps(&mut conn, 3);
    assert!(fast.len() >= 2 && fast.iter().all(|g| *g < 3_500), "config interval 1 s: gaps {fast:?} ms");
    // Scans a second apart reuse one logged-in session.
    let logins = mail.dovecot_log_count("imap-login: Login: user=<ann@example.test>") - logins_before;
    assert!(logins <= 1, "{logins} new IMAP logins for {} scans", fast.len() + 1);
    let own = json!({"timezone": "UTC", "warmup": false, "append_to_sent": false, "scan_interval_secs": 4});
    api.call(Method::PUT, &format!("/sender-accounts/{ann}/sending"), Some(&own)).await;
    std::thread::sleep(Duration::from_secs(2));
    let slow = gaps(&mut conn, 3);
    assert!(slow.len() >= 2 && slow.iter().all(|g| *g >= 3_900), "account interval 4 s: gaps {slow:?} ms");
}

#[tokio::test]
async fn adding_a_lead_that_replied_or_bounced_elsewhere_is_reported_and_can_be_skipped() {
    let (mail, stack) = setup("ann:annpw lead01:x lead02:x lead03:x").await;
    let api = Api::new(&stack);
    let ann = active(&api, &mail, "ann").await;
    mail.set_recipient_rule("lead02@example.test", Some("550 5.1.1 User unknown"));
    let first = campaign(&api, &ann, &["lead01@example.test", "lead02@example.test"], "1h").await;
    wait_for("the first step", 30, async || mail.messages("lead01").len() == 1).await;
    let ann_addr = "ann@example.test".parse().expect("addr");
    send_to_ann(
        &mail,
        Message::builder()
            .from("lead01@example.test".parse().expect("addr"))
            .to(ann_addr)
            .subject("Re: Quick question")
            .body("Not interested, thanks".to_owned())
            .expect("msg"),
    );
    wait_for("the reply and the bounce", 60, async || {
        lead_state(&api, &first, "lead01@example.test").await["state"] == "REPLIED"
            && lead_state(&api, &first, "lead02@example.test").await["state"] == "BOUNCED"
    })
    .await;

    let body = json!({"name": "second", "sender_account_ids": [ann], "steps": [{"subject": "Hi", "text": "x"}]});
    let add = json!({"leads": [{"email": "lead01@example.test"}, {"email": "lead02@example.test"}, {"email": "lead03@example.test"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let second = c["id"].as_str().expect("id").to_owned();
    let (status, report) = api.call(Method::POST, &format!("/campaigns/{second}/leads"), Some(&add)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["suppressed"].as_u64(), report["skipped"].as_u64()),
        (Some(3), Some(1), Some(0)),
        "{report}"
    );
    let elsewhere = report["elsewhere"].as_array().expect("elsewhere");
    let said = |email: &str| {
        elsewhere.iter().find(|e| e["email"] == email).map(|e| (e["state"].clone(), e["campaign_id"].clone()))
    };
    assert_eq!(said("lead01@example.test"), Some((json!("REPLIED"), json!(first))), "{report}");
    assert_eq!(said("lead02@example.test"), Some((json!("BOUNCED"), json!(first))), "{report}");
    assert_eq!(said("lead03@example.test"), None);

    // Asked to, a third campaign leaves out whoever replied elsewhere.
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&body)).await;
    let third = c["id"].as_str().expect("id").to_owned();
    let mut skip = add.clone();
    skip["skip_replied_elsewhere"] = json!(true);
    let (_, report) = api.call(Method::POST, &format!("/campaigns/{third}/leads"), Some(&skip)).await;
    assert_eq!((report["added"].as_u64(), report["skipped"].as_u64()), (Some(2), Some(1)), "{report}");
    let (_, leads) = api.get(&format!("/campaigns/{third}/leads")).await;
    assert!(leads.as_array().expect("leads").iter().all(|l| l["email"] != "lead01@example.test"), "{leads}");
}

/// A mailbox whose Sent folder is the provider's own record (here Postfix files every
/// message it accepts from ann there, as Google and Microsoft do) claims its sends in
/// phase `data`, with no DATA mark of their own. Killing the worker mid-run leaves its
/// in-flight sends for the sweep, which makes them UNCERTAIN; the Sent folder then
/// settles each one — found: SENT; absent: requeued and sent — so every lead gets its
/// email exactly once.
#[tokio::test]
async fn killing_a_worker_whose_sends_the_sent_folder_settles_delivers_each_email_exactly_once() {
    const LEADS: usize = 120;
    const KILLS: [usize; 3] = [25, 55, 85];
    let users: Vec<String> =
        std::iter::once("ann:annpw".to_owned()).chain((0..LEADS).map(|i| format!("lead{i}:x"))).collect();
    let mail = Mail::start_with(&users.join(" "), &[("MH_SENT_COPIES", "1")]);
    let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
    env.extend(SCAN_FAST);
    // A dead chain's lease (twice this) runs out quickly, and its stuck sends are swept.
    env.extend([("COLDSEND_SENDING__STALE_SEND_SECS", "5"), ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "4")]);
    let mut stack = Stack::start_with(Some(&mail), &env, 1);
    let api = Api::new(&stack);
    // 15 ms each way, so each email spends most of its time on the wire, where the kills land.
    let far = coldsend_tests::fixtures::LatencyProxy::start(mail.submission_port(), Duration::from_millis(15)).await;
    let body = account_json("ann", "annpw", far.port, true, mail.imaps_port(), 100_000);
    let ann = api.active_account(&body).await;
    api.trust_sent_folder(&ann).await;
    let campaign = json!({"name": "drill", "sender_account_ids": [ann],
                          "steps": [{"subject": "Quick question", "text": "Hello"}]});
    let (_, c) = api.call(Method::POST, "/campaigns", Some(&campaign)).await;
    let cid = c["id"].as_str().expect("id").to_owned();
    let leads: Vec<Value> = (0..LEADS).map(|i| json!({"email": format!("lead{i}@example.test")})).collect();
    api.call(Method::POST, &format!("/campaigns/{cid}/leads"), Some(&json!({"leads": leads}))).await;
    api.call(Method::POST, &format!("/campaigns/{cid}/start"), None).await;

    let per_lead = || (0..LEADS).map(|i| mail.messages(&format!("lead{i}")).len()).collect::<Vec<_>>();
    let stats = async || api.get(&format!("/campaigns/{cid}")).await.1["stats"].clone();
    let mut most_uncertain = 0;
    for at in KILLS {
        wait_for("progress", 90, async || {
            most_uncertain = most_uncertain.max(stats().await["uncertain"].as_u64().unwrap_or(0));
            per_lead().iter().sum::<usize>() >= at
        })
        .await;
        stack.workers.clear();
        stack.add_worker();
    }
    wait_for("every send settled", 180, async || {
        let s = stats().await;
        most_uncertain = most_uncertain.max(s["uncertain"].as_u64().unwrap_or(0));
        s["sent"].as_u64() == Some(LEADS as u64) && s["uncertain"].as_u64().unwrap_or(0) == 0
    })
    .await;
    // Time for a resend, were one to happen.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts = per_lead();
    let wrong: Vec<_> = counts.iter().enumerate().filter(|(_, n)| **n != 1).collect();
    eprintln!("{} kills; at most {most_uncertain} UNCERTAIN at once, all settled: {}", KILLS.len(), stats().await);
    assert!(wrong.is_empty(), "leads without exactly one email (lead, emails): {wrong:?}");
    assert_eq!(mail.folder_messages("ann", "Sent").len(), LEADS, "the provider filed each accepted email once");
    assert_eq!(stats().await["failed"].as_u64().unwrap_or(0), 0);
}
