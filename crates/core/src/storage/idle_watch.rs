//! Which replica watches which mailbox with IMAP IDLE: one lease per mailbox
//! (`p:idle-watch:{acct}`, the holder's replica name with a PX expiry) and a heartbeat
//! per replica (`p:idle-watchers`), from which each replica works out its fair share.
//!
//! A mailbox has one watcher (two only while a handover completes) because a lease is
//! taken with `SET NX` and kept only by its holder; a dead replica's leases run out and
//! the others claim them; a new replica's heartbeat lowers everyone's share, the others
//! release the excess and it claims them. Scans never depend on a lease: a mailbox nobody watches is still polled.

use redis::aio::ConnectionManager;

use super::keys::Keys;
use super::lua_script;
use crate::account::AccountId;

lua_script!(HEARTBEAT, "idle_heartbeat");
lua_script!(CLAIM, "idle_claim");
lua_script!(RENEW, "idle_renew");
lua_script!(RELEASE, "idle_release");

/// Claims go to Redis in batches of this many candidates (one call each).
const CLAIM_BATCH: usize = 500;

#[derive(Clone)]
pub struct IdleLeases {
    conn: ConnectionManager,
    keys: Keys,
    replica: String,
}

impl IdleLeases {
    pub fn new(conn: ConnectionManager, prefix: &str, replica: &str) -> Self {
        Self { conn, keys: Keys::new(prefix), replica: replica.to_owned() }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Says this replica is alive for `ttl_ms` more (or, with `ttl_ms` 0, that it
    /// leaves); returns how many replicas are alive.
    pub async fn heartbeat(&self, now_ms: i64, ttl_ms: u64) -> Result<usize, redis::RedisError> {
        let expiry = if ttl_ms == 0 { 0 } else { now_ms + ttl_ms as i64 };
        HEARTBEAT
            .key(self.keys.idle_watchers())
            .arg(&self.replica)
            .arg(now_ms)
            .arg(expiry)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Claims up to `most` of `candidates` that nobody watches; returns those claimed.
    pub async fn claim(
        &self,
        candidates: &[AccountId],
        most: usize,
        lease_ms: u64,
    ) -> Result<Vec<AccountId>, redis::RedisError> {
        let mut claimed = Vec::new();
        for batch in candidates.chunks(CLAIM_BATCH) {
            let want = most.saturating_sub(claimed.len());
            if want == 0 {
                break;
            }
            let mut call = CLAIM.prepare_invoke();
            for a in batch {
                call.key(self.keys.idle_watch(a));
            }
            let got: Vec<usize> =
                call.arg(&self.replica).arg(lease_ms).arg(want).invoke_async(&mut self.conn.clone()).await?;
            claimed.extend(got.into_iter().filter_map(|i| batch.get(i.checked_sub(1)?)).copied());
        }
        Ok(claimed)
    }

    /// Renews this replica's leases; returns those it no longer holds.
    pub async fn renew(&self, held: &[AccountId], lease_ms: u64) -> Result<Vec<AccountId>, redis::RedisError> {
        let mut lost = Vec::new();
        for batch in held.chunks(CLAIM_BATCH) {
            let mut call = RENEW.prepare_invoke();
            for a in batch {
                call.key(self.keys.idle_watch(a));
            }
            let kept: Vec<u8> = call.arg(&self.replica).arg(lease_ms).invoke_async(&mut self.conn.clone()).await?;
            lost.extend(batch.iter().zip(kept).filter(|(_, k)| *k == 0).map(|(a, _)| *a));
        }
        Ok(lost)
    }

    /// Gives up the leases this replica holds among `accounts`; returns how many.
    pub async fn release(&self, accounts: &[AccountId]) -> Result<usize, redis::RedisError> {
        let mut released = 0;
        for batch in accounts.chunks(CLAIM_BATCH) {
            let mut call = RELEASE.prepare_invoke();
            for a in batch {
                call.key(self.keys.idle_watch(a));
            }
            let n: usize = call.arg(&self.replica).invoke_async(&mut self.conn.clone()).await?;
            released += n;
        }
        Ok(released)
    }
}
