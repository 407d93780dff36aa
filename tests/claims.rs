//! Claim verdicts: every verdict kind on synthetic summaries, and a claim on a small real run.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use zclab::analysis::claims::{Kind, load, verdicts};
use zclab::results::load_run;
use zclab::results::{Integrity, Metrics, Row, ZcCounts};

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

/// Writes a synthetic experiment directory: meta.json and summary.jsonl with one row per
/// (variant, size, repeat, value of `metric`).
fn write_exp(
    dir: &Path,
    exp: &str,
    kernel: &str,
    rows: &[(&str, u64, u32, f64)],
    skipped: &[(&str, &str)],
) {
    let d = dir.join(exp);
    std::fs::create_dir_all(&d).unwrap();
    let variants: Vec<_> = skipped
        .iter()
        .map(|(v, r)| json!({"name": v, "status": "skipped", "reason": r}))
        .collect();
    let meta = json!({
        "experiment": exp, "accelerator": "native", "variants": variants,
        "skipped": skipped.iter().map(|(v, r)| json!({"variant": v, "reason": r})).collect::<Vec<_>>(),
        "probe": {"hostname": "h", "kernel": {"release": kernel}, "io_uring": {"opcodes": []}},
    });
    std::fs::write(d.join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
    let mut text = String::new();
    for &(variant, size, repeat, v) in rows {
        let m = Metrics {
            gbps: v,
            wall_ns: (1e9 / v) as u64,
            zc: Some(ZcCounts {
                usage_reported: true,
                copied_pct: v,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut row = Row::measured(exp, variant, &[("size", json!(size))], repeat, m);
        row.integrity = Some(Integrity {
            ok: true,
            ..Default::default()
        });
        text.push_str(&serde_json::to_string(&row).unwrap());
        text.push('\n');
    }
    std::fs::write(d.join("summary.jsonl"), text).unwrap();
}

/// `rows` with each row repeated 6 times (repeats 0 to 5): the fewest an interval decides on.
fn six(rows: &[(&'static str, u64, u32, f64)]) -> Vec<(&'static str, u64, u32, f64)> {
    rows.iter()
        .flat_map(|&(v, size, _, x)| (0..6).map(move |r| (v, size, r, x)))
        .collect()
}

fn claims(checks: serde_json::Value) -> Vec<zclab::analysis::claims::Claim> {
    let c = json!([{"id": "t", "statement": "s", "source": "x", "published": "p", "conditions": "c", "reproduced_when": "r", "checks": checks}]);
    load(&c.to_string()).unwrap()
}

fn ratio_check(op: &str, t: f64) -> serde_json::Value {
    json!([{"kind": "ratio", "experiment": "e", "metric": "gbps", "a": {"variant": "fast"}, "b": {"variant": "slow"}, "op": op, "threshold": t}])
}

/// The verdict on the one claim with `checks`, given the runs in `dirs`.
fn verdict(checks: serde_json::Value, dirs: &[&Path]) -> zclab::analysis::claims::Verdict {
    let runs: Vec<_> = dirs.iter().map(|d| load_run(d).unwrap()).collect();
    verdicts(&claims(checks), &runs).remove(0)
}

#[test]
fn ratio_verdicts_of_every_kind() {
    let t = tempfile::tempdir().unwrap();
    // fast/slow per repeat: 2.0, 2.2, 1.8 (three repeats decide nothing), then 2.1, 1.9, 2.0.
    let pairs = |fast: &[f64]| -> Vec<_> {
        (0..)
            .zip(fast.to_vec())
            .flat_map(|(repeat, fast)| [("fast", 1, repeat, fast), ("slow", 1, repeat, 1.0)])
            .collect()
    };
    write_exp(t.path(), "e", "6.18", &pairs(&[2.0, 2.2, 1.8]), &[]);
    let v = verdict(ratio_check(">=", 1.5), &[t.path()]);
    assert_eq!(v.kind, Kind::Inconclusive, "{v:?}");
    write_exp(
        t.path(),
        "e",
        "6.18",
        &pairs(&[2.0, 2.2, 1.8, 2.1, 1.9, 2.0]),
        &[],
    );
    let run = [t.path()];
    for (threshold, kind) in [
        (1.5, Kind::Reproduced),
        (3.0, Kind::NotReproduced),
        // The spread (1.8 .. 2.2) straddles 2.0.
        (2.0, Kind::Inconclusive),
    ] {
        assert_eq!(
            verdict(ratio_check(">=", threshold), &run).kind,
            kind,
            "{threshold}"
        );
    }
    let v = verdict(ratio_check(">=", 1.5), &run);
    assert!(v.measured.contains("2.00"), "{}", v.measured);
}

/// A check with the source's figure shows the measured one beside it, and their quotient, in
/// the verdict and in the table: "reproduced in direction, 0.5x in size" is visible.
#[test]
fn magnitude_beside_the_published_figure() {
    let t = tempfile::tempdir().unwrap();
    let rows = six(&[("fast", 1, 0, 2.0), ("slow", 1, 0, 1.0)]);
    write_exp(t.path(), "e", "6.18", &rows, &[]);
    let mut checks = ratio_check(">", 1.0);
    checks[0]["published"] = json!(4.0);
    let v = verdict(checks, &[t.path()]);
    assert_eq!(v.kind, Kind::Reproduced);
    assert_eq!(v.vs_published.len(), 1);
    let m = &v.vs_published[0];
    assert_eq!((m.measured, m.published, m.quotient), (2.0, 4.0, 0.5));
    let table = zclab::report::claims_table(std::slice::from_ref(&v));
    assert!(table.contains("2.00 vs 4.00 published = 0.500x"), "{table}");
    // Without a published figure there is nothing to divide by.
    assert!(
        verdict(ratio_check(">", 1.0), &[t.path()])
            .vs_published
            .is_empty()
    );
}

#[test]
fn not_applicable_says_why() {
    let t = tempfile::tempdir().unwrap();
    let skipped = [("fast", "IORING_OP_SEND_ZC needs Linux 6.0")];
    write_exp(t.path(), "e", "6.18", &[("slow", 1, 0, 1.0)], &skipped);
    let run = [t.path()];
    let v = verdict(ratio_check(">=", 1.5), &run);
    assert_eq!(v.kind, Kind::NotApplicable);
    assert!(v.why.contains("needs Linux 6.0"), "{}", v.why);
    // A missing experiment, and points the run does not have.
    let other = json!([{"kind": "ratio", "experiment": "nope", "metric": "gbps", "a": {"variant": "a"}, "b": {"variant": "b"}, "op": ">", "threshold": 1}]);
    let pts = json!([{"kind": "ratio", "experiment": "e", "metric": "gbps", "a": {"variant": "slow"}, "b": {"variant": "slow"}, "points": {"size": {"min": 1000}}, "op": ">", "threshold": 1}]);
    for (checks, why) in [(other, "did not include nope"), (pts, "needed points")] {
        let v = verdict(checks, &run);
        assert!(
            v.kind == Kind::NotApplicable && v.why.contains(why),
            "{v:?}"
        );
    }
    let needs = json!([{"kind": "needs", "what": "a real NIC"}]);
    assert!(verdict(needs, &run).why.contains("needs a real NIC"));
}

#[test]
fn value_crossover_and_kernel_checks() {
    let t = tempfile::tempdir().unwrap();
    // a beats b (higher gbps, b at 2.0 throughout) from size 8192 on.
    let rows: Vec<_> = [(1024, 1.0), (4096, 1.5), (8192, 3.0), (65536, 5.0)]
        .into_iter()
        .flat_map(|(size, a)| [("a", size, 0, a), ("b", size, 0, 2.0)])
        .collect();
    write_exp(t.path(), "e", "6.18", &six(&rows), &[]);
    let run = [t.path()];
    let cross = |min: f64, max: f64| json!([{"kind": "crossover", "experiment": "e", "metric": "gbps", "a": {"variant": "a"}, "b": {"variant": "b"}, "param": "size", "lower_is_better": false, "min": min, "max": max}]);
    assert_eq!(verdict(cross(5000.0, 20000.0), &run).kind, Kind::Reproduced);
    assert_eq!(
        verdict(cross(16384.0, 65536.0), &run).kind,
        Kind::NotReproduced
    );
    let value = json!([{"kind": "value", "experiment": "e", "metric": "copied_pct", "side": {"variant": "b"}, "op": ">=", "threshold": 2.0}]);
    assert_eq!(verdict(value, &run).kind, Kind::Reproduced);

    // Two kernels: b at 2.0 on 6.1 and 2.4 on 6.12 -> +20%.
    let t2 = tempfile::tempdir().unwrap();
    write_exp(t2.path(), "e", "6.12.0", &six(&[("b", 1024, 0, 2.4)]), &[]);
    let kern = json!([{"kind": "kernels", "experiment": "e", "metric": "gbps", "side": {"variant": "b", "where": {"size": 1024}}, "boundary": "6.5", "op": ">=", "threshold": 1.05}]);
    let t1 = tempfile::tempdir().unwrap();
    write_exp(t1.path(), "e", "6.1.0", &six(&[("b", 1024, 0, 2.0)]), &[]);
    let two = [t1.path(), t2.path()];
    assert_eq!(verdict(kern.clone(), &two).kind, Kind::Reproduced);
    assert_eq!(verdict(kern, &two[..1]).kind, Kind::NotApplicable);
}

#[test]
fn malformed_claims_and_runs_are_clear_errors() {
    assert!(load("[").is_err());
    assert!(load(r#"[{"id":"x"}]"#).is_err());
    let t = tempfile::tempdir().unwrap();
    let e = load_run(t.path()).err().unwrap().to_string();
    assert!(e.contains("holds no experiment results"), "{e}");
    write_exp(t.path(), "e", "6.18", &[], &[]);
    std::fs::write(t.path().join("e/summary.jsonl"), "{not json\n").unwrap();
    let r = Lab::new(ZCLAB).arg("claims").arg(t.path()).run();
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr.contains("summary.jsonl: line 1"), "{}", r.stderr);
}

#[test]
fn a_claim_on_a_small_real_run() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    // A cache of its own: the host placement is judged against the lowest round trip seen in
    // this run, not one an earlier run saw with the CPUs together.
    let cache = t.path().join("cache");
    Lab::new(env!("CARGO_BIN_EXE_file_to_socket"))
        .argv("--sizes 64MiB --chunks 4KiB,256KiB --variants classic-read-write,classic-sendfile")
        .argv("--repeat 3 --warmup 1")
        .env("XDG_CACHE_HOME", cache.to_str().unwrap())
        .results(&res)
        .run()
        .ok();
    let run_dir = first_run_dir(&res);
    let r = Lab::new(ZCLAB)
        .argv("claims --json")
        .arg(&run_dir)
        .run()
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let ibm = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "ibm-transferto")
        .unwrap();
    let kind = ibm["kind"].as_str().unwrap();
    let why = ibm["why"].as_str().unwrap();
    if kind == "inconclusive" && why.contains("CPUs apart") {
        // The host moved its CPUs apart for every trial of a point: no verdict, and it says so.
        assert!(why.contains("--host-wait"), "{ibm}");
        return;
    }
    assert!(
        kind == "reproduced" || kind == "not-reproduced" || kind == "inconclusive",
        "{ibm}"
    );
    let measured = ibm["measured"].as_str().unwrap();
    assert!(measured.contains("size=64MiB"), "{ibm}");
}
