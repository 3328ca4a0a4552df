//! What a Redis-level command means: parsing, carrying it out through the services, and
//! the redacted text that may be recorded. The worker's `command_stream` owns the loop
//! that reads `p:commands`; the streams themselves are in `coldsend_core::storage::commands`.
//!
//! ```text
//! XADD <prefix>:commands * command '{"v": 1, "type": "add_leads", "campaign_id": "…", "leads": [{"email": "…"}]}'
//! ```
//! Types (v1): `register_account` (`account`: the sender-accounts API body),
//! `add_leads` (`campaign_id`, `leads`), `start_campaign` / `pause_campaign` /
//! `resume_campaign` / `stop_campaign` (`campaign_id`). An optional `request_id` is
//! echoed in the outcome.

use coldsend_core::campaign::{CampaignAction, CampaignState};
use coldsend_core::sealed::SealingKey;
use serde::Deserialize;
use serde_json::Value;

use crate::campaigns::CampaignError;
use crate::connect::Services;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    RegisterAccount { account: Value, request_id: Option<String> },
    AddLeads { campaign_id: String, leads: Vec<Value>, request_id: Option<String> },
    StartCampaign { campaign_id: String, request_id: Option<String> },
    PauseCampaign { campaign_id: String, request_id: Option<String> },
    ResumeCampaign { campaign_id: String, request_id: Option<String> },
    StopCampaign { campaign_id: String, request_id: Option<String> },
}

/// What handling one command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Carried out; the result goes to `p:commands:done`.
    Done(Value),
    /// Can never be carried out (malformed, unknown type, invalid fields, unknown campaign,
    /// corrupt stored data): to `p:commands:dead` with the reason.
    Refused(String),
    /// Failed for a reason that may pass (Redis unavailable): try again later.
    Transient(String),
}

/// Carries out commands through the same services the API uses.
#[derive(Clone)]
pub struct CommandHandler {
    services: Services,
}

impl CommandHandler {
    pub fn new(services: Services) -> Self {
        Self { services }
    }

    pub async fn handle(&self, raw: &str) -> Outcome {
        let command = match parse(raw) {
            Ok(c) => c,
            Err(reason) => return Outcome::Refused(reason),
        };
        let result = match command {
            Command::RegisterAccount { account, request_id } => {
                return match self.services.accounts.register(account.to_string().as_bytes()).await {
                    Ok(view) => Outcome::Done(serde_json::json!({"request_id": request_id, "account_id": view.id})),
                    Err(e) if e.is_transient() => Outcome::Transient(e.to_string()),
                    Err(e) => Outcome::Refused(e.to_string()),
                };
            }
            Command::AddLeads { campaign_id, leads, request_id } => self
                .services
                .campaigns
                .add_leads(&campaign_id, leads)
                .await
                .map(|r| serde_json::json!({"request_id": request_id, "campaign_id": campaign_id, "report": r})),
            Command::StartCampaign { campaign_id, request_id } => {
                self.act(campaign_id, CampaignAction::Start, request_id).await
            }
            Command::PauseCampaign { campaign_id, request_id } => {
                self.act(campaign_id, CampaignAction::Pause, request_id).await
            }
            Command::ResumeCampaign { campaign_id, request_id } => {
                self.act(campaign_id, CampaignAction::Resume, request_id).await
            }
            Command::StopCampaign { campaign_id, request_id } => {
                self.act(campaign_id, CampaignAction::Stop, request_id).await
            }
        };
        match result {
            Ok(v) => Outcome::Done(v),
            Err(e) if e.is_transient() => Outcome::Transient(e.to_string()),
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }

    async fn act(
        &self,
        id: String,
        action: CampaignAction,
        request_id: Option<String>,
    ) -> Result<Value, CampaignError> {
        match self.services.campaigns.act(&id, action).await {
            Ok(view) => Ok(serde_json::json!({"request_id": request_id, "campaign_id": id, "state": view.state})),
            // Delivered twice: the second start of a running campaign changes nothing.
            Err(CampaignError::NotAllowed(n)) if n.from == CampaignState::target_of(action) => {
                Ok(serde_json::json!({"request_id": request_id, "campaign_id": id, "unchanged": n.to_string()}))
            }
            Err(e) => Err(e),
        }
    }
}

fn parse(raw: &str) -> Result<Command, String> {
    let mut value: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("v").and_then(Value::as_u64) != Some(1) {
        return Err("unsupported or missing version 'v' (expected 1)".into());
    }
    if let Some(m) = value.as_object_mut() {
        m.remove("v");
    }
    serde_json::from_value(value).map_err(|e| format!("invalid command: {}", without_values(&e.to_string())))
}

/// serde's messages quote the offending value ("invalid type: string \"hunter2\"…"); a
/// password sent with the wrong type must not be echoed into a stream.
fn without_values(message: &str) -> String {
    match message.split_once(": ") {
        Some((head, _)) if head.starts_with("invalid type") || head.starts_with("invalid value") => head.to_owned(),
        _ => message.to_owned(),
    }
}

/// Field names whose values are secrets wherever they appear in a command.
fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "api_key", "apikey"].iter().any(|s| n.contains(s))
}

const REDACTED: &str = "[redacted]";

/// The text of a command that may be stored in `p:commands:done` / `:dead`: JSON with
/// every secret-named field's value replaced; text that is not JSON cannot be searched for
/// secrets, so it is kept only sealed (openable with the encryption key, by an operator).
pub fn redacted(raw: &str, key: &SealingKey, entry_id: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(mut v) => {
            redact_value(&mut v);
            v.to_string()
        }
        Err(_) => {
            let secret = secrecy::SecretString::from(raw.to_owned());
            format!("sealed:{}", key.seal(&secret, &sealed_context(entry_id)))
        }
    }
}

/// The associated data a non-JSON command is sealed under (binds it to its entry).
pub fn sealed_context(entry_id: &str) -> String {
    format!("coldsend/commands/{entry_id}")
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_field(k) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_value(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        // A nested document sent as a string (`"account": "{…}"`).
        Value::String(s) if s.trim_start().starts_with('{') => {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                redact_value(&mut inner);
                *s = inner.to_string();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_text(&secrecy::SecretString::from("07".repeat(32))).unwrap()
    }

    #[test]
    fn passwords_are_redacted_at_any_depth() {
        let raw = r#"{"v":1,"type":"register_account","account":{"smtp_password":"hunter2","imap_password":"pw2","nested":[{"refresh_token":"rt"}]}}"#;
        let out = redacted(raw, &key(), "1-0");
        assert!(!out.contains("hunter2") && !out.contains("pw2") && !out.contains("\"rt\""), "{out}");
        assert!(out.contains("register_account"));
    }

    #[test]
    fn text_that_is_not_json_is_kept_sealed_only() {
        let raw = r#"{"v":1,"account":{"smtp_password":"hunter2""#;
        let out = redacted(raw, &key(), "1-0");
        assert!(out.starts_with("sealed:") && !out.contains("hunter2"));
        let opened = key().open(out.trim_start_matches("sealed:"), &sealed_context("1-0")).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), raw);
    }

    #[test]
    fn type_errors_do_not_quote_values() {
        let e = parse(r#"{"v":1,"type":"start_campaign","campaign_id":["hunter2"]}"#).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
