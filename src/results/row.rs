//! One summary row: a variant at a parameter point, one repeat.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A counter that may be unknown: serialized as a number, or as the string `"unknown"` when the
/// kernel or the permissions did not let the lab count it. Never a silent 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count(pub Option<u64>);

impl Count {
    pub const UNKNOWN: Count = Count(None);
    pub fn known(&self) -> Option<u64> {
        self.0
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) => s.serialize_u64(v),
            None => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(v) => Ok(Count(Some(v))),
            Raw::S(s) if s == "unknown" => Ok(Count(None)),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected a count or \"unknown\", got \"{s}\""
            ))),
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured, and what arrived equals what was sent.
    Ok,
    /// Failed (an error, or an integrity mismatch); `error` says why, and no metrics are given
    /// unless the transfer completed and only the check failed.
    Error,
    /// Stopped by SIGINT/SIGTERM.
    Interrupted,
}

/// Latency percentiles of one trial's histogram (ns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// What one sample is ("one sendfile call", "one read+send pair", ...).
    pub step: String,
    pub count: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    pub fn from_histogram(step: &str, h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                step: step.into(),
                ..Default::default()
            };
        }
        let q = |x: f64| h.highest_equivalent(h.value_at_quantile(x));
        Latency {
            step: step.into(),
            count: h.len(),
            mean_ns: h.mean(),
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            p9999_ns: q(0.9999),
            max_ns: h.highest_equivalent(h.max()),
        }
    }
}

/// Zero-copy accounting of one trial, as the zero-copy ledger ([`crate::zc::ledger`]) counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ZcCounts {
    /// Zero-copy sends issued.
    pub sends: u64,
    /// Bytes those sends carried.
    pub bytes: u64,
    /// Notifications received (io_uring notification CQEs, or error-queue messages).
    pub notifications: u64,
    /// Send ids covered by the notifications.
    pub ids_completed: u64,
    /// Sends the kernel reported as copied.
    pub copied: u64,
    /// Bytes of those copied sends.
    pub copied_bytes: u64,
    /// ENOBUFS answers that were retried after draining the error queue.
    pub enobufs_retries: u64,
    /// Percentage of bytes that were copied (0 = zero copy really happened); set by
    /// [`ZcCounts::with_copied_pct`].
    pub copied_pct: f64,
    /// Whether the kernel reports copied-versus-not at all; when false `copied` is unknown.
    pub usage_reported: bool,
}

impl ZcCounts {
    /// These counts with `copied_pct` computed from them: the one formula for the share of the
    /// bytes sent that the kernel copied after all (0 when nothing was sent).
    pub fn with_copied_pct(mut self) -> ZcCounts {
        self.copied_pct = if self.bytes == 0 {
            0.0
        } else {
            100.0 * self.copied_bytes as f64 / self.bytes as f64
        };
        self
    }

    /// The sum of two parts' counts (a trial measured in passes).
    pub fn merged(&self, b: &ZcCounts) -> ZcCounts {
        ZcCounts {
            sends: self.sends + b.sends,
            bytes: self.bytes + b.bytes,
            notifications: self.notifications + b.notifications,
            ids_completed: self.ids_completed + b.ids_completed,
            copied: self.copied + b.copied,
            copied_bytes: self.copied_bytes + b.copied_bytes,
            enobufs_retries: self.enobufs_retries + b.enobufs_retries,
            copied_pct: 0.0,
            usage_reported: self.usage_reported && b.usage_reported,
        }
        .with_copied_pct()
    }
}

/// Whether what arrived equals what was sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integrity {
    pub ok: bool,
    /// What was checked ("xxh3-64 of the received stream", "pattern check of every block").
    pub method: String,
    pub expected: String,
    pub got: String,
    pub bytes_expected: u64,
    pub bytes_got: u64,
}

