//! Renderers: loaded results (and what [`crate::analysis`] concluded from them) as text — the
//! terminal table every experiment prints, Markdown (`report.md`, `zclab report --markdown`,
//! `zclab compare`, the claims table) and CSV. Nothing here reads files or runs anything.

pub mod compare;
pub mod crossover;
pub mod flame;

use crate::analysis::{self, claims::Verdict, median, median_ci};
use crate::results::{Experiment, Metrics, Outcome, Row, Status, SuiteMeta, row::CSV_HEADER};
use crate::units;
use std::fmt::Write as _;

/// Rows grouped by (variant, point), in the order they first appear.
fn groups(rows: &[Row]) -> Vec<((String, String), Vec<&Row>)> {
    let mut groups: Vec<((String, String), Vec<&Row>)> = Vec::new();
    for r in rows {
        let key = (r.variant.clone(), r.point.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups
}

/// The figures of one (variant, point) group, as both tables show them.
struct Cells {
    /// The metrics of the rows that are ok; empty when every repeat failed.
    ok_count: usize,
    gbps: Vec<f64>,
    /// The headline figure of each ok repeat (GB/s, or operations/s where no bytes moved).
    headline: Vec<f64>,
    headline_name: &'static str,
    p50: String,
    p99: String,
    sys: String,
    cpu: String,
    sysc: String,
    copied: String,
    integrity: &'static str,
    /// Why the group failed (first error), when no repeat is ok.
    failed: Option<String>,
}

fn cells(rs: &[&Row]) -> Cells {
    let ok: Vec<&Metrics> = rs
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| r.metrics.as_ref())
        .collect();
    let med = |f: &dyn Fn(&Metrics) -> f64| median(&ok.iter().map(|m| f(m)).collect::<Vec<_>>());
    let failed = ok.is_empty().then(|| {
        let why = rs.iter().find_map(|r| r.error.clone()).unwrap_or_default();
        why.chars().take(60).collect()
    });
    Cells {
        ok_count: ok.len(),
        gbps: ok.iter().map(|m| m.gbps).collect(),
        headline: ok.iter().map(|m| analysis::headline(m).1).collect(),
        headline_name: ok.first().map_or("gbps", |m| analysis::headline(m).0),
        p50: units::fmt_ns(med(&|m| m.latency.p50_ns as f64)),
        p99: units::fmt_ns(med(&|m| m.latency.p99_ns as f64)),
        sys: units::fmt_ns(med(&|m| m.sys_ns_per_mib)),
        cpu: units::fmt_ns(med(&|m| m.cpu_ns_per_mib)),
        sysc: if ok.iter().all(|m| m.syscalls_per_mib.is_some()) {
            format!("{:.1}", med(&|m| m.syscalls_per_mib.unwrap_or(0.0)))
        } else {
            "unknown".into()
        },
        copied: if ok.iter().all(|m| m.zc.is_some()) {
            format!(
                "{:.0}%",
                med(&|m| m.zc.as_ref().map_or(0.0, |z| z.copied_pct))
            )
        } else {
            "-".into()
        },
        integrity: if rs.iter().all(|r| r.status == Status::Ok) {
            "ok"
        } else {
            "FAILED"
        },
        failed,
    }
}

/// A headline figure with its unit: `4.38 GB/s`, `12.3 Mop/s`.
pub fn fmt_headline(name: &str, v: f64) -> String {
    if name == "gbps" {
        format!("{v:.2}")
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// The terminal table: per variant and point, the headline figure's median over the repeats
/// with its 95 % interval ([`analysis::median_ci`]; GB/s, or operations/s where no bytes
/// moved), and the medians of the other figures.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let unit = match rows
        .iter()
        .find_map(|r| r.metrics.as_ref().map(|m| analysis::headline(m).0))
    {
        Some("ops_per_s") => "op/s",
        _ => "GB/s",
    };
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:>26} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>9}",
        "variant",
        "point",
        format!("{unit} median [interval]"),
        "p50/step",
        "p99/step",
        "sys/MiB",
        "cpu/MiB",
        "sysc/MiB",
        "copied",
        "integrity"
    );
    for ((variant, point), rs) in groups(rows) {
        let c = cells(&rs);
        if let Some(why) = c.failed {
            let _ = writeln!(out, "{variant:<24} {point:<28} FAILED: {why}");
            continue;
        }
        let e = median_ci(&c.headline).expect("a group with ok rows has figures");
        let f = |v: f64| fmt_headline(c.headline_name, v);
        let _ = writeln!(
            out,
            "{variant:<24} {point:<28} {:>26} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>9}",
            format!("{} [{}-{}]", f(e.value), f(e.lo), f(e.hi.max(0.0))),
            c.p50,
            c.p99,
            c.sys,
            c.cpu,
            c.sysc,
            c.copied,
            c.integrity
        );
    }
    out
}

