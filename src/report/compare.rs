//! The comparison of two or more runs (`zclab compare RUN_A RUN_B [...]`) as Markdown.
//!
//! Per experiment, variant and point: the median throughput and CPU per MiB of each run, the
//! ratio to the first run, and a mark where the difference is larger than the spread of the
//! repeats (the min-max ranges do not overlap). Then what the kernels differ in: opcodes, setup
//! flags, features, zero-copy usage reporting, and variants skipped in one run but not another.
//!
//! The stability check of two runs (`zclab compare --stability RUN_A RUN_B`, [`stability`]):
//! every headline figure both runs have, as the ratio B/A of the medians with its interval, how
//! far those ratios stray from 1 per experiment and overall, and the claims whose verdicts
//! differ between the runs.

use crate::analysis::claims::{Claim, Kind, verdicts};
use crate::analysis::{
    Estimate, Pairing, Ratio, Summary, headline, median, median_ci, metric, quantile, ratio,
    summarize,
};
use crate::results::{Metrics, Row, Run, Status};
use serde::Serialize;
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

/// The share of figures counted as stable in [`Spread::within_5pct`]: |B/A - 1| at most this.
pub const WITHIN: f64 = 0.05;

/// One run of a stability check, as the output names it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRef {
    pub dir: String,
    pub label: String,
}

/// An (experiment, variant, point) of a stability check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FigureKey {
    pub experiment: String,
    pub variant: String,
    pub point: String,
}

/// One headline figure present in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct StableFigure {
    #[serde(flatten)]
    pub key: FigureKey,
    /// `gbps` or `ops_per_s` ([`headline`]).
    pub metric: &'static str,
    /// The median of run A's repeats with its 95 % interval ([`median_ci`]).
    pub a: Estimate,
    /// The same for run B.
    pub b: Estimate,
    /// B / A of the medians with its 95 % interval ([`ratio`], unpaired: the repeats of two
    /// runs do not pair).
    pub ratio: BOverA,
    /// |B/A - 1|.
    pub deviation: f64,
    /// The two medians' intervals overlap.
    pub overlap: bool,
}

/// The ratio B/A of a [`StableFigure`]: [`Ratio`] without the sides' counts (those are in the
/// figure's `a.n` and `b.n`, named by run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BOverA {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// The interval leaves 1 out: the runs differ by more than their repeats' noise.
    pub conclusive: bool,
}

impl From<Ratio> for BOverA {
    fn from(r: Ratio) -> BOverA {
        BOverA {
            value: r.value,
            lo: r.lo,
            hi: r.hi,
            conclusive: r.conclusive,
        }
    }
}

/// A figure both runs name that could not be compared, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NotCompared {
    #[serde(flatten)]
    pub key: FigureKey,
    pub why: String,
}

/// How far the ratios B/A of some figures stray from 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub figures: usize,
    /// Median of |B/A - 1| (a fraction: 0.032 is 3.2 %); None without figures.
    pub median_deviation: Option<f64>,
    /// Its 90th percentile ([`quantile`], linear interpolation).
    pub p90_deviation: Option<f64>,
    /// The share (0..=1) of figures with |B/A - 1| <= [`WITHIN`].
    pub within_5pct: Option<f64>,
    /// Figures whose two median intervals do not overlap.
    pub disjoint: usize,
    /// Figures whose ratio interval leaves 1 out ([`Ratio::conclusive`]).
    pub conclusive: usize,
}

impl Spread {
    fn of(figs: &[&StableFigure]) -> Spread {
        let dev: Vec<f64> = figs.iter().map(|f| f.deviation).collect();
        let some = !dev.is_empty();
        Spread {
            figures: dev.len(),
            median_deviation: some.then(|| median(&dev)),
            p90_deviation: quantile(&dev, 0.9),
            within_5pct: some.then(|| {
                // A hair of tolerance so that 1.05 / 1.00 (0.0500000000000000444) counts as 5 %.
                let n = dev.iter().filter(|d| **d <= WITHIN + 1e-12).count();
                n as f64 / dev.len() as f64
            }),
            disjoint: figs.iter().filter(|f| !f.overlap).count(),
            conclusive: figs.iter().filter(|f| f.ratio.conclusive).count(),
        }
    }
}

/// A claim whose verdict differs between the runs.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimChange {
    pub id: String,
    pub a: Kind,
    pub b: Kind,
    /// Neither verdict is "not applicable here": the runs judged the claim on the same kind of
    /// figures and came out differently (otherwise one run lacks what the claim needs).
    pub judged_in_both: bool,
    /// One run says reproduced and the other not reproduced: the runs decided opposite ways,
    /// where the other changes are a decision in one run that the other left inconclusive.
    pub contradicts: bool,
}

