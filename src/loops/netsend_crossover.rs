//! net_send's crossover: for each zero-copy variant on a path where zero copy can happen, the
//! message size from which its sender CPU per byte stays below classic-send's (and, for the
//! io_uring variants, below uring-send's), from the run's rows in memory.
//!
//! **To be replaced** by the analysis layer's one crossover rule (src/analysis) once it lands;
//! until then this is net_send's own rule, unchanged: the same `crossover*.json` files and keys,
//! the same printed lines.

use crate::catalog::net_send as names;
use crate::net::netns::NetPath;
use crate::results::{Row, Status};
use crate::units;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Sender CPU of one variant at one size over the repeats: ns per MiB, and median GB/s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    med: f64,
    min: f64,
    max: f64,
    gbps: f64,
}

/// Per-size [`Stat`] of one variant on one path.
type Curve = BTreeMap<u64, Stat>;

/// Median of a list (mean of the middle two for an even count); 0 for an empty list.
fn median(mut v: Vec<f64>) -> f64 {
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

fn curve(rows: &[&Row]) -> Curve {
    let mut by: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in rows {
        let (Some(m), Some(s)) = (&r.metrics, r.params.get("size").and_then(Value::as_u64)) else {
            continue;
        };
        let e = by.entry(s).or_default();
        e.0.push(m.cpu_ns_per_mib);
        e.1.push(m.gbps);
    }
    by.into_iter()
        .map(|(s, (c, g))| {
            let min = c.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = c.iter().cloned().fold(0.0, f64::max);
            (
                s,
                Stat {
                    med: median(c),
                    min,
                    max,
                    gbps: median(g),
                },
            )
        })
        .collect()
}

/// Where one zero-copy curve drops below a baseline curve, over the sizes both measured.
#[derive(Debug, Clone, PartialEq)]
struct Cross {
    /// `crosses`, `below-at-every-size` or `never-below`.
    status: &'static str,
    /// The smallest size from which the zero-copy median is below the baseline's at every
    /// larger size too.
    at: Option<u64>,
    /// The sizes bracketing the crossing (last above, first below).
    between: Option<(u64, u64)>,
    /// Where the median ratio crosses 1, interpolated on log-log scale between them.
    interpolated: Option<f64>,
    /// Whether the min-max ranges of the repeats do not overlap at the sizes that decide the
    /// result (the one before the crossing and all after it); otherwise the result is within
    /// the spread of the repeats.
    conclusive: bool,
    pts: Vec<(u64, Stat, Stat)>,
}

fn cross(base: &Curve, zc: &Curve) -> Option<Cross> {
    let pts: Vec<(u64, Stat, Stat)> = zc
        .iter()
        .filter_map(|(s, z)| base.get(s).map(|b| (*s, *z, *b)))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let below: Vec<bool> = pts.iter().map(|(_, z, b)| z.med < b.med).collect();
    let separated = |i: usize| {
        let (_, z, b) = pts[i];
        z.max < b.min || z.min > b.max
    };
    let from = (0..pts.len()).find(|&i| below[i..].iter().all(|&x| x));
    let (status, at, between, interpolated, decide) = match from {
        None => ("never-below", None, None, None, pts.len() - 1),
        Some(0) => ("below-at-every-size", Some(pts[0].0), None, None, 0),
        Some(i) => {
            let (s0, z0, b0) = pts[i - 1];
            let (s1, z1, b1) = pts[i];
            let (r0, r1) = (z0.med / b0.med, z1.med / b1.med);
            let x = (r0 > 0.0 && r1 > 0.0 && r0 != r1).then(|| {
                let f = r0.ln() / (r0.ln() - r1.ln());
                ((s0 as f64).ln() + f * ((s1 as f64).ln() - (s0 as f64).ln())).exp()
            });
            ("crosses", Some(s1), Some((s0, s1)), x, i - 1)
        }
    };
    Some(Cross {
        status,
        at,
        between,
        interpolated,
        conclusive: (decide..pts.len()).all(separated),
        pts,
    })
}

impl Cross {
    fn verdict(&self, base: &str) -> String {
        let c = if self.conclusive {
            ""
        } else {
            " [inconclusive: repeats overlap]"
        };
        match (self.status, self.at, self.between) {
            ("crosses", Some(a), Some((s0, _))) => format!(
                "pays off from {} (between {} and {}{}){c}",
                units::fmt_size(a),
                units::fmt_size(s0),
                units::fmt_size(a),
                self.interpolated.map_or(String::new(), |x| format!(
                    ", ~{:.1} KiB interpolated",
                    x / 1024.0
                ))
            ),
            ("below-at-every-size", Some(a), _) => format!(
                "below {base} at every size measured (from {}){c}",
                units::fmt_size(a)
            ),
            _ => format!("never stays below {base} at the sizes measured{c}"),
        }
    }

    fn json(&self, base: &str) -> Value {
        json!({
            "baseline": base,
            "status": self.status,
            "crossover_bytes": self.at,
            "between_bytes": self.between.map(|(a, b)| [a, b]),
            "interpolated_bytes": self.interpolated,
            "conclusive": self.conclusive,
            "points": self.pts.iter().map(|(s, z, b)| json!({
                "size": s,
                "zc_cpu_ns_per_mib": {"median": z.med, "min": z.min, "max": z.max},
                "baseline_cpu_ns_per_mib": {"median": b.med, "min": b.min, "max": b.max},
                "ratio": z.med / b.med,
                "separated": z.max < b.min || z.min > b.max,
                "zc_gbps_median": z.gbps,
                "baseline_gbps_median": b.gbps,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The crossover on one path: the file it belongs in, its document (None when it could not be
/// computed: nothing to write) and the lines to print.
pub struct Crossover {
    pub file: &'static str,
    pub json: Option<Value>,
    pub text: String,
}

/// The crossover on each path of `paths` where zero copy can happen: `udp-sink` (nothing
/// receives locally; `crossover.json`) and `remote-udp` (the NIC sends the pages;
/// `crossover-remote-udp.json`). `repeat` is the run's `--repeat`, recorded in the document.
pub fn crossovers(rows: &[Row], paths: &[NetPath], repeat: u32) -> Vec<Crossover> {
    [
        (NetPath::UdpSink, "crossover.json"),
        (NetPath::RemoteUdp, "crossover-remote-udp.json"),
    ]
    .into_iter()
    .filter(|(p, _)| paths.contains(p))
    .map(|(p, file)| crossover_on(rows, p, file, repeat))
    .collect()
}

/// [`crossovers`] on one path.
fn crossover_on(rows: &[Row], path: NetPath, file: &'static str, repeat: u32) -> Crossover {
    let pname = path.name();
    let sink: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter(|r| r.params.get("path").and_then(Value::as_str) == Some(pname))
        .collect();
    let mut text = String::new();
    let mut say = |s: &str| {
        text.push_str(s);
        text.push('\n');
    };
    let of = |v: &str| -> Vec<&Row> { sink.iter().copied().filter(|r| r.variant == v).collect() };
    let zc_variants = [
        names::CLASSIC_SEND_MSG_ZEROCOPY,
        names::URING_SEND_ZC,
        names::URING_SEND_ZC_FIXED,
        names::URING_SENDMSG_ZC,
    ];
    let base = curve(&of(names::CLASSIC_SEND));
    let uring_base = curve(&of(names::URING_SEND));
    if base.is_empty() || zc_variants.iter().all(|v| of(v).is_empty()) {
        say(&format!(
            "crossover: not computed (needs classic-send and a zero-copy variant measured on {pname})"
        ));
        return Crossover {
            file,
            json: None,
            text,
        };
    }
    let mut out = Vec::new();
    say(&format!(
        "crossover on {pname}: message size from which sender CPU per byte (median of repeats) stays below classic-send's"
    ));
    for v in zc_variants {
        let mut reaps: Vec<Option<u64>> = Vec::new();
        for r in of(v) {
            let reap = (v == names::CLASSIC_SEND_MSG_ZEROCOPY)
                .then(|| r.params.get("reap").and_then(Value::as_u64))
                .flatten();
            if !reaps.contains(&reap) {
                reaps.push(reap);
            }
        }
        for reap in reaps {
            let rs: Vec<&Row> = of(v)
                .into_iter()
                .filter(|r| reap.is_none() || r.params.get("reap").and_then(Value::as_u64) == reap)
                .collect();
            let zc = curve(&rs);
            let Some(c) = cross(&base, &zc) else { continue };
            let label = match reap {
                Some(r) => format!("{v} (reap={r})"),
                None => v.to_string(),
            };
            let ratios: Vec<String> = c
                .pts
                .iter()
                .map(|(s, z, b)| format!("{} {:.2}", units::fmt_size(*s), z.med / b.med))
                .collect();
            say(&format!(
                "  {label:<38} {}; CPU ratio zc/classic: {}",
                c.verdict("classic-send"),
                ratios.join(" | ")
            ));
            let vs_uring = v
                .starts_with("uring-")
                .then(|| cross(&uring_base, &zc))
                .flatten();
            if let Some(u) = &vs_uring {
                say(&format!(
                    "  {:<38} against uring-send: {}",
                    "",
                    u.verdict("uring-send")
                ));
            }
            let mut j = c.json("classic-send");
            j["variant"] = json!(v);
            j["reap_every"] = json!(reap);
            j["vs_uring_send"] = vs_uring.map_or(Value::Null, |u| u.json("uring-send"));
            out.push(j);
        }
    }
    let doc = json!({
        "experiment": names::NAME,
        "path": pname,
        "baseline": "classic-send (io_uring variants also against uring-send, in vs_uring_send)",
        "metric": "sender CPU (user + system) ns per MiB, median over repeats; 'separated' when the min-max ranges of the repeats do not overlap",
        "rule": "crossover_bytes: the smallest measured size from which the zero-copy variant's median is below the baseline's at every larger size too; conclusive when the deciding sizes are separated",
        "repeat": repeat,
        "variants": out,
    });
    say(&format!("crossover: {file}"));
    Crossover {
        file,
        json: Some(doc),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(med: f64) -> Stat {
        Stat {
            med,
            min: med * 0.95,
            max: med * 1.05,
            gbps: 1.0,
        }
    }

    #[test]
    fn crossover_rule() {
        let base: Curve = [(1024, 100.0), (4096, 100.0), (16384, 100.0), (65536, 100.0)]
            .into_iter()
            .map(|(s, m)| (s, stat(m)))
            .collect();
        let zc = |v: [f64; 4]| -> Curve {
            [1024u64, 4096, 16384, 65536]
                .into_iter()
                .zip(v)
                .map(|(s, m)| (s, stat(m)))
                .collect()
        };
        // Below at 4 KiB by chance, above at 16 KiB, below from 64 KiB on: 64 KiB counts.
        let c = cross(&base, &zc([150.0, 90.0, 120.0, 50.0])).unwrap();
        assert_eq!(
            (c.status, c.at, c.between),
            ("crosses", Some(65536), Some((16384, 65536)))
        );
        let x = c.interpolated.unwrap();
        assert!(x > 16384.0 && x < 65536.0, "{x}");
        assert!(c.conclusive);
        let c = cross(&base, &zc([80.0, 70.0, 60.0, 50.0])).unwrap();
        assert_eq!((c.status, c.at), ("below-at-every-size", Some(1024)));
        let c = cross(&base, &zc([150.0, 140.0, 130.0, 101.0])).unwrap();
        assert_eq!((c.status, c.at), ("never-below", None));
        assert!(!c.conclusive, "101 vs 100 is within the spread");
        assert!(cross(&base, &Curve::new()).is_none());
    }
}
