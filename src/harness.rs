//! The experiment harness: common options, the variant table, trials with their accounting,
//! and the run directory they fill.
//!
//! An experiment binary declares its variants as a table of [`Variant`]s (name, what it needs,
//! one function) and its parameter points, then calls [`Lab::run`]. For every variant the lab
//! checks the kernel's capabilities ([`Need`]); a variant that cannot run is recorded as skipped
//! with the reason, or — when the user asked for it by name — fails loudly. Each variant x point
//! runs `--warmup` untimed trials and `--repeat` measured ones; after every trial the summary,
//! histograms and metadata are rewritten atomically, so nothing measured is lost if a later
//! trial fails or the run is interrupted.
//!
//! Exit codes: 0 ran; 1 a variant failed or a requested one could not run; 2 bad usage;
//! 77 nothing requested could run here; 130/143 interrupted by SIGINT/SIGTERM.

mod experiment;
mod passes;
mod profile;

pub use experiment::{
    Analysis, EXIT_USAGE, Env, Experiment, Plan, UsageError, run, run_from, usage,
};

use crate::caps::{self, Caps};
use crate::measure::{Clock, Recorder, Usage, usage};
use crate::results::{self, Count, Integrity, Latency, Metrics, Row, Status, ZcCounts, hgrm};
use crate::ring::RingFlags;
use crate::sys;
use crate::units;
use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when nothing requested could run on this kernel (liburing's convention).
pub const EXIT_SKIP: u8 = 77;

/// Options every experiment takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Variants to run, comma-separated (default: all). A variant named here that cannot run on
    /// this kernel or with these permissions is an error, never silently skipped.
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Measured repeats per variant and parameter point (1 to 1000), or `auto`: at least 3
    /// (`auto:N`: at least N), more until the 95% interval of the headline figure's median is
    /// within +-3% of it, or the point's budget (`--point-budget`) is spent. Comparisons decide
    /// only from 6 repeats on (docs/method.md).
    #[arg(long, default_value = "3", value_parser = parse_repeat)]
    pub repeat: Repeat,
    /// With `--repeat auto`: the most measured time one point may take before it is reported as
    /// not settled (default: 12 trials' worth: 12 x --duration, or 10 s without one).
    #[arg(long, value_parser = passes::parse_duration)]
    pub point_budget: Option<std::time::Duration>,
    /// Measured time per trial, e.g. 200ms or 2s: the variant runs complete passes, each with
    /// its own integrity check, until their measured time reaches it (set-up between passes is
    /// not measured). Without it a trial is one pass of the sizes given.
    #[arg(long, value_parser = passes::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Untimed warm-up trials before the repeats.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub warmup: u32,
    /// Where run directories are created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Write into this existing run directory (as `<run-dir>/<experiment>/`) instead of creating
    /// a new one; the suite runner uses it so one run holds every experiment.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// CPU of the measured (sending) thread and of the peer thread: `SENDER,PEER`.
    #[arg(long, default_value = "0,1", value_parser = parse_cpus)]
    pub cpus: (usize, usize),
    /// Print only errors (the table still goes to the summary files).
    #[arg(long)]
    pub quiet: bool,
    /// List the variants, what each needs, and whether this machine can run it; then exit.
    #[arg(long)]
    pub list: bool,
    /// Check the arguments (variants, sizes, every parameter point) and print what a run
    /// would measure; then exit without measuring or writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Repeat the whole sweep (every variant at every point) this many times in one process:
    /// for soak runs, which watch one process's memory over a long run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Sample where the measured thread's CPU time goes (perf cpu-clock every 200 us of CPU,
    /// kernel call chains) in one extra untimed trial per variant and point: buckets and CPU
    /// copies per byte in each row's extras, folded stacks in `<variant>@<point>.folded`.
    /// Needs root or CAP_PERFMON; otherwise recorded as unknown with the reason.
    #[arg(long)]
    pub profile: bool,
    /// How long the profiling trial runs: passes until this much of the measured thread's CPU
    /// time (at 5000 samples per CPU second: 250ms gives ~1250 samples), or 3x as much
    /// measured time on a loaded machine.
    #[arg(long, default_value = "250ms", value_parser = passes::parse_duration)]
    pub profile_for: std::time::Duration,
    /// The order of the trials: `interleaved` takes the variants in turn at each point, one
    /// measured trial each, so that the machine's drift during a run falls on every variant
    /// alike and shows in their intervals; `sequential` runs all of a variant's trials before
    /// the next variant's.
    #[arg(long, value_enum, default_value_t = Order::Interleaved)]
    pub order: Order,
    /// Before each measured trial the lab times a cache line's round trip between the two
    /// CPUs (`extra.xcpu_rtt_ns`): over twice the lowest seen on this boot, the host has placed
    /// them apart (on VMs, for minutes at a time) and traffic between them runs slower. With
    /// this option a trial waits up to this long for them to come back together; without it,
    /// or when the wait runs out, the trial is measured and marked (`extra.cpus_apart`). A
    /// trial that ran on the measured CPU alone (`extra.one_cpu`) is out of the placement's
    /// reach and is not counted as measured apart.
    #[arg(long, value_parser = passes::parse_duration)]
    pub host_wait: Option<std::time::Duration>,
}

/// The order in which a run visits its variants and points.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Point by point; at each point the variants in turn, one measured trial per turn.
    Interleaved,
    /// Variant by variant; each point's trials in one go.
    Sequential,
}

/// What a run knows of one variant at one point between its turns.
#[derive(Clone, Default)]
struct PointState {
    /// Trials run, warm-ups included.
    rep: u32,
    /// Measured time of its trials, and wall time of its turns.
    measured_ns: u64,
    elapsed_ns: u64,
    /// System calls and bytes of the counting warm-up.
    counted: Option<(u64, u64)>,
    /// The profile's figures, for every row of the point.
    profiled: Option<Vec<(String, f64)>>,
    /// Settled, failed or skipped: no more turns.
    done: bool,
}

/// The next (variant, point) to give a turn, in [`Order`].
struct Schedule {
    order: Order,
    variants: usize,
    points: usize,
    v: usize,
    p: usize,
}

impl Schedule {
    fn new(order: Order, variants: usize, points: usize) -> Schedule {
        Schedule {
            order,
            variants,
            points,
            v: 0,
            p: 0,
        }
    }

    /// The next pair for which `open` holds; None when there is none left.
    fn next(&mut self, open: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
        if self.variants == 0 {
            return None;
        }
        match self.order {
            Order::Interleaved => {
                while self.p < self.points {
                    for k in 0..self.variants {
                        let v = (self.v + k) % self.variants;
                        if open(v, self.p) {
                            self.v = v + 1;
                            return Some((v, self.p));
                        }
                    }
                    (self.p, self.v) = (self.p + 1, 0);
                }
            }
            Order::Sequential => {
                while self.v < self.variants {
                    while self.p < self.points {
                        if open(self.v, self.p) {
                            return Some((self.v, self.p));
                        }
                        self.p += 1;
                    }
                    (self.v, self.p) = (self.v + 1, 0);
                }
            }
        }
        None
    }
}

/// How many measured repeats a point gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Repeat {
    /// The repeats always run (the count given, or 3 with `auto`).
    pub min: u32,
    /// More until the interval is tight, within the point's budget.
    pub auto: bool,
}

/// Repeats in `auto` mode: the least, the most, and how tight the interval must get.
pub const AUTO_MIN: u32 = 3;
pub const AUTO_MAX: u32 = 30;
/// Half-width of the 95% interval of the median, as a share of the median.
pub const AUTO_TIGHT: f64 = 0.03;

fn parse_repeat(s: &str) -> Result<Repeat, String> {
    let s = s.trim();
    if s == "auto" {
        return Ok(Repeat {
            min: AUTO_MIN,
            auto: true,
        });
    }
    if let Some(n) = s.strip_prefix("auto:") {
        return match n.parse::<u32>() {
            Ok(n) if (1..=AUTO_MAX).contains(&n) => Ok(Repeat { min: n, auto: true }),
            _ => Err(format!(
                "'{s}': expected auto:N with N from 1 to {AUTO_MAX}"
            )),
        };
    }
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(Repeat {
            min: n,
            auto: false,
        }),
        _ => Err(format!(
            "'{s}': expected a count from 1 to 1000, auto, or auto:N (at least N)"
        )),
    }
}

