//! `zclab versus`: the lab's figures beside fio's, iperf3's, t/io_uring's, liburing's
//! send-zerocopy's and sockperf's on the same workload.
//!
//! A lab whose own loops are the bottleneck measures its harness, not the kernel. For each
//! workload an established tool also runs, this runs the tool and the matching zclab variant
//! back to back (tool, lab, tool, lab, ... so drift hits both alike) on identical parameters —
//! file, block size, queue depth, buffered or direct, message size, sends in flight, receiver,
//! CPU pinning — and prints the tool's figure, the lab's, their ratio and the spread of the
//! repeats. fio, iperf3 and sockperf come from the distribution's packages and are installed when
//! missing (as root); t/io_uring and send-zerocopy are built from the Debian archive's source
//! of the installed fio and liburing ([`build`]).

mod build;
mod sendzc;
mod sockperf;

use anyhow::{Context, Result, bail};
use build::{ensure_tool, send_zerocopy, t_io_uring};
use sendzc::SendZc;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use zclab::analysis::{Pairing, Ratio, median, metric};
use zclab::measure::noise;
use zclab::measure::placement::Placement;
use zclab::results::{self, row::parse_jsonl};
use zclab::sys::signal::Cancel;

/// Options of `zclab versus`.
#[derive(clap::Args, Debug, Clone)]
pub struct VersusArgs {
    /// The full comparison (10 s per tool run, 3 repeats, 1 GiB file) instead of a first look
    /// (3 s runs, 3 repeats, 256 MiB file).
    #[arg(long)]
    pub full: bool,
    /// Only the workloads whose name contains one of these words (e.g. `fio`, `iperf3`, `direct`,
    /// `-n 1 TCP`), separated by commas.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub only: Vec<String>,
    /// Repeats of each side.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// Where the result directory (`versus-<host>-<kernel>-<time>/`) is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Directory for the test file (its filesystem decides whether O_DIRECT is real).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub workdir: PathBuf,
}

/// How one side of a pair is run and read.
#[derive(Debug, Clone)]
enum Side {
    /// fio with these job options (the file, runtime and JSON output are added); the figure is
    /// read IOPS.
    Fio(Vec<String>),
    /// iperf3 client options against a server pinned to the peer CPU; the figure is the
    /// receiver's Gbit/s.
    Iperf3(Vec<String>),
    /// fio's t/io_uring with these options (built from source: see [`t_io_uring`]), pinned to
    /// CPU 0; the figure is the mean of its once-a-second IOPS lines.
    TIoUring(Vec<String>),
    /// liburing's examples/send-zerocopy (built from source: see [`send_zerocopy`]), pinned to
    /// CPU 0; the figure is the Gbit/s that arrived ([`sendzc::run`]).
    SendZc(SendZc),
    /// sockperf ping-pong over loopback TCP with `size`-byte messages for `secs` seconds; the
    /// figure is transactions/s, with the round trip's p50 and p99 beside it ([`sockperf::run`]).
    Sockperf { size: u32, secs: u32 },
    /// A zclab experiment with these options (results dir added); the figure is the median of
    /// `metric` over the rows of `variant`.
    Lab {
        experiment: &'static str,
        args: Vec<String>,
        variant: &'static str,
        metric: &'static str,
    },
}

/// How a pair's note begins when the tool does not run the lab's workload: its ratio is
/// shown, but the tool is nobody's fastest peer and the row is not the lab's standing.
const NOT_SAME: &str = "not the same workload";

/// One matched pair.
#[derive(Debug, Clone)]
struct Pair {
    name: String,
    /// What the figure is ("IOPS", "Gbit/s").
    unit: &'static str,
    /// What differs between the two sides, if anything, and how it was matched.
    note: &'static str,
    tool: Side,
    lab: Side,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub workload: String,
    /// The lab's side as it ran: experiment, variant and options. Rows with the same lab side
    /// compare one workload of the lab with different peers.
    pub lab_side: String,
    /// The row of the same lab side whose peer was fastest (highest median), when it is not
    /// this one ([`mark_fastest`]): a ratio against a slower peer is not the lab's standing.
    pub fastest_peer: Option<String>,
    /// Whether the tool runs the lab's workload; false when the note says how it does not
    /// ([`NOT_SAME`]). Such a row is nobody's fastest peer and never the lab's standing.
    pub same_workload: bool,
    pub unit: String,
    pub tool: String,
    pub tool_values: Vec<f64>,
    pub lab_values: Vec<f64>,
    /// The median of the per-repeat ratios zclab/tool (each lab run paired with the tool run
    /// just before it), and their [`LEVEL`](zclab::analysis::LEVEL) interval (with fewer than
    /// 6 repeats, their whole range).
    pub ratio: Option<f64>,
    pub ratio_lo: Option<f64>,
    pub ratio_hi: Option<f64>,
    /// The tool's own spread, max/min over its repeats.
    pub peer_spread: Option<f64>,
    /// How many times the row was measured again because the tool's spread was too wide.
    pub reruns: u32,
    /// [`verdict_of`]: `>= 1.0`, `includes 1.0`, `below`, `peer unstable`, or why it could
    /// not run.
    pub verdict: String,
    pub note: String,
    /// storage_read rows: the lab's median time per read spent checking the block
    /// (`check_ns_per_io`), work the tool does not do.
    pub lab_check_ns: Option<f64>,
    /// Every lab row: the measured thread's clock readings per operation and what they cost
    /// (`clock_reads_per_op`, `clock_ns_per_op`), timing the tool does not do.
    pub lab_clock: Option<ClockUse>,
    /// t/io_uring rows and send-zerocopy's rows: CPU time per operation (per send, per
    /// message on TCP) on each side (median over the repeats). Both sides keep one CPU busy,
    /// so a gap in rate with equal CPU per operation is time the machine took from the run,
    /// not work the loop did.
    pub tool_cpu: Option<Cpu>,
    pub lab_cpu: Option<Cpu>,
    /// sockperf rows: the round trip's p50 and p99 on each side (medians over the repeats).
    pub tool_latency: Option<sockperf::Lat>,
    pub lab_latency: Option<sockperf::Lat>,
    /// Pairs of runs (tool, then lab) around which the host's placement of CPUs 0 and 1 was
    /// probed, and of them those with the CPUs apart at the start or the end
    /// (`zclab placement`) where a side used CPU 1: the host was busy then, and a ratio may
    /// be the host's.
    pub pairs_probed: u32,
    pub pairs_apart: u32,
    /// Pairs with the CPUs apart where both sides ran on CPU 0 alone (the tool with CPU 1 at
    /// most [`zclab::measure::placement::ONE_CPU_BUSY_PCT`] busy, every lab trial
    /// `one_cpu`): out of the placement's reach.
    #[serde(default)]
    pub pairs_apart_one_cpu: u32,
    /// What the ratio would be without the lab's own measuring costs: [`without_own_costs`].
    pub ratio_without_own: Option<f64>,
    /// TCP rows whose lab receiver hashes the stream: what the hashing cost it (medians).
    pub lab_receiver_hash: Option<ReceiverHash>,
}

/// The lab's clock readings per operation and their cost in ns ([`zclab::measure::Clock::read_ns`]).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ClockUse {
    pub reads_per_op: f64,
    pub ns_per_op: f64,
}

impl ClockUse {
    fn median(v: &[ClockUse]) -> Option<ClockUse> {
        (!v.is_empty()).then(|| ClockUse {
            reads_per_op: median(&v.iter().map(|c| c.reads_per_op).collect::<Vec<_>>()),
            ns_per_op: median(&v.iter().map(|c| c.ns_per_op).collect::<Vec<_>>()),
        })
    }
}

/// A hashing receiver's time in its hash (`peer_hash_ns`): the share of its thread's CPU
/// time (`peer_user_ns` + `peer_sys_ns`) and the time per KiB received. A receiver that only
/// copies, as iperf3's does, spends neither.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ReceiverHash {
    pub share_of_cpu: f64,
    pub ns_per_kib: f64,
}

