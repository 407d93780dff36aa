//! `zclab compare --stability`: the numbers on two synthetic runs whose figures are chosen so
//! every statistic is known, and the committed reference run against itself (all ratios 1, no
//! verdict differs).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use zclab::analysis::claims::{CLAIMS_JSON, Kind, load};
use zclab::report::compare::{Stability, stability, stability_markdown};
use zclab::results::load_run;

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference/quick-20261121T165605Z")
}

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() < 1e-12
}

#[track_caller]
fn assert_close(x: f64, y: f64) {
    assert!(close(x, y), "{x} != {y}");
}

/// A row like the reference run's, with the figures that matter here replaced.
fn row(tpl: &Value, exp: &str, variant: &str, params: Value, repeat: u32, f: Fig) -> Value {
    let mut r = tpl.clone();
    let point = params
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), String::from)))
        .collect::<Vec<_>>()
        .join(",");
    r["experiment"] = json!(exp);
    r["variant"] = json!(variant);
    r["point"] = json!(point);
    r["params"] = params;
    r["repeat"] = json!(repeat);
    let m = &mut r["metrics"];
    match f {
        Fig::Ops { ops_per_s, mean_ns } => {
            m["bytes"] = json!(0);
            m["gbps"] = json!(0.0);
            m["ops_per_s"] = json!(ops_per_s);
            m["latency"]["mean_ns"] = json!(mean_ns);
        }
        Fig::Gbps(g) => {
            m["bytes"] = json!(1 << 20);
            m["gbps"] = json!(g);
            m["ops_per_s"] = json!(1.0);
        }
        Fig::Failed => {
            r["status"] = json!("error");
            r["error"] = json!("integrity check failed");
            r["metrics"] = Value::Null;
        }
    }
    r
}

#[derive(Clone, Copy)]
enum Fig {
    Ops { ops_per_s: f64, mean_ns: f64 },
    Gbps(f64),
    Failed,
}

