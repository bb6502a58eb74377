//! The connection's deadlines: a small table indexed by [`Timer`], whose
//! earliest entry is what `poll_timeout` reports.

use std::time::{Duration, Instant};

/// A date decades after `now` that `Instant` can hold: what a deadline
/// that overflows `Instant` ("never") is reported as where an `Instant`
/// is required. Runtimes clamp such far sleeps to their own maximum.
pub(crate) fn far_future(now: Instant) -> Instant {
    const YEAR: u64 = 365 * 24 * 3600;
    [100 * YEAR, 30 * YEAR, YEAR, 24 * 3600]
        .into_iter()
        .find_map(|secs| now.checked_add(Duration::from_secs(secs)))
        .unwrap_or(now)
}

/// `now + after`, or, where that overflows `Instant` (a configured
/// `Duration::MAX` means "never"), a date decades away: for drivers that
/// need an `Instant` for every deadline.
///
/// ```
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert_eq!(blaze_proto::deadline_after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert!(blaze_proto::deadline_after(now, Duration::MAX) > now + Duration::from_secs(86_400));
/// ```
pub fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or_else(|| far_future(now))
}

/// One kind of deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Send a ping: the connection has been silent for `ping_interval`.
    Ping,
    /// The ping went unanswered for `pong_timeout`: the peer is dead.
    PongDeadline,
    /// Our close frame went unanswered for `close_timeout`.
    CloseHandshake,
    /// No message either way for `idle_timeout`.
    Idle,
    /// A message (or a frame) started arriving `message_timeout` ago and
    /// is still unfinished: the peer is dripping it.
    Message,
}

const TIMERS: usize = 5;

impl Timer {
    const ALL: [Timer; TIMERS] =
        [Timer::Ping, Timer::PongDeadline, Timer::CloseHandshake, Timer::Idle, Timer::Message];

    fn index(self) -> usize {
        self as usize
    }
}

/// A stopped timer in [`TimerTable::deadlines`].
const STOPPED: u64 = u64::MAX;

/// The deadlines, as nanoseconds since `epoch` (the connection's start):
/// 8 bytes each where an `Option<Instant>` takes 16, on every idle
/// connection. Exact: an `Instant` plus whole nanoseconds is the same
/// `Instant` again.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable {
    epoch: Instant,
    deadlines: [u64; TIMERS],
}

impl TimerTable {
    /// Every timer stopped; deadlines count from `epoch`.
    pub(crate) fn new(epoch: Instant) -> TimerTable {
        TimerTable { epoch, deadlines: [STOPPED; TIMERS] }
    }

    /// Arms `timer` for `at`. A date before the epoch (a clock that went
    /// back) is due at once; one some 580 years past it is never.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let nanos = u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(STOPPED);
        self.deadlines[timer.index()] = nanos;
    }

    /// Arms `timer` for `after` past `now`. A duration too large for
    /// `Instant` (a configured `Duration::MAX`) means "never": the timer
    /// is left stopped instead of panicking on overflow.
    pub(crate) fn set_after(&mut self, timer: Timer, now: Instant, after: Duration) {
        match now.checked_add(after) {
            Some(at) => self.set(timer, at),
            None => self.stop(timer),
        }
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = STOPPED;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at(self.deadlines[timer.index()])
    }

    fn at(&self, nanos: u64) -> Option<Instant> {
        (nanos != STOPPED).then(|| self.epoch + Duration::from_nanos(nanos))
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [STOPPED; TIMERS];
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at(self.deadlines.iter().copied().min().unwrap_or(STOPPED))
    }

    /// The timers due at `now`, earliest first.
    pub(crate) fn expired(&self, now: Instant) -> impl Iterator<Item = Timer> + '_ {
        let mut due: Vec<(Instant, Timer)> =
            Timer::ALL.iter().filter_map(|&t| self.get(t).filter(|&at| at <= now).map(|at| (at, t))).collect();
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_instants_range_is_never() {
        let now = Instant::now();
        let mut timers = TimerTable::new(now);
        timers.set_after(Timer::Idle, now, Duration::from_secs(1));
        assert_eq!(timers.get(Timer::Idle), Some(now + Duration::from_secs(1)));
        timers.set_after(Timer::Idle, now, Duration::MAX);
        assert_eq!(timers.get(Timer::Idle), None);
        timers.set_after(Timer::Ping, now, Duration::MAX);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn deadlines_read_back_exactly() {
        let epoch = Instant::now();
        let mut timers = TimerTable::new(epoch);
        assert_eq!(timers.next(), None);
        let at = epoch + Duration::new(30, 123_456_789);
        timers.set(Timer::Ping, at);
        timers.set(Timer::Idle, epoch + Duration::from_secs(90));
        assert_eq!((timers.get(Timer::Ping), timers.next()), (Some(at), Some(at)));
        // Before the epoch: due at once, not lost.
        timers.set(Timer::Message, epoch.checked_sub(Duration::from_secs(1)).unwrap_or(epoch));
        assert_eq!(timers.next(), Some(epoch));
        assert_eq!(timers.expired(epoch).collect::<Vec<_>>(), vec![Timer::Message]);
        timers.stop_all();
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn far_future_is_far_and_representable() {
        let now = Instant::now();
        assert!(far_future(now) >= now + Duration::from_secs(24 * 3600));
    }
}