impl ReceiverHash {
    /// From one row's metrics; None where the receiver did not time its hashing.
    fn of(m: &results::Metrics) -> Option<ReceiverHash> {
        let hash = *m.extra.get("peer_hash_ns")?;
        let cpu = (m.peer_user_ns? + m.peer_sys_ns?) as f64;
        (cpu > 0.0 && m.bytes > 0).then(|| ReceiverHash {
            share_of_cpu: hash / cpu,
            ns_per_kib: hash / (m.bytes as f64 / 1024.0),
        })
    }

    fn median(v: &[ReceiverHash]) -> Option<ReceiverHash> {
        (!v.is_empty()).then(|| ReceiverHash {
            share_of_cpu: median(&v.iter().map(|h| h.share_of_cpu).collect::<Vec<_>>()),
            ns_per_kib: median(&v.iter().map(|h| h.ns_per_kib).collect::<Vec<_>>()),
        })
    }
}

/// CPU time per operation, from getrusage(2).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Cpu {
    pub user_ns_per_op: f64,
    pub sys_ns_per_op: f64,
}

impl Cpu {
    fn total(&self) -> f64 {
        self.user_ns_per_op + self.sys_ns_per_op
    }

    /// The median of each field.
    fn median(v: &[Cpu]) -> Option<Cpu> {
        (!v.is_empty()).then(|| Cpu {
            user_ns_per_op: median(&v.iter().map(|c| c.user_ns_per_op).collect::<Vec<_>>()),
            sys_ns_per_op: median(&v.iter().map(|c| c.sys_ns_per_op).collect::<Vec<_>>()),
        })
    }
}

/// What one run of the lab's side gave.
struct LabFigure {
    value: f64,
    /// storage_read: `check_ns_per_io`.
    check_ns: Option<f64>,
    clock: Option<ClockUse>,
    /// NOP rows (`ops_per_s`): user and system time per operation of the timed trial.
    cpu: Option<Cpu>,
    /// rr rows: the client's p50 and p99 (µs).
    lat: Option<sockperf::Lat>,
    receiver_hash: Option<ReceiverHash>,
    /// Every trial of the variant ran on the measured CPU alone (`extra.one_cpu`).
    one_cpu: bool,
}

/// Stands for the test file in tool options.
const FILE: &str = "{FILE}";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pairs(full: bool, file_size: &str) -> Vec<Pair> {
    let rt = if full { "10" } else { "3" };
    let net_bytes = net_bytes(full);
    let fio_base = |engine: &str, extra: &[&str]| -> Vec<String> {
        let mut v = s(&[
            "--rw=randread",
            "--bs=4k",
            &format!("--ioengine={engine}"),
            "--time_based",
            &format!("--runtime={rt}"),
            "--cpus_allowed=0",
            "--norandommap",
            "--randrepeat=0",
        ]);
        v.extend(s(extra));
        // fio drops the file's page cache before a job by default (invalidate=1): buffered
        // runs would read the disk, while the lab's page-cache points read a warm cache.
        if !extra.contains(&"--direct=1") {
            v.push("--invalidate=0".into());
        }
        v
    };
    let sr = |variant: &'static str, qd: &str, direct: bool| Side::Lab {
        experiment: "storage_read",
        #[rustfmt::skip]
        args: s(&["--variants", variant, "--pattern", "rand", "--bs", "4KiB", "--qd", qd, "--file-size", file_size,
                  "--ios", "0", "--runtime", &format!("{rt}s"), if direct { "--direct" } else { "--buffered" }]),
        variant,
        metric: "ops_per_s",
    };
    // The same file_to_socket run answers both iperf3 -Z rows.
    let sendfile_lab = Side::Lab {
        experiment: "file_to_socket",
        args: s(&[
            "--sizes",
            net_bytes,
            "--chunks",
            "128KiB",
            "--nodelay",
            "false",
            "--variants",
            "classic-sendfile",
        ]),
        variant: "classic-sendfile",
        metric: "gbps",
    };
    vec![
        Pair {
            name: "fio psync 4K randread, page cache".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base("psync", &[])),
            lab: sr("classic-pread", "1", false),
        },
        Pair {
            name: "fio io_uring qd1 4K randread, page cache".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base("io_uring", &["--iodepth=1"])),
            lab: sr("uring-read", "1", false),
        },
        Pair {
            name: "fio io_uring qd32 4K randread, page cache".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base("io_uring", &["--iodepth=32"])),
            lab: sr("uring-read", "32", false),
        },
        Pair {
            name: "fio io_uring qd32 fixedbufs+registerfiles, page cache".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base(
                "io_uring",
                &["--iodepth=32", "--fixedbufs", "--registerfiles"],
            )),
            lab: sr("uring-read-fixed-files", "32", false),
        },
        Pair {
            name: "fio io_uring qd32 sqthread_poll, page cache".into(),
            unit: "IOPS",
            note: "the SQ thread reads into buffers on the other CPU: zclab's check of each block pays the cross-CPU cache transfer on the submitting thread, which is the bottleneck here; fio opens the file without O_NOATIME, zclab with it",
            tool: Side::Fio(fio_base(
                "io_uring",
                &[
                    "--iodepth=32",
                    "--fixedbufs",
                    "--registerfiles",
                    "--sqthread_poll",
                    "--sqthread_poll_cpu=1",
                ],
            )),
            lab: sr("uring-sqpoll", "32", false),
        },
        t_io_uring_read(rt, 1, sr("uring-read", "1", false)),
        t_io_uring_read(rt, 32, sr("uring-read", "32", false)),
        Pair {
            name: "fio psync 4K randread, O_DIRECT".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base("psync", &["--direct=1"])),
            lab: sr("classic-pread", "1", true),
        },
        Pair {
            name: "fio io_uring qd32 4K randread, O_DIRECT".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base("io_uring", &["--iodepth=32", "--direct=1"])),
            lab: sr("uring-read", "32", true),
        },
        Pair {
            name: "fio io_uring qd32 fixedbufs, O_DIRECT".into(),
            unit: "IOPS",
            note: "fio opens the file without O_NOATIME, zclab and t/io_uring with it: each of fio's reads also looks at the inode's access time",
            tool: Side::Fio(fio_base(
                "io_uring",
                &[
                    "--iodepth=32",
                    "--direct=1",
                    "--fixedbufs",
                    "--registerfiles",
                ],
            )),
            lab: sr("uring-read-fixed-files", "32", true),
        },
        Pair {
            name: "iperf3 loopback, 128 KiB writes".into(),
            unit: "Gbit/s",
            note: "both receivers copy into user space; zclab's also hashes every byte",
            tool: Side::Iperf3(s(&["-t", rt])),
            lab: iperf3_lab("128KiB", net_bytes),
        },
        Pair {
            name: "iperf3 -Z -F FILE (sendfile of a whole file) loopback".into(),
            unit: "Gbit/s",
            note: "the same file on both sides: iperf3 -F sends it once with sendfile, 128 KiB per call; both receivers copy into user space, zclab's also hashes every byte",
            tool: Side::Iperf3(s(&["-Z", "-F", FILE])),
            lab: sendfile_lab.clone(),
        },
        Pair {
            name: "iperf3 -Z (sendfile) loopback, 128 KiB".into(),
            unit: "Gbit/s",
            note: "not the same workload: iperf3 -Z re-sends one cache-hot 128 KiB block; the row above gives iperf3 the lab's whole file",
            tool: Side::Iperf3(s(&["-t", rt, "-Z"])),
            lab: sendfile_lab.clone(),
        },
        Pair {
            name: "iperf3 -l 4K loopback".into(),
            unit: "Gbit/s",
            note: "",
            tool: Side::Iperf3(s(&["-t", rt, "-l", "4K"])),
            lab: iperf3_lab("4KiB", if full { "4GiB" } else { "1GiB" }),
        },
        nop_pair(rt, 1, false),
        nop_pair(rt, 32, false),
        nop_pair(rt, 1, true),
        nop_pair(rt, 32, true),
        send_zc_pair(full, true, false, false, 1),
        send_zc_pair(full, true, true, false, 1),
        send_zc_pair(full, true, false, false, 8),
        send_zc_pair(full, false, false, false, 8),
        send_zc_pair(full, false, true, false, 8),
        send_zc_pair(full, false, true, true, 8),
    ]
    .into_iter()
    .chain(sockperf::pairs(full))
    .collect()
}

