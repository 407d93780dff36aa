//! What the lab concludes from loaded results: statistics over repeats, and the two rules every
//! comparison goes through — [`ratio`] ("how much faster is A than B, and is that more than
//! noise?") and [`crossover`] ("from which size on does A beat B?"). [`claims`] judges the
//! published claims with them.
//!
//! Layering: this module reads [`crate::results`] types and nothing above it; renderers
//! ([`crate::report`]) and commands call it.
//!
//! # Intervals
//!
//! The statistic is the median (for one variant), the median of the paired ratios `a[i] / b[i]`
//! (two variants whose repeats pair up: repeat `i` of both ran side by side, so drift during the
//! run cancels), or the ratio of the medians (repeats that do not pair).
//!
//! The interval of a median (and of the median of paired ratios) is the **distribution-free**
//! one: the order statistics `x(k)` and `x(n+1-k)`, with `k` the largest for which
//! `P(Binomial(n, 1/2) < k) <= 2.5 %`, so it holds the true median with at least [`LEVEL`]
//! (95 %) probability whatever the figures' distribution ([`median_interval`]). That needs
//! [`MIN_DECIDING`] repeats: with fewer, the widest interval there is, the repeats' range,
//! holds the median with only `1 - 2^(1-n)` probability (75 % for 3 repeats), so the interval
//! shown is the range and nothing is decided on it: [`Estimate::test`] says inconclusive and a
//! ratio is not conclusive. (A percentile bootstrap of the median is narrower still at these
//! sizes, and covered 80 % or less.) The ratio of two medians (repeats that do not pair) has a
//! percentile bootstrap interval at [`LEVEL`] from [`RESAMPLES`] resamples with a fixed seed
//! ([`SEED`], a SplitMix64 stream), so the same figures always give the same interval; it too
//! decides only from [`MIN_DECIDING`] repeats on each side.

pub mod claims;

use crate::results::{Metrics, Row, Status};
use serde::Serialize;

/// Confidence level of every interval.
pub const LEVEL: f64 = 0.95;
/// The fewest repeats an interval may decide on: the least `n` for which the repeats' range
/// holds the true median with [`LEVEL`] probability (`1 - 2^(1-n)`: 94 % for 5, 97 % for 6).
pub const MIN_DECIDING: usize = 6;
/// The indifference zone of a claim of direction: a ratio within this fraction of 1 (the zone
/// `[1/(1+z), 1+z]`) counts as "no difference". The lab's own run-to-run drift is of this size
/// (median |B/A-1| 3.1 %, 69 % of figures within 5 %, between two consecutive quick runs:
/// results/reference/stability-20261205-quick.md), so a smaller difference is one a second run
/// may not see, and a claim's verdict near 1 would follow the noise. See [`zoned`].
pub const INDIFFERENCE: f64 = 0.05;
/// Bootstrap resamples per interval (the ratio of unpaired medians).
pub const RESAMPLES: usize = 4000;
/// The bootstrap's seed: fixed, so intervals are reproducible.
pub const SEED: u64 = 0x7a63_6c61_625f_6369;

/// Median (the mean of the middle two for an even count); 0 for an empty list.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    median_in_place(&mut v)
}

fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `q` quantile (0..=1) by linear interpolation between order statistics (Hyndman and
/// Fan's type 7, NumPy's default); None for an empty list or `q` outside 0..=1.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let h = (s.len() - 1) as f64 * q;
    let (i, f) = (h.floor() as usize, h.fract());
    Some(match s.get(i + 1) {
        Some(&next) => s[i] + f * (next - s[i]),
        None => s[i],
    })
}

