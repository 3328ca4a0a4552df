//! Paces fresh IMAP logins per server: providers throttle (or lock) accounts when one
//! address opens many sessions at once, which a worker starting with thousands of
//! mailboxes would otherwise do. Per process; each replica paces its own logins.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginPacer {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl LoginPacer {
    /// `per_sec` logins per second to one server, in bursts of at most that many.
    pub fn new(per_sec: u32) -> Self {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate)) }
    }

    /// Waits for the server's next login slot.
    pub async fn until_ready(&self, server: &str) {
        self.limiter.until_key_ready(&server.to_ascii_lowercase()).await;
    }
}
