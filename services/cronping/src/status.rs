//! The status engine: what a check's state becomes when a ping arrives or time passes.
//!
//! Pure functions of a state, an event and the time it happens; no clock is read here.
//! The rules follow healthchecks.io: the next expected ping is relative to the last ping,
//! a run that started must finish within grace, a fail marks down at once, and every
//! transition yields a flip stamped with the moment it logically happened.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::cron::Cron;

/// Limits on a period timeout and on grace, in seconds: 1 minute to 365 days.
pub const MIN_SECS: i64 = 60;
pub const MAX_SECS: i64 = 365 * 24 * 3600;

/// When pings are expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `timeout` after the last ping.
    Period { timeout: Duration },
    /// At the fires of a cron expression, evaluated in `zone`.
    Cron { cron: Cron, zone: Tz },
}

impl Schedule {
    /// The next expected ping after one at `last_ping`, in UTC; `None` if never.
    pub fn next_expected(&self, last_ping: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Period { timeout } => last_ping.checked_add_signed(*timeout),
            Self::Cron { cron, zone } => cron.next_after(last_ping, *zone),
        }
    }
}

/// The stored status. `grace` and `started` are derived from it and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Up,
    Down,
    Paused,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Up => "up",
            Self::Down => "down",
            Self::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => Self::New,
            "up" => Self::Up,
            "down" => Self::Down,
            "paused" => Self::Paused,
            _ => return None,
        })
    }
}

/// What a client is shown: the stored status, or `grace` while a ping is late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    New,
    Up,
    Grace,
    Down,
    Paused,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Up => "up",
            Self::Grace => "grace",
            Self::Down => "down",
            Self::Paused => "paused",
        }
    }
}

/// The part of a check the engine reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: Stored,
    /// Last success or fail (a start or a log does not count).
    pub last_ping: Option<DateTime<Utc>>,
    /// Start of the run in progress, if any; only the latest start is tracked.
    pub last_start: Option<DateTime<Utc>>,
    pub last_start_rid: Option<Uuid>,
}

impl State {
    pub fn new() -> Self {
        Self {
            status: Stored::New,
            last_ping: None,
            last_start: None,
            last_start_rid: None,
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// A check as the engine sees it: its state and its timing rules.
#[derive(Debug, Clone)]
pub struct Check {
    pub schedule: Schedule,
    pub grace: Duration,
    pub state: State,
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    Success,
    Start,
    Fail,
    Log,
}

impl PingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Start => "start",
            Self::Fail => "fail",
            Self::Log => "log",
        }
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A deadline passed: expected ping plus grace, or start plus grace.
    Timeout,
    Success,
    Fail,
    Pause,
    Resume,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Success => "success",
            Self::Fail => "fail",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// A status transition, stamped with when it logically happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    pub at: DateTime<Utc>,
    pub from: Stored,
    pub to: Stored,
    pub reason: Reason,
}

impl Flip {
    /// Only changes a person must act on alert: going down, and recovering from down.
    /// A first ping (new→up) and a resumed check's first ping (paused→up) are expected.
    pub fn alerts(&self) -> bool {
        match self.to {
            Stored::Down => self.from != Stored::Down,
            Stored::Up => self.from == Stored::Down,
            Stored::New | Stored::Paused => false,
        }
    }
}

impl Check {
    /// When the schedule next expects a ping: only meaningful while up.
    pub fn next_expected(&self) -> Option<DateTime<Utc>> {
        match self.state.status {
            Stored::Up => self.schedule.next_expected(self.state.last_ping?),
            _ => None,
        }
    }

