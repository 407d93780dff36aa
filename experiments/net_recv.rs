//! # net_recv: the receive side, copy against zero copy and io_uring's multishot and bundles
//!
//! **Question.** What does receiving a TCP stream cost the receiver, per MiB, and how much of
//! it can the kernel hand over without copying? read(2) into a buffer against
//! TCP_ZEROCOPY_RECEIVE (the socket's pages mapped into the reader), one io_uring RECV per
//! buffer, a multishot RECV into a provided buffer ring, the same with bundles (one
//! completion for several buffers), and io_uring's zero-copy receive (zcrx).
//!
//! **Set-up.** The receiver, this process's main thread, is the measured side. The sender is a
//! process of the lab (this binary again) pinned to the peer CPU (`--cpus`): a thread would
//! share the receiver's address space, and each page the zero-copy receive unmaps would cost
//! a TLB-shootdown interrupt to the sender's CPU. It connects over `--paths`:
//! - `tcp-loopback`: 127.0.0.1. The listener sets TCP_MAXSEG `--mss` (default 4096; 4084 B of
//!   payload beside the 12 B timestamp option). With a MSG_ZEROCOPY sender the kernel copies
//!   each skb (16 segments here) into whole fresh pages on delivery: 15 pages and a 3904 B
//!   tail, so about 94% of the bytes can be mapped whatever the receive size. `--mss 4108`
//!   (4096 B payloads, 15-page skbs) maps up to 100% with large mappings, and was seen to map
//!   less (about 65%) with exactly 64 KiB ones on Linux 6.18.
//! - `tcp-veth`: from namespace A to namespace B over a veth pair of MTU `--veth-mtu`
//!   (default 61492: segments of at most 61440 B, 15 pages, with TCP timestamps; TCP may
//!   use smaller ones, recorded as `mss_sender`). The receiver's socket
//!   lives in B, created there; the thread stays in the lab's namespace.
//!
//! The sender (`--sender`) uses plain send(2) or MSG_ZEROCOPY. The mapped share depends on
//! it: plain sends build page fragments at arbitrary offsets, which cannot be mapped; on local
//! delivery the kernel copies MSG_ZEROCOPY pages into whole fresh pages, which can. The sender
//! waits for the receiver's start signal inside the measured part, sends `--bytes` in
//! messages of `--send-size` each stamped with its sequence number; its own CPU time is
//! recorded as `peer_*` and `sender_cpu_ns_per_mib` (never part of the receiver's). On loopback the receive path's softirq work runs on the sender's
//! CPU inside its send calls: it is in the sender's time, not the receiver's.
//!
//! **Variants.** See `VARIANTS`. One latency sample is one receive step: a read(2) call; a
//! TCP_ZEROCOPY_RECEIVE call with the recv(2) reads of what it could not map; an io_uring
//! RECV from SQE to CQE; for the multishot forms, the wait that returned completions, shared
//! among them. Figures beside the harness's: receive calls (system calls or io_uring_enter)
//! and completions per MiB; for the zero-copy receive the shares of bytes mapped, copied into
//! the copy buffer, and read by recv(2), from the kernel's own answers (`length`,
//! `copybuf_len`, `recv_skip_hint`); for multishot, re-arms and how often the buffer ring ran
//! dry (`ring_dry`: the kernel took the last buffer and ended the receive, or -ENOBUFS).
//! `uring-recv-zc` registers an interface queue (IORING_REGISTER_ZCRX_IFQ) for the path's
//! device, or `--dev`/`--queue`; the kernel refuses lo and veth (no header split, no queue
//! management) and the variant is skipped with its errno. Where it accepts, this version has
//! no RECV_ZC loop yet and says so (skipped).
//!
//! After the table the run prints "did the receive go zero-copy?": per path and size the
//! mapped share and every variant's receiver CPU per MiB, and the size from which
//! `classic-recv-zerocopy` costs the receiver less CPU per MiB than `classic-recv` (at that
//! size and every larger one measured); written to `zero_copy_receive.json`.
//!
//! **Integrity.** The receiver hashes the stream in order (xxh3-64; mapped pages in place)
//! and compares with the hash of what the sender sent.
//!
//! **Many flows.** `--flows N --threads flows`: N sender processes, each flow received on its
//! own thread with its own receiver (`zclab::loops::recv_trial`), all started together
//! (`zclab::loops::flows::measure_parallel`); each flow checked, the row the aggregate.
//!
//! **Parameters.** Points: `path`, `size` (the receive buffer, the mapping, or each provided
//! buffer), `copybuf` (the zero-copy receive's copy buffer; the other variants are measured at
//! the first value only). Also `--sender`, `--send-size`, `--bytes`, `--pool`, `--mss`,
//! `--veth-mtu`, `--ring-bufs`, `--dev`, `--queue`, recorded in meta.json and the rows.
//!
//! **Code.** `zclab::loops::recv` (sender process, classic loops, integrity),
//! `zclab::uring::recv` (io_uring loops, buffer ring, zcrx registration),
//! `zclab::sys::tcp_zc` (TCP_ZEROCOPY_RECEIVE).
//!
//! **Minimum kernel.** TCP_ZEROCOPY_RECEIVE 4.18 (copy buffer 5.11); IORING_OP_RECV 5.6;
//! provided buffer rings and multishot RECV 6.0; bundles 6.10; zcrx 6.15.