/// What a completed trial measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub bytes: u64,
    pub ops: u64,
    pub wall_ns: u64,
    /// bytes / wall time, in GB/s (10^9 bytes per second).
    pub gbps: f64,
    pub ops_per_s: f64,
    /// CPU time of the side being measured (the process less the harness's peer threads),
    /// io_uring kernel helper threads included.
    pub user_ns: u64,
    pub sys_ns: u64,
    /// Of which the SQPOLL thread (None when the variant has none).
    pub sqpoll_ns: Option<u64>,
    /// The peer's (receiver's) own CPU time, measured in its thread.
    pub peer_user_ns: Option<u64>,
    pub peer_sys_ns: Option<u64>,
    /// (user + sys) ns per MiB moved, and sys alone.
    pub cpu_ns_per_mib: f64,
    pub sys_ns_per_mib: f64,
    /// System calls made by the measuring thread (tracepoint raw_syscalls:sys_enter).
    pub syscalls: Count,
    /// Per MiB moved; absent when syscalls are unknown.
    pub syscalls_per_mib: Option<f64>,
    pub vcsw: u64,
    pub ivcsw: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub latency: Latency,
    /// Extra latency distributions, e.g. `release` (zero-copy send to notification).
    #[serde(default)]
    pub extra_latency: BTreeMap<String, Latency>,
    pub zc: Option<ZcCounts>,
    /// Variant-specific figures (e.g. `mapped_bytes`), by name.
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

/// One row of `summary.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub experiment: String,
    pub variant: String,
    /// The parameter point as text, `name=value` pairs joined by commas.
    pub point: String,
    /// The same point as values (sizes in bytes).
    pub params: BTreeMap<String, serde_json::Value>,
    /// 0-based repeat index.
    pub repeat: u32,
    pub status: Status,
    pub error: Option<String>,
    pub metrics: Option<Metrics>,
    pub integrity: Option<Integrity>,
    /// CPUs the measuring thread and the peer were pinned to.
    pub cpu_sender: Option<usize>,
    pub cpu_peer: Option<usize>,
    /// `.hgrm` files (merged over repeats) by histogram kind, relative to the experiment directory.
    pub histograms: BTreeMap<String, String>,
}

/// CSV columns, in order; the flattened subset of a row that people read in a spreadsheet.
pub const CSV_HEADER: &str = "experiment,variant,point,repeat,status,bytes,ops,wall_ns,gbps,ops_per_s,user_ns,sys_ns,sqpoll_ns,peer_user_ns,peer_sys_ns,cpu_ns_per_mib,sys_ns_per_mib,syscalls,syscalls_per_mib,vcsw,ivcsw,minflt,majflt,lat_count,p50_ns,p90_ns,p99_ns,p999_ns,p9999_ns,max_ns,zc_copied_pct,integrity,error";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Row {
    /// A successful row of `metrics` at the point `params` (in that order; the point's text
    /// is `name=value` pairs of the raw values), with no integrity record, CPUs or histograms:
    /// rows made by analyses and tests rather than by a trial.
    pub fn measured(
        experiment: &str,
        variant: &str,
        params: &[(&str, serde_json::Value)],
        repeat: u32,
        metrics: Metrics,
    ) -> Row {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Row {
            experiment: experiment.into(),
            variant: variant.into(),
            point: params
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(","),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            repeat,
            status: Status::Ok,
            error: None,
            metrics: Some(metrics),
            integrity: None,
            cpu_sender: None,
            cpu_peer: None,
            histograms: BTreeMap::new(),
        }
    }

    /// The row as one CSV line (no newline); absent values are empty, unknown counters `unknown`.
    pub fn to_csv(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let m = self.metrics.as_ref();
        let f = |g: fn(&Metrics) -> String| opt(m.map(g));
        let status = match self.status {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Interrupted => "interrupted",
        };
        let fields = [
            csv_field(&self.experiment),
            csv_field(&self.variant),
            csv_field(&self.point),
            self.repeat.to_string(),
            status.to_string(),
            f(|m| m.bytes.to_string()),
            f(|m| m.ops.to_string()),
            f(|m| m.wall_ns.to_string()),
            f(|m| format!("{:.4}", m.gbps)),
            f(|m| format!("{:.1}", m.ops_per_s)),
            f(|m| m.user_ns.to_string()),
            f(|m| m.sys_ns.to_string()),
            opt(m.and_then(|m| m.sqpoll_ns).map(|v| v.to_string())),
            opt(m.and_then(|m| m.peer_user_ns).map(|v| v.to_string())),
            opt(m.and_then(|m| m.peer_sys_ns).map(|v| v.to_string())),
            f(|m| format!("{:.0}", m.cpu_ns_per_mib)),
            f(|m| format!("{:.0}", m.sys_ns_per_mib)),
            f(|m| m.syscalls.0.map_or("unknown".into(), |v| v.to_string())),
            f(|m| {
                m.syscalls_per_mib
                    .map_or("unknown".into(), |v| format!("{v:.2}"))
            }),
            f(|m| m.vcsw.to_string()),
            f(|m| m.ivcsw.to_string()),
            f(|m| m.minflt.to_string()),
            f(|m| m.majflt.to_string()),
            f(|m| m.latency.count.to_string()),
            f(|m| m.latency.p50_ns.to_string()),
            f(|m| m.latency.p90_ns.to_string()),
            f(|m| m.latency.p99_ns.to_string()),
            f(|m| m.latency.p999_ns.to_string()),
            f(|m| m.latency.p9999_ns.to_string()),
            f(|m| m.latency.max_ns.to_string()),
            opt(m
                .and_then(|m| m.zc.as_ref())
                .map(|z| format!("{:.2}", z.copied_pct))),
            opt(self
                .integrity
                .as_ref()
                .map(|i| if i.ok { "ok".into() } else { "MISMATCH".into() })),
            csv_field(self.error.as_deref().unwrap_or("")),
        ];
        fields.join(",")
    }
}

