//! How many emails a mailbox may send today: min(its daily_limit, its inbox type's
//! maximum, its warm-up ramp), counted per local day of the account's time zone.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::account::SenderAccount;

/// Per-day volumes of the warm-up ramp, by account age (provider recommendations:
/// 0–2 weeks 20–30, 2–4 weeks 50–80, 4+ weeks 80–100; lower values are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmupRamp {
    pub new_per_day: u32,
    pub warming_per_day: u32,
    pub established_per_day: u32,
}

impl Default for WarmupRamp {
    fn default() -> Self {
        Self { new_per_day: 25, warming_per_day: 65, established_per_day: 90 }
    }
}

impl WarmupRamp {
    /// At most the guidance's upper bounds (30, 80, 100), never decreasing, at least 1:
    /// a careful operator may ramp slower (10/day), never faster.
    pub fn check(&self) -> Result<(), String> {
        let ok = (1..=30).contains(&self.new_per_day)
            && (self.new_per_day..=80).contains(&self.warming_per_day)
            && (self.warming_per_day..=100).contains(&self.established_per_day);
        if ok {
            Ok(())
        } else {
            Err("warm-up values must be at least 1, never decrease, and be at most 30, 80 and 100".into())
        }
    }

    pub fn for_age_days(&self, age_days: i64) -> u32 {
        self.stage(age_days).1
    }

    /// The stage at `age_days`, its per-day volume and the age it ends at (none: the last).
    pub fn stage(&self, age_days: i64) -> (WarmupStage, u32, Option<i64>) {
        match age_days {
            ..14 => (WarmupStage::New, self.new_per_day, Some(14)),
            14..28 => (WarmupStage::Warming, self.warming_per_day, Some(28)),
            _ => (WarmupStage::Established, self.established_per_day, None),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WarmupStage {
    /// Weeks 0-2.
    New,
    /// Weeks 2-4.
    Warming,
    /// From week 4 on.
    Established,
}

/// Which limit decides today's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BindingLimit {
    DailyLimit,
    InboxMaximum,
    Warmup,
}

/// Today's cap and why it is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapBreakdown {
    pub effective_cap: u32,
    pub binding: BindingLimit,
    pub daily_limit: u32,
    pub inbox_maximum: u32,
    /// Set while warm-up is on.
    pub warmup: Option<WarmupStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmupStatus {
    pub stage: WarmupStage,
    pub per_day: u32,
    /// The day the ramp counts from (the account's creation, or its `warmup_start`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub started_on: NaiveDate,
    /// The day the next stage begins (none in the last stage).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub stage_ends_on: Option<NaiveDate>,
}

/// Per-account sending settings (not part of the registration JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendingSettings {
    /// IANA time zone whose calendar day the daily cap counts.
    pub timezone: String,
    /// Apply the warm-up ramp (on by default).
    pub warmup: bool,
    /// Append a copy of each sent email to the Sent folder over IMAP.
    pub append_to_sent: bool,
    /// Seconds between IMAP scans of this mailbox; absent: `scan.interval_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_interval_secs: Option<u64>,
    /// The Sent folder's name, when it can be found neither by SPECIAL-USE nor by a common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_sent_folder: Option<String>,
    /// Watch INBOX with IMAP IDLE (where the server offers it); absent: `scan.idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_idle: Option<bool>,
    /// Whether the server itself files every accepted message in Sent, so that a send
    /// missing from Sent provably never went out. Absent: true for Google Workspace and
    /// Microsoft 365, false for custom servers. Never true while `append_to_sent` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_folder_authoritative: Option<bool>,
    /// The day the warm-up ramp counts from; absent: the day the account was added. An
    /// already-aged mailbox sets a day in the past (e.g. 28 days ago: established at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub warmup_start: Option<NaiveDate>,
    /// This mailbox's own ramp (e.g. 10/30/60 for a slow start); absent: `sending.warmup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ramp: Option<WarmupRamp>,
}

impl SendingSettings {
    /// The settings of an account that set none: its day in `timezone`, warm-up on, a Sent
    /// copy only where the server does not file one itself (`append_to_sent`).
    pub fn defaults(timezone: &str, append_to_sent: bool) -> Self {
        Self {
            timezone: timezone.to_owned(),
            warmup: true,
            append_to_sent,
            scan_interval_secs: None,
            imap_sent_folder: None,
            imap_idle: None,
            sent_folder_authoritative: None,
            warmup_start: None,
            warmup_ramp: None,
        }
    }

    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }

    /// Whether the mailbox's Sent folder proves a send absent: only where the provider
    /// files every accepted message there itself (Google Workspace, Microsoft 365). Where
    /// coldsend appends the copy (after the 250), a send that died waiting for the 250
    /// never has one, delivered or not.
    pub fn sent_folder_is_authoritative(&self, inbox_type: crate::account::InboxType) -> bool {
        !self.append_to_sent
            && self.sent_folder_authoritative.unwrap_or(inbox_type != crate::account::InboxType::CustomSmtp)
    }
}

/// The effective cap for the account today.
pub fn effective_cap(
    account: &SenderAccount,
    settings: &SendingSettings,
    ramp: &WarmupRamp,
    now: DateTime<Utc>,
) -> u32 {
    cap_breakdown(account, settings, ramp, now).effective_cap
}

