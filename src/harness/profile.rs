//! The harness's side of `--profile`: set-up once per run (kernel symbols, the reference
//! copy), the figures one profiling trial adds to the rows, and what meta.json says.

use serde_json::{Value, json};

use crate::caps::Caps;
use crate::measure::profile::{self, COPY, Kallsyms, Profile, ReferenceCopy};
use crate::sys::perf_sample::SAMPLE_PERIOD_NS;

/// What profiling needs, found once per run.
pub(super) struct Profiling {
    pub(super) syms: Kallsyms,
    pub(super) reference: ReferenceCopy,
}

impl Profiling {
    /// Loads /proc/kallsyms and measures the reference copy; the error is the reason profiles
    /// are unknown in this run.
    pub(super) fn setup(caps: &Caps) -> Result<Profiling, String> {
        if caps.hidden.iter().any(|h| h == "perf") {
            return Err("perf sampling hidden by ZCLAB_HIDE=perf".into());
        }
        let syms = Kallsyms::load().map_err(|e| format!("kernel symbols unavailable: {e}"))?;
        let reference = profile::reference_copy(&std::env::temp_dir(), &syms)
            .map_err(|e| format!("reference copy not measured: {e}"))?;
        Ok(Profiling { syms, reference })
    }

    /// The row extras of one profile over `bytes` moved: `prof_samples`, `prof_lost`,
    /// `prof_<bucket>_pct` for every bucket, `prof_copy_ns_per_mib` and `copies_per_byte`.
    /// A profile without samples is no profile: the error says so.
    pub(super) fn summarise(&self, p: &Profile, bytes: u64) -> Result<Vec<(String, f64)>, String> {
        if p.samples == 0 {
            return Err("the profiling trial gave no samples".into());
        }
        let mut out = vec![
            ("prof_samples".to_string(), p.samples as f64),
            ("prof_lost".to_string(), p.lost as f64),
            ("prof_own".to_string(), p.own as f64),
        ];
        out.extend(self.figures(p, bytes, "prof_", ""));
        Ok(out)
    }

    /// The extras of the threads the measured thread created while sampled (peer thread,
    /// io-wq workers): `peer_prof_*`, `peer_copies_per_byte`, `peer_copy_sites`; nothing when
    /// no such thread ran.
    pub(super) fn summarise_others(&self, p: &Profile, bytes: u64) -> Vec<(String, f64)> {
        if p.samples == 0 {
            return Vec::new();
        }
        let mut out = vec![("peer_prof_samples".to_string(), p.samples as f64)];
        out.extend(self.figures(p, bytes, "peer_prof_", "peer_"));
        out
    }

    fn figures(&self, p: &Profile, bytes: u64, pre: &str, cpre: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for key in profile::bucket_keys() {
            out.push((format!("{pre}{key}_pct"), p.pct(key).unwrap_or(0.0)));
        }
        if bytes > 0 {
            let mib = bytes as f64 / (1u64 << 20) as f64;
            let copy_ns_per_mib = p.bucket_ns(COPY) as f64 / mib;
            out.push((format!("{pre}copy_ns_per_mib"), copy_ns_per_mib));
            out.push((
                format!("{cpre}copies_per_byte"),
                copy_ns_per_mib / self.reference.copy_ns_per_mib,
            ));
            // Counted rather than timed: the places that copy the payload, each taking at least
            // a quarter of a reference copy's time per MiB (a colder or hotter copy than the
            // reference's still counts as one).
            let sites = p.copy_sites_over(mib, self.reference.copy_ns_per_mib, COPY_SITE_SHARE);
            out.push((format!("{cpre}copy_sites"), sites.len() as f64));
        }
        out
    }
}

/// Least time per MiB, as a share of the reference copy's, for a copy site to count.
pub(super) const COPY_SITE_SHARE: f64 = 0.25;

/// File name of a point's folded stacks: `<variant>@<point>.folded` (a `/` in the label would
/// leave the directory, so it becomes `_`).
pub(super) fn folded_name(variant: &str, point: &str) -> String {
    format!("{variant}@{point}.folded").replace('/', "_")
}

/// File name of the flame graph drawn from the folded stacks in `folded_name`.
pub(super) fn flame_name(folded_name: &str) -> String {
    format!("{}.svg", folded_name.trim_end_matches(".folded"))
}

/// meta.json's `profile` section.
pub(super) fn meta(
    asked: bool,
    profile_for: std::time::Duration,
    p: Option<&Profiling>,
    note: Option<&str>,
    failures: &[(String, String, String)],
) -> Value {
    if !asked {
        return json!({"status": "not requested (--profile)"});
    }
    let buckets: Vec<Value> = profile::BUCKETS
        .iter()
        .map(|b| json!({"key": b.key, "about": b.about, "leaf_patterns": b.patterns}))
        .collect();
    json!({
        "status": if p.is_some() { "taken" } else { "unknown" },
        "reason": note,
        "event": "perf cpu-clock (software), kernel and user mode, kernel call chains",
        "period_ns": SAMPLE_PERIOD_NS,
        "rate_hz_of_cpu_time": 1e9 / SAMPLE_PERIOD_NS as f64,
        "taken_in": format!("one extra untimed trial per variant and point (passes until {} ms of the measured thread's CPU time, --profile-for), sampler on only inside the measured closure", profile_for.as_millis()),
        "threads": "the measured thread, and apart (peer_*, <variant>.threads@<point>.folded) the peer threads the lab starts, each sampling itself from its start to its end; io-wq workers and the SQPOLL thread are not sampled, so io_uring work done there is not in these figures",
        "user_code": "samples in user mode are one bucket, user (hashing not told apart)",
        "reference_copy": p.map(|p| json!({
            "what": "read(2) of a cached 16 MiB file into a 64 KiB buffer, copy bucket only",
            "copy_ns_per_mib": p.reference.copy_ns_per_mib,
            "mib": p.reference.mib,
            "samples": p.reference.profile.samples,
            "copy_pct": p.reference.profile.pct(COPY),
        })),
        "buckets": buckets,
        "copies_per_byte": "copy-bucket CPU time per MiB moved / reference copy time per MiB (a time ratio: a copy from colder memory than the reference's counts as more than one)",
        "copy_sites": format!("copy sites (first non-copy caller of a copy leaf) each taking at least {COPY_SITE_SHARE} of the reference copy's time per MiB moved: copies counted"),
        "failures": failures.iter().map(|(v, pt, why)| json!({"variant": v, "point": pt, "reason": why})).collect::<Vec<_>>(),
    })
}
