//! net_send's crossover: for each zero-copy variant on a path where zero copy can happen, the
//! message size from which its sender CPU per byte stays below classic-send's (and, for the
//! io_uring variants, below uring-send's), from the run's rows in memory. The decision is the
//! analysis layer's one crossover rule, called as the claims engine calls it
//! ([`analysis::crossover_of_rows`]: repeats paired by index), so `crossover*.json` and the
//! `zc-10k` claim cannot disagree about a run; [`crate::report::crossover`] words it.

use crate::analysis::{self, CrossStatus, Direction};
use crate::catalog::net_send as names;
use crate::net::netns::NetPath;
use crate::report::crossover::{RULE, point_ratio, ratios, verdict};
use crate::results::{Row, Status};
use serde_json::{Value, json};

/// The figure compared, and which way is better.
const METRIC: &str = "cpu_ns_per_mib";
const BETTER: Direction = Direction::LowerIsBetter;

/// The rule's answer for `zc` against `base` (rows of one path), or None when no size has
/// repeats of both.
fn cross(zc: &[&Row], base: &[&Row]) -> Option<analysis::Crossover> {
    let c = analysis::crossover_of_rows(
        zc.iter().copied(),
        base.iter().copied(),
        "size",
        METRIC,
        BETTER,
    );
    (c.status != CrossStatus::NoPoints).then_some(c)
}

/// Median GB/s of the ok rows at `size`.
fn gbps(rows: &[&Row], size: u64) -> f64 {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.params.get("size").and_then(Value::as_u64) == Some(size))
        .filter_map(|r| Some(r.metrics.as_ref()?.gbps))
        .collect();
    analysis::median(&v)
}

