//! The due sends a chain already knows about: the `sent` script returns the mailbox's next
//! due sends with their leads, so the emails after it need no reads of their own.
//!
//! Only an order, never a claim: each send is still reserved (state, lead, suppression, cap,
//! gap) by the ledger, so a stale entry costs a refused reservation, never a second send.
//! Entries are trusted for [`FRESH`] only, so a follow-up that fell due since waits at most
//! that long behind first steps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coldsend_core::campaign::CampaignId;
use coldsend_core::storage::ledger::Peeked;

/// How long a peek stands for `Ledger::next_due`.
pub const FRESH: Duration = Duration::from_secs(1);

/// How many sends one peek asks for when the mailbox sends back to back. A mailbox whose
/// sends are paced apart asks for one: the rest would be stale before their turn.
pub const BATCH: usize = 16;

#[derive(Default)]
pub struct Lookahead {
    queue: VecDeque<Peeked>,
    at: Option<Instant>,
}

impl Lookahead {
    /// The next send, if the peek is fresh, was taken among exactly `among` and is due by
    /// `now_ms`; otherwise everything is dropped (the caller reads the queues itself).
    pub fn next(&mut self, among: &[CampaignId], now_ms: i64) -> Option<Peeked> {
        if !self.is_fresh() {
            self.clear();
            return None;
        }
        match self.queue.pop_front() {
            Some(p) if p.among == among && p.due.due_ms <= now_ms => Some(p),
            _ => {
                self.clear();
                None
            }
        }
    }

    /// What `next` would hand out now, left in place: the send after the current one.
    pub fn peek(&self, among: &[CampaignId], now_ms: i64) -> Option<&Peeked> {
        self.queue.front().filter(|p| self.is_fresh() && p.among == among && p.due.due_ms <= now_ms)
    }

    /// Whether the record of the current send should peek (nothing fresh is left).
    pub fn wants_more(&self) -> bool {
        self.queue.is_empty() || !self.is_fresh()
    }

    /// Replaces what is known with a new peek.
    pub fn fill(&mut self, peeked: Vec<Peeked>) {
        self.queue = peeked.into();
        self.at = Some(Instant::now());
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.at = None;
    }

    fn is_fresh(&self) -> bool {
        self.at.is_some_and(|at| at.elapsed() < FRESH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldsend_core::account::EmailAddress;
    use coldsend_core::lead::LeadId;
    use coldsend_core::send_key::SendKey;
    use coldsend_core::storage::ledger::DueSend;

    fn peeked(among: &[CampaignId], lead: &str, due_ms: i64) -> Peeked {
        let email = EmailAddress::parse(&format!("{lead}@example.test")).expect("email");
        let key = SendKey { campaign: among[0], lead: LeadId::for_email(&email), step: 0 };
        Peeked { due: DueSend { key, followup: false, due_ms }, lead: None, among: among.to_vec() }
    }

    #[test]
    fn hands_out_in_order_then_asks_for_more() {
        let among = [CampaignId::new_random()];
        let mut l = Lookahead::default();
        assert!(l.wants_more());
        l.fill(vec![peeked(&among, "a", 1), peeked(&among, "b", 2)]);
        assert!(!l.wants_more());
        assert_eq!(l.peek(&among, 10).map(|p| p.due.due_ms), Some(1), "peeking takes nothing");
        assert_eq!(l.next(&among, 10).map(|p| p.due.due_ms), Some(1));
        assert_eq!(l.peek(&among, 1).map(|p| p.due.due_ms), None, "not due by then");
        assert_eq!(l.next(&among, 10).map(|p| p.due.due_ms), Some(2));
        assert!(l.wants_more());
        assert!(l.next(&among, 10).is_none());
    }

    #[test]
    fn other_campaigns_or_a_later_due_time_drop_everything() {
        let among = [CampaignId::new_random()];
        let other = [CampaignId::new_random()];
        let mut l = Lookahead::default();
        l.fill(vec![peeked(&among, "a", 1), peeked(&among, "b", 2)]);
        assert!(l.next(&other, 10).is_none(), "the mailbox's campaigns changed");
        assert!(l.wants_more(), "and nothing is kept");
        l.fill(vec![peeked(&among, "a", 50), peeked(&among, "b", 60)]);
        assert!(l.next(&among, 10).is_none(), "not due yet");
        assert!(l.wants_more());
    }

    #[test]
    fn a_stale_peek_is_not_used() {
        let among = [CampaignId::new_random()];
        let mut l = Lookahead::default();
        l.fill(vec![peeked(&among, "a", 1)]);
        l.at = Some(Instant::now() - FRESH - Duration::from_millis(1));
        assert!(l.wants_more());
        assert!(l.peek(&among, 10).is_none());
        assert!(l.next(&among, 10).is_none());
    }
}
