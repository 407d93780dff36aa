//! # syscall_floor: the cost of one trip into the kernel, the floor under every other number
//!
//! **Question.** What does one user/kernel round trip cost here (getppid(2), which does almost
//! nothing inside), and what does an io_uring submission cost per operation when NOPs are
//! batched 1, 8, 32 or 128 per io_uring_enter, with or without an SQPOLL kernel thread, with
//! or without a registered ring fd? Published: io_uring NOPs at 12-20 M/s; batching amortises
//! the system call.
//!
//! **Set-up.** The measured thread is pinned to the first CPU; the SQPOLL thread, when there is
//! one, to the peer CPU (its CPU time is included in the usage and shown apart). A clock read
//! and a histogram record (~20 ns) are over 10% of a NOP at batch 1 (~150 ns), so the clock is
//! read once per group of at least 64 NOPs (whole batches: 64 batches of 1, 2 of 32, 1 of 128)
//! and each group is recorded as one sample per NOP of its mean
//! (`Recorder::record_batch_since`); getppid is timed in blocks of 64 calls the same way.
//! Percentiles are therefore of group means, not of single operations; `ops_per_sample` in
//! each row says how many.
//!
//! **Integrity.** Every getppid returns the parent's pid (`std::os::unix::process::parent_id`);
//! every NOP completes with res 0 and the completions counted equal the submissions.
//!
//! **Variants.** See `VARIANTS`. getppid has no batching: it runs at the smallest batch point
//! only. On an SQPOLL ring the loop publishes a batch and spins on the completion queue: no
//! system call unless the SQ thread went to sleep.
//!
//! **Parameters.** `--batches` (NOPs per io_uring_enter), `--ops` (operations per trial).
//!
//! **Output.** Besides the standard run directory, a per-operation table (ns/op = wall time /
//! operations; p50/p99/p99.99 of the batch means) and `floor.json` with the same figures and
//! the batched-NOP to getppid ratio (claim `nop-rate`).
//!
//! **Minimum kernel.** getppid, clock-gettime: any; NOP 5.1; SQPOLL without root 5.11; registered ring fd 5.18.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use std::process::ExitCode;
use zclab::catalog::{Entry, syscall_floor as names};
use zclab::harness::{self, Analysis, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::results::{Integrity, Metrics, Row, Status};
use zclab::ring::{Ring, RingConfig};
use zclab::sys::proc::getppid_raw;
use zclab::units;
use zclab::uring::sock::NopRunner;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<SyscallFloor>] = harness::variants![
    names::GETPPID => getppid, [], "syscall(SYS_getppid): one user/kernel round trip that does nothing inside";
    names::CLOCK_GETTIME => clock_gettime, [], "clock_gettime(CLOCK_MONOTONIC) through the vDSO: a call that does not enter the kernel";
    names::URING_NOP => |ctx, t| nop(ctx, t, false, false), [op(Nop)], "IORING_OP_NOP x batch, one io_uring_enter(GETEVENTS) per batch";
    names::URING_NOP_REGRING => |ctx, t| nop(ctx, t, false, true), [op(Nop)], "as uring-nop, through a registered ring fd (IORING_ENTER_REGISTERED_RING)";
    names::URING_NOP_SQPOLL => |ctx, t| nop(ctx, t, true, false), [op(Nop), setup(SqPoll)], "IORING_OP_NOP x batch on an SQPOLL ring: published to the SQ thread, completions polled, no system call";
    names::URING_NOP_SQPOLL_REGRING => |ctx, t| nop(ctx, t, true, true), [op(Nop), setup(SqPoll)], "as uring-nop-sqpoll, with a registered ring fd for the (rare) wake-up enters";
];

/// getppid calls per clock read.
const GETPPID_BLOCK: u64 = 64;
/// The largest NOP batch: what one ring's submission queue takes.
const MAX_BATCH: u64 = 1024;

