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
//!
//! **Parameters.** `--paths`, `--peer`, `--sizes` (file sizes), `--chunks` (bytes per step on TCP),
//! `--datagram` (bytes per datagram on udp-sink), `--veth-mtu`, `--cache warm|cold` (cold drops
//! the file's pages with posix_fadvise before each trial), `--pipe-size`, `--pool` (zero-copy
//! buffers), `--nodelay`, `--workdir`.
//!
//! **Minimum kernel.** classic: any 2.6.33+ (sendfile and splice to a UDP socket send pages by
//! reference from 6.5, MSG_SPLICE_PAGES); uring-read-send 5.6 (IORING_OP_READ/SEND);
//! uring-splice 5.7; uring-send-zc-* 6.0 (IORING_OP_SEND_ZC), usage reporting 6.2.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use io_uring::opcode;
use nix::fcntl::{SpliceFFlags, splice};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::measure::Recorder;
use zclab::net::netns::{
    self, ETH_IP_HEADERS, MAX_UDP_PAYLOAD, NetPath, SinkCounters, TcpLink, UDP_HEADER, VethLab,
    udp_frames,
};
use zclab::net::remote::{self, Peer, PeerAddr};
use zclab::net::{Conn, Got, Sink};
use zclab::results::{self, Integrity, Row, Status};
use zclab::ring::{Ring, RingConfig};
use zclab::sys::file::{PatternFile, map_readonly};
use zclab::sys::pipe::pipe_with_size;
use zclab::units;
use zclab::uring::mapped::MappedZcSender;
use zclab::uring::{self, Fd, zc::ZcSender};

const NAME: &str = "file_to_socket";
const PAGE: u64 = 4096;
/// Source files of several sizes are kept while they total at most this.
const FILE_CACHE_BYTES: u64 = 256 << 20;
/// How long the last zero-copy notification may take after the last send.
const NOTIF_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = NAME, about = "Serve a file to a socket over loopback, veth or a UDP sink: read+write, mmap, sendfile, splice, io_uring")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Paths, comma-separated: tcp-loopback, tcp-veth, udp-sink (the veth ones need root),
    /// remote-tcp, remote-udp (need --peer). Default: the local three when the lab can create
    /// network namespaces here, else tcp-loopback; with --peer the remote two.
    #[arg(long, value_enum, value_delimiter = ',')]
    paths: Vec<NetPath>,
    /// Host running `zclab serve` (port 7878 unless given): the receiving end of the remote
    /// paths runs there, and its accounting comes back beside this side's.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<PeerAddr>,
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

struct Ctx {
    args: Args,
    /// Source files by size, kept across variants (each variant runs every point, and a new
    /// file costs a write and an fsync); dropped when another would take the total past
    /// [`FILE_CACHE_BYTES`].
    files: Vec<PatternFile>,
    /// The lab's namespaces, when a veth path runs.
    net: Option<VethLab>,
    /// /proc/<pid>/schedstat of ksoftirqd on the sender's and the peer's CPU.
    ksoftirqd: (Option<PathBuf>, Option<PathBuf>),
    /// The control connection to `zclab serve` on the --peer host.
    peer: Option<Peer>,
}

impl Ctx {
    fn file(&mut self, size: u64) -> Result<&PatternFile> {
        if let Some(i) = self.files.iter().position(|f| f.size == size) {
            return Ok(&self.files[i]);
        }
        let kept: u64 = self.files.iter().map(|f| f.size).sum();
        if kept.saturating_add(size) > FILE_CACHE_BYTES {
            self.files.clear(); // remove the others first: they may be large
        }
        let path = self
            .args
            .workdir
            .join(format!("zclab-{NAME}-{}-{size}.dat", std::process::id()));
        self.files.push(
            PatternFile::create(&path, size)
                .with_context(|| format!("cannot create the {size}-byte source file"))?,
        );
        Ok(self.files.last().expect("just pushed"))
    }
}

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-read-write",
        about: "pread(2) a chunk into a buffer, write(2) it to the socket (two CPU copies)",
        needs: &[],
        run: classic_read_write,
    },
    Variant {
        name: "classic-mmap-write",
        about: "mmap(2) the file, write(2) each chunk from the mapping (one CPU copy)",
        needs: &[],
        run: classic_mmap_write,
    },
    Variant {
        name: "classic-sendfile",
        about: "sendfile(2) file -> socket, one call per chunk (one datagram per call on UDP); page references, no copy",
        needs: &[],
        run: classic_sendfile,
    },
    Variant {
        name: "classic-splice",
        about: "splice(2) file -> pipe -> socket, one pair per chunk; page references, no copy",
        needs: &[],
        run: classic_splice,
    },
    Variant {
        name: "uring-read-send",
        about: "IORING_OP_READ linked to IORING_OP_SEND, one submission per chunk (two CPU copies)",
        needs: &[Need::Op(opcode::Read::CODE), Need::Op(opcode::Send::CODE)],
        run: uring_read_send,
    },
    Variant {
        name: "uring-read-fixed-send",
        about: "IORING_OP_READ_FIXED into a registered buffer linked to IORING_OP_SEND (two CPU copies)",
        needs: &[
            Need::Op(opcode::ReadFixed::CODE),
            Need::Op(opcode::Send::CODE),
        ],
        run: uring_read_fixed_send,
    },
    Variant {
        name: "uring-splice",
        about: "two linked IORING_OP_SPLICE: file -> pipe -> socket (run by an io-wq worker)",
        needs: &[Need::Op(opcode::Splice::CODE)],
        run: uring_splice,
    },
    Variant {
        name: "uring-send-zc-fixed",
        about: "IORING_OP_READ_FIXED linked to IORING_OP_SEND_ZC from registered buffers, with usage reporting (one CPU copy: the read)",
        needs: &[
            Need::Op(opcode::ReadFixed::CODE),
            Need::Op(opcode::SendZc::CODE),
        ],
        run: uring_send_zc_fixed,
    },
    Variant {
        name: "uring-send-zc-mmap",
        about: "IORING_OP_SEND_ZC straight from an mmap(2) of the file: the kernel takes the page-cache pages, with usage reporting",
        needs: &[Need::Op(opcode::SendZc::CODE)],
        run: uring_send_zc_mmap,
    },
];

