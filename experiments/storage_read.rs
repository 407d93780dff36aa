//! # storage_read: block reads from a file, synchronous against io_uring, buffered and O_DIRECT
//!
//! **Question.** How many reads per second, at what latency and CPU per read, does each way of
//! issuing block reads give: one pread(2) at a time, or io_uring with a queue of reads in
//! flight — plain, into registered buffers, with registered files, and with a kernel SQPOLL
//! thread doing the submitting? Do registered buffers help O_DIRECT but not buffered reads?
//!
//! **Set-up.** A file of the lab's pattern (`--file-size`, 256 MiB by default) is written and
//! fsynced in `--workdir`, its pattern XOR-ed with a key drawn for the run (`pattern_key` in
//! meta.json), so no block of another file can pass for one of its. Each trial opens it (with
//! `O_DIRECT` for `io=direct` points, and with `O_NOATIME` as t/io_uring does, where
//! permitted: `noatime` in the results) and
//! issues `--ios` reads of `bs` bytes at offsets that are multiples of `bs`: uniformly random
//! (`pattern=rand`, a new seed every trial) or sequential (`pattern=seq`, each trial continuing
//! where the last stopped, wrapping at the end), `qd` in flight. A trial stops after `--ios`
//! reads (20000) or `--runtime` (300 ms), whichever comes first. io_uring variants use the
//! lab's tuned ring (COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN where accepted; the SQPOLL
//! ring without them), with twice `qd` SQ entries, entered through a registered ring fd
//! (IORING_REGISTER_RING_FDS, Linux 5.18, as t/io_uring does by default; the plain fd where
//! the kernel refuses, and never on SQPOLL rings); each wait reaps every completion there
//! and refills every freed slot before the next io_uring_enter. Buffered points read from the page cache: the
//! file is read in before a trial whose cache is not full (`--cache warm`, the default; the
//! fraction resident at the start is recorded as `resident_fraction`) or dropped with
//! posix_fadvise(DONTNEED) before each trial (`--cache cold`). Direct points bypass the cache.
//! The measured thread is pinned to the first `--cpus` CPU; the SQPOLL thread to the second.
//!
//! **Latency.** One sample per read: from its submission (the clock read just before the batch
//! holding it is handed to the kernel; for pread, just before the call) to the reap of its
//! completion. At `qd` > 1 every read in flight has its submit stamp kept in its slot, and
//! the completions available after a wait (at most `--reap` of them) are reaped together and
//! stamped with one clock read; their reads are resubmitted together.
//!
//! **Integrity.** Every block read is checked, inline, after its latency sample is recorded
//! and outside every sample (`zclab::sys::blocksum`). By default (`--check sectors`) the first
//! and the last 8-byte word of every 512-byte sector are compared with the run's keyed pattern
//! words at their offsets (~15 ns per 4 KiB: `cargo bench --bench blockcheck`), which catches
//! a block from another offset, a stale block (another file's at this offset: another key), a
//! shifted or torn block and zeros; and every 64th block also gets the full positional checksum (~0.1 us
//! per 4 KiB), compared with the pattern's computed from the generator before the trial, which
//! also catches a corruption inside a sector. `--check full` runs the checksum on every block.
//! Comparing byte by byte with `check_pattern` costs ~3 us per 4 KiB, three times a page-cache
//! read. The check runs inside the trial, so its cost is in the wall time and the CPU: it is
//! measured and reported per read as `check_ns_per_io` (and the mode as `check_full_every`),
//! so the I/O alone can be compared with fio and t/io_uring, which check nothing.
//!
//! **CPU.** `user_ns`/`sys_ns` are getrusage(RUSAGE_SELF) over the trial, which counts every
//! thread of the process, io_uring's SQPOLL kernel thread (`iou-sqp-*`) included; the harness
//! also reads that thread's time from /proc/self/task/*/schedstat into `sqpoll_ns`. Both figures
//! advance only at scheduler ticks while the thread runs on the other CPU (4 ms at HZ=250: a
//! fifth of a 20 ms trial), so the SQPOLL variant also reads the thread's exact time from its
//! thread CPU clock (clock_gettime on its `CPUCLOCK_SCHED`) around the loop: `sqpoll_thread_ns`,
//! `sqpoll_ns_per_io`. `cpu_ns_per_io` is the process's CPU per read with the SQPOLL thread's
//! tick-granular share replaced by the exact one; where that share is large enough to tell
//! (five ticks) the run checks that getrusage did include the thread (`sqpoll_in_rusage` = 1;
//! were it 0, the thread's time would be added instead). `main_thread_cpu_ns_per_io` is the
//! measured thread alone (CLOCK_THREAD_CPUTIME_ID). The SQPOLL variant spins on the completion
//! ring instead of waiting in io_uring_enter, as fio's `sqthread_poll` does, so it burns two
//! CPUs and makes (almost) no system calls: `syscalls_per_io` (from the syscall tracepoint,
//! root only) shows it. Its figures depend on both CPUs being otherwise idle.
//!
//! **Variants.** `classic-pread` (qd 1 only), `uring-read`, `uring-read-fixed`,
//! `uring-read-fixed-files`, `uring-sqpoll`: see `VARIANTS`.
//!
//! **Parameters.** `--pattern rand,seq`, `--bs` (4 KiB .. 1 MiB), `--qd` (1 .. 64), `--reap`
//! (completions per wait; by default 1 on O_DIRECT, half the queue depth on SQPOLL, all on
//! plain rings reading the page cache), `--direct`
//! (O_DIRECT points only) / `--buffered` (buffered only; default: both, O_DIRECT where the work
//! directory's filesystem really does it), `--ios`, `--runtime`, `--file-size`, `--cache`,
//! `--workdir`. Refused before anything is measured: O_DIRECT on a filesystem without it
//! (tmpfs accepts the flag but is not direct I/O), a block size that breaks the alignment
//! statx(STATX_DIOALIGN) reports, a file larger than the free space.
//!
//! **Minimum kernel.** io_uring READ 5.6, READ_FIXED 5.1, SQPOLL for unprivileged users 5.11;
//! STATX_DIOALIGN 6.1 (on older kernels a 4096-byte alignment is assumed on block filesystems).