/// The stability check of two runs ([`stability`]).
#[derive(Debug, Clone, Serialize)]
pub struct Stability {
    pub run_a: RunRef,
    pub run_b: RunRef,
    /// The runs' kernels or accelerators differ: differences are not only noise.
    pub same_machine_kind: bool,
    /// Every figure present in both runs, by experiment (sorted), then in run A's row order.
    pub figures: Vec<StableFigure>,
    /// In both runs but without figures to compare (no ok repeat on a side, a median of 0).
    pub not_compared: Vec<NotCompared>,
    pub only_a: Vec<FigureKey>,
    pub only_b: Vec<FigureKey>,
    /// Per experiment (those with at least one figure compared).
    pub experiments: BTreeMap<String, Spread>,
    pub overall: Spread,
    /// Claims judged on each run alone.
    pub claims_judged: usize,
    pub claims_differ: Vec<ClaimChange>,
    /// Per experiment, where the host had the two measured CPUs in each run (runs that
    /// recorded it; docs/method.md, "Host placement").
    pub placement: Vec<PlacementPair>,
    /// The one-line verdict (`stability: median |B/A-1| = ...`).
    pub verdict: String,
}

/// The headline name and figures of the ok repeats of `variant` at `point`.
fn headline_figures(rows: &[Row], variant: &str, point: &str) -> (Option<&'static str>, Vec<f64>) {
    let ok: Vec<&Metrics> = rows
        .iter()
        .filter(|r| r.variant == variant && r.point == point && r.status == Status::Ok)
        .filter_map(|r| r.metrics.as_ref())
        .collect();
    let Some(name) = ok.first().map(|m| headline(m).0) else {
        return (None, Vec::new());
    };
    let v = ok.iter().filter_map(|m| metric(m, name)).collect();
    (Some(name), v)
}

/// The (variant, point) pairs of `rows` in the order they first appear.
fn keys(rows: &[Row]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = Vec::new();
    for r in rows {
        if !k.iter().any(|(v, p)| *v == r.variant && *p == r.point) {
            k.push((r.variant.clone(), r.point.clone()));
        }
    }
    k
}

/// One experiment's host placement in the two runs of a stability check.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementPair {
    pub experiment: String,
    pub a: Option<crate::measure::placement::PlacementSummary>,
    pub b: Option<crate::measure::placement::PlacementSummary>,
}

fn placement_pairs(a: &Run, b: &Run) -> Vec<PlacementPair> {
    let exps: BTreeSet<&String> = a.experiments.keys().chain(b.experiments.keys()).collect();
    let of = |r: &Run, e: &str| {
        r.meta(e)
            .and_then(|m| m.host_placement.clone())
            .filter(|p| p.trials > 0)
    };
    exps.into_iter()
        .map(|e| PlacementPair {
            experiment: e.clone(),
            a: of(a, e),
            b: of(b, e),
        })
        .filter(|p| p.a.is_some() || p.b.is_some())
        .collect()
}

