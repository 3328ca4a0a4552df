//! Webhook events and their signature: what coldsend tells an operator's endpoint, and how
//! the endpoint proves it came from coldsend.
//!
//! Each delivery carries `Coldsend-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 over `"<t>.<body>"` with the endpoint's secret (the scheme Stripe made
//! familiar): a receiver recomputes it, compares in constant time and rejects old `t`s.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What happened. The canonical list: an endpoint subscribes to some of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// A campaign email was accepted by the mailbox's server.
    Sent,
    Reply,
    /// With reason and class.
    Bounce,
    AutoReply,
    Complaint,
    Unsubscribe,
    /// Our mailbox, domain, IP or content was refused.
    SenderRefused,
    /// A lead's state changed (FAILED, BOUNCED, COMPLETED, STOPPED, …).
    LeadState,
    /// A mailbox became DISCONNECTED, came back, or needs a new OAuth2 sign-in.
    AccountHealth,
    /// A campaign was started, paused, resumed, stopped or completed.
    CampaignState,
    /// A webhook endpoint was disabled after failing too often.
    WebhookDisabled,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::Sent,
        Self::Reply,
        Self::Bounce,
        Self::AutoReply,
        Self::Complaint,
        Self::Unsubscribe,
        Self::SenderRefused,
        Self::LeadState,
        Self::AccountHealth,
        Self::CampaignState,
        Self::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Reply => "reply",
            Self::Bounce => "bounce",
            Self::AutoReply => "auto_reply",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
            Self::SenderRefused => "sender_refused",
            Self::LeadState => "lead_state",
            Self::AccountHealth => "account_health",
            Self::CampaignState => "campaign_state",
            Self::WebhookDisabled => "webhook_disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One event as delivered: the body of the POST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Unique; a receiver that sees an id twice (a redelivery) ignores the second.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339.
    pub occurred_at: String,
    /// The event's facts (ids, addresses, reasons), by type.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

impl Event {
    /// A new event dated now with a fresh id.
    pub fn new(kind: EventType, data: serde_json::Value) -> Self {
        Self { id: uuid::Uuid::new_v4().to_string(), kind, occurred_at: now_rfc3339(), data }
    }
}

/// An [`Event`]'s JSON, written straight from typed data: the send path publishes one or
/// two events per email, and building each through a `serde_json::Value` (a map of owned
/// strings) was a large part of the `sent` script's arguments (8 % of the worker's time per
/// email, docs/BENCHMARKS.md). Reads back as an `Event`.
pub fn event_json<D: Serialize>(kind: EventType, data: &D) -> String {
    #[derive(Serialize)]
    struct Typed<'a, D> {
        id: uuid::Uuid,
        #[serde(rename = "type")]
        kind: EventType,
        occurred_at: String,
        data: &'a D,
    }
    let typed = Typed { id: uuid::Uuid::new_v4(), kind, occurred_at: now_rfc3339(), data };
    serde_json::to_string(&typed).unwrap_or_default()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The `Coldsend-Signature` header value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body)))
}

/// Whether `header` is a valid signature of `body` with `secret`, made within
/// `tolerance_secs` of `now` (what a receiver checks).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let Some(given) = unhex(&v1) else { return false };
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else { return false };
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.verify_slice(&given).is_ok()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else { return Vec::new() };
    m.update(format!("{timestamp}.").as_bytes());
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_written_from_typed_data_reads_back_as_an_event() {
        #[derive(Serialize)]
        struct Facts<'a> {
            lead_id: &'a str,
            step: usize,
            to: Option<&'a str>,
        }
        let json = event_json(EventType::Sent, &Facts { lead_id: "l1", step: 2, to: None });
        let event: Event = serde_json::from_str(&json).expect("an Event");
        assert_eq!(event.kind, EventType::Sent);
        assert_eq!(event.data, serde_json::json!({"lead_id": "l1", "step": 2, "to": null}));
        assert!(uuid::Uuid::parse_str(&event.id).is_ok(), "{}", event.id);
        let at = time::OffsetDateTime::parse(&event.occurred_at, &time::format_description::well_known::Rfc3339);
        assert!(at.is_ok(), "{}", event.occurred_at);
        assert_ne!(event.id, Event::new(EventType::Sent, serde_json::Value::Null).id);
    }

    #[test]
    fn signatures_verify_and_resist_tampering_and_replay() {
        let (secret, body) = (b"whsec_test".as_slice(), br#"{"id":"1"}"#.as_slice());
        let header = signature(secret, 1_700_000_000, body);
        // The same value Python's hmac computes (README: "Webhooks").
        assert_eq!(header, "t=1700000000,v1=11bf4466ea17c3df3fd743af0b435368e16b7a05eb8eced85e8c4670767bdec5");
        assert!(verify(secret, &header, body, 1_700_000_010, 300));
        assert!(!verify(secret, &header, br#"{"id":"2"}"#, 1_700_000_010, 300), "body changed");
        assert!(!verify(b"other", &header, body, 1_700_000_010, 300), "other secret");
        assert!(!verify(secret, &header, body, 1_700_001_000, 300), "too old");
        assert!(!verify(secret, &header.replace("t=1700000000", "t=1700000001"), body, 1_700_000_010, 300));
        assert!(!verify(secret, "garbage", body, 1_700_000_010, 300));
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).ok(), Some(serde_json::Value::String(t.as_str().into())));
        }
    }
}