/// Paths left out of the default run, each with the reason.
type SkippedPaths = Vec<(NetPath, String)>;

/// The paths to run and, for those left out of the default, why.
fn choose_paths(
    asked: &[NetPath],
    peer: bool,
    caps: &zclab::caps::Caps,
) -> Result<(Vec<NetPath>, SkippedPaths)> {
    if peer && asked.is_empty() {
        return Ok((NetPath::REMOTE.to_vec(), Vec::new()));
    }
    let reason = netns::unavailable_reason(caps);
    if asked.is_empty() {
        return Ok(match reason {
            None => (NetPath::ALL.to_vec(), Vec::new()),
            Some(r) => (
                vec![NetPath::TcpLoopback],
                NetPath::ALL
                    .into_iter()
                    .filter(|p| p.needs_netns())
                    .map(|p| (p, r.clone()))
                    .collect(),
            ),
        });
    }
    let mut paths: Vec<NetPath> = Vec::new();
    for p in asked {
        if !paths.contains(p) {
            paths.push(*p);
        }
    }
    if let (Some(p), Some(r)) = (paths.iter().find(|p| p.needs_netns()), reason) {
        bail!("path {} was requested but cannot run here: {r}", p.name());
    }
    Ok((paths, Vec::new()))
}

fn main() -> ExitCode {
    harness::main(NAME, || {
        let args = Args::parse();
        if args.common.list {
            let caps = zclab::caps::probe(&args.workdir);
            print!("{}", harness::list_variants(NAME, VARIANTS, &caps));
            println!(
                "  paths: tcp-loopback; tcp-veth and udp-sink {}",
                match netns::unavailable_reason(&caps) {
                    None => "(network namespaces available here)".to_string(),
                    Some(r) => format!("skipped here: {r}"),
                }
            );
            println!(
                "  paths: remote-tcp and remote-udp with --peer HOST[:PORT] (`zclab serve` on that host)"
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !args.workdir.is_dir() {
            bail!("work directory {} does not exist", args.workdir.display());
        }
        let probe = zclab::caps::probe(&args.workdir);
        // A remote path without --peer, or a local one with it, is a usage error.
        let peer = args.peer.is_some();
        if let Some(p) = args.paths.iter().find(|p| p.is_remote() != peer) {
            if peer {
                eprintln!(
                    "{NAME}: error: path {} builds both ends on this host; with --peer the paths are remote-tcp and remote-udp",
                    p.name()
                );
            } else {
                eprintln!(
                    "{NAME}: error: path {} needs --peer HOST[:PORT] (a host running `zclab serve`)",
                    p.name()
                );
            }
            return Ok(ExitCode::from(2));
        }
        let (paths, paths_skipped) = choose_paths(&args.paths, peer, &probe)?;
        if args.peer.is_some() && zclab::net::peers::FaultSpec::from_env()?.is_some() {
            eprintln!(
                "{NAME}: error: {} injects a fault into a local receiver; with --peer the receiver runs on the peer host",
                zclab::net::peers::FAULT_ENV
            );
            return Ok(ExitCode::from(2));
        }
        for (p, r) in &paths_skipped {
            if !args.common.quiet {
                eprintln!("{NAME}: path {} skipped: {r}", p.name());
            }
        }
        // Datagram sizes as sent: capped at the largest IPv4 UDP payload, duplicates dropped.
        let fit = (args.veth_mtu as u64 - 28).min(MAX_UDP_PAYLOAD);
        let asked_dgrams = if args.datagram.is_empty() {
            vec![fit]
        } else {
            args.datagram.clone()
        };
        let mut dgrams: Vec<u64> = Vec::new();
        for d in asked_dgrams.iter().map(|&d| d.min(MAX_UDP_PAYLOAD)) {
            if !dgrams.contains(&d) {
                dgrams.push(d);
            }
        }
        if paths.contains(&NetPath::UdpSink) && !args.common.quiet {
            for &d in asked_dgrams.iter().filter(|&&d| d > MAX_UDP_PAYLOAD) {
                eprintln!(
                    "{NAME}: datagram size {} is sent as {MAX_UDP_PAYLOAD} B, the largest IPv4 UDP payload",
                    units::fmt_size(d)
                );
            }
        }
        let mut points = Vec::new();
        for &p in &paths {
            let steps = if p.is_datagram() {
                &dgrams
            } else {
                &args.chunks
            };
            for &s in &args.sizes {
                for &c in steps {
                    points.push(
                        Point::new()
                            .text("path", p.name())
                            .size("size", s)
                            .size("chunk", c),
                    );
                }
            }
        }
        let params = json!({
            "paths": paths.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "paths_skipped": paths_skipped.iter().map(|(p, r)| json!({"path": p.name(), "reason": r})).collect::<Vec<_>>(),
            "sizes": args.sizes, "chunks": args.chunks, "cache": args.cache, "pipe_size": args.pipe_size,
            "pool": args.pool, "nodelay": args.nodelay, "workdir": args.workdir,
            "datagram_requested": args.datagram, "datagram_sizes": dgrams,
            "udp_payload_cap": MAX_UDP_PAYLOAD, "veth_mtu": args.veth_mtu,
            "chunk_on_udp_sink": "the datagram payload size: one step sends one datagram",
            "notif_timeout_s": NOTIF_TIMEOUT.as_secs(),
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "remote": args.peer.as_ref().map(|_| json!({
                "remote_tcp": "TCP to a receiver thread in `zclab serve` on the peer host, pinned to the peer CPU there, which hashes the stream (xxh3-64)",
                "remote_udp": "connected UDP to a receiver thread in `zclab serve` on the peer host that counts datagrams and bytes and sums their xxh3-64",
                "data_sockets": format!("TCP_USER_TIMEOUT {} s", remote::DATA_USER_TIMEOUT.as_secs()),
                "peer_cpu_time": "measured in the receiver's thread on the peer host (getrusage RUSAGE_THREAD), recorded as peer_user_ns/peer_sys_ns; not subtracted here",
            })),
            "netns": paths.iter().any(|p| p.needs_netns()).then(|| json!({
                "namespaces": format!("zcsend-{}-a (sender), -b (TCP receiver), -s (sink)", std::process::id()),
                "tcp_veth": "10.200.0.1 in A -> 10.200.0.2 in B",
                "udp_sink": "10.201.0.1 in A -> 10.201.0.2, assigned nowhere: permanent neighbour entry in A to the MAC of S's veth end; S has no address and ip_forward 0; IPv6 disabled in all three",
                "created_with": "iproute2 `ip` (see probe.net.ip_binary)",
            })),
        });
        let mut lab = Lab::open(NAME, &args.common, params)?;
        let peer = match &args.peer {
            Some(a) => {
                let p = Peer::connect(a.clone(), &lab.caps, &harness::git_revision())?;
                lab.set_peer_meta(p.meta());
                Some(p)
            }
            None => None,
        };
        let mut ctx = Ctx {
            peer,
            ksoftirqd: (
                netns::ksoftirqd_schedstat(args.common.cpus.0),
                netns::ksoftirqd_schedstat(args.common.cpus.1),
            ),
            args,
            files: Vec::new(),
            net: None,
        };
        if paths.iter().any(|p| p.needs_netns()) {
            let ip = PathBuf::from(lab.caps.net.ip_binary.clone().unwrap_or_default());
            for n in netns::remove_stale(&ip) {
                eprintln!("{NAME}: removed namespace {n} left by a process that no longer exists");
            }
            ctx.net = Some(
                VethLab::create(&ip, ctx.args.veth_mtu)
                    .context("cannot create the lab's network namespaces")?,
            );
        }
        let code = lab.run(VARIANTS, &points, &mut ctx)?;
        if let Some(p) = &ctx.peer {
            p.bye();
        }
        let cleanup = ctx.net.as_mut().map(VethLab::cleanup);
        if harness::interrupted().is_none() && paths.contains(&NetPath::UdpSink) {
            copies_table(&lab)?;
        }
        if let Some(Err(e)) = cleanup {
            return Err(anyhow!("network namespace clean-up incomplete: {e}"));
        }
        Ok(code)
    })
}

fn path_of(t: &Trial) -> NetPath {
    NetPath::from_name(t.point.str("path")).expect("points name known paths")
}

/// Turns EINTR into an error when the run was interrupted, or a retry otherwise.
fn intr() -> Result<()> {
    match harness::interrupted() {
        Some(sig) => bail!("interrupted by signal {sig}"),
        None => Ok(()),
    }
}

/// write(2)s all of `buf` to a stream, or exactly one datagram of it.
fn put(s: BorrowedFd, buf: &[u8], dgram: bool) -> Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match nix::unistd::write(s, &buf[off..]) {
            Ok(n) if dgram && n != buf.len() => {
                bail!("a {}-byte datagram went out as {n} bytes", buf.len())
            }
            Ok(0) => bail!("write returned 0: the receiver closed"),
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => intr()?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Wrapping sum of the xxh3-64 of each `chunk`-byte datagram of the file (the last one
/// shorter): what the remote UDP receiver computes, whatever order they arrive in.
fn file_digest(file: &File, size: u64, chunk: usize) -> Result<u64> {
    let mut buf = vec![0u8; chunk];
    let (mut off, mut d) = (0u64, 0u64);
    while off < size {
        let len = chunk.min((size - off) as usize);
        file.read_exact_at(&mut buf[..len], off)?;
        d = d.wrapping_add(xxhash_rust::xxh3::xxh3_64(&buf[..len]));
        off += len as u64;
    }
    Ok(d)
}

/// Runs one transfer of the point's file: opens the file and the connection on the point's
/// path, applies the cache policy, then times `step` over the file chunk by chunk (one latency
/// sample per step), waits for a TCP peer to receive the last byte, and records the peer's
/// usage and the integrity check (the receiver's hash on TCP, the sink's counters on UDP).
/// `step(file, sock, off, len)` moves up to `len` bytes at `off` and returns how many; on
/// udp-sink it must send them as one datagram.
fn transfer(
    ctx: &mut Ctx,
    t: &mut Trial,
    step_name: &str,
    step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
) -> Result<()> {
    let r = transfer_on_path(ctx, t, step_name, step);
    // A failed trial's error says so when the --peer host went away.
    match (&ctx.peer, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

fn transfer_on_path(
    ctx: &mut Ctx,
    t: &mut Trial,
    step_name: &str,
    mut step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
) -> Result<()> {
    let path = path_of(t);
    let dgram = path.is_datagram();
    let (size, chunk) = (t.point.num("size"), t.point.num("chunk") as usize);
    let (nodelay, cold) = (ctx.args.nodelay, ctx.args.cache == Cache::Cold);
    let pf = ctx.file(size)?;
    let (fpath, hash) = (pf.path.clone(), pf.hash);
    if cold {
        pf.drop_cache()?;
    }
    let file = File::open(&fpath)?;
    let recv_buf = chunk.max(128 << 10);
    let peer_cpu = Some(t.cpus.1 as u32);
    let mut conn = match (path, ctx.net.as_ref(), ctx.peer.as_ref()) {
        (NetPath::TcpLoopback, _, _) => Conn::Tcp(TcpLink::loopback(
            t.cpus.1,
            recv_buf,
            Sink::Hash,
            t.fault_after(),
        )?),
        (NetPath::TcpVeth, Some(n), _) => Conn::Tcp(TcpLink::veth(
            n,
            t.cpus.1,
            recv_buf,
            Sink::Hash,
            t.fault_after(),
        )?),
        (NetPath::UdpSink, Some(n), _) => Conn::Udp(n.sink_socket()?),
        (NetPath::RemoteTcp, _, Some(p)) => {
            Conn::Remote(p.tcp_sink(peer_cpu, recv_buf as u64, true)?)
        }
        (NetPath::RemoteUdp, _, Some(p)) => Conn::RemoteUdp(p.udp_sink(peer_cpu)?),
        (p, _, _) if p.is_remote() => bail!("path {} needs --peer", p.name()),
        (p, _, _) => bail!(
            "path {} needs the lab's namespaces, which were not created",
            p.name()
        ),
    };
    match &conn {
        Conn::Tcp(l) => l.sender.set_nodelay(nodelay)?,
        Conn::Remote(r) => r.stream.set_nodelay(nodelay)?,
        _ => {}
    }
    let sndbuf = nix::sys::socket::getsockopt(&conn.fd(), nix::sys::socket::sockopt::SndBuf)
        .map_err(std::io::Error::from)?;
    let sink0 = match (&ctx.net, path) {
        (Some(n), NetPath::UdpSink) => Some(n.sink_counters()?),
        _ => None,
    };
    let ks0 = (
        netns::schedstat_ns(ctx.ksoftirqd.0.as_deref()),
        netns::schedstat_ns(ctx.ksoftirqd.1.as_deref()),
    );
    let mut received = None;
    t.measure(step_name, |rec: &mut Recorder| {
        let mut off = 0u64;
        let mut steps = 0u64;
        {
            let fd = conn.fd();
            let mut s = rec.now();
            while off < size {
                let len = chunk.min((size - off) as usize);
                let n = step(&file, fd, off, len)
                    .with_context(|| format!("sending to the peer at byte {off} of {size}"))?;
                if n == 0 {
                    bail!("source file ended early at {off} of {size} bytes");
                }
                if dgram && n != len {
                    bail!("a {len}-byte datagram at offset {off} went out as {n} bytes");
                }
                off += n as u64;
                steps += 1;
                s = rec.record_since(s);
            }
        }
        match &mut conn {
            Conn::Tcp(l) => received = Some(Got::Local(l.finish().context("peer failed")?)),
            Conn::Remote(r) => {
                received = Some(Got::Remote(Box::new(
                    r.finish().context("the peer host's receiver")?,
                )))
            }
            _ => {}
        }
        Ok(Done {
            bytes: size,
            ops: steps,
        })
    })?;
    let ks1 = (
        netns::schedstat_ns(ctx.ksoftirqd.0.as_deref()),
        netns::schedstat_ns(ctx.ksoftirqd.1.as_deref()),
    );
    let steps = t.point.num("size").div_ceil(chunk as u64);
    match (&mut conn, received) {
        (Conn::Remote(_), Some(Got::Remote(r))) => {
            let got = r.hash.clone().unwrap_or_default();
            t.set_integrity(Integrity {
                ok: r.bytes == size && remote::parse_hex64(&got) == Some(hash),
                method: "xxh3-64 of the stream received on the peer host".into(),
                expected: format!("{hash:016x}"),
                got,
                bytes_expected: size,
                bytes_got: r.bytes,
            });
            t.set_remote_peer(r.usage);
            for (k, v) in r.peer_extras() {
                t.set_extra(k, v);
            }
            t.set_extra("tcp_nodelay", nodelay as u8 as f64);
        }
        (Conn::RemoteUdp(u), _) => {
            // After the clock: the receiver counts what arrived once told how much was sent.
            let r = u.finish(steps).context("the peer host's UDP receiver")?;
            let want = file_digest(&file, size, chunk)?;
            let (n, d) = (
                r.datagrams.unwrap_or(0),
                r.digest.as_deref().and_then(remote::parse_hex64),
            );
            t.set_integrity(Integrity {
                ok: n == steps && r.bytes == size && d == Some(want),
                method: "every datagram accepted whole, and the peer host received each exactly once intact (count, bytes, and the sum of each datagram's xxh3-64)".into(),
                expected: format!("{steps} datagrams, {size} bytes, sum {want:016x}"),
                got: format!(
                    "{n} datagrams{}, {} bytes, sum {}",
                    if n < steps { r.lost_note(steps - n) } else { String::new() },
                    r.bytes,
                    r.digest.as_deref().unwrap_or("none"),
                ),
                bytes_expected: size,
                bytes_got: r.bytes,
            });
            t.set_remote_peer(r.usage);
            for (k, v) in r.peer_extras() {
                t.set_extra(k, v);
            }
            t.set_extra("peer_datagrams", n as f64);
            t.set_extra("datagrams", steps as f64);
            t.set_extra("datagram_bytes", chunk as f64);
        }
        (Conn::Tcp(_), Some(Got::Local(r))) => {
            t.set_peer(r.usage);
            t.set_integrity(Integrity {
                ok: r.bytes == size && r.hash == Some(hash),
                method: "xxh3-64 of the received stream".into(),
                expected: format!("{hash:016x}"),
                got: r.hash.map_or("none".into(), |h| format!("{h:016x}")),
                bytes_expected: size,
                bytes_got: r.bytes,
            });
            t.set_extra("tcp_nodelay", nodelay as u8 as f64);
        }
        (Conn::Udp(_), _) => {
            let net = ctx.net.as_ref().expect("udp-sink has the lab");
            let mtu = net.mtu as u64;
            let (full, rest) = (size / chunk as u64, size % chunk as u64);
            let datagrams = full + (rest > 0) as u64;
            let (f_full, b_full) = udp_frames(chunk as u64, mtu);
            let (f_rest, b_rest) = if rest > 0 {
                udp_frames(rest, mtu)
            } else {
                (0, 0)
            };
            let (frames, frame_bytes) = (full * f_full + f_rest, full * b_full + b_rest);
            let s0: SinkCounters = sink0.expect("read before the trial");
            // Frames still in the receive backlog when the last send returned count once
            // processed: wait (outside the clock) until the expected number arrived.
            let s1 = net.wait_sink(s0.rx_packets + frames, Duration::from_secs(2))?;
            let pk = s1.rx_packets.wrapping_sub(s0.rx_packets);
            let by = s1.rx_bytes.wrapping_sub(s0.rx_bytes);
            let payload = by.saturating_sub(pk * ETH_IP_HEADERS + datagrams * UDP_HEADER);
            t.set_integrity(Integrity {
                ok: pk == frames && by == frame_bytes,
                method: format!(
                    "every datagram accepted whole by the kernel, and {}'s rx counters grew by the frames of the datagrams sent ({f_full} frame(s) per {chunk}-byte datagram, MTU {mtu})",
                    net.sink_s_if
                ),
                expected: format!("{frames} frames, {frame_bytes} bytes"),
                got: format!("{pk} frames, {by} bytes"),
                bytes_expected: size,
                bytes_got: payload,
            });
            t.set_extra("sink_rx_packets", pk as f64);
            t.set_extra("sink_rx_bytes", by as f64);
            if let (Some(a), Some(b)) = (s0.in_addr_errors, s1.in_addr_errors) {
                t.set_extra("sink_ip_in_addr_errors", b.wrapping_sub(a) as f64);
            }
            t.set_extra("datagrams", datagrams as f64);
            t.set_extra("datagram_bytes", chunk as f64);
            t.set_extra("frames_per_datagram", f_full as f64);
            t.set_extra("veth_mtu", mtu as f64);
        }
        (Conn::Tcp(_) | Conn::Remote(_), _) => bail!("the receiver's account is missing"),
    }
    t.set_extra("so_sndbuf", sndbuf as f64);
    if let (Some(a), Some(b)) = (ks0.0, ks1.0) {
        t.set_extra("ksoftirqd_sender_cpu_ns", b.saturating_sub(a) as f64);
    }
    if let (Some(a), Some(b)) = (ks0.1, ks1.1) {
        t.set_extra("ksoftirqd_peer_cpu_ns", b.saturating_sub(a) as f64);
    }
    Ok(())
}

fn classic_read_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let dgram = path_of(t).is_datagram();
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    transfer(ctx, t, "one pread + one write", |f, s, off, len| {
        let n = f.read_at(&mut buf[..len], off)?;
        put(s, &buf[..n], dgram)?;
        Ok(n)
    })
}

fn classic_mmap_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let dgram = path_of(t).is_datagram();
    let mut map = None;
    transfer(ctx, t, "one write from the mapping", |f, s, off, len| {
        if map.is_none() {
            map = Some(map_readonly(f)?); // mapped once, inside the clock, as a server would
        }
        let m = map.as_ref().expect("just mapped");
        let end = (off as usize + len).min(m.len());
        put(s, &m[off as usize..end], dgram)?;
        Ok(end - off as usize)
    })
}

fn classic_sendfile(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let dgram = path_of(t).is_datagram();
    transfer(ctx, t, "one sendfile", |f, s, off, len| {
        let mut o = off as i64;
        let mut moved = 0;
        while moved < len {
            match nix::sys::sendfile::sendfile64(s, f.as_fd(), Some(&mut o), len - moved) {
                Ok(0) => break,
                // On UDP one call is one datagram: a short one is reported by transfer().
                Ok(n) if dgram => return Ok(n),
                Ok(n) => moved += n,
                Err(nix::errno::Errno::EINTR) => intr()?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(moved)
    })
}

/// The pipe capacity to ask for: `--pipe-size`, else the chunk (at least a page) on TCP and a
/// chunk plus a page on UDP, where a whole datagram must fit at any offset in the file.
fn pipe_size(ctx: &Ctx, t: &Trial) -> usize {
    let chunk = t.point.num("chunk");
    let want = if path_of(t).is_datagram() {
        chunk.div_ceil(PAGE) * PAGE + PAGE
    } else {
        chunk.max(PAGE)
    };
    ctx.args.pipe_size.unwrap_or(want) as usize
}

/// On UDP a datagram must pass through the pipe whole: a file range of `chunk` bytes takes up
/// to chunk/4096 + 1 pipe buffers (one per page it touches).
fn check_pipe_holds_datagram(t: &Trial, cap: usize) -> Result<()> {
    let chunk = t.point.num("chunk");
    let need = (chunk.div_ceil(PAGE) + 1) * PAGE;
    if path_of(t).is_datagram() && (cap as u64) < need {
        return Err(harness::skip_point(format!(
            "pipe of {} holds less than a {chunk}-byte datagram at any file offset ({} needed): the datagram would be split",
            units::fmt_size(cap as u64),
            units::fmt_size(need)
        )));
    }
    Ok(())
}

fn classic_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let dgram = path_of(t).is_datagram();
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    check_pipe_holds_datagram(t, cap)?;
    // SPLICE_F_MORE would cork a UDP socket and merge datagrams: streams only.
    let flags = if dgram {
        SpliceFFlags::SPLICE_F_MOVE
    } else {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE
    };
    transfer(ctx, t, "one splice pair", |f, s, off, len| {
        let mut o = off as i64;
        let want = len.min(cap);
        let mut n = 0;
        loop {
            match splice(f.as_fd(), Some(&mut o), &pw, None, want - n, flags) {
                Ok(0) => break,
                Ok(m) => n += m,
                Err(nix::errno::Errno::EINTR) => intr()?,
                Err(e) => return Err(e.into()),
            }
            // A datagram goes to the socket whole: fill the pipe with all of it first.
            if !dgram || n == want {
                break;
            }
        }
        let mut out = 0;
        while out < n {
            match splice(&pr, None, s, None, n - out, flags) {
                Ok(0) => bail!("splice to socket moved 0 bytes: peer closed"),
                Ok(m) if dgram && m != n => {
                    bail!("splice sent a {n}-byte datagram as {m} bytes")
                }
                Ok(m) => out += m,
                Err(nix::errno::Errno::EINTR) => intr()?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    })
}

fn ring(t: &mut Trial, cfg: &RingConfig) -> Result<Ring> {
    let r = Ring::new(cfg).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

fn uring_read_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    transfer(
        ctx,
        t,
        "one READ+SEND submission to completion",
        |f, s, off, len| {
            Ok(uring::read_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                &mut buf[..len],
                Fd::Raw(s.as_raw_fd()),
            )?)
        },
    )
}

fn uring_read_fixed_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    r.register_buffers(1, t.point.num("chunk") as usize)
        .map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    transfer(
        ctx,
        t,
        "one READ_FIXED+SEND submission to completion",
        |f, s, off, len| {
            Ok(uring::read_fixed_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                0,
                len,
                Fd::Raw(s.as_raw_fd()),
            )?)
        },
    )
}

fn uring_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    check_pipe_holds_datagram(t, cap)?;
    transfer(
        ctx,
        t,
        "one SPLICE+SPLICE submission to completion",
        |f, s, off, len| {
            Ok(uring::splice_pair(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                pr.as_raw_fd(),
                pw.as_raw_fd(),
                Fd::Raw(s.as_raw_fd()),
                len.min(cap) as u32,
            )?)
        },
    )
}

fn uring_send_zc_fixed(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(64))?;
    r.register_buffers(ctx.args.pool as usize, t.point.num("chunk") as usize)
        .map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let mut zc = ZcSender::new(&r, true, report, t.clock, t.cancel());
    let size = t.point.num("size");
    let mut sent = 0u64;
    transfer(
        ctx,
        t,
        "one READ_FIXED+SEND_ZC submission to its send completion",
        |f, s, off, len| {
            let n = zc.read_fixed_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                len,
                Fd::Raw(s.as_raw_fd()),
            )?;
            sent += n as u64;
            if sent >= size {
                // The transfer is complete only when the kernel has released every buffer.
                zc.drain(&mut r, NOTIF_TIMEOUT)?;
            }
            Ok(n)
        },
    )?;
    let (counts, release) = zc.ledger().report();
    t.set_zc(counts.into(), Some(release));
    Ok(())
}

fn uring_send_zc_mmap(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = Some(ring(t, &RingConfig::tuned(64))?);
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let dgram = path_of(t).is_datagram();
    let size = t.point.num("size");
    let (clock, cancel) = (t.clock, t.cancel());
    let mut zc: Option<MappedZcSender> = None;
    let mut sent = 0u64;
    transfer(
        ctx,
        t,
        "one SEND_ZC from the mapping to its send completion",
        |f, s, off, len| {
            if zc.is_none() {
                // Mapped once, inside the clock, as classic-mmap-write does.
                let ring = r.take().expect("the ring is handed over once");
                zc = Some(MappedZcSender::new(
                    ring,
                    map_readonly(f)?,
                    32,
                    report,
                    clock,
                    cancel,
                ));
            }
            let z = zc.as_mut().expect("just set");
            let sock = Fd::Raw(s.as_raw_fd());
            let flags = if dgram { 0 } else { libc::MSG_WAITALL };
            let mut n = z.send(off as usize, len, sock, flags)?;
            while !dgram && n < len {
                n += match z.send(off as usize + n, len - n, sock, flags)? {
                    0 => bail!("SEND_ZC returned 0: the receiver closed"),
                    m => m,
                };
            }
            sent += n as u64;
            if sent >= size {
                // The transfer is complete only when the kernel has released every page.
                z.drain(NOTIF_TIMEOUT)?;
            }
            Ok(n)
        },
    )?;
    let z = zc.ok_or_else(|| anyhow!("nothing was sent"))?;
    let (counts, release) = z.ledger().report();
    t.set_zc(counts.into(), Some(release));
    Ok(())
}

/// One method of the seeds' table: its name there, CPU copies, user/kernel switches, and the
/// variant that does it here (None: the kernel no longer offers it as a separate path).
struct Seed {
    method: &'static str,
    copies: &'static str,
    switches: &'static str,
    variant: Option<&'static str>,
    note: &'static str,
}

const SEEDS: &[Seed] = &[
    Seed {
        method: "read + write",
        copies: "2",
        switches: "4",
        variant: Some("classic-read-write"),
        note: "page cache -> buffer, buffer -> socket buffer",
    },
    Seed {
        method: "mmap + write",
        copies: "1",
        switches: "4",
        variant: Some("classic-mmap-write"),
        note: "mapping -> socket buffer (the mmap itself once per file)",
    },
    Seed {
        method: "sendfile (before 2.4)",
        copies: "1",
        switches: "2",
        variant: None,
        note: "not a separate path any more: the kernel sends page references whenever the device does scatter/gather (veth does)",
    },
    Seed {
        method: "sendfile + DMA gather",
        copies: "0",
        switches: "2",
        variant: Some("classic-sendfile"),
        note: "page references in the skb (MSG_SPLICE_PAGES)",
    },
    Seed {
        method: "splice",
        copies: "0",
        switches: "2",
        variant: Some("classic-splice"),
        note: "file -> pipe -> socket is two splice(2) calls per chunk",
    },
];

/// Variants beyond the seeds, and the CPU copies of the payload each makes on udp-sink.
const BEYOND: &[(&str, &str)] = &[
    ("uring-read-send", "2"),
    ("uring-read-fixed-send", "2"),
    ("uring-splice", "0"),
    ("uring-send-zc-fixed", "1 (the read)"),
    ("uring-send-zc-mmap", "0"),
];

/// Pages splice_to_socket hands to one sendmsg (its bio_vec array), and the buffers of the
/// internal pipe sendfile uses.
const SPLICE_BATCH_PAGES: u64 = 16;

/// The most pages of the file a datagram of `d` bytes touches, over the offsets k * d at
/// which datagrams start: the offsets within a page reach PAGE - gcd(d, PAGE).
fn max_pages(d: u64) -> u64 {
    let (mut a, mut b) = (d, PAGE);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    (PAGE - a + d).div_ceil(PAGE)
}

/// Median and range of `f` over ok rows.
fn spread(rows: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
    if v.is_empty() || v.len() != rows.len() {
        return None;
    }
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Some((harness::median(v), min, max))
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

/// The seeds' table of copies and switches beside what udp-sink measured, one table per point:
/// system calls per MiB and per datagram (two user/kernel switches each), sender CPU per MiB
/// (median and min-max of the repeats), throughput, and the zero-copy usage the kernel
/// reported. Printed after the run and written to `copies.md`.
fn copies_table(lab: &Lab) -> Result<()> {
    let file = lab.dir.join("summary.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let rows = results::row::parse_jsonl(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let sink: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter(|r| r.params.get("path").and_then(Value::as_str) == Some("udp-sink"))
        .collect();
    if sink.is_empty() {
        return Ok(());
    }
    let mut by_point: BTreeMap<(u64, u64), Vec<&Row>> = BTreeMap::new();
    for r in &sink {
        let n = |k: &str| r.params.get(k).and_then(Value::as_u64).unwrap_or(0);
        by_point.entry((n("size"), n("chunk"))).or_default().push(r);
    }
    let mut md = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        md,
        "# Did zero-copy happen? file -> UDP sink ({}, {})\n",
        lab.caps.kernel.release, lab.caps.cpu.model
    );
    let _ = writeln!(
        md,
        "Seeds: copies and user/kernel switches per chunk as the seeds state them. Measured: udp-sink, median of {} repeats (min-max); CPU is the sending process's user + system time (the sink's drop at IP runs in the sender's softirq and is included, the same per datagram for every method); a system call is two user/kernel switches.\n",
        lab.args.repeat.min
    );
    for ((size, chunk), rs) in &by_point {
        let of = |v: &str| -> Vec<&Row> { rs.iter().copied().filter(|r| r.variant == v).collect() };
        let pages = max_pages(*chunk);
        let _ = writeln!(
            md,
            "## file {}, datagrams of {} B\n\nA datagram touches up to {pages} pages of the file (one pipe buffer and one skb fragment each).\n",
            units::fmt_size(*size),
            chunk
        );
        let _ = writeln!(
            md,
            "| method (seeds) | CPU copies (seeds) | switches (seeds) | variant measured | syscalls / MiB | syscalls / datagram | sender CPU µs / MiB | of which system | GB/s | copied (kernel's report) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let line = |md: &mut String, method: &str, copies: &str, sw: &str, v: &str| {
            let r = of(v);
            if r.is_empty() {
                let _ = writeln!(
                    md,
                    "| {method} | {copies} | {sw} | {v} | not measured | | | | | |"
                );
                return;
            }
            let sysc = spread(&r, |x| x.metrics.as_ref()?.syscalls_per_mib);
            let per_dgram = spread(&r, |x| {
                let m = x.metrics.as_ref()?;
                Some(m.syscalls.0? as f64 / *m.extra.get("datagrams")?)
            });
            let cpu = spread(&r, |x| Some(x.metrics.as_ref()?.cpu_ns_per_mib));
            let sys = spread(&r, |x| Some(x.metrics.as_ref()?.sys_ns_per_mib));
            let gbps = spread(&r, |x| Some(x.metrics.as_ref()?.gbps));
            let copied = spread(&r, |x| {
                let z = x.metrics.as_ref()?.zc.as_ref()?;
                z.usage_reported.then_some(z.copied_pct)
            });
            let _ = writeln!(
                md,
                "| {method} | {copies} | {sw} | {v} | {} | {} | {} | {} | {} | {} |",
                sysc.map_or("unknown".into(), |s| format!("{:.1}", s.0)),
                per_dgram.map_or("unknown".into(), |s| format!("{:.2}", s.0)),
                cpu.map_or("-".into(), |c| format!(
                    "{} ({}-{})",
                    us(c.0),
                    us(c.1),
                    us(c.2)
                )),
                sys.map_or("-".into(), |c| us(c.0)),
                gbps.map_or("-".into(), |g| format!("{:.2}", g.0)),
                copied.map_or("-".into(), |c| format!("{:.0}%", c.0)),
            );
        };
        for s in SEEDS {
            match s.variant {
                Some(v) => line(&mut md, s.method, s.copies, s.switches, v),
                None => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | — | {} | | | | | |",
                        s.method, s.copies, s.switches, s.note
                    );
                }
            }
        }
        for (v, copies) in BEYOND {
            line(&mut md, "(io_uring, beyond the seeds)", copies, "-", v);
        }
        md.push('\n');
        if pages > SPLICE_BATCH_PAGES {
            let _ = writeln!(
                md,
                "Over {SPLICE_BATCH_PAGES} pages, sendfile and splice hand a datagram to UDP in two sendmsg calls ({SPLICE_BATCH_PAGES} pages per call since Linux 6.5), the first with MSG_MORE, and a corked UDP datagram gets no checksum offload: the kernel reads every byte to checksum it (csum_partial under skb_splice_from_iter in a profile). No copy, but a pass over the data. A datagram that touches at most {SPLICE_BATCH_PAGES} pages at every offset goes in one call: `--datagram 63488` is the largest (15.5 pages, starting at multiples of 2 KiB), 61440 is 15 pages exactly.\n"
            );
        }
    }
    let _ = writeln!(
        md,
        "CPU copies of the payload each io_uring variant makes on this path, by construction: {}.",
        BEYOND
            .iter()
            .map(|(v, c)| format!("{v} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let p = lab.dir.join("copies.md");
    results::atomic_write(&p, md.as_bytes())
        .map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
    if !lab.args.quiet {
        println!("\n{md}copies: {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_a_datagram_touches() {
        assert_eq!(max_pages(65507), 17);
        assert_eq!(max_pages(61440), 15);
        assert_eq!(max_pages(61441), 16);
        assert_eq!(max_pages(61439), 16);
        assert_eq!(max_pages(4096), 1);
        assert_eq!(max_pages(4097), 2);
        // Datagrams start at multiples of 2048 within a page: 15.5 pages touch at most 16.
        assert_eq!(max_pages(63488), 16);
        assert_eq!(max_pages(63489), 17);
        assert_eq!(max_pages(1400), 2);
        assert_eq!(max_pages(2048), 1);
    }
}
