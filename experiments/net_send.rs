//! # net_send: zero-copy sends that tell the truth
//!
//! **Question.** Did zero copy actually happen, and what does it cost or save? For MSG_ZEROCOPY
//! (send(2) on an SO_ZEROCOPY socket, completions from the error queue) and io_uring's
//! SEND_ZC / SENDMSG_ZC (notification CQEs with IORING_SEND_ZC_REPORT_USAGE), against plain
//! send(2) and IORING_OP_SEND: how many bytes the kernel copied after all, the sender's CPU per
//! byte, throughput, the send-completion latency and the buffer-release latency, and from which
//! message size zero copy starts to pay off.
//!
//! **Set-up.** Three paths (`--paths`):
//! - `tcp-loopback`: TCP over 127.0.0.1 to a receiver thread pinned to the peer CPU, which
//!   reads into user space and hashes the stream (xxh3). Local delivery: the kernel copies.
//! - `tcp-veth`: TCP from namespace A to a receiver thread that entered namespace B (setns)
//!   over a veth pair the lab creates; same receiver and hash. Still local delivery: copies.
//! - `udp-sink`: connected UDP from namespace A over a veth pair to namespace S, whose device is
//!   up but has no address (forwarding off), with a permanent neighbour entry in A. Datagrams
//!   reach S's device and are dropped at IP: nothing receives them locally, so the kernel
//!   really does not copy. Integrity there: every send accepted in full, every notification
//!   received, and S's device rx counters grew by exactly the datagrams and bytes sent.
//!   Payloads are capped at 65507 bytes (the largest IPv4 UDP payload); the veth MTU
//!   (`--veth-mtu`, default 65535) lets such datagrams through unfragmented.
//!
//! - `remote-tcp`, `remote-udp` (with `--peer HOST[:PORT]`, which makes them the default
//!   paths): the receiver runs in `zclab serve` on another host, reached over whatever link
//!   joins the two (a real NIC, where zero copy can really happen for TCP too). `remote-tcp`
//!   streams to a receiver there that hashes (or, with `--sink discard`, only counts);
//!   `remote-udp` sends connected UDP datagrams to a receiver there that counts datagrams and
//!   bytes and sums each datagram's xxh3-64 (order-independent): integrity is that every
//!   datagram arrived intact exactly once (loss on the way is a failed trial, named as such).
//!   The receiver's CPU time, context switches and its CPU's ksoftirqd time are measured
//!   there and recorded as `peer_*`; nothing of it is subtracted here. The local-only paths
//!   are skipped under `--peer` with the reason (they build both ends on this host).
//!
//! The namespaces (`zcsend-<pid>-{a,b,s}`) and veth pairs are created with iproute2's `ip`,
//! need root, and are removed at the end, on error, and on SIGINT/SIGTERM. Without root the
//! veth paths are skipped with the reason; `tcp-loopback` still runs.
//!
//! Every message carries its sequence number in its first and last 8 bytes, written just
//! before it is sent, so a buffer reused before the kernel released it changes what the peer
//! receives and fails the hash. Buffers are handed out for writing only after their
//! notification (`ZcPool`, `SendPipeline`). On TCP one send is in flight per stream (two can
//! interleave when one is short and retried); on UDP the io_uring variants keep up to `--pool`
//! sends in flight and reap completions in batches.
//!
//! **Variants.** See `VARIANTS`. One latency sample is one message: from the send call (or the
//! SQE push) until the kernel accepted all of it (its result). Zero-copy variants also record
//! the release latency (send issued to its notification) and `ZcCounts`: sends, notifications,
//! ids covered, copied, ENOBUFS retries; "zero copy happened for X% of bytes" is
//! `100 - copied_pct`. After the table the run prints, for `udp-sink`, the message size from
//! which each zero-copy variant's sender CPU per byte is below `classic-send`'s, and writes it
//! to `crossover.json` (for `remote-udp` likewise, to `crossover-remote-udp.json`).
//!
//! The TCP receivers (the peer thread here, or the one in `zclab serve`) copy and hash by
//! default; `--sink discard` makes them drop the bytes in the kernel with recv(MSG_TRUNC), as
//! the receivers of liburing's send-zerocopy and the kernel's msg_zerocopy selftest do, so a
//! comparison with those tools has the same receiver. Integrity is then the byte count only,
//! and the rows say so.
//!
//! **Parameters.** `--paths`, `--peer`, `--sink`, `--sizes`, `--bytes` and
//! `--max-messages` (per trial), `--pool`
//! (buffers; bytes awaiting release <= pool x size), `--inflight` (io_uring sends in flight on
//! udp-sink), `--nodelay`, `--sndbuf`, `--reap-every` (error-queue reads for MSG_ZEROCOPY; the other
//! variants are measured at the first value only), `--veth-mtu`, `--cpus` (sender,peer). All
//! are recorded in meta.json with the sysctls that shape these paths (optmem_max, wmem, ...);
//! per trial the rows also carry SO_SNDBUF, the sink's counters and the CPU time of
//! ksoftirqd on both CPUs (softirq work deferred there is not in the process's CPU time).
//!
//! **Code.** The send loops, the stamps and the integrity checks are `zclab::loops::send`; the
//! crossover is `zclab::loops::netsend_crossover`.
//!
//! **Minimum kernel.** MSG_ZEROCOPY: TCP 4.14, UDP 5.0; IORING_OP_SEND 5.6; SEND_ZC 6.0;
//! SENDMSG_ZC 6.1; usage reporting (needed to say whether the kernel copied) 6.2.

