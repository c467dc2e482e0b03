//! When a recurring schedule fires: a cron expression read on the wall clock of an IANA time
//! zone, turned into UTC instants. Pure functions, no storage.
//!
//! The `cron` crate evaluates the expression on a clock without daylight-saving changes (UTC
//! standing in for the zone's wall clock); each wall time it yields is then placed in the zone
//! with `chrono-tz`:
//! - a wall time that happens twice (the clock goes back) fires once, at its first occurrence;
//! - a wall time that never happens (the clock jumps forward) fires at the first minute after
//!   the jump (02:30 on a spring-forward night in New York fires at 03:00 EDT);
//! - the next fire time after an instant is the first such placement strictly after it, so a
//!   repeated hour never fires again and two skipped wall times fire once.
//!
//! Expressions take 5 fields (minute, hour, day of month, month, day of week) or the `cron`
//! crate's 6 or 7 (seconds first, an optional year last). Days of the week must be written as
//! names (`MON-FRI`), never numbers: cron dialects disagree on what `1` means, and the `cron`
//! crate's `1` is Sunday.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::error::{ErrorCode, PipelineError, Result};

/// The longest cron expression or time zone name accepted, in bytes.
const MAX_TEXT: usize = 200;
/// How many wall times are tried, at most, to find the next fire time after an instant: enough
/// to step over a repeated hour of a schedule that fires every second.
const MAX_CANDIDATES: usize = 10_000;
/// How far past a skipped wall time the first minute after the jump is looked for.
const MAX_GAP_MINUTES: i64 = 24 * 60;

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Recurrence {
    schedule: cron::Schedule,
    zone: Tz,
}

impl Recurrence {
    /// Parses `expression` and the IANA zone name `timezone` (`America/New_York`, `UTC`).
    pub fn parse(expression: &str, timezone: &str) -> Result<Self> {
        let zone = zone(timezone)?;
        let invalid = |why: String| PipelineError::new(ErrorCode::InvalidCron, why);
        if expression.len() > MAX_TEXT || expression.contains('\0') {
            return Err(invalid(format!("`cron` must be at most {MAX_TEXT} bytes")));
        }
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let day_of_week = match fields.len() {
            5 => fields[4],
            6 | 7 => fields[5],
            n => {
                return Err(invalid(format!(
                    "`cron` has {n} fields; it takes 5 (minute hour day-of-month month \
                     day-of-week), or 6 to 7 with seconds first and a year last"
                )));
            }
        };
        if day_of_week.bytes().any(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "`cron`: write days of the week as names (MON-FRI, SUN), not numbers".into(),
            ));
        }
        let full = if fields.len() == 5 {
            format!("0 {}", fields.join(" "))
        } else {
            fields.join(" ")
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| invalid(format!("`cron` does not parse: {e}")))?;
        Ok(Self { schedule, zone })
    }

    /// The first fire time strictly after `instant` (UTC ms); `None` when there is none (an
    /// expression limited to past years).
    #[must_use]
    pub fn next_after(&self, instant: i64) -> Option<i64> {
        let at = Utc.timestamp_millis_opt(instant).single()?;
        let wall = at.with_timezone(&self.zone).naive_local();
        self.schedule
            .after(&wall.and_utc())
            .take(MAX_CANDIDATES)
            .filter_map(|candidate| self.place(candidate.naive_utc()))
            .map(|placed| placed.timestamp_millis())
            .find(|&fire| fire > instant)
    }

    /// The next `count` fire times after `instant`, in order.
    #[must_use]
    pub fn upcoming(&self, instant: i64, count: usize) -> Vec<i64> {
        std::iter::successors(self.next_after(instant), |&last| self.next_after(last))
            .take(count)
            .collect()
    }

    /// `instant` as RFC 3339 on the zone's clock, with its offset
    /// (`2026-03-08T03:00:00-04:00`).
    #[must_use]
    pub fn local_rfc3339(&self, instant: i64) -> String {
        Utc.timestamp_millis_opt(instant)
            .single()
            .map(|at| at.with_timezone(&self.zone).to_rfc3339())
            .unwrap_or_default()
    }

    /// The instant of wall time `wall` in the zone: its first occurrence, or for a wall time the
    /// clock skips, the first minute after the jump.
    fn place(&self, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
        if let Some(placed) = self.zone.from_local_datetime(&wall).earliest() {
            return Some(placed);
        }
        let minute = wall.with_second(0)?.with_nanosecond(0)?;
        (1..=MAX_GAP_MINUTES).find_map(|n| {
            let probe = minute.checked_add_signed(TimeDelta::minutes(n))?;
            self.zone.from_local_datetime(&probe).earliest()
        })
    }
}

