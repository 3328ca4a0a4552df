//! Every branch of every send-ledger script, against a real Redis (no mail server): the
//! invariants of ARCHITECTURE.md ("Sending: invariants and how they hold") tried directly.

use std::collections::HashMap;

use chrono::NaiveDate;
use coldsend_core::account::AccountId;
use coldsend_core::campaign::{CampaignAction, CampaignId, CampaignRequest};
use coldsend_core::lead::{Lead, LeadInput, LeadState};
use coldsend_core::send_key::SendKey;
use coldsend_core::storage::campaigns::{CampaignStore, SuppressionReason};
use coldsend_core::storage::keys::Keys;
use coldsend_core::storage::ledger::{
    Accepted, Claim, Ledger, MarkSent, MarkedSent, Peek, Released, Reservation, ReserveArgs, SendPhase, SendState,
    Swept,
};
use coldsend_tests::Redis;
use redis::AsyncCommands;

const P: &str = "t";

struct World {
    _redis: Redis,
    conn: redis::aio::ConnectionManager,
    ledger: Ledger,
    campaigns: CampaignStore,
    keys: Keys,
    account: AccountId,
    campaign: CampaignId,
    token: String,
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
}

impl World {
    /// A running two-step campaign with `leads` leads, their first steps queued on one mailbox
    /// whose chain token is `token`.
    async fn new(leads: usize, daily_limit: Option<u32>) -> Self {
        let redis = Redis::start();
        let conn =
            redis::aio::ConnectionManager::new(redis::Client::open(redis.url()).expect("url")).await.expect("connect");
        let (ledger, campaigns, keys) =
            (Ledger::new(conn.clone(), P), CampaignStore::new(conn.clone(), P), Keys::new(P));
        let account = AccountId::new_random();
        let request: CampaignRequest = serde_json::from_value(serde_json::json!({
            "name": "scripts", "sender_account_ids": [account.to_string()], "daily_limit": daily_limit,
            "steps": [{"subject": "Hi", "text": "one"}, {"text": "two", "delay": "1d"}]
        }))
        .expect("request");
        let campaign = request.into_campaign().expect("campaign");
        campaigns.create(&campaign).await.expect("create");
        campaigns.transition(&campaign.id, CampaignAction::Start).await.expect("start");
        let all: Vec<Lead> = (0..leads)
            .map(|i| {
                let input: LeadInput =
                    serde_json::from_value(serde_json::json!({"email": format!("l{i}@example.test")})).expect("lead");
                input.into_lead().expect("lead")
            })
            .collect();
        campaigns.add_leads(&campaign.id, &all).await.expect("leads");
        let pairs: Vec<_> = all.iter().map(|l| (l.id.clone(), account)).collect();
        assert_eq!(ledger.enqueue_first_steps(&campaign.id, &pairs, 0).await.expect("enqueue"), leads);
        let token = "chain-1".to_owned();
        assert!(ledger.start_chain(&account, &token, 60_000, false).await.expect("chain"));
        Self { _redis: redis, conn, ledger, campaigns, keys, account, campaign: campaign.id, token }
    }

    fn key(&self, lead: usize, step: usize) -> SendKey {
        let email = coldsend_core::account::EmailAddress::parse(&format!("l{lead}@example.test")).expect("email");
        SendKey { campaign: self.campaign, lead: coldsend_core::lead::LeadId::for_email(&email), step }
    }

