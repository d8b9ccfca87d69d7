//! The circuit breaker in front of Redis.
//!
//! - **Closed**: every command goes to Redis. `threshold` consecutive availability failures
//!   (timeouts, refused or dropped connections) open it.
//! - **Open** for `cooldown`: no command is sent; callers get [`Permit::Denied`] at once and the
//!   cache serves from L1 and loaders, so a dead or frozen Redis costs nothing per call.
//! - **Half-open** when the cooldown ends: exactly one command goes through as a probe (others
//!   are still denied). Its success closes the breaker (and the cache replays what it could not
//!   write, see [`crate::l2`]); its failure opens it for another cooldown.
//!
//! Errors Redis itself answers (a script error, a permission error) are not availability
//! failures and do not move the breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send the command.
    Allowed,
    /// Send the command: it is the probe of a half-open breaker.
    Probe,
    /// Do not send it: the breaker is open.
    Denied,
}

/// The breaker's state, as a gauge: 0 closed, 1 open, 2 half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Commands flow.
    Closed = 0,
    /// Commands are skipped.
    Open = 1,
    /// One probe is in flight.
    HalfOpen = 2,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    opened: AtomicU64,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
            opened: AtomicU64::new(0),
        }
    }

    /// Ends an open breaker's cooldown now: the next command is the probe. For a new server
    /// behind the same name (a Sentinel failover), which the failures measured nothing of.
    pub fn probe_now(&self) {
        let mut state = self.state.lock();
        if let State::Open { .. } = *state {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    /// Asks to send one command.
    pub fn permit(&self) -> Permit {
        self.permit_at(Instant::now())
    }

    /// [`Breaker::permit`] with the clock read by the caller: the seam that lets the unit tests
    /// move time instead of sleeping through the cooldown.
    fn permit_at(&self, now: Instant) -> Permit {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => Permit::Allowed,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                Permit::Probe
            }
            State::Open { .. } | State::HalfOpen => Permit::Denied,
        }
    }

    /// Reports a command that got an answer. Returns true when this closed an open breaker.
    pub fn success(&self, permit: Permit) -> bool {
        let mut state = self.state.lock();
        match (&*state, permit) {
            (State::HalfOpen, Permit::Probe) => {
                *state = State::Closed { failures: 0 };
                true
            }
            (State::Closed { .. }, _) => {
                *state = State::Closed { failures: 0 };
                false
            }
            _ => false,
        }
    }

    /// Reports a command that failed for lack of Redis (timeout, connection).
    pub fn failure(&self, permit: Permit) {
        self.failure_at(permit, Instant::now())
    }

    /// [`Breaker::failure`] with the clock read by the caller (the cooldown starts at `now`):
    /// the unit tests' seam, like [`Breaker::permit_at`].
    fn failure_at(&self, permit: Permit, now: Instant) {
        let mut state = self.state.lock();
        let open = match (&mut *state, permit) {
            (State::HalfOpen, Permit::Probe) => true,
            (State::Closed { failures }, _) => {
                *failures += 1;
                *failures >= self.threshold
            }
            _ => false,
        };
        if open {
            *state = State::Open {
                until: now + self.cooldown,
            };
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reports that a probe ended without telling anything (cancelled): let another probe go.
    pub fn abandon(&self, permit: Permit) {
        if permit == Permit::Probe {
            let mut state = self.state.lock();
            if matches!(*state, State::HalfOpen) {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// How many times it opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds after `t0` on the injected clock.
    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn opens_after_threshold_then_probes_and_closes() {
        // the clock is injected: no sleep, and a slow machine cannot end the cooldown early
        let t0 = Instant::now();
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            let p = b.permit_at(t0);
            assert_eq!(p, Permit::Allowed);
            b.failure_at(p, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure_at(b.permit_at(t0), t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.permit_at(t0), Permit::Denied);
        assert_eq!(
            b.permit_at(at(t0, 29)),
            Permit::Denied,
            "still open just before the cooldown ends"
        );
        let probe = b.permit_at(at(t0, 30));
        assert_eq!(probe, Permit::Probe, "half-open once the cooldown ended");
        assert_eq!(
            b.permit_at(at(t0, 31)),
            Permit::Denied,
            "one probe at a time"
        );
        assert!(b.success(probe));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn a_failed_probe_reopens_and_success_resets_the_count() {
        let t0 = Instant::now();
        let b = Breaker::new(2, Duration::from_millis(10));
        b.failure_at(b.permit_at(t0), t0);
        b.success(b.permit_at(t0));
        b.failure_at(b.permit_at(t0), t0);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "failures must be consecutive"
        );
        b.failure_at(b.permit_at(t0), t0);
        assert_eq!(b.state(), BreakerState::Open);
        let probe = b.permit_at(at(t0, 10));
        assert_eq!(probe, Permit::Probe);
        // the failed probe opens it for a new cooldown, counted from the failure
        b.failure_at(probe, at(t0, 15));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        assert_eq!(b.permit_at(at(t0, 24)), Permit::Denied, "a new cooldown");
        let probe = b.permit_at(at(t0, 25));
        assert_eq!(probe, Permit::Probe);
        b.abandon(probe);
        // abandon() reopens with the real clock's now: the real clock, monotonic, is past it
        assert_eq!(
            b.permit(),
            Permit::Probe,
            "an abandoned probe lets the next one go"
        );
    }
    #[test]
    fn probe_now_ends_the_cooldown_of_an_open_breaker_only() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.probe_now();
        assert_eq!(b.permit(), Permit::Allowed, "a closed breaker stays closed");
        b.failure(Permit::Allowed);
        assert_eq!(b.permit(), Permit::Denied);
        b.probe_now();
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Denied, "one probe at a time");
    }
}
