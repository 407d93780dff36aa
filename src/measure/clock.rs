//! The one clock every variant is timed with.
//!
//! Reading `CLOCK_MONOTONIC` costs about 22 ns here, reading the TSC about 10 ns, and a sample
//! must cost less than 30 ns in all (clock plus histogram record), so the invariant TSC is used
//! where the CPU has one (`constant_tsc` and `nonstop_tsc`), calibrated against
//! `CLOCK_MONOTONIC`; elsewhere the monotonic clock itself. Which one ran is recorded.

use serde::Serialize;
use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// Readings of the clock on this thread ([`readings`]).
    static READINGS: Cell<u64> = const { Cell::new(0) };
}

/// How many times this thread has read the clock: a measured loop's clock readings are the
/// difference across it, whichever path (recorder, ledger, time limit) read it.
pub fn readings() -> u64 {
    READINGS.with(Cell::get)
}

/// Which clock a run used, and its calibration.
#[derive(Debug, Clone, Serialize)]
pub struct ClockInfo {
    /// `"tsc"` or `"monotonic"`.
    pub source: &'static str,
    /// TSC ticks per microsecond (0 for the monotonic clock).
    pub tsc_ticks_per_us: f64,
    /// What one reading costs ([`Clock::read_ns`]).
    pub read_ns: f64,
}

/// A timestamp in the clock's own unit; only differences between two stamps mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

/// Converts the clock's ticks to nanoseconds with a fixed-point multiply (no division on the
/// hot path).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    tsc: bool,
    /// ns = ticks * mult >> 32
    mult: u64,
    origin: Instant,
    read_ns: f64,
}

/// The time-stamp counter; callers use it only after `Clock::new` has checked the CPU
/// advertises an invariant TSC.
#[inline(always)]
fn rdtsc() -> u64 {
    crate::sys::tsc::rdtsc()
}

fn invariant_tsc() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    has("constant_tsc") && has("nonstop_tsc")
}

impl Clock {
    /// Picks the TSC when it is invariant (calibrating it over ~20 ms against the monotonic
    /// clock), else the monotonic clock. `ZCLAB_CLOCK=monotonic` forces the latter.
    pub fn new() -> Clock {
        let origin = Instant::now();
        let forced_mono = std::env::var("ZCLAB_CLOCK").is_ok_and(|v| v == "monotonic");
        if forced_mono || !invariant_tsc() {
            return Clock::monotonic(origin);
        }
        let t0 = Instant::now();
        let c0 = rdtsc();
        std::thread::sleep(Duration::from_millis(20));
        let c1 = rdtsc();
        let ns = t0.elapsed().as_nanos() as u64;
        let ticks = c1.saturating_sub(c0);
        if ticks == 0 || ns == 0 {
            return Clock::monotonic(origin);
        }
        let mult = ((ns as u128) << 32) / ticks as u128;
        Clock {
            tsc: true,
            mult: mult as u64,
            origin,
            read_ns: 0.0,
        }
        .with_read_cost()
    }

    fn monotonic(origin: Instant) -> Clock {
        Clock {
            tsc: false,
            mult: 1 << 32,
            origin,
            read_ns: 0.0,
        }
        .with_read_cost()
    }

    /// Times [`Self::now`] back to back: the lowest of 5 rounds' mean over 2000 readings
    /// (about 0.1 ms in all), so a stray interrupt does not count.
    fn with_read_cost(mut self) -> Clock {
        const READS: u32 = 2000;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let a = self.now();
            let mut last = a;
            for _ in 0..READS {
                last = std::hint::black_box(self.now());
            }
            best = best.min(self.ns_between(a, last) as f64 / READS as f64);
        }
        self.read_ns = best;
        self
    }

    /// What one reading of the clock costs on this CPU, in ns: the time a measured loop spends
    /// on each of its clock readings, which its peers without per-operation latencies do not.
    pub fn read_ns(&self) -> f64 {
        self.read_ns
    }

    /// What the run records about its clock.
    pub fn info(&self) -> ClockInfo {
        ClockInfo {
            source: if self.tsc { "tsc" } else { "monotonic" },
            tsc_ticks_per_us: if self.tsc {
                1000.0 * (1u64 << 32) as f64 / self.mult as f64
            } else {
                0.0
            },
            read_ns: self.read_ns,
        }
    }

    /// Reads the clock.
    #[inline(always)]
    pub fn now(&self) -> Stamp {
        READINGS.with(|r| r.set(r.get() + 1));
        if self.tsc {
            Stamp(rdtsc())
        } else {
            Stamp(self.origin.elapsed().as_nanos() as u64)
        }
    }

    /// Nanoseconds from `a` to `b` (0 if `b` is earlier).
    #[inline(always)]
    pub fn ns_between(&self, a: Stamp, b: Stamp) -> u64 {
        let d = b.0.saturating_sub(a.0);
        if self.tsc {
            ((d as u128 * self.mult as u128) >> 32) as u64
        } else {
            d
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_agrees_with_instant() {
        let c = Clock::new();
        let i0 = Instant::now();
        let s0 = c.now();
        std::thread::sleep(Duration::from_millis(30));
        let s1 = c.now();
        let real = i0.elapsed().as_nanos() as f64;
        let ours = c.ns_between(s0, s1) as f64;
        assert!(
            (ours / real - 1.0).abs() < 0.05,
            "clock {ours} ns vs {real} ns"
        );
    }

    #[test]
    fn a_reading_costs_something_and_less_than_a_microsecond() {
        let c = Clock::new();
        assert!(
            c.read_ns() > 0.0 && c.read_ns() < 1000.0,
            "{} ns per reading",
            c.read_ns()
        );
        assert_eq!(c.info().read_ns, c.read_ns());
    }
}