use anyhow::{Context, Result};
use serde_json::json;
use std::process::ExitCode;
use zclab::caps::Caps;
use zclab::catalog::{Entry, net_recv as names};
use zclab::harness::{
    self, Analysis, CommonArgs, Done, Env, Experiment, Plan, Point, Trial, Variant,
};
use zclab::loops::busy::{self, BUSY_POLL_US, BusyPoll};
use zclab::loops::recv::{self as rx, SendMode, SendSpec};
use zclab::loops::recv_trial::{self, FlowRun, Kind, Options, Receiver};
use zclab::loops::{flows, net_paths, recv_table};
use zclab::measure::Recorder;
use zclab::net::netns::{self, NetPath, VethLab};
use zclab::net::remote;
use zclab::results::Row;
use zclab::sys::busy_poll;
use zclab::units;
use zclab::uring::recv::Multishot;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<NetRecv>] = harness::variants![
    names::CLASSIC_RECV => |ctx, t| run(ctx, t, Kind::Classic), [], "read(2) into a buffer: the kernel copies every byte";
    names::CLASSIC_RECV_ZEROCOPY => |ctx, t| run(ctx, t, Kind::Zerocopy), [], "getsockopt(TCP_ZEROCOPY_RECEIVE) on an mmap of the socket: whole pages mapped, the rest through the copy buffer or recv(2)";
    names::URING_RECV => |ctx, t| run(ctx, t, Kind::Uring), [op(Recv)], "IORING_OP_RECV into one buffer, one request per receive";
    names::URING_RECV_MULTISHOT => |ctx, t| run(ctx, t, Kind::Multishot(Multishot::Plain)), [op(Recv)], "one multishot IORING_OP_RECV into a provided buffer ring, one completion per buffer, re-armed when the kernel ends it";
    names::URING_RECV_BUNDLE => |ctx, t| run(ctx, t, Kind::Multishot(Multishot::Bundle)), [op(Recv)], "multishot IORING_OP_RECV with IORING_RECVSEND_BUNDLE: one completion for several provided buffers";
    names::URING_RECV_ZC => |ctx, t| run(ctx, t, Kind::Zcrx), [op(RecvZc), Root], "io_uring zero-copy receive (zcrx): IORING_REGISTER_ZCRX_IFQ on the receive queue, then IORING_OP_RECV_ZC";
    names::CLASSIC_RECV_BUSY_POLL => |ctx, t| run_busy(ctx, t, Kind::Classic), [Root], "classic-recv on a socket with SO_BUSY_POLL and SO_PREFER_BUSY_POLL: the reader runs the device's NAPI poll itself before it sleeps (tcp-veth, with an XDP program on the receiving end that gives veth its NAPI)";
    names::URING_RECV_MULTISHOT_NAPI => |ctx, t| run_busy(ctx, t, Kind::Multishot(Multishot::Plain)), [Root, op(Recv)], "uring-recv-multishot with IORING_REGISTER_NAPI: the ring busy-polls the socket's NAPI context while it waits (Linux 6.9; tcp-veth with the XDP program)";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// Paths, comma-separated: tcp-loopback, tcp-veth (needs root). Default: both, or
    /// tcp-loopback alone where namespaces cannot be made.
    #[arg(long, value_enum, value_delimiter = ',')]
    paths: Vec<NetPath>,
    /// Receive sizes, comma-separated: the read size, the mapping of the zero-copy receive,
    /// and each provided buffer of the multishot forms.
    #[arg(long, default_value = "4KiB,64KiB,256KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Copy buffers of the zero-copy receive, comma-separated (0: none; what cannot be mapped
    /// is read with recv). Under a page only sub-page remainders are copied; a large one
    /// makes the kernel copy whatever is queued when it fits.
    #[arg(long, default_value = "4095", value_delimiter = ',', value_parser = units_arg)]
    copybuf: Vec<u64>,
    /// The sender: plain send(2) or MSG_ZEROCOPY.
    #[arg(long, value_enum, default_value_t = SendMode::Zerocopy)]
    sender: SendMode,
    /// The sender's message size.
    #[arg(long, default_value = "128KiB", value_parser = harness::size_arg)]
    send_size: u64,
    /// Bytes per trial (rounded up to whole messages).
    #[arg(long, default_value = "64MiB", value_parser = harness::size_arg)]
    bytes: u64,
    /// MSG_ZEROCOPY send buffers (one is rewritten only after its notification).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pool: u32,
    /// TCP_MAXSEG set on the loopback listener (0: the kernel's own, about 65483 B). The 12 B
    /// TCP timestamp option comes off it: 4096 gives 4084 B payloads, 4108 gives 4096 B; the
    /// payload size in force is recorded as `mss_receiver`.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=65535))]
    mss: u32,
    /// MTU of the lab's veth pair.
    #[arg(long, default_value_t = 61492, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    veth_mtu: u32,
    /// Buffers in the provided buffer ring (a power of two).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=32768))]
    ring_bufs: u16,
    /// uring-recv-zc: the interface whose receive queue to register (default: the path's own
    /// device, lo or the veth end).
    #[arg(long, value_name = "IFACE")]
    dev: Option<String>,
    /// Host running `zclab serve` (port 7878 unless given): its tcp-source streams to this
    /// host over the path remote-tcp (plain write(2) of the lab's pattern, --send-size each;
    /// --sender does not apply), and the receiver is measured here.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<remote::PeerAddr>,
    /// uring-recv-zc: the receive queue of --dev.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    #[command(flatten)]
    flows: flows::FlowArgs,
}