/// Submission queue entries for a NOP batch: twice the batch (an SQPOLL thread can post a
/// completion before it releases the entry), at least 8; sized to the batch as t/io_uring
/// sizes its ring to the queue depth, so that the entries the loop cycles through stay in
/// cache.
fn ring_entries(batch: u64) -> u32 {
    (2 * batch).next_power_of_two().clamp(8, 2 * MAX_BATCH) as u32
}

#[derive(clap::Args, Debug)]
struct Args {
    /// NOPs per io_uring_enter, comma-separated (1 to 1024).
    #[arg(long, default_value = "1,8,32,128", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    batches: Vec<u64>,
    /// Operations per trial (rounded up to whole batches and whole blocks of 64 getppid calls).
    #[arg(long, default_value = "256Ki", value_parser = ops_arg)]
    ops: u64,
    /// Setup flags of the NOP variants' ring without SQPOLL: `tuned`, the lab's usual ring
    /// (COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN where the kernel takes them, as fio 3.33's
    /// t/io_uring asks too), or `none`, a plain ring, to compare with a tool that sets none.
    #[arg(long, value_enum, default_value_t = RingFlags::Tuned)]
    ring_flags: RingFlags,
}

#[derive(clap::ValueEnum, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RingFlags {
    Tuned,
    None,
}

fn ops_arg(s: &str) -> Result<u64, String> {
    // Accepts counts such as 1000000, 1M (10^6) or 1Mi (2^20).
    let t = s.trim();
    let units = [
        ("Mi", 1u64 << 20),
        ("Ki", 1 << 10),
        ("M", 1_000_000),
        ("K", 1_000),
    ];
    let (num, mult) = zclab::units::strip_unit(t, &units, 1);
    let v: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a count (e.g. 1000000, 1M, 1Mi)"))?;
    match v.checked_mul(mult) {
        Some(0) => Err(format!("'{s}': the operation count must be at least 1")),
        Some(n) if n <= 1 << 36 => Ok(n),
        _ => Err(format!("'{s}': too many operations (at most 2^36)")),
    }
}

struct SyscallFloor {
    args: Args,
    min_batch: u64,
}

impl Experiment for SyscallFloor {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        if args.batches.is_empty() {
            return Err(harness::usage("--batches needs at least one batch size"));
        }
        let parameters = json!({
            "batches": args.batches, "ops": args.ops, "getppid_block": GETPPID_BLOCK,
            "ring_entries": "twice the batch, at least 8 (a power of two)",
            "ring_flags": args.ring_flags,
            "timing": "NOPs: clock read once per 64 NOPs rounded up to whole batches; getppid: once per 64 calls; each group recorded as one sample per operation of its mean",
        });
        let mut batches = args.batches.clone();
        batches.sort_unstable();
        batches.dedup();
        let points = batches
            .iter()
            .map(|&b| Point::new().int("batch", b))
            .collect();
        let min_batch = batches[0];
        Ok(Plan::new(
            SyscallFloor { args, min_batch },
            points,
            parameters,
        ))
    }

    fn analyse(&self, rows: &[Row], _common: &CommonArgs) -> Result<Vec<Analysis>> {
        report(rows)
    }
}

fn main() -> ExitCode {
    harness::run::<SyscallFloor>()
}

fn getppid(ctx: &mut SyscallFloor, t: &mut Trial) -> Result<()> {
    let expected = std::os::unix::process::parent_id() as i32;
    let step = "one getppid(2) system call (mean of a block of 64 timed together)";
    let (calls, wrong) = unbatched(ctx, t, "getppid", step, || getppid_raw() != expected)?;
    t.set_integrity(Integrity {
        ok: wrong == 0,
        method: "every getppid returned the parent's pid".into(),
        expected: format!("{calls} x pid {expected}"),
        got: format!("{} right, {wrong} wrong", calls - wrong),
        bytes_expected: 0,
        bytes_got: 0,
    });
    Ok(())
}

