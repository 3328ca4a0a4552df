//! What the dashboard keeps and reads on its own: sign-in sessions, and read-only
//! overviews across other modules' keys (queue depths and workers, sends in flight and
//! uncertain, dead-lettered commands, sends per hour). Nothing here writes a key another
//! module owns.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use crate::account::AccountId;

/// What a session holds: only its CSRF token and when it began. The session's own token
/// is never stored, only its SHA-256 digest (the key's suffix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub csrf: String,
    pub created_ms: i64,
}

/// One apalis queue as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueRow {
    pub queue: String,
    pub ready: u64,
    pub scheduled: u64,
    /// Jobs a worker has taken and not finished.
    pub running: u64,
    /// Jobs apalis gave up on.
    pub dead: u64,
    /// Consumers registered on the queue: (name, last heartbeat in seconds since the epoch).
    pub workers: Vec<(String, i64)>,
}

/// A command refused by the command-stream reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadCommand {
    pub id: String,
    pub command: String,
    pub reason: String,
}

#[derive(Clone)]
pub struct Dashboard {
    conn: ConnectionManager,
    keys: Keys,
}

impl Dashboard {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// Stores a new session under its token's digest for `ttl_secs`.
    pub async fn create_session(
        &self,
        digest: &str,
        record: &SessionRecord,
        ttl_secs: u64,
    ) -> Result<(), redis::RedisError> {
        let json = serde_json::to_string(record).unwrap_or_default();
        redis::cmd("SET")
            .arg(self.keys.dashboard_session(digest))
            .arg(json)
            .arg("EX")
            .arg(ttl_secs.max(1))
            .query_async::<()>(&mut self.conn.clone())
            .await
    }

    /// The session under `digest`, if it exists and has not expired.
    pub async fn session(&self, digest: &str) -> Result<Option<SessionRecord>, redis::RedisError> {
        let raw: Option<String> =
            redis::cmd("GET").arg(self.keys.dashboard_session(digest)).query_async(&mut self.conn.clone()).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Ends a session (sign-out).
    pub async fn end_session(&self, digest: &str) -> Result<(), redis::RedisError> {
        redis::cmd("DEL").arg(self.keys.dashboard_session(digest)).query_async::<()>(&mut self.conn.clone()).await
    }

    /// Depth, running, dead and consumers of each apalis queue, in one round trip.
    pub async fn queues(&self, queues: &[String]) -> Result<Vec<QueueRow>, redis::RedisError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in queues {
            let cfg = apalis_redis::Config::default().queue(q.as_str());
            pipe.cmd("LLEN")
                .arg(cfg.active_jobs_list())
                .cmd("ZCARD")
                .arg(cfg.scheduled_jobs_set())
                .cmd("ZCARD")
                .arg(cfg.dead_jobs_set())
                .cmd("ZRANGE")
                .arg(cfg.workers_set())
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
        }
        type Row = (u64, u64, u64, Vec<(String, f64)>);
        let rows: Vec<Row> = {
            let flat: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
            flat.chunks(4)
                .map(|c| {
                    let n =
                        |i: usize| c.get(i).and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok()).unwrap_or(0);
                    let w = c
                        .get(3)
                        .and_then(|v| redis::from_redis_value::<Vec<(String, f64)>>(v.clone()).ok())
                        .unwrap_or_default();
                    (n(0), n(1), n(2), w)
                })
                .collect()
        };
        // Running jobs sit in each consumer's own in-flight set: one more pipeline for all.
        let mut inflight = redis::pipe();
        for (q, (_, _, _, workers)) in queues.iter().zip(&rows) {
            let set = apalis_redis::Config::default().queue(q.as_str()).inflight_jobs_set();
            for (name, _) in workers {
                inflight.cmd("SCARD").arg(format!("{set}:{name}"));
            }
        }
        let mut counts: std::vec::IntoIter<u64> = if inflight.is_empty() {
            Vec::new().into_iter()
        } else {
            inflight.query_async::<Vec<u64>>(&mut self.conn.clone()).await?.into_iter()
        };
        Ok(queues
            .iter()
            .zip(rows)
            .map(|(q, (ready, scheduled, dead, workers))| QueueRow {
                queue: q.clone(),
                ready,
                scheduled,
                running: counts.by_ref().take(workers.len()).sum(),
                dead,
                workers: workers.into_iter().map(|(n, s)| (n, s as i64)).collect(),
            })
            .collect())
    }

    /// Sends in flight (SENDING) across all mailboxes, and UNCERTAIN sends per mailbox.
    pub async fn sends_in_doubt(&self, accounts: &[AccountId]) -> Result<(u64, Vec<u64>), redis::RedisError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(self.keys.inflight());
        for a in accounts {
            pipe.cmd("ZCARD").arg(self.keys.uncertain(a));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        let inflight = counts.first().copied().unwrap_or(0);
        Ok((inflight, counts.into_iter().skip(1).collect()))
    }

    /// The newest dead-lettered commands, newest first.
    pub async fn dead_commands(&self, count: usize) -> Result<Vec<DeadCommand>, redis::RedisError> {
        let rows: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys.commands_dead())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, mut f)| DeadCommand {
                id,
                command: f.remove("command").unwrap_or_default(),
                reason: f.remove("reason").unwrap_or_default(),
            })
            .collect())
    }

    /// Sends per UTC hour of each mailbox over the `days` UTC days ending today: for each
    /// account, `days * 24` counts, oldest hour first.
    pub async fn hourly_sends(
        &self,
        accounts: &[AccountId],
        today_ms: i64,
        days: u32,
    ) -> Result<Vec<Vec<u64>>, redis::RedisError> {
        if accounts.is_empty() || days == 0 {
            return Ok(vec![Vec::new(); accounts.len()]);
        }
        let day_ms = 86_400_000;
        let day_names: Vec<String> =
            (0..i64::from(days)).rev().map(|back| super::ledger::utc_day(today_ms - back * day_ms)).collect();
        let mut pipe = redis::pipe();
        for a in accounts {
            for d in &day_names {
                pipe.cmd("HGETALL").arg(self.keys.hourly_sends(a, d));
            }
        }
        let maps: Vec<HashMap<String, u64>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(maps
            .chunks(day_names.len())
            .map(|per_day| {
                per_day.iter().flat_map(|m| (0..24).map(move |h| m.get(&h.to_string()).copied().unwrap_or(0))).collect()
            })
            .collect())
    }
}
