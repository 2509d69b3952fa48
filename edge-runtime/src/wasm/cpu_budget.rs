//! A hook call's budget, counted in CPU time of the thread that runs it.
//!
//! Epoch ticks are wall-clock time. On a busy machine a worker thread can be descheduled
//! for longer than a module's whole budget while the module itself has run for
//! microseconds; a wall-clock deadline would then fail a request the module did nothing
//! wrong in. So the epoch deadline only says "look now": once the budget has passed on
//! the wall clock, the call gets the budget again in CPU time of its thread, measured at
//! each later deadline, and is stopped when that is spent. A module that computes is
//! stopped after one to two budgets; one whose thread was merely descheduled is not.
//!
//! A call also ends after [`WALL_FACTOR`] budgets of wall-clock time (at least
//! [`WALL_MIN`]) whatever its CPU time: a module on a fiber that waits (a WASI sleep)
//! uses none, and a call must end. Like every epoch check this happens when the module
//! runs code: one wait that never returns (a single endless WASI sleep) is not cut short.
//!
//! The thread's CPU time is read only at deadlines (calls that outlast their budget on
//! the wall clock), never on an ordinary call.

use super::engine::TICK;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// A call ends after this many budgets of wall-clock time.
pub const WALL_FACTOR: u32 = 20;
/// ...and not before this much.
pub const WALL_MIN: Duration = Duration::from_millis(100);

/// The budget of the call in progress, and what it has used since its first deadline.
#[derive(Debug, Clone)]
pub struct CpuBudget {
    budget: Duration,
    /// Wall-clock time after which the call stops, whatever its CPU time.
    wall_cap: Duration,
    /// CPU time counted against the budget so far, from the first deadline on.
    used: Duration,
    /// The thread and its CPU time at the last deadline; `None` before the first.
    mark: Option<(ThreadId, Duration)>,
    /// When the first deadline was seen: the budget had passed on the wall clock by then.
    first_look: Option<Instant>,
    /// Which limit stopped the call, once one has.
    stopped: Option<Stopped>,
}

/// The limit that ended a call, for the failure report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The call computed for its whole budget of CPU time.
    CpuBudget { budget: Duration, used: Duration },
    /// The call reached the wall-clock cap (it waited, or its thread was starved).
    WallCap { cap: Duration, used: Duration },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::CpuBudget { budget, used } => {
                write!(
                    f,
                    "CPU budget of {budget:?} spent ({used:?} of CPU counted)"
                )
            }
            Stopped::WallCap { cap, used } => write!(
                f,
                "wall-clock cap of {cap:?} reached ({used:?} of CPU counted)"
            ),
        }
    }
}

/// What to do at an epoch deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum AtDeadline {
    /// Keep running; look again after this many ticks.
    Continue(u64),
    /// The budget is spent: stop the call.
    Stop,
}

impl CpuBudget {
    pub fn new(budget: Duration) -> CpuBudget {
        CpuBudget {
            budget,
            wall_cap: (budget * WALL_FACTOR).max(WALL_MIN),
            used: Duration::ZERO,
            mark: None,
            first_look: None,
            stopped: None,
        }
    }

    /// The limit that stopped the call, if one did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// The epoch deadline to arm a call with, in ticks from now.
    /// Wall-clock time after which the call stops, whatever its CPU time.
    pub fn wall_cap(&self) -> Duration {
        self.wall_cap
    }

    pub fn first_deadline(&self) -> u64 {
        first_deadline(self.budget)
    }

    /// At an epoch deadline, with the current thread's CPU time.
    pub fn at_deadline(&mut self) -> AtDeadline {
        let now = Instant::now();
        self.at_deadline_with(thread::current().id(), thread_cpu_time(), now)
    }

    fn at_deadline_with(&mut self, thread: ThreadId, cpu: Duration, now: Instant) -> AtDeadline {
        // Instant::now() only from the first deadline on: an ordinary call reads no clock.
        let first_look = *self.first_look.get_or_insert(now);
        let waited = self.budget + now.saturating_duration_since(first_look);
        match self.mark {
            Some((marked_thread, marked_cpu)) if marked_thread == thread => {
                self.used += cpu.saturating_sub(marked_cpu);
            }
            // A call on a fiber resumed on another worker: what it ran on the first thread
            // is unknown; the wall-clock cap bounds it.
            _ => {}
        }
        self.mark = Some((thread, cpu));
        if self.used >= self.budget {
            self.stopped = Some(Stopped::CpuBudget {
                budget: self.budget,
                used: self.used,
            });
            return AtDeadline::Stop;
        }
        if waited >= self.wall_cap {
            self.stopped = Some(Stopped::WallCap {
                cap: self.wall_cap,
                used: self.used,
            });
            return AtDeadline::Stop;
        }
        AtDeadline::Continue(ticks(self.budget - self.used))
    }
}

