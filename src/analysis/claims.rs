//! Published claims and their verdicts against loaded runs (what `zclab claims RUN_DIR ...`
//! prints).
//!
//! The claims are data (`claims/claims.json`, compiled in): each names the experiment, the
//! variants and parameter points it compares, the metric and the threshold. A verdict is
//! *reproduced*, *not reproduced*, *not applicable here* (with the reason: the run lacks the
//! experiment or the points, the variant was skipped, it needs a NIC or other kernels), or
//! *inconclusive* (the interval of the figure straddles the threshold). Every check goes
//! through the module's rules: a ratio is [`super::ratio`] with repeats paired by index
//! (`a[i] / b[i]`, so machine drift during a run cancels out), a value is [`super::median_ci`],
//! a crossover is [`super::crossover_paired`].

use super::{
    CrossStatus, Direction, INDIFFERENCE, MIN_DECIDING, Op, Pairing, Test, crossover_paired,
    median_ci, metric, ratio, zoned,
};
use crate::results::{Row, Run, Status};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The claims shipped with the lab.
pub const CLAIMS_JSON: &str = include_str!("../../claims/claims.json");

/// One published claim.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Claim {
    pub id: String,
    /// The claim in the lab's own words.
    pub statement: String,
    pub source: String,
    /// The published figure, as published.
    pub published: String,
    pub conditions: String,
    /// When the lab calls it reproduced, in words.
    pub reproduced_when: String,
    /// All checks must hold.
    pub checks: Vec<Check>,
}

/// Which rows a side of a comparison takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Side {
    pub variant: String,
    /// Parameter filters: exact value, or `{"min": x, "max": y}`.
    #[serde(default)]
    pub r#where: BTreeMap<String, Value>,
}

/// Row figures that only a profiled run has (besides `prof_*`).
const PROFILED: &[&str] = &[
    "copy_sites",
    "copies_per_byte",
    "peer_copy_sites",
    "peer_copies_per_byte",
];

/// One check.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Check {
    /// metric(a) / metric(b) `op` threshold at every matching point.
    Ratio {
        experiment: String,
        metric: String,
        a: Side,
        b: Side,
        /// Filters on the point shared by both sides (e.g. size >= 64 MiB).
        #[serde(default)]
        points: BTreeMap<String, Value>,
        op: String,
        threshold: f64,
        /// The same quantity as the source published it (a ratio, a value, a crossover size),
        /// shown beside the measured one with their quotient; None where the source gives none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published: Option<f64>,
    },
    /// metric(variant) `op` threshold at every matching point.
    Value {
        experiment: String,
        metric: String,
        side: Side,
        op: String,
        threshold: f64,
        /// The same quantity as the source published it (a ratio, a value, a crossover size),
        /// shown beside the measured one with their quotient; None where the source gives none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published: Option<f64>,
    },
    /// The smallest value of `param` at which a's metric beats b's (lower is better when
    /// `lower_is_better`) lies within [min, max].
    Crossover {
        experiment: String,
        metric: String,
        a: Side,
        b: Side,
        param: String,
        lower_is_better: bool,
        min: f64,
        max: f64,
        /// The same quantity as the source published it (a ratio, a value, a crossover size),
        /// shown beside the measured one with their quotient; None where the source gives none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published: Option<f64>,
    },
    /// The same variant and point across runs on kernels on either side of `boundary`:
    /// newer / older `op` threshold.
    Kernels {
        experiment: String,
        metric: String,
        side: Side,
        boundary: String,
        op: String,
        threshold: f64,
        /// The same quantity as the source published it (a ratio, a value, a crossover size),
        /// shown beside the measured one with their quotient; None where the source gives none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published: Option<f64>,
    },
    /// Cannot be tested without something this lab does not have (a NIC, say).
    Needs { what: String },
}

/// A verdict kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Reproduced,
    NotReproduced,
    Inconclusive,
    NotApplicable,
}

impl Kind {
    pub fn text(self) -> &'static str {
        match self {
            Kind::Reproduced => "reproduced",
            Kind::NotReproduced => "not reproduced",
            Kind::Inconclusive => "inconclusive",
            Kind::NotApplicable => "not applicable here",
        }
    }
}

