//! Read-only looks at apalis-redis's keys for one queue (depths for `/metrics`). apalis
//! owns these keys; coldsend never writes them except through apalis.

/// (ready, scheduled) jobs of each queue, in one round trip.
pub async fn depths(
    conn: &mut impl redis::aio::ConnectionLike,
    queues: &[String],
) -> Result<Vec<(u64, u64)>, redis::RedisError> {
    let mut pipe = redis::pipe();
    for q in queues {
        let cfg = apalis_redis::Config::default().queue(q.as_str());
        pipe.llen(cfg.active_jobs_list()).zcard(cfg.scheduled_jobs_set());
    }
    let flat: Vec<u64> = pipe.query_async(conn).await?;
    Ok(flat.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(0))).collect())
}

/// Whether Redis answers.
pub async fn ping(conn: &mut impl redis::aio::ConnectionLike) -> Result<(), redis::RedisError> {
    redis::cmd("PING").query_async::<String>(conn).await.map(|_| ())
}
