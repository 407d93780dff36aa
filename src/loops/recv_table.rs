//! net_recv's closing table, "did the receive go zero-copy?": per path and receive size, the
//! share of bytes TCP_ZEROCOPY_RECEIVE mapped and every variant's receiver CPU per MiB
//! (medians of the repeats), and, per path, the one crossover rule: the smallest size from
//! which the zero-copy receive's CPU per MiB stays below read(2)'s. Pure functions of the
//! rows.

use crate::analysis::median;
use crate::results::{Row, Status};
use crate::units::fmt_size;
use serde::Serialize;
use std::collections::BTreeMap;

/// One (path, size) line of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    pub path: String,
    pub size: u64,
    /// Median share of bytes mapped by classic-recv-zerocopy (at the first copy buffer).
    pub mapped_pct: Option<f64>,
    /// Median receiver CPU ns per MiB, by variant.
    pub cpu_ns_per_mib: BTreeMap<String, f64>,
    /// Median completions per MiB, by variant.
    pub completions_per_mib: BTreeMap<String, f64>,
}

/// Per path: the size from which the zero-copy receive costs the receiver less CPU per MiB
/// than read(2) at that size and every larger one measured (None: at no size).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Crossover {
    pub path: String,
    pub from_size: Option<u64>,
    pub sizes_measured: usize,
}

/// The table and the crossovers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub lines: Vec<Line>,
    pub crossovers: Vec<Crossover>,
}

const ZC: &str = "classic-recv-zerocopy";
const COPY: &str = "classic-recv";

fn medians(rows: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
    (!v.is_empty()).then(|| median(&v))
}

/// Builds the table from net_recv's rows (ok rows only; the zero-copy receive at the first
/// copy buffer of the run, `copybuf0`).
pub fn table(rows: &[Row], copybuf0: u64) -> Table {
    let mut groups: BTreeMap<(String, u64), BTreeMap<String, Vec<&Row>>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.status == Status::Ok && r.metrics.is_some())
    {
        let path = r.params.get("path").and_then(|v| v.as_str()).unwrap_or("?");
        let size = r.params.get("size").and_then(|v| v.as_u64()).unwrap_or(0);
        let cb = r.params.get("copybuf").and_then(|v| v.as_u64());
        // One flow: a many-flow row's CPU is several receivers'.
        let flows = r.params.get("flows").and_then(|v| v.as_u64()).unwrap_or(1);
        if cb != Some(copybuf0) || flows != 1 {
            continue;
        }
        groups
            .entry((path.to_string(), size))
            .or_default()
            .entry(r.variant.clone())
            .or_default()
            .push(r);
    }
    let mut lines = Vec::new();
    for ((path, size), by) in groups {
        let m = |r: &Row| r.metrics.as_ref().map(|m| m.cpu_ns_per_mib);
        let x = |k: &'static str| move |r: &Row| r.metrics.as_ref()?.extra.get(k).copied();
        lines.push(Line {
            mapped_pct: by.get(ZC).and_then(|rs| medians(rs, x("mapped_pct"))),
            cpu_ns_per_mib: by
                .iter()
                .filter_map(|(v, rs)| Some((v.clone(), medians(rs, m)?)))
                .collect(),
            completions_per_mib: by
                .iter()
                .filter_map(|(v, rs)| Some((v.clone(), medians(rs, x("completions_per_mib"))?)))
                .collect(),
            path,
            size,
        });
    }
    let mut crossovers = Vec::new();
    let mut paths: Vec<&str> = lines.iter().map(|l| l.path.as_str()).collect();
    paths.dedup();
    for p in paths {
        let pts: Vec<(u64, bool)> = lines
            .iter()
            .filter(|l| l.path == p)
            .filter_map(|l| {
                let zc = l.cpu_ns_per_mib.get(ZC)?;
                let copy = l.cpu_ns_per_mib.get(COPY)?;
                Some((l.size, zc < copy))
            })
            .collect();
        let mut from = None;
        for &(size, below) in pts.iter().rev() {
            if !below {
                break;
            }
            from = Some(size);
        }
        crossovers.push(Crossover {
            path: p.to_string(),
            from_size: from,
            sizes_measured: pts.len(),
        });
    }
    Table { lines, crossovers }
}