/// The verdict of one claim: kind, the measured value(s) and why.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub id: String,
    pub kind: Kind,
    pub measured: String,
    pub published: String,
    pub why: String,
    /// Per check that has a published figure: the measured one (median over its points),
    /// the published one and measured/published, so a reproduction in direction only shows
    /// its size. Empty where the source gives no comparable figure.
    #[serde(default)]
    pub vs_published: Vec<Magnitude>,
}

/// A measured figure beside the published one.
#[derive(Debug, Clone, Serialize)]
pub struct Magnitude {
    pub what: String,
    pub measured: f64,
    pub published: f64,
    /// measured / published.
    pub quotient: f64,
}

impl Magnitude {
    pub fn text(&self) -> String {
        format!(
            "{}: {} vs {} published = {}x",
            self.what,
            fmt_num(self.measured),
            fmt_num(self.published),
            fmt_num(self.quotient)
        )
    }
}

/// Parses the claims data; the error names the problem.
pub fn load(text: &str) -> Result<Vec<Claim>> {
    let claims: Vec<Claim> = serde_json::from_str(text).context("claims data is not valid")?;
    let mut seen = std::collections::BTreeSet::new();
    for c in &claims {
        if !seen.insert(c.id.clone()) {
            bail!("claim id '{}' appears twice", c.id);
        }
        if c.checks.is_empty() {
            bail!("claim '{}' has no checks", c.id);
        }
    }
    Ok(claims)
}

fn matches(params: &BTreeMap<String, Value>, filters: &BTreeMap<String, Value>) -> bool {
    filters.iter().all(|(k, f)| {
        let Some(v) = params.get(k) else { return false };
        match f {
            Value::Object(o) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                o.get("min").and_then(Value::as_f64).is_none_or(|m| x >= m)
                    && o.get("max").and_then(Value::as_f64).is_none_or(|m| x <= m)
            }
            _ => v == f,
        }
    })
}

/// Whether the trial was measured with the host's CPUs apart (docs/method.md, "Host
/// placement"): the claims leave it out, as a figure of the host's placement, not of the path.
/// Figures that count rather than time (system calls, copies found in a profile, the
/// kernel's zero-copy report): where the host put the CPUs does not change them, so trials
/// measured apart still count for them.
const COUNTED: &[&str] = &[
    "syscalls_per_mib",
    "syscalls_per_io",
    "copy_sites",
    "peer_copy_sites",
    "copied_pct",
];

/// Whether `r` is left out of a claim on `metric`: a timed figure measured with the CPUs
/// apart, by a trial that used both (one that ran on the measured CPU alone, `one_cpu`, is
/// out of the placement's reach: [`crate::measure::placement::one_cpu`]).
fn left_out_for(r: &Row, metric: &str) -> bool {
    !COUNTED.contains(&metric) && flag(r, "cpus_apart") && !flag(r, "one_cpu")
}

fn flag(r: &Row, name: &str) -> bool {
    r.metrics
        .as_ref()
        .and_then(|m| m.extra.get(name))
        .is_some_and(|v| *v >= 0.5)
}

