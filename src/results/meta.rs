//! `meta.json` (one per experiment directory) and `suite.json` (one per suite run), typed.
//!
//! The files are written by the harness and `zclab run`; readers take them through these
//! structs instead of indexing JSON by strings. Keys that older files lack take their default
//! (`#[serde(default)]`), so every run under `results/reference/` still loads; keys a reader
//! does not know are ignored. The field order is the files' key order.

use crate::caps::{Caps, Kernel};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One experiment's `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub experiment: String,
    #[serde(default)]
    pub zclab_version: String,
    #[serde(default)]
    pub git_revision: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub started_utc: String,
    #[serde(default)]
    pub updated_utc: String,
    /// `running`, `complete`, `interrupted`, `failed`
    #[serde(default)]
    pub status: String,
    /// Why the run failed (status `failed`).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub kernel: String,
    /// `native`, `kvm`, or `tcg` (software emulation: timings not comparable).
    #[serde(default = "native")]
    pub accelerator: String,
    /// The clock the timings were taken with (`source`, `tsc_ticks_per_us`).
    #[serde(default)]
    pub clock: Value,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default)]
    pub warmup: u32,
    /// The experiment's own options, as it recorded them.
    #[serde(default)]
    pub parameters: Value,
    /// Parameter points, as labels (`name=value,...`).
    #[serde(default)]
    pub points: Vec<String>,
    #[serde(default)]
    pub variants: Vec<VariantMeta>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    #[serde(default)]
    pub counters_note: Option<String>,
    #[serde(default)]
    pub syscalls_counted_in: Option<String>,
    /// The kernel probe of the machine that ran it (`zclab probe --json`).
    #[serde(default = "unknown_caps", deserialize_with = "lenient_caps")]
    pub probe: Caps,
    /// The other host's description when the peer side ran there (`zclab serve`).
    #[serde(default)]
    pub peer: Option<Value>,
    /// How quiet the machine was when the experiment started (absent in older runs).
    #[serde(default)]
    pub noise: Option<crate::measure::noise::Noise>,
    /// Where the host had the two measured CPUs during the measured trials (absent in older
    /// runs).
    #[serde(default)]
    pub host_placement: Option<crate::measure::placement::PlacementSummary>,
    /// Measured time per trial (`--duration`), when trials ran by time.
    #[serde(default)]
    pub duration_ns: Option<u64>,
    /// `--repeat auto`: repeats until the interval was tight.
    #[serde(default)]
    pub repeat_auto: bool,
}

fn native() -> String {
    "native".into()
}

/// Where the measuring thread and the peer were pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    pub sender_cpu: Option<usize>,
    pub peer_cpu: Option<usize>,
}

/// One variant as the run saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VariantMeta {
    pub name: String,
    #[serde(default)]
    pub about: String,
    /// What it needs of the kernel (the harness's `Need`s, as written).
    #[serde(default)]
    pub needs: Vec<Value>,
    /// `ran`, `skipped`, `unavailable`, `failed`, ...
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub requested: bool,
    /// The ring setup flags it used, if it used a ring.
    #[serde(default)]
    pub ring: Option<Value>,
    /// (point, why) for points this variant did not run.
    #[serde(default)]
    pub points_skipped: Vec<(String, String)>,
}

/// A variant that did not run, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub variant: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reason: String,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl Meta {
    /// Why `variant` did not run (skipped or failed), if it did not: `"<variant> <status>:
    /// <reason>"`.
    pub fn not_run(&self, variant: &str) -> Option<String> {
        self.variants
            .iter()
            .find(|v| v.name == variant && (v.status == "skipped" || v.status == "failed"))
            .map(|v| {
                format!(
                    "{} {}: {}",
                    variant,
                    v.status,
                    v.reason.as_deref().unwrap_or("")
                )
            })
    }
}

/// A probe that says nothing: what a `meta.json` without one (or with one this lab cannot
/// read) stands for. Hostname and kernel are `?`.
pub fn unknown_caps() -> Caps {
    serde_json::from_value(caps_defaults()).expect("the default probe deserialises")
}