/// liburing's examples/send-zerocopy against net_send's io_uring variant of the same opcode:
/// TCP over loopback, 65435 B sends (the example's largest and default), both receivers
/// discarding with MSG_TRUNC; or UDP, 65000 B datagrams from namespace A to the lab's sink.
/// `inflight` sends at a time on the tool's side (`-n`); the lab keeps 8 in flight on UDP and
/// one on a TCP stream, so only `inflight` 1 matches it on TCP.
fn send_zc_pair(full: bool, tcp: bool, zc: bool, fixed: bool, inflight: u32) -> Pair {
    let variant = match (zc, fixed) {
        (false, _) => "uring-send",
        (true, false) => "uring-send-zc",
        (true, true) => "uring-send-zc-fixed",
    };
    let op = match (zc, fixed) {
        (false, _) => "SEND",
        (true, false) => "SEND_ZC",
        (true, true) => "SEND_ZC, registered buffer",
    };
    let payload = if tcp { 65435 } else { 65000 };
    // send-zerocopy's socket: SO_SNDBUF 2 MiB, Nagle on.
    let mut lab = s(&[
        "--variants",
        variant,
        "--sizes",
        &payload.to_string(),
        "--max-messages",
        "100000000",
        "--sndbuf",
        "2MiB",
        "--nodelay",
        "false",
    ]);
    if tcp {
        lab.extend(s(&[
            "--paths",
            "tcp-loopback",
            "--sink",
            "discard",
            "--bytes",
            if full { "16GiB" } else { "4GiB" },
        ]));
    } else {
        lab.extend(s(&[
            "--paths",
            "udp-sink",
            "--inflight",
            "8",
            // As few buffers as sends in flight: the example re-sends one buffer, and the lab's
            // default pool of 32 (2 MB of 65000 B messages) copies from beyond the L2 cache.
            "--pool",
            "8",
            "--bytes",
            if full { "32GiB" } else { "8GiB" },
        ]));
    }
    Pair {
        name: if tcp {
            format!(
                "liburing send-zerocopy -n {inflight} TCP loopback 65435 B, discarding receiver, {op}"
            )
        } else {
            format!("liburing send-zerocopy -n {inflight} UDP 65000 B to the sink, {op}")
        },
        unit: "Gbit/s",
        note: if tcp && inflight > 1 {
            "not the same workload: send-zerocopy -n 8 has 8 sends of one buffer in flight on one stream, which io_uring does not keep in order (harmless for a constant buffer); zclab keeps one send in flight per stream so the stream it checks stays in order, as the -n 1 rows do"
        } else if tcp {
            "one send in flight on both sides; both receivers drop the bytes with MSG_TRUNC, so integrity is the byte count on both"
        } else {
            "8 sends in flight on both sides; send-zerocopy re-sends one buffer without waiting for its notification, zclab stamps every message and rewrites a buffer only after its notification"
        },
        tool: Side::SendZc(SendZc {
            tcp,
            payload,
            zc,
            fixed,
            inflight,
        }),
        lab: Side::Lab {
            experiment: "net_send",
            args: lab,
            variant,
            metric: "gbps",
        },
    }
}

/// net_send's plain send(2) over loopback in `size` messages with Nagle on, as iperf3 sends,
/// to a receiver that copies, as iperf3's does.
fn iperf3_lab(size: &str, bytes: &str) -> Side {
    Side::Lab {
        experiment: "net_send",
        args: s(&[
            "--paths",
            "tcp-loopback",
            "--sizes",
            size,
            "--bytes",
            bytes,
            "--max-messages",
            "100000000",
            "--nodelay",
            "false",
            "--variants",
            "classic-send",
        ]),
        variant: "classic-send",
        metric: "gbps",
    }
}

/// t/io_uring reading 4 KiB blocks at random offsets of a warm file through the page cache
/// (`-O0`, no polling, no fixed buffers or files) at queue depth `qd`, submitting and reaping
/// `qd` at a time: on this machine the fastest peer for page-cache reads, faster than fio's
/// io_uring engine, so the lab's page-cache rows are set beside it as well.
fn t_io_uring_read(rt: &str, qd: u32, lab: Side) -> Pair {
    let d = qd.to_string();
    Pair {
        name: format!("t/io_uring qd{qd} 4K randread, page cache"),
        unit: "IOPS",
        note: "t/io_uring built from fio's source; it reads the same size of file, warm, opened with O_NOATIME as zclab's, without checking the blocks",
        #[rustfmt::skip]
        tool: Side::TIoUring(s(&["-d", &d, "-s", &d, "-c", &d, "-b", "4096", "-O0", "-p0", "-B0", "-F0",
                                 "-n1", "-R1", "-r", rt, FILE])),
        lab,
    }
}

/// t/io_uring's NOP mode (`-N1`, queue depth = submit batch = complete batch = `batch`) against
/// syscall_floor's NOP loop with the same batch, ring-fd registration and ring setup flags
/// (read from t/io_uring's source when the run starts: [`build::t_io_uring_ring_flags`]).
fn nop_pair(rt: &str, batch: u32, regring: bool) -> Pair {
    let b = batch.to_string();
    let variant = if regring {
        "uring-nop-regring"
    } else {
        "uring-nop"
    };
    Pair {
        name: format!(
            "io_uring NOP, batch {batch}{}",
            if regring { ", registered ring fd" } else { "" }
        ),
        unit: "ops/s",
        note: "t/io_uring built from fio's source",
        tool: Side::TIoUring(s(&[
            "-N1",
            "-d",
            &b,
            "-s",
            &b,
            "-c",
            &b,
            "-X",
            if regring { "1" } else { "0" },
            "-r",
            rt,
        ])),
        // About as long as t/io_uring runs (5M NOPs/s at batch 1, 32M at 32 here): a short
        // trial's mean is at the mercy of a single stall, t/io_uring's per-second median is not.
        lab: Side::Lab {
            experiment: "syscall_floor",
            args: s(&[
                "--batches",
                &b,
                "--variants",
                variant,
                "--ops",
                &format!(
                    "{}Mi",
                    rt.parse::<u64>().unwrap_or(3) * if batch == 1 { 5 } else { 32 }
                ),
            ]),
            variant,
            metric: "ops_per_s",
        },
    }
}

/// t/io_uring's figure and its CPU time per operation. Its output is made line-buffered
/// (`stdbuf -oL`) so that each once-a-second line is read as it is printed, together with the
/// process's CPU time at that moment (/proc/PID/stat): CPU per operation is taken between the
/// first and the last line, over the operations of the lines in between, leaving out start-up
/// and exit.
fn run_t_io_uring(bin: &Path, opts: &[String]) -> Result<(f64, Option<Cpu>)> {
    use std::io::BufRead;
    let mut child = Command::new("taskset")
        .args(["-c", "0", "stdbuf", "-oL"])
        .arg(bin)
        .args(opts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run t/io_uring under taskset and stdbuf")?;
    let stat = format!("/proc/{}/stat", child.id());
    let mut lines = Vec::new();
    for l in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let l = l?;
        if let Some(&v) = t_io_uring_iops(&l).first() {
            lines.push((v, proc_cpu_ns(&stat)));
        }
    }
    let out = child.wait_with_output()?;
    if lines.is_empty() {
        bail!(
            "t/io_uring printed no IOPS line: {}",
            stderr_line(&out.stderr, false)
        );
    }
    let v: Vec<f64> = lines.iter().map(|l| l.0).collect();
    let cpu = match (lines.first(), lines.last()) {
        (Some((_, Some(a))), Some((_, Some(b)))) if lines.len() >= 2 => {
            let ops: f64 = v[1..].iter().sum();
            Some(Cpu {
                user_ns_per_op: b.0.saturating_sub(a.0) as f64 / ops,
                sys_ns_per_op: b.1.saturating_sub(a.1) as f64 / ops,
            })
        }
        _ => None,
    };
    // The mean of equal one-second intervals: operations over the whole run, the statistic
    // the lab's side reports (operations over the trial's wall time). A median would drop
    // the run's slow seconds from one side only.
    Ok((v.iter().sum::<f64>() / v.len() as f64, cpu))
}