/// A clock read in user space (the vDSO's clock_gettime, what `Instant::now` calls): the cost
/// of a call without the trip into the kernel, to set beside getppid's.
fn clock_gettime(ctx: &mut SyscallFloor, t: &mut Trial) -> Result<()> {
    let mut last = std::time::Instant::now();
    let step = "one clock_gettime(CLOCK_MONOTONIC) (mean of a block of 64 timed together)";
    let (calls, backwards) = unbatched(ctx, t, "clock-gettime", step, || {
        let now = std::hint::black_box(std::time::Instant::now());
        let back = now < last;
        last = now;
        back
    })?;
    t.set_integrity(Integrity {
        ok: backwards == 0,
        method: "CLOCK_MONOTONIC never went backwards between consecutive reads".into(),
        expected: format!("{calls} non-decreasing readings"),
        got: format!("{backwards} went backwards"),
        bytes_expected: 0,
        bytes_got: 0,
    });
    Ok(())
}

/// Times `--ops` calls of `call` (which says whether its answer was wrong) in blocks of
/// [`GETPPID_BLOCK`], at the smallest batch point only (a call has no batching); returns the
/// calls made and the wrong answers.
fn unbatched(
    ctx: &SyscallFloor,
    t: &mut Trial,
    name: &str,
    step: &str,
    mut call: impl FnMut() -> bool,
) -> Result<(u64, u64)> {
    if t.point.num("batch") != ctx.min_batch {
        return Err(harness::skip_point(format!(
            "{name} has no batching: measured once, at batch={}",
            ctx.min_batch
        )));
    }
    let blocks = ctx.args.ops.div_ceil(GETPPID_BLOCK);
    let mut wrong = 0u64;
    t.measure(step, |rec| {
        let mut s = rec.now();
        for _ in 0..blocks {
            for _ in 0..GETPPID_BLOCK {
                wrong += u64::from(call());
            }
            s = rec.record_batch_since(s, GETPPID_BLOCK);
        }
        Ok(Done {
            bytes: 0,
            ops: blocks * GETPPID_BLOCK,
        })
    })?;
    Ok((blocks * GETPPID_BLOCK, wrong))
}

fn nop(ctx: &mut SyscallFloor, t: &mut Trial, sqpoll: bool, regring: bool) -> Result<()> {
    if regring && !t.caps.io_uring.register_ring_fd {
        return Err(harness::skip_variant(format!(
            "IORING_REGISTER_RING_FDS needs Linux 5.18; refused here ({})",
            t.caps.kernel.release
        )));
    }
    let batch = t.point.num("batch");
    if sqpoll {
        settle_sq_threads();
    }
    let cfg = if sqpoll {
        RingConfig::sqpoll(ring_entries(batch), 1000, Some(t.cpus.1 as u32))
    } else if ctx.args.ring_flags == RingFlags::Tuned {
        RingConfig::tuned(ring_entries(batch))
    } else {
        RingConfig {
            entries: ring_entries(batch),
            ..Default::default()
        }
    };
    let mut ring = Ring::new(&cfg).map_err(harness::ring_err)?;
    let mut flags = ring.flags().clone();
    let batches = ctx.args.ops.div_ceil(batch);
    let mut nr = NopRunner::new(&mut ring, regring).context("cannot prepare the NOP loop")?;
    flags.registered_ring_fd = nr.registered_ring_fd();
    t.set_ring(&flags);
    let step = if sqpoll {
        "one NOP (mean of a group of batches, each published to the SQ thread and reaped by polling the CQ)"
    } else {
        "one NOP (mean of a group of batches, each submitted and reaped by one io_uring_enter)"
    };
    t.measure(step, |rec| {
        nr.run(batch as usize, batches, rec)?;
        Ok(Done {
            bytes: 0,
            ops: batches * batch,
        })
    })?;
    let c = nr.counts;
    let want = batches * batch;
    t.set_extra(
        "ops_per_sample",
        (NopRunner::batches_per_sample(batch as usize) * batch) as f64,
    );
    t.set_integrity(Integrity {
        ok: c.bad == 0 && c.completed == c.submitted && c.submitted == want,
        method: "every NOP completed with res 0; completions == submissions".into(),
        expected: format!("{want} submitted, {want} completed, 0 failed"),
        got: format!(
            "{} submitted, {} completed, {} failed",
            c.submitted, c.completed, c.bad
        ),
        bytes_expected: 0,
        bytes_got: 0,
    });
    Ok(())
}