fn units_arg(s: &str) -> Result<u64, String> {
    units::parse_size(s).map_err(|e| e.to_string())
}

struct NetRecv {
    args: Args,
    paths: Vec<NetPath>,
    net: Option<VethLab>,
    net_reason: Option<String>,
    /// --dev's interface index.
    dev_index: Option<u32>,
}

impl Experiment for NetRecv {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        if let Some(p) = args
            .paths
            .iter()
            .find(|p| p.is_datagram() || **p == NetPath::RemoteUdp)
        {
            return Err(harness::usage(format!(
                "path {} is not a path of net_recv (tcp-loopback, tcp-veth, remote-tcp)",
                p.name()
            )));
        }
        let remote_asked = args.paths.contains(&NetPath::RemoteTcp);
        match (&args.peer, remote_asked) {
            (None, true) => {
                return Err(harness::usage(
                    "path remote-tcp needs --peer HOST[:PORT] (a host running `zclab serve`)",
                ));
            }
            (Some(_), _) if args.paths.iter().any(|p| !p.is_remote()) => {
                return Err(harness::usage(
                    "with --peer the path is remote-tcp: the local paths build both ends on this host",
                ));
            }
            _ => {}
        }
        if args.peer.is_some() && zclab::net::peers::FaultSpec::from_env()?.is_some() {
            return Err(harness::usage(zclab::net::peers::fault_with_peer("sender")));
        }
        if let Some(&s) = args.sizes.iter().find(|&&s| s > 16 << 20) {
            return Err(harness::usage(format!(
                "receive size {} is over the 16 MiB this experiment allows",
                units::fmt_size(s)
            )));
        }
        if let Some(&c) = args.copybuf.iter().find(|&&c| c > 16 << 20) {
            return Err(harness::usage(format!(
                "copy buffer {} is over 16 MiB",
                units::fmt_size(c)
            )));
        }
        if !args.ring_bufs.is_power_of_two() {
            return Err(harness::usage(format!(
                "--ring-bufs {} is not a power of two",
                args.ring_bufs
            )));
        }
        let max = args.sizes.iter().max().copied().unwrap_or(0);
        if max * args.ring_bufs as u64 > 1 << 30 || args.send_size * args.pool as u64 > 1 << 30 {
            return Err(harness::usage(
                "--ring-bufs x the largest size, or --pool x --send-size, is over 1 GiB",
            ));
        }
        let dev_index = match &args.dev {
            Some(d) => Some(
                nix::net::if_::if_nametoindex(d.as_str())
                    .map_err(|e| harness::usage(format!("--dev {d}: no such interface ({e})")))?,
            ),
            None => None,
        };
        let mut paths = Vec::new();
        for p in if args.peer.is_some() {
            vec![NetPath::RemoteTcp]
        } else if args.paths.is_empty() {
            vec![NetPath::TcpLoopback, NetPath::TcpVeth]
        } else {
            args.paths.clone()
        } {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        if let Err(e) = args.flows.check() {
            return Err(harness::usage(e));
        }
        let counts = args.flows.counts();
        if args.flows.many() {
            if let Some(&f) = counts.iter().find(|&&f| args.flows.threads_for(f) != f) {
                return Err(harness::usage(format!(
                    "net_recv receives each flow on its own thread: --threads {} with --flows {f} (use --threads flows)",
                    args.flows.threads_for(f)
                )));
            }
        }
        let mut points = Vec::new();
        for &p in &paths {
            for &s in &args.sizes {
                for &c in &args.copybuf {
                    let point = Point::new()
                        .size("copybuf", c)
                        .text("path", p.name())
                        .size("size", s);
                    if !args.flows.many() {
                        points.push(point);
                        continue;
                    }
                    for &f in &counts {
                        points.push(point.clone().int("flows", f).int("threads", f));
                    }
                }
            }
        }
        let parameters = json!({
            "paths": paths, "sizes": args.sizes, "copybuf": args.copybuf, "sender": args.sender,
            "send_size": args.send_size, "bytes_per_trial": args.bytes, "pool": args.pool,
            "mss_loopback": (args.mss > 0).then_some(args.mss), "veth_mtu": args.veth_mtu,
            "ring_bufs": args.ring_bufs, "dev": args.dev, "queue": args.queue,
            "placement": {"receiver_cpu": common.cpus.0, "sender_cpu": common.cpus.1},
            "flows": args.flows.parameters(),
            "sender_socket": "TCP_NODELAY; SO_ZEROCOPY with --sender zerocopy",
            "zerocopy_release": "madvise(MADV_DONTNEED) of the mapped pages after hashing them",
            "netns": net_paths::netns_parameters(),
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "remote": args.peer.as_ref().map(|_| json!({
                "remote_tcp": "zclab serve's tcp-source on the peer host writes the lab's pattern stream (--bytes, --send-size per write(2)) as soon as the connection is set up, before the clock starts here: what the socket buffers hold by then is received inside the clock",
                "peer_cpu_time": "the sender's, measured on the peer host, recorded as peer_user_ns/peer_sys_ns",
            })),
        });
        let ctx = NetRecv {
            args,
            paths,
            net: None,
            net_reason: None,
            dev_index,
        };
        Ok(Plan {
            ctx,
            points,
            parameters,
        })
    }

