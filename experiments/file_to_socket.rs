//! # file_to_socket: serving a file to a socket, as Kafka serves consumers
//!
//! **Question.** Which path moves a file from the page cache to a socket with the least time,
//! CPU and system calls: the traditional read+write (two CPU copies, four user/kernel switches
//! per chunk, in the seeds' words), mmap+write (one copy), sendfile (with "DMA gather" since
//! Linux 2.4: no CPU copy at all), splice, or their io_uring counterparts — and which of them
//! really leave the bytes untouched by the CPU?
//!
//! **Set-up.** A file of known content is sent over one of three paths (`--paths`, as in
//! `net_send`; see `zclab::net::netns`):
//! - `tcp-loopback`: TCP over 127.0.0.1 to a peer thread pinned to the other CPU, which receives
//!   into user space and hashes the stream (xxh3); every trial checks that hash against the
//!   file's. The receiver's copy makes every variant copy at least once on this path.
//! - `tcp-veth`: the same, from namespace A over a veth pair to a receiver in namespace B.
//! - `udp-sink`: the file as datagrams from namespace A over a veth pair to namespace S, whose
//!   device drops them at IP (no address assigned): nothing receives them, so a page the kernel
//!   sends by reference (sendfile, splice, SEND_ZC) is never copied, while read+write and
//!   mmap+write still copy into the socket buffer. This is where the seeds' "sendfile + DMA
//!   gather" can be seen: veth takes page references as a scatter/gather NIC does. One step
//!   sends one datagram of `--datagram` bytes (the `chunk` of the point); integrity: every
//!   datagram accepted whole, and the sink device's rx counters grew by exactly the frames and
//!   bytes of the datagrams sent (also the sink's IpInAddrErrors, recorded).
//!
//! - `remote-tcp`, `remote-udp` (with `--peer HOST[:PORT]`, which makes them the default): to
//!   `zclab serve` on another host. `remote-tcp` streams to a receiver there that hashes what
//!   arrives (checked against the file's hash); `remote-udp` sends the file as connected UDP
//!   datagrams of `--datagram` bytes to a receiver there that counts them and sums each one's
//!   xxh3-64 (checked against the same sum over the file's chunks). The receiver's CPU time,
//!   context switches and ksoftirqd time are measured there and recorded as `peer_*`. The
//!   local paths build both ends on this host and are not combined with `--peer`.
//!
//! The veth paths need root (namespaces `zcsend-<pid>-*`, removed at the end, on error and on
//! SIGINT/SIGTERM). By default every local path runs when they can be created, else
//! `tcp-loopback` alone (the others recorded as skipped with the reason); a path named in
//! `--paths` that cannot run is an error. The measured thread is pinned to the first CPU of
//! `--cpus`.
//!
//! **Variants.** See `VARIANTS` below: `classic-*` use plain system calls, `uring-*` io_uring.
//! One latency sample is one step: one read+write pair, one write from the mapping, one
//! sendfile call, one splice pair, or one io_uring submission to its completion; on udp-sink
//! every step is one datagram. After the table a udp-sink run prints (and writes `copies.md`)
//! the seeds' table of copies and switches beside the measured system calls and sender CPU.
//! The measured loop, the connections and the receiver's account are in
//! `zclab::loops::file_socket`, the seeds' table in `zclab::loops::copies`.
//!
//! **Parameters.** `--paths`, `--peer`, `--sizes` (file sizes), `--chunks` (bytes per step on TCP),
//! `--datagram` (bytes per datagram on udp-sink), `--veth-mtu`, `--cache warm|cold` (cold drops
//! the file's pages with posix_fadvise before each trial), `--pipe-size`, `--pool` (zero-copy
//! buffers), `--nodelay`, `--workdir`.
//!
//! **Minimum kernel.** classic: any 2.6.33+ (sendfile and splice to a UDP socket send pages by
//! reference from 6.5, MSG_SPLICE_PAGES); uring-read-send 5.6 (IORING_OP_READ/SEND);
//! uring-splice 5.7; uring-send-zc-* 6.0 (IORING_OP_SEND_ZC), usage reporting 6.2.

