//! Trials by time: with `--duration`, one trial is as many complete passes of the variant as
//! it takes for the measured time to reach the duration. Each pass is the variant's own run —
//! set-up, the measured transfer, its integrity check — so every byte of every pass is checked
//! and zero-copy buffer pools keep their reuse rules; set-up between passes is not measured.
//! The passes' figures are summed (bytes, operations, wall and CPU time, counters, zero-copy
//! counts), the rates recomputed from the sums, and the histograms merged.

use crate::results::{Count, Integrity, Latency, Metrics};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// What one pass (or the passes so far) measured.
pub(crate) struct Measured {
    pub metrics: Option<Metrics>,
    pub hists: BTreeMap<String, Histogram<u64>>,
    pub integrity: Option<Integrity>,
    pub passes: u64,
}

impl Measured {
    pub fn wall_ns(&self) -> u64 {
        self.metrics.as_ref().map_or(0, |m| m.wall_ns)
    }

    /// The measured thread's CPU time (user and system).
    pub fn cpu_ns(&self) -> u64 {
        self.metrics.as_ref().map_or(0, |m| m.user_ns + m.sys_ns)
    }

    /// Whether the last pass checked out (an integrity failure ends the trial at once).
    pub fn ok(&self) -> bool {
        self.metrics.is_some() && self.integrity.as_ref().is_some_and(|i| i.ok)
    }

    /// Adds the next pass. A failed pass's integrity replaces the sum, so the row shows it.
    pub fn add(&mut self, next: Measured) {
        self.passes += next.passes;
        for (k, h) in next.hists {
            match self.hists.get_mut(&k) {
                Some(acc) => {
                    let _ = acc.add(&h);
                }
                None => {
                    self.hists.insert(k, h);
                }
            }
        }
        let passes = self.passes;
        self.integrity = match (self.integrity.take(), next.integrity) {
            (Some(a), Some(b)) if a.ok && b.ok => Some(merge_integrity(a, &b, passes)),
            (_, b) => b,
        };
        self.metrics = match (self.metrics.take(), next.metrics) {
            (Some(mut a), Some(b)) => {
                merge_metrics(&mut a, &b);
                Some(a)
            }
            (_, b) => b,
        };
        if let Some(m) = self.metrics.as_mut() {
            if let Some(h) = self.hists.get("step") {
                m.latency = Latency::from_histogram(&m.latency.step, h);
            }
            for (k, lat) in m.extra_latency.iter_mut() {
                if let Some(h) = self.hists.get(k) {
                    *lat = Latency::from_histogram(&lat.step, h);
                }
            }
            m.extra.insert("passes".into(), self.passes as f64);
        }
    }
}

/// Bytes are summed over the passes; the texts are the last pass's, saying so.
fn merge_integrity(a: Integrity, b: &Integrity, passes: u64) -> Integrity {
    let each = format!(" (each of {passes} passes)");
    Integrity {
        ok: true,
        method: a.method,
        expected: format!("{}{each}", b.expected),
        got: format!("{}{each}", b.got),
        bytes_expected: a.bytes_expected + b.bytes_expected,
        bytes_got: a.bytes_got + b.bytes_got,
    }
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a? + b?)
}

fn merge_metrics(a: &mut Metrics, b: &Metrics) {
    let (wa, wb) = (a.wall_ns as f64, b.wall_ns as f64);
    a.bytes += b.bytes;
    a.ops += b.ops;
    a.wall_ns += b.wall_ns;
    a.user_ns += b.user_ns;
    a.sys_ns += b.sys_ns;
    a.sqpoll_ns = add_opt(a.sqpoll_ns, b.sqpoll_ns);
    a.peer_user_ns = add_opt(a.peer_user_ns, b.peer_user_ns);
    a.peer_sys_ns = add_opt(a.peer_sys_ns, b.peer_sys_ns);
    a.syscalls = Count(add_opt(a.syscalls.0, b.syscalls.0));
    a.vcsw += b.vcsw;
    a.ivcsw += b.ivcsw;
    a.minflt += b.minflt;
    a.majflt += b.majflt;
    a.zc = match (a.zc.take(), &b.zc) {
        (Some(x), Some(y)) => Some(x.merged(y)),
        (x, y) => x.or(*y),
    };
    // Rates and shares: time-weighted; other variant figures: the last pass's.
    for (k, v) in &b.extra {
        let weighted = k.ends_with("_pct") && !k.starts_with("zc");
        let merged = match a.extra.get(k) {
            Some(old) if weighted && wa + wb > 0.0 => (old * wa + v * wb) / (wa + wb),
            _ => *v,
        };
        a.extra.insert(k.clone(), merged);
    }
    let wall = a.wall_ns.max(1) as f64;
    a.gbps = a.bytes as f64 / wall;
    a.ops_per_s = a.ops as f64 * 1e9 / wall;
    let mib = a.bytes as f64 / (1u64 << 20) as f64;
    let per_mib = |v: f64| if mib > 0.0 { v / mib } else { 0.0 };
    a.cpu_ns_per_mib = per_mib((a.user_ns + a.sys_ns) as f64);
    a.sys_ns_per_mib = per_mib(a.sys_ns as f64);
    a.syscalls_per_mib = a.syscalls.0.map(|s| per_mib(s as f64));
}