/// The first (or last) line of a command's standard error, for the message saying why it
/// failed: fio and t/io_uring put the cause first, the lab's experiments last.
fn stderr_line(stderr: &[u8], last: bool) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = if last {
        text.lines().last()
    } else {
        text.lines().next()
    };
    line.unwrap_or("").to_string()
}

/// User and system CPU time (ns) of every thread of a process, from /proc/PID/stat
/// (proc(5): fields 14 and 15, in clock ticks).
fn proc_cpu_ns(path: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)? as u64;
    let ns =
        |i: usize| -> Option<u64> { Some(f.get(i)?.parse::<u64>().ok()? * 1_000_000_000 / tick) };
    // After the name, field 3 (state) is index 0: utime (14) is 11, stime (15) is 12.
    Some((ns(11)?, ns(12)?))
}

/// The figures of t/io_uring's once-a-second `IOPS=5.40M, IOS/call=1/1` lines.
fn t_io_uring_iops(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("IOPS="))
        .filter_map(|l| l.split(',').next())
        .filter_map(|n| {
            let (num, mult) = match n.as_bytes().last()? {
                b'K' => (&n[..n.len() - 1], 1e3),
                b'M' => (&n[..n.len() - 1], 1e6),
                b'G' => (&n[..n.len() - 1], 1e9),
                _ => (n, 1.0),
            };
            num.parse::<f64>().ok().map(|x| x * mult)
        })
        .collect()
}

/// Bytes the network pairs move per run (and the size of the file iperf3 -F sends).
fn net_bytes(full: bool) -> &'static str {
    if full { "8GiB" } else { "2GiB" }
}

fn run_fio(opts: &[String], file: &Path, size: &str) -> Result<f64> {
    let out = Command::new("fio")
        .arg("--name=versus")
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={size}"))
        .args(opts)
        .arg("--output-format=json")
        .output()
        .context("cannot run fio")?;
    if !out.status.success() {
        bail!("fio failed: {}", stderr_line(&out.stderr, false));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("fio printed no JSON")?;
    v["jobs"][0]["read"]["iops"]
        .as_f64()
        .context("fio JSON lacks jobs[0].read.iops")
}

fn run_iperf3(opts: &[String], file: &Path) -> Result<f64> {
    let opts: Vec<String> = opts
        .iter()
        .map(|o| {
            if o == FILE {
                file.display().to_string()
            } else {
                o.clone()
            }
        })
        .collect();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut server = Command::new("iperf3")
        .args([
            "-s",
            "-1",
            "-B",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-A",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start iperf3 -s")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-A", "0", "-J"])
        .args(opts)
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let out = out.context("cannot run iperf3 -c")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 printed no JSON")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON lacks end.sum_received")?
        / 1e9)
}

