//! How many emails a mailbox may send today: min(its daily_limit, its inbox type's
//! maximum, its warm-up ramp), counted per local day of the account's time zone.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::account::SenderAccount;

/// Per-day volumes of the warm-up ramp, by account age (provider recommendations:
/// 0–2 weeks 20–30, 2–4 weeks 50–80, 4+ weeks 80–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub fn check(&self) -> Result<(), String> {
        let ok = (20..=30).contains(&self.new_per_day)
            && (50..=80).contains(&self.warming_per_day)
            && (80..=100).contains(&self.established_per_day);
        if ok { Ok(()) } else { Err("warm-up values must lie in 20-30, 50-80 and 80-100".into()) }
    }

    pub fn for_age_days(&self, age_days: i64) -> u32 {
        match age_days {
            ..14 => self.new_per_day,
            14..28 => self.warming_per_day,
            _ => self.established_per_day,
        }
    }
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
    /// Whether the server itself files every accepted message in Sent, so that a send
    /// missing from Sent provably never went out. Absent: true for Google Workspace and
    /// Microsoft 365, false for custom servers. Never true while `append_to_sent` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_folder_authoritative: Option<bool>,
}

impl SendingSettings {
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
    let limit = account.daily_limit.get().min(account.inbox_type.max_daily_limit());
    if !settings.warmup {
        return limit;
    }
    let created = DateTime::<Utc>::from_timestamp(account.created_at.unix_timestamp(), 0).unwrap_or(now);
    limit.min(ramp.for_age_days((now - created).num_days()))
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
    }

    #[test]
    fn midnight_in_zone() {
        use chrono::TimeZone;
        let s = SendingSettings {
            timezone: "Europe/Riga".into(),
            warmup: true,
            append_to_sent: false,
            scan_interval_secs: None,
            imap_sent_folder: None,
            sent_folder_authoritative: None,
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 21, 30, 0).single().expect("t"); // 23:30 in Riga
        assert_eq!(local_date(&s, now).to_string(), "2026-11-22");
        assert_eq!(next_local_midnight(&s, now), Utc.with_ymd_and_hms(2026, 11, 22, 22, 0, 0).single().expect("t"));
    }
}