/// Parses a duration: `500ms`, `2s`, `1.5s`, `1m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let units = [("ms", 1e-3), ("us", 1e-6), ("s", 1.0), ("m", 60.0)];
    let (num, scale) = crate::units::strip_unit(t, &units, 1.0);
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 200ms, 2s, 1m)"))?;
    let secs = v * scale;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("'{s}': a duration must be positive"));
    }
    if secs > 3600.0 {
        return Err(format!("'{s}': at most one hour per trial"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ZcCounts;

    fn pass(bytes: u64, wall: u64, sys: u64, ok: bool) -> Measured {
        let mut h = crate::measure::recorder::new_histogram();
        h.record(wall / 10).unwrap();
        Measured {
            metrics: Some(Metrics {
                bytes,
                ops: 10,
                wall_ns: wall,
                sys_ns: sys,
                syscalls: Count(Some(5)),
                zc: Some(ZcCounts {
                    bytes,
                    copied_bytes: bytes / 2,
                    usage_reported: true,
                    ..Default::default()
                }),
                extra: [("steal_pct".to_string(), if ok { 0.0 } else { 10.0 })].into(),
                ..Default::default()
            }),
            hists: [("step".to_string(), h)].into(),
            integrity: Some(Integrity {
                ok,
                method: "m".into(),
                bytes_expected: bytes,
                bytes_got: if ok { bytes } else { 0 },
                ..Default::default()
            }),
            passes: 1,
        }
    }

    #[test]
    fn sums_and_recomputes() {
        let mut acc = pass(1 << 20, 1_000_000, 500_000, true);
        acc.add(pass(3 << 20, 1_000_000, 500_000, true));
        let m = acc.metrics.as_ref().unwrap();
        assert_eq!(m.bytes, 4 << 20);
        assert_eq!(m.wall_ns, 2_000_000);
        assert!((m.gbps - (4 << 20) as f64 / 2e6).abs() < 1e-9);
        assert!((m.sys_ns_per_mib - 250_000.0).abs() < 1e-9);
        assert_eq!(m.syscalls, Count(Some(10)));
        assert_eq!(m.latency.count, 2);
        assert_eq!(m.extra["passes"], 2.0);
        assert!((m.zc.as_ref().unwrap().copied_pct - 50.0).abs() < 1e-9);
        let i = acc.integrity.as_ref().unwrap();
        assert!(i.ok && i.bytes_got == 4 << 20);
        assert!(acc.ok());
    }

    #[test]
    fn a_failed_pass_shows() {
        let mut acc = pass(1 << 20, 1_000_000, 0, true);
        acc.add(pass(1 << 20, 1_000_000, 0, false));
        assert!(!acc.ok());
        assert_eq!(acc.integrity.as_ref().unwrap().bytes_got, 0);
        let steal = acc.metrics.as_ref().unwrap().extra["steal_pct"];
        assert!((steal - 5.0).abs() < 1e-9, "time-weighted: {steal}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms").unwrap().as_millis(), 200);
        assert_eq!(parse_duration("2s").unwrap().as_secs(), 2);
        assert_eq!(parse_duration("1.5").unwrap().as_millis(), 1500);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("2h").is_err());
    }
}
