//! rr's tables: per variant and point, the medians over the ok repeats of transactions/s, the
//! client's latency percentiles and the CPU per transaction on each side; and the open-loop
//! trials' rates, asked and achieved.

use crate::analysis::median;
use crate::results::{Metrics, Row, Status};
use serde::Serialize;

/// One line of the table.
#[derive(Debug, Serialize)]
pub struct Tx {
    pub variant: String,
    pub point: String,
    pub tx_per_s: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub p9999_ns: f64,
    pub server_cpu_ns_per_tx: f64,
    pub client_cpu_ns_per_tx: f64,
}

/// The table's lines and its text, in the order the (variant, point) pairs first appear.
pub fn transactions(rows: &[Row]) -> (Vec<Tx>, String) {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows.iter().filter(|r| r.status == Status::Ok) {
        if !keys.contains(&(r.variant.as_str(), r.point.as_str())) {
            keys.push((&r.variant, &r.point));
        }
    }
    let mut v = Vec::new();
    let mut text = format!(
        "{:<20} {:<52} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}\n",
        "variant", "point", "tx/s", "p50", "p99", "p99.9", "p99.99", "srv cpu/tx", "cli cpu/tx"
    );
    for (variant, point) in keys {
        let ms: Vec<&Metrics> = rows
            .iter()
            .filter(|r| r.status == Status::Ok && r.variant == variant && r.point == point)
            .filter_map(|r| r.metrics.as_ref())
            .collect();
        let f = |g: &dyn Fn(&Metrics) -> f64| median(&ms.iter().map(|m| g(m)).collect::<Vec<_>>());
        let x = |k: &str| f(&|m| m.extra.get(k).copied().unwrap_or(f64::NAN));
        let t = Tx {
            variant: variant.into(),
            point: point.into(),
            tx_per_s: f(&|m| m.ops_per_s),
            p50_ns: f(&|m| m.latency.p50_ns as f64),
            p99_ns: f(&|m| m.latency.p99_ns as f64),
            p999_ns: f(&|m| m.latency.p999_ns as f64),
            p9999_ns: f(&|m| m.latency.p9999_ns as f64),
            server_cpu_ns_per_tx: x("server_cpu_ns_per_tx"),
            client_cpu_ns_per_tx: x("client_cpu_ns_per_tx"),
        };
        let us = |ns: f64| format!("{:.1}us", ns / 1e3);
        text += &format!(
            "{:<20} {:<52} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}\n",
            t.variant,
            t.point,
            t.tx_per_s,
            us(t.p50_ns),
            us(t.p99_ns),
            us(t.p999_ns),
            us(t.p9999_ns),
            us(t.server_cpu_ns_per_tx),
            us(t.client_cpu_ns_per_tx)
        );
        v.push(t);
    }
    (v, text)
}

/// One open-loop trial's rate.
#[derive(Debug, Serialize)]
pub struct Rate<'a> {
    pub variant: &'a str,
    pub point: &'a str,
    pub target: f64,
    pub achieved: f64,
    pub ok: bool,
    /// UDP: transactions whose request or response never arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<f64>,
}

/// Every ok open-loop trial's rate, and a text naming each that fell short (or saying that
/// none did); None without open-loop trials.
pub fn rates(rows: &[Row]) -> Option<(Vec<Rate<'_>>, String)> {
    let mut v = Vec::new();
    for r in rows.iter().filter(|r| r.status == Status::Ok) {
        let Some(m) = r.metrics.as_ref() else {
            continue;
        };
        if let (Some(&target), Some(&achieved), Some(&ok)) = (
            m.extra.get("rate_target"),
            m.extra.get("rate_achieved"),
            m.extra.get("rate_achieved_ok"),
        ) {
            v.push(Rate {
                variant: &r.variant,
                point: &r.point,
                target,
                achieved,
                ok: ok > 0.0,
                lost: m.extra.get("tx_lost").copied(),
            });
        }
    }
    if v.is_empty() {
        return None;
    }
    let mut text = String::new();
    for x in v.iter().filter(|x| !x.ok) {
        let lost = x
            .lost
            .filter(|&l| l > 0.0)
            .map_or(String::new(), |l| format!(" ({l:.0} transactions lost)"));
        text += &format!(
            "rr: open-loop rate NOT ACHIEVED: {} at {}: asked {:.0}/s, achieved {:.0}/s{lost}\n",
            x.variant, x.point, x.target, x.achieved
        );
    }
    if text.is_empty() {
        text = format!(
            "rr: every open-loop trial achieved its rate ({} trials)\n",
            v.len()
        );
    }
    Some((v, text))
}
