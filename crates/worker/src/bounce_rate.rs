//! The bounce-rate guard: each hard bounce (refused at send time, or a DSN found by a
//! scan) is counted against the mailbox's last sends; past the limit
//! (`health.bounce_rate_limit_percent` of the last `health.bounce_rate_window`) its sending
//! pauses, once, with an event — a mailbox mailing bad lists burns its domain's reputation.

use coldsend_core::account::SenderAccount;
use coldsend_core::send_key::SendKey;
use coldsend_core::settings::HealthConfig;
use coldsend_core::storage::inbox::{Inbox, InboxEvent, InboxKind};
use coldsend_core::storage::mailboxes::{MailboxHealth, MailboxPause};
use tracing::warn;

#[derive(Clone)]
pub struct BounceGuard {
    pub health: MailboxHealth,
    pub inbox: Inbox,
    pub config: HealthConfig,
}

impl BounceGuard {
    /// Counts the hard bounce of `key` (sent from `account`); returns whether it paused
    /// the mailbox.
    pub async fn hard_bounce(&self, account: &SenderAccount, key: &SendKey) -> Result<bool, redis::RedisError> {
        let c = &self.config;
        let now = chrono::Utc::now();
        let limit_permille = (c.bounce_rate_limit_percent * 10.0).round() as u32;
        let pause = MailboxPause {
            until_ms: (now + chrono::Duration::seconds(c.bounce_rate_pause_secs as i64)).timestamp_millis(),
            reason: "bounce_rate".into(),
            message: format!(
                "more than {}% of the last {} sends hard-bounced: check the lead lists, then resume sending",
                c.bounce_rate_limit_percent, c.bounce_rate_window
            ),
        };
        let rate = self
            .health
            .hard_bounce(
                &account.id,
                &key.member(),
                c.bounce_rate_window,
                limit_permille,
                c.bounce_rate_min_sends,
                &pause,
            )
            .await?;
        if rate.paused {
            warn!(account_id = %account.id, bounced = rate.bounced, sends = rate.sends, "bounce rate over the limit: sending paused");
            metrics::counter!("coldsend_bounce_rate_pauses_total").increment(1);
            let words = format!("{} of the last {} sends hard-bounced. {}", rate.bounced, rate.sends, pause.message);
            let event =
                InboxEvent::about_account(account, InboxKind::BounceRatePaused, "sending paused: bounce rate", &words);
            self.inbox.record(&event).await?;
        }
        Ok(rate.paused)
    }
}