use anyhow::{Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zclab::catalog::{Entry, storage_read as names};
use zclab::harness::{self, CommonArgs, Done, Env, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::blocks::{
    BlockCounts, IoModes, Offsets, Pattern, io_modes, pread_blocks, sqpoll_cpu, uring_blocks,
};
use zclab::loops::files::{self, Cache, PatternFiles, set_cache};
use zclab::measure::Recorder;
use zclab::results::Integrity;
use zclab::ring::{Ring, RingConfig};
use zclab::sys::blocksum::BlockSums;
use zclab::sys::direct::{self, AlignedBuf, DirectIo};
use zclab::sys::filemap::resident_fraction;
use zclab::sys::signal::Cancel;
use zclab::sys::threads;
use zclab::uring::Fd;
use zclab::uring::file::{Buffers, OwnedBuffers, ReadLoop};

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<StorageRead>] = harness::variants![
    names::CLASSIC_PREAD => classic_pread, [], "pread(2) of one block at a time (qd 1)";
    names::URING_READ => |ctx, t| uring(ctx, t, Kind::new(false, false, false)), [op(Read)], "IORING_OP_READ into user buffers, qd in flight, batched io_uring_enter";
    names::URING_READ_FIXED => |ctx, t| uring(ctx, t, Kind::new(true, false, false)), [op(ReadFixed)], "IORING_OP_READ_FIXED into registered buffers (IORING_REGISTER_BUFFERS)";
    names::URING_READ_FIXED_FILES => |ctx, t| uring(ctx, t, Kind::new(true, true, false)), [op(ReadFixed)], "IORING_OP_READ_FIXED, registered buffers and a registered file (IORING_REGISTER_FILES)";
    names::URING_SQPOLL => |ctx, t| uring(ctx, t, Kind::new(true, true, true)), [op(ReadFixed), setup(SqPoll)], "IORING_SETUP_SQPOLL thread on the peer CPU submits; READ_FIXED, registered file, completions polled";
];

/// `--check`: how much of every block is compared with the pattern.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum CheckMode {
    Sectors,
    Full,
}

