//! Campaigns: ordered steps sent from a set of sender accounts inside a schedule.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::AccountId;
use crate::account_request::RequestError;
use crate::error_code::ErrorCode;
use crate::schedule::{Schedule, ScheduleSpec};
use crate::template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CampaignId(Uuid);

impl CampaignId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CampaignId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// DRAFT → RUNNING ⇄ PAUSED → COMPLETED / STOPPED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CampaignState {
    Draft,
    Running,
    Paused,
    Completed,
    Stopped,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Running, Self::Paused, Self::Completed, Self::Stopped].into_iter().find(|x| x.as_str() == s)
    }

    /// The state an action leads to, or why it is not allowed from here.
    pub fn apply(self, action: CampaignAction) -> Result<Self, NotAllowed> {
        use CampaignAction as A;
        use CampaignState as S;
        match (self, action) {
            (S::Draft, A::Start) => Ok(S::Running),
            (S::Running, A::Pause) => Ok(S::Paused),
            (S::Paused, A::Resume) => Ok(S::Running),
            (S::Draft | S::Running | S::Paused, A::Stop) => Ok(S::Stopped),
            (from, action) => Err(NotAllowed { from, action }),
        }
    }

    /// The state `action` leads to when it is allowed from somewhere (a repeated command
    /// finding the campaign already there changes nothing).
    pub fn target_of(action: CampaignAction) -> Self {
        match action {
            CampaignAction::Start | CampaignAction::Resume => CampaignState::Running,
            CampaignAction::Pause => CampaignState::Paused,
            CampaignAction::Stop => CampaignState::Stopped,
        }
    }
}

/// An action the campaign's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a {} campaign", .action.as_str(), .from.as_str())]
pub struct NotAllowed {
    pub from: CampaignState,
    pub action: CampaignAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CampaignAction {
    Start,
    Pause,
    Resume,
    Stop,
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Stop => "stop",
        }
    }
}

impl FromStr for CampaignAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" => Ok(Self::Start),
            "pause" => Ok(Self::Pause),
            "resume" => Ok(Self::Resume),
            "stop" => Ok(Self::Stop),
            other => Err(format!("unknown action '{other}' (start, pause, resume, stop)")),
        }
    }
}

/// One email of the sequence. Templates are checked for syntax when the campaign is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Wait after the previous step (for the first step: after the lead is queued).
    #[serde(with = "humantime_serde_secs")]
    pub delay: Duration,
}

mod humantime_serde_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub accounts: Vec<AccountId>,
    pub steps: Vec<Step>,
    pub schedule: Schedule,
    pub daily_limit: Option<u32>,
    pub stop_on_reply: bool,
    pub stop_on_domain_reply: bool,
    /// Custom variables its templates may use without a default (kept so edits are
    /// checked against the same list).
    #[serde(default)]
    pub lead_variables: Vec<String>,
    /// How a mailbox paces this campaign's sends; `None`: `sending.pacing`.
    #[serde(default)]
    pub pacing: Option<Pacing>,
    /// Send in each lead's own time zone (its `timezone` variable) when it has one: the
    /// schedule's days and hours, read in the lead's zone.
    #[serde(default)]
    pub lead_timezones: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl Campaign {
    /// The subject a step is sent with: its own, else "Re: " + the first step's.
    pub fn subject_template(&self, step: usize) -> &str {
        let first = self.steps.first().and_then(|s| s.subject.as_deref()).unwrap_or_default();
        match self.steps.get(step).and_then(|s| s.subject.as_deref()) {
            Some(own) => own,
            None => first,
        }
    }

    pub fn is_reply_subject(&self, step: usize) -> bool {
        step > 0 && self.steps.get(step).is_some_and(|s| s.subject.is_none())
    }
}

/// The JSON body of `POST /api/public/v1/campaigns`.
/// How a mailbox paces its sends within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Pacing {
    /// Spread over what is left of the window: the gap is the window time left divided by
    /// the sends the mailbox has left today (with jitter), never below `min_gap_secs`.
    Spread,
    /// As fast as `min_gap_secs` (plus jitter) allows.
    Fast,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: String,
    /// Sender accounts to rotate between (ids of registered accounts).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, inline, value_type = Vec<uuid::Uuid>))]
    pub sender_account_ids: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
    pub steps: Vec<StepRequest>,
    /// Default: every day, all day, UTC.
    pub schedule: Option<ScheduleSpec>,
    /// Optional cap on the whole campaign's sends per day (schedule's time zone).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub daily_limit: Option<u32>,
    /// Stop a lead's sequence when it replies (default true).
    pub stop_on_reply: Option<bool>,
    /// A reply pauses every lead of the same domain (default false).
    pub stop_on_domain_reply: Option<bool>,
    /// Custom variables the leads will carry (their `variables`, or extra CSV columns),
    /// which templates may use without a default. Any other unknown variable is refused.
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub lead_variables: Option<Vec<String>>,
    /// `spread` (over the window) or `fast` (the gap only); default: `sending.pacing`.
    pub pacing: Option<Pacing>,
    /// Read the schedule in each lead's own time zone (its `timezone` variable, e.g. a CSV
    /// column) when it has one; default false.
    pub lead_timezones: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRequest {
    /// Required on the first step; a follow-up without one is sent as "Re: <first subject>" in the same thread.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\r\n]*\S[^\r\n]*$"))]
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Wait after the previous step, e.g. "3d", "12h", "90s". Optional on the first step (default 0s).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[1-9][0-9]{0,3}(s|m|h|d|w)$"))]
    pub delay: Option<String>,
}