    fn peer_addr(&self) -> Option<&remote::PeerAddr> {
        self.args.peer.as_ref()
    }

    fn prepare(&mut self, env: &Env) -> Result<()> {
        if !self.paths.contains(&NetPath::TcpVeth) {
            return Ok(());
        }
        let required = !self.args.paths.is_empty();
        (self.net, self.net_reason) =
            net_paths::veth_or_reason(names::NAME, env.caps, self.args.veth_mtu, required)?;
        Ok(())
    }

    /// "Did the receive go zero-copy?": mapped share and receiver CPU per MiB per variant, and
    /// the size from which the zero-copy receive pays off (`zero_copy_receive.json`, one-flow
    /// rows); with --flows, each flow's rate and the fairness (`flows.md`).
    fn analyse(&self, rows: &[Row], _common: &CommonArgs) -> Result<Vec<Analysis>> {
        let mut out: Vec<Analysis> = Analysis::flows(rows).into_iter().collect();
        let t = recv_table::table(rows, self.args.copybuf[0]);
        if !t.lines.is_empty() {
            let text = recv_table::render(&t);
            out.push(Analysis::new("zero_copy_receive.json", &t, text)?);
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        net_paths::remove_veth_lab(self.net.as_mut())
    }

    fn list_notes(caps: &Caps) -> Vec<String> {
        net_paths::tcp_path_notes(netns::unavailable_reason(caps))
    }
}

fn main() -> ExitCode {
    // The same binary is each trial's sender process (loops::recv::SENDER_ENV).
    if let Some(code) = rx::sender_child() {
        return code;
    }
    harness::run::<NetRecv>()
}

fn run(ctx: &mut NetRecv, t: &mut Trial, kind: Kind) -> Result<()> {
    run_with(ctx, t, kind, None)
}

/// A busy-polling receiver ([`BUSY_POLL_US`]): on tcp-veth the receiving end gets, for the
/// trial, the XDP program that gives veth its NAPI context ([`BusyPoll`]); a real NIC behind
/// --peer has its own; loopback has none.
fn run_busy(ctx: &mut NetRecv, t: &mut Trial, kind: Kind) -> Result<()> {
    let veth = match NetPath::from_name(t.point.str("path"))? {
        NetPath::TcpLoopback => return Err(busy::loopback_skip()),
        NetPath::TcpVeth => match ctx.net.as_ref() {
            Some(n) => Some(n),
            None => return run_with(ctx, t, kind, None), // skipped there with the reason
        },
        _ => None,
    };
    let bp = BusyPoll::start(veth)?;
    run_with(ctx, t, kind, Some(bp))
}

/// One trial; `busy`: the receiver busy-polls, and the trial's busy-polling figures.
fn run_with(ctx: &mut NetRecv, t: &mut Trial, kind: Kind, busy: Option<BusyPoll>) -> Result<()> {
    let path = NetPath::from_name(t.point.str("path"))?;
    let size = t.point.num("size") as usize;
    let copybuf = t.point.num("copybuf") as usize;
    let a = &ctx.args;
    if kind != Kind::Zerocopy && copybuf as u64 != a.copybuf[0] {
        return Err(harness::skip_point(format!(
            "copybuf applies to classic-recv-zerocopy only; measured at copybuf={}",
            a.copybuf[0]
        )));
    }
    if path == NetPath::TcpVeth && ctx.net.is_none() {
        return Err(harness::skip_point(ctx.net_reason.clone().unwrap_or_else(
            || "the lab's network namespaces are not available".into(),
        )));
    }
    if kind == Kind::Zcrx {
        let dev = ctx
            .dev_index
            .map(|i| (i, ctx.args.dev.as_deref().unwrap_or("?")));
        return Err(rx::zcrx_skip(dev, ctx.args.queue, path, ctx.net.as_ref()));
    }
    let msgs = a.bytes.div_ceil(a.send_size).max(1);
    let spec = SendSpec {
        mode: a.sender,
        size: a.send_size as usize,
        msgs,
        pool: a.pool as usize,
        reset_after: t.fault_after(),
    };
    let n = if a.flows.many() {
        t.point.num("flows") as usize
    } else {
        1
    };
    if n > 1 && busy.is_some() {
        return Err(harness::skip_point(
            "busy polling is measured with one flow (one NAPI context to poll)",
        ));
    }
    let opts = Options {
        size,
        copybuf,
        ring_bufs: a.ring_bufs,
        napi: busy.is_some() && kind != Kind::Classic,
    };
    let kernel = t.caps.kernel.release.clone();
    let net = ctx.net.as_ref().filter(|_| path == NetPath::TcpVeth);
    let mss = (path == NetPath::TcpLoopback && a.mss > 0).then_some(a.mss);
    // With --peer each flow's sender is a `zclab serve` tcp-source, streaming from the moment
    // it is set up; here, the lab's sender process, which waits for the start signal.
    let mut remotes = Vec::new();
    match (path, t.remote) {
        (NetPath::RemoteTcp, Some(p)) => {
            for i in 0..n {
                let cpu = a.flows.peer_cpu(i, t.cpus.1) as u32;
                remotes.push(p.tcp_source(Some(cpu), a.bytes, a.send_size)?);
            }
        }
        (NetPath::RemoteTcp, None) => anyhow::bail!("remote-tcp runs with --peer"),
        _ => {}
    }
    if let (true, Some(r)) = (busy.is_some(), remotes.first()) {
        if r.stream.peer_addr()?.ip().is_loopback() {
            return Err(harness::skip_point(
                "the --peer host is reached over loopback, which has no NAPI context: busy polling would have nothing to poll",
            ));
        }
    }
    let mut groups = Vec::with_capacity(n);
    for i in 0..n {
        let link = match remotes.get(i) {
            Some(r) => rx::Link::remote(r.stream.try_clone()?),
            None => {
                // A fault (ZCLAB_FAULT) hits flow 0's sender only: the others must go on.
                let spec = SendSpec {
                    reset_after: spec.reset_after.filter(|_| i == 0),
                    ..spec
                };
                let cpu = a.flows.peer_cpu(i, t.cpus.1);
                rx::connect(net, mss, cpu, spec).context("cannot connect the sender")?
            }
        };
        if busy.is_some() && kind == Kind::Classic {
            busy_poll::enable(&link.sock, BUSY_POLL_US)?;
        }
        groups.push((i, link));
    }
    let cpus: Vec<usize> = (0..n).map(|j| a.flows.thread_cpu(j, t.cpus.0)).collect();
    let (cancel, clock) = (t.cancel(), t.clock);
    let make = |(i, link): (usize, rx::Link)| -> Result<_> {
        Ok((i, link, Receiver::new(kind, opts, &kernel)?))
    };
    let first = |f: &(usize, rx::Link, Receiver), t: &mut Trial| {
        if let Some(flags) = f.2.ring_flags() {
            t.set_ring(&flags);
        }
    };
    // One flow: its failure is the trial's. Several: each flow's failure is its own.
    let work = |f: &mut (usize, rx::Link, Receiver), rec: &mut Recorder, start| {
        let r = f.2.receive(&mut f.1, rec, cancel);
        if n == 1 {
            r?;
            return Ok((None, 0));
        }
        Ok((
            r.err().map(|e| format!("{e:#}")),
            clock.ns_between(start, clock.now()),
        ))
    };
    let done = |v: &[FlowRun]| Done {
        bytes: v.iter().map(|(f, _)| f.2.bytes()).sum(),
        ops: v.iter().map(|(f, _)| f.2.ops()).sum(),
    };
    let mut ran = flows::measure_parallel(t, kind.step(), groups, &cpus, make, first, work, done)?;
    let mss_receiver = ran[0].0.1.mss();
    let napi = busy
        .as_ref()
        .map(|_| busy_poll::napi_id(&ran[0].0.1.sock))
        .transpose()?;
    let (classic, counts) = recv_trial::total(&ran.iter().map(|(f, _)| &f.2).collect::<Vec<_>>());
    let bytes = counts.bytes.max(classic.bytes);
    let mut peer_extras = std::collections::BTreeMap::new();
    let sent = match (remotes.first_mut(), n) {
        (Some(src), 1) => {
            let (s, check, x) = recv_trial::remote_finish(a.bytes, src, &ran[0].0.2)
                .context("the peer host's sender")?;
            t.set_integrity(check);
            for (k, v) in x {
                t.set_extra(k, v);
            }
            s
        }
        (None, 1) => {
            let (_, link, r) = &mut ran[0].0;
            let sent = link.finish().context("the sender failed")?;
            t.set_integrity(rx::integrity(&spec, bytes, r.hash.digest()));
            sent
        }
        (None, _) => recv_trial::flows_sent(t, &mut ran, spec.bytes() * n as u64, |_, l, r| {
            recv_trial::local_finish(&spec, l, r)
        }),
        (Some(_), _) => recv_trial::flows_sent(t, &mut ran, a.bytes * n as u64, |i, _, r| {
            let (s, check, x) = recv_trial::remote_finish(a.bytes, &mut remotes[i], r)
                .context("the peer host's sender")?;
            flows::add_peer_extras(&mut peer_extras, &x);
            Ok((s, check))
        }),
    };
    for (k, v) in peer_extras {
        t.set_extra(k, v);
    }
    // The sender is another process (or host): its CPU time is recorded beside, not
    // subtracted.
    t.set_remote_peer(sent.usage);
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let per_mib = |v: u64| if mib > 0.0 { v as f64 / mib } else { 0.0 };
    let pct = |v: u64| {
        if bytes > 0 {
            v as f64 * 100.0 / bytes as f64
        } else {
            0.0
        }
    };
    t.set_extra(
        "sender_cpu_ns_per_mib",
        per_mib(sent.usage.user_ns + sent.usage.sys_ns),
    );
    match kind {
        Kind::Classic | Kind::Zerocopy => {
            t.set_extra("receive_calls_per_mib", per_mib(classic.calls));
            t.set_extra("completions_per_mib", per_mib(classic.calls));
        }
        _ => {
            t.set_extra("receive_calls_per_mib", per_mib(counts.enters));
            t.set_extra("completions_per_mib", per_mib(counts.completions));
            t.set_extra("submissions_per_mib", per_mib(counts.submissions));
        }
    }
    if kind == Kind::Zerocopy {
        t.set_extra("mapped_pct", pct(classic.mapped));
        t.set_extra("copybuf_copied_pct", pct(classic.copybuf));
        t.set_extra("recv_copied_pct", pct(classic.recv_copied));
        t.set_extra("zerocopy_calls_per_mib", per_mib(classic.zc_calls));
        t.set_extra("polls_per_mib", per_mib(classic.polls));
        t.set_extra("copybuf_bytes", copybuf as f64);
    }
    if let Kind::Multishot(_) = kind {
        t.set_extra("rearms", counts.rearms as f64);
        t.set_extra("ring_dry", counts.dry as f64);
        t.set_extra("enobufs", counts.enobufs as f64);
        t.set_extra("ring_buffers", a.ring_bufs as f64);
        t.set_extra(
            "buffers_per_completion",
            counts.buffers as f64 / counts.with_data.max(1) as f64,
        );
    }
    t.set_extra("buffer_bytes", size as f64);
    t.set_extra("send_size", a.send_size as f64);
    // zclab serve's tcp-source writes plainly.
    let zc_sender = remotes.is_empty() && a.sender == SendMode::Zerocopy;
    t.set_flag("sender_msg_zerocopy", zc_sender);
    if let Some(z) = &sent.zc {
        t.set_extra("sender_zc_copied_pct", z.copied_pct);
    }
    if let Some(m) = mss {
        t.set_extra("mss_set", m as f64);
    }
    if path == NetPath::TcpVeth {
        t.set_extra("veth_mtu", a.veth_mtu as f64);
    }
    if let Some(m) = sent.mss {
        t.set_extra("mss_sender", m as f64);
    }
    if let Some(m) = mss_receiver {
        t.set_extra("mss_receiver", m as f64);
    }
    if let Some(b) = busy {
        b.finish(t, napi)?;
    }
    Ok(())
}
