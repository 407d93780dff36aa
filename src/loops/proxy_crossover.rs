//! proxy's crossover: per mode, the message size from which each splice variant beats its
//! copying counterpart (stream: throughput; echo: median round trip), from the run's rows in
//! memory. The decision is the analysis layer's one crossover rule, called as the claims engine
//! calls it ([`analysis::crossover_of_rows`]: repeats paired by index), so `crossover.json` and
//! the `splice-4k` claim cannot disagree about a run; [`crate::report::crossover`] words it.

use crate::analysis::{self, CrossStatus, Direction};
use crate::catalog::proxy as names;
use crate::report::crossover::{RULE, point_ratio, verdict};
use crate::results::Row;
use serde_json::{Map, Value, json};

/// Each splice variant and its copying counterpart.
pub const PAIRS: &[(&str, &str)] = &[
    (names::CLASSIC_SPLICE, names::CLASSIC_READ_WRITE),
    (names::URING_SPLICE, names::URING_RECV_SEND),
];

/// The figure compared per mode (a name of [`analysis::metric`]), as the document describes
/// it, and which way is better.
fn figure(mode: &str) -> (&'static str, &'static str, Direction) {
    match mode {
        "stream" => (
            "gbps",
            "throughput GB/s (median of repeats)",
            Direction::HigherIsBetter,
        ),
        _ => (
            "p50_ns",
            "round-trip p50 ns (median of repeats)",
            Direction::LowerIsBetter,
        ),
    }
}

/// `crossover.json` (`{mode: {"SPLICE vs COPY": {...}}}`) and the lines to print; None when no
/// pair was measured at a common size.
pub fn crossover(rows: &[Row]) -> Option<(Value, String)> {
    let mut out = Map::new();
    let mut text =
        String::from("splice against copy (stream: throughput; echo: median round trip):\n");
    for mode in ["stream", "echo"] {
        let (metric, about, better) = figure(mode);
        let of = |v: &'static str| {
            rows.iter().filter(move |r| {
                r.variant == v && r.params.get("mode").and_then(Value::as_str) == Some(mode)
            })
        };
        let mut per_mode = Map::new();
        for &(sp, cp) in PAIRS {
            let c = analysis::crossover_of_rows(of(sp), of(cp), "msg", metric, better);
            if c.status == CrossStatus::NoPoints {
                continue;
            }
            let key = format!("{sp} vs {cp}");
            let verdict = verdict(&c, "copy");
            text.push_str(&format!("  {mode:<6} {key:<40} {verdict}\n"));
            let by_size: Vec<Value> = c
                .points
                .iter()
                .map(|p| {
                    let mut j = json!({
                        "size": p.param,
                        "copy_median": p.b.median,
                        "splice_median": p.a.median,
                        "ratio_splice_to_copy": p.ratio.value,
                        "splice_better": p.a_wins,
                    });
                    if let (Some(o), Value::Object(r)) = (j.as_object_mut(), point_ratio(p)) {
                        o.extend(r);
                    }
                    j
                })
                .collect();
            per_mode.insert(
                key,
                json!({
                    "splice": sp, "copy": cp, "metric": about,
                    "crossover_size": c.at, "verdict": verdict,
                    "status": c.status,
                    "between_sizes": c.between.map(|(a, b)| [a, b]),
                    "interpolated_size": c.interpolated,
                    "conclusive": c.conclusive,
                    "stray_sizes": c.stray,
                    "rule": RULE,
                    "by_size": by_size,
                }),
            );
        }
        if !per_mode.is_empty() {
            out.insert(mode.into(), Value::Object(per_mode));
        }
    }
    (!out.is_empty()).then_some((Value::Object(out), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Metrics;

    fn row(variant: &str, mode: &str, msg: u64, repeat: u32, gbps: f64) -> Row {
        let m = Metrics {
            gbps,
            bytes: msg,
            ..Default::default()
        };
        let params = [("mode", json!(mode)), ("msg", json!(msg))];
        Row::measured(names::NAME, variant, &params, repeat, m)
    }

    #[test]
    fn the_document_is_the_one_rule_on_the_rows() {
        let sizes = [512, 2048, 4096, 16384];
        let (copy, splice) = ([2.0, 2.0, 2.0, 2.0], [1.0, 2.2, 1.9, 3.0]);
        // Six repeats: the fewest an interval decides on (analysis::MIN_DECIDING).
        let jitter = [0.0, 0.01, -0.01, 0.005, -0.005, 0.0];
        let mut rows = Vec::new();
        let mut pts = Vec::new();
        for i in 0..4 {
            let f = |x: f64| jitter.map(|j| x * (1.0 + j)).to_vec();
            pts.push((sizes[i], f(splice[i]), f(copy[i])));
            for (k, j) in jitter.iter().enumerate() {
                let k = k as u32;
                rows.push(row(
                    names::CLASSIC_SPLICE,
                    "stream",
                    sizes[i],
                    k,
                    splice[i] * (1.0 + j),
                ));
                rows.push(row(
                    names::CLASSIC_READ_WRITE,
                    "stream",
                    sizes[i],
                    k,
                    copy[i] * (1.0 + j),
                ));
            }
        }
        let (doc, text) = crossover(&rows).unwrap();
        let e = &doc["stream"]["classic-splice vs classic-read-write"];
        let c = analysis::crossover_paired(&pts, Direction::HigherIsBetter);
        assert_eq!(e["crossover_size"], json!(c.at));
        assert_eq!(e["crossover_size"], 16384);
        assert_eq!(e["conclusive"], json!(c.conclusive));
        assert_eq!(e["stray_sizes"], json!([2048]));
        assert_eq!(e["status"], "crosses");
        assert_eq!(e["by_size"].as_array().unwrap().len(), 4);
        assert_eq!(e["by_size"][1]["splice_better"], true);
        assert!(doc.get("echo").is_none(), "no echo rows: {doc}");
        assert!(text.contains("beats copy from 16KiB"), "{text}");
        assert!(text.trim_end().ends_with("; conclusive"), "{text}");
        assert!(crossover(&rows[..0]).is_none());
    }
}