impl Default for Caps {
    /// [`unknown_caps`].
    fn default() -> Caps {
        unknown_caps()
    }
}

/// The default probe as JSON: every key present, with an empty or false value.
fn caps_defaults() -> Value {
    serde_json::json!({
        "kernel": {"release": "?", "version": "", "machine": "", "parsed": null},
        "hostname": "?",
        "io_uring": crate::caps::IoUring::default(),
        "net": crate::caps::Net::default(),
        "odirect": crate::caps::ODirect::default(),
        "memlock": crate::caps::Memlock::default(),
        "privileges": crate::caps::Privileges::default(),
        "counters": crate::caps::Counters::default(),
        "cpu": crate::caps::Cpu::default(),
        "clocksource": "",
        "hidden": [],
    })
}

/// Lays `over` onto `base`, object by object; `over`'s value wins where both have a key.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Reads a probe as written by any version of the lab: keys it lacks take their defaults; a
/// probe that cannot be read at all keeps what it names of the host and kernel, the rest
/// unknown.
pub fn caps_from_value(v: Value) -> Caps {
    if v.is_null() {
        return unknown_caps();
    }
    let mut full = caps_defaults();
    merge(&mut full, v.clone());
    serde_json::from_value(full).unwrap_or_else(|_| {
        let mut c = unknown_caps();
        if let Some(h) = v["hostname"].as_str() {
            c.hostname = h.into();
        }
        if let Some(r) = v["kernel"]["release"].as_str() {
            c.kernel = Kernel {
                release: r.into(),
                ..c.kernel
            };
        }
        c
    })
}

fn lenient_caps<'de, D: Deserializer<'de>>(d: D) -> Result<Caps, D::Error> {
    Ok(caps_from_value(Value::deserialize(d)?))
}

/// How one experiment of a suite run ended (`suite.json`'s `outcomes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub experiment: String,
    /// ok, failed, nothing-ran, interrupted, not-built, usage-error
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub note: Option<String>,
}

/// A suite run's `suite.json`. Every key is optional (a file written by an older lab lacks
/// some).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SuiteMeta {
    /// `quick` or `full`.
    pub preset: String,
    pub experiments: Vec<String>,
    pub started_utc: String,
    pub updated_utc: String,
    /// `running`, `complete`, `interrupted`, `failed` (the suite's own plots or report could
    /// not be written).
    pub status: String,
    /// Why the suite failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outcomes: Vec<Outcome>,
    pub argv: Vec<String>,
    pub git_revision: String,
    pub host: String,
    pub kernel: String,
    #[serde(deserialize_with = "lenient_caps")]
    pub probe: Caps,
}

impl SuiteMeta {
    /// The file's text: pretty JSON with the keys in the order serde_json gives a map (the
    /// order `suite.json` has always had).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&serde_json::to_value(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_meta_loads_with_defaults() {
        let m: Meta = serde_json::from_str(
            r#"{"experiment": "e", "probe": {"hostname": "h", "kernel": {"release": "6.1"},
                "io_uring": {"opcodes": ["NOP"]}},
                "skipped": [{"variant": "v", "reason": null}]}"#,
        )
        .unwrap();
        assert_eq!(m.accelerator, "native");
        assert_eq!(m.probe.hostname, "h");
        assert_eq!(m.probe.kernel.release, "6.1");
        assert_eq!(m.probe.io_uring.opcodes, vec!["NOP".to_string()]);
        assert_eq!(m.skipped[0].reason, "");
        let none: Meta = serde_json::from_str(r#"{"experiment": "e"}"#).unwrap();
        assert_eq!(none.probe.hostname, "?");
        // A probe of the wrong shape keeps the host and kernel it names.
        let odd: Meta = serde_json::from_str(
            r#"{"experiment": "e", "probe": {"hostname": "h", "kernel": {"release": "6.1"}, "cpu": 7}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                odd.probe.hostname.as_str(),
                odd.probe.kernel.release.as_str()
            ),
            ("h", "6.1")
        );
    }
}