use anyhow::{Result, anyhow};
use serde_json::json;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zclab::caps::Caps;
use zclab::catalog::{Entry, file_to_socket as names};
use zclab::harness::{self, Analysis, CommonArgs, Done, Env, Experiment, Plan, Point};
use zclab::harness::{Trial, Variant};
use zclab::loops::copies::{self, Host};
use zclab::loops::file_socket::{self as fsock, Endpoint, FileSend, FixedZcSteps, MappedZcSteps};
use zclab::loops::file_socket::{Receiver, Source, SplicePipe, raw};
use zclab::loops::files::{self, PatternFiles};
use zclab::loops::flows;
use zclab::loops::{common, net_paths};
use zclab::net::netns::{self, MAX_UDP_PAYLOAD, NetPath, VethLab};
use zclab::net::peers;
use zclab::net::remote::PeerAddr;
use zclab::results::Row;
use zclab::ring::RingConfig;
use zclab::sys::pipe::pipe_with_size;
use zclab::units;
use zclab::uring;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<FileToSocket>] = harness::variants![
    names::CLASSIC_READ_WRITE => classic_read_write, [], "pread(2) a chunk into a buffer, write(2) it to the socket (two CPU copies)";
    names::CLASSIC_MMAP_WRITE => classic_mmap_write, [], "mmap(2) the file, write(2) each chunk from the mapping (one CPU copy)";
    names::CLASSIC_SENDFILE => classic_sendfile, [], "sendfile(2) file -> socket, one call per chunk (one datagram per call on UDP); page references, no copy";
    names::CLASSIC_SPLICE => classic_splice, [], "splice(2) file -> pipe -> socket, one pair per chunk; page references, no copy";
    names::URING_READ_SEND => uring_read_send, [op(Read), op(Send)], "IORING_OP_READ linked to IORING_OP_SEND, one submission per chunk (two CPU copies)";
    names::URING_READ_FIXED_SEND => uring_read_fixed_send, [op(ReadFixed), op(Send)], "IORING_OP_READ_FIXED into a registered buffer linked to IORING_OP_SEND (two CPU copies)";
    names::URING_SPLICE => uring_splice, [op(Splice)], "two linked IORING_OP_SPLICE: file -> pipe -> socket (run by an io-wq worker)";
    names::URING_SEND_ZC_FIXED => uring_send_zc_fixed, [op(ReadFixed), op(SendZc)], "IORING_OP_READ_FIXED linked to IORING_OP_SEND_ZC from registered buffers, with usage reporting (one CPU copy: the read)";
    names::URING_SEND_ZC_MMAP => uring_send_zc_mmap, [op(SendZc)], "IORING_OP_SEND_ZC straight from an mmap(2) of the file: the kernel takes the page-cache pages, with usage reporting";
];

const NAME: &str = names::NAME;
/// Source files of several sizes are kept while they total at most this.
const FILE_CACHE_BYTES: u64 = 256 << 20;
/// How long the last zero-copy notification may take after the last send.
const NOTIF_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
struct Args {
    #[command(flatten)]
    net: net_paths::NetArgs,
    /// File sizes to send, comma-separated (e.g. 64KiB,1MiB,64MiB; K/M/G are powers of 1024,
    /// KB/MB/GB powers of 1000). The default leaves out small files to keep a run on all three
    /// paths short.
    #[arg(long, default_value = "1MiB,64MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes moved per step on the TCP paths (read/write buffer, sendfile count, splice
    /// length), comma-separated. 4 KiB is what the published read+send measurements used.
    #[arg(long, default_value = "4KiB,256KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    chunks: Vec<u64>,
    /// Datagram payload sizes on udp-sink (the point's `chunk` there), comma-separated, at most
    /// 64 KiB; a size above 65507 B (the largest IPv4 UDP payload) is sent as 65507 B. Default:
    /// the largest that crosses the veth MTU unfragmented (65507 B at MTU 65535).
    #[arg(long, value_delimiter = ',', value_parser = datagram_arg)]
    datagram: Vec<u64>,
    /// MTU of the lab's veth pairs; a datagram above MTU - 28 leaves as IPv4 fragments.
    #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    veth_mtu: u32,
    /// Page cache state of the file when a trial starts.
    #[arg(long, value_enum, default_value_t = Cache::Warm)]
    cache: Cache,
    /// Pipe capacity for the splice variants (F_SETPIPE_SZ). Default: the chunk size, at least
    /// 4 KiB, on TCP; on udp-sink room for a whole datagram at any offset (chunk + one page).
    #[arg(long, value_parser = harness::size_arg)]
    pipe_size: Option<u64>,
    /// Registered buffers in the zero-copy pool (a buffer is reused only after its notification).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pool: u32,
    /// TCP_NODELAY on the sending socket (`--nodelay false` leaves Nagle on). On by default:
    /// one-at-a-time zero-copy sends with Nagle on stall on the peer's delayed ACK.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
    #[command(flatten)]
    flows: flows::FlowArgs,
    /// Directory for the files to send (created there, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
}