/// Median, minimum and maximum of some repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The [`Summary`] of `v`; None when it is empty.
pub fn summarize(v: &[f64]) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    Some(Summary {
        n: v.len(),
        median: median(v),
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// A figure with its [`LEVEL`] interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// Repeats it rests on.
    pub n: usize,
}

impl Estimate {
    /// Whether there are enough repeats for the interval to decide ([`MIN_DECIDING`]).
    pub fn decides(&self) -> bool {
        self.n >= MIN_DECIDING
    }

    /// Whether the interval leaves `x` out (never with fewer than [`MIN_DECIDING`] repeats).
    pub fn excludes(&self, x: f64) -> bool {
        self.decides() && (x < self.lo || x > self.hi)
    }

    /// Whether every value of the interval passes `op threshold` ([`Test::Holds`]), none does
    /// ([`Test::Fails`]), or the interval straddles it or rests on too few repeats to decide.
    pub fn test(&self, op: Op, threshold: f64) -> Test {
        if !self.decides() {
            return Test::Inconclusive;
        }
        match (op.holds(self.lo, threshold), op.holds(self.hi, threshold)) {
            (true, true) => Test::Holds,
            (false, false) => Test::Fails,
            _ => Test::Inconclusive,
        }
    }
}

/// The median of `v` with its distribution-free interval ([`median_interval`]); None when `v`
/// is empty.
pub fn median_ci(v: &[f64]) -> Option<Estimate> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = median_interval(&s);
    Some(Estimate {
        value: median_in_place(&mut s),
        lo,
        hi,
        n: v.len(),
    })
}

/// The distribution-free [`LEVEL`] interval of the median of `sorted` (ascending, not empty):
/// `(x(k), x(n+1-k))` for the largest `k` with `P(Binomial(n, 1/2) <= k-1) <= (1-LEVEL)/2`;
/// the whole range where no `k` qualifies (fewer than [`MIN_DECIDING`] values).
pub fn median_interval(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len();
    let tail = (1.0 - LEVEL) / 2.0;
    // P(B = i) for i = 0, 1, ..., summed while the lower tail stays within `tail`.
    let (mut pmf, mut cdf, mut k) = (0.5f64.powi(n as i32), 0.0, 0);
    for i in 0..n / 2 {
        cdf += pmf;
        if cdf > tail {
            break;
        }
        k = i + 1;
        pmf *= (n - i) as f64 / (i + 1) as f64;
    }
    let k = k.max(1);
    (sorted[k - 1], sorted[n - k])
}

/// Nearest-rank bounds of the central [`LEVEL`] of `stats`.
fn percentile_bounds(mut stats: Vec<f64>) -> (f64, f64) {
    stats.sort_by(|a, b| a.total_cmp(b));
    let n = stats.len();
    let tail = (1.0 - LEVEL) / 2.0;
    let lo = ((n as f64 * tail).floor() as usize).min(n - 1);
    let hi = ((n as f64 * (1.0 - tail)).ceil() as usize).clamp(1, n) - 1;
    (stats[lo], stats[hi])
}

/// SplitMix64 (Steele, Lea and Flood 2014): a small, fast, seedable generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (multiply-shift; the bias is below 2^-32 for the n used here).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// A comparison operator of a threshold test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    /// `<`, `<=`, `>` or `>=`; None otherwise.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    pub fn holds(self, x: f64, t: f64) -> bool {
        match self {
            Op::Lt => x < t,
            Op::Le => x <= t,
            Op::Gt => x > t,
            Op::Ge => x >= t,
        }
    }
}

/// The threshold a ratio claim is tested against. A claim of direction (threshold 1) must clear
/// the [`INDIFFERENCE`] zone: "A > B" and "A < B" claim a difference larger than the zone
/// (> 1.05, < 1/1.05), "A >= B" and "A <= B" claim that A is not worse than B by more than it
/// (>= 1/1.05, <= 1.05). Any other threshold is itself the published magnitude and is kept.
pub fn zoned(op: Op, threshold: f64) -> f64 {
    if threshold != 1.0 {
        return threshold;
    }
    let z = 1.0 + INDIFFERENCE;
    match op {
        Op::Gt | Op::Le => z,
        Op::Lt | Op::Ge => 1.0 / z,
    }
}

/// The outcome of testing an interval against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    /// The whole interval passes.
    Holds,
    /// None of it does.
    Fails,
    /// It straddles the threshold: the repeats do not decide.
    Inconclusive,
}

/// How the repeats of two variants relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// `a[i]` and `b[i]` are the same repeat (run back to back): the ratio is the median of
    /// `a[i] / b[i]`, and pairs are resampled together. Extra repeats on one side are left out.
    ByIndex,
    /// Independent repeats: the ratio is `median(a) / median(b)`, each side resampled alone.
    Unpaired,
}

