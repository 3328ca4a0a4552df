//! IMAP poll benchmark: coldsend's scan pass against a minimal reference client
//! (Python imaplib: connect, TLS, LOGIN, STATUS, EXAMINE, UID FETCH of the new UIDs,
//! LOGOUT) on the same mailbox in the same run, at 1k, 10k and 100k messages with one
//! new message each round. Reports medians of the full poll and of the fetch step alone.
//!
//! Run: `scripts/bench.sh poll` (BENCH_SIZES=1000,10000,100000, BENCH_ROUNDS=5).

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coldsend_core::sealed::SealingKey;
use coldsend_core::settings::{ScanConfig, SendingConfig};
use coldsend_core::storage::accounts::AccountStore;
use coldsend_core::storage::campaigns::CampaignStore;
use coldsend_core::storage::inbox::Inbox;
use coldsend_core::storage::ledger::Ledger;
use coldsend_core::storage::scan::ScanStore;
use coldsend_tests::{Api, ENCRYPTION_KEY, FAST_SENDING, Mail, Stack, account_json, repo_root};
use coldsend_worker::probe::ProbeContext;
use coldsend_worker::scan::{ScanState, scan_pass};
use coldsend_worker::trust::TrustStore;
use secrecy::SecretString;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fills the Maildir with `n` messages of varied sizes, Dovecot-style names.
fn fill(maildir: &std::path::Path, n: usize) {
    let cur = maildir.join("cur");
    std::fs::create_dir_all(&cur).expect("cur");
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for i in 0..n {
        let body = "x".repeat(200 + (i * 37) % 3000);
        let msg = format!(
            "From: sender{i}@example.org\nTo: big@example.test\nSubject: message {i}\nMessage-ID: <fill-{i}@example.org>\n\n{body}\n"
        );
        let name = format!(
            "{}.M{}P{}Q{}.bench,S={}:2,S",
            t - (n - i) as u64,
            (i * 7919) % 1_000_000,
            4000 + i % 997,
            i,
            msg.len()
        );
        let mut f = std::fs::File::create(cur.join(name)).expect("file");
        f.write_all(msg.as_bytes()).expect("write");
    }
    let _ = Command::new("chown").arg("-R").arg("5000:5000").arg(maildir).status();
}