/// Rows of several flows (`--flows`): per variant and point, the aggregate GB/s, the slowest
/// and fastest flow's own GB/s and Jain's fairness index (medians over the ok repeats), and the
/// flows that failed in any repeat; a Markdown table, None when no row ran several flows.
pub fn flows_table(rows: &[Row]) -> Option<String> {
    let x = |r: &Row, k: &str| r.metrics.as_ref().and_then(|m| m.extra.get(k).copied());
    if !rows.iter().any(|r| x(r, "flows").is_some_and(|f| f > 1.0)) {
        return None;
    }
    let mut out = String::from(
        "| variant | point | flows | threads | aggregate GB/s | slowest flow GB/s | fastest flow GB/s | fairness (Jain) | flows failed |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((variant, point), rs) in groups(rows) {
        let Some(first) = rs.iter().find(|r| x(r, "flows").is_some()) else {
            continue;
        };
        let ok: Vec<&&Row> = rs.iter().filter(|r| r.status == Status::Ok).collect();
        let med = |k: &str| {
            let v: Vec<f64> = ok.iter().filter_map(|r| x(r, k)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let gbps = {
            let v: Vec<f64> = ok
                .iter()
                .filter_map(|r| r.metrics.as_ref())
                .map(|m| m.gbps)
                .collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        let failed: f64 = rs.iter().filter_map(|r| x(r, "flows_failed")).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {failed} |",
            cell(&variant),
            cell(&point),
            f(x(first, "flows"), 0),
            f(x(first, "threads"), 0),
            f(gbps, 2),
            f(med("flow_gbps_min"), 2),
            f(med("flow_gbps_max"), 2),
            f(med("jain_fairness"), 3),
        );
    }
    Some(out)
}

/// A Markdown table cell: no `|` and no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "/").replace('\n', " ")
}

/// The same figures as [`table`], as a Markdown table; GB/s is the median with its 95 %
/// interval ([`analysis::median_ci`]) where there are at least two repeats.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| variant | point | GB/s median [interval] | p50/step | p99/step | sys/MiB | cpu/MiB | syscalls/MiB | copied | integrity |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for ((variant, point), rs) in groups(rows) {
        let c = cells(&rs);
        let (variant, point) = (cell(&variant), cell(&point));
        if let Some(why) = c.failed {
            let _ = writeln!(
                out,
                "| {variant} | {point} | FAILED: {} | | | | | | | FAILED |",
                cell(&why)
            );
            continue;
        }
        let e = median_ci(&c.gbps).expect("a group with ok rows has figures");
        let gbps = if c.ok_count >= 2 {
            format!("{:.2} [{:.2}, {:.2}]", e.value, e.lo, e.hi)
        } else {
            format!("{:.2}", e.value)
        };
        let _ = writeln!(
            out,
            "| {variant} | {point} | {gbps} | {} | {} | {} | {} | {} | {} | {} |",
            c.p50, c.p99, c.sys, c.cpu, c.sysc, c.copied, c.integrity
        );
    }
    out
}