/// The ratio rule: `a / b` with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub n_a: usize,
    pub n_b: usize,
    pub pairing: Pairing,
    /// The interval leaves 1.0 out: A and B differ by more than the repeats' noise.
    pub conclusive: bool,
}

impl Ratio {
    /// The ratio as an [`Estimate`] (n = the smaller side).
    pub fn estimate(&self) -> Estimate {
        Estimate {
            value: self.value,
            lo: self.lo,
            hi: self.hi,
            n: self.n_a.min(self.n_b),
        }
    }

    /// The interval against `op threshold` (e.g. `>= 1.5`: "A is at least 1.5x B").
    pub fn test(&self, op: Op, threshold: f64) -> Test {
        self.estimate().test(op, threshold)
    }

    /// Whether the interval leaves `threshold` out.
    pub fn excludes(&self, threshold: f64) -> bool {
        self.estimate().excludes(threshold)
    }
}

/// The ratio of variant A's figures to B's, with its [`LEVEL`] bootstrap interval; None when a
/// side is empty (for [`Pairing::ByIndex`]: when no pair is left) or a ratio is not finite
/// (a zero in B).
pub fn ratio(a: &[f64], b: &[f64], pairing: Pairing) -> Option<Ratio> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (value, stats, n_a, n_b) = match pairing {
        Pairing::ByIndex => {
            let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            if r.iter().any(|x| !x.is_finite()) {
                return None;
            }
            let e = median_ci(&r)?;
            return Some(Ratio {
                value: e.value,
                lo: e.lo,
                hi: e.hi,
                n_a: r.len(),
                n_b: r.len(),
                pairing,
                conclusive: e.excludes(1.0),
            });
        }
        Pairing::Unpaired => {
            let value = median(a) / median(b);
            if !value.is_finite() {
                return None;
            }
            let mut rng = SplitMix(SEED);
            let (mut ba, mut bb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
            let stats: Vec<f64> = (0..RESAMPLES)
                .map(|_| {
                    for x in ba.iter_mut() {
                        *x = a[rng.below(a.len())];
                    }
                    for x in bb.iter_mut() {
                        *x = b[rng.below(b.len())];
                    }
                    median_in_place(&mut ba) / median_in_place(&mut bb)
                })
                .filter(|x| x.is_finite())
                .collect();
            if stats.is_empty() {
                return None;
            }
            (value, stats, a.len(), b.len())
        }
    };
    let (lo, hi) = percentile_bounds(stats);
    Some(Ratio {
        value,
        lo,
        hi,
        n_a,
        n_b,
        pairing,
        conclusive: n_a.min(n_b) >= MIN_DECIDING && !(lo..=hi).contains(&1.0),
    })
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Throughput, operations per second.
    HigherIsBetter,
    /// CPU per byte, latency, system calls.
    LowerIsBetter,
}

impl Direction {
    /// Whether a ratio A/B says A is better.
    pub fn a_beats_b(self, ratio: f64) -> bool {
        match self {
            Direction::HigherIsBetter => ratio > 1.0,
            Direction::LowerIsBetter => ratio < 1.0,
        }
    }
}

/// What the crossover rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrossStatus {
    /// A is behind at small values and ahead from `at` on.
    Crosses,
    /// A is ahead at every value measured.
    AlwaysBetter,
    /// A is not ahead at the largest value measured.
    Never,
    /// No value has figures on both sides.
    NoPoints,
}

/// One parameter value of a crossover.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CrossPoint {
    pub param: u64,
    pub a: Summary,
    pub b: Summary,
    /// A / B.
    pub ratio: Ratio,
    /// The ratio's value says A is better here.
    pub a_wins: bool,
}

/// The crossover rule's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossover {
    pub status: CrossStatus,
    /// The smallest value from which A beats B at that value and every larger one.
    pub at: Option<u64>,
    /// The values bracketing the crossing: the last where A does not win, the first of the run
    /// of wins (`Crosses` only).
    pub between: Option<(u64, u64)>,
    /// Where the ratio crosses 1, interpolated on a log-log scale inside `between`.
    pub interpolated: Option<f64>,
    /// The ratio's interval leaves 1.0 out at every value that decides the answer: the one
    /// before the crossing and all from it on (`Crosses`), every value (`AlwaysBetter`), the
    /// largest (`Never`). Otherwise the answer is within the repeats' noise.
    pub conclusive: bool,
    /// Values below `at` (all values for `Never`) where A wins all the same: the comparison is
    /// not monotone there.
    pub stray: Vec<u64>,
    /// Every value compared, ascending.
    pub points: Vec<CrossPoint>,
}