/// One experiment directory of a synthetic run: the reference run's meta.json with the
/// experiment's name, and `rows` (variant, params, the repeats' figures).
fn write_experiment(run: &Path, exp: &str, rows: &[(&str, Value, Vec<Fig>)]) {
    let src = reference();
    let tpl: Value = serde_json::from_str(
        std::fs::read_to_string(src.join("syscall_floor/summary.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let dir = run.join(exp);
    std::fs::create_dir_all(&dir).unwrap();
    let mut meta: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(exp).join("meta.json")).unwrap())
            .unwrap();
    meta["experiment"] = json!(exp);
    meta["skipped"] = json!([]);
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    let mut text = String::new();
    for (variant, params, figs) in rows {
        for (i, f) in figs.iter().enumerate() {
            text += &row(&tpl, exp, variant, params.clone(), i as u32, *f).to_string();
            text.push('\n');
        }
    }
    std::fs::write(dir.join("summary.jsonl"), text).unwrap();
}

fn ops(v: &[f64], mean_ns: f64) -> Vec<Fig> {
    v.iter()
        .map(|&o| Fig::Ops {
            ops_per_s: o,
            mean_ns,
        })
        .collect()
}

fn gbps(v: &[f64]) -> Vec<Fig> {
    v.iter().map(|&g| Fig::Gbps(g)).collect()
}

/// Runs A and B under `root`. Figures compared (|B/A - 1|):
/// - syscall_floor getppid@batch=1: op/s 100,110,90 (twice: six repeats, the fewest that decide) -> 102,112,92: 1.02 (0.02), intervals
///   [90,110] and [92,112] overlap;
/// - syscall_floor uring-nop@batch=32: 1000 x3 -> 800,810,790: 0.8 (0.2), disjoint; its mean
///   latency 20 ns -> 80 ns against getppid's 100 ns turns claim nop-rate (< 0.5) from
///   reproduced to not reproduced;
/// - file_copy classic-read-write@size=1MiB: 2 GB/s x3 both: 1 (0), overlap;
/// - file_copy classic-sendfile@size=1MiB: 4 x3 -> 4.4 x3: 1.1 (0.1), disjoint.
///
/// Not compared: classic-copy-file-range (every repeat failed in B); classic-mmap-write only in
/// A; uring-nop@batch=1 only in B.
fn synthetic(root: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("A"), root.join("B"));
    let batch = |n: u64| json!({ "batch": n });
    let size = json!({ "size": "1MiB" });
    write_experiment(
        &a,
        "syscall_floor",
        &[
            (
                "getppid",
                batch(1),
                ops(&[100.0, 110.0, 90.0, 100.0, 110.0, 90.0], 100.0),
            ),
            ("uring-nop", batch(32), ops(&[1000.0; 6], 20.0)),
        ],
    );
    write_experiment(
        &b,
        "syscall_floor",
        &[
            (
                "getppid",
                batch(1),
                ops(&[102.0, 112.0, 92.0, 102.0, 112.0, 92.0], 100.0),
            ),
            (
                "uring-nop",
                batch(32),
                ops(&[800.0, 810.0, 790.0, 800.0, 810.0, 790.0], 80.0),
            ),
            ("uring-nop", batch(1), ops(&[5.0; 6], 100.0)),
        ],
    );
    write_experiment(
        &a,
        "file_copy",
        &[
            ("classic-read-write", size.clone(), gbps(&[2.0; 6])),
            ("classic-sendfile", size.clone(), gbps(&[4.0; 6])),
            ("classic-copy-file-range", size.clone(), gbps(&[3.0; 6])),
            ("classic-mmap-write", size.clone(), gbps(&[1.0; 6])),
        ],
    );
    write_experiment(
        &b,
        "file_copy",
        &[
            ("classic-read-write", size.clone(), gbps(&[2.0; 6])),
            ("classic-sendfile", size.clone(), gbps(&[4.4; 6])),
            ("classic-copy-file-range", size, vec![Fig::Failed; 6]),
        ],
    );
    (a, b)
}

