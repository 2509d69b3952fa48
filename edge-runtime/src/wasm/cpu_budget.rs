//! A hook call's budget, counted in CPU time of the thread that runs it.
//!
//! Epoch ticks are wall-clock time. On a busy machine a worker thread can be descheduled
//! for longer than a module's whole budget while the module itself has run for
//! microseconds; a wall-clock deadline would then fail a request the module did nothing
//! wrong in. So the epoch deadline only says "look now": once the budget has passed on
//! the wall clock, the call gets the budget again in CPU time of its thread, measured at
//! each later deadline, and is stopped when that is spent. A module that spins is stopped
//! after between one and two budgets; one that was merely descheduled is not stopped.
//!
//! Reading the thread's CPU time costs a file read, so it happens only at deadlines
//! (calls that outlast their budget on the wall clock), never on an ordinary call.

use super::engine::TICK;
use std::thread::{self, ThreadId};
use std::time::Duration;

/// The budget of the call in progress, and what it has used since its first deadline.
#[derive(Debug, Clone)]
pub struct CpuBudget {
    budget: Duration,
    /// CPU time counted against the budget so far, from the first deadline on.
    used: Duration,
    /// The thread and its CPU time at the last deadline; `None` before the first.
    mark: Option<(ThreadId, Duration)>,
    /// Wall-clock time granted since the last deadline.
    window: Duration,
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
            used: Duration::ZERO,
            mark: None,
            window: budget,
        }
    }

    /// The epoch deadline to arm a call with, in ticks from now: at least the budget (the
    /// next tick may come at once), at most one tick more.
    pub fn first_deadline(&self) -> u64 {
        ticks(self.budget) + 1
    }

    /// At an epoch deadline, with the current thread's CPU time.
    pub fn at_deadline(&mut self) -> AtDeadline {
        self.at_deadline_with(thread::current().id(), thread_cpu_time())
    }

    fn at_deadline_with(&mut self, thread: ThreadId, cpu: Option<Duration>) -> AtDeadline {
        // Without a reading, the wall clock is all there is.
        let Some(cpu) = cpu else {
            return AtDeadline::Stop;
        };
        if let Some((marked_thread, marked_cpu)) = self.mark {
            self.used += if marked_thread == thread {
                cpu.saturating_sub(marked_cpu)
            } else {
                // A call on a fiber resumed on another worker: what ran on the first
                // thread is unknown, so the whole window since the last look counts.
                self.window
            };
        }
        self.mark = Some((thread, cpu));
        if self.used >= self.budget {
            AtDeadline::Stop
        } else {
            let ticks = ticks(self.budget - self.used);
            self.window = TICK * ticks as u32;
            AtDeadline::Continue(ticks)
        }
    }
}

/// Whole ticks in `d`, rounded up.
fn ticks(d: Duration) -> u64 {
    let tick = TICK.as_nanos().max(1);
    d.as_nanos().div_ceil(tick).max(1) as u64
}

/// CPU time the calling thread has run, from `/proc/thread-self/schedstat` (Linux, the
/// node's only target): read by hand rather than through an unsafe `clock_gettime`.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_descheduled_call_keeps_running_and_a_spinning_one_stops() {
        let here = thread::current().id();
        let mut budget = CpuBudget::new(5 * MS);
        assert_eq!(budget.first_deadline(), 6);
        // The wall-clock budget passed; from here the thread's CPU time counts.
        assert_eq!(
            budget.at_deadline_with(here, Some(100 * MS)),
            AtDeadline::Continue(5)
        );
        // Descheduled: 1 ms of CPU in the window.
        assert_eq!(
            budget.at_deadline_with(here, Some(101 * MS)),
            AtDeadline::Continue(4)
        );
        assert_eq!(
            budget.at_deadline_with(here, Some(101 * MS)),
            AtDeadline::Continue(4)
        );
        // Spinning: the rest of the budget.
        assert_eq!(
            budget.at_deadline_with(here, Some(105 * MS)),
            AtDeadline::Stop
        );
    }

    #[test]
    fn another_thread_counts_the_whole_window() {
        let here = thread::current().id();
        let there = thread::spawn(|| thread::current().id()).join().unwrap();
        let mut budget = CpuBudget::new(5 * MS);
        assert_eq!(
            budget.at_deadline_with(here, Some(100 * MS)),
            AtDeadline::Continue(5)
        );
        assert_eq!(budget.at_deadline_with(there, Some(MS)), AtDeadline::Stop);
    }

    #[test]
    fn without_a_cpu_reading_the_wall_clock_decides() {
        let mut budget = CpuBudget::new(5 * MS);
        assert_eq!(
            budget.at_deadline(),
            AtDeadline::Continue(5),
            "this host has schedstat"
        );
        assert_eq!(
            budget.at_deadline_with(thread::current().id(), None),
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
        let from = thread_cpu_time().unwrap();
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while thread_cpu_time().unwrap() < from + 25 * MS && std::time::Instant::now() < give_up {
            std::hint::black_box(0);
        }
        assert_eq!(budget.at_deadline(), AtDeadline::Stop);
    }
}