/// The rows as CSV: the header of `summary.csv` and one line per row.
pub fn csv(rows: &[Row]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in rows {
        s.push_str(&r.to_csv());
        s.push('\n');
    }
    s
}

/// The claims' verdicts as a Markdown table.
pub fn claims_table(v: &[Verdict]) -> String {
    let mut s = String::from(
        "| claim | verdict | measured here | published | measured / published | test / reason |\n|---|---|---|---|---|---|\n",
    );
    for x in v {
        let mag: Vec<String> = x.vs_published.iter().map(|m| m.text()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            x.id,
            x.kind.text(),
            x.measured.replace('|', "/"),
            x.published.replace('|', "/"),
            if mag.is_empty() {
                "-".into()
            } else {
                mag.join("; ")
            },
            x.why.replace('|', "/")
        );
    }
    s
}

/// One experiment's tables as Markdown: its results table and the variants it skipped.
pub fn experiment_markdown(e: &Experiment) -> String {
    let mut s = if e.rows.is_empty() {
        "No rows: nothing was measured.\n".to_string()
    } else {
        markdown_table(&e.rows)
    };
    if let Some(t) = flows_table(&e.rows) {
        s.push_str("\nFlows (the row above is their aggregate):\n\n");
        s.push_str(&t);
    }
    if !e.meta.skipped.is_empty() {
        s.push_str("\nSkipped variants:\n\n");
        for v in &e.meta.skipped {
            let _ = writeln!(s, "- `{}`: {}", v.variant, v.reason);
        }
    }
    s
}

/// What `report.md` says about one experiment of a suite run.
pub struct Section<'a> {
    pub outcome: &'a Outcome,
    /// What the experiment answers, one line.
    pub about: Option<&'a str>,
    /// The loaded experiment, or why it could not be loaded.
    pub experiment: Result<&'a Experiment, String>,
    /// `crossover.txt`, if the experiment wrote one.
    pub crossover: Option<String>,
}