fn check_synthetic(st: &Stability) {
    let f: Vec<(&str, &str, &str, f64, bool, bool)> = st
        .figures
        .iter()
        .map(|f| {
            (
                f.key.experiment.as_str(),
                f.key.variant.as_str(),
                f.metric,
                f.ratio.value,
                f.overlap,
                f.ratio.conclusive,
            )
        })
        .collect();
    assert_eq!(f.len(), 4, "{f:?}");
    // Experiments sorted, then run A's row order.
    let expect = [
        ("file_copy", "classic-read-write", "gbps", 1.0, true, false),
        ("file_copy", "classic-sendfile", "gbps", 1.1, false, true),
        ("syscall_floor", "getppid", "ops_per_s", 1.02, true, false),
        ("syscall_floor", "uring-nop", "ops_per_s", 0.8, false, true),
    ];
    for (got, want) in f.iter().zip(expect) {
        assert_eq!((got.0, got.1, got.2), (want.0, want.1, want.2));
        assert_close(got.3, want.3);
        assert_eq!((got.4, got.5), (want.4, want.5), "{got:?}");
    }
    // The medians' intervals (the repeats' range for 6 repeats) and the ratio's.
    let nop = &st.figures[3];
    assert_eq!(
        (nop.a.value, nop.a.lo, nop.a.hi, nop.a.n),
        (1000.0, 1000.0, 1000.0, 6)
    );
    assert_eq!(
        (nop.b.value, nop.b.lo, nop.b.hi, nop.b.n),
        (800.0, 790.0, 810.0, 6)
    );
    assert_close(nop.ratio.lo, 0.79);
    assert_close(nop.ratio.hi, 0.81);
    let g = &st.figures[2];
    assert_eq!((g.a.lo, g.a.hi, g.b.lo, g.b.hi), (90.0, 110.0, 92.0, 112.0));
    assert!(g.ratio.lo <= 1.0 && g.ratio.hi >= 1.0, "{:?}", g.ratio);
    assert!(g.ratio.lo >= 92.0 / 110.0 && g.ratio.hi <= 112.0 / 90.0);
    assert_close(g.deviation, 0.02);

    // Not compared, with why; only on one side.
    assert_eq!(st.not_compared.len(), 1);
    assert_eq!(st.not_compared[0].key.variant, "classic-copy-file-range");
    assert_eq!(st.not_compared[0].why, "no ok repeat in B");
    assert_eq!(st.only_a.len(), 1);
    assert_eq!(st.only_a[0].variant, "classic-mmap-write");
    assert_eq!(st.only_b.len(), 1);
    assert_eq!(
        (st.only_b[0].variant.as_str(), st.only_b[0].point.as_str()),
        ("uring-nop", "batch=1")
    );

    // Deviations 0, 0.02, 0.1, 0.2: median 0.06; 90th percentile 0.1 + 0.7 x 0.1 = 0.17.
    let o = &st.overall;
    assert_eq!((o.figures, o.disjoint, o.conclusive), (4, 2, 2));
    assert_close(o.median_deviation.unwrap(), 0.06);
    assert_close(o.p90_deviation.unwrap(), 0.17);
    assert_close(o.within_5pct.unwrap(), 0.5);
    // Per experiment: syscall_floor 0.02, 0.2; file_copy 0, 0.1.
    let sf = &st.experiments["syscall_floor"];
    assert_eq!((sf.figures, sf.disjoint, sf.conclusive), (2, 1, 1));
    assert_close(sf.median_deviation.unwrap(), 0.11);
    assert_close(sf.p90_deviation.unwrap(), 0.02 + 0.9 * 0.18);
    assert_close(sf.within_5pct.unwrap(), 0.5);
    let fc = &st.experiments["file_copy"];
    assert_eq!((fc.figures, fc.disjoint, fc.conclusive), (2, 1, 1));
    assert_close(fc.median_deviation.unwrap(), 0.05);
    assert_close(fc.p90_deviation.unwrap(), 0.09);
    assert_close(fc.within_5pct.unwrap(), 0.5);
    assert_eq!(st.experiments.len(), 2);

    // The one claim the figures touch.
    assert_eq!(st.claims_differ.len(), 1, "{:?}", st.claims_differ);
    let c = &st.claims_differ[0];
    assert_eq!(
        (c.id.as_str(), c.a, c.b),
        ("nop-rate", Kind::Reproduced, Kind::NotReproduced)
    );
    assert!(c.judged_in_both);
    assert!(c.contradicts, "reproduced against not reproduced");
    assert!(st.same_machine_kind);
    assert_eq!(
        st.verdict,
        "stability: median |B/A-1| = 6.0% over 4 figures (90th pct 17.0%, 50% within 5%); 2 of 4 median intervals disjoint; 1 claim verdict differs, 1 of them opposite (reproduced in one run, not reproduced in the other)"
    );
}

#[test]
fn synthetic_runs_give_the_known_numbers() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = synthetic(t.path());
    let claims = load(CLAIMS_JSON).unwrap();
    let st = stability(&load_run(&a).unwrap(), &load_run(&b).unwrap(), &claims);
    check_synthetic(&st);
    let md = stability_markdown(&st);
    assert!(
        md.contains("| uring-nop | batch=32 | op/s | 1.0k [1.0k-1.0k] | 800.0 [790.0-810.0] | 0.800 [0.790-0.810] | 20.0% | **disjoint** |"),
        "{md}"
    );
    assert!(
        md.contains("| **all** | 4 | 6.0% | 17.0% | 50% | 2 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("| nop-rate **opposite** | reproduced | not reproduced |"),
        "{md}"
    );
    assert!(
        md.contains("- file_copy/classic-copy-file-range size=1MiB: no ok repeat in B"),
        "{md}"
    );
    assert_eq!(md.trim_end().lines().last(), Some(st.verdict.as_str()));
}