/// Waits (up to 2 s) until the SQ threads of rings closed earlier have exited: the harness
/// sums the CPU time of every `iou-sqp` thread before and after a trial, and a thread that
/// exits in between would make the SQPOLL figure of this trial too small.
fn settle_sq_threads() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let lingering = || {
        std::fs::read_dir("/proc/self/task").is_ok_and(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("iou-sqp"))
            })
        })
    };
    while lingering() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Per variant and batch: medians over the ok repeats of the per-operation figures.
struct Floor {
    variant: String,
    batch: u64,
    ns_per_op: f64,
    cpu_ns_per_op: f64,
    sqpoll_ns_per_op: Option<f64>,
    syscalls_per_op: Option<f64>,
    p50: f64,
    p99: f64,
    p9999: f64,
    mops: f64,
}

fn floors(rows: &[Row]) -> Vec<Floor> {
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in rows.iter().filter(|r| r.status == Status::Ok) {
        let b = r.params.get("batch").and_then(Value::as_u64).unwrap_or(0);
        if !keys.contains(&(r.variant.clone(), b)) {
            keys.push((r.variant.clone(), b));
        }
    }
    keys.into_iter()
        .map(|(v, b)| {
            let ms: Vec<_> = rows
                .iter()
                .filter(|r| {
                    r.status == Status::Ok
                        && r.variant == v
                        && r.params.get("batch").and_then(Value::as_u64) == Some(b)
                })
                .filter_map(|r| r.metrics.as_ref())
                .collect();
            let med = |f: &dyn Fn(&Metrics) -> f64| {
                zclab::analysis::median(&ms.iter().map(|m| f(m)).collect::<Vec<_>>())
            };
            let per = |x: u64, m: &Metrics| x as f64 / m.ops.max(1) as f64;
            Floor {
                variant: v,
                batch: b,
                ns_per_op: med(&|m| per(m.wall_ns, m)),
                cpu_ns_per_op: med(&|m| per(m.user_ns + m.sys_ns, m)),
                sqpoll_ns_per_op: ms
                    .iter()
                    .all(|m| m.sqpoll_ns.is_some())
                    .then(|| med(&|m| per(m.sqpoll_ns.unwrap_or(0), m))),
                syscalls_per_op: ms
                    .iter()
                    .all(|m| m.syscalls.known().is_some())
                    .then(|| med(&|m| per(m.syscalls.known().unwrap_or(0), m))),
                p50: med(&|m| m.latency.p50_ns as f64),
                p99: med(&|m| m.latency.p99_ns as f64),
                p9999: med(&|m| m.latency.p9999_ns as f64),
                mops: med(&|m| m.ops_per_s / 1e6),
            }
        })
        .collect()
}

/// One row of `floor.json`.
#[derive(Serialize)]
struct PerOp<'a> {
    variant: &'a str,
    batch: u64,
    ns_per_op: f64,
    cpu_ns_per_op: f64,
    sqpoll_ns_per_op: Option<f64>,
    syscalls_per_op: Option<f64>,
    p50_ns: f64,
    p99_ns: f64,
    p9999_ns: f64,
    mops_per_s: f64,
    ratio_to_getppid: Option<f64>,
}

/// `floor.json`: the per-operation figures and the nop-rate comparison.
#[derive(Serialize)]
struct FloorReport<'a> {
    per_op: Vec<PerOp<'a>>,
    nop_rate: Value,
}