use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use zclab::caps::Caps;
use zclab::catalog::{Entry, net_send as names};
use zclab::harness::{
    self, Analysis, CommonArgs, Done, Env, Experiment, Plan, Point, Trial, Variant,
};
use zclab::loops::flows::{self, Flow};
use zclab::loops::send::{self, NOTIF_TIMEOUT, PeerUsage, SendJob, SendKind, Sender};
use zclab::loops::{net_paths, netsend_crossover};
use zclab::net::netns::{self, MAX_UDP_PAYLOAD, NetPath, VethLab};
use zclab::net::peers;
use zclab::net::remote::{self, PeerAddr};
use zclab::net::{Conn, Sink};
use zclab::results::Row;
use zclab::units;
use zclab::uring::pipeline::SendOp;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<NetSend>] = harness::variants![
    names::CLASSIC_SEND => |ctx, t| run_explained(ctx, t, SendKind::Classic), [], "send(2) from a user buffer: the kernel copies it into socket buffers";
    names::CLASSIC_SEND_MSG_ZEROCOPY => |ctx, t| run_explained(ctx, t, SendKind::MsgZerocopy), [SoZerocopy], "send(2) with MSG_ZEROCOPY on an SO_ZEROCOPY socket; completions read with recvmsg(MSG_ERRQUEUE)";
    names::URING_SEND => |ctx, t| run_explained(ctx, t, SendKind::Uring(SendOp::Send)), [op(Send)], "IORING_OP_SEND (the kernel copies)";
    names::URING_SEND_ZC => |ctx, t| run_explained(ctx, t, SendKind::Uring(SendOp::SendZc)), [op(SendZc), SendZcReportUsage], "IORING_OP_SEND_ZC with IORING_SEND_ZC_REPORT_USAGE; the kernel pins the buffer's pages per send";
    names::URING_SEND_ZC_FIXED => |ctx, t| run_explained(ctx, t, SendKind::Uring(SendOp::SendZcFixed)), [op(SendZc), SendZcReportUsage], "IORING_OP_SEND_ZC from registered buffers (IORING_RECVSEND_FIXED_BUF), usage reported";
    names::URING_SENDMSG_ZC => |ctx, t| run_explained(ctx, t, SendKind::Uring(SendOp::SendMsgZc)), [op(SendMsgZc), SendZcReportUsage], "IORING_OP_SENDMSG_ZC with one iovec on the connected socket, usage reported";
];

