//! When a campaign may send: days of the week and a daily window in an IANA time zone.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A weekly sending window. `start < end`, both local times in `timezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleSpec", into = "ScheduleSpec")]
pub struct Schedule {
    timezone: Tz,
    days: BTreeSet<u8>, // 0 = Monday … 6 = Sunday
    start: NaiveTime,
    end: NaiveTime,
}

/// The JSON shape: `{"timezone": "Europe/Riga", "days": ["mon", …], "start": "09:00", "end": "17:00"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleSpec {
    /// IANA time zone, e.g. "America/New_York".
    pub timezone: String,
    /// Any of mon, tue, wed, thu, fri, sat, sun.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, inline, value_type = Vec<Weekday>))]
    pub days: Vec<String>,
    /// Window start, "HH:MM" local time.
    #[cfg_attr(feature = "openapi", schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// Window end, "HH:MM" local time, after start.
    #[cfg_attr(feature = "openapi", schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// The documented day names (the API accepts them in any case).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TryFrom<ScheduleSpec> for Schedule {
    type Error = String;
    fn try_from(spec: ScheduleSpec) -> Result<Self, String> {
        let timezone: Tz =
            spec.timezone.parse().map_err(|_| format!("unknown time zone '{}' (use an IANA name)", spec.timezone))?;
        let mut days = BTreeSet::new();
        for d in &spec.days {
            let lower = d.to_ascii_lowercase();
            let idx = DAY_NAMES
                .iter()
                .position(|n| lower.starts_with(n))
                .ok_or_else(|| format!("unknown day '{d}' (use mon … sun)"))?;
            days.insert(idx as u8);
        }
        if days.is_empty() {
            return Err("schedule needs at least one day".into());
        }
        let time =
            |s: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("'{s}' is not a time like 09:30"));
        let (start, end) = (time(&spec.start)?, time(&spec.end)?);
        if start >= end {
            return Err(format!("window start {} must be before end {}", spec.start, spec.end));
        }
        Ok(Self { timezone, days, start, end })
    }
}

impl From<Schedule> for ScheduleSpec {
    fn from(s: Schedule) -> Self {
        Self {
            timezone: s.timezone.name().to_owned(),
            days: s.days.iter().map(|d| DAY_NAMES[*d as usize].to_owned()).collect(),
            start: s.start.format("%H:%M").to_string(),
            end: s.end.format("%H:%M").to_string(),
        }
    }
}

impl Schedule {
    /// Every day, all day (00:00–23:59) in UTC.
    pub fn always() -> Self {
        Self {
            timezone: Tz::UTC,
            days: (0..7).collect(),
            start: NaiveTime::MIN,
            end: NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN),
        }
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The same days and hours in another time zone (a lead's own).
    pub fn in_timezone(&self, timezone: Tz) -> Self {
        Self { timezone, ..self.clone() }
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.timezone);
        let day = local.weekday().num_days_from_monday() as u8;
        let t = local.time();
        self.days.contains(&day) && t >= self.start && t < self.end
    }

    /// When the window open at `now` closes (`None` while it is closed).
    pub fn window_end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.is_open(now) {
            return None;
        }
        let local = now.with_timezone(&self.timezone);
        let end = self.timezone.from_local_datetime(&local.date_naive().and_time(self.end)).latest()?;
        Some(end.with_timezone(&Utc))
    }

    /// The next moment the window is open (now, if it is open).
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(now) {
            return now;
        }
        let local = now.with_timezone(&self.timezone);
        for offset in 0..8 {
            let date = local.date_naive() + Duration::days(offset);
            if !self.days.contains(&(date.weekday().num_days_from_monday() as u8)) {
                continue;
            }
            // DST gaps: take the earliest valid instant at or after the start.
            let candidate = self.timezone.from_local_datetime(&date.and_time(self.start)).earliest();
            if let Some(c) = candidate.map(|c| c.with_timezone(&Utc))
                && c > now
            {
                return c;
            }
        }
        now + Duration::days(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_end_is_today_s_end_in_the_schedule_s_zone() {
        let s = sched("Europe/Berlin", &["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00").expect("valid");
        // Tuesday 2026-12-01 10:00 Berlin = 09:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("time");
        assert_eq!(s.window_end(now), Utc.with_ymd_and_hms(2026, 12, 1, 16, 0, 0).single());
        let closed = Utc.with_ymd_and_hms(2026, 12, 1, 17, 0, 0).single().expect("time");
        assert_eq!(s.window_end(closed), None);
    }

    fn sched(tz: &str, days: &[&str], start: &str, end: &str) -> Result<Schedule, String> {
        Schedule::try_from(ScheduleSpec {
            timezone: tz.into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
        })
    }

    #[test]
    fn window_in_its_time_zone() {
        let s = sched("America/New_York", &["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00").expect("valid");
        // Monday 2026-11-23 15:00 UTC = 10:00 in New York.
        let open = Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).single().expect("time");
        assert!(s.is_open(open));
        // Monday 13:00 UTC = 08:00 New York: closed, opens at 14:00 UTC.
        let early = Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0).single().expect("time");
        assert!(!s.is_open(early));
        assert_eq!(s.next_open(early), Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).single().expect("time"));
        // Saturday: next opening is Monday.
        let sat = Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0).single().expect("time");
        assert_eq!(s.next_open(sat), Utc.with_ymd_and_hms(2026, 11, 30, 14, 0, 0).single().expect("time"));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(sched("Mars/Base", &["mon"], "09:00", "17:00").is_err());
        assert!(sched("UTC", &["someday"], "09:00", "17:00").is_err());
        assert!(sched("UTC", &[], "09:00", "17:00").is_err());
        assert!(sched("UTC", &["mon"], "17:00", "09:00").is_err());
        assert!(sched("UTC", &["mon"], "9am", "17:00").is_err());
    }
}
