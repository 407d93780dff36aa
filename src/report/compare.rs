//! The comparison of two or more runs (`zclab compare RUN_A RUN_B [...]`) as Markdown.
//!
//! Per experiment, variant and point: the median throughput and CPU per MiB of each run, the
//! ratio to the first run, and a mark where the difference is larger than the spread of the
//! repeats (the min-max ranges do not overlap). Then what the kernels differ in: opcodes, setup
//! flags, features, zero-copy usage reporting, and variants skipped in one run but not another.

use crate::analysis::{Summary, summarize};
use crate::results::{Metrics, Row, Run, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

fn stat(rows: &[&Row], f: impl Fn(&Metrics) -> f64) -> Option<Summary> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| r.metrics.as_ref())
        .map(f)
        .collect();
    summarize(&v)
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// The comparison as Markdown (also printed on the terminal).
pub fn compare(runs: &[Run]) -> String {
    let mut s = String::new();
    let base = &runs[0];
    let _ = writeln!(s, "# zclab compare\n");
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            s,
            "- run {}: `{}` — {}",
            (b'A' + i as u8) as char,
            r.dir.display(),
            r.label()
        );
    }
    if runs
        .iter()
        .any(|r| r.accelerator() != "native" && r.accelerator() != "kvm")
    {
        let _ = writeln!(
            s,
            "\n**Note:** runs marked with an accelerator other than native/kvm ran under software emulation: their timings are not suitable for comparison; capabilities and behaviour are."
        );
    }
    // Capabilities.
    let _ = writeln!(s, "\n## Kernel capabilities\n");
    type Kind = (&'static str, fn(&crate::caps::IoUring) -> &Vec<String>);
    let kinds: [Kind; 3] = [
        ("io_uring opcodes", |u| &u.opcodes),
        ("setup flags", |u| &u.setup_flags),
        ("features", |u| &u.features),
    ];
    let (base_label, base_probe) = (base.label(), base.probe());
    for other in &runs[1..] {
        let (other_label, other_probe) = (other.label(), other.probe());
        let _ = writeln!(s, "### {base_label} vs {other_label}\n");
        let mut any = false;
        for (title, key) in kinds {
            let a = set(key(&base_probe.io_uring));
            let b = set(key(&other_probe.io_uring));
            let only_a: Vec<&String> = a.difference(&b).collect();
            let only_b: Vec<&String> = b.difference(&a).collect();
            let _ = writeln!(
                s,
                "- {title}: {} has {}, {} has {}",
                base_label,
                a.len(),
                other_label,
                b.len()
            );
            if !only_a.is_empty() {
                any = true;
                let _ = writeln!(
                    s,
                    "  - only in {}: {}",
                    base_label,
                    only_a
                        .iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            if !only_b.is_empty() {
                any = true;
                let _ = writeln!(
                    s,
                    "  - only in {}: {}",
                    other_label,
                    only_b
                        .iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        type Flag = (&'static str, fn(&crate::caps::Caps) -> serde_json::Value);
        let flags: [Flag; 2] = [
            ("SEND_ZC usage reporting", |c| {
                serde_json::json!(c.io_uring.send_zc_report_usage)
            }),
            ("SO_ZEROCOPY", |c| serde_json::json!(c.net.so_zerocopy)),
        ];
        for (title, flag) in flags {
            let (a, b) = (flag(base_probe), flag(other_probe));
            if a != b {
                any = true;
                let _ = writeln!(s, "- {title}: {a} vs {b}");
            }
        }
        // Variants skipped in one run but not the other.
        for (exp, eb) in &other.experiments {
            let Some(meta_a) = base.meta(exp) else {
                continue;
            };
            let skipped = |m: &crate::results::Meta| -> BTreeMap<String, String> {
                m.skipped
                    .iter()
                    .map(|v| (v.variant.clone(), v.reason.clone()))
                    .collect()
            };
            let (sa, sb) = (skipped(meta_a), skipped(&eb.meta));
            for (v, why) in &sb {
                if !sa.contains_key(v) {
                    any = true;
                    let _ = writeln!(s, "- {exp}/{v} skipped on {other_label}: {why}");
                }
            }
            for (v, why) in &sa {
                if !sb.contains_key(v) {
                    any = true;
                    let _ = writeln!(s, "- {exp}/{v} skipped on {base_label}: {why}");
                }
            }
        }
        if !any {
            let _ = writeln!(s, "- no capability differences");
        }
        s.push('\n');
    }
    // Results.
    let _ = writeln!(
        s,
        "## Results\n\nMedian over repeats; ratio = run / run A; `*` where the repeats' min-max ranges do not overlap (a difference larger than the spread).\n"
    );
    let exps: BTreeSet<&String> = runs.iter().flat_map(|r| r.experiments.keys()).collect();
    for exp in exps {
        let _ = writeln!(s, "### {exp}\n");
        let mut header = String::from("| variant | point | metric |");
        let mut sep = String::from("|---|---|---|");
        for i in 0..runs.len() {
            let c = (b'A' + i as u8) as char;
            let _ = write!(header, " {c} |");
            sep.push_str("---|");
            if i > 0 {
                let _ = write!(header, " {c}/A |");
                sep.push_str("---|");
            }
        }
        let _ = writeln!(s, "{header}\n{sep}");
        let mut keys: Vec<(String, String)> = Vec::new();
        for r in runs {
            for row in r.rows(exp).into_iter().flatten() {
                let k = (row.variant.clone(), row.point.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        type Metric = (&'static str, fn(&Metrics) -> f64);
        let metrics: [Metric; 2] = [
            ("GB/s", |m| m.gbps),
            ("CPU us/MiB", |m| m.cpu_ns_per_mib / 1e3),
        ];
        for (variant, point) in &keys {
            for (mname, f) in metrics {
                let stats: Vec<Option<Summary>> = runs
                    .iter()
                    .map(|r| {
                        let rows: Vec<&Row> = r
                            .rows(exp)
                            .into_iter()
                            .flatten()
                            .filter(|x| &x.variant == variant && &x.point == point)
                            .collect();
                        stat(&rows, f)
                    })
                    .collect();
                let mut line = format!("| {variant} | {point} | {mname} |");
                for (i, st) in stats.iter().enumerate() {
                    match st {
                        Some(x) => {
                            let _ = write!(line, " {:.3} |", x.median);
                        }
                        None => line.push_str(" - |"),
                    }
                    if i > 0 {
                        match (&stats[0], st) {
                            (Some(a), Some(b)) if a.median > 0.0 => {
                                let sig = b.min > a.max || b.max < a.min;
                                let _ = write!(
                                    line,
                                    " {:.2}{} |",
                                    b.median / a.median,
                                    if sig { " *" } else { "" }
                                );
                            }
                            _ => line.push_str(" - |"),
                        }
                    }
                }
                let _ = writeln!(s, "{line}");
            }
        }
        s.push('\n');
    }
    s
}