/// A datagram size: non-zero, at most 64 KiB.
fn datagram_arg(s: &str) -> Result<u64, String> {
    let v = harness::size_arg(s)?;
    if v > 64 << 10 {
        return Err(format!(
            "{s}: a datagram carries at most 64 KiB (65507 B of UDP payload over IPv4)"
        ));
    }
    Ok(v)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Cache {
    Warm,
    Cold,
}

struct FileToSocket {
    args: Args,
    paths: Vec<NetPath>,
    /// Source files by size, kept (a new file costs a write and an fsync) while they total at
    /// most [`FILE_CACHE_BYTES`].
    files: PatternFiles,
    /// The lab's namespaces, when a veth path runs.
    net: Option<VethLab>,
    /// /proc/<pid>/schedstat of ksoftirqd on the sender's and the peer's CPU.
    ksoftirqd: (Option<PathBuf>, Option<PathBuf>),
    /// Kernel release and CPU model, for the seeds' table.
    host: (String, String),
}

impl Experiment for FileToSocket {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        files::workdir_exists(&args.workdir).map_err(harness::usage)?;
        let probe = zclab::caps::probe(&args.workdir);
        // A remote path without --peer, or a local one with it, is a usage error.
        let peer = args.net.peer.is_some();
        if let Some(why) = net_paths::peer_mismatch(&args.net.paths, peer) {
            return Err(harness::usage(why));
        }
        let (paths, paths_skipped) =
            net_paths::choose_paths(&args.net.paths, peer, netns::unavailable_reason(&probe))?;
        if peer && peers::FaultSpec::from_env()?.is_some() {
            return Err(harness::usage(peers::fault_with_peer("receiver")));
        }
        for (p, r) in paths_skipped.iter().filter(|_| !common.quiet) {
            eprintln!("{NAME}: path {} skipped: {r}", p.name());
        }
        if let Err(e) = args.flows.check() {
            return Err(harness::usage(e));
        }
        if args
            .flows
            .counts()
            .iter()
            .any(|&f| args.flows.threads_for(f) > 1)
        {
            return Err(harness::usage(
                "file_to_socket serves its flows from one thread, as a broker serves its consumers: --threads 1",
            ));
        }
        if peer && args.flows.many() {
            return Err(harness::usage(
                "--flows runs on the local paths only (not with --peer)",
            ));
        }
        let dgrams = net_paths::datagram_sizes(&args.datagram, args.veth_mtu);
        if paths.contains(&NetPath::UdpSink) && !common.quiet {
            for line in net_paths::capped_datagrams(&args.datagram) {
                eprintln!("{NAME}: {line}");
            }
        }
        let points = net_paths::sweep(&paths, &args.sizes, &args.chunks, &dgrams)
            .into_iter()
            .flat_map(|(p, s, c)| {
                let point = Point::new()
                    .text("path", p.name())
                    .size("size", s)
                    .size("chunk", c);
                match args.flows.many() {
                    false => vec![point],
                    true => args
                        .flows
                        .counts()
                        .into_iter()
                        .map(|f| point.clone().int("flows", f).int("threads", 1))
                        .collect(),
                }
            })
            .collect();
        let parameters = json!({
            "paths": paths.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "paths_skipped": paths_skipped.iter().map(|(p, r)| json!({"path": p.name(), "reason": r})).collect::<Vec<_>>(),
            "sizes": args.sizes, "chunks": args.chunks, "cache": args.cache, "pipe_size": args.pipe_size,
            "pool": args.pool, "nodelay": args.nodelay, "workdir": args.workdir,
            "datagram_requested": args.datagram, "datagram_sizes": dgrams,
            "udp_payload_cap": MAX_UDP_PAYLOAD, "veth_mtu": args.veth_mtu,
            "chunk_on_udp_sink": "the datagram payload size: one step sends one datagram",
            "notif_timeout_s": NOTIF_TIMEOUT.as_secs(),
            "peer": args.net.peer.as_ref().map(|p| p.text.clone()),
            "remote": args.net.peer.as_ref().map(|_| net_paths::remote_parameters()),
            "netns": paths.iter().any(|p| p.needs_netns()).then(net_paths::netns_parameters),
            "flows": args.flows.parameters(),
        });
        let ctx = FileToSocket {
            ksoftirqd: (
                netns::ksoftirqd_schedstat(common.cpus.0),
                netns::ksoftirqd_schedstat(common.cpus.1),
            ),
            files: PatternFiles::new(&args.workdir, NAME, "dat", "source file", FILE_CACHE_BYTES),
            args,
            paths,
            net: None,
            host: Default::default(),
        };
        Ok(Plan::new(ctx, points, parameters))
    }

    fn peer_addr(&self) -> Option<&PeerAddr> {
        self.args.net.peer.as_ref()
    }

    /// The lab's namespaces for the veth paths (those a dead run left removed first), and the
    /// source files while they fit in [`FILE_CACHE_BYTES`] (the others are made when needed).
    fn prepare(&mut self, env: &Env) -> Result<()> {
        self.host = (env.caps.kernel.release.clone(), env.caps.cpu.model.clone());
        if self.paths.iter().any(|p| p.needs_netns()) {
            self.net = Some(net_paths::veth_lab(NAME, env.caps, self.args.veth_mtu)?);
        }
        let mut total = 0u64;
        for size in self.args.sizes.clone() {
            total = total.saturating_add(size);
            if total <= FILE_CACHE_BYTES {
                self.files.get(size)?;
            }
        }
        Ok(())
    }

    fn analyse(&self, rows: &[Row], common: &CommonArgs) -> Result<Vec<Analysis>> {
        let host = Host {
            kernel: &self.host.0,
            cpu_model: &self.host.1,
            repeat: common.repeat.min,
        };
        let mut out: Vec<Analysis> = Analysis::flows(rows).into_iter().collect();
        if let Some(md) = copies::copies_table(rows, &host) {
            if self.paths.contains(&NetPath::UdpSink) {
                let text = format!("\n{md}");
                out.push(Analysis::document("copies.md", md, text));
            }
        }
        Ok(out)
    }

    /// Removes the source files and the namespaces (after a failure or an interruption too).
    fn finish(&mut self) -> Result<()> {
        self.files.clear();
        net_paths::remove_veth_lab(self.net.as_mut())
    }

    fn list_notes(caps: &Caps) -> Vec<String> {
        net_paths::path_notes(netns::unavailable_reason(caps))
    }
}