    fn args<'a>(&'a self, key: &'a SendKey, email: &'a str, now_ms: i64, cap: u32) -> ReserveArgs<'a> {
        ReserveArgs {
            key,
            account: &self.account,
            email,
            chain_token: &self.token,
            now_ms,
            cap,
            cap_key: self.keys.cap(&self.account, day()),
            campaign_cap: None,
            gap_ms: 0,
            spread: None,
            phase: SendPhase::Pre,
        }
    }

    async fn claim(&self, lead: usize, step: usize) -> Claim {
        let key = self.key(lead, step);
        let email = format!("l{lead}@example.test");
        match self.ledger.reserve(&self.args(&key, &email, 1_000, 100)).await.expect("reserve") {
            Reservation::Claimed(c) => c,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    /// Records lead `lead`'s first step sent under `claim` at `now_ms`, its follow-up due at
    /// `followup_ms`, peeking as asked.
    async fn first_sent(
        &self,
        lead: usize,
        claim: &Claim,
        now_ms: i64,
        followup_ms: i64,
        peek: Option<Peek<'_>>,
    ) -> MarkSent {
        let message_id = format!("<m{lead}@x>");
        let key = self.key(lead, 0);
        let sent = self.ledger.mark_sent(
            &key,
            &self.account,
            Some(&claim.attempt),
            &message_id,
            now_ms,
            Some(followup_ms),
            None,
            peek,
        );
        let out = sent.await.expect("mark");
        assert_eq!(out.outcome, MarkedSent::Recorded);
        out
    }

    async fn state(&self, key: &SendKey) -> Option<SendState> {
        self.ledger.send_record(key).await.expect("record").map(|r| r.state)
    }

    async fn used(&self) -> u32 {
        self.ledger.used(&self.keys.cap(&self.account, day())).await.expect("used")
    }

    async fn stats(&self) -> HashMap<String, i64> {
        self.conn.clone().hgetall(self.keys.stats(&self.campaign)).await.expect("stats")
    }

    async fn lead_state(&self, lead: usize) -> Option<LeadState> {
        self.campaigns.lead_state(&self.campaign, &self.key(lead, 0).lead).await.expect("lead state")
    }

    async fn due(&self, followup: bool) -> Vec<String> {
        let k = if followup {
            self.keys.due_followups(&self.account, &self.campaign)
        } else {
            self.keys.due_first(&self.account, &self.campaign)
        };
        self.conn.clone().zrange(k, 0, -1).await.expect("due")
    }

    async fn uncertain_members(&self) -> Vec<String> {
        self.conn.clone().zrange(self.keys.uncertain(&self.account), 0, -1).await.expect("uncertain")
    }
}

#[tokio::test]
async fn reserve_claims_only_within_chain_campaign_lead_state_caps_and_gap() {
    let w = World::new(4, None).await;
    let (k0, e0) = (w.key(0, 0), "l0@example.test");

    // stale chain
    let mut stale = w.args(&k0, e0, 1_000, 100);
    stale.chain_token = "someone-else";
    assert_eq!(w.ledger.reserve(&stale).await.expect("reserve"), Reservation::StaleChain);

    // cap reached (cap 0): nothing taken
    assert_eq!(w.ledger.reserve(&w.args(&k0, e0, 1_000, 0)).await.expect("reserve"), Reservation::CapReached);
    assert_eq!(w.used().await, 0);

    // ok: counter, gap marker, SENDING, inflight
    let mut ok = w.args(&k0, e0, 1_000, 100);
    ok.gap_ms = 5_000;
    let Reservation::Claimed(claim) = w.ledger.reserve(&ok).await.expect("reserve") else { panic!("claim") };
    assert_eq!((claim.used, w.used().await), (1, 1));
    let ttl: i64 = w.conn.clone().ttl(&claim.cap_key).await.expect("ttl");
    assert!(ttl > 86_400, "the counter expires after its day: {ttl}");
    let rec = w.ledger.send_record(&k0).await.expect("record").expect("exists");
    assert_eq!(
        (rec.state, rec.phase, rec.attempt.as_deref(), claim.phase),
        (SendState::Sending, Some(SendPhase::Pre), Some(claim.attempt.as_str()), SendPhase::Pre)
    );

    // not queued: the same send again
    assert_eq!(
        w.ledger.reserve(&w.args(&k0, e0, 10_000, 100)).await.expect("reserve"),
        Reservation::NotQueued(Some(SendState::Sending))
    );

    // gap: another lead too early, then allowed at the gap's end
    let (k1, e1) = (w.key(1, 0), "l1@example.test");
    assert_eq!(w.ledger.reserve(&w.args(&k1, e1, 2_000, 100)).await.expect("reserve"), Reservation::Gap(6_000));
    assert!(matches!(w.ledger.reserve(&w.args(&k1, e1, 6_000, 100)).await.expect("reserve"), Reservation::Claimed(_)));
    assert_eq!(w.used().await, 2);

    // cap: 2 used of 2
    let (k2, e2) = (w.key(2, 0), "l2@example.test");
    assert_eq!(w.ledger.reserve(&w.args(&k2, e2, 7_000, 2)).await.expect("reserve"), Reservation::CapReached);

    // suppressed: the lead becomes SUPPRESSED, nothing is taken
    w.campaigns.suppress(e2, SuppressionReason::Unsubscribed).await.expect("suppress");
    assert_eq!(w.ledger.reserve(&w.args(&k2, e2, 7_000, 100)).await.expect("reserve"), Reservation::Suppressed);
    assert_eq!(w.lead_state(2).await, Some(LeadState::Suppressed));

    // lead inactive
    assert_eq!(
        w.ledger.reserve(&w.args(&k2, e2, 7_000, 100)).await.expect("reserve"),
        Reservation::LeadInactive(Some(LeadState::Suppressed))
    );

    // campaign not running
    w.campaigns.transition(&w.campaign, CampaignAction::Pause).await.expect("pause");
    let (k3, e3) = (w.key(3, 0), "l3@example.test");
    assert_eq!(w.ledger.reserve(&w.args(&k3, e3, 8_000, 100)).await.expect("reserve"), Reservation::CampaignNotRunning);
    assert_eq!(w.used().await, 2, "no refusal took a slot");
}

#[tokio::test]
async fn reserve_honours_the_campaign_daily_limit_and_release_gives_both_slots_back() {
    let w = World::new(3, Some(1)).await;
    let day_key = w.keys.campaign_day(&w.campaign, day());
    let (k0, k1) = (w.key(0, 0), w.key(1, 0));
    let mut a0 = w.args(&k0, "l0@example.test", 1_000, 100);
    a0.campaign_cap = Some((day_key.clone(), 1));
    let Reservation::Claimed(claim) = w.ledger.reserve(&a0).await.expect("reserve") else { panic!("claim") };
    assert_eq!(claim.campaign_day_key.as_deref(), Some(day_key.as_str()));
    let mut a1 = w.args(&k1, "l1@example.test", 1_000, 100);
    a1.campaign_cap = Some((day_key.clone(), 1));
    assert_eq!(w.ledger.reserve(&a1).await.expect("reserve"), Reservation::CampaignCapReached);

    // release → retry: both counters back, QUEUED again in its queue
    let out = w.ledger.release(&k0, &w.account, false, &claim, 5_000, 3, "421 try later").await.expect("release");
    assert_eq!(out, Released::Retry);
    assert_eq!(w.used().await, 0);
    assert_eq!(w.ledger.used(&day_key).await.expect("day"), 0);
    assert_eq!(w.state(&k0).await, Some(SendState::Queued));
    assert!(w.due(false).await.contains(&k0.member()));
    // the same claim again is stale: nothing changes twice
    assert_eq!(
        w.ledger.release(&k0, &w.account, false, &claim, 5_000, 3, "x").await.expect("release"),
        Released::Stale
    );
    assert_eq!(w.used().await, 0);
}

#[tokio::test]
async fn release_fails_the_send_after_the_last_attempt() {
    let w = World::new(1, None).await;
    let k = w.key(0, 0);
    for attempt in 1..=2 {
        let claim = w.claim(0, 0).await;
        let out = w.ledger.release(&k, &w.account, false, &claim, 0, 2, "451 later").await.expect("release");
        assert_eq!(out, if attempt < 2 { Released::Retry } else { Released::Failed });
    }
    assert_eq!(w.state(&k).await, Some(SendState::Failed));
    assert_eq!(w.lead_state(0).await, Some(LeadState::Failed));
    assert_eq!(w.stats().await.get("failed"), Some(&1));
    assert!(w.due(false).await.is_empty());
    assert_eq!(w.used().await, 0);
}

#[tokio::test]
async fn mark_data_only_for_the_attempt_holding_the_claim() {
    let w = World::new(1, None).await;
    let k = w.key(0, 0);
    assert!(!w.ledger.mark_data_phase(&k, "nobody").await.expect("mark"), "QUEUED: no claim");
    let claim = w.claim(0, 0).await;
    assert!(!w.ledger.mark_data_phase(&k, "another-attempt").await.expect("mark"));
    assert!(w.ledger.mark_data_phase(&k, &claim.attempt).await.expect("mark"));
    assert_eq!(w.ledger.send_record(&k).await.expect("rec").expect("rec").phase, Some(SendPhase::Data));
}

/// The mark a young claim in `pre` gets (one HDEL, no check of the attempt): it moves the
/// send to `data` as the checked one does, and it finds a record that was swept or deleted
/// under it gone, without writing anything back.
#[tokio::test]
async fn the_unchecked_mark_moves_a_claim_to_data_and_finds_a_swept_or_deleted_record_gone() {
    let w = World::new(3, None).await;
    let (k0, k1, k2) = (w.key(0, 0), w.key(1, 0), w.key(2, 0));
    assert!(!w.ledger.mark_data_unchecked(&k0).await.expect("mark"), "QUEUED: no claim, nothing to mark");
    let (_c0, _c1, _c2) = (w.claim(0, 0).await, w.claim(1, 0).await, w.claim(2, 0).await);
    assert_eq!(w.ledger.send_record(&k0).await.expect("rec").expect("rec").phase, Some(SendPhase::Pre));

    assert!(w.ledger.mark_data_unchecked(&k0).await.expect("mark"));
    let rec = w.ledger.send_record(&k0).await.expect("rec").expect("rec");
    assert_eq!((rec.state, rec.phase), (SendState::Sending, Some(SendPhase::Data)));
    // A dead worker's marked send is never requeued.
    assert_eq!(w.ledger.sweep(&k0).await.expect("sweep"), Swept::Uncertain);
    assert_eq!(w.used().await, 3, "an uncertain send keeps its slot");

    // Swept before its mark (requeued): the mark finds it gone, and the record stays QUEUED.
    assert_eq!(w.ledger.sweep(&k1).await.expect("sweep"), Swept::Requeued);
    assert!(!w.ledger.mark_data_unchecked(&k1).await.expect("mark"), "swept: the body must not follow");
    assert_eq!(w.state(&k1).await, Some(SendState::Queued));

    // Deleted under the claim (its campaign was): the mark creates no record.
    let _: () = w.conn.clone().del(w.keys.send(&k2)).await.expect("del");
    assert!(!w.ledger.mark_data_unchecked(&k2).await.expect("mark"), "deleted: the body must not follow");
    let exists: bool = w.conn.clone().exists(w.keys.send(&k2)).await.expect("exists");
    assert!(!exists, "the mark wrote nothing back");
}

#[tokio::test]
async fn mark_sent_records_once_queues_the_next_step_and_completes_the_last() {
    let w = World::new(2, None).await;
    let k = w.key(0, 0);
    let claim = w.claim(0, 0).await;
    assert_eq!(
        w.ledger
            .mark_sent(&k, &w.account, Some("not-the-claim"), "<m0@x>", 2_000, Some(9_000), None, None)
            .await
            .expect("mark")
            .outcome,
        MarkedSent::Stale
    );
    assert_eq!(
        w.ledger
            .mark_sent(&k, &w.account, Some(&claim.attempt), "<m0@x>", 2_000, Some(9_000), None, None)
            .await
            .expect("mark")
            .outcome,
        MarkedSent::Recorded
    );
    assert_eq!(
        w.ledger
            .mark_sent(&k, &w.account, Some(&claim.attempt), "<m0@x>", 2_000, Some(9_000), None, None)
            .await
            .expect("mark")
            .outcome,
        MarkedSent::Duplicate
    );
    assert_eq!(w.stats().await.get("step:0:sent"), Some(&1), "counted once");
    let next = w.key(0, 1);
    assert_eq!(w.state(&next).await, Some(SendState::Queued));
    assert_eq!(w.due(true).await, vec![next.member()]);
    let inflight: Vec<String> = w.conn.clone().zrange(w.keys.inflight(), 0, -1).await.expect("inflight");
    assert!(inflight.is_empty());

    // the last step completes the lead
    let last = w.claim(0, 1).await;
    let out = w
        .ledger
        .mark_sent(&next, &w.account, Some(&last.attempt), "<m1@x>", 3_000, None, None, None)
        .await
        .expect("mark");
    assert_eq!(out.outcome, MarkedSent::Recorded);
    assert_eq!(w.lead_state(0).await, Some(LeadState::Completed));
}

/// The outbox entries' field names, oldest first.
async fn outbox_fields(w: &World) -> Vec<std::collections::BTreeSet<String>> {
    let entries: redis::streams::StreamRangeReply = w.conn.clone().xrange_all(w.keys.outbox()).await.expect("xrange");
    entries.ids.iter().map(|e| e.map.keys().cloned().collect()).collect()
}

/// Records lead `lead`'s step `step` sent (its next step due at `next`, if any).
async fn sent_step(w: &World, lead: usize, step: usize, next: Option<i64>) {
    let claim = w.claim(lead, step).await;
    let (id, key) = (format!("<m{lead}.{step}@x>"), w.key(lead, step));
    let out = w.ledger.mark_sent(&key, &w.account, Some(&claim.attempt), &id, 2_000, next, None, None);
    assert_eq!(out.await.expect("mark").outcome, MarkedSent::Recorded);
}

/// The send scripts write the webhook outbox only while an endpoint exists: nobody could
/// receive an event published before, and the stream would keep it for no one.
#[tokio::test]
async fn the_send_scripts_publish_events_only_while_a_webhook_endpoint_exists() {
    let w = World::new(3, None).await;
    let fields = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<std::collections::BTreeSet<_>>();

    sent_step(&w, 0, 0, Some(9_000)).await;
    assert!(outbox_fields(&w).await.is_empty(), "no endpoint: no event kept");
    let _: () = w.conn.clone().hset(w.keys.webhooks(), "w1", "{}").await.expect("an endpoint");
    sent_step(&w, 1, 0, Some(9_000)).await;
    sent_step(&w, 1, 1, None).await;
    let c2 = w.claim(2, 0).await;
    assert!(w.ledger.fail(&w.key(2, 0), &w.account, &c2, "554 5.7.1 rejected", None).await.expect("fail"));
    assert_eq!(
        outbox_fields(&w).await,
        vec![fields(&["event"]), fields(&["event", "then"]), fields(&["event"])],
        "sent; sent and COMPLETED in one entry; FAILED"
    );
    let _: () = w.conn.clone().hdel(w.keys.webhooks(), "w1").await.expect("the last endpoint gone");
    sent_step(&w, 0, 1, None).await;
    assert_eq!(outbox_fields(&w).await.len(), 3, "nothing more kept");
    assert_eq!(w.stats().await.get("step:1:sent"), Some(&2), "the sends are recorded either way");
}

/// One call records an accepted send and claims the next: each half does exactly what its
/// own script does alone, and neither's outcome changes the other's (a refused claim still
/// records, a stale record still claims).
#[tokio::test]
async fn mark_sent_and_reserve_records_one_send_and_claims_the_next_independently() {
    let w = World::new(4, None).await;
    let accepted = |lead: usize, claim: &Claim, attempt: Option<&str>| Accepted {
        key: w.key(lead, 0),
        account: w.account,
        attempt: attempt.unwrap_or(&claim.attempt).to_owned(),
        message_id: format!("<m{lead}@x>"),
        now_ms: 2_000,
        next_due_ms: Some(9_000),
        recipient: format!("l{lead}@example.test"),
    };
    let (k1, e1) = (w.key(1, 0), "l1@example.test".to_owned());

    // Both halves happen: lead 0 SENT with its follow-up queued, lead 1 claimed.
    let c0 = w.claim(0, 0).await;
    let (marked, reserved) =
        w.ledger.mark_sent_and_reserve(&accepted(0, &c0, None), &w.args(&k1, &e1, 2_000, 100)).await.expect("call");
    assert_eq!(marked.outcome, MarkedSent::Recorded);
    assert!(marked.next.is_empty(), "no peek rides with a claim");
    let Reservation::Claimed(c1) = reserved else { panic!("expected a claim, got {reserved:?}") };
    assert_eq!(c1.used, 2, "the cap counts both");
    assert_eq!(w.state(&w.key(0, 0)).await, Some(SendState::Sent));
    assert_eq!(w.state(&w.key(0, 1)).await, Some(SendState::Queued), "the follow-up is queued");
    assert_eq!(w.state(&k1).await, Some(SendState::Sending));
    assert!(w.ledger.mark_data_phase(&k1, &c1.attempt).await.expect("data"), "the claim is lead 1's attempt's");
    assert_eq!(w.stats().await.get("step:0:sent"), Some(&1));
    let inflight: Vec<String> = w.conn.clone().zrange(w.keys.inflight(), 0, -1).await.expect("inflight");
    assert_eq!(inflight, vec![k1.member()], "lead 0 left in-flight, lead 1 entered it");

    // A refused claim (the cap is reached) still records lead 1, and takes no slot.
    let (k2, e2) = (w.key(2, 0), "l2@example.test".to_owned());
    let (marked, reserved) =
        w.ledger.mark_sent_and_reserve(&accepted(1, &c1, None), &w.args(&k2, &e2, 3_000, 2)).await.expect("call");
    assert_eq!(marked.outcome, MarkedSent::Recorded);
    assert_eq!(reserved, Reservation::CapReached);
    assert_eq!(w.state(&k1).await, Some(SendState::Sent));
    assert_eq!(w.state(&k2).await, Some(SendState::Queued));
    assert_eq!(w.used().await, 2);

    // A stale record (not the claim's attempt) writes nothing, and the claim still happens;
    // recording lead 1 twice is a duplicate, never a second count.
    let (marked, reserved) =
        w.ledger.mark_sent_and_reserve(&accepted(1, &c1, None), &w.args(&k2, &e2, 3_000, 100)).await.expect("call");
    assert_eq!(marked.outcome, MarkedSent::Duplicate);
    let Reservation::Claimed(c2) = reserved else { panic!("expected a claim, got {reserved:?}") };
    let (k3, e3) = (w.key(3, 0), "l3@example.test".to_owned());
    let (marked, reserved) = w
        .ledger
        .mark_sent_and_reserve(&accepted(2, &c2, Some("not-the-claim")), &w.args(&k3, &e3, 4_000, 100))
        .await
        .expect("call");
    assert_eq!(marked.outcome, MarkedSent::Stale);
    assert!(matches!(reserved, Reservation::Claimed(_)), "{reserved:?}");
    assert_eq!(w.state(&k2).await, Some(SendState::Sending), "lead 2 is still its own attempt's to record");
    assert_eq!(w.stats().await.get("step:0:sent"), Some(&2), "leads 0 and 1, once each");
    assert_eq!(w.used().await, 4);
}

/// A recorded send peeks at the mailbox's next due send among the campaigns it may send
/// for, as `next_due` would pick it (follow-ups first, only what is due by the peek time),
/// with its lead; a campaign with nothing queued is passed over.
#[tokio::test]
async fn mark_sent_peeks_at_the_next_due_send_with_its_lead() {
    let w = World::new(3, None).await;
    let idle = CampaignId::new_random();
    let among = [idle, w.campaign];
    let peek = |by| Some(Peek { due_by_ms: by, campaigns: &among, count: 1 });
    let claim = w.claim(0, 0).await;
    let out = w.first_sent(0, &claim, 2_000, 9_000, peek(2_000)).await;
    // lead 0's follow-up is due at 9,000, after the peek time: a first step comes back.
    let next = out.next.into_iter().next().expect("a first step is due");
    assert!(!next.due.followup);
    assert_eq!(next.due.key.step, 0);
    assert_ne!(next.due.key.lead, w.key(0, 0).lead);
    assert_eq!(next.among, among, "what it was picked among");
    let lead = next.lead.expect("its lead");
    assert_eq!(lead.id, next.due.key.lead);
    assert!(lead.email.as_str().ends_with("@example.test"));

    // Peeking after 9,000: lead 0's follow-up goes first.
    let (i, _) = (1..3).map(|i| (i, w.key(i, 0))).find(|(_, k)| *k == next.due.key).expect("one of ours");
    let claim = w.claim(i, 0).await;
    let out = w.first_sent(i, &claim, 3_000, 90_000, peek(10_000)).await;
    let next = out.next.into_iter().next().expect("the follow-up is due");
    assert!(next.due.followup);
    assert_eq!(next.due.key, w.key(0, 1));
    assert_eq!(next.due.due_ms, 9_000);

    // Without a peek, or when the record is not this attempt's, nothing comes back.
    let k = w.key(3 - i, 0);
    let claim = w.claim(3 - i, 0).await;
    let stale = w.ledger.mark_sent(&k, &w.account, Some("not-ours"), "<m2@x>", 4_000, None, None, peek(99_000)).await;
    assert!(stale.expect("mark").next.is_empty());
    let out = w.ledger.mark_sent(&k, &w.account, Some(&claim.attempt), "<m2@x>", 4_000, None, None, None).await;
    assert!(out.expect("mark").next.is_empty());
}

/// Asked for several, the peek returns them in the order repeated `next_due` calls would
/// pick them: due follow-ups first, then first steps, each earliest first, every one with
/// its lead; never more than asked, never one due after the peek time.
#[tokio::test]
async fn mark_sent_peeks_at_several_due_sends_in_next_due_order() {
    let w = World::new(5, None).await;
    let idle = CampaignId::new_random();
    let among = [idle, w.campaign];
    let claim = w.claim(0, 0).await;
    // Lead 0's follow-up falls due at 1,500, before the peek time; lead 1's first step is
    // pushed after it.
    w.ledger.defer(&w.key(1, 0), &w.account, 50_000).await.expect("defer");
    let peek = |count| Some(Peek { due_by_ms: 2_000, campaigns: &among, count });
    let out = w.first_sent(0, &claim, 1_000, 1_500, peek(3)).await;
    let firsts: Vec<String> = w.due(false).await.into_iter().filter(|m| *m != w.key(1, 0).member()).collect();
    let got: Vec<(String, bool, i64)> =
        out.next.iter().map(|p| (p.due.key.member(), p.due.followup, p.due.due_ms)).collect();
    assert_eq!(
        got,
        vec![(w.key(0, 1).member(), true, 1_500), (firsts[0].clone(), false, 0), (firsts[1].clone(), false, 0)],
        "the follow-up, then the first steps in the queue's order"
    );
    assert_eq!(
        w.ledger.next_due(&w.account, &among, 2_000).await.expect("next").map(|d| d.key),
        Some(out.next[0].due.key.clone()),
        "the first is what next_due picks"
    );
    for p in &out.next {
        assert_eq!(p.lead.as_ref().map(|l| &l.id), Some(&p.due.key.lead), "each with its own lead");
        assert_eq!(p.among, among);
    }

    // More than there is: everything due by the peek time, and nothing after it.
    let claim = w.claim(2, 0).await;
    let out = w.first_sent(2, &claim, 1_000, 90_000, peek(10)).await;
    let got: Vec<String> = out.next.iter().map(|p| p.due.key.member()).collect();
    assert_eq!(got.len(), 3, "lead 0's follow-up and leads 3 and 4: {got:?}");
    assert!(!got.contains(&w.key(1, 0).member()) && !got.contains(&w.key(2, 1).member()), "{got:?}");
}

#[tokio::test]
async fn fail_bounces_and_suppresses_only_recipient_errors_and_gives_the_slot_back() {
    let w = World::new(2, None).await;
    let (k0, k1) = (w.key(0, 0), w.key(1, 0));
    let c0 = w.claim(0, 0).await;
    assert!(
        !w.ledger.fail(&k0, &w.account, &Claim { attempt: "x".into(), ..c0.clone() }, "554", None).await.expect("fail")
    );
    assert!(w.ledger.fail(&k0, &w.account, &c0, "554 5.7.1 rejected", None).await.expect("fail"));
    assert_eq!((w.state(&k0).await, w.lead_state(0).await), (Some(SendState::Failed), Some(LeadState::Failed)));
    let c1 = w.claim(1, 0).await;
    assert!(
        w.ledger.fail(&k1, &w.account, &c1, "550 5.1.1 no such user", Some("L1@example.test")).await.expect("fail")
    );
    assert_eq!(w.lead_state(1).await, Some(LeadState::Bounced));
    assert_eq!(
        w.campaigns.suppression_reason("l1@example.test").await.expect("reason").as_deref(),
        Some("hard_bounce")
    );
    assert_eq!(w.campaigns.suppression_reason("l0@example.test").await.expect("reason"), None);
    assert_eq!(w.used().await, 0, "refused sends give their slots back");
    let stats = w.stats().await;
    assert_eq!((stats.get("failed"), stats.get("bounced")), (Some(&1), Some(&1)));
}

#[tokio::test]
async fn uncertain_then_confirmed_from_sent_leaves_the_uncertain_count() {
    let w = World::new(1, None).await;
    let k = w.key(0, 0);
    let claim = w.claim(0, 0).await;
    assert!(
        !w.ledger.uncertain(&k, &w.account, &Claim { attempt: "x".into(), ..claim.clone() }, "e").await.expect("u")
    );
    assert!(w.ledger.uncertain(&k, &w.account, &claim, "timed out after DATA").await.expect("uncertain"));
    assert_eq!(w.state(&k).await, Some(SendState::Uncertain));
    assert_eq!(w.stats().await.get("uncertain"), Some(&1));
    assert_eq!(w.uncertain_members().await, vec![k.member()]);
    assert_eq!(w.used().await, 1, "an uncertain send keeps its slot");

    assert_eq!(w.ledger.confirm_sent(&k, "<m0@x>", Some(5_000)).await.expect("confirm"), MarkedSent::Recorded);
    let rec = w.ledger.send_record(&k).await.expect("rec").expect("rec");
    assert_eq!((rec.state, rec.confirmed), (SendState::Sent, true));
    let stats = w.stats().await;
    assert_eq!((stats.get("uncertain"), stats.get("step:0:sent")), (Some(&0), Some(&1)));
    assert!(w.uncertain_members().await.is_empty());
    assert_eq!(w.state(&w.key(0, 1)).await, Some(SendState::Queued), "the next step follows");
    assert_eq!(w.ledger.confirm_sent(&k, "<m0@x>", None).await.expect("confirm"), MarkedSent::Confirmed);
}

#[tokio::test]
async fn a_late_250_from_the_claiming_attempt_settles_a_swept_send() {
    let w = World::new(1, None).await;
    let k = w.key(0, 0);
    let claim = w.claim(0, 0).await;
    assert!(w.ledger.mark_data_phase(&k, &claim.attempt).await.expect("data"));
    assert_eq!(w.ledger.sweep(&k).await.expect("sweep"), Swept::Uncertain);
    let out =
        w.ledger.mark_sent(&k, &w.account, Some(&claim.attempt), "<m@x>", 1, None, None, None).await.expect("mark");
    assert_eq!(out.outcome, MarkedSent::Recorded);
    assert_eq!(w.stats().await.get("uncertain"), Some(&0));
    assert!(w.uncertain_members().await.is_empty());
}

#[tokio::test]
async fn sweep_requeues_before_data_and_marks_uncertain_after() {
    let w = World::new(2, None).await;
    let (k0, k1) = (w.key(0, 0), w.key(1, 0));
    let _pre = w.claim(0, 0).await;
    let data = w.claim(1, 0).await;
    assert!(w.ledger.mark_data_phase(&k1, &data.attempt).await.expect("data"));
    assert_eq!(w.used().await, 2);
    assert_eq!(w.ledger.stale_inflight(i64::MAX).await.expect("stale").len(), 2);

    assert_eq!(w.ledger.sweep(&k0).await.expect("sweep"), Swept::Requeued);
    assert_eq!(w.state(&k0).await, Some(SendState::Queued));
    assert_eq!(w.used().await, 1, "a send that never reached DATA gives its slot back");
    assert_eq!(w.ledger.sweep(&k1).await.expect("sweep"), Swept::Uncertain);
    assert_eq!(w.state(&k1).await, Some(SendState::Uncertain));
    assert_eq!(w.uncertain_members().await, vec![k1.member()]);
    assert_eq!(w.used().await, 1, "an uncertain send keeps its slot");
    assert_eq!(w.ledger.sweep(&k1).await.expect("sweep"), Swept::Gone);
    assert!(w.ledger.stale_inflight(i64::MAX).await.expect("stale").is_empty());
}

/// Where the Sent folder settles a dead worker's send, the claim is taken in `data`: the
/// sweep makes it UNCERTAIN (slot kept) like a marked one, never requeues it blindly, and
/// the attempt still records its 250 or its refusal.
#[tokio::test]
async fn a_claim_taken_in_data_is_swept_to_uncertain_and_still_recorded_by_its_attempt() {
    let w = World::new(3, None).await;
    let claim_in_data = async |lead: usize| {
        let (key, email) = (w.key(lead, 0), format!("l{lead}@example.test"));
        let args = ReserveArgs { phase: SendPhase::Data, ..w.args(&key, &email, 1_000, 100) };
        match w.ledger.reserve(&args).await.expect("reserve") {
            Reservation::Claimed(c) => c,
            other => panic!("expected a claim, got {other:?}"),
        }
    };
    let (k0, k1, k2) = (w.key(0, 0), w.key(1, 0), w.key(2, 0));
    let (c0, c1, c2) = (claim_in_data(0).await, claim_in_data(1).await, claim_in_data(2).await);
    assert_eq!(c0.phase, SendPhase::Data);
    let rec = w.ledger.send_record(&k0).await.expect("record").expect("exists");
    assert_eq!((rec.state, rec.phase), (SendState::Sending, Some(SendPhase::Data)));

    // A dead worker's send: UNCERTAIN, its slot kept, waiting for the Sent folder.
    assert_eq!(w.ledger.sweep(&k0).await.expect("sweep"), Swept::Uncertain);
    assert_eq!(w.uncertain_members().await, vec![k0.member()]);
    assert_eq!(w.used().await, 3);
    // A stalled attempt whose 250 came after the sweep still records it.
    assert_eq!(w.ledger.sweep(&k1).await.expect("sweep"), Swept::Uncertain);
    let sent = w.ledger.mark_sent(&k1, &w.account, Some(&c1.attempt), "m1@x", 2_000, None, None, None);
    assert_eq!(sent.await.expect("sent").outcome, MarkedSent::Recorded);
    assert_eq!(w.state(&k1).await, Some(SendState::Sent));
    // A refusal before the body (the live worker knows nothing went out) gives the slot back.
    let out = w.ledger.release(&k2, &w.account, false, &c2, 0, 8, "451 later").await.expect("release");
    assert_eq!((out, w.state(&k2).await), (Released::Retry, Some(SendState::Queued)));
    assert_eq!(w.used().await, 2);
    // An old claim in data is still marked before its body, and the mark finds it swept.
    assert!(!w.ledger.mark_data_phase(&k0, &c0.attempt).await.expect("mark"), "swept: the claim is lost");
}

#[tokio::test]
async fn uncertain_sends_are_requeued_with_their_slot_or_settled_without_a_resend() {
    let w = World::new(2, None).await;
    let (k0, k1) = (w.key(0, 0), w.key(1, 0));
    for (lead, key) in [(0, &k0), (1, &k1)] {
        let c = w.claim(lead, 0).await;
        assert!(w.ledger.uncertain(key, &w.account, &c, "cut after DATA").await.expect("uncertain"));
    }
    assert_eq!(w.used().await, 2);

    // authoritative Sent folder, not found: queued again, its slot given back
    assert!(w.ledger.requeue_uncertain(&k0, &w.account).await.expect("requeue"));
    assert_eq!(w.state(&k0).await, Some(SendState::Queued));
    assert_eq!(w.used().await, 1);
    assert!(!w.ledger.requeue_uncertain(&k0, &w.account).await.expect("requeue"), "only once");

    // not authoritative: stays UNCERTAIN, never resent, the sequence goes on
    assert!(w.ledger.settle_uncertain(&k1, &w.account, Some(7_000)).await.expect("settle"));
    let rec = w.ledger.send_record(&k1).await.expect("rec").expect("rec");
    assert_eq!((rec.state, rec.settled), (SendState::Uncertain, true));
    assert!(!w.due(false).await.contains(&k1.member()), "never queued again");
    assert_eq!(w.state(&w.key(1, 1)).await, Some(SendState::Queued));
    assert!(w.uncertain_members().await.is_empty());
    assert_eq!(w.stats().await.get("uncertain"), Some(&1), "requeued one left the count, the settled one stays");
    assert!(!w.ledger.settle_uncertain(&k1, &w.account, None).await.expect("settle"), "only once");
}

#[tokio::test]
async fn cancel_takes_a_send_out_of_the_queues_and_may_end_the_lead() {
    let w = World::new(2, None).await;
    let (k0, k1) = (w.key(0, 0), w.key(1, 0));
    w.ledger.cancel(&k0, &w.account, None, "lead stopped").await.expect("cancel");
    assert_eq!((w.state(&k0).await, w.lead_state(0).await), (Some(SendState::Cancelled), Some(LeadState::Active)));
    w.ledger.cancel(&k1, &w.account, Some(LeadState::Failed), "template: missing first_name").await.expect("cancel");
    assert_eq!(w.lead_state(1).await, Some(LeadState::Failed));
    assert!(w.due(false).await.is_empty());
    assert_eq!(w.stats().await.get("skipped"), Some(&1));
}

#[tokio::test]
async fn chains_are_kept_replaced_and_ended_only_by_their_token() {
    let w = World::new(0, None).await;
    let a = &w.account;
    assert!(!w.ledger.start_chain(a, "newcomer", 60_000, true).await.expect("start"), "a live chain is kept");
    assert!(w.ledger.keep_chain(a, &w.token, 60_000).await.expect("keep"));
    assert!(!w.ledger.keep_chain(a, "newcomer", 60_000).await.expect("keep"), "a stale token keeps nothing");
    assert!(w.ledger.start_chain(a, "replacement", 60_000, false).await.expect("start"), "replace supersedes");
    assert!(!w.ledger.keep_chain(a, &w.token, 60_000).await.expect("keep"), "the old token is dead");
    assert!(w.ledger.keep_chain(a, "replacement", 0).await.expect("end"));
    assert!(w.ledger.start_chain(a, "fresh", 60_000, true).await.expect("start"), "an ended chain can start anew");
}

#[tokio::test]
async fn first_steps_are_queued_once_per_active_unassigned_lead() {
    let w = World::new(2, None).await;
    let again: Vec<_> = (0..2).map(|i| (w.key(i, 0).lead, w.account)).collect();
    assert_eq!(w.ledger.enqueue_first_steps(&w.campaign, &again, 0).await.expect("enqueue"), 0, "already assigned");
    assert_eq!(w.due(false).await.len(), 2);
    assert_eq!(w.ledger.lead_account(&w.campaign, &w.key(0, 0).lead).await.expect("acct"), Some(w.account));
}

#[tokio::test]
async fn reserve_refuses_an_address_whose_whole_domain_is_suppressed() {
    let w = World::new(1, None).await;
    let k = w.key(0, 0);
    w.campaigns
        .suppress_entries(&["@example.test".to_owned()], SuppressionReason::Manual)
        .await
        .expect("suppress domain");
    assert_eq!(
        w.ledger.reserve(&w.args(&k, "L0@Example.Test", 1_000, 100)).await.expect("reserve"),
        Reservation::Suppressed
    );
    assert_eq!(w.lead_state(0).await, Some(LeadState::Suppressed));
    assert_eq!(w.used().await, 0);
}

/// The OAuth2 token scripts: the refresh lease, the fenced store of a rotated refresh
/// token with its access token, NEEDS_REAUTH once, and a new grant.
#[tokio::test]
async fn oauth_token_scripts_fence_on_the_refresh_token_and_mark_needs_reauth_once() {
    use coldsend_core::account::AccountStatus;
    use coldsend_core::sealed::SealingKey;
    use coldsend_core::storage::accounts::{AccountStore, Credentials};
    use coldsend_core::storage::oauth::{AccessToken, Marked, OAuthTokens, Stored};
    use secrecy::{ExposeSecret, SecretString};

    let redis = Redis::start();
    let conn =
        redis::aio::ConnectionManager::new(redis::Client::open(redis.url()).expect("url")).await.expect("connect");
    let (accounts, tokens) = (AccountStore::new(conn.clone(), P), OAuthTokens::new(conn.clone(), P));
    let key = SealingKey::from_text(&SecretString::from(SealingKey::generate_text())).expect("key");
    let body = serde_json::json!({
        "email_address": "ann@example.test", "display_name": "Ann", "inbox_type": "CUSTOM_SMTP", "daily_limit": 10,
        "smtp_host": "127.0.0.1", "smtp_port": 587, "imap_host": "127.0.0.1", "imap_port": 993,
        "auth": {"type": "OAUTH2", "provider": "CUSTOM", "refresh_token": "rt-1", "client_id": "c",
                 "client_secret": "cs", "token_url": "http://127.0.0.1:1/token"}
    });
    let new = coldsend_core::SenderAccountRequest::parse_value(body).expect("valid");
    assert_eq!(new.smtp.username, "ann@example.test", "OAuth2 signs in as the mailbox by default");
    let row = accounts.create(new, &key).await.expect("create");
    let id = row.account.id;
    let grant = |c: Option<Credentials>| match c {
        Some(Credentials::OAuth2(g)) => g,
        _ => panic!("an OAuth2 grant"),
    };
    let g = grant(accounts.credentials(&id, &key).await.expect("open"));
    let report =
        coldsend_core::ValidationReport { smtp: None, imap: None, checked_at: time::OffsetDateTime::now_utc() };
    assert_eq!(g.refresh_token.expose_secret(), "rt-1");
    assert_eq!(g.client_secret.as_ref().map(|s| s.expose_secret().to_owned()), Some("cs".into()));
    assert!(g.access.is_none());

    // The lease: one holder at a time; only the holder releases it.
    let ttl = std::time::Duration::from_secs(30);
    assert!(tokens.try_lease(&id, "a", ttl).await.expect("lease"));
    assert!(!tokens.try_lease(&id, "b", ttl).await.expect("lease"));
    assert!(!tokens.release_lease(&id, "b").await.expect("release"));
    assert!(tokens.release_lease(&id, "a").await.expect("release"));
    assert!(tokens.try_lease(&id, "b", ttl).await.expect("lease"));

    // Stored with the rotated refresh token; the old sealed value no longer fences.
    let access =
        |t: &str| AccessToken { token: SecretString::from(t.to_owned()), expires_at_ms: 2_000, lifetime_ms: 1_000 };
    let rotated = SecretString::from("rt-2".to_owned());
    let stored = tokens.store(&id, &key, &g.refresh_sealed, Some(&rotated), &access("at-1")).await.expect("store");
    assert_eq!(stored, Stored::Stored);
    let g2 = grant(accounts.credentials(&id, &key).await.expect("open"));
    assert_eq!(g2.refresh_token.expose_secret(), "rt-2");
    assert_eq!(g2.access.as_ref().map(|a| a.token.expose_secret().to_owned()), Some("at-1".into()));
    assert!(g2.access.as_ref().is_some_and(|a| a.due(1_750) && !a.due(1_700)), "renewed a quarter early");
    let late = tokens.store(&id, &key, &g.refresh_sealed, None, &access("at-old")).await.expect("store");
    assert_eq!(late, Stored::Superseded, "a refresh made with the old token is discarded");
    redis.assert_nowhere("rt-2");
    redis.assert_nowhere("at-1");

    // NEEDS_REAUTH: only for the current grant, once.
    assert_eq!(tokens.needs_reauth(&id, &g.refresh_sealed, &report).await.expect("mark"), Marked::Superseded);
    assert_eq!(tokens.needs_reauth(&id, &g2.refresh_sealed, &report).await.expect("mark"), Marked::Marked);
    assert_eq!(tokens.needs_reauth(&id, &g2.refresh_sealed, &report).await.expect("mark"), Marked::Already);
    let row = accounts.get(&id).await.expect("get").expect("row");
    assert_eq!(row.status, AccountStatus::NeedsReauth);
    assert!(grant(accounts.credentials(&id, &key).await.expect("open")).access.is_none(), "access token dropped");

    // A new grant: pending validation under a new generation, the client secret kept.
    let generation = tokens
        .relink(&row.account, &key, &SecretString::from("rt-3".to_owned()), None)
        .await
        .expect("relink")
        .expect("exists");
    assert_eq!(generation, row.generation + 1);
    let g3 = grant(accounts.credentials(&id, &key).await.expect("open"));
    assert_eq!(g3.refresh_token.expose_secret(), "rt-3");
    assert_eq!(g3.client_secret.map(|s| s.expose_secret().to_owned()), Some("cs".into()));
    assert_eq!(accounts.get(&id).await.expect("get").expect("row").status, AccountStatus::PendingValidation);

    // Gone: every script says so.
    assert!(accounts.delete(&id).await.expect("delete"));
    assert_eq!(tokens.store(&id, &key, &g3.refresh_sealed, None, &access("x")).await.expect("store"), Stored::Gone);
    assert_eq!(tokens.needs_reauth(&id, &g3.refresh_sealed, &report).await.expect("mark"), Marked::Gone);
    assert_eq!(tokens.relink(&row.account, &key, &rotated, None).await.expect("relink"), None);
}

#[tokio::test]
async fn connection_health_scripts_count_per_protocol_disconnect_once_and_reconnect_on_a_doubling_schedule() {
    use coldsend_core::account::AccountStatus;
    use coldsend_core::sealed::SealingKey;
    use coldsend_core::storage::accounts::{AccountStore, ConnectFailure, Recorded};
    use coldsend_core::{ProbeFailure, Protocol, ValidationCode, ValidationReport};
    use secrecy::SecretString;

    let redis = Redis::start();
    let conn =
        redis::aio::ConnectionManager::new(redis::Client::open(redis.url()).expect("url")).await.expect("connect");
    let accounts = AccountStore::new(conn.clone(), P);
    let key = SealingKey::from_text(&SecretString::from(SealingKey::generate_text())).expect("key");
    let body = coldsend_tests::account_json("ann", "pw", 587, true, 993, 10);
    let new = coldsend_core::SenderAccountRequest::parse_value(body).expect("valid");
    let id = accounts.create(new, &key).await.expect("create").account.id;
    let failed = |protocol| ValidationReport {
        smtp: (protocol == Protocol::Smtp).then(|| ProbeFailure {
            protocol,
            code: ValidationCode::ConnectionRefused,
            message: "refused".into(),
        }),
        imap: (protocol == Protocol::Imap).then(|| ProbeFailure {
            protocol,
            code: ValidationCode::ConnectionRefused,
            message: "refused".into(),
        }),
        checked_at: time::OffsetDateTime::now_utc(),
    };
    let passed = ValidationReport { smtp: None, imap: None, checked_at: time::OffsetDateTime::now_utc() };
    let status = async || accounts.get(&id).await.expect("get").expect("row").status;

    // Only an ACTIVE account counts failures.
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("count"),
        ConnectFailure::NotActive
    );
    assert_eq!(accounts.record_validation(&id, 1, &passed).await.expect("record"), Recorded::Stored);

    // Failures in a row per protocol: a session opened with one protocol resets only its count.
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("c"),
        ConnectFailure::Counted(1)
    );
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("c"),
        ConnectFailure::Counted(2)
    );
    accounts.connect_succeeded(&id, Protocol::Imap).await.expect("imap ok");
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Imap), 3, 0).await.expect("c"),
        ConnectFailure::Counted(1)
    );
    accounts.connect_succeeded(&id, Protocol::Smtp).await.expect("smtp ok");
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("c"),
        ConnectFailure::Counted(1)
    );
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("c"),
        ConnectFailure::Counted(2)
    );
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, now + 1000).await.expect("c"),
        ConnectFailure::Disconnected
    );
    // Replicas failing at the same moment: the status changes (and is told) once.
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Imap), 1, 0).await.expect("c"),
        ConnectFailure::NotActive
    );
    let row = accounts.get(&id).await.expect("get").expect("row");
    assert_eq!(row.status, AccountStatus::Disconnected);
    assert_eq!(row.reconnect_at_ms, Some(now + 1000));
    assert_eq!(row.report.and_then(|r| r.smtp).map(|f| f.code), Some(ValidationCode::ConnectionRefused));

    // Re-validation: not before it is due; then once per due time, each delay doubling to the cap.
    assert_eq!(accounts.reconnect_due(&id, now, 1000, 3000).await.expect("due"), None);
    let g2 = accounts.reconnect_due(&id, now + 1000, 1000, 3000).await.expect("due").expect("generation");
    assert_eq!(g2, 2);
    assert_eq!(accounts.reconnect_due(&id, now + 1000, 1000, 3000).await.expect("due"), None, "one replica wins");
    assert_eq!(accounts.get(&id).await.expect("get").expect("row").reconnect_at_ms, Some(now + 1000 + 2000));
    assert_eq!(accounts.reconnect_due(&id, now + 3000, 1000, 3000).await.expect("due"), Some(3));
    assert_eq!(accounts.get(&id).await.expect("get").expect("row").reconnect_at_ms, Some(now + 3000 + 3000));

    // A failed validation (scheduled or asked for) keeps it DISCONNECTED; so does asking.
    assert_eq!(accounts.record_validation(&id, 3, &failed(Protocol::Imap)).await.expect("r"), Recorded::Stored);
    assert_eq!(status().await, AccountStatus::Disconnected);
    assert_eq!(accounts.request_validation(&id).await.expect("ask"), Some(4));
    assert_eq!(status().await, AccountStatus::Disconnected);
    // A passed one reconnects it, with a clean record: counting starts from zero.
    assert_eq!(accounts.record_validation(&id, 4, &passed).await.expect("r"), Recorded::Reconnected);
    let row = accounts.get(&id).await.expect("get").expect("row");
    assert_eq!((row.status, row.reconnect_at_ms), (AccountStatus::Active, None));
    assert_eq!(
        accounts.connect_failed(&id, &failed(Protocol::Smtp), 3, 0).await.expect("c"),
        ConnectFailure::Counted(1)
    );
    // Any other account still goes PENDING_VALIDATION when asked, and VALIDATION_FAILED on failure.
    assert_eq!(accounts.request_validation(&id).await.expect("ask"), Some(5));
    assert_eq!(status().await, AccountStatus::PendingValidation);
    assert_eq!(accounts.record_validation(&id, 5, &failed(Protocol::Smtp)).await.expect("r"), Recorded::Stored);
    assert_eq!(status().await, AccountStatus::ValidationFailed);
    assert_eq!(accounts.reconnect_due(&id, now + 100_000, 1000, 3000).await.expect("due"), None);
}