impl CheckMode {
    /// [`BlockSums::full_every`] for this mode.
    fn full_every(self) -> u64 {
        match self {
            CheckMode::Sectors => FULL_EVERY,
            CheckMode::Full => 1,
        }
    }
}

/// With `--check sectors`, every this-many-th read is checked in full (its cost spread over
/// the reads: ~1.5 ns of the ~95 ns a 4 KiB checksum takes here).
const FULL_EVERY: u64 = 64;

#[derive(clap::Args, Debug)]
struct Args {
    /// Offsets: rand (uniform over the file's blocks) and/or seq.
    #[arg(long, value_enum, default_value = "rand,seq", value_delimiter = ',')]
    pattern: Vec<Pattern>,
    /// Bytes per read, comma-separated (4KiB .. 1MiB is the studied range).
    #[arg(long, default_value = "4KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    bs: Vec<u64>,
    /// Reads in flight, comma-separated (1 .. 64); classic-pread runs at 1 only.
    #[arg(long, default_value = "1,32", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=64))]
    qd: Vec<u32>,
    /// io_uring completions taken per wait, and so reads checked and resubmitted together (0:
    /// all that are there). Taking all leaves nothing in flight while the blocks are checked;
    /// taking fewer keeps the device, or the SQPOLL thread, busy meanwhile. Default: 1 on
    /// O_DIRECT points (as fio by default, iodepth_batch_complete_max=1), half the queue depth
    /// on SQPOLL rings, all on plain rings reading the page cache (where reads complete inside
    /// io_uring_enter). Measured here, 4 KiB random reads at qd 32, IOPS: O_DIRECT 99-101K
    /// with 1, 102-105K with 4, 88-96K with 16, 75-82K with all; SQPOLL on the page cache
    /// 1.08-1.20M with 16, 0.77-0.81M with 1, 0.57-0.61M with all; plain rings on the page
    /// cache 868-875K with all, 653-690K with 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=64))]
    reap: Option<u32>,
    /// O_DIRECT points only; refused when the work directory's filesystem has no real O_DIRECT.
    #[arg(long)]
    direct: bool,
    /// Buffered points only.
    #[arg(long)]
    buffered: bool,
    /// Reads per trial (0: no count limit, --runtime alone ends the trial).
    #[arg(long, default_value_t = 20000)]
    ios: u64,
    /// Longest a trial runs (e.g. 300ms, 2s; 0: no time limit, --ios alone ends the trial).
    #[arg(long, default_value = "300ms", value_parser = duration_arg)]
    runtime: Duration,
    /// How every block read is checked: `sectors` (the first and last word of each 512-byte
    /// sector against the pattern's, and the whole block's positional checksum on every 64th
    /// read) or `full` (the positional checksum of every block). See `zclab::sys::blocksum`
    /// for what each catches.
    #[arg(long, value_enum, default_value = "sectors")]
    check: CheckMode,
    /// Size of the file read.
    #[arg(long, default_value = "256MiB", value_parser = harness::size_arg)]
    file_size: u64,
    /// Page cache for buffered points: warm (file cached before each trial) or cold (dropped).
    #[arg(long, value_enum, default_value_t = Cache::Warm)]
    cache: Cache,
    /// Directory for the file (created there, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    zclab::units::parse_duration(s).map_err(|e| e.to_string())
}

struct StorageRead {
    args: Args,
    /// The file read (one size: `--file-size`), written by `prepare`, removed when the run ends
    /// (dropped, after a failure or an interruption too).
    file: PatternFiles,
    direct: Option<DirectIo>,
    sums: HashMap<u64, BlockSums>,
    /// Next block of the sequential pattern, per block size.
    seq_next: HashMap<u64, u64>,
    trials: u64,
}

