//! Five-field cron expressions with Debian cron semantics, evaluated in an IANA zone.
//!
//! Written here rather than taken from a crate because the ones available differ from
//! Debian cron (as cronsim reproduces it for healthchecks) where it matters to a monitor:
//! the day-of-month/day-of-week rule keys on a field *starting with* `*`, impossible dates
//! such as `30 2` are refused, and daylight saving follows two modes (see [`Cron::next_after`]).

use std::fmt;

use chrono::{
    DateTime, Datelike as _, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone as _,
    Timelike as _, Utc,
};
use chrono_tz::Tz;

/// Longest expression accepted, as healthchecks does.
pub const MAX_LEN: usize = 100;

/// How far ahead a search looks before concluding the schedule never fires again.
const SEARCH_YEARS: i32 = 50;

/// Why an expression was refused; the message is shown to the API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CronError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CronError> {
    Err(CronError(msg.into()))
}

/// A parsed expression. Sets are bitmasks: bit n set means value n matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    /// Days of month 1..=31.
    days: u64,
    /// `L`: the last day of the month.
    last_day: bool,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    last_weekday: bool,
    months: u64,
    /// Weekdays, 0 = Sunday.
    weekdays: u64,
    /// `5L`: the last Friday of the month, per weekday.
    last_of_weekday: u64,
    /// `5#2`: the second Friday of the month, as (weekday, n).
    nth_weekday: Vec<(u32, u32)>,
    /// Debian's rule: when either day field starts with `*`, a day must match both.
    days_and: bool,
    /// Minute and hour fields both start with something other than `*`: a job at fixed
    /// wall-clock times, which follows the wall clock across daylight-saving changes.
    fixed_time: bool,
}