impl CampaignRequest {
    pub fn into_campaign(self) -> Result<Campaign, RequestError> {
        let bad = |code, field: &str, msg: String| RequestError::new(code, msg, Some(field));
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(bad(ErrorCode::InvalidName, "name", "name must be 1-200 characters".into()));
        }
        if self.sender_account_ids.is_empty() {
            return Err(bad(
                ErrorCode::MissingField,
                "sender_account_ids",
                "at least one sender account is needed".into(),
            ));
        }
        let mut accounts = Vec::new();
        for raw in &self.sender_account_ids {
            let id: AccountId = raw.parse().map_err(|_| {
                bad(ErrorCode::InvalidAccount, "sender_account_ids", format!("'{raw}' is not an account id"))
            })?;
            if !accounts.contains(&id) {
                accounts.push(id);
            }
        }
        if self.steps.is_empty() || self.steps.len() > 20 {
            return Err(bad(ErrorCode::InvalidSteps, "steps", "a campaign has 1-20 steps".into()));
        }
        let mut steps = Vec::new();
        for (i, s) in self.steps.into_iter().enumerate() {
            let field = format!("steps[{i}]");
            let delay = match (s.delay.as_deref(), i) {
                (None, 0) => Duration::ZERO,
                (None, _) => {
                    return Err(bad(
                        ErrorCode::MissingField,
                        &format!("{field}.delay"),
                        "follow-ups need a delay such as \"3d\"".into(),
                    ));
                }
                (Some(d), _) => humantime::parse_duration(d)
                    .map_err(|e| bad(ErrorCode::InvalidDelay, &format!("{field}.delay"), format!("'{d}': {e}")))?,
            };
            if i == 0 && s.subject.as_deref().is_none_or(|x| x.trim().is_empty()) {
                return Err(bad(ErrorCode::MissingField, "steps[0].subject", "the first step needs a subject".into()));
            }
            for (part, text) in
                [("subject", s.subject.as_deref()), ("text", Some(s.text.as_str())), ("html", s.html.as_deref())]
            {
                if let Some(t) = text {
                    template::check(t, self.lead_variables.as_deref().unwrap_or_default())
                        .map_err(|e| bad(ErrorCode::InvalidTemplate, &format!("{field}.{part}"), e))?;
                }
            }
            if s.subject.as_deref().is_some_and(|x| x.contains(['\r', '\n'])) {
                return Err(bad(
                    ErrorCode::InvalidTemplate,
                    &format!("{field}.subject"),
                    "subject must be one line".into(),
                ));
            }
            steps.push(Step { subject: s.subject, text: s.text, html: s.html, delay });
        }
        let schedule = match self.schedule {
            Some(spec) => Schedule::try_from(spec).map_err(|e| bad(ErrorCode::InvalidSchedule, "schedule", e))?,
            None => Schedule::always(),
        };
        if self.daily_limit == Some(0) {
            return Err(bad(ErrorCode::InvalidDailyLimit, "daily_limit", "daily_limit must be at least 1".into()));
        }
        Ok(Campaign {
            id: CampaignId::new_random(),
            name: name.to_owned(),
            accounts,
            steps,
            schedule,
            daily_limit: self.daily_limit,
            stop_on_reply: self.stop_on_reply.unwrap_or(true),
            stop_on_domain_reply: self.stop_on_domain_reply.unwrap_or(false),
            lead_variables: self.lead_variables.unwrap_or_default(),
            pacing: self.pacing,
            lead_timezones: self.lead_timezones.unwrap_or(false),
            created_at: time::OffsetDateTime::now_utc(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        use CampaignAction as A;
        use CampaignState as S;
        assert_eq!(S::Draft.apply(A::Start), Ok(S::Running));
        assert_eq!(S::Running.apply(A::Pause), Ok(S::Paused));
        assert_eq!(S::Paused.apply(A::Resume), Ok(S::Running));
        assert_eq!(S::Paused.apply(A::Stop), Ok(S::Stopped));
        assert!(S::Stopped.apply(A::Resume).is_err());
        assert!(S::Completed.apply(A::Start).is_err());
        assert!(S::Running.apply(A::Start).is_err());
    }

    fn req(steps: serde_json::Value) -> Result<Campaign, RequestError> {
        let v = serde_json::json!({
            "name": "Q4", "sender_account_ids": ["00000000-0000-4000-8000-000000000001"], "steps": steps
        });
        serde_json::from_value::<CampaignRequest>(v).expect("shape").into_campaign()
    }

    #[test]
    fn steps_and_delays() {
        let c = req(serde_json::json!([
            {"subject": "Hi {{ first_name }}", "text": "Hello"},
            {"text": "Following up", "delay": "3d"},
            {"subject": "Last one", "text": "Bye", "delay": "90s"}
        ]))
        .expect("valid");
        assert_eq!(c.steps[1].delay, Duration::from_secs(3 * 86_400));
        assert_eq!(c.subject_template(1), "Hi {{ first_name }}");
        assert!(c.is_reply_subject(1));
        assert!(!c.is_reply_subject(2));
        assert_eq!(req(serde_json::json!([{"text": "x"}])).unwrap_err().field.as_deref(), Some("steps[0].subject"));
        assert_eq!(
            req(serde_json::json!([{"subject": "a", "text": "x"}, {"text": "y"}])).unwrap_err().field.as_deref(),
            Some("steps[1].delay")
        );
        assert_eq!(
            req(serde_json::json!([{"subject": "a {{ oops", "text": "x"}])).unwrap_err().code,
            ErrorCode::InvalidTemplate
        );
    }
}
