//! The connection's deadlines: a small table indexed by [`Timer`], whose
//! earliest entry is what `poll_timeout` reports.

use std::time::Instant;

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
}

const TIMERS: usize = 4;

impl Timer {
    const ALL: [Timer; TIMERS] = [Timer::Ping, Timer::PongDeadline, Timer::CloseHandshake, Timer::Idle];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; TIMERS],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; TIMERS];
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The timers due at `now`, earliest first.
    pub(crate) fn expired(&self, now: Instant) -> impl Iterator<Item = Timer> + '_ {
        let mut due: Vec<(Instant, Timer)> =
            Timer::ALL.iter().filter_map(|&t| self.get(t).filter(|&at| at <= now).map(|at| (at, t))).collect();
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, t)| t)
    }
}