/// Largest figure a row may hold for a rate or a per-MiB cost (ns, op/s): far above anything
/// a machine measures, far below what would print as hundreds of digits.
const MAX_FIGURE: f64 = 1e15;
/// Largest throughput a row may hold, in GB/s.
const MAX_GBPS: f64 = 1e6;

fn in_range(what: &str, v: f64, max: f64) -> Result<(), String> {
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        let shown = if v.abs() < 1e6 {
            format!("{v}")
        } else {
            format!("{v:e}")
        };
        return Err(format!(
            "{what} is {shown}, expected a number from 0 to {max:e}"
        ));
    }
    Ok(())
}

impl Metrics {
    /// Every figure finite and in its range: no negative or infinite throughput, rates, costs
    /// or latencies; a copied share from 0 to 100 %; extra figures finite.
    pub fn check(&self) -> Result<(), String> {
        in_range("metrics.gbps", self.gbps, MAX_GBPS)?;
        in_range("metrics.ops_per_s", self.ops_per_s, MAX_FIGURE)?;
        in_range("metrics.cpu_ns_per_mib", self.cpu_ns_per_mib, MAX_FIGURE)?;
        in_range("metrics.sys_ns_per_mib", self.sys_ns_per_mib, MAX_FIGURE)?;
        if let Some(v) = self.syscalls_per_mib {
            in_range("metrics.syscalls_per_mib", v, MAX_FIGURE)?;
        }
        in_range("metrics.latency.mean_ns", self.latency.mean_ns, MAX_FIGURE)?;
        for (k, l) in &self.extra_latency {
            in_range(
                &format!("metrics.extra_latency.{k}.mean_ns"),
                l.mean_ns,
                MAX_FIGURE,
            )?;
        }
        if let Some(z) = &self.zc {
            in_range("metrics.zc.copied_pct", z.copied_pct, 100.0)?;
        }
        for (k, v) in &self.extra {
            if !v.is_finite() {
                return Err(format!(
                    "metrics.extra.{k} is {v}, expected a finite number"
                ));
            }
        }
        Ok(())
    }
}

/// Reads `summary.jsonl` text; the error names the line that does not parse or holds a figure
/// out of range ([`Metrics::check`]).
pub fn parse_jsonl(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let r: Row = serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
            if let Some(m) = &r.metrics {
                m.check().map_err(|e| format!("line {}: {e}", i + 1))?;
            }
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_a_string_not_zero() {
        let m = Metrics {
            syscalls: Count::UNKNOWN,
            ..Default::default()
        };
        let j = serde_json::to_string(&m).unwrap();
        assert!(j.contains("\"syscalls\":\"unknown\""), "{j}");
        let back: Metrics = serde_json::from_str(&j).unwrap();
        assert_eq!(back.syscalls, Count::UNKNOWN);
        assert!(serde_json::from_str::<Count>("\"zero\"").is_err());
        assert_eq!(
            CSV_HEADER.split(',').count(),
            Row {
                experiment: "e".into(),
                variant: "v".into(),
                point: "a=1,b=2".into(),
                params: Default::default(),
                repeat: 0,
                status: Status::Ok,
                error: Some("x, \"y\"".into()),
                metrics: Some(m),
                integrity: None,
                cpu_sender: None,
                cpu_peer: None,
                histograms: Default::default(),
            }
            .to_csv()
            .split(',')
            .count()
                - 2
        ); // the quoted point and the quoted error each hold one comma
    }
}