/// At least the budget (the next tick may come at once), at most one tick more.
fn first_deadline(budget: Duration) -> u64 {
    ticks(budget) + 1
}

/// Whole ticks in `d`, rounded up.
fn ticks(d: Duration) -> u64 {
    let tick = TICK.as_nanos().max(1);
    d.as_nanos().div_ceil(tick).max(1) as u64
}

/// CPU time the calling thread has run (`CLOCK_THREAD_CPUTIME_ID`: exact for the running
/// thread, unlike the scheduler's statistics, which lag by up to a scheduler tick).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_descheduled_call_keeps_running_and_a_spinning_one_stops() {
        let here = thread::current().id();
        let t = Instant::now();
        let mut budget = CpuBudget::new(5 * MS);
        assert_eq!(budget.first_deadline(), 6);
        // The wall-clock budget passed; from here the thread's CPU time counts.
        assert_eq!(
            budget.at_deadline_with(here, 100 * MS, t),
            AtDeadline::Continue(5)
        );
        // Descheduled: 1 ms of CPU in the window, then none.
        assert_eq!(
            budget.at_deadline_with(here, 101 * MS, t + 10 * MS),
            AtDeadline::Continue(4)
        );
        assert_eq!(
            budget.at_deadline_with(here, 101 * MS, t + 20 * MS),
            AtDeadline::Continue(4)
        );
        // Spinning: the rest of the budget.
        assert_eq!(
            budget.at_deadline_with(here, 105 * MS, t + 25 * MS),
            AtDeadline::Stop
        );
        assert_eq!(
            budget.stopped(),
            Some(Stopped::CpuBudget {
                budget: 5 * MS,
                used: 5 * MS
            })
        );
    }

    #[test]
    fn a_call_that_uses_no_cpu_still_ends_at_the_wall_clock_cap() {
        let here = thread::current().id();
        let t = Instant::now();
        let mut budget = CpuBudget::new(5 * MS);
        // The cap is 20 budgets (100 ms), the first of which passed before the first look.
        for waited in [0, 50, 94] {
            assert_eq!(
                budget.at_deadline_with(here, 100 * MS, t + waited * MS),
                AtDeadline::Continue(5),
                "{waited}"
            );
        }
        assert_eq!(
            budget.at_deadline_with(here, 100 * MS, t + 95 * MS),
            AtDeadline::Stop
        );
        assert_eq!(
            budget.stopped(),
            Some(Stopped::WallCap {
                cap: 100 * MS,
                used: Duration::ZERO
            })
        );
        assert_eq!(CpuBudget::new(50 * MS).wall_cap, 1000 * MS);
        assert_eq!(CpuBudget::new(MS).wall_cap, WALL_MIN);
    }

    #[test]
    fn another_thread_is_not_charged_and_the_wall_clock_cap_bounds_it() {
        let here = thread::current().id();
        let there = thread::spawn(|| thread::current().id()).join().unwrap();
        let t = Instant::now();
        let mut budget = CpuBudget::new(5 * MS);
        assert_eq!(
            budget.at_deadline_with(here, 100 * MS, t),
            AtDeadline::Continue(5)
        );
        // Resumed elsewhere with a CPU time that says nothing about this call.
        assert_eq!(
            budget.at_deadline_with(there, 900 * MS, t + 10 * MS),
            AtDeadline::Continue(5)
        );
        assert_eq!(
            budget.at_deadline_with(here, 100 * MS, t + 95 * MS),
            AtDeadline::Stop
        );
    }

    #[test]
    fn the_real_clock_tells_sleeping_from_spinning() {
        let mut budget = CpuBudget::new(20 * MS);
        assert!(matches!(budget.at_deadline(), AtDeadline::Continue(_)));
        thread::sleep(40 * MS);
        assert!(matches!(budget.at_deadline(), AtDeadline::Continue(_)));
        // Spin until the thread has run 25 ms (bounded, should the reading stall).
        let from = thread_cpu_time();
        let give_up = Instant::now() + Duration::from_secs(10);
        while thread_cpu_time() < from + 25 * MS && Instant::now() < give_up {
            std::hint::black_box(0);
        }
        assert_eq!(budget.at_deadline(), AtDeadline::Stop);
    }
}