fn new_message(mail: &Mail, i: usize) {
    let msg = format!(
        "From: lead@example.org\r\nTo: big@example.test\r\nSubject: new {i}\r\nMessage-ID: <new-{i}@example.org>\r\n\r\nhello\r\n"
    );
    mail.doveadm(&["save", "-u", "big@example.test", "-m", "INBOX"], Some(msg.as_bytes()));
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    println!("IMAP poll: coldsend scan pass vs imaplib reference, same mailbox, same run; medians of {rounds} rounds");
    println!(
        "{:>8}  {:>12}  {:>12}  {:>6}  {:>14}  {:>14}",
        "messages", "coldsend ms", "imaplib ms", "ratio", "cs fetch ms", "ref fetch ms"
    );
    for n in sizes {
        let mail = Mail::start("big:bigpw");
        let mut env: Vec<(&str, &str)> = FAST_SENDING.to_vec();
        env.push(("COLDSEND_SCAN__INTERVAL_SECS", "86400"));
        env.push(("RUST_LOG", "warn"));
        let stack = Stack::start_with(Some(&mail), &env, 1);
        let api = Api::new(&stack);
        let (_, created) =
            api.create(&account_json("big", "bigpw", mail.submission_port(), true, mail.imaps_port(), 100)).await;
        let id = created["id"].as_str().expect("id").to_owned();
        assert_eq!(api.settled(&id).await["status"], "ACTIVE");
        let maildir = mail.maildir("big");
        let filled = Instant::now();
        fill(&maildir, n);
        mail.doveadm(&["force-resync", "-u", "big@example.test", "INBOX"], None);
        let index_secs = filled.elapsed().as_secs_f64();

        let conn = redis::aio::ConnectionManager::new(redis::Client::open(stack.redis.url()).expect("url"))
            .await
            .expect("redis");
        let key = SealingKey::from_text(&SecretString::from(ENCRYPTION_KEY)).expect("key");
        let (queue, dispatch_queue) = (
            coldsend_core::jobs::queue_storage(conn.clone(), "bench:scan".into()),
            coldsend_core::jobs::queue_storage(conn.clone(), "bench:dispatch".into()),
        );
        let tokens = coldsend_service::oauth::AccessTokens::new(
            AccountStore::new(conn.clone(), "cstest"),
            coldsend_core::storage::oauth::OAuthTokens::new(conn.clone(), "cstest"),
            Inbox::new(conn.clone(), "cstest"),
            key.clone(),
            Default::default(),
        )
        .expect("token client");
        let signin =
            coldsend_worker::signin::SignIn::new(AccountStore::new(conn.clone(), "cstest"), key.clone(), tokens);
        let state = Arc::new(ScanState {
            signin,
            store: ScanStore::new(conn.clone(), "cstest"),
            health: coldsend_core::storage::mailboxes::MailboxHealth::new(conn.clone(), "cstest"),
            accounts: AccountStore::new(conn.clone(), "cstest"),
            campaigns: CampaignStore::new(conn.clone(), "cstest"),
            ledger: Ledger::new(conn.clone(), "cstest"),
            inbox: Inbox::new(conn.clone(), "cstest"),
            key,
            probe: ProbeContext {
                trust: TrustStore::load(&[mail.ca_cert()]).expect("trust"),
                helo: lettre::transport::smtp::extension::ClientId::Domain("bench.test".into()),
                time_limit: Duration::from_secs(30),
            },
            config: ScanConfig { command_timeout_secs: 120, ..ScanConfig::default() },
            sending: SendingConfig::default(),
            queue,
            dispatch_queue,
            sessions: Default::default(),
            connection: coldsend_worker::connection_health::ConnectionHealth::new(
                AccountStore::new(conn.clone(), "cstest"),
                Inbox::new(conn.clone(), "cstest"),
                coldsend_core::jobs::queue_storage(conn.clone(), "bench:validate".into()),
                Default::default(),
            ),
            bounces: coldsend_worker::bounce_rate::BounceGuard {
                health: coldsend_core::storage::mailboxes::MailboxHealth::new(conn.clone(), "cstest"),
                inbox: Inbox::new(conn.clone(), "cstest"),
                config: Default::default(),
            },
            folders: Default::default(),
            logins: Arc::new(coldsend_worker::login_pacer::LoginPacer::new(10_000)),
        });
        let account = AccountStore::new(conn.clone(), "cstest")
            .get(&id.parse().expect("id"))
            .await
            .expect("get")
            .expect("row")
            .account;
        let settings =
            AccountStore::new(conn.clone(), "cstest").sending_settings(&account, "UTC").await.expect("settings");
        // The baseline pass (first scan) is not measured.
        scan_pass(&state, &account, &settings, false).await.expect("baseline scan");

        let (mut cs, mut cs_fetch, mut rf, mut rf_fetch) = (vec![], vec![], vec![], vec![]);
        let mut last_uid = n as u32 + 1;
        for r in 0..rounds {
            new_message(&mail, 2 * r);
            let t = Instant::now();
            let stats = scan_pass(&state, &account, &settings, false).await.expect("scan");
            cs.push(t.elapsed().as_secs_f64() * 1000.0);
            cs_fetch.push(stats.fetch.as_secs_f64() * 1000.0);
            assert_eq!(stats.fetched, 1, "one new message per round");
            last_uid += 1;
            new_message(&mail, 2 * r + 1);
            let out = Command::new("python3")
                .arg(repo_root().join("tests/python/imap_poll_reference.py"))
                .args([
                    "127.0.0.1",
                    &mail.imaps_port().to_string(),
                    &mail.ca_cert().to_string_lossy(),
                    "big@example.test",
                    "bigpw",
                    "INBOX",
                    &last_uid.to_string(),
                ])
                .output()
                .expect("python3");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
            rf.push(v["poll_ms"].as_f64().unwrap_or(0.0));
            rf_fetch.push(v["fetch_ms"].as_f64().unwrap_or(0.0));
            last_uid += 1;
            // coldsend must catch up on the reference's message too, unmeasured.
            scan_pass(&state, &account, &settings, false).await.expect("catch-up scan");
        }
        let (c, r) = (median(cs), median(rf));
        println!(
            "{n:>8}  {c:>12.1}  {r:>12.1}  {:>6.2}  {:>14.2}  {:>14.2}   (fill + index {index_secs:.0} s)",
            c / r,
            median(cs_fetch),
            median(rf_fetch)
        );
    }
}