/// Parses `--cpus`: `SENDER,PEER` (or one CPU for both), each a CPU this machine has.
pub fn parse_cpus(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let p = |x: &str| {
        x.parse::<usize>()
            .map_err(|_| format!("'{x}' is not a CPU number"))
    };
    let (a, b) = match parts.as_slice() {
        [a] => (p(a)?, p(a)?),
        [a, b] => (p(a)?, p(b)?),
        _ => return Err(format!("'{s}': expected SENDER,PEER CPU numbers, e.g. 0,1")),
    };
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    for c in [a, b] {
        if c >= n.max(sys::cpu::online_count()) {
            return Err(format!("CPU {c} does not exist here ({n} CPUs)"));
        }
    }
    Ok((a, b))
}

/// A size parameter for clap: non-zero, with units.
pub fn size_arg(s: &str) -> Result<u64, String> {
    units::parse_size_nonzero(s).map_err(|e| e.to_string())
}

/// A list of sizes for clap.
pub fn size_list_arg(s: &str) -> Result<Vec<u64>, String> {
    units::parse_size_list(s).map_err(|e| e.to_string())
}

/// What a variant needs from the kernel or the permissions. Opcodes are the io-uring crate's
/// `CODE` constants (`Need::Op(opcode::SendZc::CODE)`) and setup flags [`caps::SetupFlag`], so a
/// misspelt need does not compile. Recorded in meta.json as `{"Op": "SEND_ZC"}`,
/// `{"SetupFlag": "SQPOLL"}` or the variant's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// io_uring with this opcode (`io_uring::opcode::X::CODE`).
    Op(u8),
    /// This io_uring setup flag.
    SetupFlag(caps::SetupFlag),
    /// SO_ZEROCOPY / MSG_ZEROCOPY on TCP and UDP sockets.
    SoZerocopy,
    /// IORING_SEND_ZC_REPORT_USAGE: the kernel says whether a zero-copy send was copied.
    SendZcReportUsage,
    /// Root (network namespaces, veth pairs).
    Root,
    /// Real O_DIRECT on the work filesystem.
    ODirect,
}

impl Serialize for Need {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Need::Op(c) => s.serialize_newtype_variant(
                "Need",
                0,
                "Op",
                caps::opcode_name(c).unwrap_or("unknown opcode"),
            ),
            Need::SetupFlag(f) => s.serialize_newtype_variant("Need", 1, "SetupFlag", f.name()),
            Need::SoZerocopy => s.serialize_unit_variant("Need", 2, "SoZerocopy"),
            Need::SendZcReportUsage => s.serialize_unit_variant("Need", 3, "SendZcReportUsage"),
            Need::Root => s.serialize_unit_variant("Need", 4, "Root"),
            Need::ODirect => s.serialize_unit_variant("Need", 5, "ODirect"),
        }
    }
}

impl Need {
    /// Why `caps` cannot satisfy this need, or None when it can.
    pub fn unmet(&self, caps: &Caps) -> Option<String> {
        let rel = &caps.kernel.release;
        match *self {
            Need::Op(code) => {
                if !caps.io_uring.available {
                    return Some(format!(
                        "io_uring unavailable: {}",
                        caps.io_uring
                            .unavailable_reason
                            .as_deref()
                            .unwrap_or("unknown reason")
                    ));
                }
                let op = caps::opcode_name(code).unwrap_or("(unknown)");
                (!caps.has_opcode(code)).then(|| match caps::opcode_min_kernel_code(code) {
                    Some(v) => {
                        format!("IORING_OP_{op} needs Linux {v}; this kernel ({rel}) lacks it")
                    }
                    None => format!("IORING_OP_{op} is not supported by this kernel ({rel})"),
                })
            }
            Need::SetupFlag(flag) => {
                if !caps.io_uring.available {
                    return Some("io_uring unavailable".into());
                }
                let f = flag.name();
                (!caps.has_setup_flag_typed(flag)).then(|| {
                    format!(
                        "IORING_SETUP_{f} needs Linux {}; this kernel ({rel}) refuses it",
                        flag.min_kernel()
                    )
                })
            }
            Need::SoZerocopy => (!caps.net.so_zerocopy)
                .then(|| format!("SO_ZEROCOPY needs Linux 4.14; refused here ({rel})")),
            Need::SendZcReportUsage => {
                (caps.io_uring.send_zc_report_usage != Some(true)).then(|| {
                    format!(
                        "IORING_SEND_ZC_REPORT_USAGE needs Linux 6.2; not available here ({rel})"
                    )
                })
            }
            Need::Root => (!caps.privileges.root)
                .then(|| "needs root (network namespaces and veth pairs)".to_string()),
            Need::ODirect => (!caps.odirect.real).then(|| {
                format!(
                    "needs real O_DIRECT; {} is {} ({})",
                    caps.odirect.path,
                    caps.odirect.fs_type,
                    caps.odirect.note.as_deref().unwrap_or("not direct I/O")
                )
            }),
        }
    }
}

/// A variant-level or point-level reason not to run, returned by a variant function.
#[derive(Debug)]
pub struct Skip {
    pub reason: String,
    /// True: only this parameter point; false: the whole variant.
    pub point_only: bool,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Skip {}

/// Skips the whole variant (e.g. the kernel refused a flag it exists to measure).
pub fn skip_variant(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Skip {
        reason: reason.into(),
        point_only: false,
    })
}

/// Skips the variant at this parameter point only (e.g. 1-byte buffers only for small files).
pub fn skip_point(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Skip {
        reason: reason.into(),
        point_only: true,
    })
}

/// Turns a ring error into a skip (unsupported) or a failure.
pub fn ring_err(e: crate::ring::RingError) -> anyhow::Error {
    match e {
        crate::ring::RingError::Unsupported(r) => skip_variant(r),
        crate::ring::RingError::Io(e) => anyhow::Error::new(e),
    }
}

/// One parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Size(u64),
    Int(u64),
    Text(String),
}

/// A parameter point: ordered `name=value` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point(pub Vec<(String, Param)>);

impl Point {
    pub fn new() -> Point {
        Point(Vec::new())
    }
    pub fn size(mut self, k: &str, v: u64) -> Point {
        self.0.push((k.into(), Param::Size(v)));
        self
    }
    pub fn int(mut self, k: &str, v: u64) -> Point {
        self.0.push((k.into(), Param::Int(v)));
        self
    }
    pub fn text(mut self, k: &str, v: &str) -> Point {
        self.0.push((k.into(), Param::Text(v.into())));
        self
    }
    fn find(&self, k: &str) -> Option<&Param> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }
    /// A numeric parameter (size or int); panics if the experiment did not define it, which is
    /// a bug in the experiment, not bad input.
    pub fn num(&self, k: &str) -> u64 {
        match self.find(k) {
            Some(Param::Size(v)) | Some(Param::Int(v)) => *v,
            _ => panic!("parameter point has no numeric '{k}'"),
        }
    }
    /// A text parameter.
    pub fn str(&self, k: &str) -> &str {
        match self.find(k) {
            Some(Param::Text(v)) => v,
            _ => panic!("parameter point has no text '{k}'"),
        }
    }
    /// `size=1MiB,chunk=4KiB`.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| match v {
                Param::Size(s) => format!("{k}={}", units::fmt_size(*s)),
                Param::Int(i) => format!("{k}={i}"),
                Param::Text(t) => format!("{k}={t}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
    fn json(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| {
                let j = match v {
                    Param::Size(s) | Param::Int(s) => json!(s),
                    Param::Text(t) => json!(t),
                };
                (k.clone(), j)
            })
            .collect()
    }
}

