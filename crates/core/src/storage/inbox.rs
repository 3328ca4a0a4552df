//! The master inbox: one Redis stream of what came back from every mailbox.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::bounce::{BounceClass, BounceReason};
use crate::storage::keys::Keys;

/// A stream entry as Redis returns it: (id, fields).
type Entry = (String, HashMap<String, String>);

/// Entries kept in the stream (approximately).
const MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxEvent {
    /// Stream id; also the pagination cursor.
    pub id: String,
    pub account_id: String,
    pub campaign_id: Option<String>,
    pub lead_id: Option<String>,
    pub kind: InboxKind,
    pub from: String,
    pub subject: String,
    pub snippet: String,
    /// RFC 3339.
    pub received_at: String,
    /// For bounces and sender-side refusals: whose address, why, and whose problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<BounceFacts>,
    /// Why coldsend filed it as this kind (the header, report or phrase that decided it).
    #[serde(default)]
    pub why: String,
    /// For automatic replies: the return date the text names (YYYY-MM-DD), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns_on: Option<String>,
}

impl InboxEvent {
    /// An event about a mailbox itself (its health, its sign-in), dated now.
    pub fn about_account(account: &crate::account::SenderAccount, kind: InboxKind, subject: &str, words: &str) -> Self {
        Self {
            id: String::new(),
            account_id: account.id.to_string(),
            campaign_id: None,
            lead_id: None,
            kind,
            from: account.email.to_string(),
            subject: subject.to_owned(),
            snippet: words.chars().take(300).collect(),
            received_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            bounce: None,
            why: format!("coldsend's own notice about the mailbox: {subject}"),
            returns_on: None,
        }
    }
}

/// What a bounce (or a live refusal) said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BounceFacts {
    pub recipient: String,
    pub reason: BounceReason,
    pub class: BounceClass,
    /// Enhanced status code, when the server gave one.
    pub status: Option<String>,
}

/// What an incoming message was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    Reply,
    AutoReply,
    Bounce,
    Complaint,
    /// A recipient's server refused our mailbox, domain, IP or content (or a quota hit):
    /// the mailbox's problem, not the lead's.
    SenderRefused,
    /// A reply asking to be taken off: the address is suppressed.
    Unsubscribe,
    /// The provider refused an OAuth2 account's grant: it waits for the consent flow.
    NeedsReauth,
    /// An ACTIVE mailbox stopped after repeated connection or sign-in failures.
    Disconnected,
    /// A DISCONNECTED mailbox passed a validation and is ACTIVE again.
    Reconnected,
    /// A mailbox's hard-bounce rate passed the limit: its sending is paused.
    BounceRatePaused,
    Other,
}

impl InboxKind {
    pub const ALL: [InboxKind; 11] = [
        InboxKind::Reply,
        InboxKind::AutoReply,
        InboxKind::Bounce,
        InboxKind::Complaint,
        InboxKind::SenderRefused,
        InboxKind::Unsubscribe,
        InboxKind::NeedsReauth,
        InboxKind::Disconnected,
        InboxKind::Reconnected,
        InboxKind::BounceRatePaused,
        InboxKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::Reply => "reply",
            InboxKind::AutoReply => "auto_reply",
            InboxKind::Bounce => "bounce",
            InboxKind::Complaint => "complaint",
            InboxKind::SenderRefused => "sender_refused",
            InboxKind::Unsubscribe => "unsubscribe",
            InboxKind::NeedsReauth => "needs_reauth",
            InboxKind::Disconnected => "disconnected",
            InboxKind::Reconnected => "reconnected",
            InboxKind::BounceRatePaused => "bounce_rate_paused",
            InboxKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The webhook event an inbox event of this kind is (none for `other`).
    pub fn event_type(self) -> Option<crate::webhook::EventType> {
        use crate::webhook::EventType as T;
        match self {
            InboxKind::Reply => Some(T::Reply),
            InboxKind::AutoReply => Some(T::AutoReply),
            InboxKind::Bounce => Some(T::Bounce),
            InboxKind::Complaint => Some(T::Complaint),
            InboxKind::SenderRefused => Some(T::SenderRefused),
            InboxKind::Unsubscribe => Some(T::Unsubscribe),
            InboxKind::NeedsReauth | InboxKind::Disconnected | InboxKind::Reconnected | InboxKind::BounceRatePaused => {
                Some(T::AccountHealth)
            }
            InboxKind::Other => None,
        }
    }
}

/// A position in the master inbox: a stream id (`<ms>-<seq>`) that pages go back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    ms: u64,
    seq: u64,
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a cursor: pass the next_cursor of a previous page");
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?),
            None => (s.parse().map_err(|_| bad())?, u64::MAX),
        };
        // Nothing comes before 0-0: it can only be a made-up cursor.
        if ms == 0 && seq == 0 {
            return Err(bad());
        }
        Ok(Cursor { ms, seq })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.seq == u64::MAX { write!(f, "{}", self.ms) } else { write!(f, "{}-{}", self.ms, self.seq) }
    }
}