#[tokio::test]
async fn reserve_spreads_the_cap_s_remaining_sends_over_the_window_left() {
    let w = World::new(3, None).await;
    let hours8 = 8 * 3_600_000;
    let next_send = async || -> i64 {
        let v: String = w.conn.clone().get(w.keys.next_send(&w.account)).await.expect("next-send");
        v.parse().expect("ms")
    };
    // 25 sends allowed today, 8 hours of window left: the next send about 19.2 minutes on.
    let (k0, e0) = (w.key(0, 0), "l0@example.test");
    let args = ReserveArgs { spread: Some((1_000 + hours8, 1000)), ..w.args(&k0, e0, 1_000, 25) };
    assert!(matches!(w.ledger.reserve(&args).await.expect("reserve"), Reservation::Claimed(_)));
    assert_eq!(next_send().await, 1_000 + hours8 / 25);
    // Refused before then, with the moment it is allowed.
    let (k1, e1) = (w.key(1, 0), "l1@example.test");
    let early = ReserveArgs { spread: Some((1_000 + hours8, 1000)), ..w.args(&k1, e1, 2_000, 25) };
    assert!(
        matches!(w.ledger.reserve(&early).await.expect("reserve"), Reservation::Gap(ms) if ms == 1_000 + hours8 / 25)
    );
    // Then: what is left of the window over the 23 sends left after this one, jittered.
    let at = 1_000 + hours8 / 25;
    let later = ReserveArgs { spread: Some((1_000 + hours8, 1200)), ..w.args(&k1, e1, at, 25) };
    assert!(matches!(w.ledger.reserve(&later).await.expect("reserve"), Reservation::Claimed(_)));
    assert_eq!(next_send().await, at + ((1_000 + hours8 - at) as f64 / 24.0 * 1.2).floor() as i64);
    // Never below the gap; without spread, the gap alone.
    let (k2, e2) = (w.key(2, 0), "l2@example.test");
    let now = next_send().await;
    let fast = ReserveArgs { gap_ms: 5_000, ..w.args(&k2, e2, now, 25) };
    assert!(matches!(w.ledger.reserve(&fast).await.expect("reserve"), Reservation::Claimed(_)));
    assert_eq!(next_send().await, now + 5_000);
}