/// One way of doing the experiment's job.
pub struct Variant<C> {
    pub name: &'static str,
    /// One line: what the variant does, in kernel terms.
    pub about: &'static str,
    pub needs: &'static [Need],
    pub run: fn(&mut C, &mut Trial) -> anyhow::Result<()>,
}

/// A variant table, one row per variant: `NAME => function, [needs], "what it does";`. The
/// function may be a closure that calls one shared by several variants with their parameter
/// (`|ctx, t| nop(ctx, t, false, true)`).
/// A need is `op(Opcode)` (an io_uring opcode of `io_uring::opcode`), `setup(Flag)` (a
/// [`caps::SetupFlag`]) or a plain [`Need`] (`SoZerocopy`, `SendZcReportUsage`, `Root`,
/// `ODirect`).
///
/// ```ignore
/// const VARIANTS: &[Variant<MyExperiment>] = harness::variants![
///     names::URING_NOP => uring_nop, [op(Nop)],
///         "IORING_OP_NOP x batch, one io_uring_enter per batch";
/// ];
/// ```
#[macro_export]
macro_rules! variants {
    ($($name:expr => $run:expr, [$($kind:ident $(($arg:ident))?),* $(,)?], $about:expr;)*) => {
        &[$($crate::harness::Variant {
            name: $name,
            about: $about,
            needs: &[$($crate::variants!(@need $kind $($arg)?)),*],
            run: $run,
        }),*]
    };
    (@need op $op:ident) => { $crate::harness::Need::Op($crate::io_uring::opcode::$op::CODE) };
    (@need setup $flag:ident) => { $crate::harness::Need::SetupFlag($crate::caps::SetupFlag::$flag) };
    (@need $need:ident) => { $crate::harness::Need::$need };
}
pub use crate::variants;

/// What a completed transfer reports from inside [`Trial::measure`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    pub bytes: u64,
    pub ops: u64,
}

/// One trial of a variant at a point: the variant's function fills it.
pub struct Trial<'a> {
    pub point: &'a Point,
    pub clock: Clock,
    pub cpus: (usize, usize),
    pub caps: &'a Caps,
    syscalls: Option<&'a crate::sys::perf::PerfCounter>,
    /// The sampler of the profiling trial, enabled only around the measured closure.
    profiler: Option<&'a crate::sys::perf_sample::Sampler>,
    metrics: Option<Metrics>,
    hists: BTreeMap<String, Histogram<u64>>,
    peer: Option<Usage>,
    integrity: Option<Integrity>,
    ring: Option<RingFlags>,
    /// The other host's `zclab serve` when the user gave `--peer` (the harness connected it).
    pub remote: Option<&'a crate::net::remote::Peer>,
    /// The variant this trial runs.
    variant: &'a str,
    /// The lab's `ZCLAB_FAULT`, applied to the variant by [`Trial::fault_after`].
    fault: Option<&'a crate::net::peers::FaultSpec>,
}

impl Trial<'_> {
    /// The fault to inject into this trial's local receiver (`ZCLAB_FAULT`), as the byte count
    /// after which it resets the connection; None when no fault applies to this variant.
    pub fn fault_after(&self) -> Option<u64> {
        self.fault?.reset_point(self.variant)
    }

    /// The run's cancellation token (SIGINT/SIGTERM), to pass to loops that may block.
    pub fn cancel(&self) -> crate::sys::signal::Cancel {
        crate::sys::signal::Cancel::process()
    }

    /// Runs `f` as the measured part of the trial: the clock, the CPU and OS counters are read
    /// around it. `step` says what one latency sample is. `f` returns the bytes and operations
    /// it moved; it should return only when the transfer is complete (e.g. the peer has
    /// received the last byte).
    pub fn measure(
        &mut self,
        step: &str,
        f: impl FnOnce(&mut Recorder) -> anyhow::Result<Done>,
    ) -> anyhow::Result<()> {
        let mut rec = Recorder::new(self.clock);
        // The syscall counter is read right next to the measured closure, so the harness's own
        // /proc reads and getrusage calls are not counted (one read(2) of the counter is).
        let sq0 = usage::helper_threads("iou-sqp");
        let measured_cpus = [self.cpus.0, self.cpus.1];
        let cpu0 = crate::measure::noise::cpu_times(&measured_cpus);
        let u0 = usage::process()?;
        let sys0 = self.syscalls.map(|c| c.read());
        if let Some(s) = self.profiler {
            // A sampler that cannot be enabled yields no samples: the profile is then unknown.
            let _ = s.enable();
        }
        let reads0 = crate::measure::clock::readings();
        let t0 = rec.now();
        let done = f(&mut rec);
        let t1 = rec.now();
        let reads = crate::measure::clock::readings() - reads0 - 2;
        if let Some(s) = self.profiler {
            let _ = s.disable();
        }
        let done = done?;
        let sys1 = self.syscalls.map(|c| c.read());
        let u1 = usage::process()?;
        let sq1 = usage::helper_threads("iou-sqp");
        let cpu1 = crate::measure::noise::cpu_times(&measured_cpus);
        let wall_ns = self.clock.ns_between(t0, t1).max(1);
        let u = u1.since(&u0);
        let syscalls = match (sys0, sys1) {
            (Some(Ok(a)), Some(Ok(b))) => Count(Some(b.saturating_sub(a))),
            _ => Count::UNKNOWN,
        };
        let mib = done.bytes as f64 / (1u64 << 20) as f64;
        let per_mib = |v: f64| if mib > 0.0 { v / mib } else { 0.0 };
        let hist = rec.take();
        let sqpoll = usage::helper_threads_since(&sq0, &sq1);
        self.metrics = Some(Metrics {
            bytes: done.bytes,
            ops: done.ops,
            wall_ns,
            gbps: units::gbps(done.bytes, wall_ns),
            ops_per_s: done.ops as f64 * 1e9 / wall_ns as f64,
            user_ns: u.user_ns,
            sys_ns: u.sys_ns,
            sqpoll_ns: sqpoll,
            peer_user_ns: None,
            peer_sys_ns: None,
            cpu_ns_per_mib: per_mib((u.user_ns + u.sys_ns) as f64),
            sys_ns_per_mib: per_mib(u.sys_ns as f64),
            syscalls,
            syscalls_per_mib: syscalls.0.map(|s| per_mib(s as f64)),
            vcsw: u.vcsw,
            ivcsw: u.ivcsw,
            minflt: u.minflt,
            majflt: u.majflt,
            latency: Latency::from_histogram(step, &hist),
            ..Default::default()
        });
        self.hists.insert("step".into(), hist);
        // What measuring cost the measured thread: its clock readings per operation (peers
        // that do not time each operation do not pay it).
        if done.ops > 0 {
            let per_op = reads as f64 / done.ops as f64;
            self.set_extra("clock_reads_per_op", per_op);
            self.set_extra("clock_ns_per_op", per_op * self.clock.read_ns());
        }
        // Steal time on the measured CPUs during the trial: the hypervisor ran something else.
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            if let Some(share) = crate::measure::noise::share(&a, &b) {
                self.set_extra("steal_pct", share.steal_pct);
            }
            // How busy the other CPU was meanwhile (interrupts included): whether anything of
            // the trial ran there, for the host's placement of the two to touch it.
            if self.cpus.0 != self.cpus.1 {
                if let Some(other) = crate::measure::noise::share(&a[1..], &b[1..]) {
                    self.set_extra("other_cpu_busy_pct", other.busy_pct);
                }
            }
        }
        Ok(())
    }

    /// Records the peer thread's own usage (measured in that thread) and subtracts it from the
    /// process's, so the CPU figures are the measured side's alone. Call after [`Trial::measure`].
    pub fn set_peer(&mut self, peer: Usage) {
        if let Some(m) = self.metrics.as_mut() {
            m.user_ns = m.user_ns.saturating_sub(peer.user_ns);
            m.sys_ns = m.sys_ns.saturating_sub(peer.sys_ns);
            m.vcsw = m.vcsw.saturating_sub(peer.vcsw);
            m.ivcsw = m.ivcsw.saturating_sub(peer.ivcsw);
            m.minflt = m.minflt.saturating_sub(peer.minflt);
            m.majflt = m.majflt.saturating_sub(peer.majflt);
            let mib = m.bytes as f64 / (1u64 << 20) as f64;
            if mib > 0.0 {
                m.cpu_ns_per_mib = (m.user_ns + m.sys_ns) as f64 / mib;
                m.sys_ns_per_mib = m.sys_ns as f64 / mib;
            }
            m.peer_user_ns = Some(peer.user_ns);
            m.peer_sys_ns = Some(peer.sys_ns);
        }
        self.peer = Some(peer);
    }

    /// Records the usage of a peer on another host (`zclab serve`, measured in its own thread
    /// there) as the peer's CPU time. Unlike [`Trial::set_peer`] nothing is subtracted: that
    /// peer's CPU time was never part of this process's. Call after [`Trial::measure`].
    pub fn set_remote_peer(&mut self, peer: Usage) {
        if let Some(m) = self.metrics.as_mut() {
            m.peer_user_ns = Some(peer.user_ns);
            m.peer_sys_ns = Some(peer.sys_ns);
        }
        self.peer = Some(peer);
    }

    /// Records whether what arrived equals what was sent.
    pub fn set_integrity(&mut self, i: Integrity) {
        self.integrity = Some(i);
    }

    /// Records zero-copy accounting and the buffer-release latency histogram.
    pub fn set_zc(&mut self, counts: ZcCounts, release: Option<Histogram<u64>>) {
        if let Some(m) = self.metrics.as_mut() {
            m.zc = Some(counts);
            if let Some(h) = &release {
                m.extra_latency.insert(
                    "release".into(),
                    Latency::from_histogram("send issued to notification", h),
                );
            }
        }
        if let Some(h) = release {
            self.hists.insert("release".into(), h);
        }
    }

    /// Records a histogram measured outside [`Trial::measure`]'s recorder, e.g. in a peer thread.
    /// Kind `"step"` replaces the trial's step histogram and its latency summary (say in `step`
    /// where it was measured); any other kind is an extra distribution beside it. Call after
    /// [`Trial::measure`].
    pub fn set_histogram(&mut self, kind: &str, step: &str, h: Histogram<u64>) {
        if let Some(m) = self.metrics.as_mut() {
            let lat = Latency::from_histogram(step, &h);
            if kind == "step" {
                m.latency = lat;
            } else {
                m.extra_latency.insert(kind.into(), lat);
            }
        }
        self.hists.insert(kind.into(), h);
    }

    /// Records a variant-specific figure.
    pub fn set_extra(&mut self, name: &str, v: f64) {
        if let Some(m) = self.metrics.as_mut() {
            m.extra.insert(name.into(), v);
        }
    }

    /// Records a yes/no fact of the trial (O_DIRECT, O_NOATIME ...) as an extra of 1 or 0.
    pub fn set_flag(&mut self, name: &str, yes: bool) {
        self.set_extra(name, flag(yes));
    }

    /// Records the ring flags in force for this variant (written to the metadata).
    pub fn set_ring(&mut self, flags: &RingFlags) {
        self.ring = Some(flags.clone());
    }

    /// The metrics [`Trial::measure`] recorded, to derive per-operation figures from.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }
}