/// Parses an IANA time zone name.
pub fn zone(name: &str) -> Result<Tz> {
    if name.len() > MAX_TEXT || name.contains('\0') {
        return Err(PipelineError::new(
            ErrorCode::InvalidTimezone,
            "`timezone` is not an IANA time zone name",
        ));
    }
    name.parse::<Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        PipelineError::new(
            ErrorCode::InvalidTimezone,
            format!("`timezone`: `{shown}` is not an IANA time zone name (such as America/New_York or UTC)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UTC ms of a UTC wall time.
    fn utc(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn new_york(expression: &str) -> Recurrence {
        Recurrence::parse(expression, "America/New_York").unwrap()
    }

    fn local(recurrence: &Recurrence, times: &[i64]) -> Vec<String> {
        times.iter().map(|&t| recurrence.local_rfc3339(t)).collect()
    }

    /// Five fields read as minute-precision cron in the zone's wall clock.
    #[test]
    fn daily_at_nine_in_new_york() {
        let daily = new_york("0 9 * * *");
        let fires = daily.upcoming(utc("2026-01-10 00:00"), 2);
        assert_eq!(
            local(&daily, &fires),
            ["2026-01-10T09:00:00-05:00", "2026-01-11T09:00:00-05:00"]
        );
        let weekdays = new_york("30 8 * * MON-FRI");
        // 2026-01-10 is a Saturday.
        let next = weekdays.next_after(utc("2026-01-10 00:00")).unwrap();
        assert_eq!(daily.local_rfc3339(next), "2026-01-12T08:30:00-05:00");
    }

    /// Spring forward (2026-03-08, 02:00 → 03:00): a daily 02:30 fires once, at 03:00 EDT; an
    /// every-15-minutes schedule fires once for the skipped hour and then on the quarter.
    #[test]
    fn spring_forward_loses_no_firing_and_repeats_none() {
        let daily = new_york("30 2 * * *");
        let fires = daily.upcoming(utc("2026-03-07 00:00"), 3);
        assert_eq!(
            local(&daily, &fires),
            [
                "2026-03-07T02:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00"
            ]
        );
        let quarter = new_york("*/15 * * * *");
        let fires = quarter.upcoming(utc("2026-03-08 06:40"), 4);
        assert_eq!(
            local(&quarter, &fires),
            [
                "2026-03-08T01:45:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );
    }

    /// Fall back (2026-11-01, 02:00 EDT → 01:00 EST): a daily 01:30 fires once, at its first
    /// occurrence; an hourly schedule does not repeat the 01:00 hour.
    #[test]
    fn fall_back_fires_a_repeated_time_once() {
        let daily = new_york("30 1 * * *");
        let fires = daily.upcoming(utc("2026-10-31 12:00"), 3);
        assert_eq!(
            local(&daily, &fires),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
        let hourly = new_york("0 * * * *");
        let fires = hourly.upcoming(utc("2026-11-01 04:30"), 3);
        assert_eq!(
            local(&hourly, &fires),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T03:00:00-05:00"
            ]
        );
        // Asked from inside the repeated hour (01:10 EST), 01:30 has already happened.
        let inside = utc("2026-11-01 06:10");
        let next = daily.next_after(inside).unwrap();
        assert_eq!(daily.local_rfc3339(next), "2026-11-02T01:30:00-05:00");
    }

    /// Bad expressions, numeric days of the week and unknown zones are refused with their codes.
    #[test]
    fn bad_input_is_refused() {
        let code = |cron: &str, zone: &str| Recurrence::parse(cron, zone).unwrap_err().code;
        assert_eq!(code("every day", "UTC"), ErrorCode::InvalidCron);
        assert_eq!(code("61 * * * *", "UTC"), ErrorCode::InvalidCron);
        assert_eq!(code("0 9 * * 1-5", "UTC"), ErrorCode::InvalidCron);
        assert_eq!(
            code("0 9 * * *", "Mars/Olympus"),
            ErrorCode::InvalidTimezone
        );
        assert_eq!(code("0 9 * * *", "UTC\0"), ErrorCode::InvalidTimezone);
        assert!(
            Recurrence::parse("0 0 9 * * * 2020", "UTC")
                .unwrap()
                .next_after(utc("2026-01-01 00:00"))
                .is_none()
        );
    }
}