fn run_lab(
    bin_dir: &Path,
    experiment: &str,
    args: &[String],
    variant: &str,
    metric_name: &str,
    workdir: &Path,
) -> Result<LabFigure> {
    let res = tempfile::Builder::new()
        .prefix("zclab-versus")
        .tempdir_in(workdir)
        .context("cannot create a temporary results directory")?;
    let mut cmd = Command::new(bin_dir.join(experiment));
    cmd.args(args)
        .args(["--repeat", "1", "--warmup", "1", "--quiet", "--results"])
        .arg(res.path());
    if !["net_send", "syscall_floor", "rr"].contains(&experiment) {
        cmd.arg("--workdir").arg(workdir);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {experiment}"))?;
    if !out.status.success() {
        bail!("{experiment} failed: {}", stderr_line(&out.stderr, true));
    }
    let run = std::fs::read_dir(res.path())?
        .flatten()
        .next()
        .context("no run directory")?
        .path();
    let text = std::fs::read_to_string(run.join(experiment).join("summary.jsonl"))?;
    let rows = parse_jsonl(&text).map_err(|e| anyhow::anyhow!(e))?;
    // The metrics of the variant's ok rows: every figure below is a median over them.
    let ok: Vec<&results::Metrics> = rows
        .iter()
        .filter(|r| r.variant == variant && r.status == results::Status::Ok)
        .filter_map(|r| r.metrics.as_ref())
        .collect();
    let v: Vec<f64> = ok.iter().filter_map(|m| metric(m, metric_name)).collect();
    if v.is_empty() {
        bail!("{experiment} wrote no {variant} row");
    }
    let x = median(&v);
    let check: Vec<f64> = ok
        .iter()
        .filter_map(|m| m.extra.get("check_ns_per_io").copied())
        .collect();
    let check = (!check.is_empty()).then(|| median(&check));
    let clock: Vec<ClockUse> = ok
        .iter()
        .filter_map(|m| {
            Some(ClockUse {
                reads_per_op: *m.extra.get("clock_reads_per_op")?,
                ns_per_op: *m.extra.get("clock_ns_per_op")?,
            })
        })
        .collect();
    let cpu: Vec<Cpu> = ok
        .iter()
        .filter(|m| m.ops > 0)
        .map(|m| Cpu {
            user_ns_per_op: m.user_ns as f64 / m.ops as f64,
            sys_ns_per_op: m.sys_ns as f64 / m.ops as f64,
        })
        .collect();
    Ok(LabFigure {
        one_cpu: ok.iter().all(|m| m.extra.get("one_cpu") == Some(&1.0)),
        value: if metric_name == "gbps" { x * 8.0 } else { x },
        check_ns: check,
        clock: ClockUse::median(&clock),
        cpu: Cpu::median(&cpu),
        lat: {
            let l: Vec<sockperf::Lat> = ok
                .iter()
                .filter(|_| experiment == "rr")
                .map(|m| sockperf::Lat {
                    p50_us: m.latency.p50_ns as f64 / 1e3,
                    p99_us: m.latency.p99_ns as f64 / 1e3,
                })
                .collect();
            sockperf::Lat::median(&l)
        },
        receiver_hash: ReceiverHash::median(
            &ok.iter()
                .filter_map(|m| ReceiverHash::of(m))
                .collect::<Vec<_>>(),
        ),
    })
}

/// Makes the tool side of a pair runnable: installs fio or iperf3, builds t/io_uring or
/// send-zerocopy (returning the binary), and creates the lab's namespaces for the UDP rows the
/// first time one needs them.
fn prepare(
    tool: &Side,
    name: &str,
    caps: &zclab::caps::Caps,
    veth: &mut Option<zclab::net::netns::VethLab>,
) -> Result<Option<PathBuf>> {
    match tool {
        Side::Fio(_) | Side::Iperf3(_) | Side::Sockperf { .. } => {
            ensure_tool(name, name).map(|_| None)
        }
        Side::TIoUring(_) => t_io_uring().map(Some),
        Side::SendZc(z) => {
            let bin = send_zerocopy()?;
            if !z.tcp && veth.is_none() {
                if let Some(r) = zclab::net::netns::unavailable_reason(caps) {
                    bail!(r);
                }
                let ip = PathBuf::from(caps.net.ip_binary.clone().unwrap_or_default());
                *veth = Some(
                    zclab::net::netns::VethLab::create(&ip, 65535)
                        .context("cannot create the lab's namespaces")?,
                );
            }
            Ok(Some(bin))
        }
        Side::Lab { .. } => Ok(None),
    }
}

/// Runs the comparison; returns the outcomes and the Markdown table.
pub fn run(args: &VersusArgs) -> Result<(Vec<Outcome>, String)> {
    let file_size = if args.full { "1GiB" } else { "256MiB" };
    let all = pairs(args.full, file_size);
    let selected: Vec<Pair> = all
        .into_iter()
        .filter(|p| args.only.is_empty() || args.only.iter().any(|w| p.name.contains(w.as_str())))
        .collect();
    if selected.is_empty() {
        bail!("no workload matches --only {}", args.only.join(","));
    }
    let cancel = Cancel::install();
    let bin_dir = super::run::bin_dir();
    let caps = zclab::caps::probe(&args.workdir);
    let _cleanup = Cleanup(fio_path(args));
    let mut net_file: Option<zclab::sys::file::PatternFile> = None;
    let mut io_file: Option<zclab::sys::file::PatternFile> = None;
    // The lab's namespaces, for send-zerocopy's UDP rows (removed when this returns).
    let mut veth: Option<zclab::net::netns::VethLab> = None;
    // Where the host has CPUs 0 and 1 (the tools' and the lab's two) around each pair of
    // runs: a busy host moves them apart, and every row says how often it did.
    let mut placement = (zclab::sys::cpu::online_count() >= 2).then(|| Placement::new((0, 1)));
    let mut outcomes = Vec::new();
    for p in &selected {
        eprintln!("versus: {}", p.name);
        let (mut pairs_probed, mut pairs_apart, mut pairs_apart_one_cpu) = (0u32, 0u32, 0u32);
        let mut tool_values = Vec::new();
        let mut lab_values = Vec::new();
        let mut check_values = Vec::new();
        let mut lab_clock: Vec<ClockUse> = Vec::new();
        let mut tool_cpu = Vec::new();
        let mut lab_cpu = Vec::new();
        let (mut tool_lat, mut lab_lat) = (Vec::new(), Vec::new());
        let mut lab_hash = Vec::new();
        let mut error = None;
        let tool_name = match &p.tool {
            Side::Fio(_) => "fio",
            Side::Iperf3(_) => "iperf3",
            Side::TIoUring(_) => "t/io_uring",
            Side::SendZc(_) => "send-zerocopy",
            Side::Sockperf { .. } => "sockperf",
            Side::Lab { .. } => "zclab",
        };
        let built = match prepare(&p.tool, tool_name, &caps, &mut veth) {
            Ok(b) => b,
            Err(e) => {
                error = Some(format!("{e:#}"));
                None
            }
        };
        let Side::Lab {
            experiment,
            args: lab_args,
            variant,
            metric,
        } = &p.lab
        else {
            unreachable!("the lab side is the lab")
        };
        let mut lab_args = lab_args.clone();
        // The NOP loop gets the ring t/io_uring sets up.
        if let (Side::TIoUring(_), Some(b), "syscall_floor") = (&p.tool, &built, *experiment) {
            if let Some(f) = build::t_io_uring_ring_flags(b) {
                lab_args.extend(["--ring-flags".to_string(), f.to_string()]);
            }
        }
        if p.name.contains("O_DIRECT") && !caps.odirect.real {
            error = Some(format!(
                "{} has no real O_DIRECT ({})",
                args.workdir.display(),
                caps.odirect.fs_type
            ));
        }
        // One untimed run of the tool first, as the lab's side gets its warm-up pass: fio lays
        // out its file and warms the cache, the binaries are loaded, the sockets' memory is
        // there. A tool's first run may read a cold file at a tenth of its later rate.
        let mut tool_run = |lat: &mut Vec<sockperf::Lat>| {
            run_tool(
                &p.tool,
                built.as_deref(),
                args,
                &mut net_file,
                &mut io_file,
                veth.as_ref(),
                lat,
            )
        };
        if error.is_none() && !cancel.is_cancelled() {
            if let Err(e) = tool_run(&mut Vec::new()) {
                error = Some(format!("{e:#}"));
            }
        }
        let mut peer_spread = None;
        let mut reruns = 0;
        for attempt in 0..2 {
            for _ in 0..args.repeat {
                if error.is_some() || cancel.is_cancelled() {
                    break;
                }
                let start = placement
                    .as_mut()
                    .and_then(|pl| pl.before_trial(Duration::ZERO, || false));
                let busy0 = noise::cpu_times(&[1]);
                let t = tool_run(&mut tool_lat);
                // The tool runs no thread of the lab's: alone when CPU 1 stayed idle.
                let tool_busy = busy0
                    .zip(noise::cpu_times(&[1]))
                    .and_then(|(a, b)| noise::share(&a, &b))
                    .map(|s| s.busy_pct);
                let tool_alone = zclab::measure::placement::one_cpu(false, 0, tool_busy);
                let l = run_lab(
                    &bin_dir,
                    experiment,
                    &lab_args,
                    variant,
                    metric,
                    &args.workdir,
                );
                let one_cpu = tool_alone && l.as_ref().is_ok_and(|l| l.one_cpu);
                if let Some((_, apart)) = placement
                    .as_mut()
                    .and_then(|pl| pl.after_trial(start, one_cpu))
                {
                    pairs_probed += 1;
                    if one_cpu {
                        pairs_apart_one_cpu += u32::from(apart);
                    } else {
                        pairs_apart += u32::from(apart);
                    }
                }
                match (t, l) {
                    (Ok((t, tc)), Ok(l)) => {
                        tool_values.push(t);
                        lab_values.push(l.value);
                        check_values.extend(l.check_ns);
                        lab_clock.extend(l.clock);
                        tool_cpu.extend(tc);
                        lab_cpu.extend(l.cpu);
                        lab_lat.extend(l.lat);
                        lab_hash.extend(l.receiver_hash);
                    }
                    (Err(e), _) | (_, Err(e)) => error = Some(format!("{e:#}")),
                }
            }
            peer_spread = spread(&tool_values);
            // A peer that varies by more than PEER_SPREAD_MAX between its own runs is measured
            // again once; the row's figures are then the second attempt's.
            if attempt == 0
                && error.is_none()
                && !cancel.is_cancelled()
                && peer_spread.is_some_and(|s| s > PEER_SPREAD_MAX)
            {
                eprintln!(
                    "versus: {}: {tool_name}'s repeats spread {:.2}x (over {PEER_SPREAD_MAX}x): measuring the row again",
                    p.name,
                    peer_spread.unwrap_or(0.0)
                );
                reruns += 1;
                for v in [&mut tool_values, &mut lab_values, &mut check_values] {
                    v.clear();
                }
                tool_cpu.clear();
                lab_cpu.clear();
                lab_clock.clear();
                (pairs_probed, pairs_apart, pairs_apart_one_cpu) = (0, 0, 0);
                tool_lat.clear();
                lab_lat.clear();
                lab_hash.clear();
                continue;
            }
            break;
        }
        let paired = zclab::analysis::ratio(&lab_values, &tool_values, Pairing::ByIndex);
        let (ratio, verdict) = match (&error, paired) {
            (Some(e), _) => (None, format!("not run: {e}")),
            (None, None) => (None, "not run: no figure on one side".to_string()),
            (None, Some(r)) => (Some(r), verdict_of(&r, peer_spread)),
        };
        outcomes.push(Outcome {
            workload: p.name.clone(),
            lab_side: format!("{experiment} {variant}: {}", lab_args.join(" ")),
            fastest_peer: None,
            same_workload: !p.note.starts_with(NOT_SAME),
            unit: p.unit.into(),
            tool: tool_name.into(),
            tool_values,
            lab_values,
            ratio: ratio.map(|r| r.value),
            ratio_lo: ratio.map(|r| r.lo),
            ratio_hi: ratio.map(|r| r.hi),
            peer_spread,
            reruns,
            verdict,
            note: p.note.into(),
            lab_check_ns: (!check_values.is_empty()).then(|| median(&check_values)),
            lab_clock: ClockUse::median(&lab_clock),
            tool_cpu: Cpu::median(&tool_cpu),
            // Only beside a tool's own figure: the rows without one may count other work
            // (a receiving thread of the lab's) in the lab's process time.
            lab_cpu: Cpu::median(&lab_cpu).filter(|_| !tool_cpu.is_empty()),
            tool_latency: sockperf::Lat::median(&tool_lat),
            lab_latency: sockperf::Lat::median(&lab_lat),
            pairs_probed,
            pairs_apart,
            pairs_apart_one_cpu,
            ratio_without_own: None,
            lab_receiver_hash: ReceiverHash::median(&lab_hash),
        });
    }
    for o in &mut outcomes {
        o.ratio_without_own = without_own_costs(o);
    }
    mark_fastest(&mut outcomes);
    let md = table(&outcomes, &caps.hostname, &caps.kernel.release, args);
    let (stamp, _) = results::utc_now();
    let dir = args.results.join(results::sanitize(&format!(
        "versus-{}-{}-{stamp}",
        caps.hostname, caps.kernel.release
    )));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    results::atomic_write(&dir.join("versus.md"), md.as_bytes())?;
    results::atomic_write(
        &dir.join("versus.json"),
        serde_json::to_string_pretty(&outcomes)?.as_bytes(),
    )?;
    eprintln!("versus: written to {}", dir.display());
    Ok((outcomes, md))
}

/// The widest spread (max/min over its repeats) at which a tool's figure is taken as it
/// stands; a wider one is measured again, and if still wider the row says "peer unstable".
const PEER_SPREAD_MAX: f64 = 1.5;

/// max/min of `v`; None when empty or the minimum is not positive.
fn spread(v: &[f64]) -> Option<f64> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!v.is_empty() && lo > 0.0).then(|| hi / lo)
}

