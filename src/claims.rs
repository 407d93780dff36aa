//! Published claims and their verdicts against runs of the lab (`zclab claims RUN_DIR ...`).
//!
//! The claims are data (`claims/claims.json`, compiled in): each names the experiment, the
//! variants and parameter points it compares, the metric and the threshold. A verdict is
//! *reproduced*, *not reproduced*, *not applicable here* (with the reason: the run lacks the
//! experiment or the points, the variant was skipped, it needs a NIC or other kernels), or
//! *inconclusive* (the repeats' spread straddles the threshold). Comparisons pair repeats by
//! index (`a[i] / b[i]`) so machine drift during a run cancels out.

use crate::compare::{Run, load_run};
use crate::harness::median;
use crate::results::{Metrics, Row, Status};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The claims shipped with the lab.
pub const CLAIMS_JSON: &str = include_str!("../claims/claims.json");

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
    },
    /// metric(variant) `op` threshold at every matching point.
    Value {
        experiment: String,
        metric: String,
        side: Side,
        op: String,
        threshold: f64,
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

/// Reads a metric from a row; None when absent or unknown.
pub fn metric(m: &Metrics, name: &str) -> Option<f64> {
    Some(match name {
        "gbps" => m.gbps,
        "ops_per_s" => m.ops_per_s,
        "wall_ns" => m.wall_ns as f64,
        "cpu_ns_per_mib" => m.cpu_ns_per_mib,
        "sys_ns_per_mib" => m.sys_ns_per_mib,
        "syscalls_per_mib" => m.syscalls_per_mib?,
        "p50_ns" => m.latency.p50_ns as f64,
        "p99_ns" => m.latency.p99_ns as f64,
        "mean_ns" => m.latency.mean_ns,
        "copied_pct" => {
            let z = m.zc.as_ref()?;
            if !z.usage_reported {
                return None;
            }
            z.copied_pct
        }
        "cpu_ns_per_byte" => m.cpu_ns_per_mib / (1u64 << 20) as f64,
        other => *m.extra.get(other)?,
    })
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

/// Values of `metric` per repeat for rows of `side` at a point; only rows that are ok.
fn values<'a>(
    rows: &'a [Row],
    side: &Side,
    extra: &BTreeMap<String, Value>,
) -> BTreeMap<String, (BTreeMap<String, Value>, Vec<&'a Row>)> {
    let mut by_point: BTreeMap<String, (BTreeMap<String, Value>, Vec<&Row>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| {
        r.status == Status::Ok
            && r.variant == side.variant
            && matches(&r.params, &side.r#where)
            && matches(&r.params, extra)
    }) {
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

/// Paired ratios a[i]/b[i] by repeat index (falls back to all pairs' extremes when the repeat
/// indices differ).
fn ratios(a: &[(u32, f64)], b: &[(u32, f64)]) -> Vec<f64> {
    let paired: Vec<f64> = a
        .iter()
        .filter_map(|(i, x)| b.iter().find(|(j, _)| j == i).map(|(_, y)| x / y))
        .filter(|r| r.is_finite())
        .collect();
    if !paired.is_empty() {
        return paired;
    }
    a.iter()
        .flat_map(|(_, x)| b.iter().map(move |(_, y)| x / y))
        .filter(|r| r.is_finite())
        .collect()
}

fn holds(op: &str, x: f64, t: f64) -> bool {
    match op {
        "<=" => x <= t,
        "<" => x < t,
        ">=" => x >= t,
        ">" => x > t,
        _ => false,
    }
}

/// Verdict of an `op threshold` test over a spread of values: reproduced when every value
/// holds, not reproduced when none does, inconclusive when the spread straddles it.
fn judge(values: &[f64], op: &str, t: f64) -> Kind {
    let n = values.iter().filter(|&&x| holds(op, x, t)).count();
    if n == values.len() {
        Kind::Reproduced
    } else if n == 0 {
        Kind::NotReproduced
    } else {
        Kind::Inconclusive
    }
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

fn fmt_num(x: f64) -> String {
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
    let meta = run.meta.get(exp)?;
    meta["variants"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == variant && (v["status"] == "skipped" || v["status"] == "failed"))
        .map(|v| {
            format!(
                "{} {}: {}",
                variant,
                v["status"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or("")
            )
        })
}

fn rows_of<'a>(run: &'a Run, exp: &str) -> Result<&'a [Row], String> {
    run.rows
        .get(exp)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("the run did not include {exp}"))
}

/// Evaluates one check on `runs` (the first run is "this machine"; cross-kernel checks use all).
/// The first of `runs` on the first run's kernel that includes `exp`: several runs of one
/// machine (a quick suite and a full run of one experiment, say) answer together.
fn run_with<'a>(runs: &'a [Run], exp: &str) -> &'a Run {
    let rel = &runs[0].probe["kernel"]["release"];
    runs.iter()
        .find(|r| r.rows.contains_key(exp) && &r.probe["kernel"]["release"] == rel)
        .unwrap_or(&runs[0])
}

fn check(c: &Check, runs: &[Run]) -> (Kind, String, String) {
    let run = match c {
        Check::Ratio { experiment, .. }
        | Check::Value { experiment, .. }
        | Check::Crossover { experiment, .. } => run_with(runs, experiment),
        _ => &runs[0],
    };
    let na = |why: String| (Kind::NotApplicable, "-".to_string(), why);
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
        } => {
            let rows = match rows_of(run, experiment) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            for s in [a, b] {
                if let Some(r) = skip_reason(run, experiment, &s.variant) {
                    return na(r);
                }
            }
            let va = values(rows, a, points);
            let vb = values(rows, b, points);
            let mut kinds = Vec::new();
            let mut measured = Vec::new();
            for (key, (shared, ra)) in &va {
                let Some((_, rb)) = vb.get(key) else { continue };
                let r = ratios(&series(ra, m), &series(rb, m));
                if r.is_empty() {
                    continue;
                }
                kinds.push(judge(&r, op, *threshold));
                measured.push(format!("{} {}", point_text(shared), fmt_num(median(r))));
            }
            if kinds.is_empty() {
                return na(format!(
                    "the run did not include the needed points ({} and {} with {})",
                    a.variant,
                    b.variant,
                    filter_text(points)
                ));
            }
            let label = format!("{}/{} {m}", side_text(a), side_text(b));
            (
                combine(&kinds),
                format!("{label} = {}", measured.join(", ")),
                format!("{label} {op} {threshold}"),
            )
        }
        Check::Value {
            experiment,
            metric: m,
            side,
            op,
            threshold,
        } => {
            let rows = match rows_of(run, experiment) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            if let Some(r) = skip_reason(run, experiment, &side.variant) {
                return na(r);
            }
            let v = values(rows, side, &BTreeMap::new());
            let mut kinds = Vec::new();
            let mut measured = Vec::new();
            for (shared, rs) in v.values() {
                let s: Vec<f64> = series(rs, m).into_iter().map(|x| x.1).collect();
                if s.is_empty() {
                    continue;
                }
                kinds.push(judge(&s, op, *threshold));
                measured.push(format!("{} {}", point_text(shared), fmt_num(median(s))));
            }
            if kinds.is_empty() {
                return na(format!(
                    "the run has no {m} for {} at {}",
                    side.variant,
                    filter_text(&side.r#where)
                ));
            }
            let label = format!("{} {m}", side_text(side));
            (
                combine(&kinds),
                format!("{label} = {}", measured.join(", ")),
                format!("{label} {op} {threshold}"),
            )
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
        } => {
            let rows = match rows_of(run, experiment) {
                Ok(r) => r,
                Err(e) => return na(e),
            };
            for s in [a, b] {
                if let Some(r) = skip_reason(run, experiment, &s.variant) {
                    return na(r);
                }
            }
            match crossover(rows, m, a, b, param, *lower_is_better) {
                None => na(format!(
                    "the run did not include a {param} sweep of {} and {}",
                    a.variant, b.variant
                )),
                Some((lo, hi, sweep)) => {
                    // `lo`..`hi`: the crossover lies between the last size a loses and the first it wins.
                    let kind = match hi {
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
                    (
                        kind,
                        measured,
                        format!(
                            "crossover in [{}, {}]",
                            crate::units::fmt_size(*min as u64),
                            crate::units::fmt_size(*max as u64)
                        ),
                    )
                }
            }
        }
        Check::Kernels {
            experiment,
            metric: m,
            side,
            boundary,
            op,
            threshold,
        } => {
            let bound = parse_version(boundary);
            let older: Vec<&Run> = runs.iter().filter(|r| kernel_version(r) < bound).collect();
            let newer: Vec<&Run> = runs.iter().filter(|r| kernel_version(r) >= bound).collect();
            if older.is_empty() || newer.is_empty() {
                return na(format!(
                    "needs runs from kernels before and from {boundary} on (give several run directories)"
                ));
            }
            if runs.iter().any(|r| r.accelerator == "tcg") {
                return na("a run comes from software emulation: not suitable for timing".into());
            }
            let pick = |r: &Run| -> Vec<f64> {
                r.rows
                    .get(experiment)
                    .map(|rows| {
                        values(rows, side, &BTreeMap::new())
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
            let r: Vec<f64> = n
                .iter()
                .flat_map(|x| o.iter().map(move |y| x / y))
                .collect();
            (
                judge(&r, op, *threshold),
                format!("newer/older {m} {}", fmt_num(median(r))),
                format!("{op} {threshold}"),
            )
        }
    }
}

/// Walks a sweep of `param` (shared by a and b) in increasing order; returns (largest value
/// where a does not beat b, smallest value from which a beats b at every larger value, text).
#[allow(clippy::type_complexity)]
fn crossover(
    rows: &[Row],
    m: &str,
    a: &Side,
    b: &Side,
    param: &str,
    lower: bool,
) -> Option<(Option<f64>, Option<f64>, String)> {
    let va = values(rows, a, &BTreeMap::new());
    let vb = values(rows, b, &BTreeMap::new());
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for (key, (shared, ra)) in &va {
        let Some((_, rb)) = vb.get(key) else { continue };
        let Some(x) = shared.get(param).and_then(Value::as_f64) else {
            continue;
        };
        let r = ratios(&series(ra, m), &series(rb, m));
        if !r.is_empty() {
            pts.push((x, median(r)));
        }
    }
    if pts.len() < 2 {
        return None;
    }
    pts.sort_by(|p, q| p.0.total_cmp(&q.0));
    let wins = |r: f64| if lower { r < 1.0 } else { r > 1.0 };
    let mut first_win = None;
    for i in (0..pts.len()).rev() {
        if wins(pts[i].1) {
            first_win = Some(i);
        } else {
            break;
        }
    }
    let sweep = pts
        .iter()
        .map(|(x, r)| format!("{}:{}", crate::units::fmt_size(*x as u64), fmt_num(*r)))
        .collect::<Vec<_>>()
        .join(" ");
    let hi = first_win.map(|i| pts[i].0);
    let lo = match first_win {
        Some(0) => None,
        Some(i) => Some(pts[i - 1].0),
        None => pts.last().map(|p| p.0),
    };
    Some((lo, hi, format!("a/b {m}: {sweep}")))
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut it = s.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn kernel_version(r: &Run) -> (u32, u32) {
    parse_version(r.probe["kernel"]["release"].as_str().unwrap_or("0.0"))
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

/// Verdicts of every claim against `runs`.
pub fn verdicts(claims: &[Claim], runs: &[Run]) -> Vec<Verdict> {
    claims
        .iter()
        .map(|c| {
            let results: Vec<(Kind, String, String)> =
                c.checks.iter().map(|k| check(k, runs)).collect();
            let kind = combine(&results.iter().map(|r| r.0).collect::<Vec<_>>());
            Verdict {
                id: c.id.clone(),
                kind,
                measured: results
                    .iter()
                    .map(|r| r.1.clone())
                    .filter(|s| s != "-")
                    .collect::<Vec<_>>()
                    .join(" | "),
                published: c.published.clone(),
                why: {
                    let mut w: Vec<String> = Vec::new();
                    for r in results
                        .iter()
                        .filter(|r| r.0 == kind || kind == Kind::Reproduced)
                    {
                        if !w.contains(&r.2) {
                            w.push(r.2.clone());
                        }
                    }
                    w.join("; ")
                },
            }
        })
        .collect()
}

/// The verdict table as Markdown.
pub fn table(v: &[Verdict]) -> String {
    let mut s = String::from(
        "| claim | verdict | measured here | published | test / reason |\n|---|---|---|---|---|\n",
    );
    for x in v {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            x.id,
            x.kind.text(),
            x.measured.replace('|', "/"),
            x.published.replace('|', "/"),
            x.why.replace('|', "/")
        );
    }
    s
}

/// `zclab claims RUN_DIR...`: loads the runs, prints and returns the table.
pub fn run(dirs: &[PathBuf]) -> Result<(Vec<Verdict>, String)> {
    let claims = load(CLAIMS_JSON)?;
    let runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let v = verdicts(&claims, &runs);
    let t = table(&v);
    Ok((v, t))
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
        assert_eq!(judge(&[0.5, 0.6], "<=", 0.7), Kind::Reproduced);
        assert_eq!(judge(&[0.8, 0.9], "<=", 0.7), Kind::NotReproduced);
        assert_eq!(judge(&[0.6, 0.8], "<=", 0.7), Kind::Inconclusive);
    }
}