impl Experiment for StorageRead {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    /// Everything that can be refused is refused here, before a run directory exists.
    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        let free = files::workdir_free(&args.workdir).map_err(harness::usage)?;
        if args.ios == 0 && args.runtime.is_zero() {
            return Err(harness::usage(
                "--ios 0 and --runtime 0 would never end a trial: give one of them",
            ));
        }
        let max_bs = *args.bs.iter().max().expect("clap gives at least one");
        if args.file_size < max_bs {
            return Err(harness::usage(format!(
                "--file-size {} is smaller than the block size {max_bs}",
                args.file_size
            )));
        }
        if args.file_size > free {
            return Err(harness::usage(format!(
                "a {}-byte file does not fit in {}: its filesystem has {free} B free (use a smaller --file-size or another --workdir)",
                args.file_size,
                args.workdir.display()
            )));
        }
        let IoModes {
            modes,
            direct,
            note: direct_note,
        } = io_modes(
            zclab::caps::direct_io(&args.workdir),
            args.direct,
            args.buffered,
            &args.bs,
        )
        .map_err(harness::usage)?;
        if let Some(n) = &direct_note {
            if !common.quiet && !args.buffered {
                eprintln!("{}: {n}", names::NAME);
            }
        }
        // A key of this run's own for the file's pattern: a block of any other file at the
        // same offset (an earlier run's, one the filesystem failed to overwrite) fails the check.
        let key = zclab::sys::file::run_key();
        let parameters = json!({
            "pattern_key": format!("{key:#018x}"),
            "file_size": args.file_size, "pattern": args.pattern, "bs": args.bs, "qd": args.qd, "reap": args.reap,
            "io": modes, "ios": args.ios, "runtime_ns": args.runtime.as_nanos() as u64,
            "cache": args.cache, "workdir": args.workdir, "direct": direct, "direct_note": direct_note,
            "check": match args.check {
                CheckMode::Sectors => format!("every block: the first and last word of each 512-byte sector vs the pattern's; every {FULL_EVERY}th block also its positional checksum; inline after the latency sample"),
                CheckMode::Full => "positional block checksum vs the pattern's, every block, inline after the latency sample".to_string(),
            },
        });
        let mut points = Vec::new();
        for &pat in &args.pattern {
            for &mode in &modes {
                for &bs in &args.bs {
                    for &qd in &args.qd {
                        points.push(
                            Point::new()
                                .text("pattern", pat.name())
                                .text("io", mode)
                                .size("bs", bs)
                                .int("qd", qd as u64),
                        );
                    }
                }
            }
        }
        Ok(Plan {
            ctx: StorageRead {
                file: PatternFiles::new(&args.workdir, names::NAME, "dat", "file", 0).with_key(key),
                args,
                direct,
                sums: HashMap::new(),
                seq_next: HashMap::new(),
                trials: 0,
            },
            points,
            parameters,
        })
    }

    fn prepare(&mut self, _env: &Env) -> Result<()> {
        self.file.get(self.args.file_size)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    harness::run::<StorageRead>()
}

/// What a trial needs, prepared outside the clock.
struct Prepared {
    file: File,
    bs: usize,
    qd: usize,
    direct: bool,
    noatime: bool,
    offsets: Offsets,
}

/// Opens the file for one trial (O_DIRECT or with the cache policy applied) and its offsets.
fn open_trial(ctx: &mut StorageRead, t: &mut Trial) -> Result<Prepared> {
    let (bs, qd) = (t.point.num("bs"), t.point.num("qd") as usize);
    let direct = t.point.str("io") == "direct";
    let rand = t.point.str("pattern") == "rand";
    let full_every = ctx.args.check.full_every();
    let pf = ctx.file.get(ctx.args.file_size)?;
    let size = pf.size;
    ctx.sums.entry(bs).or_insert_with(|| {
        BlockSums::for_pattern_keyed(size, bs, pf.key).with_full_every(full_every)
    });
    debug_assert!(!direct || ctx.direct.is_some());
    if !direct {
        set_cache(pf, ctx.args.cache)?;
    }
    let (file, noatime) = direct::open_read(&pf.path, direct)?;
    ctx.trials += 1;
    let next_block = *ctx.seq_next.get(&bs).unwrap_or(&0);
    Ok(Prepared {
        file,
        bs: bs as usize,
        qd,
        direct,
        noatime,
        offsets: Offsets {
            rand,
            bs,
            blocks: size / bs,
            next_block,
            rng: Offsets::seed(ctx.trials),
            issued: 0,
            max: ctx.args.ios,
            clock: t.clock,
            start: t.clock.now(),
            limit_ns: ctx.args.runtime.as_nanos() as u64,
            // Trial has no cancel() in this tree yet: the process's SIGINT/SIGTERM token,
            // which the harness installed.
            cancel: Cancel::process(),
        },
    })
}