    /// The moment the check goes down unless a ping comes first; `None` when no timer runs
    /// (down already, or new or paused without a run in progress). This is the value the
    /// worker's index is on, and the timestamp of the timeout flip.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        if self.state.status == Stored::Down {
            return None;
        }
        let run = self.state.last_start;
        let slot = self.next_expected();
        let earliest = match (run, slot) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        earliest.checked_add_signed(self.grace)
    }

    /// The status a client sees at `now`, and whether a run is in progress.
    pub fn shown(&self, now: DateTime<Utc>) -> (Shown, bool) {
        if self.deadline().is_some_and(|d| now >= d) {
            return (Shown::Down, false);
        }
        let started = self.state.last_start.is_some();
        let shown = match self.state.status {
            Stored::New => Shown::New,
            Stored::Down => Shown::Down,
            Stored::Paused => Shown::Paused,
            Stored::Up => match self.next_expected() {
                Some(expected) if now >= expected => Shown::Grace,
                _ => Shown::Up,
            },
        };
        (shown, started)
    }

    /// Applies a passed deadline: down, stamped with the deadline itself, not with when
    /// someone noticed. Returns the flip, or `None` when the deadline has not passed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Option<Flip> {
        let deadline = self.deadline().filter(|d| now >= *d)?;
        let flip = Flip {
            at: deadline,
            from: self.state.status,
            to: Stored::Down,
            reason: Reason::Timeout,
        };
        self.state.status = Stored::Down;
        // The run that timed out is over as far as anyone can tell.
        self.state.last_start = None;
        self.state.last_start_rid = None;
        Some(flip)
    }

    /// Applies a ping received at `at`. A deadline that passed before it is applied first,
    /// so a ping that ends an outage still records the outage. Returns the flips in order
    /// and, for a finish that pairs with a start, the run's duration.
    pub fn ping(&mut self, kind: PingKind, rid: Option<Uuid>, at: DateTime<Utc>) -> PingOutcome {
        let mut flips: Vec<Flip> = self.expire(at).into_iter().collect();

        let duration = match kind {
            PingKind::Success | PingKind::Fail => self
                .finishes_run(rid)
                .then(|| at - self.state.last_start.unwrap_or(at)),
            PingKind::Start | PingKind::Log => None,
        };

        let to = match kind {
            PingKind::Log => return PingOutcome { flips, duration },
            PingKind::Start => {
                // A start never fills a schedule slot; it only starts the run timer.
                self.state.last_start = Some(at);
                self.state.last_start_rid = rid;
                return PingOutcome { flips, duration };
            }
            PingKind::Success => {
                if self.finishes_run(rid) {
                    self.state.last_start = None;
                    self.state.last_start_rid = None;
                }
                Stored::Up
            }
            PingKind::Fail => {
                // A failure ends whatever run was in progress, whatever its id.
                self.state.last_start = None;
                self.state.last_start_rid = None;
                Stored::Down
            }
        };

        self.state.last_ping = Some(at);
        if self.state.status != to {
            flips.push(Flip {
                at,
                from: self.state.status,
                to,
                reason: if to == Stored::Up {
                    Reason::Success
                } else {
                    Reason::Fail
                },
            });
            self.state.status = to;
        }
        PingOutcome { flips, duration }
    }

    /// A finish ends the run in progress when it carries the run's id or no id at all.
    fn finishes_run(&self, rid: Option<Uuid>) -> bool {
        self.state.last_start.is_some() && (rid.is_none() || rid == self.state.last_start_rid)
    }

    /// Stops monitoring: no timers, no alert.
    pub fn pause(&mut self, at: DateTime<Utc>) -> Option<Flip> {
        self.state.last_start = None;
        self.state.last_start_rid = None;
        self.transition(Stored::Paused, Reason::Pause, at)
    }

    /// Starts monitoring afresh: the check is new again and waits for its first ping.
    pub fn resume(&mut self, at: DateTime<Utc>) -> Option<Flip> {
        self.state.last_ping = None;
        self.state.last_start = None;
        self.state.last_start_rid = None;
        self.transition(Stored::New, Reason::Resume, at)
    }

    fn transition(&mut self, to: Stored, reason: Reason, at: DateTime<Utc>) -> Option<Flip> {
        let from = self.state.status;
        self.state.status = to;
        (from != to).then_some(Flip {
            at,
            from,
            to,
            reason,
        })
    }
}