/// The ratio the row would have without the work the lab adds to measure and to check: its
/// block check and its clock readings, both measured in the run (`check_ns_per_io`,
/// `clock_ns_per_op`). Only for a rate of operations whose lab side kept its CPU busy (CPU
/// per operation x rate >= 0.9): there each nanosecond of CPU per operation is a nanosecond of
/// wall time per operation, so the rate scales by cpu / (cpu - own). None where the row has no
/// CPU figure, no such cost (under 1% of its CPU per operation, as on the NOP rows, timed in
/// batches), or the lab side waited for something else (a device, a peer).
/// The verdict stays the measured ratio's; this says how much of a gap the measuring explains.
fn without_own_costs(x: &Outcome) -> Option<f64> {
    if !matches!(x.unit.as_str(), "IOPS" | "ops/s") {
        return None;
    }
    let (cpu, ratio) = (x.lab_cpu?.total(), x.ratio?);
    let own = x.lab_check_ns.unwrap_or(0.0) + x.lab_clock.map_or(0.0, |c| c.ns_per_op);
    let busy = median(&x.lab_values) * cpu / 1e9;
    // Under 1% of the CPU per operation the ratio would read the same.
    (own >= 0.01 * cpu && own < cpu && busy >= 0.9 && !x.lab_values.is_empty())
        .then(|| ratio * cpu / (cpu - own))
}

/// Marks each row whose lab side another row also ran against a faster peer (a higher median
/// tool figure, in the same unit, both measured): the lab's standing on that workload is the
/// ratio against the fastest, which [`fastest_table`] lists.
fn mark_fastest(o: &mut [Outcome]) {
    let fastest: Vec<Option<usize>> = (0..o.len())
        .map(|i| {
            (0..o.len())
                .filter(|&j| {
                    o[j].lab_side == o[i].lab_side
                        && o[j].same_workload
                        && o[j].unit == o[i].unit
                        && o[j].ratio.is_some()
                        && !o[j].tool_values.is_empty()
                })
                .max_by(|&a, &b| median(&o[a].tool_values).total_cmp(&median(&o[b].tool_values)))
        })
        .collect();
    for (i, f) in fastest.into_iter().enumerate() {
        o[i].fastest_peer = f.filter(|&f| f != i).map(|f| o[f].workload.clone());
    }
}

/// The row's ratio with its interval, or "-" where it has none.
fn ratio_text(x: &Outcome) -> String {
    match (x.ratio, x.ratio_lo, x.ratio_hi) {
        (Some(r), Some(lo), Some(hi)) => format!("{r:.2}x [{lo:.2}-{hi:.2}]"),
        _ => "-".into(),
    }
}

/// One line per lab side: the row against its fastest peer, and how many peers it met.
fn fastest_table(o: &[Outcome]) -> String {
    let mut s = String::from(
        "\nAgainst the fastest peer of each workload (rows with the same zclab side; a ratio against a slower peer is not zclab's standing)\n\n| zclab side | peers | fastest peer's row | zclab/tool | verdict |\n|---|---|---|---|---|\n",
    );
    let mut seen = Vec::new();
    for x in o
        .iter()
        .filter(|x| x.fastest_peer.is_none() && x.same_workload && x.ratio.is_some())
    {
        if seen.contains(&&x.lab_side) {
            continue;
        }
        seen.push(&x.lab_side);
        let peers = o
            .iter()
            .filter(|y| y.lab_side == x.lab_side && y.ratio.is_some())
            .map(|y| y.tool.as_str())
            .collect::<Vec<_>>();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            x.lab_side,
            peers.join(", "),
            x.workload,
            ratio_text(x),
            x.verdict
        );
    }
    s
}

/// A row's verdict from the interval of zclab/tool: "peer unstable" when the tool's own
/// spread stayed over [`PEER_SPREAD_MAX`] (never a win, whatever the ratio), ">= 1.0" when the
/// whole interval is at or above 1, "below" when it is all below, "includes 1.0" otherwise.
fn verdict_of(r: &Ratio, peer_spread: Option<f64>) -> String {
    if peer_spread.is_some_and(|s| s > PEER_SPREAD_MAX) {
        "peer unstable".into()
    } else if r.lo >= 1.0 {
        ">= 1.0".into()
    } else if r.hi < 1.0 {
        "below".into()
    } else {
        "includes 1.0".into()
    }
}

/// One run of a pair's tool side: its figure, and its CPU time per operation where it is read.
fn run_tool(
    tool: &Side,
    built: Option<&Path>,
    args: &VersusArgs,
    net_file: &mut Option<zclab::sys::file::PatternFile>,
    io_file: &mut Option<zclab::sys::file::PatternFile>,
    veth: Option<&zclab::net::netns::VethLab>,
    lat: &mut Vec<sockperf::Lat>,
) -> Result<(f64, Option<Cpu>)> {
    let file_size = if args.full { "1GiB" } else { "256MiB" };
    match tool {
        Side::Fio(o) => run_fio(o, &fio_path(args), file_size).map(|v| (v, None)),
        Side::Iperf3(o) => {
            if o.iter().any(|x| x == FILE) && net_file.is_none() {
                let size = zclab::units::parse_size(net_bytes(args.full)).expect("static size");
                let path = args
                    .workdir
                    .join(format!("zclab-versus-{}-net.dat", std::process::id()));
                *net_file = Some(
                    zclab::sys::file::PatternFile::create(&path, size)
                        .context("cannot create the file iperf3 -F sends")?,
                );
            }
            run_iperf3(
                o,
                net_file
                    .as_ref()
                    .map_or(Path::new(""), |f| f.path.as_path()),
            )
            .map(|v| (v, None))
        }
        Side::TIoUring(o) => {
            let o = if o.iter().any(|x| x == FILE) {
                if io_file.is_none() {
                    let size = zclab::units::parse_size(file_size).expect("static size");
                    let path = args
                        .workdir
                        .join(format!("zclab-versus-{}-io.dat", std::process::id()));
                    *io_file = Some(
                        zclab::sys::file::PatternFile::create(&path, size)
                            .context("cannot create the file t/io_uring reads")?,
                    );
                }
                let path = io_file.as_ref().map(|f| f.path.display().to_string());
                o.iter()
                    .map(|x| {
                        if x == FILE {
                            path.clone().unwrap_or_default()
                        } else {
                            x.clone()
                        }
                    })
                    .collect()
            } else {
                o.clone()
            };
            run_t_io_uring(built.context("t/io_uring was not built")?, &o)
        }
        Side::SendZc(z) => sendzc::run(
            built.context("send-zerocopy was not built")?,
            z,
            if args.full { 10 } else { 3 },
            veth,
        ),
        Side::Sockperf { size, secs } => sockperf::run(*size, *secs).map(|(v, l)| {
            lat.push(l);
            (v, None)
        }),
        Side::Lab { .. } => unreachable!("the tool side is a tool"),
    }
}