/// The crossover rule over independent repeats ([`Pairing::Unpaired`]): `points` are
/// `(parameter value, A's repeats, B's repeats)` in any order, one entry per value; values
/// where a side has no figure are left out. "A beats B" at a value when the ratio of the
/// medians says so in direction `better`; the answer is the smallest value from which A beats
/// B at every larger value too.
pub fn crossover(points: &[(u64, Vec<f64>, Vec<f64>)], better: Direction) -> Crossover {
    crossover_with(points, better, Pairing::Unpaired)
}

/// [`crossover`] with the repeats paired by index ([`Pairing::ByIndex`]).
pub fn crossover_paired(points: &[(u64, Vec<f64>, Vec<f64>)], better: Direction) -> Crossover {
    crossover_with(points, better, Pairing::ByIndex)
}

/// [`crossover`] with a choice of [`Pairing`].
pub fn crossover_with(
    points: &[(u64, Vec<f64>, Vec<f64>)],
    better: Direction,
    pairing: Pairing,
) -> Crossover {
    let mut pts: Vec<CrossPoint> = points
        .iter()
        .filter_map(|(p, a, b)| {
            let ratio = ratio(a, b, pairing)?;
            Some(CrossPoint {
                param: *p,
                a: summarize(a)?,
                b: summarize(b)?,
                a_wins: better.a_beats_b(ratio.value),
                ratio,
            })
        })
        .collect();
    pts.sort_by_key(|p| p.param);
    if pts.is_empty() {
        return Crossover {
            status: CrossStatus::NoPoints,
            at: None,
            between: None,
            interpolated: None,
            conclusive: false,
            stray: Vec::new(),
            points: pts,
        };
    }
    let from = (0..pts.len()).find(|&i| pts[i..].iter().all(|p| p.a_wins));
    let (status, at, between, interpolated, decide) = match from {
        None => (CrossStatus::Never, None, None, None, pts.len() - 1),
        Some(0) => (CrossStatus::AlwaysBetter, Some(pts[0].param), None, None, 0),
        Some(i) => {
            let (p0, p1) = (&pts[i - 1], &pts[i]);
            let (r0, r1) = (p0.ratio.value, p1.ratio.value);
            let x = (r0 > 0.0 && r1 > 0.0 && r0 != r1 && p0.param > 0).then(|| {
                let f = r0.ln() / (r0.ln() - r1.ln());
                let (s0, s1) = ((p0.param as f64).ln(), (p1.param as f64).ln());
                (s0 + f * (s1 - s0)).exp()
            });
            (
                CrossStatus::Crosses,
                Some(p1.param),
                Some((p0.param, p1.param)),
                x,
                i - 1,
            )
        }
    };
    let stray = pts
        .iter()
        .filter(|p| p.a_wins && at.is_none_or(|a| p.param < a))
        .map(|p| p.param)
        .collect();
    Crossover {
        status,
        at,
        between,
        interpolated,
        conclusive: pts[decide..].iter().all(|p| p.ratio.conclusive),
        stray,
        points: pts,
    }
}

impl Crossover {
    /// The points that decide the answer, those [`Crossover::conclusive`] is judged on: from
    /// the last value where A does not win on (`Crosses`), every value (`AlwaysBetter`), the
    /// largest (`Never`), none (`NoPoints`).
    pub fn deciding(&self) -> &[CrossPoint] {
        let from = match self.status {
            CrossStatus::Crosses => self
                .between
                .and_then(|(lo, _)| self.points.iter().position(|p| p.param == lo)),
            CrossStatus::AlwaysBetter => Some(0),
            CrossStatus::Never => self.points.len().checked_sub(1),
            CrossStatus::NoPoints => None,
        };
        from.map_or(&[], |i| &self.points[i..])
    }
}