#[derive(clap::Args, Debug)]
struct Args {
    #[command(flatten)]
    net: net_paths::NetArgs,
    /// What the TCP receiver (the peer thread here, or `zclab serve` with --peer) does with
    /// the bytes: copy and hash them (integrity by xxh3-64, as iperf3's receiver copies), or
    /// discard them in the kernel with recv(MSG_TRUNC), as the receivers of liburing's
    /// send-zerocopy and the kernel's msg_zerocopy selftest do (integrity by byte count only;
    /// the receiver's CPU no longer limits a fast sender).
    #[arg(long, alias = "peer-sink", value_enum, default_value_t = Sink::Hash)]
    sink: Sink,
    /// Message sizes (bytes per send), comma-separated (K/M are powers of 1024, KB/MB of
    /// 1000). On udp-sink a size above 65507 B (the largest IPv4 UDP payload) is sent as
    /// 65507 B, and the point says so.
    #[arg(long, default_value = "1KiB,4KiB,8KiB,16KiB,64KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes sent per trial (rounded up to whole messages).
    #[arg(long, default_value = "16MiB", value_parser = harness::size_arg)]
    bytes: u64,
    /// Messages per trial at most: small messages send fewer bytes (min(--bytes,
    /// max-messages x size)), so a sweep down to 1 KiB stays quick.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    max_messages: u64,
    /// Send buffers: zero-copy variants never rewrite a buffer before its notification, so
    /// this bounds the bytes awaiting release (pool x size). Keep it >= the largest
    /// --reap-every, or MSG_ZEROCOPY must read the error queue sooner to free a buffer.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pool: u32,
    /// io_uring sends in flight (submitted, result not yet reaped) on udp-sink, at most
    /// --pool. Deeper queues overrun the UDP send buffer: sends then wait for POLLOUT.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    inflight: u32,
    /// TCP_NODELAY on the sending TCP socket (`--nodelay false` leaves Nagle on: 4 KiB
    /// zero-copy sends with little in flight then stall on delayed ACKs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
    /// SO_SNDBUF on the sending socket (the kernel doubles it, and TCP then stops tuning its
    /// send buffer); unset, the kernel's default and autotuning apply. liburing's
    /// send-zerocopy sets 2MiB. The value in force is recorded per row as `so_sndbuf`.
    #[arg(long, value_parser = harness::size_arg)]
    sndbuf: Option<u64>,
    /// MSG_ZEROCOPY: read the error queue after every N sends (and whenever no buffer is free),
    /// comma-separated values to compare. Only classic-send-msg-zerocopy uses it; the other
    /// variants are measured at the first value.
    #[arg(long, default_value = "1,32", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=4096))]
    reap_every: Vec<u64>,
    #[command(flatten)]
    flows: flows::FlowArgs,
    /// MTU of the lab's veth pairs (65535 lets a 65507-byte UDP payload through whole).
    #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    veth_mtu: u32,
}

struct NetSend {
    args: Args,
    /// The paths measured (--paths, or the default for the run).
    paths: Vec<NetPath>,
    /// The lab's namespaces, when the veth paths can run.
    net: Option<VethLab>,
    /// Why the veth paths cannot run here.
    net_reason: Option<String>,
    /// /proc/<pid>/schedstat of ksoftirqd on the sender's and the peer's CPU: softirq work
    /// deferred there is not in the process's CPU time, so it is recorded beside it.
    ksoftirqd: (Option<PathBuf>, Option<PathBuf>),
}