#[derive(Clone, Copy)]
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
// 7 is accepted as Sunday and folded to 0 after parsing.
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// Longest month length per month (February counted with its leap day), to refuse days
/// that exist in none of the chosen months.
const MONTH_MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl FieldSpec {
    fn value(&self, text: &str) -> Result<u32, CronError> {
        let base = if self.min == 1 && !self.names.is_empty() {
            1
        } else {
            0
        };
        if let Some(i) = self.names.iter().position(|n| *n == text) {
            return Ok(u32::try_from(i).unwrap_or(0) + base);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 2 {
            return err(format!("bad {}: {text:?}", self.name));
        }
        let n: u32 = text
            .parse()
            .map_err(|_| CronError(format!("bad {}", self.name)))?;
        if n < self.min || n > self.max {
            return err(format!(
                "bad {}: {n} is outside {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(n)
    }

    /// One comma-separated term: `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n`.
    fn term(&self, term: &str) -> Result<u64, CronError> {
        let (lhs, step) = match term.split_once('/') {
            Some((lhs, step)) => {
                let step: u32 = match step.parse() {
                    Ok(s) if step.bytes().all(|b| b.is_ascii_digit()) => s,
                    _ => return err(format!("bad {} step: {step:?}", self.name)),
                };
                if step == 0 {
                    return err(format!("bad {} step: 0", self.name));
                }
                (lhs, Some(step))
            }
            None => (term, None),
        };

        let (lo, hi) = if lhs == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = lhs.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            // Debian accepts FRI-MON but never runs it; refusing it is kinder.
            if b < a {
                return err(format!("bad {} range: {lhs} runs backwards", self.name));
            }
            (a, b)
        } else {
            let a = self.value(lhs)?;
            // `a/n` means from a to the end of the field, every n.
            (a, if step.is_some() { self.max } else { a })
        };
        Ok(range_mask(lo, hi, step.unwrap_or(1)))
    }

    fn parse(&self, field: &str) -> Result<u64, CronError> {
        field
            .split(',')
            .try_fold(0, |acc, t| Ok(acc | self.term(t)?))
    }
}

fn range_mask(lo: u32, hi: u32, step: u32) -> u64 {
    (lo..=hi)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .fold(0, |acc, v| acc | (1 << v))
}

fn has(mask: u64, value: u32) -> bool {
    mask & (1 << value) != 0
}

impl Cron {
    /// Parses a five-field expression: minute, hour, day of month, month, day of week.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        if expr.len() > MAX_LEN {
            return err(format!("longer than {MAX_LEN} characters"));
        }
        let upper = expr.to_ascii_uppercase();
        let fields: Vec<&str> = upper.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return err(format!(
                "expected 5 fields (minute hour day month weekday), got {}",
                fields.len()
            ));
        };

        let mut cron = Self {
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)?,
            days: 0,
            last_day: false,
            last_weekday: false,
            months: MONTH.parse(month)?,
            weekdays: 0,
            last_of_weekday: 0,
            nth_weekday: Vec::new(),
            days_and: day.starts_with('*') || weekday.starts_with('*'),
            fixed_time: !minute.starts_with('*') && !hour.starts_with('*'),
        };

        for term in day.split(',') {
            match term {
                "L" => cron.last_day = true,
                "LW" => cron.last_weekday = true,
                _ => cron.days |= DAY.term(term)?,
            }
        }
        for term in weekday.split(',') {
            if let Some(d) = term.strip_suffix('L').filter(|d| !d.is_empty()) {
                cron.last_of_weekday |= 1 << (WEEKDAY.value(d)? % 7);
            } else if let Some((d, n)) = term.split_once('#') {
                let n = match n.parse::<u32>() {
                    Ok(n @ 1..=5) => n,
                    _ => return err(format!("bad day-of-week: {term:?} (n must be 1-5)")),
                };
                cron.nth_weekday.push((WEEKDAY.value(d)? % 7, n));
            } else {
                cron.weekdays |= WEEKDAY.term(term)?;
            }
        }
        // Sunday may be written 7.
        if has(cron.weekdays, 7) {
            cron.weekdays = (cron.weekdays & !(1 << 7)) | 1;
        }

        // `30 2` (February 30th) can never fire; Debian would silently never run it.
        if cron.days != 0 {
            let first_day = cron.days.trailing_zeros();
            let longest = (1..=12)
                .filter(|m| has(cron.months, *m))
                .map(|m| MONTH_MAX_DAYS[m as usize - 1])
                .max()
                .unwrap_or(31);
            if first_day > longest {
                return err("bad day-of-month: no chosen month has that day");
            }
        }

        // Anything else that never fires (none found so far) is refused the way
        // healthchecks does: by asking for one fire after a fixed date.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if probe.and_then(|p| cron.next_after(p, Tz::UTC)).is_none() {
            return err("the schedule never fires");
        }
        Ok(cron)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if !has(self.months, date.month()) {
            return false;
        }
        let last = last_day_of_month(date);
        let weekday = date.weekday().num_days_from_sunday();

        let dom = has(self.days, date.day())
            || (self.last_day && date == last)
            || (self.last_weekday && date == last_weekday_of_month(last));
        let dow = has(self.weekdays, weekday)
            || (has(self.last_of_weekday, weekday) && date.day() + 7 > last.day())
            || self
                .nth_weekday
                .iter()
                .any(|&(d, n)| d == weekday && (date.day() - 1) / 7 + 1 == n);

        if self.days_and {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn time_matches(&self, t: NaiveDateTime) -> bool {
        has(self.hours, t.hour()) && has(self.minutes, t.minute())
    }

    /// The first fire time strictly after `after`, which is first truncated to the second
    /// (a ping at 10:00:00.9 fills the 10:00 slot), or `None` if none within 50 years.
    ///
    /// Fixed-time jobs follow the wall clock in `zone`: a time skipped in spring fires at
    /// the first minute that exists after it, and a time repeated in autumn fires once,
    /// at its first occurrence. Other schedules step through real time: they never fire in
    /// a skipped hour and fire in both copies of a repeated one. The result is in UTC, and
    /// so must all arithmetic with it be.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let after = after.with_nanosecond(0)?;
        if self.fixed_time {
            self.next_wall_clock(after, zone)
        } else {
            self.next_real_time(after, zone)
        }
    }

    fn next_wall_clock(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let mut cursor = after.with_timezone(&zone).naive_local();
        loop {
            let candidate = self.next_naive(cursor)?;
            let fire = match zone.from_local_datetime(&candidate) {
                LocalResult::Single(t) => t,
                LocalResult::Ambiguous(first, _) => first,
                LocalResult::None => first_after_gap(zone, candidate)?,
            }
            .with_timezone(&Utc);
            // A ping in the second copy of a repeated hour has a wall time that reads earlier
            // than it is; the slot must still lie after the ping itself.
            if fire > after {
                return Some(fire);
            }
            cursor = candidate;
        }
    }

    /// The first matching wall-clock minute strictly after `after`.
    fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = after.year() + SEARCH_YEARS;
        let mut t = floor_minute(after) + Duration::minutes(1);
        while t.year() <= limit {
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
            } else if !has(self.hours, t.hour()) {
                t = floor_hour(t) + Duration::hours(1);
            } else if !has(self.minutes, t.minute()) {
                t += Duration::minutes(1);
            } else {
                return Some(t);
            }
        }
        None
    }

    fn next_real_time(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let limit = after.year() + SEARCH_YEARS;
        // Zone offsets are whole minutes since 1970, so UTC minutes are local minutes.
        let mut t = after.with_second(0)? + Duration::minutes(1);
        loop {
            let local = t.with_timezone(&zone).naive_local();
            if local.year() > limit {
                return None;
            }
            if !self.day_matches(local.date()) {
                // Skip whole days by wall clock: nothing in a non-matching day can fire.
                let midnight = local.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                let next = earliest_at_or_after(zone, midnight)?;
                t = next.max(t + Duration::minutes(1));
            } else if !self.time_matches(local) {
                // Within a matching day, step through real time so both copies of a repeated
                // hour are seen; at most 1,440 steps per matching day.
                t += Duration::minutes(1);
            } else {
                return Some(t);
            }
        }
    }
}

