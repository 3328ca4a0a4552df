//! `PATCH /campaigns/{id}`: a partial campaign body applied to a stored campaign. The
//! merged campaign passes the same rules as a new one (templates compiled against the
//! lead fields and `lead_variables`); fields the patch does not name keep their stored
//! value exactly.

use serde_json::{Map, Value};

use crate::account_request::RequestError;
use crate::campaign::{Campaign, CampaignRequest};
use crate::error_code::{ErrorCode, without_value};
use crate::schedule::ScheduleSpec;

/// Fields a patch may carry.
pub const PATCHABLE: [&str; 10] = [
    "name",
    "sender_account_ids",
    "steps",
    "schedule",
    "daily_limit",
    "stop_on_reply",
    "stop_on_domain_reply",
    "lead_variables",
    "pacing",
    "lead_timezones",
];

/// Applies a raw patch body to `current`; the id, creation time and every field the
/// patch leaves out are kept.
pub fn apply(current: &Campaign, body: &[u8]) -> Result<Campaign, RequestError> {
    let patch = crate::account_request::patch_object(body)?;
    if let Some(name) = patch.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
        return Err(RequestError::new(
            ErrorCode::UnknownField,
            format!("unknown field '{name}'; a patch may carry {}", PATCHABLE.join(", ")),
            Some(name),
        ));
    }
    let mut merged = as_request(current);
    for (k, v) in &patch {
        merged.insert(k.clone(), v.clone());
    }
    let request: CampaignRequest = serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
        let field = e.path().to_string();
        RequestError::new(
            ErrorCode::InvalidField,
            format!("{field}: {}", without_value(&e.inner().to_string())),
            Some(&field),
        )
    })?;
    let checked = request.into_campaign()?;
    let has = |k: &str| patch.contains_key(k);
    let c = current.clone();
    Ok(Campaign {
        id: c.id,
        created_at: c.created_at,
        name: if has("name") { checked.name } else { c.name },
        accounts: if has("sender_account_ids") { checked.accounts } else { c.accounts },
        steps: if has("steps") { checked.steps } else { c.steps },
        schedule: if has("schedule") { checked.schedule } else { c.schedule },
        daily_limit: if has("daily_limit") { checked.daily_limit } else { c.daily_limit },
        stop_on_reply: if has("stop_on_reply") { checked.stop_on_reply } else { c.stop_on_reply },
        stop_on_domain_reply: if has("stop_on_domain_reply") {
            checked.stop_on_domain_reply
        } else {
            c.stop_on_domain_reply
        },
        lead_variables: if has("lead_variables") { checked.lead_variables } else { c.lead_variables },
        pacing: if has("pacing") { checked.pacing } else { c.pacing },
        lead_timezones: if has("lead_timezones") { checked.lead_timezones } else { c.lead_timezones },
    })
}

/// The stored campaign as a creation body (for the rules to check the merged whole).
fn as_request(c: &Campaign) -> Map<String, Value> {
    let steps: Vec<Value> = c
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let delay = (i > 0 || !s.delay.is_zero()).then(|| format!("{}s", s.delay.as_secs()));
            serde_json::json!({"subject": s.subject, "text": s.text, "html": s.html, "delay": delay})
        })
        .collect();
    let Value::Object(map) = serde_json::json!({
        "name": c.name,
        "sender_account_ids": c.accounts.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "steps": steps,
        "schedule": ScheduleSpec::from(c.schedule.clone()),
        "daily_limit": c.daily_limit,
        "stop_on_reply": c.stop_on_reply,
        "stop_on_domain_reply": c.stop_on_domain_reply,
        "lead_variables": c.lead_variables,
        "pacing": c.pacing,
        "lead_timezones": c.lead_timezones,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Campaign {
        let v = serde_json::json!({
            "name": "Q4", "sender_account_ids": ["00000000-0000-4000-8000-000000000001"],
            "steps": [{"subject": "Hi {{ first_name }}", "text": "one"}, {"text": "two {{ plan }}", "delay": "3d"}],
            "lead_variables": ["plan"]
        });
        serde_json::from_value::<CampaignRequest>(v).expect("shape").into_campaign().expect("valid")
    }

    #[test]
    fn unnamed_fields_keep_their_stored_values() {
        let c = stored();
        let p = apply(&c, br#"{"name": "Q4 (v2)", "daily_limit": 40}"#).expect("valid");
        assert_eq!((p.name.as_str(), p.daily_limit), ("Q4 (v2)", Some(40)));
        assert_eq!((p.id, p.created_at, p.accounts.clone()), (c.id, c.created_at, c.accounts.clone()));
        assert_eq!(serde_json::to_value(&p.steps).ok(), serde_json::to_value(&c.steps).ok());
        assert_eq!(serde_json::to_value(&p.schedule).ok(), serde_json::to_value(&c.schedule).ok());
    }

    #[test]
    fn edited_steps_are_compiled_like_new_ones() {
        let c = stored();
        let e = apply(&c, br#"{"steps": [{"subject": "Hi {{ frist_name }}", "text": "x"}]}"#).expect_err("typo");
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_template", Some("steps[0].subject")));
        // The stored lead_variables still count.
        let p = apply(&c, br#"{"steps": [{"subject": "Hi", "text": "{{ plan }}"}]}"#).expect("valid");
        assert_eq!(p.steps.len(), 1);
        let e = apply(&c, br#"{"id": "x"}"#).expect_err("unknown");
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("unknown_field", Some("id")));
        let e = apply(&c, br#"{"daily_limit": 0}"#).expect_err("zero");
        assert_eq!(e.field.as_deref(), Some("daily_limit"));
    }
}