impl Experiment for NetSend {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        if let Some(&s) = args.sizes.iter().find(|&&s| s > 64 << 20) {
            return Err(harness::usage(format!(
                "message size {} is over the 64 MiB this experiment allows",
                units::fmt_size(s)
            )));
        }
        let max = args.sizes.iter().max().copied().unwrap_or(0);
        if max.saturating_mul(args.pool as u64) > 1 << 30 {
            return Err(harness::usage(format!(
                "--pool {} x {} is over 1 GiB of send buffers",
                args.pool,
                units::fmt_size(max)
            )));
        }
        let given = if !args.net.paths.is_empty() {
            args.net.paths.clone()
        } else if args.net.peer.is_some() {
            NetPath::REMOTE.to_vec()
        } else {
            NetPath::ALL.to_vec()
        };
        if let (None, Some(p)) = (&args.net.peer, given.iter().find(|p| p.is_remote())) {
            return Err(harness::usage(format!(
                "path {} needs --peer HOST[:PORT] (a host running `zclab serve`)",
                p.name()
            )));
        }
        if let Err(e) = args.flows.check() {
            return Err(harness::usage(e));
        }
        let paths = dedup(given);
        let reaps = dedup(args.reap_every.iter().copied());
        let mut points = Vec::new();
        for &p in &paths {
            let sizes = args.sizes.iter();
            let sizes = dedup(sizes.map(|&s| {
                if p.is_datagram() {
                    s.min(MAX_UDP_PAYLOAD)
                } else {
                    s
                }
            }));
            for s in sizes {
                for &r in &reaps {
                    let point = Point::new()
                        .text("path", p.name())
                        .size("size", s)
                        .int("reap", r);
                    if !args.flows.many() {
                        points.push(point);
                        continue;
                    }
                    for f in args.flows.counts() {
                        let threads = args.flows.threads_for(f);
                        points.push(point.clone().int("flows", f).int("threads", threads));
                    }
                }
            }
        }
        let parameters = json!({
            "paths": paths, "sizes": args.sizes, "bytes_per_trial": args.bytes, "pool": args.pool,
            "nodelay": args.nodelay, "sndbuf": args.sndbuf, "max_messages_per_trial": args.max_messages, "inflight": args.inflight, "reap_every": args.reap_every, "veth_mtu": args.veth_mtu,
            "udp_payload_cap": MAX_UDP_PAYLOAD,
            "peer": args.net.peer.as_ref().map(|p| p.text.clone()),
            "sink": args.sink,
            "remote": args.net.peer.as_ref().map(|_| json!({
                "remote_tcp": "TCP to a receiver thread in `zclab serve` on the peer host, pinned to the peer CPU there; it hashes (xxh3-64) or only counts",
                "remote_udp": "connected UDP to a receiver thread in `zclab serve` on the peer host that counts datagrams and bytes and sums their xxh3-64",
                "data_sockets": format!("TCP_USER_TIMEOUT {} s", remote::DATA_USER_TIMEOUT.as_secs()),
                "peer_cpu_time": "measured in the receiver's thread on the peer host (getrusage RUSAGE_THREAD), recorded as peer_user_ns/peer_sys_ns; not subtracted here",
            })),
            "placement": {"sender_cpu": common.cpus.0, "peer_cpu": common.cpus.1},
            "flows": args.flows.parameters(),
            "tcp_in_flight": "one send per stream",
            "udp_uring_in_flight": args.inflight.min(args.pool),
            "notif_timeout_s": NOTIF_TIMEOUT.as_secs(),
            "sysctl": send::sysctls(),
            "netns": net_paths::netns_parameters(),
        });
        if args.net.peer.is_some() && zclab::net::peers::FaultSpec::from_env()?.is_some() {
            return Err(harness::usage(peers::fault_with_peer("receiver")));
        }
        let ctx = NetSend {
            paths,
            net: None,
            net_reason: None,
            ksoftirqd: (
                netns::ksoftirqd_schedstat(common.cpus.0),
                netns::ksoftirqd_schedstat(common.cpus.1),
            ),
            args,
        };
        Ok(Plan::new(ctx, points, parameters))
    }

    fn peer_addr(&self) -> Option<&PeerAddr> {
        self.args.net.peer.as_ref()
    }

    /// The lab's namespaces, when a veth path runs (under --peer the local-only paths are
    /// skipped: none needed).
    fn prepare(&mut self, env: &Env) -> Result<()> {
        if self.args.net.peer.is_some() || !self.paths.iter().any(|p| p.needs_netns()) {
            return Ok(());
        }
        (self.net, self.net_reason) =
            net_paths::veth_or_reason(names::NAME, env.caps, self.args.veth_mtu, false)?;
        Ok(())
    }

    /// With --flows, each flow's rate and the fairness per row: `flows.md`. For udp-sink (and
    /// remote-udp), the message size from which each zero-copy variant's sender CPU per byte
    /// stays below classic-send's: `crossover.json` (`crossover-remote-udp.json`).
    fn analyse(&self, rows: &[Row], common: &CommonArgs) -> Result<Vec<Analysis>> {
        let mut out: Vec<Analysis> = Analysis::flows(rows).into_iter().collect();
        for c in netsend_crossover::crossovers(rows, &self.paths, common.repeat.min) {
            match c.json {
                Some(json) => out.push(Analysis {
                    file: c.file.into(),
                    json,
                    text: c.text,
                }),
                None if !common.quiet => print!("{}", c.text),
                None => {}
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        net_paths::remove_veth_lab(self.net.as_mut())
    }

    fn list_notes(caps: &Caps) -> Vec<String> {
        net_paths::path_notes(netns::unavailable_reason(caps))
    }
}

fn main() -> ExitCode {
    harness::run::<NetSend>()
}

/// Keeps the first of each value, in order.
fn dedup<T: PartialEq + Copy>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

impl NetSend {
    /// ksoftirqd's CPU time so far on the sender's and the peer's CPU.
    fn ksoftirqd_ns(&self) -> (Option<u64>, Option<u64>) {
        (
            netns::schedstat_ns(self.ksoftirqd.0.as_deref()),
            netns::schedstat_ns(self.ksoftirqd.1.as_deref()),
        )
    }
}

/// [`run`], with a failed trial's error saying so when the --peer host went away.
fn run_explained(ctx: &mut NetSend, t: &mut Trial, kind: SendKind) -> Result<()> {
    let r = run(ctx, t, kind);
    match (t.remote, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

/// One trial: connect on the point's path, send `msgs` stamped messages with `kind` (the
/// measured part ends when the receiver has everything), check what arrived, record.
fn run(ctx: &mut NetSend, t: &mut Trial, kind: SendKind) -> Result<()> {
    let path = NetPath::from_name(t.point.str("path"))?;
    let size = t.point.num("size") as usize;
    let reap = t.point.num("reap");
    let a = &ctx.args;
    if kind != SendKind::MsgZerocopy && reap != a.reap_every[0] {
        return Err(harness::skip_point(format!(
            "reap (MSG_ZEROCOPY error-queue reads) does not apply; measured at reap={}",
            a.reap_every[0]
        )));
    }
    if t.remote.is_some() && !path.is_remote() {
        return Err(harness::skip_point(format!(
            "{} builds both ends on this host; with --peer the paths are remote-tcp and remote-udp",
            path.name()
        )));
    }
    if path.needs_netns() && ctx.net.is_none() {
        return Err(harness::skip_point(ctx.net_reason.clone().unwrap_or_else(
            || "the lab's network namespaces are not available".into(),
        )));
    }
    let msgs = a.bytes.div_ceil(size as u64).min(a.max_messages).max(1);
    let pool = a.pool as usize;
    let inflight = (a.inflight as usize).min(pool);
    let job = SendJob {
        size,
        msgs,
        pool,
        inflight,
        reap,
    };
    // A sweep's one-flow point is the single-flow trial (udp-sink included).
    if ctx.args.flows.many() && (t.point.num("flows") > 1 || t.point.num("threads") > 1) {
        return run_flows(ctx, t, kind, path, job);
    }
    let recv_buf = size.max(256 << 10);
    let net = ctx.net.as_ref();
    let mut conn = send::connect(
        path,
        net,
        t.remote,
        t.cpus.1,
        recv_buf,
        a.sink,
        t.fault_after(),
    )?;
    let zerocopy = kind == SendKind::MsgZerocopy;
    let sndbuf = send::configure(&conn, a.nodelay, zerocopy, a.sndbuf)?;
    let sink0 = match (net, path) {
        (Some(n), NetPath::UdpSink) => Some((n, n.sink_counters()?)),
        _ => None,
    };
    let ks0 = ctx.ksoftirqd_ns();
    let mut sender = match kind {
        SendKind::Classic => Sender::classic(job, t.cancel()),
        SendKind::MsgZerocopy => Sender::msg_zerocopy(job, t.clock, t.cancel())?,
        SendKind::Uring(op) => {
            let report = t.caps.io_uring.send_zc_report_usage == Some(true);
            Sender::uring(job, op, report, t.clock, t.cancel()).map_err(harness::ring_err)?
        }
    };
    if let Some(flags) = sender.ring_flags() {
        t.set_ring(flags);
    }
    let mut received = None;
    t.measure(kind.step(conn.is_datagram()), |rec| {
        received = sender.send(&mut conn, rec)?;
        Ok(Done {
            bytes: job.bytes(),
            ops: msgs,
        })
    })?;
    let zc = sender.zero_copy()?;
    let ks1 = ctx.ksoftirqd_ns();
    let got = send::verify(&mut conn, received, &job, zc.as_ref().map(|z| &z.0), sink0)?;
    match got.peer {
        Some(PeerUsage::Local(u)) => t.set_peer(u),
        Some(PeerUsage::Remote(u)) => t.set_remote_peer(u),
        None => {}
    }
    t.set_integrity(got.integrity);
    for (k, v) in got.extras {
        t.set_extra(k, v);
    }
    if let Some((counts, release)) = zc {
        t.set_extra("enobufs_retries", counts.enobufs_retries as f64);
        t.set_zc(counts, Some(release));
    }
    job_extras(ctx, t, kind, path, &job, sndbuf, (ks0, ks1));
    Ok(())
}

/// The figures every row of a trial carries: the job, the socket options in force, and
/// ksoftirqd's CPU time on both CPUs (`ks`: before and after).
type Ksoft = (Option<u64>, Option<u64>);
fn job_extras(
    ctx: &NetSend,
    t: &mut Trial,
    kind: SendKind,
    path: NetPath,
    job: &SendJob,
    sndbuf: usize,
    (ks0, ks1): (Ksoft, Ksoft),
) {
    let a = &ctx.args;
    if path == NetPath::UdpSink {
        t.set_extra("veth_mtu", a.veth_mtu as f64);
        let frames = netns::udp_frames(job.size as u64, a.veth_mtu as u64).0;
        t.set_extra("frames_per_datagram", frames as f64);
    }
    t.set_extra("message_bytes", job.size as f64);
    t.set_extra("messages", job.msgs as f64);
    t.set_extra("pool_buffers", job.pool as f64);
    t.set_extra("pool_bytes", (job.pool * job.size) as f64);
    if let (SendKind::Uring(_), true) = (kind, path.is_datagram()) {
        t.set_extra("inflight", job.inflight as f64);
    }
    t.set_extra("so_sndbuf", sndbuf as f64);
    if !path.is_datagram() {
        t.set_flag("tcp_nodelay", a.nodelay);
    }
    if kind == SendKind::MsgZerocopy {
        t.set_extra("reap_every", job.reap as f64);
    }
    if let (Some(a), Some(b)) = (ks0.0, ks1.0) {
        t.set_extra("ksoftirqd_sender_cpu_ns", b.saturating_sub(a) as f64);
    }
    if let (Some(a), Some(b), false) = (ks0.1, ks1.1, path.is_remote()) {
        // A remote peer's CPU is on the other host: its ksoftirqd time is peer_ksoftirqd_ns.
        t.set_extra("ksoftirqd_peer_cpu_ns", b.saturating_sub(a) as f64);
    }
}

/// One trial of `--flows N --threads T` on a TCP path: N connections, each to its own
/// receiver (flow i's pinned to the i-th of --peer-cpus), sent over by T threads (thread j on
/// the j-th of --flow-cpus; thread 0 is the harness's measured thread). The row is the
/// aggregate; each flow's rate, their spread and Jain's fairness index are extras, and a flow
/// whose receiver failed fails the row's integrity, naming it, while the others are recorded.
fn run_flows(
    ctx: &mut NetSend,
    t: &mut Trial,
    kind: SendKind,
    path: NetPath,
    job: SendJob,
) -> Result<()> {
    let n = t.point.num("flows") as usize;
    let threads = t.point.num("threads") as usize;
    if path.is_datagram() {
        return Err(harness::skip_point(
            "--flows runs on the TCP paths: udp-sink's integrity is its device counters, one sum for all flows",
        ));
    }
    let a = &ctx.args;
    let recv_buf = job.size.max(256 << 10);
    // Connections (and their receivers) are made here; each thread makes its flows' senders,
    // because a ring with SINGLE_ISSUER takes submissions only from the thread that made it.
    let mut groups: Vec<Vec<(usize, Conn)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut sndbuf = 0;
    for i in 0..n {
        let peer_cpu = a.flows.peer_cpu(i, t.cpus.1);
        // A fault (ZCLAB_FAULT) hits flow 0's receiver only: the others must go on.
        let fault = if i == 0 { t.fault_after() } else { None };
        let conn = send::connect(
            path,
            ctx.net.as_ref(),
            t.remote,
            peer_cpu,
            recv_buf,
            a.sink,
            fault,
        )?;
        sndbuf = send::configure(&conn, a.nodelay, kind == SendKind::MsgZerocopy, a.sndbuf)?;
        groups[i % threads].push((i, conn));
    }
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let (cancel, clock) = (t.cancel(), t.clock);
    let make = move |g: Vec<(usize, Conn)>| -> Result<Vec<(usize, Flow)>> {
        g.into_iter()
            .map(|(i, conn)| {
                let sender = match kind {
                    SendKind::Classic => Sender::classic(job, cancel),
                    SendKind::MsgZerocopy => Sender::msg_zerocopy(job, clock, cancel)?,
                    SendKind::Uring(op) => {
                        Sender::uring(job, op, report, clock, cancel).map_err(harness::ring_err)?
                    }
                };
                Ok((i, Flow { conn, sender }))
            })
            .collect()
    };
    let cpus: Vec<usize> = (0..threads)
        .map(|j| a.flows.thread_cpu(j, t.cpus.0))
        .collect();
    let ks0 = ctx.ksoftirqd_ns();
    let step = kind.step(false);
    let fl = flows::measure_threads(t, step, groups, &cpus, make, job.msgs, job.size as u64)?;
    let ks1 = ctx.ksoftirqd_ns();
    let mut tally = flows::Tally::default();
    // With --peer the receivers ran on the peer host: their CPU is recorded beside.
    let (mut remote, mut peer_extras) = (Vec::new(), std::collections::BTreeMap::new());
    let (mut zc, mut release) = (None::<zclab::results::ZcCounts>, None);
    for (i, (mut f, end)) in fl.into_iter().enumerate() {
        let bytes = end.sent * job.size as u64;
        let got = match end.got {
            Ok(got) => got,
            Err(e) => {
                tally.flow(i, bytes, end.ns, Err(format!("{e:#}")));
                continue;
            }
        };
        let z = f.sender.zero_copy()?;
        let d = send::verify(&mut f.conn, got, &job, z.as_ref().map(|z| &z.0), None)?;
        match d.peer {
            Some(PeerUsage::Local(u)) => tally.receiver(u),
            Some(PeerUsage::Remote(u)) => {
                remote.push(u);
                flows::add_peer_extras(&mut peer_extras, &d.extras);
            }
            None => {}
        }
        tally.flow(i, bytes, end.ns, Ok(d.integrity));
        if let Some((c, h)) = z {
            zc = Some(zc.map_or(c, |z| z.merged(&c)));
            release
                .get_or_insert_with(zclab::measure::recorder::new_histogram)
                .add(&h)?;
        }
    }
    if remote.is_empty() {
        t.set_peer(tally.receivers());
    } else {
        t.set_remote_peer(flows::total_usage(remote));
        for (k, v) in peer_extras {
            t.set_extra(k, v);
        }
    }
    let got_bytes = t.metrics().map_or(0, |m| m.bytes);
    t.set_integrity(tally.integrity(job.bytes() * n as u64, got_bytes));
    if let Some(c) = zc {
        t.set_extra("enobufs_retries", c.enobufs_retries as f64);
        t.set_zc(c, release);
    }
    for (k, v) in tally.figures(threads) {
        t.set_extra(&k, v);
    }
    job_extras(ctx, t, kind, path, &job, sndbuf, (ks0, ks1));
    Ok(())
}