/// Whether `r` is an ok row of `side` that matches `extra`.
fn picks(r: &Row, side: &Side, extra: &BTreeMap<String, Value>) -> bool {
    r.status == Status::Ok
        && r.variant == side.variant
        && matches(&r.params, &side.r#where)
        && matches(&r.params, extra)
}

/// How many of the rows a claim would use were measured with the CPUs apart.
fn left_out(rows: &[Row], sides: &[&Side], extra: &BTreeMap<String, Value>, metric: &str) -> usize {
    sides
        .iter()
        .map(|s| {
            rows.iter()
                .filter(|r| picks(r, s, extra) && left_out_for(r, metric))
                .count()
        })
        .sum()
}

/// Says in the measured text how many trials were left out for the CPUs' placement. Where
/// leaving them out left nothing to judge, the run measured the points but cannot decide the
/// claim: inconclusive, saying so, rather than "the run did not include" them.
fn note_left_out(mut out: Out, n: usize) -> Out {
    if n == 0 {
        return out;
    }
    if out.kind == Kind::NotApplicable {
        return Out {
            kind: Kind::Inconclusive,
            measured: "-".to_string(),
            why: format!(
                "all {n} trials of the needed points were measured with the host's CPUs apart \
                 (docs/method.md, \"Host placement\"); rerun with --host-wait"
            ),
            central: None,
        };
    }
    out.measured.push_str(&format!(
        "; {n} trials measured with the CPUs apart left out"
    ));
    out
}

/// Values of `metric` per repeat for rows of `side` at a point; only rows that are ok and
/// were not measured with the CPUs apart.
fn values<'a>(
    rows: &'a [Row],
    side: &Side,
    extra: &BTreeMap<String, Value>,
    metric: &str,
) -> BTreeMap<String, (BTreeMap<String, Value>, Vec<&'a Row>)> {
    let mut by_point: BTreeMap<String, (BTreeMap<String, Value>, Vec<&Row>)> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| picks(r, side, extra) && !left_out_for(r, metric))
    {
        // The shared point: the params not fixed by this side's own filter.
        let shared: BTreeMap<String, Value> = r
            .params
            .iter()
            .filter(|(k, _)| !side.r#where.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key = serde_json::to_string(&shared).unwrap_or_default();
        by_point
            .entry(key)
            .or_insert_with(|| (shared, Vec::new()))
            .1
            .push(r);
    }
    by_point
}

fn series(rows: &[&Row], metric_name: &str) -> Vec<(u32, f64)> {
    let mut v: Vec<(u32, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.repeat, metric(r.metrics.as_ref()?, metric_name)?)))
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

/// The ratio of two series: paired by repeat index where both sides have the same repeats,
/// otherwise (no repeat in common) the ratio of the medians.
fn series_ratio(a: &[(u32, f64)], b: &[(u32, f64)]) -> Option<super::Ratio> {
    let (pa, pb): (Vec<f64>, Vec<f64>) = a
        .iter()
        .filter_map(|(i, x)| b.iter().find(|(j, _)| j == i).map(|(_, y)| (*x, *y)))
        .unzip();
    if !pa.is_empty() {
        return ratio(&pa, &pb, Pairing::ByIndex);
    }
    let (va, vb): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|x| x.1).collect(),
        b.iter().map(|x| x.1).collect(),
    );
    ratio(&va, &vb, Pairing::Unpaired)
}

fn kind_of(t: Test) -> Kind {
    match t {
        Test::Holds => Kind::Reproduced,
        Test::Fails => Kind::NotReproduced,
        Test::Inconclusive => Kind::Inconclusive,
    }
}

/// The operator of a check; a claim with another one never holds.
fn op_of(op: &str) -> Option<Op> {
    Op::parse(op)
}

fn combine(kinds: &[Kind]) -> Kind {
    if kinds.contains(&Kind::NotApplicable) {
        Kind::NotApplicable
    } else if kinds.contains(&Kind::NotReproduced) {
        Kind::NotReproduced
    } else if kinds.contains(&Kind::Inconclusive) {
        Kind::Inconclusive
    } else {
        Kind::Reproduced
    }
}

/// How a verdict prints a measured number: 3 significant figures about, no exponent.
pub fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Skip reason for `variant` recorded in the run, if any.
fn skip_reason(run: &Run, exp: &str, variant: &str) -> Option<String> {
    run.meta(exp)?.not_run(variant)
}

/// The rows of `exp` in `run`, or why a check on them does not apply: the run did not include
/// `exp`, or one of `variants` did not run.
fn rows_of<'a>(run: &'a Run, exp: &str, variants: &[&str]) -> Result<&'a [Row], String> {
    let rows = run
        .rows(exp)
        .ok_or_else(|| format!("the run did not include {exp}"))?;
    match variants.iter().find_map(|v| skip_reason(run, exp, v)) {
        Some(why) => Err(why),
        None => Ok(rows),
    }
}