#[test]
fn cli_prints_markdown_and_json() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = synthetic(t.path());
    let out = t.path().join("st.json");
    let o = Command::new(ZCLAB)
        .args(["compare", "--stability", "--json"])
        .arg(&a)
        .arg(&b)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j,
        serde_json::from_str::<Value>(&std::fs::read_to_string(&out).unwrap()).unwrap()
    );
    assert_eq!(j["overall"]["figures"], 4);
    assert_eq!(j["overall"]["disjoint"], 2);
    assert_close(j["overall"]["median_deviation"].as_f64().unwrap(), 0.06);
    assert_close(j["overall"]["p90_deviation"].as_f64().unwrap(), 0.17);
    assert_close(j["overall"]["within_5pct"].as_f64().unwrap(), 0.5);
    assert_close(
        j["experiments"]["file_copy"]["median_deviation"]
            .as_f64()
            .unwrap(),
        0.05,
    );
    assert_eq!(j["claims_differ"][0]["id"], "nop-rate");
    assert_eq!(j["claims_differ"][0]["a"], "reproduced");
    assert_eq!(j["claims_differ"][0]["b"], "not-reproduced");
    let f = &j["figures"][3];
    assert_eq!(
        (f["variant"].as_str(), f["point"].as_str()),
        (Some("uring-nop"), Some("batch=32"))
    );
    assert_eq!(f["overlap"], false);
    assert_eq!(f["a"]["n"], 6);
    assert!(
        j["verdict"]
            .as_str()
            .unwrap()
            .starts_with("stability: median |B/A-1| = 6.0%")
    );

    let o = Command::new(ZCLAB)
        .args(["compare", "--stability"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success());
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("# zclab compare --stability"), "{md}");
    assert!(
        md.trim_end()
            .ends_with("1 claim verdict differs, 1 of them opposite (reproduced in one run, not reproduced in the other)"),
        "{md}"
    );

    // Exactly two runs; --json only with --stability.
    let o = Command::new(ZCLAB)
        .args(["compare", "--stability"])
        .args([&a, &b, &a])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exactly two runs"));
    let o = Command::new(ZCLAB)
        .args(["compare", "--json"])
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(!o.status.success());
    // Without --stability, the side-by-side comparison as before.
    let o = Command::new(ZCLAB)
        .arg("compare")
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(o.status.success());
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.starts_with("# zclab compare\n") && md.contains("## Results"),
        "{md}"
    );
}

#[test]
fn the_reference_run_against_itself_is_perfectly_stable() {
    let r = load_run(&reference()).unwrap();
    let st = stability(&r, &r, &load(CLAIMS_JSON).unwrap());
    assert!(st.figures.len() > 400, "{}", st.figures.len());
    for f in &st.figures {
        assert_eq!(f.ratio.value, 1.0, "{:?}", f.key);
        assert_eq!(f.deviation, 0.0);
        assert!(f.overlap && !f.ratio.conclusive, "{:?}", f.key);
        assert_eq!(f.a, f.b);
    }
    assert!(st.only_a.is_empty() && st.only_b.is_empty());
    let o = &st.overall;
    assert_eq!(o.figures, st.figures.len());
    assert_eq!(
        (
            o.median_deviation,
            o.p90_deviation,
            o.within_5pct,
            o.disjoint,
            o.conclusive
        ),
        (Some(0.0), Some(0.0), Some(1.0), 0, 0)
    );
    assert_eq!(st.experiments.len(), r.experiments.len());
    assert!(st.claims_differ.is_empty(), "{:?}", st.claims_differ);
    assert_eq!(
        st.verdict,
        format!(
            "stability: median |B/A-1| = 0.0% over {} figures (90th pct 0.0%, 100% within 5%); 0 of {} median intervals disjoint; 0 claim verdicts differ",
            o.figures, o.figures
        )
    );
}