/// Progress events for the suite runner: with `ZCLAB_PROGRESS=1` in the environment, one line
/// `@progress {json}` on stderr before each trial (the runner turns them into its progress bar).
struct Progress {
    on: bool,
    done: u64,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            on: std::env::var_os("ZCLAB_PROGRESS").is_some_and(|v| v == "1"),
            done: 0,
            total,
        }
    }
    fn emit(&self, variant: &str, point: &str) {
        if self.on {
            eprintln!(
                "@progress {}",
                json!({"variant": variant, "point": point, "done": self.done, "total": self.total})
            );
        }
    }
    fn trial(&mut self, variant: &str, point: &str) {
        self.emit(variant, point);
        self.done += 1;
    }
    fn skip(&mut self, variant: &str, trials: u64) {
        self.done += trials;
        self.emit(variant, "skipped");
    }
}

/// Whether a point needs more repeats.
enum Settled {
    Yes,
    No,
    /// The budget ran out with the interval this wide (percent of the median, half-width).
    OutOfBudget(f64),
}

#[derive(Serialize, Clone)]
struct VariantMeta {
    name: String,
    about: String,
    needs: Vec<Need>,
    status: String,
    reason: Option<String>,
    requested: bool,
    ring: Option<RingFlags>,
    points_skipped: Vec<(String, String)>,
    /// With `--repeat auto`: points whose interval was still wider than +-3% when their
    /// budget ran out, with the half-width reached (percent of the median).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    points_unsettled: Vec<(String, f64)>,
}

/// The experiment's run: capabilities, run directory, and what has been measured so far.
pub struct Lab {
    pub name: &'static str,
    pub caps: Caps,
    pub clock: Clock,
    pub args: CommonArgs,
    pub dir: PathBuf,
    parameters: Value,
    started: String,
    rows: Vec<Row>,
    hists: BTreeMap<(String, String, String), Histogram<u64>>,
    variants: Vec<VariantMeta>,
    status: &'static str,
    /// Whether the syscall tracepoint can be counted here (root or CAP_PERFMON). It is opened
    /// only for the untimed counting trial: while it is registered every system call takes the
    /// kernel's slow entry path (measured here: getppid 145-210 ns without, 225-305 ns with).
    can_count: bool,
    syscalls_note: Option<String>,
    /// Kernel symbols and the reference copy when `--profile` can sample here.
    profiling: Option<profile::Profiling>,
    /// Why profiles are unknown (with `--profile`), run-wide.
    profile_note: Option<String>,
    /// Variant, point and reason of each profiling trial that gave no profile.
    profile_failures: Vec<(String, String, String)>,
    points: Vec<String>,
    /// The other host's description (`zclab serve`'s hello) when the peer side runs there.
    peer_meta: Option<Value>,
    /// The connection to that host, handed to every trial.
    pub(crate) peer: Option<crate::net::remote::Peer>,
    /// SIGINT/SIGTERM, as the run's cancellation token.
    pub cancel: sys::signal::Cancel,
    /// How quiet the machine was when the run started.
    pub noise: crate::measure::noise::Noise,
    /// The fault injected for tests (`ZCLAB_FAULT`), read once here.
    fault: Option<crate::net::peers::FaultSpec>,
    /// Why the run failed (status `failed`), recorded in meta.json as `error`.
    error: Option<String>,
    /// Where the host has the two measured CPUs, probed around every measured trial.
    placement: crate::measure::placement::Placement,
}

impl Lab {
    /// Probes the kernel, pins this thread to the sender CPU and opens the syscall counter.
    /// `parameters` are the experiment's own options, recorded in the metadata. The directories
    /// are created by [`Lab::run`] once the variant names are checked (`<results>/<new run>/
    /// <experiment>/`, or `<run-dir>/<experiment>/` with `--run-dir`).
    pub fn open(name: &'static str, args: &CommonArgs, parameters: Value) -> anyhow::Result<Lab> {
        let cancel = sys::signal::Cancel::install();
        let probe_dir = args.run_dir.clone().unwrap_or_else(|| args.results.clone());
        let caps = caps::probe(if probe_dir.exists() {
            &probe_dir
        } else {
            Path::new(".")
        });
        if let Err(e) = sys::cpu::pin_to(args.cpus.0) {
            bail!("cannot pin to CPU {}: {e}", args.cpus.0);
        }
        if let Some(d) = &args.run_dir {
            if !d.is_dir() {
                bail!("run directory {} does not exist", d.display());
            }
        }
        let bad = caps::invalid_hide_tokens(&std::env::var(caps::HIDE_ENV).unwrap_or_default());
        if !bad.is_empty() {
            bail!("{} has unknown tokens: {}", caps::HIDE_ENV, bad.join(", "));
        }
        let (can_count, syscalls_note) = match crate::sys::perf::syscalls_for_thread(0) {
            Ok(_) => (true, None),
            Err(e) => (
                false,
                Some(format!(
                    "syscall counting unavailable ({e}): recorded as unknown"
                )),
            ),
        };
        let fault = crate::net::peers::FaultSpec::from_env()?;
        let (profiling, profile_note) = if args.profile {
            match profile::Profiling::setup(&caps) {
                Ok(p) => (Some(p), None),
                Err(e) => {
                    if !args.quiet {
                        eprintln!("{name}: profiles unknown: {e}");
                    }
                    (None, Some(e))
                }
            }
        } else {
            (None, None)
        };
        let (_, started) = results::utc_now();
        let lab = Lab {
            name,
            caps,
            clock: Clock::new(),
            args: args.clone(),
            dir: PathBuf::new(),
            parameters,
            started,
            rows: Vec::new(),
            hists: BTreeMap::new(),
            variants: Vec::new(),
            status: "running",
            can_count,
            syscalls_note,
            profiling,
            profile_note,
            profile_failures: Vec::new(),
            points: Vec::new(),
            peer_meta: None,
            peer: None,
            cancel,
            noise: crate::measure::noise::sample(
                &[args.cpus.0, args.cpus.1],
                std::time::Duration::from_millis(200),
            ),
            fault,
            error: None,
            placement: crate::measure::placement::Placement::new(args.cpus),
        };

        Ok(lab)
    }