/// The verdict at one point of a ratio or value check: `test` with the check's operator (an
/// operator this lab does not know reproduces nothing).
fn verdict(op: &str, test: impl FnOnce(Op) -> Test) -> Kind {
    op_of(op).map_or(Kind::NotReproduced, |o| kind_of(test(o)))
}

/// A ratio or value check's answer over the points it measured (point, value, verdict): the
/// verdicts combined, the values after `label`, and the claim (`label op threshold`); None
/// when no point was measured.
/// A point a check measured: its parameters, (value, interval low, high), and its verdict.
/// A point's shared parameters, its figure with interval and repeats, and its verdict.
type Found<'a> = (&'a BTreeMap<String, Value>, (f64, f64, f64, usize), Kind);

/// What one check says: its verdict, the measured figures as text, the test or the reason,
/// and its central measured figure (label, value) for the comparison with the published one.
struct Out {
    kind: Kind,
    measured: String,
    why: String,
    central: Option<(String, f64)>,
}

fn answer(found: &[Found], label: String, claim: &str) -> Option<Out> {
    if found.is_empty() {
        return None;
    }
    let kinds: Vec<Kind> = found.iter().map(|f| f.2).collect();
    let measured: Vec<String> = found
        .iter()
        .map(|(at, (v, lo, hi, n), _)| {
            let interval = if *n >= MIN_DECIDING {
                "95% CI"
            } else {
                &format!("range of {n} repeats, too few to decide:")
            };
            format!(
                "{} {} [{interval} {}-{}]",
                point_text(at),
                fmt_num(*v),
                fmt_num(*lo),
                fmt_num(*hi)
            )
        })
        .collect();
    let few = found.iter().any(|f| f.1.3 < MIN_DECIDING);
    let mut vals: Vec<f64> = found.iter().map(|f| f.1.0).collect();
    vals.sort_by(f64::total_cmp);
    let central = vals[vals.len() / 2];
    Some(Out {
        kind: combine(&kinds),
        measured: format!("{label} = {}", measured.join(", ")),
        why: if few {
            format!("{label} {claim} (decided from {MIN_DECIDING} repeats on)")
        } else {
            format!("{label} {claim}")
        },
        central: Some((label, central)),
    })
}

/// Evaluates one check on `runs` (the first run is "this machine"; cross-kernel checks use all).
/// The first of `runs` on the first run's kernel that includes `exp`: several runs of one
/// machine (a quick suite and a full run of one experiment, say) answer together.
fn run_with<'a>(runs: &'a [Run], exp: &str) -> &'a Run {
    let rel = &runs[0].probe().kernel.release;
    runs.iter()
        .find(|r| r.rows(exp).is_some() && &r.probe().kernel.release == rel)
        .unwrap_or(&runs[0])
}