/// The per-operation table and the batched-NOP to getppid ratio (claim `nop-rate`), as
/// `floor.json`.
fn report(rows: &[Row]) -> Result<Vec<Analysis>> {
    let fl = floors(rows);
    if fl.is_empty() {
        return Ok(Vec::new());
    }
    let getppid = fl
        .iter()
        .find(|f| f.variant == names::GETPPID)
        .map(|f| f.ns_per_op);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<26} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>10}\n",
        "per operation",
        "batch",
        "ns/op",
        "p50",
        "p99",
        "p99.99",
        "Mops/s",
        "cpu ns/op",
        "sqpoll ns",
        "sysc/op"
    ));
    let mut per_op = Vec::new();
    for f in &fl {
        out.push_str(&format!(
            "{:<26} {:>6} {:>9.1} {:>8} {:>8} {:>8} {:>8.2} {:>10.1} {:>9} {:>10}\n",
            f.variant,
            f.batch,
            f.ns_per_op,
            units::fmt_ns(f.p50),
            units::fmt_ns(f.p99),
            units::fmt_ns(f.p9999),
            f.mops,
            f.cpu_ns_per_op,
            f.sqpoll_ns_per_op.map_or("-".into(), |s| format!("{s:.1}")),
            f.syscalls_per_op
                .map_or("unknown".into(), |s| format!("{s:.3}")),
        ));
        per_op.push(PerOp {
            variant: &f.variant,
            batch: f.batch,
            ns_per_op: f.ns_per_op,
            cpu_ns_per_op: f.cpu_ns_per_op,
            sqpoll_ns_per_op: f.sqpoll_ns_per_op,
            syscalls_per_op: f.syscalls_per_op,
            p50_ns: f.p50,
            p99_ns: f.p99,
            p9999_ns: f.p9999,
            mops_per_s: f.mops,
            ratio_to_getppid: getppid.filter(|g| *g > 0.0).map(|g| f.ns_per_op / g),
        });
    }
    let nop_rate = nop_rate(&fl, &mut out);
    let report = FloorReport { per_op, nop_rate };
    Ok(vec![Analysis::new("floor.json", &report, out)?])
}

/// nop-rate: batched NOPs (batch > 1) submitted by system calls, against one getppid. The best
/// is picked by the median batch, which other tenants of the CPU disturb least; the ratio is
/// given by wall time, by median batch and by CPU time.
fn nop_rate(fl: &[Floor], out: &mut String) -> Value {
    let batched: Vec<&Floor> = fl
        .iter()
        .filter(|f| {
            f.batch > 1 && (f.variant == names::URING_NOP || f.variant == names::URING_NOP_REGRING)
        })
        .collect();
    let best = batched.iter().min_by(|a, b| a.p50.total_cmp(&b.p50));
    let g = fl.iter().find(|f| f.variant == names::GETPPID);
    match (g, best) {
        (Some(g), Some(b)) if g.ns_per_op > 0.0 && g.p50 > 0.0 && g.cpu_ns_per_op > 0.0 => {
            let r = b.ns_per_op / g.ns_per_op;
            let r50 = b.p50 / g.p50;
            let rcpu = b.cpu_ns_per_op / g.cpu_ns_per_op;
            out.push_str(&format!(
                "nop-rate: {} at batch {} against getppid: {r:.2}x by wall time ({:.1} / {:.1} ns), \
                 {r50:.2}x by median batch ({:.0} / {:.0} ns), {rcpu:.2}x by CPU time ({:.1} / {:.1} ns); \
                 the claim needs < 0.5x\n",
                b.variant, b.batch, b.ns_per_op, g.ns_per_op, b.p50, g.p50, b.cpu_ns_per_op, g.cpu_ns_per_op
            ));
            json!({
                "getppid": {"ns_per_op": g.ns_per_op, "p50_ns": g.p50, "cpu_ns_per_op": g.cpu_ns_per_op},
                "best_batched_nop": {"variant": b.variant, "batch": b.batch, "ns_per_op": b.ns_per_op, "p50_ns": b.p50, "cpu_ns_per_op": b.cpu_ns_per_op},
                "ratio_wall": r, "ratio_p50": r50, "ratio_cpu": rcpu, "threshold": 0.5,
                "note": "ns_per_op is wall time / operations (includes preemption by other tasks); p50 is the median batch mean; cpu is user+sys of the process (SQ thread included) / operations",
            })
        }
        _ => Value::Null,
    }
}
