//! The Redis account contract on a real Redis: atomic create, and validation results
//! that a duplicate or late job cannot apply out of order.

use coldsend_core::sealed::SealingKey;
use coldsend_core::storage::accounts::{AccountStore, Credentials, Recorded, StoreError};
use coldsend_core::{AccountStatus, ProbeFailure, Protocol, SenderAccountRequest, ValidationCode, ValidationReport};
use coldsend_tests::{ENCRYPTION_KEY, Redis};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

fn request(email: &str) -> coldsend_core::NewSenderAccount {
    SenderAccountRequest::parse_value(json!({
        "email_address": email, "display_name": "T", "inbox_type": "GOOGLE_WORKSPACE", "daily_limit": 20,
        "smtp_username": email, "smtp_password": "smtp-secret", "imap_username": email, "imap_password": "imap-secret"
    }))
    .expect("valid")
}

fn report(pass: bool) -> ValidationReport {
    ValidationReport {
        smtp: (!pass).then(|| ProbeFailure {
            protocol: Protocol::Smtp,
            code: ValidationCode::Timeout,
            message: "t".into(),
        }),
        imap: None,
        checked_at: time_now(),
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn store(redis: &Redis) -> AccountStore {
    let client = redis::Client::open(redis.url()).expect("url");
    let conn = redis::aio::ConnectionManager::new(client).await.expect("connect");
    AccountStore::new(conn, "storetest")
}

fn key() -> SealingKey {
    SealingKey::from_text(&SecretString::from(ENCRYPTION_KEY)).expect("key")
}

#[tokio::test]
async fn stale_and_late_validation_results_are_discarded() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let row = store.create(request("a@example.com"), &key()).await.expect("create");
    assert_eq!((row.status, row.generation), (AccountStatus::PendingValidation, 1));

    // A second validation request supersedes the first job.
    let g2 = store.request_validation(&row.account.id).await.expect("revalidate").expect("exists");
    assert_eq!(g2, 2);
    // The first job finishes late with a failure: discarded.
    assert_eq!(store.record_validation(&row.account.id, 1, &report(false)).await.expect("record"), Recorded::Stale);
    assert_eq!(store.get(&row.account.id).await.expect("get").expect("row").status, AccountStatus::PendingValidation);
    // The current job's result is kept; a redelivered copy of it stores the same thing again.
    for _ in 0..2 {
        assert_eq!(store.record_validation(&row.account.id, 2, &report(true)).await.expect("record"), Recorded::Stored);
    }
    assert_eq!(store.get(&row.account.id).await.expect("get").expect("row").status, AccountStatus::Active);

    // Credentials open only with the right key, and are stored sealed.
    let creds = store.credentials(&row.account.id, &key()).await.expect("open").expect("exists");
    let Credentials::Password { smtp_password, .. } = creds else { panic!("a password account") };
    assert_eq!(smtp_password.expose_secret(), "smtp-secret");
    let other = SealingKey::from_text(&SecretString::from(SealingKey::generate_text())).expect("key");
    assert!(matches!(store.credentials(&row.account.id, &other).await, Err(StoreError::Credentials(..))));

    // A result for a deleted account goes nowhere.
    assert!(store.delete(&row.account.id).await.expect("delete"));
    assert_eq!(store.record_validation(&row.account.id, 2, &report(true)).await.expect("record"), Recorded::Gone);
    assert!(store.get(&row.account.id).await.expect("get").is_none());
}

/// The light read the IDLE watchers' rounds use: exactly the ACTIVE accounts, the same
/// set the full listing gives, for every status an account can have.
#[tokio::test]
async fn active_ids_are_the_active_accounts_of_the_full_listing() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let mut ids = Vec::new();
    for (i, pass) in [Some(true), Some(false), None, Some(true)].into_iter().enumerate() {
        let row = store.create(request(&format!("a{i}@example.com")), &key()).await.expect("create");
        if let Some(pass) = pass {
            store.record_validation(&row.account.id, 1, &report(pass)).await.expect("record");
        }
        ids.push(row.account.id);
    }
    let active: std::collections::HashSet<_> = store.active_ids().await.expect("active").into_iter().collect();
    let listed: std::collections::HashSet<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .filter(|r| r.status == AccountStatus::Active)
        .map(|r| r.account.id)
        .collect();
    assert_eq!(active, [ids[0], ids[3]].into_iter().collect());
    assert_eq!(active, listed);
}