fn check(c: &Check, runs: &[Run]) -> Out {
    let run = match c {
        Check::Ratio { experiment, .. }
        | Check::Value { experiment, .. }
        | Check::Crossover { experiment, .. } => run_with(runs, experiment),
        _ => &runs[0],
    };
    let na = |why: String| Out {
        kind: Kind::NotApplicable,
        measured: "-".to_string(),
        why,
        central: None,
    };
    match c {
        Check::Needs { what } => na(format!("needs {what}")),
        Check::Ratio {
            experiment,
            metric: m,
            a,
            b,
            points,
            op,
            threshold,
            ..
        } => {
            let rows = match rows_of(run, experiment, &[&a.variant, &b.variant]) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            let va = values(rows, a, points, m);
            let vb = values(rows, b, points, m);
            let mut found = Vec::new();
            for (key, (shared, ra)) in &va {
                let Some((_, rb)) = vb.get(key) else { continue };
                if let Some(r) = series_ratio(&series(ra, m), &series(rb, m)) {
                    found.push((
                        shared,
                        (r.value, r.lo, r.hi, r.n_a.min(r.n_b)),
                        verdict(op, |o| r.test(o, zoned(o, *threshold))),
                    ));
                }
            }
            let label = format!("{}/{} {m}", side_text(a), side_text(b));
            let zone = INDIFFERENCE * 100.0;
            let claim = match op_of(op).map(|o| (o, zoned(o, *threshold))) {
                // "A > B": a difference larger than the zone.
                Some((Op::Gt | Op::Lt, t)) if t != *threshold => format!(
                    "{op} {threshold}, beyond the {zone:.0}% indifference zone: {op} {}",
                    fmt_num(t)
                ),
                // "A >= B": not worse by more than the zone.
                Some((_, t)) if t != *threshold => format!(
                    "{op} {threshold}, a ratio within {zone:.0}% of 1 counting as 1: {op} {}",
                    fmt_num(t)
                ),
                _ => format!("{op} {threshold}"),
            };
            let out = answer(&found, label, &claim).unwrap_or_else(|| {
                na(format!(
                    "the run did not include the needed points ({} and {} with {})",
                    a.variant,
                    b.variant,
                    filter_text(points)
                ))
            });
            note_left_out(out, left_out(rows, &[a, b], points, m))
        }
        Check::Value {
            experiment,
            metric: m,
            side,
            op,
            threshold,
            ..
        } => {
            let rows = match rows_of(run, experiment, &[&side.variant]) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            let v = values(rows, side, &BTreeMap::new(), m);
            let mut found = Vec::new();
            for (shared, rs) in v.values() {
                let s: Vec<f64> = series(rs, m).into_iter().map(|x| x.1).collect();
                if let Some(e) = median_ci(&s) {
                    found.push((
                        shared,
                        (e.value, e.lo, e.hi, e.n),
                        verdict(op, |o| e.test(o, *threshold)),
                    ));
                }
            }
            let label = format!("{} {m}", side_text(side));
            let out = answer(&found, label, &format!("{op} {threshold}")).unwrap_or_else(|| {
                na(format!(
                    "the run has no {m} for {} at {}{}",
                    side.variant,
                    filter_text(&side.r#where),
                    if PROFILED.contains(&m.as_str()) || m.starts_with("prof_") {
                        " (a figure of the profiling trial: --profile, which needs root or CAP_PERFMON)"
                    } else {
                        ""
                    }
                ))
            });
            note_left_out(out, left_out(rows, &[side], &BTreeMap::new(), m))
        }
        Check::Crossover {
            experiment,
            metric: m,
            a,
            b,
            param,
            lower_is_better,
            min,
            max,
            ..
        } => {
            let rows = match rows_of(run, experiment, &[&a.variant, &b.variant]) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            let n_apart = left_out(rows, &[a, b], &BTreeMap::new(), m);
            let out = match crossover(rows, m, a, b, param, *lower_is_better) {
                None => na(format!(
                    "the run did not include a {param} sweep of {} and {}",
                    a.variant, b.variant
                )),
                Some((lo, hi, conclusive, sweep)) => {
                    // `lo`..`hi`: the crossover lies between the last size a loses and the
                    // first it wins. An answer within the repeats' noise decides nothing.
                    let kind = match hi {
                        _ if !conclusive => Kind::Inconclusive,
                        None => Kind::NotReproduced,
                        Some(h) if h >= *min && h <= *max && lo.is_none_or(|l| l >= *min * 0.5) => {
                            Kind::Reproduced
                        }
                        Some(h) if h < *min || h > *max => Kind::NotReproduced,
                        Some(_) => Kind::Inconclusive,
                    };
                    let measured = match hi {
                        None => format!("{} never beats {} ({sweep})", a.variant, b.variant),
                        Some(h) => format!(
                            "{} beats {} from {param}={} ({sweep})",
                            a.variant,
                            b.variant,
                            crate::units::fmt_size(h as u64)
                        ),
                    };
                    Out {
                        kind,
                        measured,
                        why: format!(
                            "crossover in [{}, {}]",
                            crate::units::fmt_size(*min as u64),
                            crate::units::fmt_size(*max as u64)
                        ),
                        central: hi.map(|h| (format!("crossover {param} (B)"), h)),
                    }
                }
            };
            note_left_out(out, n_apart)
        }
        Check::Kernels {
            experiment,
            metric: m,
            side,
            boundary,
            op,
            threshold,
            ..
        } => {
            let bound = parse_version(boundary);
            let older: Vec<&Run> = runs.iter().filter(|r| kernel_version(r) < bound).collect();
            let newer: Vec<&Run> = runs.iter().filter(|r| kernel_version(r) >= bound).collect();
            if older.is_empty() || newer.is_empty() {
                return na(format!(
                    "needs runs from kernels before and from {boundary} on (give several run directories)"
                ));
            }
            if runs.iter().any(|r| r.accelerator() == "tcg") {
                return na("a run comes from software emulation: not suitable for timing".into());
            }
            let pick = |r: &Run| -> Vec<f64> {
                r.rows(experiment)
                    .map(|rows| {
                        values(rows, side, &BTreeMap::new(), m)
                            .values()
                            .flat_map(|(_, rs)| series(rs, m).into_iter().map(|x| x.1))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (o, n): (Vec<f64>, Vec<f64>) = (
                older.iter().flat_map(|r| pick(r)).collect(),
                newer.iter().flat_map(|r| pick(r)).collect(),
            );
            if o.is_empty() || n.is_empty() {
                return na(format!("the runs lack {} in {experiment}", side.variant));
            }
            let Some(r) = ratio(&n, &o, Pairing::Unpaired) else {
                return na(format!("the runs' {m} of {} is zero", side.variant));
            };
            Out {
                kind: op_of(op).map_or(Kind::NotReproduced, |o| kind_of(r.test(o, *threshold))),
                measured: format!("newer/older {m} {}", fmt_num(r.value)),
                why: format!("{op} {threshold}"),
                central: Some((format!("newer/older {m}"), r.value)),
            }
        }
    }
}

/// The crossover rule ([`crossover_paired`]) over the sweep of `param` shared by a and b;
/// returns (largest value where a does not beat b from there on, smallest value from which a
/// beats b at every larger value, whether that is conclusive, the sweep as text). None when
/// fewer than two values were measured on both sides.
#[allow(clippy::type_complexity)]
fn crossover(
    rows: &[Row],
    m: &str,
    a: &Side,
    b: &Side,
    param: &str,
    lower: bool,
) -> Option<(Option<f64>, Option<f64>, bool, String)> {
    let va = values(rows, a, &BTreeMap::new(), m);
    let vb = values(rows, b, &BTreeMap::new(), m);
    let mut pts: Vec<(u64, Vec<f64>, Vec<f64>)> = Vec::new();
    for (key, (shared, ra)) in &va {
        let Some((_, rb)) = vb.get(key) else { continue };
        let Some(x) = shared.get(param).and_then(Value::as_u64) else {
            continue;
        };
        // Pair by repeat index: keep the repeats both sides have.
        let (sa, sb) = (series(ra, m), series(rb, m));
        let (pa, pb): (Vec<f64>, Vec<f64>) = sa
            .iter()
            .filter_map(|(i, x)| sb.iter().find(|(j, _)| j == i).map(|(_, y)| (*x, *y)))
            .unzip();
        if !pa.is_empty() {
            pts.push((x, pa, pb));
        }
    }
    let c = crossover_paired(
        &pts,
        if lower {
            Direction::LowerIsBetter
        } else {
            Direction::HigherIsBetter
        },
    );
    if c.points.len() < 2 {
        return None;
    }
    let sweep = c
        .points
        .iter()
        .map(|p| {
            format!(
                "{}:{}",
                crate::units::fmt_size(p.param),
                fmt_num(p.ratio.value)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let hi = c.at.map(|x| x as f64);
    let lo = match c.status {
        CrossStatus::Crosses => c.between.map(|b| b.0 as f64),
        CrossStatus::Never => c.points.last().map(|p| p.param as f64),
        CrossStatus::AlwaysBetter | CrossStatus::NoPoints => None,
    };
    Some((lo, hi, c.conclusive, format!("a/b {m}: {sweep}")))
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut it = s.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn kernel_version(r: &Run) -> (u32, u32) {
    parse_version(&r.probe().kernel.release)
}

fn point_text(p: &BTreeMap<String, Value>) -> String {
    if p.is_empty() {
        return String::new();
    }
    let s: Vec<String> = p
        .iter()
        .map(|(k, v)| match v.as_u64() {
            Some(n)
                if n >= 1000
                    && (k.contains("size") || k == "bs" || k.contains("chunk") || k == "buf") =>
            {
                format!("{k}={}", crate::units::fmt_size(n))
            }
            _ => format!(
                "{k}={}",
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            ),
        })
        .collect();
    format!("[{}]", s.join(","))
}

fn side_text(s: &Side) -> String {
    if s.r#where.is_empty() {
        s.variant.clone()
    } else {
        format!("{}{}", s.variant, point_text(&s.r#where))
    }
}

fn filter_text(f: &BTreeMap<String, Value>) -> String {
    if f.is_empty() {
        "any point".into()
    } else {
        serde_json::to_string(f).unwrap_or_default()
    }
}

impl Check {
    /// The figure the source published for this check, if it gives one.
    fn published(&self) -> Option<f64> {
        match self {
            Check::Ratio { published, .. }
            | Check::Value { published, .. }
            | Check::Crossover { published, .. }
            | Check::Kernels { published, .. } => *published,
            Check::Needs { .. } => None,
        }
    }
}

/// Verdicts of every claim against `runs`.
pub fn verdicts(claims: &[Claim], runs: &[Run]) -> Vec<Verdict> {
    claims
        .iter()
        .map(|c| {
            let results: Vec<Out> = c.checks.iter().map(|k| check(k, runs)).collect();
            let kind = combine(&results.iter().map(|r| r.kind).collect::<Vec<_>>());
            let vs_published = c
                .checks
                .iter()
                .zip(&results)
                .filter_map(|(k, r)| {
                    let p = k.published().filter(|p| *p != 0.0)?;
                    let (what, m) = r.central.clone()?;
                    Some(Magnitude {
                        what,
                        measured: m,
                        published: p,
                        quotient: m / p,
                    })
                })
                .collect();
            let mut why: Vec<String> = Vec::new();
            for r in results
                .iter()
                .filter(|r| r.kind == kind || kind == Kind::Reproduced)
            {
                if !why.contains(&r.why) {
                    why.push(r.why.clone());
                }
            }
            Verdict {
                id: c.id.clone(),
                kind,
                measured: results
                    .iter()
                    .map(|r| r.measured.clone())
                    .filter(|s| s != "-")
                    .collect::<Vec<_>>()
                    .join(" | "),
                published: c.published.clone(),
                why: why.join("; "),
                vs_published,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_claims_parse() {
        let c = load(CLAIMS_JSON).unwrap();
        assert!(c.len() >= 16, "every claim of CLAIMS.md has an entry");
    }

    #[test]
    fn judge_kinds() {
        let judge = |v: &[f64], t: f64| kind_of(median_ci(v).unwrap().test(Op::Le, t));
        let six = |a: f64, b: f64| [a, b, a, b, a, b];
        assert_eq!(judge(&six(0.5, 0.6), 0.7), Kind::Reproduced);
        assert_eq!(judge(&six(0.8, 0.9), 0.7), Kind::NotReproduced);
        assert_eq!(judge(&six(0.6, 0.8), 0.7), Kind::Inconclusive);
        // Five repeats cannot decide, however far from the threshold.
        assert_eq!(judge(&[0.5; 5], 0.7), Kind::Inconclusive);
    }

    #[test]
    fn direction_claims_clear_the_indifference_zone() {
        let zone = |v: &[f64], op: Op| kind_of(median_ci(v).unwrap().test(op, zoned(op, 1.0)));
        // A 2% gain, measured tightly: real, but inside the zone.
        let small = [1.01, 1.02, 1.03, 1.02, 1.01, 1.03, 1.02, 1.02, 1.02];
        assert_eq!(zone(&small, Op::Gt), Kind::NotReproduced);
        assert_eq!(zone(&small, Op::Ge), Kind::Reproduced);
        assert_eq!(zone(&small, Op::Le), Kind::Reproduced);
        assert_eq!(zone(&small, Op::Lt), Kind::NotReproduced);
        let large = small.map(|x| x + 0.1);
        assert_eq!(zone(&large, Op::Gt), Kind::Reproduced);
        assert_eq!(zone(&large, Op::Le), Kind::NotReproduced);
        let straddles = [1.0, 1.1, 1.02, 1.08, 1.04, 1.06, 1.05, 1.03, 1.07];
        assert_eq!(zone(&straddles, Op::Gt), Kind::Inconclusive);
        // A published magnitude is its own threshold.
        assert_eq!(zoned(Op::Ge, 1.5), 1.5);
        assert_eq!(zoned(Op::Lt, 0.7), 0.7);
    }

    #[test]
    fn trials_measured_with_the_cpus_apart_are_left_out() {
        let with = |repeat: u32, gbps: f64, extra: &[(&str, f64)]| Row {
            experiment: "net_send".into(),
            variant: "v".into(),
            point: "size=1".into(),
            params: [("size".to_string(), Value::from(1))].into(),
            repeat,
            status: Status::Ok,
            error: None,
            metrics: Some(crate::results::row::Metrics {
                gbps,
                extra: extra.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
                ..Default::default()
            }),
            integrity: None,
            cpu_sender: Some(0),
            cpu_peer: Some(1),
            histograms: BTreeMap::new(),
        };
        let row = |repeat: u32, gbps: f64, apart: Option<f64>| match apart {
            Some(a) => with(repeat, gbps, &[("cpus_apart", a)]),
            None => with(repeat, gbps, &[]),
        };
        // Older runs record no placement: every row counts.
        let rows = vec![
            row(0, 1.0, None),
            row(1, 2.0, Some(0.0)),
            row(2, 9.0, Some(1.0)),
        ];
        let side = Side {
            variant: "v".into(),
            r#where: BTreeMap::new(),
        };
        let none = BTreeMap::new();
        let kept = |rows: &[Row]| -> Vec<f64> {
            values(rows, &side, &none, "gbps")
                .values()
                .flat_map(|(_, rs)| series(rs, "gbps"))
                .map(|x| x.1)
                .collect()
        };
        assert_eq!(kept(&rows), [1.0, 2.0]);
        assert_eq!(left_out(&rows, &[&side], &none, "gbps"), 1);
        // A trial apart that ran on the measured CPU alone is out of the placement's reach.
        let alone = vec![
            with(0, 3.0, &[("cpus_apart", 1.0), ("one_cpu", 1.0)]),
            with(1, 4.0, &[("cpus_apart", 1.0), ("one_cpu", 0.0)]),
        ];
        assert_eq!(left_out(&alone, &[&side], &none, "gbps"), 1);
        assert_eq!(kept(&alone), [3.0]);
        // A count (system calls, copies) does not depend on where the CPUs were: all kept.
        let counted = values(&rows, &side, &none, "copy_sites");
        assert_eq!(counted.values().map(|(_, rs)| rs.len()).sum::<usize>(), 3);
        assert_eq!(left_out(&rows, &[&side], &none, "syscalls_per_mib"), 0);
        let out = note_left_out(
            Out {
                kind: Kind::Reproduced,
                measured: "x".into(),
                why: String::new(),
                central: None,
            },
            1,
        );
        assert_eq!(
            out.measured,
            "x; 1 trials measured with the CPUs apart left out"
        );
        // Nothing left to judge: inconclusive, saying why, not "the run did not include".
        let none_left = |n| {
            note_left_out(
                Out {
                    kind: Kind::NotApplicable,
                    measured: "-".into(),
                    why: "the run did not include the needed points".into(),
                    central: None,
                },
                n,
            )
        };
        let out = none_left(3);
        assert_eq!(out.kind, Kind::Inconclusive);
        assert!(out.why.starts_with("all 3 trials"), "{}", out.why);
        assert_eq!(none_left(0).kind, Kind::NotApplicable);
    }
}