/// Records what every variant reports after its measured loop.
fn report(
    ctx: &mut StorageRead,
    t: &mut Trial,
    p: &Prepared,
    c: BlockCounts,
    resident: Option<f64>,
) {
    let BlockCounts { ios, bad, check_ns } = c;
    if !p.offsets.rand {
        ctx.seq_next.insert(p.bs as u64, p.offsets.next_block);
    }
    let bs = p.bs as u64;
    t.set_integrity(Integrity {
        ok: bad == 0 && ios > 0,
        method: if ctx.args.check == CheckMode::Full {
            "positional checksum of every block read vs this run's keyed pattern at its offset"
                .into()
        } else {
            format!(
                "every block read: the first and last word of each 512-byte sector vs this \
                 run's keyed pattern at its offset; every {FULL_EVERY}th block also its \
                 positional checksum"
            )
        },
        expected: format!("{ios} blocks matching the pattern"),
        got: format!("{} matching, {bad} not", ios - bad),
        bytes_expected: ios * bs,
        bytes_got: (ios - bad) * bs,
    });
    let per = |v: f64| if ios > 0 { v / ios as f64 } else { 0.0 };
    let m = t.metrics().cloned();
    if let Some(m) = m {
        t.set_extra("cpu_ns_per_io", per((m.user_ns + m.sys_ns) as f64));
        if let Some(s) = m.syscalls.known() {
            t.set_extra("syscalls_per_io", per(s as f64));
        }
    }
    t.set_extra("check_ns_per_io", per(check_ns as f64));
    t.set_extra("check_full_every", ctx.args.check.full_every() as f64);
    t.set_flag("direct", p.direct);
    t.set_flag("noatime", p.noatime);
    if let Some(r) = resident {
        t.set_extra("resident_fraction", r);
    }
}

fn resident(p: &Prepared) -> Result<Option<f64>> {
    Ok(if p.direct {
        None
    } else {
        Some(resident_fraction(&p.file)?)
    })
}

fn classic_pread(ctx: &mut StorageRead, t: &mut Trial) -> Result<()> {
    if t.point.num("qd") != 1 {
        return Err(harness::skip_point(
            "pread(2) is synchronous: one read in flight (qd 1); deeper queues need io_uring",
        ));
    }
    let mut p = open_trial(ctx, t)?;
    let res = resident(&p)?;
    let sums = &ctx.sums[&(p.bs as u64)];
    let mut buf = AlignedBuf::new(p.bs)?;
    let mut c = BlockCounts::default();
    let (file, offsets, bs) = (&p.file, &mut p.offsets, p.bs);
    offsets.start = t.clock.now();
    t.measure("one pread, call to return", |rec: &mut Recorder| {
        c = pread_blocks(file, &mut buf, offsets, sums, rec)?;
        Ok(Done {
            bytes: c.ios * bs as u64,
            ops: c.ios,
        })
    })?;
    report(ctx, t, &p, c, res);
    Ok(())
}

#[derive(Clone, Copy)]
struct Kind {
    fixed_bufs: bool,
    fixed_file: bool,
    sqpoll: bool,
}

impl Kind {
    fn new(fixed_bufs: bool, fixed_file: bool, sqpoll: bool) -> Kind {
        Kind {
            fixed_bufs,
            fixed_file,
            sqpoll,
        }
    }
}