fn floor_minute(t: NaiveDateTime) -> NaiveDateTime {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

fn floor_hour(t: NaiveDateTime) -> NaiveDateTime {
    floor_minute(t).with_minute(0).unwrap_or(t)
}

fn last_day_of_month(date: NaiveDate) -> NaiveDate {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(date)
}

fn last_weekday_of_month(last: NaiveDate) -> NaiveDate {
    let mut d = last;
    while d.weekday().number_from_monday() > 5 {
        d = d.pred_opt().unwrap_or(d);
    }
    d
}

/// The first existing local minute after a wall-clock time that the zone skips.
fn first_after_gap(zone: Tz, skipped: NaiveDateTime) -> Option<DateTime<Tz>> {
    // Gaps last at most a few hours (the longest on record was a day, Samoa 2011).
    (1..=48 * 60).find_map(
        |m| match zone.from_local_datetime(&(skipped + Duration::minutes(m))) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(first, _) => Some(first),
            LocalResult::None => None,
        },
    )
}

fn earliest_at_or_after(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let t = match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(first, _) => first,
        LocalResult::None => first_after_gap(zone, local)?,
    };
    Some(t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time parses")
            .with_timezone(&Utc)
    }

    fn zone(name: &str) -> Tz {
        name.parse().expect("known zone")
    }

    /// Successive fires when every ping arrives exactly on time, as healthchecks computes
    /// them: a fresh search from each previous result.
    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let cron = Cron::parse(expr).expect("valid expression");
        let mut at = utc(from);
        (0..n)
            .map(|_| {
                at = cron.next_after(at, zone(tz)).expect("fires");
                at
            })
            .collect()
    }

    fn times(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|s| utc(s)).collect()
    }

    fn refused(expr: &str) -> String {
        Cron::parse(expr).expect_err(expr).0
    }

    #[test]
    fn day_fields_are_ored_when_both_are_restricted() {
        assert_eq!(
            fires("0 0 13 * 5", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-06T00:00:00Z"])
        );
    }

    #[test]
    fn day_fields_are_anded_when_one_starts_with_a_star() {
        assert_eq!(
            fires("0 0 */100,13 * 5", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-13T00:00:00Z"])
        );
        assert_eq!(
            fires("0 0 1-7 * *", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-02T00:00:00Z"])
        );
    }

    #[test]
    fn impossible_dates_are_refused_and_leap_day_is_not() {
        assert!(refused("0 0 30 2 *").contains("day-of-month"));
        assert!(refused("0 0 31 2 *").contains("day-of-month"));
        assert!(refused("0 0 31 4,6,9,11 *").contains("day-of-month"));
        assert_eq!(
            fires("0 0 29 2 *", "UTC", "2025-03-01T00:00:00Z", 1),
            times(&["2028-02-29T00:00:00Z"])
        );
    }

    #[test]
    fn malformed_expressions_are_refused_with_a_reason() {
        assert!(refused("0 0 * * FRI-MON").contains("backwards"));
        assert!(refused("*/0 * * * *").contains("step: 0"));
        assert!(refused("0 0 0 * * *").contains("expected 5 fields"));
        assert!(refused("0 0 * *").contains("expected 5 fields"));
        assert!(refused("@daily").contains("expected 5 fields"));
        assert!(refused("60 * * * *").contains("minute"));
        assert!(refused("* 24 * * *").contains("hour"));
        assert!(refused("* * 0 * *").contains("day-of-month"));
        assert!(refused("* * * 13 *").contains("month"));
        assert!(refused("* * * * 8").contains("day-of-week"));
        assert!(refused("a * * * *").contains("minute"));
        assert!(refused("1-2-3 * * * *").contains("minute"));
        assert!(refused("*/x * * * *").contains("step"));
        assert!(refused("5/ * * * *").contains("step"));
        assert!(refused(",5 * * * *").contains("minute"));
        assert!(refused("* * * * 1#6").contains("1-5"));
        assert!(refused("? * * * *").contains("minute"));
        assert!(refused(&format!("{} * * * *", "0,".repeat(50))).contains("longer"));
        assert!(refused("").contains("expected 5 fields"));
    }

    #[test]
    fn names_ranges_steps_and_lists() {
        // Every 20 minutes from 5 past, 9 to 17, Monday to Friday, in January and June.
        let cron = Cron::parse("5/20 9-17 * jan,Jun mon-FRI").unwrap();
        assert_eq!(cron.minutes, (1 << 5) | (1 << 25) | (1 << 45));
        assert_eq!(cron.hours, range_mask(9, 17, 1));
        assert_eq!(cron.months, (1 << 1) | (1 << 6));
        assert_eq!(cron.weekdays, range_mask(1, 5, 1));
        assert_eq!(
            fires(
                "5/20 9-17 * jan,Jun mon-FRI",
                "UTC",
                "2025-06-01T12:00:00Z",
                3
            ),
            times(&[
                "2025-06-02T09:05:00Z",
                "2025-06-02T09:25:00Z",
                "2025-06-02T09:45:00Z"
            ])
        );
        assert!(refused("0 0 * * 1-10/3").contains("day-of-week"));
        assert_eq!(Cron::parse("0 0 * * 0-6/2").unwrap().weekdays, 0b1010101);
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        let zero = Cron::parse("0 0 * * 0").unwrap();
        let seven = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(zero.weekdays, seven.weekdays);
        assert_eq!(Cron::parse("0 0 * * 5-7").unwrap().weekdays, 0b1100001);
        assert_eq!(
            fires("0 0 * * 7", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-08T00:00:00Z"])
        );
    }

    #[test]
    fn last_day_last_weekday_and_nth_weekday() {
        assert_eq!(
            fires("0 0 L * *", "UTC", "2025-01-31T00:00:00Z", 2),
            times(&["2025-02-28T00:00:00Z", "2025-03-31T00:00:00Z"])
        );
        // May 2025 ends on a Saturday: its last weekday is Friday the 30th.
        assert_eq!(
            fires("0 0 LW 5 *", "UTC", "2025-05-01T00:00:00Z", 1),
            times(&["2025-05-30T00:00:00Z"])
        );
        assert_eq!(
            fires("0 0 * * 5L", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-27T00:00:00Z"])
        );
        assert_eq!(
            fires("0 0 * * FRI#2", "UTC", "2025-06-01T00:00:00Z", 1),
            times(&["2025-06-13T00:00:00Z"])
        );
    }

    #[test]
    fn next_fire_is_strictly_after_the_second_of_the_ping() {
        let cron = Cron::parse("0 10 * * *").unwrap();
        let next = |s| cron.next_after(utc(s), Tz::UTC).unwrap();
        assert_eq!(next("2025-05-01T09:59:30Z"), utc("2025-05-01T10:00:00Z"));
        assert_eq!(
            next("2025-05-01T09:59:59.900Z"),
            utc("2025-05-01T10:00:00Z")
        );
        assert_eq!(
            next("2025-05-01T10:00:00.000Z"),
            utc("2025-05-02T10:00:00Z")
        );
        assert_eq!(
            next("2025-05-01T10:00:00.999Z"),
            utc("2025-05-02T10:00:00Z")
        );
    }

    // The cases file's Europe/Berlin 2025 tables (spring 30 Mar 02:00→03:00, autumn 26 Oct
    // 03:00→02:00).

    #[test]
    fn berlin_fixed_time_in_the_spring_gap_fires_right_after_the_jump() {
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2025-03-29T20:00:00Z", 2),
            times(&["2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"])
        );
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2025-03-29T20:00:00Z", 1),
            times(&["2025-03-30T01:00:00Z"])
        );
        assert_eq!(
            fires("30 1,2,3 * * *", "Europe/Berlin", "2025-03-29T20:00:00Z", 3),
            times(&[
                "2025-03-30T00:30:00Z",
                "2025-03-30T01:00:00Z",
                "2025-03-30T01:30:00Z"
            ])
        );
    }

    #[test]
    fn berlin_fixed_time_in_the_repeated_hour_fires_once() {
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2025-10-25T20:00:00Z", 2),
            times(&["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"])
        );
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2025-10-25T20:00:00Z", 2),
            times(&["2025-10-26T00:00:00Z", "2025-10-27T01:00:00Z"])
        );
        assert_eq!(
            fires("30 1,2,3 * * *", "Europe/Berlin", "2025-10-25T20:00:00Z", 3),
            times(&[
                "2025-10-25T23:30:00Z",
                "2025-10-26T00:30:00Z",
                "2025-10-26T02:30:00Z"
            ])
        );
    }

    #[test]
    fn berlin_hourly_steps_through_real_time() {
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2025-03-29T23:30:00Z", 3),
            times(&[
                "2025-03-30T00:00:00Z",
                "2025-03-30T01:00:00Z",
                "2025-03-30T02:00:00Z"
            ])
        );
        // Local 02:00 comes twice: 00:00Z (CEST) and 01:00Z (CET).
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2025-10-25T23:30:00Z", 3),
            times(&[
                "2025-10-26T00:00:00Z",
                "2025-10-26T01:00:00Z",
                "2025-10-26T02:00:00Z"
            ])
        );
        assert_eq!(
            fires("*/30 * * * *", "Europe/Berlin", "2025-03-29T23:15:00Z", 4),
            times(&[
                "2025-03-29T23:30:00Z",
                "2025-03-30T00:00:00Z",
                "2025-03-30T00:30:00Z",
                "2025-03-30T01:00:00Z"
            ])
        );
    }

    // America/New_York 2025: spring 9 Mar 02:00 EST → 03:00 EDT (07:00Z); autumn 2 Nov
    // 02:00 EDT → 01:00 EST (06:00Z).

    #[test]
    fn new_york_spring_gap() {
        // 02:30 does not exist on 9 March: the run happens at 03:00 EDT, right after the jump.
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2025-03-08T12:00:00Z", 3),
            times(&[
                "2025-03-09T07:00:00Z",
                "2025-03-10T06:30:00Z",
                "2025-03-11T06:30:00Z"
            ])
        );
        // 01:00 EST (06:00Z), then 03:00 EDT (07:00Z): no 02:00 in real time.
        assert_eq!(
            fires("0 * * * *", "America/New_York", "2025-03-09T05:30:00Z", 3),
            times(&[
                "2025-03-09T06:00:00Z",
                "2025-03-09T07:00:00Z",
                "2025-03-09T08:00:00Z"
            ])
        );
    }

    #[test]
    fn new_york_autumn_repeat() {
        // 01:30 comes twice on 2 November; a fixed-time job runs at the first only.
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2025-11-01T12:00:00Z", 2),
            times(&["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"])
        );
        // Real-time schedules fire in both copies of 01:xx.
        assert_eq!(
            fires("0 * * * *", "America/New_York", "2025-11-02T04:30:00Z", 3),
            times(&[
                "2025-11-02T05:00:00Z",
                "2025-11-02T06:00:00Z",
                "2025-11-02T07:00:00Z"
            ])
        );
        assert_eq!(
            fires(
                "*/30 1 * * *",
                "America/New_York",
                "2025-11-02T05:00:00Z",
                3
            ),
            times(&[
                "2025-11-02T05:30:00Z",
                "2025-11-02T06:00:00Z",
                "2025-11-02T06:30:00Z"
            ])
        );
    }

    // cronsim's own reference vectors, Europe/Riga 2021 (DST starts 28 Mar 03:00 → 04:00,
    // ends 31 Oct 04:00 → 03:00).

    #[test]
    fn riga_vectors_from_cronsim() {
        assert_eq!(
            fires("0 3 * * *", "Europe/Riga", "2021-03-26T12:00:00Z", 3),
            times(&[
                "2021-03-27T01:00:00Z",
                "2021-03-28T01:00:00Z",
                "2021-03-29T00:00:00Z"
            ])
        );
        assert_eq!(
            fires("15 3 * * *", "Europe/Riga", "2021-03-26T12:00:00Z", 3),
            times(&[
                "2021-03-27T01:15:00Z",
                "2021-03-28T01:00:00Z",
                "2021-03-29T00:15:00Z"
            ])
        );
        assert_eq!(
            fires("0 3 * * *", "Europe/Riga", "2021-10-30T12:00:00Z", 2),
            times(&["2021-10-31T00:00:00Z", "2021-11-01T01:00:00Z"])
        );
        assert_eq!(
            fires("0 */3 * * *", "Europe/Riga", "2021-10-30T23:30:00Z", 3),
            times(&[
                "2021-10-31T00:00:00Z",
                "2021-10-31T01:00:00Z",
                "2021-10-31T04:00:00Z"
            ])
        );
        let all_hours = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            fires(
                &format!("0 {all_hours} * * *"),
                "Europe/Riga",
                "2021-03-27T23:30:00Z",
                3
            ),
            times(&[
                "2021-03-28T00:00:00Z",
                "2021-03-28T01:00:00Z",
                "2021-03-28T02:00:00Z"
            ])
        );
        assert_eq!(
            fires(
                &format!("0 {all_hours} * * *"),
                "Europe/Riga",
                "2021-10-30T22:30:00Z",
                3
            ),
            times(&[
                "2021-10-30T23:00:00Z",
                "2021-10-31T00:00:00Z",
                "2021-10-31T02:00:00Z"
            ])
        );
        assert_eq!(
            fires("*/15 * * * *", "Europe/Riga", "2021-10-31T00:40:00Z", 4),
            times(&[
                "2021-10-31T00:45:00Z",
                "2021-10-31T01:00:00Z",
                "2021-10-31T01:15:00Z",
                "2021-10-31T01:30:00Z"
            ])
        );
    }

    #[test]
    fn a_fixed_slot_read_from_the_second_copy_of_an_hour_is_still_in_the_future() {
        // A ping at 02:30 CET (the second 02:30) must not be told its next slot is 02:45
        // CEST, which was an hour earlier in real time.
        assert_eq!(
            fires("45 2 * * *", "Europe/Berlin", "2025-10-26T01:30:00Z", 1),
            times(&["2025-10-27T01:45:00Z"])
        );
    }

    #[test]
    fn rare_schedules_are_found_quickly_and_never_firing_ones_end() {
        let started = std::time::Instant::now();
        assert_eq!(
            fires("* * 29 2 *", "Europe/Berlin", "2025-03-01T00:00:00Z", 1),
            times(&["2028-02-28T23:00:00Z"])
        );
        // Either the 29th or a Monday, in February only.
        assert_eq!(
            fires("0 12 29 2 1", "UTC", "2025-03-01T00:00:00Z", 1),
            times(&["2026-02-02T12:00:00Z"])
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