    /// Creates the experiment directory (and the run directory unless `--run-dir` names one):
    /// only once the request is known to be valid, so refused input leaves no files behind.
    fn create_dirs(&mut self) -> anyhow::Result<()> {
        let run_dir = match &self.args.run_dir {
            Some(d) => d.clone(),
            None => results::create_run_dir(
                &self.args.results,
                &self.caps.hostname,
                &self.caps.kernel.release,
            )
            .context("cannot create a run directory")?,
        };
        let dir = run_dir.join(self.name);
        std::fs::create_dir(&dir)
            .map_err(|e| results::named(e, "cannot create experiment directory", &dir))?;
        self.dir = dir;
        self.write_file("summary.jsonl", b"")?;
        self.write_file(
            "summary.csv",
            format!("{}\n", results::row::CSV_HEADER).as_bytes(),
        )?;
        self.write_meta()
    }

    fn meta(&self) -> Value {
        let (_, now) = results::utc_now();
        json!({
            "experiment": self.name,
            "zclab_version": env!("CARGO_PKG_VERSION"),
            "git_revision": git_revision(),
            "argv": std::env::args().collect::<Vec<_>>(),
            "started_utc": self.started,
            "updated_utc": now,
            "status": self.status,
            "error": self.error,
            "host": self.caps.hostname,
            "kernel": self.caps.kernel.release,
            "accelerator": std::env::var("ZCLAB_ACCEL").unwrap_or_else(|_| "native".into()),
            "clock": self.clock.info(),
            "placement": {"sender_cpu": self.args.cpus.0, "peer_cpu": self.args.cpus.1},
            "repeat": self.args.repeat.min,
            "repeat_auto": self.args.repeat.auto,
            "order": self.args.order,
            "warmup": self.args.warmup,
            "duration_ns": self.args.duration.map(|d| d.as_nanos() as u64),
            "parameters": self.parameters,
            "points": self.points,
            "variants": self.variants,
            "skipped": self.variants.iter().filter(|v| v.status == "skipped" || v.status == "unavailable").map(|v| json!({"variant": v.name, "reason": v.reason})).collect::<Vec<_>>(),
            "counters_note": self.syscalls_note,
            "syscalls_counted_in": if self.can_count { "the last untimed warm-up trial of each variant and point (the tracepoint slows every system call, so it is off in the timed trials)" } else { "nowhere: unknown" },
            "profile": profile::meta(self.args.profile, self.args.profile_for, self.profiling.as_ref(), self.profile_note.as_deref(), &self.profile_failures),
            "probe": self.caps,
            "peer": self.peer_meta,
            "noise": self.noise,
            "host_placement": self.placement.summary(),
        })
    }

    /// Records the peer host (its name, kernel, lab version and probe, as `zclab serve` described
    /// itself) in meta.json under `peer`, for runs whose peer side runs on another host.
    pub fn set_peer_meta(&mut self, peer: Value) {
        self.peer_meta = Some(peer);
    }