/// The result of applying one ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingOutcome {
    pub flips: Vec<Flip>,
    /// Start-to-finish time when this ping finished a run.
    pub duration: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time parses")
            .with_timezone(&Utc)
    }

    fn cron(expr: &str, zone: &str, grace_minutes: i64) -> Check {
        Check {
            schedule: Schedule::Cron {
                cron: Cron::parse(expr).expect("valid"),
                zone: zone.parse().expect("zone"),
            },
            grace: Duration::minutes(grace_minutes),
            state: State::new(),
        }
    }

    fn period(timeout: Duration, grace: Duration) -> Check {
        Check {
            schedule: Schedule::Period { timeout },
            grace,
            state: State::new(),
        }
    }

    fn success(check: &mut Check, at: &str) -> Vec<Flip> {
        check.ping(PingKind::Success, None, utc(at)).flips
    }

    fn flip(at: &str, from: Stored, to: Stored, reason: Reason) -> Flip {
        Flip {
            at: utc(at),
            from,
            to,
            reason,
        }
    }

    fn shown(check: &Check, at: &str) -> Shown {
        check.shown(utc(at)).0
    }

    #[test]
    fn first_success_makes_a_new_check_up_without_alert() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        let flips = success(&mut check, "2025-05-01T10:00:00Z");
        assert_eq!(
            flips,
            [flip(
                "2025-05-01T10:00:00Z",
                Stored::New,
                Stored::Up,
                Reason::Success
            )]
        );
        assert!(!flips[0].alerts());
        assert!(
            success(&mut check, "2025-05-01T10:30:00Z").is_empty(),
            "up→up is no flip"
        );
    }

    #[test]
    fn period_check_goes_through_grace_to_down_at_the_exact_deadline() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        assert_eq!(check.deadline(), Some(utc("2025-05-01T11:05:00Z")));
        assert_eq!(shown(&check, "2025-05-01T10:59:59Z"), Shown::Up);
        assert_eq!(shown(&check, "2025-05-01T11:00:00Z"), Shown::Grace);
        assert_eq!(shown(&check, "2025-05-01T11:04:59Z"), Shown::Grace);
        assert_eq!(shown(&check, "2025-05-01T11:05:00Z"), Shown::Down);

        assert_eq!(check.expire(utc("2025-05-01T11:04:59Z")), None);
        // Noticed late, stamped at the deadline.
        let down = check.expire(utc("2025-05-01T11:09:42Z")).expect("down");
        assert_eq!(
            down,
            flip(
                "2025-05-01T11:05:00Z",
                Stored::Up,
                Stored::Down,
                Reason::Timeout
            )
        );
        assert!(down.alerts());
        assert_eq!(check.deadline(), None, "no timer while down");
        assert_eq!(
            check.expire(utc("2025-05-09T00:00:00Z")),
            None,
            "one flip per outage"
        );
    }

    #[test]
    fn late_ping_within_grace_keeps_check_up() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        assert!(success(&mut check, "2025-05-01T11:04:00Z").is_empty());
        assert_eq!(shown(&check, "2025-05-01T11:05:00Z"), Shown::Up);
        assert_eq!(check.deadline(), Some(utc("2025-05-01T12:09:00Z")));
    }

    #[test]
    fn recovery_from_down_alerts() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        check.expire(utc("2025-05-01T11:05:00Z"));
        let flips = success(&mut check, "2025-05-01T12:00:00Z");
        assert_eq!(
            flips,
            [flip(
                "2025-05-01T12:00:00Z",
                Stored::Down,
                Stored::Up,
                Reason::Success
            )]
        );
        assert!(flips[0].alerts());
    }

    #[test]
    fn ping_after_an_unnoticed_deadline_records_the_outage_first() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        // The worker never ran; the ping itself notices the deadline passed.
        let flips = success(&mut check, "2025-05-01T11:30:00Z");
        assert_eq!(
            flips,
            [
                flip(
                    "2025-05-01T11:05:00Z",
                    Stored::Up,
                    Stored::Down,
                    Reason::Timeout
                ),
                flip(
                    "2025-05-01T11:30:00Z",
                    Stored::Down,
                    Stored::Up,
                    Reason::Success
                ),
            ]
        );
        assert!(flips.iter().all(Flip::alerts));
    }

    #[test]
    fn fail_ping_marks_down_at_once_and_repeated_fails_are_silent() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        let flips = check
            .ping(PingKind::Fail, None, utc("2025-05-01T10:10:00Z"))
            .flips;
        assert_eq!(
            flips,
            [flip(
                "2025-05-01T10:10:00Z",
                Stored::Up,
                Stored::Down,
                Reason::Fail
            )]
        );
        assert!(flips[0].alerts());
        assert_eq!(check.state.last_ping, Some(utc("2025-05-01T10:10:00Z")));

        let again = check.ping(PingKind::Fail, None, utc("2025-05-01T10:20:00Z"));
        assert!(again.flips.is_empty(), "down→down is no flip and no alert");
    }

    #[test]
    fn fail_on_a_new_check_alerts() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        let flips = check
            .ping(PingKind::Fail, None, utc("2025-05-01T10:00:00Z"))
            .flips;
        assert_eq!(flips[0].from, Stored::New);
        assert!(flips[0].alerts());
    }

    #[test]
    fn log_changes_nothing_and_start_does_not_fill_a_slot() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        let before = check.state.clone();
        let out = check.ping(PingKind::Log, None, utc("2025-05-01T10:30:00Z"));
        assert!(out.flips.is_empty());
        assert_eq!(check.state, before);

        check.ping(PingKind::Start, None, utc("2025-05-01T10:50:00Z"));
        assert_eq!(check.state.last_ping, Some(utc("2025-05-01T10:00:00Z")));
        assert_eq!(check.shown(utc("2025-05-01T10:51:00Z")), (Shown::Up, true));
    }

    #[test]
    fn long_job_started_but_not_finished_goes_down_at_start_plus_grace() {
        // Cases file 5: period 7 days, grace 6 h; success Mon 05:00, start Tue 05:00.
        let mut check = period(Duration::days(7), Duration::hours(6));
        success(&mut check, "2025-05-05T05:00:00Z");
        check.ping(PingKind::Start, None, utc("2025-05-06T05:00:00Z"));
        assert_eq!(check.shown(utc("2025-05-06T10:59:59Z")), (Shown::Up, true));
        assert_eq!(check.deadline(), Some(utc("2025-05-06T11:00:00Z")));
        assert_eq!(shown(&check, "2025-05-06T11:00:00Z"), Shown::Down);
        let down = check.expire(utc("2025-05-06T11:00:30Z")).expect("down");
        assert_eq!(
            down,
            flip(
                "2025-05-06T11:00:00Z",
                Stored::Up,
                Stored::Down,
                Reason::Timeout
            )
        );
        assert!(down.alerts());
    }

    #[test]
    fn new_check_that_only_starts_goes_down_with_an_alert() {
        let mut check = period(Duration::days(1), Duration::hours(1));
        check.ping(PingKind::Start, None, utc("2025-05-01T10:00:00Z"));
        assert_eq!(check.shown(utc("2025-05-01T10:30:00Z")), (Shown::New, true));
        let down = check.expire(utc("2025-05-01T11:00:00Z")).expect("down");
        assert_eq!(
            down,
            flip(
                "2025-05-01T11:00:00Z",
                Stored::New,
                Stored::Down,
                Reason::Timeout
            )
        );
        assert!(down.alerts());
    }

    #[test]
    fn run_ids_pair_a_start_with_its_own_finish() {
        let rid_a = Uuid::from_u128(0xa);
        let rid_b = Uuid::from_u128(0xb);
        let mut check = period(Duration::days(1), Duration::hours(1));
        check.ping(PingKind::Start, Some(rid_a), utc("2025-05-01T10:00:00Z"));

        // Another run's finish leaves this run's timer going.
        let other = check.ping(PingKind::Success, Some(rid_b), utc("2025-05-01T10:10:00Z"));
        assert_eq!(other.duration, None);
        assert_eq!(check.state.last_start, Some(utc("2025-05-01T10:00:00Z")));

        let own = check.ping(PingKind::Success, Some(rid_a), utc("2025-05-01T10:20:00Z"));
        assert_eq!(own.duration, Some(Duration::minutes(20)));
        assert_eq!(check.state.last_start, None);

        // A finish without an id ends whatever run is in progress.
        check.ping(PingKind::Start, Some(rid_a), utc("2025-05-01T11:00:00Z"));
        let plain = check.ping(PingKind::Success, None, utc("2025-05-01T11:05:00Z"));
        assert_eq!(plain.duration, Some(Duration::minutes(5)));

        // A fail ends the run whatever its id.
        check.ping(PingKind::Start, Some(rid_a), utc("2025-05-01T12:00:00Z"));
        check.ping(PingKind::Fail, Some(rid_b), utc("2025-05-01T12:01:00Z"));
        assert_eq!(check.state.last_start, None);
    }

    #[test]
    fn pause_stops_timers_and_paused_to_up_does_not_alert() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        let paused = check.pause(utc("2025-05-01T10:10:00Z")).expect("flip");
        assert!(!paused.alerts());
        assert_eq!(check.deadline(), None);
        assert_eq!(shown(&check, "2026-01-01T00:00:00Z"), Shown::Paused);
        assert_eq!(
            check.pause(utc("2025-05-01T10:11:00Z")),
            None,
            "pause is idempotent"
        );

        let flips = success(&mut check, "2025-05-02T10:00:00Z");
        assert_eq!(
            flips,
            [flip(
                "2025-05-02T10:00:00Z",
                Stored::Paused,
                Stored::Up,
                Reason::Success
            )]
        );
        assert!(!flips[0].alerts());
    }

    #[test]
    fn paused_check_fails_with_an_alert_and_its_run_timer_still_applies() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        check.pause(utc("2025-05-01T10:00:00Z"));
        let fail = check
            .ping(PingKind::Fail, None, utc("2025-05-01T10:01:00Z"))
            .flips;
        assert!(fail[0].alerts());

        let mut check = period(Duration::hours(1), Duration::minutes(5));
        check.pause(utc("2025-05-01T10:00:00Z"));
        check.ping(PingKind::Start, None, utc("2025-05-01T10:01:00Z"));
        assert_eq!(
            check.state.status,
            Stored::Paused,
            "a start does not unpause"
        );
        let down = check.expire(utc("2025-05-01T10:06:00Z")).expect("down");
        assert_eq!(down.from, Stored::Paused);
        assert!(down.alerts());
    }

    #[test]
    fn resume_makes_the_check_new_again() {
        let mut check = period(Duration::hours(1), Duration::minutes(5));
        success(&mut check, "2025-05-01T10:00:00Z");
        check.pause(utc("2025-05-01T10:10:00Z"));
        let flip = check.resume(utc("2025-05-01T10:20:00Z")).expect("flip");
        assert_eq!(
            (flip.from, flip.to, flip.alerts()),
            (Stored::Paused, Stored::New, false)
        );
        assert_eq!(check.state.last_ping, None);
        assert_eq!(check.deadline(), None);
    }

    // Cases file, reports 1 to 4.

    #[test]
    fn chicago_fall_back_fifteen_minute_job_goes_down_at_the_computed_deadline() {
        let mut check = cron("*/15 * * * *", "America/Chicago", 5);
        for at in ["06:00", "06:15", "06:30", "06:45"] {
            success(&mut check, &format!("2023-11-05T{at}:00Z"));
        }
        assert_eq!(check.next_expected(), Some(utc("2023-11-05T07:00:00Z")));
        assert_eq!(shown(&check, "2023-11-05T06:59:59Z"), Shown::Up);
        assert_eq!(shown(&check, "2023-11-05T07:00:00Z"), Shown::Grace);
        let down = check.expire(utc("2023-11-05T07:07:13Z")).expect("down");
        assert_eq!(down.at, utc("2023-11-05T07:05:00Z"));

        let up = success(&mut check, "2023-11-05T07:15:00Z");
        assert_eq!((up[0].to, up[0].alerts()), (Stored::Up, true));
        assert_eq!(check.next_expected(), Some(utc("2023-11-05T07:30:00Z")));
    }

    #[test]
    fn copenhagen_two_am_job_across_both_transitions() {
        let mut check = cron("0 2 * * *", "Europe/Copenhagen", 60);
        success(&mut check, "2025-03-29T01:00:00Z");
        assert_eq!(check.next_expected(), Some(utc("2025-03-30T01:00:00Z")));
        let down = check.expire(utc("2025-03-30T02:00:00Z")).expect("down");
        assert_eq!(down.at, utc("2025-03-30T02:00:00Z"));

        let mut check = cron("0 2 * * *", "Europe/Copenhagen", 60);
        success(&mut check, "2025-10-25T00:00:00Z");
        assert_eq!(check.next_expected(), Some(utc("2025-10-26T00:00:00Z")));
        success(&mut check, "2025-10-26T00:00:00Z");
        assert_eq!(check.next_expected(), Some(utc("2025-10-27T01:00:00Z")));
    }

    #[test]
    fn riga_hourly_deadline_is_computed_in_utc() {
        let mut check = cron("15 * * * *", "Europe/Riga", 5);
        success(&mut check, "2023-10-29T00:55:00Z");
        assert_eq!(shown(&check, "2023-10-29T01:05:00Z"), Shown::Up);
        assert_eq!(shown(&check, "2023-10-29T01:15:00Z"), Shown::Grace);
        assert_eq!(shown(&check, "2023-10-29T01:19:59Z"), Shown::Grace);
        assert_eq!(shown(&check, "2023-10-29T01:20:00Z"), Shown::Down);
        assert_eq!(check.deadline(), Some(utc("2023-10-29T01:20:00Z")));
    }

    #[test]
    fn pings_just_before_the_slot_do_not_fill_it() {
        for early in ["2025-05-01T09:59:30Z", "2025-05-01T09:59:59.900Z"] {
            let mut check = cron("0 10 * * *", "UTC", 60);
            success(&mut check, early);
            assert_eq!(check.next_expected(), Some(utc("2025-05-01T10:00:00Z")));
            assert_eq!(shown(&check, "2025-05-01T10:00:00Z"), Shown::Grace);
            assert_eq!(check.deadline(), Some(utc("2025-05-01T11:00:00Z")));
        }
        let mut check = cron("0 10 * * *", "UTC", 60);
        success(&mut check, "2025-05-01T10:00:00.000Z");
        assert_eq!(check.next_expected(), Some(utc("2025-05-02T10:00:00Z")));
    }

    #[test]
    fn both_timers_run_and_the_earlier_wins() {
        // A run that started on time but is still going when the slot's grace ends goes down
        // on the schedule timer.
        let mut check = cron("0 * * * *", "UTC", 10);
        success(&mut check, "2025-05-01T10:00:00Z");
        check.ping(PingKind::Start, None, utc("2025-05-01T10:59:00Z"));
        assert_eq!(check.deadline(), Some(utc("2025-05-01T11:09:00Z")));
        check.ping(PingKind::Start, None, utc("2025-05-01T11:05:00Z"));
        assert_eq!(check.deadline(), Some(utc("2025-05-01T11:10:00Z")));
    }
}