/// One comparison as recorded: the rule's answer, with the figures per size.
fn json_of(c: &analysis::Crossover, base: &str, zc_rows: &[&Row], base_rows: &[&Row]) -> Value {
    let fig = |s: &analysis::Summary| json!({"median": s.median, "min": s.min, "max": s.max});
    json!({
        "baseline": base,
        "status": match c.status {
            CrossStatus::Crosses => "crosses",
            CrossStatus::AlwaysBetter => "below-at-every-size",
            CrossStatus::Never | CrossStatus::NoPoints => "never-below",
        },
        "crossover_bytes": c.at,
        "between_bytes": c.between.map(|(a, b)| [a, b]),
        "interpolated_bytes": c.interpolated,
        "conclusive": c.conclusive,
        "stray_bytes": c.stray,
        "points": c.points.iter().map(|p| {
            let mut j = json!({
                "size": p.param,
                "ratio": p.ratio.value,
                "zc_cpu_ns_per_mib": fig(&p.a),
                "baseline_cpu_ns_per_mib": fig(&p.b),
                "zc_gbps_median": gbps(zc_rows, p.param),
                "baseline_gbps_median": gbps(base_rows, p.param),
            });
            if let (Some(o), Value::Object(r)) = (j.as_object_mut(), point_ratio(p)) {
                o.extend(r);
            }
            j
        }).collect::<Vec<_>>(),
    })
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
    let (base, uring_base) = (of(names::CLASSIC_SEND), of(names::URING_SEND));
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
        "crossover on {pname}: message size from which sender CPU per byte stays below classic-send's (repeats paired; conclusive when every deciding ratio's 95% interval leaves 1 out)"
    ));
    for v in zc_variants {
        // MSG_ZEROCOPY is measured at each --reap-every, the others at the first only.
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
            let zc: Vec<&Row> = of(v)
                .into_iter()
                .filter(|r| reap.is_none() || r.params.get("reap").and_then(Value::as_u64) == reap)
                .collect();
            let Some(c) = cross(&zc, &base) else { continue };
            let label = match reap {
                Some(r) => format!("{v} (reap={r})"),
                None => v.to_string(),
            };
            say(&format!(
                "  {label:<38} {}; CPU ratio zc/classic: {}",
                verdict(&c, names::CLASSIC_SEND),
                ratios(&c)
            ));
            let vs_uring = v
                .starts_with("uring-")
                .then(|| cross(&zc, &uring_base))
                .flatten();
            if let Some(u) = &vs_uring {
                say(&format!("  {:<38} {}", "", verdict(u, names::URING_SEND)));
            }
            let mut j = json_of(&c, names::CLASSIC_SEND, &zc, &base);
            j["variant"] = json!(v);
            j["reap_every"] = json!(reap);
            j["vs_uring_send"] = vs_uring.map_or(Value::Null, |u| {
                json_of(&u, names::URING_SEND, &zc, &uring_base)
            });
            out.push(j);
        }
    }
    let doc = json!({
        "experiment": names::NAME,
        "path": pname,
        "baseline": "classic-send (io_uring variants also against uring-send, in vs_uring_send)",
        "metric": "sender CPU (user + system) ns per MiB; per size the ratio zero-copy/baseline of repeats paired by index, with its distribution-free 95% interval (decides from 6 pairs)",
        "rule": RULE,
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
    use crate::results::Metrics;

    fn row(variant: &str, path: &str, size: u64, reap: u64, repeat: u32, cpu: f64) -> Row {
        let m = Metrics {
            cpu_ns_per_mib: cpu,
            gbps: 1.0,
            bytes: size,
            ..Default::default()
        };
        let params = [
            ("path", json!(path)),
            ("size", json!(size)),
            ("reap", json!(reap)),
        ];
        Row::measured(names::NAME, variant, &params, repeat, m)
    }

    const SIZES: [u64; 4] = [1024, 4096, 16384, 65536];

    fn rows_of(variant: &str, reap: u64, cpu: [f64; 4], jitter: [f64; 6]) -> Vec<Row> {
        let mut v = Vec::new();
        for (s, c) in SIZES.into_iter().zip(cpu) {
            for (i, j) in jitter.iter().enumerate() {
                v.push(row(variant, "udp-sink", s, reap, i as u32, c * (1.0 + j)));
            }
        }
        v
    }

    #[test]
    fn the_document_is_the_one_rule_on_the_rows() {
        // Six repeats: the fewest an interval decides on (analysis::MIN_DECIDING).
        let even = [0.0, 0.01, -0.01, 0.005, -0.005, 0.0];
        let mut rows = rows_of(names::CLASSIC_SEND, 1, [100.0; 4], even);
        rows.extend(rows_of(
            names::URING_SEND,
            1,
            [100.0; 4],
            [0.0, 0.03, -0.03, 0.01, -0.01, 0.0],
        ));
        // MSG_ZEROCOPY: ahead at 4 KiB by chance, for good from 64 KiB on.
        let zc = [150.0, 90.0, 120.0, 50.0];
        rows.extend(rows_of(names::CLASSIC_SEND_MSG_ZEROCOPY, 1, zc, even));
        // Reaping less often: ahead from 16 KiB, but 16 KiB is within the noise.
        let zc32 = [150.0, 140.0, 99.0, 50.0];
        rows.extend(rows_of(
            names::CLASSIC_SEND_MSG_ZEROCOPY,
            32,
            zc32,
            [0.0, 0.05, -0.05, 0.02, -0.02, 0.0],
        ));
        rows.extend(rows_of(
            names::URING_SEND_ZC,
            1,
            [80.0, 70.0, 60.0, 50.0],
            even,
        ));
        // A failed trial and another path do not count.
        let mut failed = row(names::URING_SEND_ZC, "udp-sink", 1024, 1, 6, 1.0);
        failed.status = Status::Error;
        rows.push(failed);
        rows.push(row(names::CLASSIC_SEND, "udp-sink", 1024, 1, 6, 100.0));
        rows.push(row(names::CLASSIC_SEND, "tcp-veth", 1024, 1, 0, 1.0));

        let out = crossovers(&rows, &[NetPath::UdpSink, NetPath::TcpVeth], 6);
        assert_eq!(out.len(), 1, "udp-sink only");
        let (doc, text) = (out[0].json.as_ref().unwrap(), &out[0].text);
        assert_eq!(out[0].file, "crossover.json");
        let vs = doc["variants"].as_array().unwrap();
        assert_eq!(vs.len(), 3, "{doc}");

        // The same as the rule called directly on the paired repeats.
        let direct = |a: [f64; 4], ja: [f64; 6], b: [f64; 4], jb: [f64; 6]| {
            let pts: Vec<(u64, Vec<f64>, Vec<f64>)> = (0..4)
                .map(|i| {
                    let f = |c: f64, j: [f64; 6]| j.iter().map(|x| c * (1.0 + x)).collect();
                    (SIZES[i], f(a[i], ja), f(b[i], jb))
                })
                .collect();
            analysis::crossover_paired(&pts, BETTER)
        };
        let checks = [
            (0, direct(zc, even, [100.0; 4], even)),
            (
                1,
                direct(zc32, [0.0, 0.05, -0.05, 0.02, -0.02, 0.0], [100.0; 4], even),
            ),
            (2, direct([80.0, 70.0, 60.0, 50.0], even, [100.0; 4], even)),
        ];
        for (i, c) in checks {
            let v = &vs[i];
            assert_eq!(v["crossover_bytes"], json!(c.at), "{v}");
            assert_eq!(v["conclusive"], json!(c.conclusive), "{v}");
            assert_eq!(v["stray_bytes"], json!(c.stray), "{v}");
            assert_eq!(v["points"].as_array().unwrap().len(), 4);
            assert_eq!(v["points"][3]["ratio"], json!(c.points[3].ratio.value));
        }
        assert_eq!(vs[0]["status"], "crosses");
        assert_eq!(vs[0]["crossover_bytes"], 65536);
        assert_eq!(vs[0]["stray_bytes"], json!([4096]));
        assert_eq!(vs[0]["conclusive"], true);
        assert_eq!(vs[1]["reap_every"], 32);
        assert_eq!(vs[1]["conclusive"], false);
        assert_eq!(vs[2]["status"], "below-at-every-size");
        assert!(vs[2]["vs_uring_send"].is_object() && vs[0]["vs_uring_send"].is_null());
        assert_eq!(
            vs[2]["points"][0]["pairs"], 6,
            "the failed repeat is left out"
        );
        // Every printed verdict says whether it is conclusive by the rule.
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(" beats ")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("; conclusive") || l.contains("; not conclusive (interval ")),
            "{text}"
        );
        assert!(text.contains("not conclusive (interval 0.9"), "{text}");
    }
}
