//! The time zone all dates are computed in: backup folder dates, file timestamps, the
//! daily/weekly/monthly classification and cron fire times (`TZ`, as upstream).
//!
//! An IANA name (`America/Vancouver`, `PST8PDT`, `UTC`) is resolved with chrono-tz; unset
//! means the C library's local time. Anything else is a configuration error: a typo must not
//! silently move every backup's date and schedule to the system's zone.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A time zone for wall-clock computations.
#[derive(Debug, Clone)]
pub enum Zone {
    Named(Tz),
    /// The system's local time zone (TZ unset).
    System(Option<String>),
}

impl Zone {
    /// Resolves the `TZ` value: unset is the system's local time; otherwise it must be an IANA
    /// name (`America/Vancouver`, `PST8PDT`, `UTC`; a leading `:` is allowed).
    ///
    /// # Errors
    /// Anything else (a typo, a POSIX rule string), with the closest IANA name when there is one.
    pub fn parse(tz: Option<&str>) -> Result<Zone, String> {
        match tz.map(|t| t.trim().trim_start_matches(':')) {
            None | Some("") => Ok(Zone::System(None)),
            Some(name) => name.parse::<Tz>().map(Zone::Named).map_err(|_| {
                let lower = name.to_ascii_lowercase();
                let best = chrono_tz::TZ_VARIANTS
                    .iter()
                    .map(|z| (strsim::damerau_levenshtein(&lower, &z.name().to_ascii_lowercase()), z.name()))
                    .min_by_key(|(d, _)| *d)
                    .filter(|(d, n)| *d <= 3.max(n.len() / 5));
                let hint = best.map(|(_, n)| format!("; did you mean {n}?")).unwrap_or_default();
                format!("TZ=\"{name}\" is not an IANA time zone name (e.g. America/Vancouver, PST8PDT, UTC){hint}")
            }),
        }
    }

    /// Wall-clock time of `t` in this zone.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
            Zone::System(_) => t.with_timezone(&Local).naive_local(),
        }
    }

    /// The instant a wall-clock time in this zone names.
    ///
    /// # Errors
    /// A time a DST change skips (nonexistent) or repeats (ambiguous), naming both readings.
    pub fn resolve(&self, local: NaiveDateTime) -> Result<DateTime<Utc>, String> {
        use chrono::LocalResult;
        let result = match self {
            Zone::Named(tz) => tz.from_local_datetime(&local).map(|t| t.with_timezone(&Utc)),
            Zone::System(_) => Local.from_local_datetime(&local).map(|t| t.with_timezone(&Utc)),
        };
        match result {
            LocalResult::Single(t) => Ok(t),
            LocalResult::Ambiguous(a, b) => Err(format!(
                "{local} happens twice in this time zone (a DST change): {} or {}; give an offset",
                a.to_rfc3339(),
                b.to_rfc3339()
            )),
            LocalResult::None => Err(format!("{local} does not exist in this time zone (a DST change skips it)")),
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
    fn named_zones_only_with_suggestions() {
        assert!(matches!(Zone::parse(Some("PST8PDT")), Ok(Zone::Named(_))));
        assert!(matches!(Zone::parse(Some(":Europe/Berlin")), Ok(Zone::Named(_))));
        assert!(matches!(Zone::parse(None), Ok(Zone::System(None))));
        let e = Zone::parse(Some("Amercia/Vancouver")).unwrap_err();
        assert!(e.ends_with("did you mean America/Vancouver?"), "{e}");
        let e = Zone::parse(Some("Mars/Olympus")).unwrap_err();
        assert!(e.contains("not an IANA time zone name"), "{e}");
        assert!(Zone::parse(Some("EST5EDT,M3.2.0,M11.1.0")).is_err());
    }

    #[test]
    fn wall_clock_times_resolve_unless_a_dst_change_makes_them_ambiguous_or_skips_them() {
        let z = Zone::parse(Some("America/Vancouver")).unwrap();
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(z.resolve(t("2026-12-05 10:31:00")).unwrap().to_rfc3339(), "2026-12-05T18:31:00+00:00");
        let e = z.resolve(t("2026-11-01 01:30:00")).unwrap_err();
        assert!(e.contains("happens twice") && e.contains("08:30:00+00:00") && e.contains("09:30:00+00:00"), "{e}");
        assert!(z.resolve(t("2026-03-08 02:30:00")).unwrap_err().contains("does not exist"));
    }

    #[test]
    fn local_wall_clock() {
        let z = Zone::parse(Some("America/Vancouver")).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 7, 30, 0).unwrap();
        assert_eq!(z.local(t).to_string(), "2026-11-21 23:30:00");
        assert!(z.description(t).starts_with("America/Vancouver (PST, -0800)"));
    }
}