/// The file fio reads (created by fio, removed when `run` returns).
fn fio_path(args: &VersusArgs) -> PathBuf {
    args.workdir
        .join(format!("zclab-versus-{}.dat", std::process::id()))
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn fmt(unit: &str, v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    let hi = v.iter().cloned().fold(f64::MIN, f64::max);
    let m = median(v);
    if unit == "ops/s" {
        return format!("{:.2}M ({:.2}-{:.2}M)", m / 1e6, lo / 1e6, hi / 1e6);
    }
    if unit == "tx/s" {
        return format!("{:.1}K ({:.1}-{:.1}K)", m / 1e3, lo / 1e3, hi / 1e3);
    }
    if unit == "IOPS" {
        format!("{:.0}K ({:.0}-{:.0}K)", m / 1e3, lo / 1e3, hi / 1e3)
    } else {
        format!("{m:.1} ({lo:.1}-{hi:.1})")
    }
}

/// The row's note, with what was measured beside the figures: the lab's check cost on
/// storage rows, CPU per operation on NOP rows.
fn note(x: &Outcome) -> String {
    let mut parts = Vec::new();
    if !x.note.is_empty() {
        parts.push(x.note.clone());
    }
    if x.pairs_apart > 0 {
        parts.push(format!(
            "host busy: CPUs 0 and 1 apart around {} of {} pairs of runs",
            x.pairs_apart, x.pairs_probed
        ));
    }
    if x.pairs_apart_one_cpu > 0 {
        parts.push(format!(
            "CPUs 0 and 1 apart around {} of {} pairs of runs where both sides ran on CPU 0 alone, out of the placement's reach",
            x.pairs_apart_one_cpu, x.pairs_probed
        ));
    }
    if let Some(sp) = x
        .peer_spread
        .filter(|&sp| sp > PEER_SPREAD_MAX || x.reruns > 0)
    {
        parts.push(format!(
            "{}'s repeats spread {sp:.2}x{}",
            x.tool,
            if x.reruns > 0 {
                " after measuring the row again"
            } else {
                ""
            }
        ));
    }
    if let Some(f) = &x.fastest_peer {
        parts.push(format!(
            "not the fastest peer of this zclab side: see the row \"{f}\""
        ));
    }
    if let Some(c) = x.lab_check_ns {
        parts.push(format!("zclab checks every block: {c:.0} ns per read"));
    }
    if let Some(h) = x.lab_receiver_hash {
        parts.push(format!(
            "zclab's receiver spent {:.0}% of its CPU time hashing ({:.0} ns per KiB)",
            h.share_of_cpu * 100.0,
            h.ns_per_kib
        ));
    }
    if let Some(c) = x.lab_clock.filter(|c| c.reads_per_op >= 0.1) {
        parts.push(format!(
            "zclab times every operation: {:.1} clock readings per operation, {:.0} ns",
            c.reads_per_op, c.ns_per_op
        ));
    }
    if let (Some(t), Some(l)) = (x.tool_latency, x.lab_latency) {
        parts.push(format!(
            "round trip p50: {} {:.1} us, zclab {:.1} us ({:.2}x); p99: {} {:.1} us, zclab {:.1} us ({:.2}x)",
            x.tool,
            t.p50_us,
            l.p50_us,
            l.p50_us / t.p50_us,
            x.tool,
            t.p99_us,
            l.p99_us,
            l.p99_us / t.p99_us
        ));
    }
    if let (Some(t), Some(l)) = (x.tool_cpu, x.lab_cpu) {
        parts.push(format!(
            "CPU per op: {} {:.1} ns (user {:.1}), zclab {:.1} ns (user {:.1})",
            x.tool,
            t.total(),
            t.user_ns_per_op,
            l.total(),
            l.user_ns_per_op
        ));
    }
    if let Some(w) = x.ratio_without_own {
        parts.push(format!(
            "without the block check and the clock readings, whose time is measured above, \
             zclab/tool would be about {w:.2}x"
        ));
    }
    parts.join("; ")
}

fn table(o: &[Outcome], host: &str, kernel: &str, args: &VersusArgs) -> String {
    let mut s = format!(
        "zclab versus{} on {host} ({kernel}), {} repeats each side after one untimed run of the tool, median (min-max); zclab/tool: the median of the paired ratios [their range, or 95% interval from 6 repeats]\n\n| workload | tool | tool figure | zclab figure | zclab/tool | verdict | note |\n|---|---|---|---|---|---|---|\n",
        if args.full { " --full" } else { "" },
        args.repeat
    );
    let (probed, apart) = o
        .iter()
        .fold((0, 0), |(p, a), x| (p + x.pairs_probed, a + x.pairs_apart));
    if apart > 0 {
        s.insert_str(
            s.find("\n\n").unwrap_or(s.len()),
            &format!(
                "\n\n**The host was busy**: CPUs 0 and 1 were apart (a cache line's round trip over twice the lowest on this boot; `zclab placement`) around {apart} of {probed} pairs of runs, so the figures of those rows are the busy host's as much as the programs'."
            ),
        );
    }
    for x in o {
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {} {} | {} | {} | {} |",
            x.workload,
            x.tool,
            fmt(&x.unit, &x.tool_values),
            x.unit,
            fmt(&x.unit, &x.lab_values),
            x.unit,
            ratio_text(x),
            if !x.same_workload {
                format!("{} (not the same workload)", x.verdict)
            } else if x.fastest_peer.is_some() {
                format!("{} (slower peer)", x.verdict)
            } else {
                x.verdict.clone()
            },
            note(x)
        );
    }
    s + &fastest_table(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_times() {
        let (u, s) = proc_cpu_ns("/proc/self/stat").unwrap();
        // Spin until the counters move (they count in clock ticks); they must within 2 s.
        let t0 = std::time::Instant::now();
        let mut now = (u, s);
        while now.0 + now.1 == u + s && t0.elapsed() < Duration::from_secs(2) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            now = proc_cpu_ns("/proc/self/stat").unwrap();
        }
        assert!(now.0 + now.1 > u + s, "{u} {s} -> {now:?}");
        assert!(proc_cpu_ns("/proc/nonexistent/stat").is_none());
    }

    #[test]
    fn verdicts_come_from_the_interval_and_the_peer_spread() {
        let r = |lab: &[f64], tool: &[f64]| {
            zclab::analysis::ratio(lab, tool, Pairing::ByIndex).unwrap()
        };
        let tool = [100.0, 104.0, 98.0];
        assert_eq!(
            verdict_of(&r(&[101.0, 106.0, 99.0], &tool), spread(&tool)),
            ">= 1.0"
        );
        assert_eq!(
            verdict_of(&r(&[97.0, 106.0, 96.0], &tool), spread(&tool)),
            "includes 1.0"
        );
        assert_eq!(
            verdict_of(&r(&[90.0, 95.0, 91.0], &tool), spread(&tool)),
            "below"
        );
        // A tool whose own runs spread from 12K to 234K cannot be beaten, only not measured.
        let wild = [12.0, 234.0, 200.0];
        assert_eq!(spread(&wild).map(|s| s > PEER_SPREAD_MAX), Some(true));
        assert_eq!(
            verdict_of(&r(&[300.0, 300.0, 300.0], &wild), spread(&wild)),
            "peer unstable"
        );
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[0.0, 1.0]), None);
    }

    fn row(workload: &str, tool: &str, side: &str, tool_values: &[f64], ratio: f64) -> Outcome {
        Outcome {
            workload: workload.into(),
            lab_side: side.into(),
            fastest_peer: None,
            same_workload: true,
            unit: "IOPS".into(),
            tool: tool.into(),
            tool_values: tool_values.to_vec(),
            lab_values: vec![],
            ratio: Some(ratio),
            ratio_lo: Some(ratio - 0.01),
            ratio_hi: Some(ratio + 0.01),
            peer_spread: None,
            reruns: 0,
            verdict: if ratio > 1.01 { ">= 1.0" } else { "below" }.into(),
            note: String::new(),
            lab_check_ns: None,
            lab_clock: None,
            tool_cpu: None,
            lab_cpu: None,
            tool_latency: None,
            lab_latency: None,
            pairs_probed: 0,
            pairs_apart: 0,
            pairs_apart_one_cpu: 0,
            ratio_without_own: None,
            lab_receiver_hash: None,
        }
    }

    #[test]
    fn a_hashing_receiver_s_time_is_its_share_of_its_cpu() {
        // 1 GiB received, 100 ms of the receiver's CPU, 25 ms of it in the hash.
        let mut m = results::Metrics {
            bytes: 1 << 30,
            peer_user_ns: Some(40_000_000),
            peer_sys_ns: Some(60_000_000),
            ..Default::default()
        };
        assert_eq!(
            ReceiverHash::of(&m),
            None,
            "a receiver that did not time its hash"
        );
        m.extra.insert("peer_hash_ns".into(), 25e6);
        let h = ReceiverHash::of(&m).expect("timed");
        assert!((h.share_of_cpu - 0.25).abs() < 1e-12, "{h:?}");
        assert!((h.ns_per_kib - 25e6 / 1048576.0).abs() < 1e-9, "{h:?}");
        let mut x = row("iperf3 loopback", "iperf3", "a", &[40.0], 0.8);
        x.lab_receiver_hash = ReceiverHash::median(&[h]);
        let n = note(&x);
        assert!(
            n.contains("zclab's receiver spent 25% of its CPU time hashing (24 ns per KiB)"),
            "{n}"
        );
        // No receiver CPU figure: no share to give.
        m.peer_user_ns = None;
        assert_eq!(ReceiverHash::of(&m), None);
    }

    #[test]
    fn a_win_over_a_slower_peer_is_not_the_standing() {
        let mut o = vec![
            row(
                "fio qd1",
                "fio",
                "storage_read uring-read: --qd 1",
                &[1.3e6],
                1.5,
            ),
            row(
                "t/io_uring qd1",
                "t/io_uring",
                "storage_read uring-read: --qd 1",
                &[2.2e6],
                0.89,
            ),
            row(
                "fio qd32",
                "fio",
                "storage_read uring-read: --qd 32",
                &[1.5e6],
                1.2,
            ),
        ];
        // A row that did not run is nobody's fastest peer.
        let mut failed = row(
            "t/io_uring qd32",
            "t/io_uring",
            "storage_read uring-read: --qd 32",
            &[],
            0.0,
        );
        failed.ratio = None;
        o.push(failed);
        mark_fastest(&mut o);
        assert_eq!(o[0].fastest_peer.as_deref(), Some("t/io_uring qd1"));
        assert_eq!(o[1].fastest_peer, None);
        assert_eq!(o[2].fastest_peer, None);
        assert!(note(&o[0]).contains("not the fastest peer"));
        let t = fastest_table(&o);
        assert!(
            t.contains(
                "| `storage_read uring-read: --qd 1` | fio, t/io_uring | t/io_uring qd1 | 0.89x"
            ),
            "{t}"
        );
        assert!(t.contains("--qd 32` | fio | fio qd32 | 1.20x"), "{t}");
        assert!(!t.contains("| fio qd1 |"), "{t}");
    }

    #[test]
    fn a_tool_on_another_workload_is_nobodys_fastest_peer() {
        let side = "file_to_socket classic-sendfile";
        let mut o = vec![
            row("iperf3 -Z -F FILE", "iperf3", side, &[24.9], 0.94),
            row("iperf3 -Z 128 KiB", "iperf3", side, &[51.1], 0.52),
        ];
        o[1].same_workload = false;
        mark_fastest(&mut o);
        assert_eq!(
            o[0].fastest_peer, None,
            "the faster tool runs another workload"
        );
        let t = fastest_table(&o);
        assert!(t.contains("| iperf3 -Z -F FILE | 0.94x"), "{t}");
        assert!(!t.contains("iperf3 -Z 128 KiB"), "{t}");
    }

    #[test]
    fn a_busy_host_is_named_in_the_table_and_its_rows() {
        let args = VersusArgs {
            full: false,
            only: vec![],
            repeat: 3,
            results: PathBuf::from("results"),
            workdir: PathBuf::from("/tmp"),
        };
        let mut o = vec![
            row("row a", "fio", "a", &[1.0], 1.0),
            row("row b", "fio", "b", &[1.0], 1.0),
        ];
        o[0].pairs_probed = 3;
        (o[1].pairs_probed, o[1].pairs_apart) = (3, 2);
        let t = table(&o, "h", "k", &args);
        assert!(
            t.contains("The host was busy**: CPUs 0 and 1 were apart")
                && t.contains("around 2 of 6 pairs of runs"),
            "{t}"
        );
        assert!(!note(&o[0]).contains("host busy"));
        assert!(note(&o[1]).contains("host busy: CPUs 0 and 1 apart around 2 of 3 pairs"));
        o[1].pairs_apart = 0;
        let t = table(&o, "h", "k", &args);
        assert!(
            !t.contains("host was busy") && !t.contains("host busy"),
            "{t}"
        );
        // Apart, but both sides on CPU 0 alone: said, and not called busy.
        o[1].pairs_apart_one_cpu = 2;
        assert!(!table(&o, "h", "k", &args).contains("host was busy"));
        assert!(!note(&o[1]).contains("host busy"));
        assert!(
            note(&o[1])
                .contains("apart around 2 of 3 pairs of runs where both sides ran on CPU 0 alone")
        );
    }

    #[test]
    fn the_lab_s_own_costs_are_taken_out_only_where_its_cpu_was_the_limit() {
        // 1M reads/s at 1000 ns of CPU each: the CPU was busy. 50 ns of check and 50 of clock
        // readings leave 900 ns: 0.90x becomes 1.00x.
        let mut x = row("t/io_uring qd1", "t/io_uring", "a", &[1.1e6], 0.9);
        x.lab_values = vec![1.0e6];
        x.lab_cpu = Some(Cpu {
            user_ns_per_op: 200.0,
            sys_ns_per_op: 800.0,
        });
        x.lab_check_ns = Some(50.0);
        x.lab_clock = Some(ClockUse {
            reads_per_op: 2.0,
            ns_per_op: 50.0,
        });
        let w = without_own_costs(&x).expect("CPU-bound");
        assert!((w - 1.0).abs() < 1e-9, "{w}");
        x.ratio_without_own = Some(w);
        assert!(
            note(&x).contains("zclab/tool would be about 1.00x"),
            "{}",
            note(&x)
        );
        // The same CPU per read at a tenth of the rate: the lab waited for the device, and its
        // own costs did not set the rate.
        x.lab_values = vec![1.0e5];
        assert_eq!(without_own_costs(&x), None);
        // No CPU figure, or a rate of bytes: nothing to scale.
        x.lab_values = vec![1.0e6];
        let mut y = x.clone();
        y.lab_cpu = None;
        assert_eq!(without_own_costs(&y), None);
        y = x.clone();
        y.unit = "Gbit/s".into();
        assert_eq!(without_own_costs(&y), None);
        // Nothing of its own to take out.
        y = x.clone();
        (y.lab_check_ns, y.lab_clock) = (None, None);
        assert_eq!(without_own_costs(&y), None);
        // Or too little to change the ratio as printed (a NOP loop timed in batches).
        y.lab_clock = Some(ClockUse {
            reads_per_op: 0.02,
            ns_per_op: 5.0,
        });
        assert_eq!(without_own_costs(&y), None);
    }

    #[test]
    fn only_takes_words_that_start_with_a_hyphen() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: VersusArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["versus", "--only", "-n 1 TCP,fio"])
            .expect("parses");
        assert_eq!(cli.args.only, ["-n 1 TCP", "fio"]);
    }

    #[test]
    fn pairs_that_say_they_differ_are_marked() {
        let differ: Vec<String> = pairs(false, "256MiB")
            .iter()
            .filter(|p| p.note.starts_with(NOT_SAME))
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(differ.len(), 2, "{differ:?}");
        assert!(differ.iter().any(|n| n.starts_with("iperf3 -Z (sendfile)")));
        assert!(differ.iter().any(|n| n.contains("-n 8 TCP")));
    }

    #[test]
    fn t_io_uring_lines() {
        let out = "polled=1, fixedbufs=1/0\nIOPS=3.09M, IOS/call=1/1\nIOPS=812.50K, IOS/call=32/32\nIOPS=17, IOS/call=1/1\nExiting on timeout\nMaximum IOPS=3.09M\n";
        assert_eq!(t_io_uring_iops(out), vec![3.09e6, 812.5e3, 17.0]);
        assert!(t_io_uring_iops("IOPS=fast\n").is_empty());
    }
}