/// The figures of two sides paired by repeat index: `(repeat, figure)` lists in any order;
/// returns the figures of the repeats both sides have, in repeat order (where a side has a
/// repeat index twice, its first figure in repeat order).
pub fn pair_by_repeat(a: &[(u32, f64)], b: &[(u32, f64)]) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by_key(|x| x.0);
    b.sort_by_key(|x| x.0);
    a.iter()
        .filter_map(|(i, x)| b.iter().find(|(j, _)| j == i).map(|(_, y)| (*x, *y)))
        .unzip()
}

/// The crossover rule over rows, as the claims engine applies it to a crossover check: per
/// value of `param` (an unsigned integer parameter), `metric` (see [`metric`]) of A's and B's
/// rows that are ok, the repeats paired by index ([`pair_by_repeat`]), judged by
/// [`crossover_paired`]. Values where no repeat pairs are left out. The rows of a side must
/// differ in `param` only (one variant at one point otherwise).
pub fn crossover_of_rows<'a>(
    a: impl IntoIterator<Item = &'a Row>,
    b: impl IntoIterator<Item = &'a Row>,
    param: &str,
    metric_name: &str,
    better: Direction,
) -> Crossover {
    type Series = std::collections::BTreeMap<u64, Vec<(u32, f64)>>;
    let series = |rows: &mut dyn Iterator<Item = &'a Row>| -> Series {
        let mut s = Series::new();
        for r in rows.filter(|r| r.status == Status::Ok) {
            let x = r.params.get(param).and_then(serde_json::Value::as_u64);
            let v = r.metrics.as_ref().and_then(|m| metric(m, metric_name));
            if let (Some(x), Some(v)) = (x, v) {
                s.entry(x).or_default().push((r.repeat, v));
            }
        }
        s
    };
    let (sa, sb) = (series(&mut a.into_iter()), series(&mut b.into_iter()));
    let points: Vec<(u64, Vec<f64>, Vec<f64>)> = sa
        .iter()
        .filter_map(|(x, ra)| {
            let (pa, pb) = pair_by_repeat(ra, sb.get(x)?);
            (!pa.is_empty()).then_some((*x, pa, pb))
        })
        .collect();
    crossover_paired(&points, better)
}

/// The headline figure of a row: GB/s where bytes moved, else operations per second (the
/// experiments that move no bytes, e.g. syscall_floor). The name is that of [`metric`].
pub fn headline(m: &Metrics) -> (&'static str, f64) {
    if m.bytes > 0 {
        ("gbps", m.gbps)
    } else {
        ("ops_per_s", m.ops_per_s)
    }
}