#[tokio::test]
async fn the_bounce_rate_counts_recent_sends_and_pauses_once_past_the_limit() {
    use coldsend_core::storage::mailboxes::{MailboxHealth, MailboxPause};
    let w = World::new(3, None).await;
    let health = MailboxHealth::new(w.conn.clone(), P);
    // Three sends recorded as sent, newest first in the mailbox's recent list.
    for lead in 0..3 {
        let claim = w.claim(lead, 0).await;
        let k = w.key(lead, 0);
        w.ledger
            .mark_sent(&k, &w.account, Some(&claim.attempt), "<m@x>", 2_000, Some(9_000), None, None)
            .await
            .expect("mark");
    }
    let recent: Vec<String> = w.conn.clone().lrange(w.keys.recent_sends(&w.account), 0, -1).await.expect("recent");
    assert_eq!(recent, [w.key(2, 0).member(), w.key(1, 0).member(), w.key(0, 0).member()]);
    let pause = MailboxPause {
        until_ms: chrono::Utc::now().timestamp_millis() + 60_000,
        reason: "bounce_rate".into(),
        message: "m".into(),
    };
    // Judged only from 4 sends on: 1 of 3 is not enough sends yet.
    let r = health.hard_bounce(&w.account, &w.key(0, 0).member(), 100, 300, 4, &pause).await.expect("bounce");
    assert_eq!((r.bounced, r.sends, r.paused), (1, 3, false));
    // With 3 sends judged, 1/3 > 30 %: paused, once.
    let r = health.hard_bounce(&w.account, &w.key(0, 0).member(), 100, 300, 3, &pause).await.expect("bounce");
    assert_eq!((r.bounced, r.sends, r.paused), (1, 3, true));
    assert_eq!(health.pause(&w.account).await.expect("pause").map(|p| p.reason), Some("bounce_rate".into()));
    let r = health.hard_bounce(&w.account, &w.key(1, 0).member(), 100, 300, 3, &pause).await.expect("bounce");
    assert_eq!((r.bounced, r.paused), (2, false), "already paused: not again");
    // Only the window counts: the last send alone was not bounced.
    assert!(health.resume(&w.account).await.expect("resume"));
    let r = health.hard_bounce(&w.account, &w.key(0, 0).member(), 1, 0, 1, &pause).await.expect("bounce");
    assert_eq!((r.bounced, r.sends, r.paused), (0, 1, false));
}