fn uring(ctx: &mut StorageRead, t: &mut Trial, k: Kind) -> Result<()> {
    let mut p = open_trial(ctx, t)?;
    let (bs, qd) = (p.bs, p.qd);
    // Twice the queue depth: an SQPOLL thread can post a completion before it releases the
    // SQ entry.
    let entries = (2 * qd as u32).max(8);
    // The previous trial's SQPOLL thread is gone: the harness waits for it before each trial.
    let cfg = if k.sqpoll {
        RingConfig::sqpoll(entries, 1000, Some(t.cpus.1 as u32))
    } else {
        RingConfig::tuned(entries)
    };
    let mut ring = Ring::new(&cfg).map_err(harness::ring_err)?;
    if k.sqpoll && !ring.is_sqpoll() {
        return Err(harness::skip_variant("the kernel gave no SQPOLL thread"));
    }
    if k.fixed_bufs {
        ring.register_buffers(qd, bs).map_err(harness::ring_err)?;
    }
    let fd = if k.fixed_file {
        ring.register_files(&[p.file.as_raw_fd()])
            .context("io_uring_register(FILES)")?;
        Fd::Fixed(0)
    } else {
        Fd::Raw(p.file.as_raw_fd())
    };
    t.set_ring(ring.flags());
    let mut owned = if k.fixed_bufs {
        None
    } else {
        Some(OwnedBuffers::new(qd, bs)?)
    };
    let res = resident(&p)?;
    let sums = &ctx.sums[&(bs as u64)];
    let reap_max = ctx.args.reap.unwrap_or(match (p.direct, k.sqpoll) {
        (true, _) => 1,
        (false, true) => (qd as u32 / 2).max(1),
        (false, false) => 0,
    });
    let lp = ReadLoop {
        file: fd,
        qd,
        len: bs,
        ordered: false,
        poll_cq: k.sqpoll,
        reap_max: reap_max as usize,
    };
    let mut c = BlockCounts::default();
    let offsets = &mut p.offsets;
    offsets.start = t.clock.now();
    let step = if k.sqpoll {
        "one read, queued to completion seen in the CQ ring"
    } else {
        "one read, submit (io_uring_enter) to completion reaped"
    };
    // The SQPOLL thread's exact CPU time comes from its thread CPU clock (see the header).
    let sq_tid = if k.sqpoll {
        Some(threads::wait_named("iou-sqp", 1, Duration::from_secs(2))?[0])
    } else {
        None
    };
    let (mut main_ns, mut sq_ns) = (0u64, 0u64);
    t.measure(step, |rec: &mut Recorder| {
        let me0 = threads::self_cpu_ns()?;
        let sq0 = sq_tid.map(threads::thread_cpu_ns).transpose()?;
        let bufs = match owned.as_mut() {
            Some(o) => Buffers::Owned(o),
            None => Buffers::Registered,
        };
        c = uring_blocks(&mut ring, bufs, &lp, offsets, sums, rec)?;
        if let (Some(tid), Some(a)) = (sq_tid, sq0) {
            sq_ns = threads::thread_cpu_ns(tid)?.saturating_sub(a);
        }
        main_ns = threads::self_cpu_ns()?.saturating_sub(me0);
        Ok(Done {
            bytes: c.ios * bs as u64,
            ops: c.ios,
        })
    })?;
    drop(ring);
    report(ctx, t, &p, c, res);
    let ios = c.ios;
    let per = |v: u64| if ios > 0 { v as f64 / ios as f64 } else { 0.0 };
    t.set_extra("main_thread_cpu_ns_per_io", per(main_ns));
    t.set_extra("reap_max", reap_max as f64);
    if let (true, Some(m)) = (k.sqpoll, t.metrics().cloned()) {
        // getrusage and schedstat hold the SQPOLL thread's time only up to its last tick:
        // replaced by its thread clock's (see the header and `sqpoll_cpu`).
        let cpu = sqpoll_cpu(
            m.user_ns + m.sys_ns,
            m.sqpoll_ns.unwrap_or(0),
            main_ns,
            sq_ns,
        );
        t.set_extra("sqpoll_thread_ns", sq_ns as f64);
        t.set_extra("sqpoll_ns_per_io", per(sq_ns));
        if let Some(included) = cpu.in_rusage {
            t.set_flag("sqpoll_in_rusage", included);
        }
        t.set_extra("cpu_ns_per_io", per(cpu.total_ns));
    }
    Ok(())
}
