//! The crossover rule's answer ([`analysis::Crossover`]) as the experiments print and record
//! it: one wording for every "from which size does A beat B?" line, saying whether the answer
//! is conclusive by the rule, and the answer's fields as JSON. The parameter is a size in bytes.

use crate::analysis::{CrossPoint, CrossStatus, Crossover};
use crate::units::fmt_size;
use serde_json::{Value, json};

/// "beats B from X (between W and X, ~Y KiB interpolated)", "beats B at every size measured
/// (from X)" or "never beats B (up to X)"; then the strays ("; also ahead at S"), then
/// [`conclusiveness`].
pub fn verdict(c: &Crossover, b: &str) -> String {
    let largest = c.points.last().map_or(0, |p| p.param);
    let mut s = match (c.status, c.at, c.between) {
        (CrossStatus::Crosses, Some(at), Some((lo, _))) => format!(
            "beats {b} from {} (between {} and {}{})",
            fmt_size(at),
            fmt_size(lo),
            fmt_size(at),
            c.interpolated.map_or(String::new(), |x| format!(
                ", ~{:.1} KiB interpolated",
                x / 1024.0
            ))
        ),
        (CrossStatus::AlwaysBetter, Some(at), _) => {
            format!("beats {b} at every size measured (from {})", fmt_size(at))
        }
        (CrossStatus::NoPoints, ..) => format!("no size measured on both sides with {b}"),
        _ => format!("never beats {b} (up to {})", fmt_size(largest)),
    };
    if !c.stray.is_empty() {
        let stray: Vec<String> = c.stray.iter().map(|&x| fmt_size(x)).collect();
        s.push_str(&format!("; also ahead at {}", stray.join(", ")));
    }
    format!("{s}; {}", conclusiveness(c))
}

/// "conclusive", or "not conclusive (interval LO-HI at X, ...)" naming the ratio intervals of
/// the deciding sizes that hold 1.0.
pub fn conclusiveness(c: &Crossover) -> String {
    if c.conclusive {
        return "conclusive".into();
    }
    let open: Vec<String> = c
        .deciding()
        .iter()
        .filter(|p| !p.ratio.conclusive)
        .map(|p| {
            format!(
                "{}-{} at {}",
                num(p.ratio.lo),
                num(p.ratio.hi),
                fmt_size(p.param)
            )
        })
        .collect();
    if open.is_empty() {
        "not conclusive (no size measured on both sides)".into()
    } else {
        format!("not conclusive (interval {})", open.join(", "))
    }
}

/// The ratio A/B per size: "1KiB 2.25 | 4KiB 2.35".
pub fn ratios(c: &Crossover) -> String {
    c.points
        .iter()
        .map(|p| format!("{} {:.2}", fmt_size(p.param), p.ratio.value))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// What one point's ratio rests on: `ratio_interval` [lo, hi], `ratio_conclusive` (the
/// interval leaves 1.0 out), `pairs` (repeats paired).
pub fn point_ratio(p: &CrossPoint) -> Value {
    json!({
        "ratio_interval": [p.ratio.lo, p.ratio.hi],
        "ratio_conclusive": p.ratio.conclusive,
        "pairs": p.ratio.n_a,
    })
}

/// The rule, in one sentence for the documents.
pub const RULE: &str = "analysis::crossover_paired: per size, the ratio A/B is the median of the ratios of repeats paired by index with its distribution-free 95% interval (nothing is decided on fewer than 6 pairs); the crossover is the smallest size from which A beats B at that size and every larger one; conclusive when the ratio's interval leaves 1.0 out at every deciding size (the one before the crossing and all from it on)";

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Direction, crossover_paired};

    #[test]
    fn verdicts_say_whether_the_rule_is_conclusive() {
        // Each repeat twice: six, the fewest an interval decides on.
        let pts = |r: &[(u64, [f64; 3])]| -> Vec<(u64, Vec<f64>, Vec<f64>)> {
            r.iter()
                .map(|(p, a)| (*p, [a.as_slice(), a].concat(), vec![1.0; 6]))
                .collect()
        };
        let c = crossover_paired(
            &pts(&[
                (1024, [2.0, 2.1, 1.9]),
                (4096, [0.9, 0.8, 0.85]),
                (16384, [1.2, 1.3, 1.1]),
                (65536, [0.5, 0.6, 0.55]),
            ]),
            Direction::LowerIsBetter,
        );
        let v = verdict(&c, "base");
        assert!(
            v.starts_with("beats base from 64KiB (between 16KiB and 64KiB, ~"),
            "{v}"
        );
        assert!(v.ends_with("; also ahead at 4KiB; conclusive"), "{v}");
        assert_eq!(
            ratios(&c),
            "1KiB 2.00 | 4KiB 0.85 | 16KiB 1.20 | 64KiB 0.55"
        );
        let c = crossover_paired(
            &pts(&[(512, [0.5, 0.6, 0.7]), (2048, [0.9, 1.1, 1.0])]),
            Direction::HigherIsBetter,
        );
        assert_eq!(
            verdict(&c, "base"),
            "never beats base (up to 2KiB); not conclusive (interval 0.900-1.100 at 2KiB)"
        );
    }
}
