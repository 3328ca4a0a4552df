//! `coldsend inbox` (the master inbox, `--follow`) and `coldsend classify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use coldsend_core::settings::Settings;
use coldsend_core::storage::inbox::{Inbox, InboxFilter, InboxKind};

pub(crate) fn parse_kind(s: &str) -> Result<InboxKind, String> {
    InboxKind::parse(s).ok_or_else(|| format!("expected one of: {}", InboxKind::ALL.map(InboxKind::as_str).join(", ")))
}

/// Prints the newest `limit` events, then (with `follow`) new ones as they arrive, on a
/// connection of its own whose response timeout outlasts the blocking read.
pub(crate) async fn inbox(
    settings: &Settings,
    page_inbox: &Inbox,
    filter: InboxFilter,
    limit: usize,
    follow: bool,
) -> anyhow::Result<()> {
    let (page, _) = page_inbox.page(&filter, None, limit.max(1)).await?;
    let mut last = page.first().map(|e| e.id.clone()).unwrap_or_else(|| "$".into());
    for e in page.iter().rev() {
        println!("{}", serde_json::to_string(e)?);
    }
    if !follow {
        return Ok(());
    }
    const BLOCK: Duration = Duration::from_secs(5);
    let client = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let following = Inbox::for_following(client, &settings.redis, BLOCK).await.context("connecting")?;
    loop {
        let events = match following.follow(&last, BLOCK.as_millis() as u64).await {
            Ok(events) => events,
            Err(e) => {
                // A Redis restart is waited out, not fatal: the cursor is kept.
                eprintln!("inbox: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for e in events {
            last = e.id.clone();
            let keep = filter.account.as_ref().is_none_or(|a| *a == e.account_id)
                && filter.campaign.as_ref().is_none_or(|c| e.campaign_id.as_ref() == Some(c))
                && filter.kind.is_none_or(|k| k == e.kind);
            if keep {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
    }
}

pub(crate) fn classify(paths: &[PathBuf]) {
    let mut files = Vec::new();
    for p in paths {
        match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("eml")))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(_) => files.push(p.clone()),
        }
    }
    for file in files {
        let name = file.display().to_string();
        let line = match std::fs::read(&file) {
            Err(e) => serde_json::json!({"file": name, "kind": "other", "error": e.to_string()}),
            Ok(raw) => {
                let c = coldsend_core::classify::classify(&raw);
                let mut v = serde_json::json!({"file": name, "kind": c.kind()});
                if let Some(b) = c.bounce() {
                    v["bounce"] = serde_json::json!({"hard": b.hard, "reason": b.reason, "class": b.class, "status": b.status,
                        "recipient": b.recipient, "original_message_id": b.original_message_id});
                }
                if let Some(d) = c.returns_on() {
                    v["returns_on"] = serde_json::json!(d.to_string());
                }
                v
            }
        };
        println!("{line}");
    }
}
