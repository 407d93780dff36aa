//! The HdrHistogram percentile-distribution text format (`.hgrm`), as HdrHistogram's
//! `outputPercentileDistribution` prints it, so the HdrHistogram online plotter and hdr-plot
//! read the files. Values are recorded in nanoseconds and written in microseconds (scaling ratio
//! 1000, three decimals keep full nanosecond resolution), as tools that record ns usually do.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Ticks per half distance of the percentile iteration: 5, HdrHistogram's default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Written values are ns / SCALE, i.e. microseconds.
pub const SCALE: f64 = 1000.0;

/// Renders `h` (nanosecond values) as `.hgrm` text.
pub fn render(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    out.push_str("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut cumulative: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            cumulative += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {cumulative:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {cumulative:10}");
            }
        }
    }
    let sub_buckets = (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64;
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / SCALE,
            h.stdev() / SCALE,
            h.highest_equivalent(h.max()) as f64 / SCALE,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    out
}

/// One parsed line of an `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub value_us: f64,
    pub percentile: f64,
    pub total_count: u64,
}

/// What [`parse`] reads back: the percentile lines and the footer's mean, max and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub lines: Vec<Line>,
    pub mean_us: f64,
    pub max_us: f64,
    pub total_count: u64,
}

/// Parses `.hgrm` text; errors name the offending line.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut lines = Vec::new();
    let (mut mean, mut max, mut total) = (None, None, None);
    let mut saw_header = false;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        if l.starts_with("Value") {
            saw_header = true;
            continue;
        }
        if let Some(rest) = l.strip_prefix("#[") {
            let rest = rest.trim_end_matches(']');
            for part in rest.split(',') {
                let Some((k, v)) = part.split_once('=') else {
                    return Err(format!("line {}: malformed footer '{raw}'", i + 1));
                };
                let v = v.trim();
                match k.trim() {
                    "Mean" => mean = v.parse::<f64>().ok(),
                    "Max" => max = v.parse::<f64>().ok(),
                    "Total count" => total = v.parse::<u64>().ok(),
                    _ => {}
                }
            }
            continue;
        }
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() != 3 && cols.len() != 4 {
            return Err(format!(
                "line {}: expected 3 or 4 columns, got '{raw}'",
                i + 1
            ));
        }
        let bad = |what: &str| format!("line {}: bad {what} in '{raw}'", i + 1);
        lines.push(Line {
            value_us: cols[0].parse().map_err(|_| bad("value"))?,
            percentile: cols[1].parse().map_err(|_| bad("percentile"))?,
            total_count: cols[2].parse().map_err(|_| bad("count"))?,
        });
    }
    if !saw_header {
        return Err("no 'Value Percentile TotalCount' header".into());
    }
    Ok(Parsed {
        lines,
        mean_us: mean.ok_or("footer lacks #[Mean")?,
        max_us: max.ok_or("footer lacks #[Max")?,
        total_count: total.ok_or("footer lacks Total count")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::recorder::new_histogram;

    #[test]
    fn round_trip() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let text = render(&h);
        let p = parse(&text).unwrap();
        assert_eq!(p.total_count, 10_000);
        assert_eq!(p.lines.last().unwrap().total_count, 10_000);
        assert!((p.max_us - 1000.0).abs() < 1.0, "{}", p.max_us);
        assert!((p.mean_us - 500.05).abs() < 1.0, "{}", p.mean_us);
        let median = p.lines.iter().find(|l| l.percentile >= 0.5).unwrap();
        assert!((median.value_us - 500.0).abs() < 1.0, "{median:?}");
        assert!(text.contains("#[Buckets"));
        assert!(
            p.lines
                .windows(2)
                .all(|w| w[0].percentile <= w[1].percentile)
        );
    }

    #[test]
    fn empty_and_bad() {
        let p = parse(&render(&new_histogram())).unwrap();
        assert_eq!(p.total_count, 0);
        assert!(parse("garbage").is_err());
        assert!(parse("Value Percentile\n1 2\n").is_err());
    }
}