    fn write_meta(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.meta())?;
        self.write_file("meta.json", text.as_bytes())
    }

    /// The rows of the run so far (of the last round with `--rounds`).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The flame graph of a profile's folded stacks, beside them (`.svg` for `.folded`). One
    /// that cannot be drawn is a warning: the profile's figures and stacks are kept.
    fn write_flame(
        &self,
        folded_name: &str,
        variant: &str,
        label: &str,
        folded: &str,
    ) -> anyhow::Result<()> {
        let title = format!(
            "{} {variant} {label}: the measured thread's CPU time",
            self.name
        );
        match crate::report::flame::svg(&title, folded) {
            Ok(Some(svg)) => self.write_file(&profile::flame_name(folded_name), &svg),
            Ok(None) => Ok(()),
            Err(e) => {
                self.say(&format!(
                    "warning: no flame graph for {variant} {label}: {e}"
                ));
                Ok(())
            }
        }
    }

    pub(crate) fn write_file(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let p = self.dir.join(name);
        results::atomic_write(&p, bytes)
            .map_err(|e| anyhow!("cannot write {} in {}: {e}", name, self.dir.display()))
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.write_meta()
    }

    /// Records that the run failed, and why, in meta.json (status `failed`, `error`), unless
    /// it was interrupted or never created its directory. When the file cannot be replaced (a
    /// full disk), it is rewritten in place, compact and padded to its old length, which needs
    /// no new space; if even that cannot be done, meta.json keeps its last complete version.
    pub fn record_failure(&mut self, reason: &str) {
        if self.dir.as_os_str().is_empty() || self.status == "interrupted" {
            return;
        }
        self.status = "failed";
        self.error = Some(reason.to_string());
        if self.write_meta().is_ok() {
            return;
        }
        let p = self.dir.join("meta.json");
        let r = serde_json::to_vec(&self.meta())
            .map_err(std::io::Error::other)
            .and_then(|b| results::rewrite_in_place(&p, &b));
        if let Err(e) = r {
            eprintln!(
                "{}: cannot record the failure in {}: {e}",
                self.name,
                p.display()
            );
        }
    }

    /// Appends one row to summary.jsonl and summary.csv (each line in one write, then fsync; a
    /// write that fails, e.g. on a full disk, is cut back off so no partial line remains).
    /// Appending keeps a long run's memory and I/O flat, where rewriting grew with every row.
    fn append_row(&self, row: &Row) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(row)?;
        line.push('\n');
        self.append_file("summary.jsonl", line.as_bytes())?;
        self.append_file("summary.csv", format!("{}\n", row.to_csv()).as_bytes())
    }

    fn append_file(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let p = self.dir.join(name);
        results::append_line(&p, bytes)
            .map_err(|e| anyhow!("cannot write {} in {}: {e}", name, self.dir.display()))
    }

    /// Runs every selected variant at every point, writes the results, prints the table, and
    /// returns the exit code.
    pub fn run<C>(
        &mut self,
        variants: &[Variant<C>],
        points: &[Point],
        ctx: &mut C,
    ) -> anyhow::Result<ExitCode> {
        for v in &self.args.variants {
            if !variants.iter().any(|x| x.name == v) {
                let names: Vec<&str> = variants.iter().map(|x| x.name).collect();
                bail!(
                    "unknown variant '{v}' for {} (known: {})",
                    self.name,
                    names.join(", ")
                );
            }
        }
        self.create_dirs()?;
        self.points = points.iter().map(Point::label).collect();
        let explicit = !self.args.variants.is_empty();
        let selected = variants
            .iter()
            .filter(|v| !explicit || self.args.variants.iter().any(|x| x == v.name))
            .count();
        // The last warm-up trial counts system calls, the one before it (with --profile) takes
        // the profile; warm-ups are added where --warmup gives too few.
        let profiling_on = self.profiling.is_some();
        let warmups = self
            .args
            .warmup
            .max(u32::from(self.can_count) + u32::from(profiling_on));
        let profile_rep = profiling_on.then(|| warmups - 1 - u32::from(self.can_count));
        let total = (selected * points.len()) as u64 * u64::from(warmups + self.args.repeat.min);
        let mut progress = Progress::new(total);
        let mut failures = 0;
        let mut ran = 0;
        let mut requested_unrunnable = Vec::new();
        for round in 0..self.args.rounds {
            if round > 0 {
                // Long runs keep memory flat: the files hold every row, the table the last round.
                self.rows.clear();
            }
            // The variants that run this round, with their index in self.variants.
            let mut runnable: Vec<(&Variant<C>, usize, bool)> = Vec::new();
            for v in variants {
                if round > 0
                    && !self
                        .variants
                        .iter()
                        .any(|m| m.name == v.name && (m.status == "ran" || m.status == "failed"))
                {
                    continue; // later rounds repeat what ran in the first
                }
                let requested = self.args.variants.iter().any(|x| x == v.name);
                let mut meta = VariantMeta {
                    name: v.name.into(),
                    about: v.about.into(),
                    needs: v.needs.to_vec(),
                    status: "ran".into(),
                    reason: None,
                    requested,
                    ring: None,
                    points_skipped: Vec::new(),
                    points_unsettled: Vec::new(),
                };
                if explicit && !requested {
                    meta.status = "not-requested".into();
                    self.variants.push(meta);
                    continue;
                }
                if let Some(reason) = v.needs.iter().find_map(|n| n.unmet(&self.caps)) {
                    progress.skip(
                        v.name,
                        (points.len() as u64) * u64::from(warmups + self.args.repeat.min),
                    );
                    self.say(&format!("skip {}: {reason}", v.name));
                    meta.status = "skipped".into();
                    meta.reason = Some(reason.clone());
                    self.variants.push(meta);
                    if requested {
                        requested_unrunnable.push(format!("{}: {reason}", v.name));
                    }
                    self.flush()?;
                    continue;
                }
                let vi = if round == 0 {
                    self.variants.push(meta);
                    self.variants.len() - 1
                } else {
                    self.variants
                        .iter()
                        .position(|m| m.name == v.name)
                        .expect("checked above")
                };
                runnable.push((v, vi, requested));
            }
            let mut states = vec![vec![PointState::default(); points.len()]; runnable.len()];
            // A variant that turned out to be unable to run here (a Skip from its first trial).
            let mut gone = vec![false; runnable.len()];
            let mut schedule = Schedule::new(self.args.order, runnable.len(), points.len());
            'visits: while let Some((ri, pi)) = schedule.next(|r, p| !gone[r] && !states[r][p].done)
            {
                let (v, vi, requested) = runnable[ri];
                let p = &points[pi];
                let st = &mut states[ri][pi];
                let label = p.label();
                let budget_ns = self.point_budget_ns();
                let visit_started = std::time::Instant::now();
                let mut visit_waited_ns = 0u64;
                let mut measured_this_visit = 0u32;
                {
                    loop {
                        if st.rep >= warmups + self.args.repeat.min {
                            // Set-up between passes and trials counts against the budget
                            // too, at half weight: a point of tiny passes cannot run away.
                            let elapsed = st.elapsed_ns
                                + (visit_started.elapsed().as_nanos() as u64)
                                    .saturating_sub(visit_waited_ns);
                            let spent = st.measured_ns.max(elapsed / 2);
                            match self.settled(v.name, &label, spent, budget_ns) {
                                Settled::Yes => {
                                    st.done = true;
                                    break;
                                }
                                Settled::OutOfBudget(hw) => {
                                    if round == 0 {
                                        self.variants[vi]
                                            .points_unsettled
                                            .push((label.clone(), hw));
                                    }
                                    st.done = true;
                                    break;
                                }
                                Settled::No => {}
                            }
                        }
                        if self.args.order == Order::Interleaved && measured_this_visit > 0 {
                            break; // the other variants' turn at this point
                        }
                        st.rep += 1;
                        let rep = st.rep - 1;
                        if let Some(sig) = self.cancel.signal() {
                            // The signal came between trials: the trial it stopped is
                            // recorded, interrupted before it started.
                            let row = Row {
                                experiment: self.name.into(),
                                variant: v.name.into(),
                                point: label.clone(),
                                params: p.json(),
                                repeat: rep.saturating_sub(warmups) + round * self.args.repeat.min,
                                status: Status::Interrupted,
                                error: Some(format!(
                                    "interrupted by signal {sig} before the trial started"
                                )),
                                metrics: None,
                                integrity: None,
                                cpu_sender: Some(self.args.cpus.0),
                                cpu_peer: Some(self.args.cpus.1),
                                histograms: BTreeMap::new(),
                            };
                            self.append_row(&row)?;
                            self.rows.push(row);
                            return self.interrupted(sig);
                        }
                        let warm = rep < warmups;
                        let counter = if self.can_count && rep + 1 == warmups {
                            crate::sys::perf::syscalls_for_thread(0).ok()
                        } else {
                            None
                        };
                        let sampler = if profile_rep == Some(rep) {
                            // The measured thread only: with inherited per-CPU events (which would
                            // take the peer thread too) short passes gave far too few samples.
                            match crate::sys::perf_sample::Sampler::open(0) {
                                Ok(s) => Some(s),
                                Err(e) => {
                                    self.profile_failures.push((
                                        v.name.into(),
                                        label.clone(),
                                        format!("perf_event_open refused: {e}"),
                                    ));
                                    None
                                }
                            }
                        } else {
                            None
                        };
                        let mut prof = sampler
                            .as_ref()
                            .map(|s| crate::measure::profile::Profile::new(s.period_ns()));
                        // The peers' samples: each peer samples itself at its own period.
                        let mut prof_others = sampler.as_ref().map(|_| {
                            crate::measure::profile::Profile::new(
                                crate::sys::perf_sample::PEER_SAMPLE_PERIOD_NS,
                            )
                        });
                        progress.trial(v.name, &label);
                        // Warm-ups are one pass; with --duration a timed trial is as many
                        // passes as fill it (stopped early by a failure or a signal).
                        let want_ns = match self.args.duration {
                            Some(d) if !warm => d.as_nanos() as u64,
                            _ if sampler.is_some() => {
                                self.args.profile_for.as_nanos().max(1) as u64
                            }
                            _ => 0,
                        };
                        // A profile wants samples, which come with CPU time: on a loaded
                        // machine the thread gets less of it per measured second.
                        let enough = |a: &passes::Measured| {
                            if sampler.is_some() {
                                a.cpu_ns() >= want_ns || a.wall_ns() >= 3 * want_ns
                            } else {
                                a.wall_ns() >= want_ns
                            }
                        };
                        // An SQPOLL thread outlives its ring by up to tens of ms (the ring is
                        // torn down by a kernel worker) and polls on the peer CPU meanwhile:
                        // the next trial starts once it is gone (up to 2 s). Then where the
                        // host has the two CPUs now (measured trials only). Neither wait is
                        // the point's time.
                        let waiting = std::time::Instant::now();
                        sqpoll_gone();
                        let placed = (!warm).then(|| {
                            let cancel = &self.cancel;
                            self.placement
                                .before_trial(self.args.host_wait.unwrap_or_default(), || {
                                    cancel.is_cancelled()
                                })
                        });
                        visit_waited_ns += waiting.elapsed().as_nanos() as u64;
                        let mut acc: Option<passes::Measured> = None;
                        // Set-up between passes is not measured; it must not run away either.
                        let started = std::time::Instant::now();
                        let max_real_ns = want_ns.saturating_mul(3) + 300_000_000;
                        let mut ring = None;
                        let res = loop {
                            let mut trial = Trial {
                                point: p,
                                clock: self.clock,
                                cpus: self.args.cpus,
                                caps: &self.caps,
                                syscalls: counter.as_ref(),
                                profiler: sampler.as_ref(),
                                metrics: None,
                                hists: BTreeMap::new(),
                                peer: None,
                                integrity: None,
                                ring: None,
                                remote: self.peer.as_ref(),
                                variant: v.name,
                                fault: self.fault.as_ref(),
                            };
                            let profiling = sampler.is_some();
                            if acc.is_some() {
                                sqpoll_gone(); // the last pass's, as the last trial's above
                            }
                            crate::measure::profile::arm_peer_sampling(profiling);
                            let res = (v.run)(ctx, &mut trial);
                            crate::measure::profile::arm_peer_sampling(false);
                            let peers = crate::measure::profile::take_peer_samplers();
                            ring = trial.ring.take().or(ring);
                            if let (Some(s), Some(pr), Some(po), Some(pf)) = (
                                &sampler,
                                prof.as_mut(),
                                prof_others.as_mut(),
                                self.profiling.as_ref(),
                            ) {
                                pr.drain(s, &pf.syms);
                                for p in &peers {
                                    po.drain(p, &pf.syms);
                                }
                            }
                            let pass = passes::Measured {
                                metrics: trial.metrics,
                                hists: trial.hists,
                                integrity: trial.integrity,
                                passes: 1,
                            };
                            let acc = match acc.as_mut() {
                                Some(a) => {
                                    a.add(pass);
                                    a
                                }
                                None => acc.insert(pass),
                            };
                            if res.is_err()
                                || !acc.ok()
                                || enough(acc)
                                || started.elapsed().as_nanos() as u64 >= max_real_ns
                                || self.cancel.is_cancelled()
                            {
                                break res;
                            }
                        };
                        let one_cpu =
                            acc.as_ref()
                                .and_then(|a| a.metrics.as_ref())
                                .is_some_and(|m| {
                                    crate::measure::placement::one_cpu(
                                        m.peer_user_ns.is_some(),
                                        m.sqpoll_ns.unwrap_or(0),
                                        m.extra.get("other_cpu_busy_pct").copied(),
                                    )
                                });
                        let placed =
                            placed.and_then(|start| self.placement.after_trial(start, one_cpu));
                        // A signal that cut the trial short makes it the interrupted one,
                        // even when the passes it ran succeeded.
                        let res = match (res, self.cancel.signal()) {
                            (Ok(()), Some(sig)) => {
                                Err(anyhow!("interrupted by signal {sig} during the trial"))
                            }
                            (r, _) => r,
                        };
                        let passes::Measured {
                            metrics,
                            hists,
                            integrity,
                            ..
                        } = acc.expect("at least one pass");
                        if let Some(r) = ring {
                            self.variants[vi].ring = Some(r);
                        }
                        if let Err(e) = &res {
                            if let Some(s) = e.downcast_ref::<Skip>() {
                                let reason = s.reason.clone();
                                if s.point_only {
                                    // Recorded in meta.json; not printed: a sweep can skip many points.
                                    if round == 0 {
                                        self.variants[vi]
                                            .points_skipped
                                            .push((label.clone(), reason));
                                    }
                                    self.flush()?;
                                    st.done = true;
                                    continue 'visits;
                                }
                                self.say(&format!("skip {}: {reason}", v.name));
                                self.variants[vi].status = "skipped".into();
                                self.variants[vi].reason = Some(reason.clone());
                                if requested {
                                    requested_unrunnable.push(format!("{}: {reason}", v.name));
                                }
                                self.flush()?;
                                gone[ri] = true;
                                continue 'visits;
                            }
                        }
                        // Unregister the tracepoint before the timed trials.
                        drop(counter);
                        drop(sampler);
                        if let (Some(pr), Some(pf)) = (prof.take(), self.profiling.as_ref()) {
                            let bytes = metrics.as_ref().map_or(0, |m| m.bytes);
                            match &res {
                                Ok(()) => {
                                    let mut extras = Vec::new();
                                    match pf.summarise(&pr, bytes) {
                                        Ok(e) => {
                                            let name = profile::folded_name(v.name, &label);
                                            let folded = pr.folded_text();
                                            self.write_file(&name, folded.as_bytes())?;
                                            self.write_flame(&name, v.name, &label, &folded)?;
                                            extras.extend(e);
                                        }
                                        Err(why) => self.profile_failures.push((
                                            v.name.into(),
                                            label.clone(),
                                            why,
                                        )),
                                    }
                                    // The peers' profile stands on its own: a measured thread
                                    // that only waited while a peer worked has none.
                                    if let Some(po) = prof_others.take() {
                                        let more = pf.summarise_others(&po, bytes);
                                        if !more.is_empty() {
                                            let name = profile::folded_name(
                                                &format!("{}.threads", v.name),
                                                &label,
                                            );
                                            let folded = po.folded_text();
                                            self.write_file(&name, folded.as_bytes())?;
                                            self.write_flame(
                                                &name,
                                                &format!("{} (other threads)", v.name),
                                                &label,
                                                &folded,
                                            )?;
                                        }
                                        extras.extend(more);
                                    }
                                    if !extras.is_empty() {
                                        st.profiled = Some(extras);
                                    }
                                }
                                Err(e) => self.profile_failures.push((
                                    v.name.into(),
                                    label.clone(),
                                    format!("the profiling trial failed: {e:#}"),
                                )),
                            }
                        }
                        if warm && res.is_ok() {
                            if let Some(m) = &metrics {
                                if let Some(n) = m.syscalls.known() {
                                    st.counted = Some((n, m.bytes));
                                }
                            }
                            continue;
                        }
                        let repeat = rep.saturating_sub(warmups) + round * self.args.repeat.min;
                        let mut row = Row {
                            experiment: self.name.into(),
                            variant: v.name.into(),
                            point: label.clone(),
                            params: p.json(),
                            repeat,
                            status: Status::Ok,
                            error: None,
                            metrics,
                            integrity,
                            cpu_sender: Some(self.args.cpus.0),
                            cpu_peer: Some(self.args.cpus.1),
                            histograms: BTreeMap::new(),
                        };
                        if let (Some(m), Some((ns, apart))) = (row.metrics.as_mut(), placed) {
                            m.extra.insert("xcpu_rtt_ns".into(), ns);
                            m.extra.insert("cpus_apart".into(), flag(apart));
                            m.extra.insert("one_cpu".into(), flag(one_cpu));
                        }
                        if let (Some(m), Some(extras)) = (row.metrics.as_mut(), &st.profiled) {
                            for (k, v) in extras {
                                m.extra.insert(k.clone(), *v);
                            }
                        }
                        if let (Some(m), Some((n, bytes))) = (row.metrics.as_mut(), st.counted) {
                            // From the counting trial at this point: same work, tracepoint on.
                            m.syscalls = Count(Some(n));
                            m.syscalls_per_mib =
                                (bytes > 0).then(|| n as f64 * (1u64 << 20) as f64 / bytes as f64);
                        }
                        match res {
                            Err(e) => {
                                let sig = self.cancel.signal();
                                row.status = if sig.is_some() {
                                    Status::Interrupted
                                } else {
                                    Status::Error
                                };
                                row.error = Some(format!("{e:#}"));
                                row.metrics = None;
                                if sig.is_none() {
                                    failures += 1;
                                    eprintln!(
                                        "{}: {} at {label}{}: error: {e:#}",
                                        self.name,
                                        v.name,
                                        if warm { " (warm-up)" } else { "" }
                                    );
                                }
                            }
                            Ok(()) => {
                                if row.metrics.is_none() {
                                    row.status = Status::Error;
                                    row.error = Some(
                                    "variant returned without measuring (bug in the experiment)"
                                        .into(),
                                );
                                    failures += 1;
                                } else if !row.integrity.as_ref().is_some_and(|i| i.ok) {
                                    row.status = Status::Error;
                                    row.error = Some(match &row.integrity {
                                        None => {
                                            "no integrity check recorded (bug in the experiment)"
                                                .into()
                                        }
                                        Some(i) => format!(
                                            "integrity: {} expected {} ({} B), got {} ({} B)",
                                            i.method,
                                            i.expected,
                                            i.bytes_expected,
                                            i.got,
                                            i.bytes_got
                                        ),
                                    });
                                    failures += 1;
                                    eprintln!(
                                        "{}: {} at {label}: {}",
                                        self.name,
                                        v.name,
                                        row.error.as_deref().unwrap_or("")
                                    );
                                } else {
                                    ran += 1;
                                    // A variant that times no steps in user space (the
                                    // kernel's own generator) leaves its histogram empty.
                                    for (kind, h) in
                                        hists.into_iter().filter(|(_, h)| !h.is_empty())
                                    {
                                        let key = (v.name.to_string(), label.clone(), kind.clone());
                                        let agg = self.hists.entry(key).or_insert_with(
                                            crate::measure::recorder::new_histogram,
                                        );
                                        let _ = agg.add(&h);
                                        let text = hgrm::render(agg);
                                        let file = results::hgrm_name(v.name, &label, &kind);
                                        self.write_file(&file, text.as_bytes())?;
                                        row.histograms.insert(kind, file);
                                    }
                                }
                            }
                        }
                        let stop = row.status == Status::Interrupted;
                        if row.status == Status::Error {
                            self.variants[vi].status = "failed".into();
                            self.variants[vi]
                                .reason
                                .get_or_insert_with(|| row.error.clone().unwrap_or_default());
                        }
                        if let Some(m) = &row.metrics {
                            st.measured_ns += m.wall_ns;
                        }
                        measured_this_visit += 1;
                        self.append_row(&row)?;
                        self.rows.push(row);
                        self.flush()?;
                        if stop {
                            return self.interrupted(self.cancel.signal().unwrap_or(libc::SIGINT));
                        }
                        if self.rows.last().is_some_and(|r| r.status == Status::Error) {
                            // A failed trial ends this point; the next point and variant still run.
                            st.done = true;
                            continue 'visits;
                        }
                    }
                    st.elapsed_ns +=
                        (visit_started.elapsed().as_nanos() as u64).saturating_sub(visit_waited_ns);
                }
            }
        }
        self.status = "complete";
        self.flush()?;
        if !self.args.quiet {
            print!("{}", self.table());
            let loose: Vec<String> = self
                .variants
                .iter()
                .flat_map(|v| {
                    v.points_unsettled
                        .iter()
                        .map(move |(p, hw)| format!("{} {p} (+-{hw:.1}%)", v.name))
                })
                .collect();
            if !loose.is_empty() {
                println!(
                    "not settled within their budget (interval wider than +-{:.0}%): {}",
                    100.0 * AUTO_TIGHT,
                    loose.join(", ")
                );
            }
            if self.noise.noisy {
                println!(
                    "warning: the machine was noisy when the run started, figures may not hold: {}",
                    self.noise.reasons.join("; ")
                );
            }
            if let Some(line) = self.placement.summary().warning() {
                println!("warning: {line}");
            }
            println!("results: {}", self.dir.display());
        }
        for r in &requested_unrunnable {
            eprintln!(
                "{}: error: requested variant cannot run here: {r}",
                self.name
            );
        }
        Ok(if ran == 0 && failures == 0 {
            eprintln!("{}: nothing requested could run on this machine", self.name);
            ExitCode::from(EXIT_SKIP)
        } else if failures > 0 || !requested_unrunnable.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }

    /// The measured time one point may take with `--repeat auto`.
    fn point_budget_ns(&self) -> u64 {
        match (self.args.point_budget, self.args.duration) {
            (Some(b), _) => b.as_nanos() as u64,
            (None, Some(d)) => 12 * d.as_nanos() as u64,
            (None, None) => 10_000_000_000,
        }
    }

    /// Whether a point has its answer: fixed repeats are done when counted; `auto` when the
    /// headline figure's 95% interval is within +-3% of its median, or the budget is spent.
    fn settled(&self, variant: &str, point: &str, measured_ns: u64, budget_ns: u64) -> Settled {
        if !self.args.repeat.auto {
            return Settled::Yes;
        }
        let ok: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.variant == variant && r.point == point)
            .collect();
        if ok.iter().any(|r| r.status != Status::Ok) {
            return Settled::Yes; // a failed trial ends the point
        }
        let v: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.metrics.as_ref())
            .map(|m| crate::analysis::headline(m).1)
            .collect();
        let hw = crate::analysis::median_ci(&v).map_or(f64::INFINITY, |e| {
            if e.value > 0.0 {
                (e.hi - e.lo) / 2.0 / e.value
            } else {
                0.0
            }
        });
        if hw <= AUTO_TIGHT {
            Settled::Yes
        } else if measured_ns >= budget_ns || v.len() as u32 >= AUTO_MAX {
            Settled::OutOfBudget(100.0 * hw)
        } else {
            Settled::No
        }
    }

    fn interrupted(&mut self, sig: i32) -> anyhow::Result<ExitCode> {
        self.status = "interrupted";
        self.flush()?;
        eprintln!(
            "{}: interrupted by signal {sig}; results so far are in {}",
            self.name,
            self.dir.display()
        );
        Ok(ExitCode::from(128 + sig as u8))
    }

    fn say(&self, s: &str) {
        if !self.args.quiet {
            eprintln!("{}: {s}", self.name);
        }
    }

    /// The summary table: per variant and point, medians over the repeats (min-max for GB/s).
    pub fn table(&self) -> String {
        crate::report::table(&self.rows)
    }
}

