//! `zclab compare RUN_A RUN_B [...]`: results and kernel capabilities side by side.
//!
//! Per experiment, variant and point: the median throughput and CPU per MiB of each run, the
//! ratio to the first run, and a mark where the difference is larger than the spread of the
//! repeats (the min-max ranges do not overlap). Then what the kernels differ in: opcodes, setup
//! flags, features, zero-copy usage reporting, and variants skipped in one run but not another.

use crate::harness::median;
use crate::results::{Row, Status};
use crate::suite::{load_meta, load_rows};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One run as `compare` sees it: a suite run directory or a single experiment directory.
pub struct Run {
    pub dir: PathBuf,
    pub label: String,
    pub accelerator: String,
    /// experiment -> rows
    pub rows: BTreeMap<String, Vec<Row>>,
    /// experiment -> meta.json
    pub meta: BTreeMap<String, Value>,
    pub probe: Value,
}

fn is_experiment_dir(p: &Path) -> bool {
    p.join("meta.json").is_file()
}

/// Loads a run directory (with experiment subdirectories) or one experiment directory.
pub fn load_run(dir: &Path) -> Result<Run> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let exp_dirs: Vec<PathBuf> = if is_experiment_dir(dir) {
        vec![dir.to_path_buf()]
    } else {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_experiment_dir(p))
            .collect();
        v.sort();
        v
    };
    if exp_dirs.is_empty() {
        bail!(
            "{} holds no experiment results (no meta.json in it or its subdirectories)",
            dir.display()
        );
    }
    let mut run = Run {
        dir: dir.to_path_buf(),
        label: String::new(),
        accelerator: "native".into(),
        rows: BTreeMap::new(),
        meta: BTreeMap::new(),
        probe: Value::Null,
    };
    for d in exp_dirs {
        let meta = load_meta(&d)?;
        let name = meta["experiment"].as_str().unwrap_or("?").to_string();
        // No summary yet means nothing was measured (e.g. killed before the first trial); a
        // summary that does not parse is an error.
        let rows = if d.join("summary.jsonl").exists() {
            load_rows(&d)?
        } else {
            Vec::new()
        };
        if run.probe.is_null() {
            run.probe = meta["probe"].clone();
            run.accelerator = meta["accelerator"].as_str().unwrap_or("native").to_string();
        }
        run.rows.insert(name.clone(), rows);
        run.meta.insert(name, meta);
    }
    run.label = format!(
        "{} {}{}",
        run.probe["hostname"].as_str().unwrap_or("?"),
        run.probe["kernel"]["release"].as_str().unwrap_or("?"),
        if run.accelerator == "native" {
            String::new()
        } else {
            format!(" [{}]", run.accelerator)
        }
    );
    Ok(run)
}

struct Stat {
    med: f64,
    min: f64,
    max: f64,
}

fn stat(rows: &[&Row], f: impl Fn(&crate::results::Metrics) -> f64) -> Option<Stat> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| r.metrics.as_ref())
        .map(f)
        .collect();
    if v.is_empty() {
        return None;
    }
    Some(Stat {
        min: v.iter().cloned().fold(f64::INFINITY, f64::min),
        max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        med: median(v),
    })
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
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
            r.label
        );
    }
    if runs
        .iter()
        .any(|r| r.accelerator != "native" && r.accelerator != "kvm")
    {
        let _ = writeln!(
            s,
            "\n**Note:** runs marked with an accelerator other than native/kvm ran under software emulation: their timings are not suitable for comparison; capabilities and behaviour are."
        );
    }
    // Capabilities.
    let _ = writeln!(s, "\n## Kernel capabilities\n");
    let kinds = [
        ("io_uring opcodes", "opcodes"),
        ("setup flags", "setup_flags"),
        ("features", "features"),
    ];
    for other in &runs[1..] {
        let _ = writeln!(s, "### {} vs {}\n", base.label, other.label);
        let mut any = false;
        for (title, key) in kinds {
            let a = set(&base.probe["io_uring"][key]);
            let b = set(&other.probe["io_uring"][key]);
            let only_a: Vec<&String> = a.difference(&b).collect();
            let only_b: Vec<&String> = b.difference(&a).collect();
            let _ = writeln!(
                s,
                "- {title}: {} has {}, {} has {}",
                base.label,
                a.len(),
                other.label,
                b.len()
            );
            if !only_a.is_empty() {
                any = true;
                let _ = writeln!(
                    s,
                    "  - only in {}: {}",
                    base.label,
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
                    other.label,
                    only_b
                        .iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        for (title, path) in [
            (
                "SEND_ZC usage reporting",
                ["io_uring", "send_zc_report_usage"],
            ),
            ("SO_ZEROCOPY", ["net", "so_zerocopy"]),
        ] {
            let a = &base.probe[path[0]][path[1]];
            let b = &other.probe[path[0]][path[1]];
            if a != b {
                any = true;
                let _ = writeln!(s, "- {title}: {a} vs {b}");
            }
        }
        // Variants skipped in one run but not the other.
        for (exp, meta_b) in &other.meta {
            let Some(meta_a) = base.meta.get(exp) else {
                continue;
            };
            let skipped = |m: &Value| -> BTreeMap<String, String> {
                m["skipped"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| {
                                (
                                    v["variant"].as_str().unwrap_or("?").to_string(),
                                    v["reason"].as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (sa, sb) = (skipped(meta_a), skipped(meta_b));
            for (v, why) in &sb {
                if !sa.contains_key(v) {
                    any = true;
                    let _ = writeln!(s, "- {exp}/{v} skipped on {}: {why}", other.label);
                }
            }
            for (v, why) in &sa {
                if !sb.contains_key(v) {
                    any = true;
                    let _ = writeln!(s, "- {exp}/{v} skipped on {}: {why}", base.label);
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
    let exps: BTreeSet<&String> = runs.iter().flat_map(|r| r.rows.keys()).collect();
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
            for row in r.rows.get(exp).into_iter().flatten() {
                let k = (row.variant.clone(), row.point.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        type Metric = (&'static str, fn(&crate::results::Metrics) -> f64);
        let metrics: [Metric; 2] = [
            ("GB/s", |m| m.gbps),
            ("CPU us/MiB", |m| m.cpu_ns_per_mib / 1e3),
        ];
        for (variant, point) in &keys {
            for (mname, f) in metrics {
                let stats: Vec<Option<Stat>> = runs
                    .iter()
                    .map(|r| {
                        let rows: Vec<&Row> = r
                            .rows
                            .get(exp)
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
                            let _ = write!(line, " {:.3} |", x.med);
                        }
                        None => line.push_str(" - |"),
                    }
                    if i > 0 {
                        match (&stats[0], st) {
                            (Some(a), Some(b)) if a.med > 0.0 => {
                                let sig = b.min > a.max || b.max < a.min;
                                let _ = write!(
                                    line,
                                    " {:.2}{} |",
                                    b.med / a.med,
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

/// Loads the runs, renders the comparison, writes it to `out` (Markdown) and returns it.
pub fn run(dirs: &[PathBuf], out: Option<&Path>) -> Result<String> {
    if dirs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let md = compare(&runs);
    if let Some(o) = out {
        crate::results::atomic_write(o, md.as_bytes())
            .with_context(|| format!("cannot write {}", o.display()))?;
    }
    Ok(md)
}