/// The table as text: one line per (path, size), the variants as columns of receiver CPU
/// µs per MiB, then the crossover rule per path.
pub fn render(t: &Table) -> String {
    let mut variants: Vec<&str> = Vec::new();
    for l in &t.lines {
        for v in l.cpu_ns_per_mib.keys() {
            if !variants.contains(&v.as_str()) {
                variants.push(v);
            }
        }
    }
    let mut out = String::from(
        "Did the receive go zero-copy? (receiver CPU µs per MiB, median of repeats)\n",
    );
    out += &format!("{:<13} {:>7} {:>7}", "path", "size", "mapped");
    for v in &variants {
        out += &format!(" {:>22}", v);
    }
    out.push('\n');
    for l in &t.lines {
        let mapped = l.mapped_pct.map_or("-".to_string(), |p| format!("{p:.0}%"));
        out += &format!("{:<13} {:>7} {:>7}", l.path, fmt_size(l.size), mapped);
        for v in &variants {
            let c = l
                .cpu_ns_per_mib
                .get(*v)
                .map_or("-".to_string(), |c| format!("{:.0}", c / 1000.0));
            out += &format!(" {c:>22}");
        }
        out.push('\n');
    }
    for c in &t.crossovers {
        out += &match c.from_size {
            Some(s) => format!(
                "{}: {ZC} costs the receiver less CPU per MiB than {COPY} from {} on ({} sizes measured)\n",
                c.path,
                fmt_size(s),
                c.sizes_measured
            ),
            None => format!(
                "{}: {ZC} does not cost the receiver less CPU per MiB than {COPY} at the largest size measured ({} sizes)\n",
                c.path, c.sizes_measured
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Metrics;

    fn row(variant: &str, size: u64, cpu: f64, mapped: Option<f64>) -> Row {
        let mut m = Metrics {
            cpu_ns_per_mib: cpu,
            ..Default::default()
        };
        if let Some(p) = mapped {
            m.extra.insert("mapped_pct".into(), p);
        }
        Row {
            experiment: "net_recv".into(),
            variant: variant.into(),
            point: String::new(),
            params: [
                ("path".to_string(), serde_json::json!("tcp-loopback")),
                ("size".to_string(), serde_json::json!(size)),
                ("copybuf".to_string(), serde_json::json!(4095)),
            ]
            .into(),
            repeat: 0,
            status: Status::Ok,
            error: None,
            metrics: Some(m),
            integrity: None,
            cpu_sender: None,
            cpu_peer: None,
            histograms: BTreeMap::new(),
        }
    }

    #[test]
    fn crossover_is_where_zero_copy_stays_cheaper() {
        let rows = vec![
            row(COPY, 4096, 300.0, None),
            row(ZC, 4096, 400.0, Some(50.0)),
            row(COPY, 65536, 300.0, None),
            row(ZC, 65536, 250.0, Some(95.0)),
            row(COPY, 1 << 20, 300.0, None),
            row(ZC, 1 << 20, 200.0, Some(100.0)),
        ];
        let t = table(&rows, 4095);
        assert_eq!(t.lines.len(), 3);
        assert_eq!(t.lines[1].mapped_pct, Some(95.0));
        assert_eq!(t.crossovers[0].from_size, Some(65536));
        let text = render(&t);
        assert!(text.contains("from 64KiB on"), "{text}");
        let worse = vec![
            row(COPY, 4096, 100.0, None),
            row(ZC, 4096, 200.0, Some(1.0)),
        ];
        assert_eq!(table(&worse, 4095).crossovers[0].from_size, None);
        assert!(table(&worse, 0).lines.is_empty());
    }
}