/// The git revision of the source tree the binary was built from, with `-dirty` when it had
/// uncommitted changes; "unknown" outside a checkout.
pub fn git_revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", dir])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let dirty = out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown".into(),
    }
}

/// Lists variants for `--list`: name, needs, and whether this machine can run each.
pub fn list_variants<C>(name: &str, variants: &[Variant<C>], caps: &Caps) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "{name} variants on {} ({}):\n",
        caps.hostname, caps.kernel.release
    );
    for v in variants {
        let unmet = v.needs.iter().find_map(|n| n.unmet(caps));
        let _ = writeln!(
            s,
            "  {:<26} {}\n  {:<26} {}",
            v.name,
            v.about,
            "",
            unmet.map_or("runs here".to_string(), |r| format!("skipped here: {r}"))
        );
    }
    s
}

/// A yes/no figure as the rows hold it: 1 or 0.
fn flag(yes: bool) -> f64 {
    f64::from(u8::from(yes))
}

/// Waits (up to 2 s) until no SQPOLL thread of this process is left: one outlives its ring by
/// up to tens of ms, the ring being torn down by a kernel worker, and polls on the peer CPU
/// meanwhile, so a trial or pass started before it is gone shares that CPU with it.
fn sqpoll_gone() {
    let _ = sys::threads::wait_gone("iou-sqp", std::time::Duration::from_secs(2));
}