/// The Markdown report of a suite run (`report.md`): the machine, the outcomes, the claims'
/// verdicts, then per experiment its table, skipped variants and plots.
pub fn run_report(
    run_name: &str,
    run_dir: &str,
    suite: Option<&SuiteMeta>,
    sections: &[Section],
    plot_note: Option<&str>,
    claims: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# zclab run {run_name}\n");
    let unknown = crate::results::meta::unknown_caps();
    let probe = suite.map_or(&unknown, |m| &m.probe);
    let field = |f: fn(&SuiteMeta) -> &str| {
        suite
            .map(f)
            .filter(|x| !x.is_empty())
            .unwrap_or("?")
            .to_string()
    };
    let _ = writeln!(
        s,
        "- host: {}  \n- kernel: {} ({})  \n- CPU: {} x {}  \n- clock source: {}  \n- preset: {}  \n- started: {}  \n- lab revision: {}\n",
        probe.hostname,
        probe.kernel.release,
        or_unknown(&probe.kernel.machine),
        if suite.is_some() {
            probe.cpu.count.to_string()
        } else {
            "null".into()
        },
        or_unknown(&probe.cpu.model),
        or_unknown(&probe.clocksource),
        field(|m| &m.preset),
        field(|m| &m.started_utc),
        field(|m| &m.git_revision),
    );
    if let Some(n) = plot_note {
        let _ = writeln!(s, "**Plots were not drawn:** {n}\n");
    }
    let noisy: Vec<String> = sections
        .iter()
        .filter_map(|sec| {
            let e = sec.experiment.as_ref().ok()?;
            let n = e.meta.noise.as_ref().filter(|n| n.noisy)?;
            Some(format!(
                "- {}: {}",
                sec.outcome.experiment,
                n.reasons.join("; ")
            ))
        })
        .collect();
    if !noisy.is_empty() {
        let _ = writeln!(
            s,
            "**Warning: the machine was noisy** when these experiments started; their figures may not hold:\n\n{}\n",
            noisy.join("\n")
        );
    }
    let apart: Vec<String> = sections
        .iter()
        .filter_map(|sec| {
            let e = sec.experiment.as_ref().ok()?;
            let w = e.meta.host_placement.as_ref()?.warning()?;
            Some(format!("- {}: {w}", sec.outcome.experiment))
        })
        .collect();
    if !apart.is_empty() {
        let _ = writeln!(
            s,
            "**Warning: the host moved the measured CPUs apart** during these experiments (docs/method.md, \"Host placement\"):\n\n{}\n",
            apart.join("\n")
        );
    }
    let _ = writeln!(s, "| experiment | status | seconds |\n|---|---|---|");
    for sec in sections {
        let o = sec.outcome;
        let _ = writeln!(s, "| {} | {} | {:.1} |", o.experiment, o.status, o.seconds);
    }
    if let Some(t) = claims {
        let _ = writeln!(
            s,
            "\n## Published claims\n\nEach claim of `claims/claims.json` checked on this run (`zclab claims {run_dir}`).\n\n{t}"
        );
    }
    for sec in sections {
        let o = sec.outcome;
        let _ = writeln!(s, "\n## {}\n", o.experiment);
        if let Some(a) = sec.about {
            let _ = writeln!(s, "{a}\n");
        }
        if let Some(n) = &o.note {
            let _ = writeln!(s, "Status **{}**: {n}\n", o.status);
        }
        let e = match &sec.experiment {
            Ok(e) => e,
            Err(why) => {
                let _ = writeln!(s, "No summary: {why}\n");
                continue;
            }
        };
        let _ = writeln!(s, "{}", experiment_markdown(e));
        if let Some(c) = &sec.crossover {
            let _ = writeln!(s, "Crossover:\n\n```\n{}\n```\n", c.trim_end());
        }
        let figs = e.figures();
        let latency = |f: &&crate::results::Figure| f.kind.as_deref() == Some("latency");
        for f in figs
            .iter()
            .filter(|f| !latency(f))
            .chain(figs.iter().filter(latency).take(4))
        {
            if let Some(file) = f.image() {
                let title = f
                    .title
                    .as_deref()
                    .unwrap_or(file)
                    .replace(['\n', '[', ']'], " ");
                // Angle brackets keep '@', ',' and '=' in the file name one link target.
                let _ = writeln!(s, "![{title}](<{}/plots/{file}>)\n", o.experiment);
            }
        }
        let flames = e.flame_graphs();
        if !flames.is_empty() {
            let _ = writeln!(
                s,
                "Flame graphs (`--profile`; `.threads`: the peer threads; docs/method.md, \"Where the CPU goes\"):\n"
            );
            for f in &flames {
                let _ = writeln!(
                    s,
                    "- [{}](<{}/{f}>)",
                    f.trim_end_matches(".svg").replace('@', " "),
                    o.experiment
                );
            }
            s.push('\n');
        }
    }
    s
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "?" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, repeat: u32, gbps: f64) -> Row {
        let m = Metrics {
            gbps,
            bytes: 1024,
            ..Default::default()
        };
        Row::measured("e", variant, &[("size", "1KiB".into())], repeat, m)
    }

    #[test]
    fn tables_show_medians_and_intervals() {
        let rows = vec![
            row("a", 0, 1.0),
            row("a", 1, 3.0),
            row("a", 2, 2.0),
            row("b", 0, 5.0),
        ];
        let t = table(&rows);
        assert!(t.contains("2.00 [1.00-3.00]"), "{t}");
        assert!(t.contains("GB/s median [interval]"), "{t}");
        let md = markdown_table(&rows);
        assert!(md.contains("| a | size=1KiB | 2.00 [1.00, 3.00] |"), "{md}");
        assert!(md.contains("| b | size=1KiB | 5.00 |"), "{md}");
        assert_eq!(csv(&rows).lines().count(), 5);
    }
}