fn main() -> ExitCode {
    harness::run::<FileToSocket>()
}

fn path_of(t: &Trial) -> NetPath {
    NetPath::from_name(t.point.str("path")).expect("points name known paths")
}

/// Runs one transfer of the point's file on the point's path ([`FileSend`]): the cache policy
/// applied, `step` timed over the file chunk by chunk inside the clock, the receiver's account
/// recorded after it. `step(file, sock, off, len)` moves up to `len` bytes at `off` and returns
/// how many; on udp-sink it must send them as one datagram.
fn transfer(
    ctx: &mut FileToSocket,
    t: &mut Trial,
    step_name: &str,
    step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
) -> Result<()> {
    let r = transfer_on_path(ctx, t, step_name, step);
    // A failed trial's error says so when the --peer host went away.
    match (t.remote, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

fn transfer_on_path(
    ctx: &mut FileToSocket,
    t: &mut Trial,
    step_name: &str,
    step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
) -> Result<()> {
    let (size, chunk) = (t.point.num("size"), t.point.num("chunk") as usize);
    let cold = ctx.args.cache == Cache::Cold;
    let pf = ctx.files.get(size)?;
    if cold {
        pf.drop_cache()?;
    }
    let (file, hash) = (File::open(&pf.path)?, pf.hash);
    let to = Endpoint {
        path: path_of(t),
        net: ctx.net.as_ref(),
        remote: t.remote,
        peer_cpu: t.cpus.1,
        recv_buf: chunk.max(128 << 10),
        fault_after: t.fault_after(),
        nodelay: ctx.args.nodelay,
        ksoftirqd: (ctx.ksoftirqd.0.as_deref(), ctx.ksoftirqd.1.as_deref()),
    };
    let src = Source {
        file: &file,
        size,
        hash,
    };
    // A sweep's one-flow point is the single-flow transfer (udp-sink included).
    if ctx.args.flows.many() && t.point.num("flows") > 1 {
        return transfer_flows(ctx, t, step_name, step, src, to);
    }
    let mut send = FileSend::open(src, chunk, &to)?;
    t.measure(step_name, |rec| {
        let ops = send.run(rec, step)?;
        Ok(Done { bytes: size, ops })
    })?;
    let account = send.account()?;
    t.set_integrity(account.integrity);
    match account.receiver {
        Receiver::Local(u) => t.set_peer(u),
        Receiver::Remote(u) => t.set_remote_peer(u),
        Receiver::None => {}
    }
    for (k, v) in account.extras {
        t.set_extra(k, v);
    }
    Ok(())
}

/// `--flows N`: N transfers of the file, each over its own connection to its own receiver
/// (flow i's on the i-th of --peer-cpus), served by this thread chunk by chunk in turn
/// ([`fsock::run_flows`]). The row is the aggregate; each flow's rate and the fairness are
/// extras; a flow that failed fails the row's integrity, named, and the others are recorded.
fn transfer_flows(
    ctx: &FileToSocket,
    t: &mut Trial,
    step_name: &str,
    step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
    src: Source,
    to: Endpoint,
) -> Result<()> {
    let n = t.point.num("flows") as usize;
    if to.path.is_datagram() {
        return Err(harness::skip_point(
            "--flows runs on the TCP paths: udp-sink's integrity is its device counters, one sum for all flows",
        ));
    }
    let chunk = t.point.num("chunk") as usize;
    let mut sends = Vec::with_capacity(n);
    for i in 0..n {
        let to = Endpoint {
            peer_cpu: ctx.args.flows.peer_cpu(i, t.cpus.1),
            // A fault (ZCLAB_FAULT) hits flow 0's receiver only: the others must go on.
            fault_after: if i == 0 { to.fault_after } else { None },
            ..to
        };
        sends.push(FileSend::open(src, chunk, &to)?);
    }
    let mut runs = Vec::new();
    let home = t.cpus.0;
    flows::on_cpu(ctx.args.flows.thread_cpu(0, home), home, || {
        t.measure(step_name, |rec| {
            runs = fsock::run_flows(&mut sends, rec, step)?;
            let (bytes, ops) = runs
                .iter()
                .fold((0, 0), |(b, o), r| (b + r.bytes, o + r.steps));
            Ok(Done { bytes, ops })
        })
    })?;
    let mut tally = flows::Tally::default();
    let mut extras = Vec::new();
    for (i, (send, run)) in sends.into_iter().zip(runs).enumerate() {
        let check = match run.error {
            Some(e) => Err(format!("{e:#}")),
            None if !send.delivered() => Err("no account from the receiver".into()),
            None => {
                let a = send.account()?;
                if let Receiver::Local(u) = a.receiver {
                    tally.receiver(u);
                }
                if extras.is_empty() {
                    extras = a.extras;
                }
                Ok(a.integrity)
            }
        };
        tally.flow(i, run.bytes, run.ns, check);
    }
    t.set_peer(tally.receivers());
    let got = t.metrics().map_or(0, |m| m.bytes);
    t.set_integrity(tally.integrity(src.size * n as u64, got));
    for (k, v) in extras {
        t.set_extra(k, v);
    }
    for (k, v) in tally.figures(1) {
        t.set_extra(&k, v);
    }
    Ok(())
}

fn classic_read_write(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let (dgram, cancel) = (path_of(t).is_datagram(), t.cancel());
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    transfer(ctx, t, "one pread + one write", |f, s, off, len| {
        let n = f.read_at(&mut buf[..len], off)?;
        fsock::put(s, &buf[..n], dgram, cancel)?;
        Ok(n)
    })
}

fn classic_mmap_write(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let (dgram, cancel) = (path_of(t).is_datagram(), t.cancel());
    let mut map = None;
    transfer(ctx, t, "one write from the mapping", |f, s, off, len| {
        if map.is_none() {
            map = Some(fsock::map_source(f)?); // mapped once, inside the clock, as a server would
        }
        let m = map.as_ref().expect("just mapped");
        let end = (off as usize + len).min(m.len());
        fsock::put(s, &m[off as usize..end], dgram, cancel)?;
        Ok(end - off as usize)
    })
}

fn classic_sendfile(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let (dgram, cancel) = (path_of(t).is_datagram(), t.cancel());
    transfer(ctx, t, "one sendfile", |f, s, off, len| {
        fsock::sendfile_step(s, f, off, len, dgram, cancel)
    })
}

/// The splice variants' pipe: `--pipe-size`, else [`fsock::splice_pipe_size`]. On UDP it must
/// hold a whole datagram at any file offset, or the point is skipped.
fn splice_pipe(ctx: &FileToSocket, t: &Trial) -> Result<(OwnedFd, OwnedFd, usize)> {
    let (chunk, dgram) = (t.point.num("chunk"), path_of(t).is_datagram());
    let want = ctx
        .args
        .pipe_size
        .unwrap_or(fsock::splice_pipe_size(chunk, dgram));
    let (r, w, cap) = pipe_with_size(want as usize)?;
    let need = fsock::datagram_pipe_need(chunk);
    if dgram && (cap as u64) < need {
        return Err(harness::skip_point(format!(
            "pipe of {} holds less than a {chunk}-byte datagram at any file offset ({} needed): the datagram would be split",
            units::fmt_size(cap as u64),
            units::fmt_size(need)
        )));
    }
    Ok((r, w, cap))
}

fn classic_splice(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let (dgram, cancel) = (path_of(t).is_datagram(), t.cancel());
    let (pr, pw, cap) = splice_pipe(ctx, t)?;
    let pipe = SplicePipe {
        read: pr.as_fd(),
        write: pw.as_fd(),
        cap,
    };
    transfer(ctx, t, "one splice pair", |f, s, off, len| {
        fsock::splice_step(f, s, off, len, pipe, dgram, cancel)
    })
}

fn uring_read_send(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let mut r = common::ring(t, &RingConfig::tuned(8))?;
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    let step = "one READ+SEND submission to completion";
    transfer(ctx, t, step, |f, s, off, len| {
        let b = &mut buf[..len];
        Ok(uring::read_send(&mut r, raw(f), off, b, raw(s))?)
    })
}

fn uring_read_fixed_send(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let chunk = t.point.num("chunk") as usize;
    let mut r = common::ring_with_buffers(t, &RingConfig::tuned(8), 1, chunk)?;
    let step = "one READ_FIXED+SEND submission to completion";
    transfer(ctx, t, step, |f, s, off, len| {
        Ok(uring::read_fixed_send(&mut r, raw(f), off, 0, len, raw(s))?)
    })
}

fn uring_splice(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let mut r = common::ring(t, &RingConfig::tuned(8))?;
    let (pr, pw, cap) = splice_pipe(ctx, t)?;
    let (pr, pw) = (pr.as_raw_fd(), pw.as_raw_fd());
    let step = "one SPLICE+SPLICE submission to completion";
    transfer(ctx, t, step, |f, s, off, len| {
        let n = len.min(cap) as u32;
        Ok(uring::splice_pair(&mut r, raw(f), off, pr, pw, raw(s), n)?)
    })
}

fn uring_send_zc_fixed(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let (pool, chunk) = (ctx.args.pool as usize, t.point.num("chunk") as usize);
    let r = common::ring_with_buffers(t, &RingConfig::tuned(64), pool, chunk)?;
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let size = t.point.num("size");
    let mut zc = FixedZcSteps::new(r, size, report, t.clock, t.cancel(), NOTIF_TIMEOUT);
    let step = "one READ_FIXED+SEND_ZC submission to its send completion";
    transfer(ctx, t, step, |f, s, off, len| zc.step(f, s, off, len))?;
    let (counts, release) = zc.ledger().report();
    t.set_zc(counts, Some(release));
    Ok(())
}

fn uring_send_zc_mmap(ctx: &mut FileToSocket, t: &mut Trial) -> Result<()> {
    let r = common::ring(t, &RingConfig::tuned(64))?;
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let (size, dgram) = (t.point.num("size"), path_of(t).is_datagram());
    let mut zc = MappedZcSteps::new(r, size, dgram, report, t.clock, t.cancel(), NOTIF_TIMEOUT);
    let step = "one SEND_ZC from the mapping to its send completion";
    transfer(ctx, t, step, |f, s, off, len| zc.step(f, s, off, len))?;
    let ledger = zc.ledger().ok_or_else(|| anyhow!("nothing was sent"))?;
    let (counts, release) = ledger.report();
    t.set_zc(counts, Some(release));
    Ok(())
}