/// Today's cap (min of the daily limit, the inbox maximum and, with warm-up on, the
/// ramp's volume for the account's age — counted from `warmup_start` if set, with the
/// account's own ramp if set) and which of them binds.
pub fn cap_breakdown(
    account: &SenderAccount,
    settings: &SendingSettings,
    default_ramp: &WarmupRamp,
    now: DateTime<Utc>,
) -> CapBreakdown {
    let (daily_limit, inbox_maximum) = (account.daily_limit.get(), account.inbox_type.max_daily_limit());
    let (mut effective_cap, mut binding) = if daily_limit <= inbox_maximum {
        (daily_limit, BindingLimit::DailyLimit)
    } else {
        (inbox_maximum, BindingLimit::InboxMaximum)
    };
    let mut warmup = None;
    if settings.warmup {
        let ramp = settings.warmup_ramp.unwrap_or(*default_ramp);
        let created = DateTime::<Utc>::from_timestamp(account.created_at.unix_timestamp(), 0).unwrap_or(now);
        let started_on = settings.warmup_start.unwrap_or_else(|| created.with_timezone(&settings.tz()).date_naive());
        let age_days = (local_date(settings, now) - started_on).num_days();
        let (stage, per_day, ends_at_age) = ramp.stage(age_days);
        if per_day < effective_cap {
            (effective_cap, binding) = (per_day, BindingLimit::Warmup);
        }
        let stage_ends_on = ends_at_age.map(|a| started_on + chrono::Duration::days(a));
        warmup = Some(WarmupStatus { stage, per_day, started_on, stage_ends_on });
    }
    CapBreakdown { effective_cap, binding, daily_limit, inbox_maximum, warmup }
}

/// The account's local calendar date: the cap counter's key.
pub fn local_date(settings: &SendingSettings, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&settings.tz()).date_naive()
}

/// The next local midnight after `now`, when a spent cap refills.
pub fn next_local_midnight(settings: &SendingSettings, now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeZone;
    let tz = settings.tz();
    let tomorrow = local_date(settings, now).succ_opt().unwrap_or(local_date(settings, now));
    tz.from_local_datetime(&tomorrow.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now + chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_by_age() {
        let r = WarmupRamp::default();
        assert_eq!(r.for_age_days(0), 25);
        assert_eq!(r.for_age_days(13), 25);
        assert_eq!(r.for_age_days(14), 65);
        assert_eq!(r.for_age_days(28), 90);
        assert!(r.check().is_ok());
        assert!(WarmupRamp { new_per_day: 40, ..r }.check().is_err());
        assert!(
            WarmupRamp { new_per_day: 10, warming_per_day: 30, established_per_day: 60 }.check().is_ok(),
            "slower is fine"
        );
        assert!(WarmupRamp { new_per_day: 30, warming_per_day: 20, established_per_day: 60 }.check().is_err());
    }

    #[test]
    fn the_breakdown_names_the_binding_limit_and_the_stage_end() {
        use chrono::TimeZone;
        let new = crate::account_request::SenderAccountRequest::parse_value(serde_json::json!({
            "email_address": "ann@example.test", "display_name": "Ann", "inbox_type": "CUSTOM_SMTP",
            "daily_limit": 50, "smtp_host": "h.example.test", "smtp_port": 587, "smtp_username": "a",
            "smtp_password": "p", "imap_host": "h.example.test", "imap_port": 993, "imap_username": "a",
            "imap_password": "p"
        }))
        .expect("valid");
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).single().expect("t");
        let created = time::OffsetDateTime::from_unix_timestamp(now.timestamp() - 3 * 86_400).expect("t");
        let account = new.into_stored(crate::account::AccountId::new_random(), created).0;
        let mut s = SendingSettings::defaults("UTC", false);
        let b = cap_breakdown(&account, &s, &WarmupRamp::default(), now);
        assert_eq!((b.effective_cap, b.binding), (25, BindingLimit::Warmup));
        let w = b.warmup.expect("warm-up");
        assert_eq!((w.stage, w.stage_ends_on.map(|d| d.to_string())), (WarmupStage::New, Some("2026-12-12".into())));
        // An aged mailbox: its ramp starts weeks ago, and the daily limit binds.
        s.warmup_start = NaiveDate::from_ymd_opt(2026, 10, 1);
        let b = cap_breakdown(&account, &s, &WarmupRamp::default(), now);
        assert_eq!((b.effective_cap, b.binding), (50, BindingLimit::DailyLimit));
        assert_eq!(b.warmup.map(|w| (w.stage, w.stage_ends_on)), Some((WarmupStage::Established, None)));
        // A slower ramp of its own.
        s.warmup_start = None;
        s.warmup_ramp = Some(WarmupRamp { new_per_day: 10, warming_per_day: 30, established_per_day: 60 });
        assert_eq!(effective_cap(&account, &s, &WarmupRamp::default(), now), 10);
    }

    #[test]
    fn midnight_in_zone() {
        use chrono::TimeZone;
        let s = SendingSettings::defaults("Europe/Riga", false);
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 21, 30, 0).single().expect("t"); // 23:30 in Riga
        assert_eq!(local_date(&s, now).to_string(), "2026-11-22");
        assert_eq!(next_local_midnight(&s, now), Utc.with_ymd_and_hms(2026, 11, 22, 22, 0, 0).single().expect("t"));
    }
}