/// The stability check of run B against run A: every (experiment, variant, point) both have,
/// its headline figure's ratio B/A with the 95 % interval, whether the medians' intervals
/// overlap; the spread of the ratios per experiment and overall; and the `claims` whose verdict
/// differs when each run is judged alone.
pub fn stability(a: &Run, b: &Run, claims: &[Claim]) -> Stability {
    let mut figures = Vec::new();
    let mut not_compared = Vec::new();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let exps: BTreeSet<&String> = a.experiments.keys().chain(b.experiments.keys()).collect();
    for exp in exps {
        let ra = a.rows(exp).unwrap_or_default();
        let rb = b.rows(exp).unwrap_or_default();
        let (ka, kb) = (keys(ra), keys(rb));
        let key = |(variant, point): &(String, String)| FigureKey {
            experiment: exp.clone(),
            variant: variant.clone(),
            point: point.clone(),
        };
        only_b.extend(kb.iter().filter(|k| !ka.contains(k)).map(key));
        for k in &ka {
            if !kb.contains(k) {
                only_a.push(key(k));
                continue;
            }
            let (na, fa) = headline_figures(ra, &k.0, &k.1);
            let (nb, fb) = headline_figures(rb, &k.0, &k.1);
            let why = match (na, nb) {
                (None, _) => Some("no ok repeat in A".to_string()),
                (_, None) => Some("no ok repeat in B".to_string()),
                (Some(x), Some(y)) if x != y => Some(format!("headline is {x} in A, {y} in B")),
                _ => None,
            };
            let r = ratio(&fb, &fa, Pairing::Unpaired);
            let (Some(metric), Some(ea), Some(eb), Some(r), None) =
                (na, median_ci(&fa), median_ci(&fb), r, &why)
            else {
                let why = why.unwrap_or_else(|| "A's median is 0: no ratio".into());
                not_compared.push(NotCompared { key: key(k), why });
                continue;
            };
            figures.push(StableFigure {
                key: key(k),
                metric,
                a: ea,
                b: eb,
                deviation: (r.value - 1.0).abs(),
                ratio: r.into(),
                overlap: ea.lo <= eb.hi && eb.lo <= ea.hi,
            });
        }
    }
    let mut by_exp: BTreeMap<String, Vec<&StableFigure>> = BTreeMap::new();
    for f in &figures {
        by_exp.entry(f.key.experiment.clone()).or_default().push(f);
    }
    let experiments = by_exp
        .iter()
        .map(|(e, f)| (e.clone(), Spread::of(f)))
        .collect();
    let overall = Spread::of(&figures.iter().collect::<Vec<_>>());
    let va = verdicts(claims, std::slice::from_ref(a));
    let vb = verdicts(claims, std::slice::from_ref(b));
    let claims_differ: Vec<ClaimChange> = va
        .iter()
        .zip(&vb)
        .filter(|(x, y)| x.kind != y.kind)
        .map(|(x, y)| ClaimChange {
            id: x.id.clone(),
            a: x.kind,
            b: y.kind,
            judged_in_both: x.kind != Kind::NotApplicable && y.kind != Kind::NotApplicable,
            contradicts: matches!(
                (x.kind, y.kind),
                (Kind::Reproduced, Kind::NotReproduced) | (Kind::NotReproduced, Kind::Reproduced)
            ),
        })
        .collect();
    let verdict = verdict_line(&overall, &claims_differ);
    let run_ref = |r: &Run| RunRef {
        dir: r.dir.display().to_string(),
        label: r.label(),
    };
    Stability {
        run_a: run_ref(a),
        run_b: run_ref(b),
        same_machine_kind: a.probe().kernel.release == b.probe().kernel.release
            && a.accelerator() == b.accelerator(),
        figures,
        not_compared,
        only_a,
        only_b,
        experiments,
        overall,
        claims_judged: claims.len(),
        claims_differ,
        placement: placement_pairs(a, b),
        verdict,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The verdict line; claim verdicts count as differing where both runs judged the claim, and
/// those that apply to one run only are named apart.
fn verdict_line(s: &Spread, changes: &[ClaimChange]) -> String {
    let both = changes.iter().filter(|c| c.judged_in_both).count();
    let one = changes.len() - both;
    let mut claims = format!(
        "{both} claim verdict{} differ{}",
        if both == 1 { "" } else { "s" },
        if both == 1 { "s" } else { "" }
    );
    if both > 0 {
        let opposite = changes.iter().filter(|c| c.contradicts).count();
        let _ = write!(
            claims,
            ", {opposite} of them opposite (reproduced in one run, not reproduced in the other)"
        );
    }
    if one > 0 {
        let _ = write!(claims, " ({one} more judged in one run only)");
    }
    match (s.median_deviation, s.p90_deviation, s.within_5pct) {
        (Some(m), Some(p90), Some(w)) => format!(
            "stability: median |B/A-1| = {} over {} figures (90th pct {}, {:.0}% within 5%); {} of {} median intervals disjoint; {claims}",
            pct(m),
            s.figures,
            pct(p90),
            w * 100.0,
            s.disjoint,
            s.figures
        ),
        _ => format!("stability: no figure in both runs to compare; {claims}"),
    }
}

fn spread_row(name: &str, s: &Spread) -> String {
    let o = |x: Option<f64>| x.map_or("-".into(), pct);
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        s.figures,
        o(s.median_deviation),
        o(s.p90_deviation),
        s.within_5pct
            .map_or("-".into(), |w| format!("{:.0}%", w * 100.0)),
        s.disjoint,
        s.conclusive
    )
}

/// The stability check as Markdown (also printed on the terminal); the last line is the
/// verdict.
pub fn stability_markdown(st: &Stability) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# zclab compare --stability\n");
    let _ = writeln!(s, "- run A: `{}` — {}", st.run_a.dir, st.run_a.label);
    let _ = writeln!(s, "- run B: `{}` — {}", st.run_b.dir, st.run_b.label);
    if !st.same_machine_kind {
        let _ = writeln!(
            s,
            "\n**Note:** the runs differ in kernel or accelerator: their differences are not only run-to-run noise."
        );
    }
    let _ = writeln!(
        s,
        "\n## Figures\n\nThe headline figure (GB/s, or op/s where no bytes move): the median over the repeats with its 95% interval per run, the ratio B/A of the medians with its 95% interval (bootstrap, unpaired), dev = |B/A − 1|; **disjoint** where the two medians' intervals do not overlap.\n"
    );
    let mut current: Option<&str> = None;
    for f in &st.figures {
        if current != Some(f.key.experiment.as_str()) {
            if current.is_some() {
                s.push('\n');
            }
            current = Some(&f.key.experiment);
            let _ = writeln!(
                s,
                "### {}\n\n| variant | point | unit | A median [interval] | B median [interval] | B/A [interval] | dev | intervals |\n|---|---|---|---:|---:|---:|---:|---|",
                f.key.experiment
            );
        }
        let h = |e: &Estimate| {
            let v = |x: f64| super::fmt_headline(f.metric, x);
            format!("{} [{}-{}]", v(e.value), v(e.lo), v(e.hi))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} [{:.3}-{:.3}] | {} | {} |",
            f.key.variant,
            f.key.point,
            if f.metric == "gbps" { "GB/s" } else { "op/s" },
            h(&f.a),
            h(&f.b),
            f.ratio.value,
            f.ratio.lo,
            f.ratio.hi,
            pct(f.deviation),
            if f.overlap { "overlap" } else { "**disjoint**" }
        );
    }
    if st.figures.is_empty() {
        let _ = writeln!(s, "No figure is in both runs.");
    }
    if !st.not_compared.is_empty() || !st.only_a.is_empty() || !st.only_b.is_empty() {
        let _ = writeln!(s, "\nNot compared:\n");
        for n in &st.not_compared {
            let k = &n.key;
            let _ = writeln!(s, "- {}/{} {}: {}", k.experiment, k.variant, k.point, n.why);
        }
        for (side, keys) in [("A", &st.only_a), ("B", &st.only_b)] {
            if !keys.is_empty() {
                let _ = writeln!(s, "- {} figures only in run {side}", keys.len());
            }
        }
    }
    let _ = writeln!(
        s,
        "\n## Summary\n\ndev = |B/A − 1| over the figures compared; within 5% = the share with dev ≤ 5%; disjoint = the medians' intervals do not overlap; conclusive = the ratio's interval leaves 1 out.\n\n| experiment | figures | median dev | 90th pct dev | within 5% | disjoint | conclusive |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (e, sp) in &st.experiments {
        let _ = writeln!(s, "{}", spread_row(e, sp));
    }
    let _ = writeln!(s, "{}", spread_row("**all**", &st.overall));
    if !st.placement.is_empty() {
        let _ = writeln!(
            s,
            "\n## Host placement\n\nMeasured trials with the two CPUs apart (a cache line's round trip over twice the lowest of the boot; docs/method.md, \"Host placement\"), and the time trials waited for them (`--host-wait`):\n\n| experiment | A apart | A waited | B apart | B waited |\n|---|---:|---:|---:|---:|"
        );
        let cell = |p: &Option<crate::measure::placement::PlacementSummary>| match p {
            Some(p) => (
                format!("{} of {}", p.trials_apart, p.trials),
                format!("{:.0} s", p.waited_s),
            ),
            None => ("not recorded".into(), "-".into()),
        };
        for p in &st.placement {
            let ((aa, aw), (ba, bw)) = (cell(&p.a), cell(&p.b));
            let _ = writeln!(s, "| {} | {aa} | {aw} | {ba} | {bw} |", p.experiment);
        }
    }
    let _ = write!(
        s,
        "\n## Claim verdicts\n\n{} claims judged on each run alone; ",
        st.claims_judged
    );
    if st.claims_differ.is_empty() {
        let _ = writeln!(s, "no verdict differs.");
    } else {
        let _ = writeln!(
            s,
            "{} differ (`*`: not applicable in one run, which lacks what the claim needs; **opposite**: reproduced in one run, not reproduced in the other):\n\n| claim | A | B |\n|---|---|---|",
            st.claims_differ.len()
        );
        for c in &st.claims_differ {
            let mark = match (c.judged_in_both, c.contradicts) {
                (false, _) => " *",
                (true, true) => " **opposite**",
                (true, false) => "",
            };
            let _ = writeln!(s, "| {}{mark} | {} | {} |", c.id, c.a.text(), c.b.text());
        }
    }
    let _ = writeln!(s, "\n{}", st.verdict);
    s
}