/// A figure of a row's metrics by name (`gbps`, `ops_per_s`, `wall_ns`, `ns_per_mib` (measured
/// time per MiB moved: what a time comparison wants where a trial is as many passes as fill its
/// duration, so that its `wall_ns` says little), `cpu_ns_per_mib`,
/// `sys_ns_per_mib`, `syscalls_per_mib`, `p50_ns`, `p99_ns`, `mean_ns`, `copied_pct`,
/// `cpu_ns_per_byte`, or a variant-specific `extra` figure); None when absent or unknown.
pub fn metric(m: &Metrics, name: &str) -> Option<f64> {
    Some(match name {
        "gbps" => m.gbps,
        "ops_per_s" => m.ops_per_s,
        "wall_ns" => m.wall_ns as f64,
        "ns_per_mib" if m.bytes > 0 => m.wall_ns as f64 * (1u64 << 20) as f64 / m.bytes as f64,
        "ns_per_mib" => return None,
        "cpu_ns_per_mib" => m.cpu_ns_per_mib,
        "sys_ns_per_mib" => m.sys_ns_per_mib,
        "syscalls_per_mib" => m.syscalls_per_mib?,
        "p50_ns" => m.latency.p50_ns as f64,
        "p99_ns" => m.latency.p99_ns as f64,
        "mean_ns" => m.latency.mean_ns,
        "copied_pct" => {
            let z = m.zc.as_ref()?;
            if !z.usage_reported {
                return None;
            }
            z.copied_pct
        }
        "cpu_ns_per_byte" => m.cpu_ns_per_mib / (1u64 << 20) as f64,
        other => *m.extra.get(other)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_per_mib_is_of_the_bytes_moved() {
        let mut m = Metrics {
            bytes: 2 << 20,
            wall_ns: 1000,
            ..Default::default()
        };
        assert_eq!(metric(&m, "ns_per_mib"), Some(500.0));
        assert_eq!(metric(&m, "wall_ns"), Some(1000.0));
        m.bytes = 0;
        assert_eq!(metric(&m, "ns_per_mib"), None);
    }

    #[test]
    fn basic_statistics() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.5), Some(1.5));
        assert_eq!(quantile(&[], 0.5), None);
        let s = summarize(&[2.0, 5.0, 1.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 5.0));
    }

    #[test]
    fn median_interval_is_deterministic_and_covers_the_range_for_few_repeats() {
        let v = [10.0, 12.0, 11.0, 30.0, 9.0];
        let a = median_ci(&v).unwrap();
        assert_eq!(
            a,
            median_ci(&v).unwrap(),
            "seeded: same input, same interval"
        );
        assert_eq!((a.value, a.lo, a.hi), (11.0, 9.0, 30.0));
        // Many repeats: the interval narrows inside the range.
        let many: Vec<f64> = (0..41).map(|i| 100.0 + i as f64).collect();
        let b = median_ci(&many).unwrap();
        assert!(
            b.lo > 100.0 && b.hi < 140.0 && b.lo <= 120.0 && b.hi >= 120.0,
            "{b:?}"
        );
        let one = median_ci(&[7.0]).unwrap();
        assert_eq!((one.lo, one.hi, one.n), (7.0, 7.0, 1));
    }

    #[test]
    fn the_median_interval_is_the_order_statistics_that_cover_95_percent() {
        let s = |n: usize| (1..=n).map(|i| i as f64).collect::<Vec<_>>();
        // P(B(n, 1/2) <= k-1) <= 2.5 %: k = 1 up to n = 8, 2 for 9 to 11, 3 for 12 to 14.
        for (n, k) in [
            (5, 1),
            (6, 1),
            (8, 1),
            (9, 2),
            (11, 2),
            (12, 3),
            (17, 5),
            (30, 10),
        ] {
            let (lo, hi) = median_interval(&s(n));
            assert_eq!((lo, hi), (k as f64, (n + 1 - k) as f64), "n = {n}");
        }
        assert!(!median_ci(&s(5)).unwrap().decides());
        assert!(median_ci(&s(6)).unwrap().decides());
    }

    #[test]
    fn ratio_rule() {
        // Three pairs: the range, which holds the median with 75 % only: nothing decided.
        let r = ratio(&[2.0, 2.2, 1.8], &[1.0, 1.0, 1.0], Pairing::ByIndex).unwrap();
        assert_eq!((r.value, r.lo, r.hi), (2.0, 1.8, 2.2));
        assert!(!r.conclusive);
        assert_eq!(r.test(Op::Ge, 1.5), Test::Inconclusive);
        // Six pairs: 2.0, 2.2, 1.8, 2.1, 1.9, 2.0.
        let a = [2.0, 2.2, 1.8, 2.1, 1.9, 2.0];
        let r = ratio(&a, &[1.0; 6], Pairing::ByIndex).unwrap();
        assert_eq!((r.value, r.lo, r.hi), (2.0, 1.8, 2.2));
        assert!(r.conclusive);
        assert_eq!(r.test(Op::Ge, 1.5), Test::Holds);
        assert_eq!(r.test(Op::Ge, 3.0), Test::Fails);
        assert_eq!(r.test(Op::Ge, 2.0), Test::Inconclusive);
        // Overlapping repeats: not conclusive.
        let r = ratio(&[1.0, 1.2, 0.9], &[1.1, 1.0, 0.95], Pairing::Unpaired).unwrap();
        assert!(!r.conclusive, "{r:?}");
        assert!(ratio(&[1.0], &[0.0], Pairing::ByIndex).is_none());
        assert!(ratio(&[], &[1.0], Pairing::Unpaired).is_none());
    }

    fn pts(r: &[(u64, f64)]) -> Vec<(u64, Vec<f64>, Vec<f64>)> {
        r.iter()
            .map(|&(p, x)| {
                let a = vec![x * 0.99, x, x * 1.01, x * 0.995, x * 1.005, x];
                (p, a, vec![1.0; 6])
            })
            .collect()
    }

    #[test]
    fn crossover_rule() {
        // Behind, ahead by chance, behind, then ahead for good (lower is better).
        let c = crossover(
            &pts(&[(1024, 1.5), (4096, 0.9), (16384, 1.2), (65536, 0.5)]),
            Direction::LowerIsBetter,
        );
        assert_eq!(c.status, CrossStatus::Crosses);
        assert_eq!((c.at, c.between), (Some(65536), Some((16384, 65536))));
        assert_eq!(c.stray, vec![4096]);
        assert!(c.conclusive);
        let x = c.interpolated.unwrap();
        assert!(x > 16384.0 && x < 65536.0, "{x}");
        // Unsorted input, always ahead.
        let c = crossover(&pts(&[(8, 2.0), (2, 3.0)]), Direction::HigherIsBetter);
        assert_eq!((c.status, c.at), (CrossStatus::AlwaysBetter, Some(2)));
        assert_eq!(c.points[0].param, 2);
        // Never, with the largest value within the noise: not conclusive.
        let mut p = pts(&[(1, 0.5), (2, 0.9)]);
        p[1].1 = vec![0.9, 1.1, 1.0, 0.95, 1.05, 1.0];
        let c = crossover(&p, Direction::HigherIsBetter);
        assert_eq!(c.status, CrossStatus::Never);
        assert!(!c.conclusive && c.stray.is_empty());
        assert_eq!(
            crossover(&[(1, vec![], vec![1.0])], Direction::HigherIsBetter).status,
            CrossStatus::NoPoints
        );
    }

    #[test]
    fn the_deciding_points_are_those_conclusive_is_judged_on() {
        let cases = [
            (pts(&[(1, 1.5), (2, 0.9), (3, 1.2), (4, 0.5)]), 2),
            (pts(&[(1, 0.5), (2, 0.6)]), 0),
            (pts(&[(1, 1.5), (2, 1.6), (3, 1.7)]), 2),
        ];
        for (p, from) in cases {
            let c = crossover(&p, Direction::LowerIsBetter);
            assert_eq!(c.deciding(), &c.points[from..], "{c:?}");
            assert_eq!(
                c.conclusive,
                c.deciding().iter().all(|p| p.ratio.conclusive)
            );
        }
        let none = crossover(&[], Direction::LowerIsBetter);
        assert!(none.deciding().is_empty());
    }

    fn row(variant: &str, size: u64, repeat: u32, gbps: f64, status: Status) -> Row {
        let m = Metrics {
            gbps,
            bytes: size,
            ..Default::default()
        };
        let mut r = Row::measured("e", variant, &[("size", size.into())], repeat, m);
        r.status = status;
        r
    }

    #[test]
    fn crossover_of_rows_pairs_repeats_by_index() {
        assert_eq!(
            pair_by_repeat(
                &[(2, 3.0), (0, 1.0), (1, 2.0)],
                &[(1, 20.0), (0, 10.0), (5, 50.0)]
            ),
            (vec![1.0, 2.0], vec![10.0, 20.0])
        );
        let rows = [
            row("a", 10, 0, 1.0, Status::Ok),
            row("a", 10, 1, 1.1, Status::Ok),
            row("b", 10, 1, 2.0, Status::Ok),
            row("b", 10, 0, 2.1, Status::Ok),
            row("a", 20, 0, 3.0, Status::Ok),
            row("a", 20, 1, 3.3, Status::Ok),
            row("a", 20, 2, 9.0, Status::Error),
            row("b", 20, 0, 2.0, Status::Ok),
            row("b", 20, 1, 2.0, Status::Ok),
            row("b", 20, 2, 1.0, Status::Ok),
            // No repeat of a at 30 pairs with b's.
            row("a", 30, 0, 1.0, Status::Ok),
            row("b", 30, 4, 1.0, Status::Ok),
        ];
        let side = |v: &'static str| rows.iter().filter(move |r| r.variant == v);
        let c = crossover_of_rows(
            side("a"),
            side("b"),
            "size",
            "gbps",
            Direction::HigherIsBetter,
        );
        let direct = crossover_paired(
            &[
                (10, vec![1.0, 1.1], vec![2.1, 2.0]),
                (20, vec![3.0, 3.3], vec![2.0, 2.0]),
            ],
            Direction::HigherIsBetter,
        );
        assert_eq!(c, direct);
        assert_eq!((c.status, c.at), (CrossStatus::Crosses, Some(20)));
    }
}