#[derive(Clone)]
pub struct Inbox {
    conn: ConnectionManager,
    keys: Keys,
}

/// Filters of a read; all optional.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct InboxFilter {
    pub account: Option<String>,
    pub campaign: Option<String>,
    pub kind: Option<InboxKind>,
}

impl Inbox {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, keys: Keys::new(prefix) }
    }

    /// An Inbox on its own connection, for [`Inbox::follow`] with blocks up to `max_block`.
    pub async fn for_following(
        client: redis::Client,
        settings: &crate::settings::RedisSettings,
        max_block: std::time::Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self::new(super::connect(client, settings, max_block).await?, &settings.key_prefix))
    }

    /// Files an event in the master inbox and, in the same transaction, publishes it to
    /// the webhook outbox (when its kind is one webhooks carry and an endpoint exists).
    pub async fn record(&self, e: &InboxEvent) -> Result<String, redis::RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(self.keys.events())
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_EVENTS)
            .arg("*")
            .arg("account_id")
            .arg(&e.account_id)
            .arg("campaign_id")
            .arg(e.campaign_id.as_deref().unwrap_or(""))
            .arg("lead_id")
            .arg(e.lead_id.as_deref().unwrap_or(""))
            .arg("kind")
            .arg(e.kind.as_str())
            .arg("from")
            .arg(&e.from)
            .arg("subject")
            .arg(&e.subject)
            .arg("snippet")
            .arg(&e.snippet)
            .arg("received_at")
            .arg(&e.received_at)
            .arg("bounce")
            .arg(e.bounce.as_ref().and_then(|b| serde_json::to_string(b).ok()).unwrap_or_default())
            .arg("why")
            .arg(&e.why)
            .arg("returns_on")
            .arg(e.returns_on.as_deref().unwrap_or(""));
        if let Some(kind) = e.kind.event_type() {
            let data = serde_json::to_value(e).unwrap_or_default();
            super::webhooks::Outbox::new(self.conn.clone(), self.keys.prefix())
                .publish_in(&mut pipe, &crate::webhook::Event::new(kind, data));
        }
        let (id,): (String,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(id)
    }

    /// Newest first, up to `limit` matching entries older than `before` (a cursor).
    pub async fn page(
        &self,
        filter: &InboxFilter,
        before: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<InboxEvent>, Option<String>), redis::RedisError> {
        let mut out = Vec::new();
        let mut end = match before {
            // A bare millisecond cursor means "before that moment".
            Some(c) if c.seq == u64::MAX => format!("{}", c.ms.saturating_sub(1)),
            Some(c) => format!("({c}"),
            None => "+".into(),
        };
        loop {
            let batch: Vec<Entry> = redis::cmd("XREVRANGE")
                .arg(self.keys.events())
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(500)
                .query_async(&mut self.conn.clone())
                .await?;
            let exhausted = batch.len() < 500;
            for (id, fields) in batch {
                end = format!("({id}");
                let e = event(id, fields);
                let keep = filter.account.as_ref().is_none_or(|a| *a == e.account_id)
                    && filter.campaign.as_ref().is_none_or(|c| e.campaign_id.as_ref() == Some(c))
                    && filter.kind.as_ref().is_none_or(|k| *k == e.kind);
                if keep {
                    out.push(e);
                    if out.len() == limit {
                        let next = out.last().map(|e| e.id.clone());
                        return Ok((out, next));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    /// Entries after `after` (stream id, "$" for only new ones), waiting up to `block_ms`.
    /// The Inbox must be on a connection of its own whose response timeout exceeds the
    /// block ([`Inbox::for_following`]).
    pub async fn follow(&self, after: &str, block_ms: u64) -> Result<Vec<InboxEvent>, redis::RedisError> {
        let reply: Option<Vec<(String, Vec<Entry>)>> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(self.keys.events())
            .arg(after)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply.into_iter().flatten().flat_map(|(_, entries)| entries).map(|(id, f)| event(id, f)).collect())
    }
}

fn event(id: String, mut f: HashMap<String, String>) -> InboxEvent {
    let mut take = |k: &str| f.remove(k).unwrap_or_default();
    let opt = |s: String| Some(s).filter(|s| !s.is_empty());
    InboxEvent {
        account_id: take("account_id"),
        campaign_id: opt(take("campaign_id")),
        lead_id: opt(take("lead_id")),
        kind: InboxKind::parse(&take("kind")).unwrap_or(InboxKind::Other),
        from: take("from"),
        subject: take("subject"),
        snippet: take("snippet"),
        received_at: take("received_at"),
        bounce: serde_json::from_str(&take("bounce")).ok(),
        why: take("why"),
        returns_on: opt(take("returns_on")),
        id,
    }
}
