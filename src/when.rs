//! Points in time given on the command line (`--since`, `--until`): a date, a date and time, or
//! an age such as `7d`.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

/// A point in time as the user wrote it; [`When::start`] and [`When::end`] turn it into a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A calendar day (UTC): from its first to its last moment.
    Day(NaiveDate),
    /// An exact moment (RFC 3339).
    At(DateTime<Utc>),
    /// This long before now.
    Ago(std::time::Duration),
}

impl When {
    /// The earliest moment it names: `--since 2026-11-23` includes that whole day.
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::Day(d) => Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")),
            When::At(t) => t,
            When::Ago(d) => Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// The moment right after it: `--until 2026-11-23` includes that whole day too.
    pub fn end(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::Day(_) => self
                .start(now)
                .checked_add_signed(Duration::days(1))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            other => other.start(now),
        }
    }
}

impl FromStr for When {
    type Err = String;

    fn from_str(s: &str) -> Result<When, String> {
        let s = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(When::Day(d));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(When::At(t.with_timezone(&Utc)));
        }
        if let Ok(d) = humantime::parse_duration(s) {
            return Ok(When::Ago(d));
        }
        Err(format!(
            "`{s}` is neither a date (2026-11-23), a time (2026-11-23T09:30:00Z) nor an age (7d, 12h, 30m)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_day_spans_from_its_midnight_to_the_next() {
        let w: When = "2026-11-23".parse().unwrap();
        assert_eq!(w.start(now()).to_rfc3339(), "2026-11-23T00:00:00+00:00");
        assert_eq!(w.end(now()).to_rfc3339(), "2026-11-24T00:00:00+00:00");
    }

    #[test]
    fn an_age_counts_back_from_now() {
        let w: When = "7d".parse().unwrap();
        assert_eq!(w.start(now()).to_rfc3339(), "2026-11-22T12:00:00+00:00");
        assert_eq!(w.end(now()), w.start(now()));
        let w: When = "12h".parse().unwrap();
        assert_eq!(w.start(now()).to_rfc3339(), "2026-11-29T00:00:00+00:00");
    }

    #[test]
    fn an_exact_time_keeps_its_offset() {
        let w: When = "2026-11-23T10:00:00+01:00".parse().unwrap();
        assert_eq!(w.start(now()).to_rfc3339(), "2026-11-23T09:00:00+00:00");
    }

    #[test]
    fn anything_else_is_an_error_naming_the_forms() {
        let e = "last monday".parse::<When>().unwrap_err();
        assert!(e.contains("7d") && e.contains("2026-11-23"), "{e}");
    }
}
