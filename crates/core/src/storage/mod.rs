//! The Redis contract: every key name, every Lua script and every Redis command coldsend
//! sends lives in this module tree, and nowhere else.
//!
//! - [`keys`]: every key name (one function per key);
//! - [`accounts`]: sender accounts and their sealed credentials;
//! - [`campaigns`]: campaigns, leads, the suppression list;
//! - [`ledger`]: send records, due queues, cap counters, gap markers, chains — where the
//!   cap, the gap and at-most-once are enforced;
//! - [`mailboxes`]: sender-side refusals and the sending pause they lead to;
//! - [`oauth`]: OAuth2 grants, the refresh lease, rotated refresh tokens;
//! - [`scan`]: IMAP scan cursors, "already acted on" records, last-scan facts;
//! - [`inbox`]: the master-inbox stream;
//! - [`webhooks`]: webhook endpoints, their delivery record, and the outbox stream of events;
//! - [`test_sends`]: test sends (a campaign's steps to a chosen address), their cap slot and outcome;
//! - [`commands`]: the command streams (the Redis-level contract for other languages);
//! - [`queues`]: read-only looks at apalis-redis's queue keys (depths for metrics);
//! - [`dashboard`]: the dashboard's sign-in sessions, and its read-only overviews (queues
//!   and their workers, sends in doubt, dead-lettered commands, sends per hour).
//!
//! Lua scripts are files under `lua/`, each opening with a KEYS/ARGV header, loaded with
//! `include_str!` and called through exactly one typed Rust function. Every key a script
//! touches is passed in KEYS — none is built inside Lua or read out of a hash field and
//! then used as a key — so the scripts are legal on Redis Cluster once their keys share a
//! slot (see ARCHITECTURE.md, "Redis keys").

pub mod accounts;
pub mod campaigns;
pub mod commands;
pub mod dashboard;
pub mod idle_watch;
pub mod inbox;
pub mod keys;
pub mod ledger;
pub mod mailboxes;
pub mod oauth;
pub mod queues;
pub mod scan;
pub mod test_sends;
pub mod webhooks;

/// Declares a `static` [`redis::Script`] loaded from `lua/<file>.lua`.
macro_rules! lua_script {
    ($name:ident, $file:literal) => {
        static $name: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(include_str!(concat!("lua/", $file, ".lua"))));
    };
    // A script that runs other scripts: each is prepended as a local function of its own
    // KEYS and ARGV, so their code lives once, in their own files.
    ($name:ident, $file:literal, functions: [$($function:literal = $from:literal),+]) => {
        static $name: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                $("local function ", $function, "(KEYS, ARGV)\n", include_str!(concat!("lua/", $from, ".lua")), "\nend\n",)+
                include_str!(concat!("lua/", $file, ".lua"))
            ))
        });
    };
}
pub(crate) use lua_script;

/// Creates a stream's consumer group (and the stream) unless it exists.
pub(crate) async fn ensure_group(
    conn: &redis::aio::ConnectionManager,
    stream: String,
    group: &str,
) -> redis::RedisResult<()> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn.clone())
        .await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// An answer from a script that the Rust side does not know: the script and its wrapper
/// disagree, which only a deployment mixing versions can cause.
pub(crate) fn unexpected(script: &str, answer: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected script answer",
        format!("{script} answered '{answer}'"),
    ))
}

/// A self-reconnecting connection to the configured Redis, whose commands time out after
/// `redis.response_timeout_secs`. `block` is the longest blocking read (XREADGROUP BLOCK,
/// XREAD BLOCK) this connection will carry; its replies are allowed that much longer.
pub async fn connect(
    client: redis::Client,
    settings: &crate::settings::RedisSettings,
    block: std::time::Duration,
) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let timeout = std::time::Duration::from_secs(settings.response_timeout_secs.max(1)) + block;
    let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(timeout));
    redis::aio::ConnectionManager::new_with_config(client, config).await
}