#[cfg(test)]
mod tests {
    use super::{Order, Schedule};

    /// The turns a schedule gives when every pair needs `turns[v][p]` turns.
    fn turns(order: Order, mut left: Vec<Vec<u32>>) -> Vec<(usize, usize)> {
        let mut s = Schedule::new(order, left.len(), left.first().map_or(0, Vec::len));
        let mut out = Vec::new();
        while let Some((v, p)) = s.next(|v, p| left[v][p] > 0) {
            left[v][p] -= 1;
            out.push((v, p));
        }
        out
    }

    #[test]
    fn interleaved_takes_variants_in_turn_point_by_point() {
        // Variant 1 settles after one turn at point 0; variant 0 is skipped at point 1.
        let got = turns(Order::Interleaved, vec![vec![3, 0], vec![1, 2]]);
        assert_eq!(got, [(0, 0), (1, 0), (0, 0), (0, 0), (1, 1), (1, 1)]);
    }

    #[test]
    fn sequential_finishes_a_variant_before_the_next() {
        let got = turns(Order::Sequential, vec![vec![2, 1], vec![1, 1]]);
        assert_eq!(got, [(0, 0), (0, 0), (0, 1), (1, 0), (1, 1)]);
    }

    #[test]
    fn nothing_to_run_is_no_turn() {
        assert!(turns(Order::Interleaved, vec![]).is_empty());
        assert!(turns(Order::Sequential, vec![vec![0, 0]]).is_empty());
    }
}
