//! Schedules: cron expressions (5 fields or `@daily`-style macros, via croner) and go-crond's
//! `@every <duration>`, with DST-safe next-fire computation in a time zone.
//!
//! Pure: no clock, no sleeping. The daemon asks `next_after(now)` after every run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::model::timezone::Zone;

/// When something runs.
#[derive(Clone)]
pub enum Schedule {
    /// A cron expression evaluated in the configured time zone.
    Cron { text: String, cron: Box<Cron> },
    /// A fixed interval (`@every 1h30m`, as go-crond accepts).
    Every(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { text, .. } => f.write_str(text),
            Schedule::Every(d) => write!(f, "@every {}", format_duration(*d)),
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// Parses `m h dom mon dow` (seconds are not allowed, as in crontab), `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`, `@annually`, or `@every <duration>`.
    fn from_str(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("@every") {
            let d = parse_duration(rest.trim())?;
            return Ok(Schedule::Every(d));
        }
        if text.eq_ignore_ascii_case("@reboot") {
            return Err("@reboot is not supported (the daemon does not run a backup at start in cron mode)".into());
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && fields != 5 {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser.parse(text).map_err(|e| format!("invalid cron schedule \"{text}\": {e}"))?;
        Ok(Schedule::Cron { text: text.to_string(), cron: Box::new(cron) })
    }
}

impl Schedule {
    /// The first fire time strictly after `now`. In a spring-forward gap the job runs once at
    /// the first real instant after it; in a fall-back overlap it runs once (croner semantics).
    pub fn next_after(&self, now: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => now.checked_add_signed(chrono::Duration::from_std(*d).ok()?),
            Schedule::Cron { cron, .. } => zone.next_cron_fire(cron, now),
        }
    }

    /// The nominal interval between fires, used for staleness checks: the gap between the next
    /// two fires after `now` (for cron) or the fixed interval.
    pub fn interval_hint(&self, now: DateTime<Utc>, zone: &Zone) -> Option<Duration> {
        let first = self.next_after(now, zone)?;
        let second = self.next_after(first, zone)?;
        (second - first).to_std().ok()
    }
}

/// Parses GNU-sleep/go-style durations: `45`, `45s`, `30m`, `12h`, `1d`, `1h30m`, `1h 30m`.
/// A bare number means seconds, as `sleep` does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0u64;
    let mut digits = String::new();
    let mut seen_any = false;
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c.is_whitespace() && digits.is_empty() {
            continue;
        }
        let unit = match c {
            's' | ' ' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!("invalid duration \"{text}\" (use e.g. 45s, 30m, 12h, 1d)"));
            }
        };
        let n: u64 = digits.parse().map_err(|_| format!("invalid duration \"{text}\" (use e.g. 45s, 30m, 12h, 1d)"))?;
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("invalid duration \"{text}\": too large"))?;
        digits.clear();
        seen_any = true;
    }
    if !seen_any || total == 0 {
        return Err(format!("invalid duration \"{text}\": must be greater than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration compactly (`1d2h`, `30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn zone(name: &str) -> Zone {
        Zone::parse(Some(name)).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn durations_parse_like_sleep() {
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(93784)), "1d2h3m4s");
    }

    #[test]
    fn schedules_parse_and_reject() {
        assert!("1 1 * * *".parse::<Schedule>().is_ok());
        assert!("@daily".parse::<Schedule>().is_ok());
        assert!(matches!("@every 1h".parse::<Schedule>(), Ok(Schedule::Every(d)) if d.as_secs() == 3600));
        assert!("61 * * * *".parse::<Schedule>().is_err());
        assert!("* * * *".parse::<Schedule>().is_err());
        assert!("0 1 * * * *".parse::<Schedule>().is_err(), "no seconds field in crontab lines");
        assert!("@reboot".parse::<Schedule>().is_err());
    }

    #[test]
    fn next_fire_in_local_time() {
        let s: Schedule = "1 1 * * *".parse().unwrap();
        let z = zone("America/Vancouver");
        // 2026-11-22 09:00 UTC = 01:00 PST; next 01:01 PST = 09:01 UTC.
        assert_eq!(s.next_after(utc("2026-11-22T09:00:00Z"), &z), Some(utc("2026-11-22T09:01:00Z")));
        assert_eq!(s.interval_hint(utc("2026-11-22T09:00:00Z"), &z), Some(Duration::from_secs(86400)));
    }

    #[test]
    fn spring_forward_gap_runs_once_at_first_real_instant() {
        // Europe/Berlin jumps 02:00 CET -> 03:00 CEST on 2027-03-28; 02:30 does not exist.
        let s: Schedule = "30 2 * * *".parse().unwrap();
        let z = zone("Europe/Berlin");
        let next = s.next_after(utc("2027-03-27T23:00:00Z"), &z).unwrap();
        assert_eq!(next, utc("2027-03-28T01:00:00Z"), "03:00 CEST");
        let after = s.next_after(next, &z).unwrap();
        assert_eq!(after, utc("2027-03-29T00:30:00Z"), "02:30 CEST next day");
    }

    #[test]
    fn fall_back_overlap_runs_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25; 02:30 happens twice.
        let s: Schedule = "30 2 * * *".parse().unwrap();
        let z = zone("Europe/Berlin");
        let first = s.next_after(utc("2026-10-24T22:00:00Z"), &z).unwrap();
        assert_eq!(first, utc("2026-10-25T00:30:00Z"), "02:30 CEST");
        let second = s.next_after(first, &z).unwrap();
        assert_eq!(second, utc("2026-10-26T01:30:00Z"), "02:30 CET next day, not 02:30 CET the same day");
    }

    #[test]
    fn vancouver_dst_edges() {
        // America/Vancouver: 2027-03-14 02:00 PST -> 03:00 PDT; 2026-11-01 02:00 PDT -> 01:00 PST.
        let s: Schedule = "30 2 * * *".parse().unwrap();
        let z = zone("America/Vancouver");
        let next = s.next_after(utc("2027-03-14T08:00:00Z"), &z).unwrap();
        assert_eq!(next, utc("2027-03-14T10:00:00Z"), "03:00 PDT");
        let s: Schedule = "30 1 * * *".parse().unwrap();
        let first = s.next_after(utc("2026-11-01T07:00:00Z"), &z).unwrap();
        assert_eq!(first, utc("2026-11-01T08:30:00Z"), "01:30 PDT");
        let second = s.next_after(first, &z).unwrap();
        assert_eq!(second, utc("2026-11-02T09:30:00Z"));
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_like_vixie_cron() {
        // "0 0 1 * MON": the 1st of the month OR any Monday.
        let s: Schedule = "0 0 1 * MON".parse().unwrap();
        let z = zone("UTC");
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(); // a Sunday
        let a = s.next_after(start, &z).unwrap();
        assert_eq!(a, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap(), "Monday 23rd");
        let b = s.next_after(Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(), &z).unwrap();
        assert_eq!(b, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(), "Tuesday the 1st");
    }
}
