//! Per-operation latency recording into an HdrHistogram (nanoseconds).

use super::clock::{Clock, Stamp};
use hdrhistogram::Histogram;

/// Highest latency a histogram tracks: 10 minutes. Longer steps are clamped (and the max shows it).
pub const MAX_TRACKABLE_NS: u64 = 600_000_000_000;

/// A new histogram with 3 significant figures from 1 ns to [`MAX_TRACKABLE_NS`].
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).expect("static histogram bounds are valid")
}

/// Records one latency per step. A variant calls [`Recorder::now`] before the step and
/// [`Recorder::record_since`] after it; the stamp that `record_since` returns can start the
/// next step, so a tight loop reads the clock once per sample.
pub struct Recorder {
    clock: Clock,
    hist: Histogram<u64>,
}

impl Recorder {
    /// An empty recorder on `clock`.
    pub fn new(clock: Clock) -> Recorder {
        Recorder {
            clock,
            hist: new_histogram(),
        }
    }

    /// Reads the clock.
    #[inline(always)]
    pub fn now(&self) -> Stamp {
        self.clock.now()
    }

    /// Records the time since `start` and returns the current stamp.
    #[inline(always)]
    pub fn record_since(&mut self, start: Stamp) -> Stamp {
        let end = self.clock.now();
        self.hist
            .saturating_record(self.clock.ns_between(start, end).max(1));
        end
    }

    /// Records `ns` directly (for latencies measured elsewhere, e.g. a notification's release
    /// time computed from two stamps).
    #[inline(always)]
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    /// Records `n` samples of `ns` at once: one histogram update for a run of equal latencies
    /// (reads submitted by one io_uring_enter and reaped in one pass share both stamps).
    #[inline(always)]
    pub fn record_ns_n(&mut self, ns: u64, n: u64) {
        let _ = self.hist.record_n(ns.clamp(1, MAX_TRACKABLE_NS), n);
    }

    /// Records one batch of `n` operations that took the time since `start` as `n` samples of
    /// the per-operation mean: used where an operation is shorter than a clock read.
    #[inline(always)]
    pub fn record_batch_since(&mut self, start: Stamp, n: u64) -> Stamp {
        let end = self.clock.now();
        if let Some(per) = self.clock.ns_between(start, end).checked_div(n) {
            let per = per.max(1);
            let _ = self.hist.record_n(per.min(MAX_TRACKABLE_NS), n);
        }
        end
    }

    /// Adds another recorder's samples (a second measured thread's) to this one's.
    pub fn absorb(&mut self, other: &Histogram<u64>) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(other);
    }

    /// The clock this recorder reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The histogram so far.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Takes the histogram out, leaving an empty one.
    pub fn take(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.hist, new_histogram())
    }
}

/// Equal latencies in a row, recorded as one histogram update ([`Recorder::record_ns_n`]):
/// operations submitted by one system call and reaped in one pass carry the same two stamps.
/// Call [`Run::flush`] after the last [`Run::add`].
#[derive(Debug, Default)]
pub struct Run {
    ns: u64,
    n: u64,
}

impl Run {
    /// One sample of `ns`.
    #[inline(always)]
    pub fn add(&mut self, ns: u64, rec: &mut Recorder) {
        if ns != self.ns {
            self.flush(rec);
            self.ns = ns;
        }
        self.n += 1;
    }

    /// Records the samples held back.
    #[inline(always)]
    pub fn flush(&mut self, rec: &mut Recorder) {
        if self.n > 0 {
            rec.record_ns_n(self.ns, self.n);
            self.n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_equal_latencies_is_as_many_samples() {
        let mut rec = Recorder::new(Clock::new());
        rec.record_ns_n(1500, 32);
        rec.record_ns_n(0, 2); // below the floor: counted as 1 ns
        rec.record_ns_n(MAX_TRACKABLE_NS * 2, 1); // above the ceiling: counted at it
        let h = rec.histogram();
        assert_eq!(h.len(), 35);
        assert_eq!(h.count_at(1500), 32);
        assert_eq!(h.count_at(1), 2);
        assert_eq!(h.max(), h.highest_equivalent(MAX_TRACKABLE_NS));
    }

    #[test]
    fn runs_hold_back_nothing_once_flushed() {
        let mut rec = Recorder::new(Clock::new());
        let mut run = Run::default();
        for ns in [700, 700, 700, 900, 700, 0, 0] {
            run.add(ns, &mut rec);
        }
        assert_eq!(rec.histogram().len(), 5, "the last run is held back");
        run.flush(&mut rec);
        run.flush(&mut rec);
        let h = rec.histogram();
        assert_eq!(h.len(), 7);
        assert_eq!(h.count_at(700), 4);
        assert_eq!(h.count_at(900), 1);
        assert_eq!(h.count_at(1), 2);
    }
}