#[tokio::test]
async fn one_account_per_address_even_under_concurrent_creates() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let attempts = (0..20).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.create(request("same@example.com"), &key()).await })
    });
    let mut created = 0;
    for a in attempts {
        match a.await.expect("join") {
            Ok(_) => created += 1,
            Err(StoreError::Duplicate { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.list().await.expect("list").len(), 1);
}

/// The webhook outbox's three reads, which the fan-out uses at different times: new
/// entries once each; a consumer's own unacknowledged entries again after it failed
/// mid-batch (or died and came back under its name); and a dead consumer's entries taken
/// over by another only once they sat unacknowledged longer than the given time.
#[tokio::test]
async fn outbox_entries_are_read_once_and_unacknowledged_ones_are_never_lost() {
    use coldsend_core::storage::webhooks::{Outbox, OutboxEntry};
    use coldsend_core::webhook::{Event, EventType};
    use std::time::Duration;
    let redis = Redis::start();
    let client = redis::Client::open(redis.url()).expect("url");
    let outbox = Outbox::new(redis::aio::ConnectionManager::new(client).await.expect("connect"), "storetest");
    outbox.ensure_group().await.expect("group");
    // No webhook endpoint: nobody could receive an event, and none is kept.
    let keys = coldsend_core::storage::keys::Keys::new("storetest");
    let mut conn = redis::Client::open(redis.url()).expect("url").get_multiplexed_async_connection().await.expect("c");
    outbox.publish(&Event::new(EventType::Sent, json!({"n": -1}))).await.expect("publish");
    let xlen = async |conn: &mut redis::aio::MultiplexedConnection| -> usize {
        redis::cmd("XLEN").arg(keys.outbox()).query_async(conn).await.expect("xlen")
    };
    assert_eq!(xlen(&mut conn).await, 0, "published to nobody");
    let _: () =
        redis::cmd("HSET").arg(keys.webhooks()).arg("w1").arg("{}").query_async(&mut conn).await.expect("an endpoint");
    let published: Vec<Event> = (0..5).map(|i| Event::new(EventType::Sent, json!({"n": i}))).collect();
    for e in &published {
        outbox.publish(e).await.expect("publish");
    }
    assert_eq!(xlen(&mut conn).await, 5, "with an endpoint, every event is kept");
    let ids = |entries: &[OutboxEntry]| -> Vec<String> {
        entries.iter().flat_map(|e| e.events().events).map(|e| e.id).collect()
    };

    // "a" reads three and acknowledges none (it fails mid-batch): they are not new to
    // anyone any more, and "a" gets exactly them back.
    let first = outbox.read_new("a", 3, Duration::from_millis(10)).await.expect("read");
    assert_eq!(ids(&first), published[..3].iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    let rest = outbox.read_new("b", 10, Duration::from_millis(10)).await.expect("read");
    assert_eq!(ids(&rest), published[3..].iter().map(|e| e.id.clone()).collect::<Vec<_>>(), "each new entry once");
    assert_eq!(ids(&outbox.read_own("a", 10).await.expect("own")), ids(&first), "a's own, again");
    assert!(outbox.read_new("b", 10, Duration::from_millis(10)).await.expect("read").is_empty());

    // "b" acknowledges its two; "a" dies. Nobody takes a's entries while they are fresh...
    outbox.ack(&rest.iter().map(|e| e.id.clone()).collect::<Vec<_>>()).await.expect("ack");
    assert!(outbox.claim_abandoned("b", 10, Duration::from_secs(60)).await.expect("claim").is_empty());
    // ...and "b" takes all of them once they have sat long enough, and then owns them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let taken = outbox.claim_abandoned("b", 10, Duration::from_millis(20)).await.expect("claim");
    assert_eq!(ids(&taken), ids(&first));
    assert!(outbox.read_own("a", 10).await.expect("own").is_empty(), "no longer a's");
    assert_eq!(ids(&outbox.read_own("b", 10).await.expect("own")), ids(&first));
    outbox.ack(&taken.iter().map(|e| e.id.clone()).collect::<Vec<_>>()).await.expect("ack");
    assert!(outbox.read_own("b", 10).await.expect("own").is_empty(), "acknowledged: done");

    // A step that tells two things writes one entry: `event`, then `then`. What is not an
    // event is counted, never dropped silently, and never hides the readable one.
    let (sent, completed) =
        (Event::new(EventType::Sent, json!({"n": 5})), Event::new(EventType::LeadState, json!({"n": 6})));
    let key = keys.outbox();
    let json = |e: &Event| serde_json::to_string(e).expect("json");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("event")
        .arg(json(&sent))
        .arg("then")
        .arg(json(&completed))
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("event")
        .arg("{not json")
        .arg("then")
        .arg(json(&sent))
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let _: String =
        redis::cmd("XADD").arg(&key).arg("*").arg("other").arg("x").query_async(&mut conn).await.expect("xadd");
    let two = outbox.read_new("b", 10, Duration::from_millis(10)).await.expect("read");
    assert_eq!(two.len(), 3);
    assert_eq!(ids(&two[..1]), vec![sent.id.clone(), completed.id.clone()], "both, in the order published");
    assert_eq!((two[0].events().unreadable, two[1].events().unreadable, two[2].events().unreadable), (0, 1, 1));
    assert_eq!(ids(&two[1..2]), vec![sent.id.clone()]);
}

/// A Redis that lost its scripts (restarted, or `SCRIPT FLUSH`) before a publish: the
/// publishing script is loaded inside the same transaction, so each inbox entry and its
/// webhook event are still written together, once — an EVALSHA failing alone inside MULTI
/// would have kept the entry and lost the event.
#[tokio::test]
async fn an_inbox_entry_and_its_event_are_written_together_after_redis_lost_its_scripts() {
    use coldsend_core::storage::inbox::{Inbox, InboxEvent, InboxKind};
    let redis = Redis::start();
    let client = redis::Client::open(redis.url()).expect("url");
    let inbox = Inbox::new(redis::aio::ConnectionManager::new(client.clone()).await.expect("connect"), "storetest");
    let keys = coldsend_core::storage::keys::Keys::new("storetest");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let _: () = redis::cmd("HSET").arg(keys.webhooks()).arg("w1").arg("{}").query_async(&mut conn).await.expect("hset");
    let reply = |n: usize| InboxEvent {
        id: String::new(),
        account_id: "a1".into(),
        campaign_id: None,
        lead_id: None,
        kind: InboxKind::Reply,
        from: format!("lead{n}@example.test"),
        subject: "Re: Hi".into(),
        snippet: "Thanks".into(),
        received_at: "2026-12-03T00:00:00Z".into(),
        bounce: None,
        why: "In-Reply-To".into(),
        returns_on: None,
    };
    for n in 0..3 {
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.expect("flush");
        inbox.record(&reply(n)).await.expect("recorded after a script flush");
    }
    let xlen = |key: String| {
        let mut conn = conn.clone();
        async move { redis::cmd("XLEN").arg(key).query_async::<usize>(&mut conn).await.expect("xlen") }
    };
    assert_eq!((xlen(keys.events()).await, xlen(keys.outbox()).await), (3, 3), "each entry with its event, once");
}
