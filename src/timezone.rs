//! The time zone all dates are computed in: backup folder dates, file timestamps, the
//! daily/weekly/monthly classification and cron fire times (`TZ`, as upstream).
//!
//! An IANA name (`America/Vancouver`, `PST8PDT`, `UTC`) is resolved with chrono-tz; anything
//! else (unset, or a POSIX rule string) falls back to the C library's local time, which reads
//! `TZ` itself.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A time zone for wall-clock computations.
#[derive(Debug, Clone)]
pub enum Zone {
    Named(Tz),
    /// The system's local time zone (TZ unset, or not an IANA name).
    System(Option<String>),
}

impl Zone {
    /// Resolves the `TZ` value. An unknown name falls back to the system zone, and
    /// `description()` says so (shown by `-c`).
    pub fn parse(tz: Option<&str>) -> Zone {
        match tz.map(|t| t.trim_start_matches(':')) {
            None | Some("") => Zone::System(None),
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => Zone::Named(tz),
                Err(_) => Zone::System(Some(name.to_string())),
            },
        }
    }

    /// Wall-clock time of `t` in this zone.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
            Zone::System(_) => t.with_timezone(&Local).naive_local(),
        }
    }

    /// `America/Vancouver (PST, -0800)`-style text for `-c` and logs.
    pub fn description(&self, now: DateTime<Utc>) -> String {
        match self {
            Zone::Named(tz) => {
                let t = now.with_timezone(tz);
                format!("{} ({}, {})", tz.name(), t.format("%Z"), t.format("%z"))
            }
            Zone::System(name) => {
                let t = now.with_timezone(&Local);
                let label = match name {
                    Some(n) => format!("TZ={n} (not an IANA name; system rules)"),
                    None => "system local time (TZ unset)".to_string(),
                };
                format!("{label} ({})", t.format("%z"))
            }
        }
    }

    /// Next fire time of `cron` strictly after `now`, evaluated on this zone's wall clock.
    pub fn next_cron_fire(&self, cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        fn next<T: TimeZone>(cron: &Cron, now: DateTime<T>) -> Option<DateTime<Utc>> {
            cron.find_next_occurrence(&now, false).ok().map(|t| t.with_timezone(&Utc))
        }
        match self {
            Zone::Named(tz) => next(cron, now.with_timezone(tz)),
            Zone::System(_) => next(cron, now.with_timezone(&Local)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_zones_and_fallback() {
        assert!(matches!(Zone::parse(Some("PST8PDT")), Zone::Named(_)));
        assert!(matches!(Zone::parse(Some(":Europe/Berlin")), Zone::Named(_)));
        assert!(matches!(Zone::parse(None), Zone::System(None)));
        assert!(matches!(Zone::parse(Some("EST5EDT,M3.2.0,M11.1.0")), Zone::System(Some(_))));
    }

    #[test]
    fn local_wall_clock() {
        let z = Zone::parse(Some("America/Vancouver"));
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 7, 30, 0).unwrap();
        assert_eq!(z.local(t).to_string(), "2026-11-21 23:30:00");
        assert!(z.description(t).starts_with("America/Vancouver (PST, -0800)"));
    }
}
