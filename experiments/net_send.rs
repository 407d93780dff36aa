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
//! **Minimum kernel.** MSG_ZEROCOPY: TCP 4.14, UDP 5.0; IORING_OP_SEND 5.6; SEND_ZC 6.0;
//! SENDMSG_ZC 6.1; usage reporting (needed to say whether the kernel copied) 6.2.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use io_uring::opcode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::measure::Recorder;
use zclab::net::netns::{SinkCounters, TcpLink, VethLab};
use zclab::net::remote::{self, Peer, PeerAddr};
use zclab::net::{Conn, Got, Sink};
use zclab::results::{self, Integrity, Row, Status};
use zclab::ring::{Ring, RingConfig};
use zclab::sys::errqueue;
use zclab::sys::file::fill_pattern;
use zclab::units;
use zclab::uring::Fd;
use zclab::uring::pipeline::{SendOp, SendPipeline};
use zclab::zc::msg::ZcPool;

const NAME: &str = "net_send";

/// Largest UDP payload in one IPv4 datagram: 65535 - 20 (IP) - 8 (UDP).
const MAX_UDP_PAYLOAD: u64 = 65507;
/// Ethernet and IPv4 header bytes per frame, and the UDP header, as the sink device counts them.
const ETH_IP_HEADERS: u64 = 14 + 20;
const UDP_HEADER: u64 = 8;

/// Frames and bytes the sink device receives for one datagram of `payload` bytes over a link
/// of `mtu`: one frame when it fits, else IPv4 fragments of (mtu - 20) rounded down to 8.
fn udp_frames(payload: u64, mtu: u64) -> (u64, u64) {
    let l4 = payload + UDP_HEADER;
    let frames = if l4 + 20 <= mtu {
        1
    } else {
        l4.div_ceil(((mtu - 20) / 8 * 8).max(8)) // fragments carry multiples of 8 bytes
    };
    (frames, l4 + frames * ETH_IP_HEADERS)
}
/// How long the last notification may take after the last send.
const NOTIF_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum PathKind {
    /// TCP over 127.0.0.1 to a receiver thread.
    TcpLoopback,
    /// TCP from namespace A over a veth pair to a receiver thread in namespace B.
    TcpVeth,
    /// UDP from namespace A over a veth pair to a device in namespace S that drops it at IP.
    UdpSink,
    /// TCP to a receiver in `zclab serve` on the --peer host.
    RemoteTcp,
    /// UDP to a counting receiver in `zclab serve` on the --peer host.
    RemoteUdp,
}

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::TcpLoopback => "tcp-loopback",
            PathKind::TcpVeth => "tcp-veth",
            PathKind::UdpSink => "udp-sink",
            PathKind::RemoteTcp => "remote-tcp",
            PathKind::RemoteUdp => "remote-udp",
        }
    }
    fn from_name(s: &str) -> Result<PathKind> {
        Ok(match s {
            "tcp-loopback" => PathKind::TcpLoopback,
            "tcp-veth" => PathKind::TcpVeth,
            "udp-sink" => PathKind::UdpSink,
            "remote-tcp" => PathKind::RemoteTcp,
            "remote-udp" => PathKind::RemoteUdp,
            _ => bail!("unknown path '{s}'"),
        })
    }
    fn needs_netns(self) -> bool {
        matches!(self, PathKind::TcpVeth | PathKind::UdpSink)
    }
    fn remote(self) -> bool {
        matches!(self, PathKind::RemoteTcp | PathKind::RemoteUdp)
    }
    fn udp(self) -> bool {
        matches!(self, PathKind::UdpSink | PathKind::RemoteUdp)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = NAME,
    about = "Zero-copy sends that tell the truth: MSG_ZEROCOPY and io_uring SEND_ZC against plain sends, over loopback, veth and a UDP sink"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Paths to measure, comma-separated: tcp-loopback, tcp-veth, udp-sink (the veth paths
    /// need root), remote-tcp, remote-udp (need --peer). Default: the first three, or the
    /// remote two with --peer.
    #[arg(long, value_enum, value_delimiter = ',')]
    paths: Vec<PathKind>,
    /// Run the receiving side on another host, in `zclab serve` there (HOST[:PORT], default
    /// port 7878); the sending side, measured, stays here.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<PeerAddr>,
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
    /// MTU of the lab's veth pairs (65535 lets a 65507-byte UDP payload through whole).
    #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    veth_mtu: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Classic,
    MsgZerocopy,
    Uring(SendOp),
}

struct Ctx {
    args: Args,
    /// The lab's namespaces, when the veth paths can run.
    net: Option<VethLab>,
    /// Why the veth paths cannot run here.
    net_reason: Option<String>,
    /// /proc/<pid>/schedstat of ksoftirqd on the sender's and the peer's CPU: softirq work
    /// deferred there is not in the process's CPU time, so it is recorded beside it.
    ksoftirqd: (Option<PathBuf>, Option<PathBuf>),
    /// `zclab serve` on the --peer host.
    peer: Option<Peer>,
    /// The paths measured (--paths, or the default for the run).
    paths: Vec<PathKind>,
}

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-send",
        about: "send(2) from a user buffer: the kernel copies it into socket buffers",
        needs: &[],
        run: classic_send,
    },
    Variant {
        name: "classic-send-msg-zerocopy",
        about: "send(2) with MSG_ZEROCOPY on an SO_ZEROCOPY socket; completions read with recvmsg(MSG_ERRQUEUE)",
        needs: &[Need::SoZerocopy],
        run: classic_msg_zerocopy,
    },
    Variant {
        name: "uring-send",
        about: "IORING_OP_SEND (the kernel copies)",
        needs: &[Need::Op(opcode::Send::CODE)],
        run: uring_send,
    },
    Variant {
        name: "uring-send-zc",
        about: "IORING_OP_SEND_ZC with IORING_SEND_ZC_REPORT_USAGE; the kernel pins the buffer's pages per send",
        needs: &[Need::Op(opcode::SendZc::CODE), Need::SendZcReportUsage],
        run: uring_send_zc,
    },
    Variant {
        name: "uring-send-zc-fixed",
        about: "IORING_OP_SEND_ZC from registered buffers (IORING_RECVSEND_FIXED_BUF), usage reported",
        needs: &[Need::Op(opcode::SendZc::CODE), Need::SendZcReportUsage],
        run: uring_send_zc_fixed,
    },
    Variant {
        name: "uring-sendmsg-zc",
        about: "IORING_OP_SENDMSG_ZC with one iovec on the connected socket, usage reported",
        needs: &[Need::Op(opcode::SendMsgZc::CODE), Need::SendZcReportUsage],
        run: uring_sendmsg_zc,
    },
];

/// Prints a clap error as one line (help and version as clap prints them) and gives the exit
/// code: 2 for bad usage.
fn usage_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "{NAME}: error: {}",
        line.strip_prefix("error: ").unwrap_or(&line)
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    harness::main(NAME, || {
        let args = match Args::try_parse() {
            Ok(a) => a,
            Err(e) => return Ok(usage_exit(e)),
        };
        if args.common.list {
            let caps = zclab::caps::probe(Path::new("."));
            print!("{}", harness::list_variants(NAME, VARIANTS, &caps));
            println!(
                "  paths: tcp-loopback; tcp-veth and udp-sink {}",
                if caps.net.netns {
                    "(network namespaces available here)".to_string()
                } else {
                    format!("skipped here: {}", netns_reason(&caps))
                }
            );
            println!(
                "  paths: remote-tcp and remote-udp with --peer HOST[:PORT] (`zclab serve` on that host)"
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(bad) = args
            .common
            .variants
            .iter()
            .find(|v| !VARIANTS.iter().any(|x| x.name == v.as_str()))
        {
            let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
            eprintln!(
                "{NAME}: error: unknown variant '{bad}' (known: {})",
                names.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
        if let Some(&s) = args.sizes.iter().find(|&&s| s > 64 << 20) {
            eprintln!(
                "{NAME}: error: message size {} is over the 64 MiB this experiment allows",
                units::fmt_size(s)
            );
            return Ok(ExitCode::from(2));
        }
        let max = args.sizes.iter().max().copied().unwrap_or(0);
        if max.saturating_mul(args.pool as u64) > 1 << 30 {
            eprintln!(
                "{NAME}: error: --pool {} x {} is over 1 GiB of send buffers",
                args.pool,
                units::fmt_size(max)
            );
            return Ok(ExitCode::from(2));
        }
        let given = if !args.paths.is_empty() {
            args.paths.clone()
        } else if args.peer.is_some() {
            vec![PathKind::RemoteTcp, PathKind::RemoteUdp]
        } else {
            vec![PathKind::TcpLoopback, PathKind::TcpVeth, PathKind::UdpSink]
        };
        if args.peer.is_none() {
            if let Some(p) = given.iter().find(|p| p.remote()) {
                eprintln!(
                    "{NAME}: error: path {} needs --peer HOST[:PORT] (a host running `zclab serve`)",
                    p.name()
                );
                return Ok(ExitCode::from(2));
            }
        }
        let mut paths: Vec<PathKind> = Vec::new();
        for p in &given {
            if !paths.contains(p) {
                paths.push(*p);
            }
        }
        let mut reaps: Vec<u64> = Vec::new();
        for r in &args.reap_every {
            if !reaps.contains(r) {
                reaps.push(*r);
            }
        }
        let mut points = Vec::new();
        for &p in &paths {
            let mut sizes: Vec<u64> = args
                .sizes
                .iter()
                .map(|&s| if p.udp() { s.min(MAX_UDP_PAYLOAD) } else { s })
                .collect();
            let mut seen = Vec::new();
            sizes.retain(|s| {
                let new = !seen.contains(s);
                seen.push(*s);
                new
            });
            for s in sizes {
                for &r in &reaps {
                    points.push(
                        Point::new()
                            .text("path", p.name())
                            .size("size", s)
                            .int("reap", r),
                    );
                }
            }
        }
        let params = json!({
            "paths": paths, "sizes": args.sizes, "bytes_per_trial": args.bytes, "pool": args.pool,
            "nodelay": args.nodelay, "sndbuf": args.sndbuf, "max_messages_per_trial": args.max_messages, "inflight": args.inflight, "reap_every": args.reap_every, "veth_mtu": args.veth_mtu,
            "udp_payload_cap": MAX_UDP_PAYLOAD,
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "sink": args.sink,
            "remote": args.peer.as_ref().map(|_| json!({
                "remote_tcp": "TCP to a receiver thread in `zclab serve` on the peer host, pinned to the peer CPU there; it hashes (xxh3-64) or only counts",
                "remote_udp": "connected UDP to a receiver thread in `zclab serve` on the peer host that counts datagrams and bytes and sums their xxh3-64",
                "data_sockets": format!("TCP_USER_TIMEOUT {} s", remote::DATA_USER_TIMEOUT.as_secs()),
                "peer_cpu_time": "measured in the receiver's thread on the peer host (getrusage RUSAGE_THREAD), recorded as peer_user_ns/peer_sys_ns; not subtracted here",
            })),
            "placement": {"sender_cpu": args.common.cpus.0, "peer_cpu": args.common.cpus.1},
            "tcp_in_flight": "one send per stream",
            "udp_uring_in_flight": args.inflight.min(args.pool),
            "notif_timeout_s": NOTIF_TIMEOUT.as_secs(),
            "sysctl": sysctls(),
            "netns": {
                "namespaces": format!("zcsend-{}-a (sender), -b (TCP receiver), -s (sink)", std::process::id()),
                "tcp_veth": "10.200.0.1 in A -> 10.200.0.2 in B",
                "udp_sink": "10.201.0.1 in A -> 10.201.0.2, assigned nowhere: permanent neighbour entry in A to the MAC of S's veth end; S has no address and ip_forward 0; IPv6 disabled in all three",
                "created_with": "iproute2 `ip` (see probe.net.ip_binary)",
            },
        });
        if args.peer.is_some() && zclab::net::peers::FaultSpec::from_env()?.is_some() {
            eprintln!(
                "{NAME}: error: {} injects a fault into a local receiver; with --peer the receiver runs on the peer host",
                zclab::net::peers::FAULT_ENV
            );
            return Ok(ExitCode::from(2));
        }
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
            paths: paths.clone(),
            net: None,
            net_reason: None,
            ksoftirqd: (
                ksoftirqd_stat(args.common.cpus.0),
                ksoftirqd_stat(args.common.cpus.1),
            ),
            args,
        };
        // Under --peer the local-only paths are skipped: no namespaces needed.
        let wants_net = ctx.peer.is_none() && paths.iter().any(|p| p.needs_netns());
        if wants_net {
            if !lab.caps.net.netns {
                ctx.net_reason = Some(netns_reason(&lab.caps));
            } else {
                let ip = PathBuf::from(lab.caps.net.ip_binary.clone().unwrap_or_default());
                for n in zclab::net::netns::remove_stale(&ip) {
                    eprintln!(
                        "{NAME}: removed namespace {n} left by a process that no longer exists"
                    );
                }
                let net = VethLab::create(&ip, ctx.args.veth_mtu)
                    .context("cannot create the lab's network namespaces")?;
                ctx.net = Some(net);
            }
        }
        let code = lab.run(VARIANTS, &points, &mut ctx)?;
        if let Some(p) = &ctx.peer {
            p.bye();
        }
        let cleanup = ctx.net.as_mut().map(VethLab::cleanup);
        if harness::interrupted().is_none() {
            crossover(&lab, &ctx)?;
        }
        if let Some(Err(e)) = cleanup {
            return Err(anyhow!("network namespace clean-up incomplete: {e}"));
        }
        Ok(code)
    })
}

fn netns_reason(caps: &zclab::caps::Caps) -> String {
    if caps.net.ip_binary.is_none() {
        "needs iproute2's `ip` binary (not found) for network namespaces and veth pairs".into()
    } else {
        "needs root (CAP_SYS_ADMIN) for network namespaces and veth pairs".into()
    }
}

/// Sysctls that shape these paths, recorded with the run.
fn sysctls() -> Value {
    let mut m = serde_json::Map::new();
    for k in [
        "net/core/optmem_max",
        "net/core/wmem_default",
        "net/core/wmem_max",
        "net/ipv4/tcp_wmem",
        "net/ipv4/tcp_rmem",
        "net/ipv4/tcp_autocorking",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/{k}"))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        m.insert(k.replace('/', "."), json!(v));
    }
    Value::Object(m)
}

/// /proc/<pid>/schedstat of the `ksoftirqd/<cpu>` kernel thread.
fn ksoftirqd_stat(cpu: usize) -> Option<PathBuf> {
    let want = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).ok()?;
        (comm.trim() == want).then(|| p.join("schedstat"))
    })
}

fn schedstat_ns(p: &Option<PathBuf>) -> Option<u64> {
    std::fs::read_to_string(p.as_ref()?)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn classic_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::Classic)
}
fn classic_msg_zerocopy(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::MsgZerocopy)
}
fn uring_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::Uring(SendOp::Send))
}
fn uring_send_zc(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::Uring(SendOp::SendZc))
}
fn uring_send_zc_fixed(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::Uring(SendOp::SendZcFixed))
}
fn uring_sendmsg_zc(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    run_explained(ctx, t, Kind::Uring(SendOp::SendMsgZc))
}

/// [`run`], with a failed trial's error saying so when the --peer host went away.
fn run_explained(ctx: &mut Ctx, t: &mut Trial, kind: Kind) -> Result<()> {
    let r = run(ctx, t, kind);
    match (&ctx.peer, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

/// Writes message `seq`'s stamp: the sequence number in the first 8 bytes and its complement
/// in the last 8 (fewer for tiny messages). The rest of every buffer holds the base pattern.
#[inline(always)]
fn stamp(buf: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    let k = buf.len().min(8);
    buf[..k].copy_from_slice(&b[..k]);
    let l = buf.len();
    if l >= 16 {
        buf[l - 8..].copy_from_slice(&(!seq).to_le_bytes());
    }
}

/// Wrapping sum of the xxh3-64 of each of `n` stamped datagrams of `size` bytes: what the
/// remote UDP receiver computes, whatever order they arrive in.
fn expected_digest(size: usize, n: u64) -> u64 {
    let mut m = vec![0u8; size];
    fill_pattern(&mut m, 0);
    let mut d = 0u64;
    for seq in 0..n {
        stamp(&mut m, seq);
        d = d.wrapping_add(xxhash_rust::xxh3::xxh3_64(&m));
    }
    d
}

/// xxh3-64 of the stream of `n` stamped messages of `size` bytes.
fn expected_hash(size: usize, n: u64) -> u64 {
    let mut m = vec![0u8; size];
    fill_pattern(&mut m, 0);
    let mut h = Xxh3::new();
    for seq in 0..n {
        stamp(&mut m, seq);
        h.update(&m);
    }
    h.digest()
}

/// Turns EINTR into an error when the run was interrupted, or a retry otherwise.
fn intr(e: std::io::Error) -> Result<()> {
    if e.kind() == std::io::ErrorKind::Interrupted {
        if let Some(sig) = harness::interrupted() {
            bail!("interrupted by signal {sig}");
        }
        return Ok(());
    }
    Err(e.into())
}

/// What one trial sends: `msgs` messages of `size` bytes from `pool` buffers; `inflight`
/// io_uring sends at once on a datagram socket; the error queue read every `reap` sends.
#[derive(Clone, Copy)]
struct Job<'a> {
    size: usize,
    msgs: u64,
    pool: usize,
    inflight: usize,
    reap: u64,
    step: &'a str,
}

/// What the measured part hands back for the integrity check.
struct Sent {
    zc: Option<(zclab::results::ZcCounts, hdrhistogram::Histogram<u64>)>,
    received: Option<Got>,
}

fn run(ctx: &mut Ctx, t: &mut Trial, kind: Kind) -> Result<()> {
    let path = PathKind::from_name(t.point.str("path"))?;
    let size = t.point.num("size") as usize;
    let reap = t.point.num("reap");
    if kind != Kind::MsgZerocopy && reap != ctx.args.reap_every[0] {
        return Err(harness::skip_point(format!(
            "reap (MSG_ZEROCOPY error-queue reads) does not apply; measured at reap={}",
            ctx.args.reap_every[0]
        )));
    }
    if ctx.peer.is_some() && !path.remote() {
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
    let msgs = ctx
        .args
        .bytes
        .div_ceil(size as u64)
        .min(ctx.args.max_messages)
        .max(1);
    let total = msgs * size as u64;
    let pool = ctx.args.pool as usize;
    let peer_cpu = t.cpus.1;
    let mut conn = match path {
        PathKind::TcpLoopback => Conn::Tcp(TcpLink::loopback(
            peer_cpu,
            size.max(256 << 10),
            ctx.args.sink,
            t.fault_after(),
        )?),
        PathKind::TcpVeth => Conn::Tcp(TcpLink::veth(
            ctx.net.as_ref().expect("checked above"),
            peer_cpu,
            size.max(256 << 10),
            ctx.args.sink,
            t.fault_after(),
        )?),
        PathKind::UdpSink => Conn::Udp(ctx.net.as_ref().expect("checked").sink_socket()?),
        PathKind::RemoteTcp => Conn::Remote(
            ctx.peer
                .as_ref()
                .expect("remote paths run with --peer")
                .tcp_sink(
                    Some(peer_cpu as u32),
                    size.max(256 << 10) as u64,
                    ctx.args.sink == Sink::Hash,
                )?,
        ),
        PathKind::RemoteUdp => Conn::RemoteUdp(
            ctx.peer
                .as_ref()
                .expect("remote paths run with --peer")
                .udp_sink(Some(peer_cpu as u32))?,
        ),
    };
    match &conn {
        Conn::Tcp(l) => l.sender.set_nodelay(ctx.args.nodelay)?,
        Conn::Remote(r) => r.stream.set_nodelay(ctx.args.nodelay)?,
        _ => {}
    }
    if kind == Kind::MsgZerocopy {
        errqueue::enable_zerocopy(conn.fd()).context("setsockopt(SO_ZEROCOPY)")?;
    }
    if let Some(n) = ctx.args.sndbuf {
        nix::sys::socket::setsockopt(
            &conn.fd(),
            nix::sys::socket::sockopt::SndBuf,
            &(n.min(i32::MAX as u64) as usize),
        )
        .context("setsockopt(SO_SNDBUF)")?;
    }
    let sndbuf = nix::sys::socket::getsockopt(&conn.fd(), nix::sys::socket::sockopt::SndBuf)
        .map_err(std::io::Error::from)?;
    let udp = path.udp();
    let sink0 = match (&ctx.net, path) {
        (Some(n), PathKind::UdpSink) => Some(n.sink_counters()?),
        _ => None,
    };
    let ks0 = (
        schedstat_ns(&ctx.ksoftirqd.0),
        schedstat_ns(&ctx.ksoftirqd.1),
    );
    let step = match (kind, udp) {
        (Kind::Uring(_), true) => {
            "one datagram: SQE pushed to its result CQE reaped (up to --inflight in flight)"
        }
        (Kind::Uring(_), false) => {
            "one message: SQE pushed to its result CQE (short sends resubmitted), one in flight"
        }
        (_, true) => "one datagram: send(2) call",
        (_, false) => "one message: send(2) calls until the kernel accepted all of it",
    };
    let job = Job {
        size,
        msgs,
        pool,
        inflight: 1,
        reap,
        step,
    };
    let sent = match kind {
        Kind::Classic => send_classic(t, &mut conn, &job)?,
        Kind::MsgZerocopy => send_msg_zerocopy(t, &mut conn, &job)?,
        Kind::Uring(op) => {
            let inflight = (ctx.args.inflight as usize).min(pool);
            send_uring(t, &mut conn, op, &Job { inflight, ..job })?
        }
    };
    let ks1 = (
        schedstat_ns(&ctx.ksoftirqd.0),
        schedstat_ns(&ctx.ksoftirqd.1),
    );
    match &sent.received {
        Some(Got::Local(r)) => t.set_peer(r.usage),
        Some(Got::Remote(r)) => {
            t.set_remote_peer(r.usage);
            for (k, v) in r.peer_extras() {
                t.set_extra(k, v);
            }
        }
        None => {}
    }
    // Integrity.
    match (&mut conn, sent.received) {
        (Conn::Remote(_), Some(Got::Remote(r))) => {
            let want = expected_hash(size, msgs);
            let (ok, method, expected, got) = match r.hash.as_deref() {
                Some(h) => (
                    r.bytes == total && remote::parse_hex64(h) == Some(want),
                    "xxh3-64 of the stream received on the peer host (messages stamped with their sequence number)",
                    format!("{want:016x}"),
                    h.to_string(),
                ),
                None => (
                    r.bytes == total,
                    "byte count only (--sink discard: the peer host did not hash)",
                    format!("{total} bytes"),
                    format!("{} bytes", r.bytes),
                ),
            };
            t.set_integrity(Integrity {
                ok,
                method: method.into(),
                expected,
                got,
                bytes_expected: total,
                bytes_got: r.bytes,
            });
        }
        (Conn::RemoteUdp(u), _) => {
            // After the clock: the receiver counts what arrived once told how much was sent.
            let r = u.finish(msgs).context("the peer's UDP receiver")?;
            let want = expected_digest(size, msgs);
            let (n, d) = (
                r.datagrams.unwrap_or(0),
                r.digest.as_deref().and_then(remote::parse_hex64),
            );
            let zc_ok = sent
                .zc
                .as_ref()
                .is_none_or(|(c, _)| c.ids_completed == c.sends && c.bytes == total);
            t.set_integrity(Integrity {
                ok: n == msgs && r.bytes == total && d == Some(want) && zc_ok,
                method: "every send accepted in full, every notification received, and the peer host received every datagram intact exactly once (count, bytes, and the sum of each datagram's xxh3-64)".into(),
                expected: format!("{msgs} datagrams, {total} bytes, sum {want:016x}"),
                got: format!(
                    "{n} datagrams{}, {} bytes, sum {}{}",
                    if n < msgs { r.lost_note(msgs - n) } else { String::new() },
                    r.bytes,
                    r.digest.as_deref().unwrap_or("none"),
                    if zc_ok { "" } else { ", notifications missing" }
                ),
                bytes_expected: total,
                bytes_got: r.bytes,
            });
            t.set_remote_peer(r.usage);
            for (k, v) in r.peer_extras() {
                t.set_extra(k, v);
            }
            t.set_extra("peer_datagrams", n as f64);
        }
        (Conn::Tcp(_), Some(Got::Local(r))) => {
            t.set_integrity(match r.hash {
                Some(h) => {
                    let want = expected_hash(size, msgs);
                    Integrity {
                        ok: r.bytes == total && h == want,
                        method: "xxh3-64 of the received stream (messages stamped with their \
                                 sequence number)"
                            .into(),
                        expected: format!("{want:016x}"),
                        got: format!("{h:016x}"),
                        bytes_expected: total,
                        bytes_got: r.bytes,
                    }
                }
                None => Integrity {
                    ok: r.bytes == total,
                    method: "byte count only (--sink discard: the receiver dropped the bytes \
                             with MSG_TRUNC)"
                        .into(),
                    expected: format!("{total} bytes"),
                    got: format!("{} bytes", r.bytes),
                    bytes_expected: total,
                    bytes_got: r.bytes,
                },
            });
        }
        (Conn::Udp(_), _) => {
            let net = ctx.net.as_ref().expect("udp-sink has the lab");
            let s1 = net.sink_counters()?;
            let s0: SinkCounters = sink0.expect("read before the trial");
            let pk = s1.rx_packets.wrapping_sub(s0.rx_packets);
            let by = s1.rx_bytes.wrapping_sub(s0.rx_bytes);
            let (frames, frame_bytes) = udp_frames(size as u64, net.mtu as u64);
            let payload = by.saturating_sub(pk * ETH_IP_HEADERS + msgs * UDP_HEADER);
            let zc_ok = sent
                .zc
                .as_ref()
                .is_none_or(|(c, _)| c.ids_completed == c.sends && c.bytes == total);
            t.set_integrity(Integrity {
                ok: pk == msgs * frames && by == msgs * frame_bytes && zc_ok,
                method: format!(
                    "every send accepted in full, every notification received, and {}'s rx counters grew by the frames of the datagrams sent ({frames} frame(s) of <= {} B each)",
                    net.sink_s_if, net.mtu as u64 + 14
                ),
                expected: format!("{} frames, {} bytes", msgs * frames, msgs * frame_bytes),
                got: format!(
                    "{pk} frames, {by} bytes{}",
                    if zc_ok { "" } else { ", notifications missing" }
                ),
                bytes_expected: total,
                bytes_got: payload,
            });
            t.set_extra("sink_rx_packets", pk as f64);
            t.set_extra("sink_rx_bytes", by as f64);
            if let (Some(a), Some(b)) = (s0.in_addr_errors, s1.in_addr_errors) {
                t.set_extra("sink_ip_in_addr_errors", b.wrapping_sub(a) as f64);
            }
        }
        (Conn::Tcp(_) | Conn::Remote(_), _) => bail!("the receiver's account is missing"),
    }
    if let Some((counts, release)) = sent.zc {
        t.set_extra("enobufs_retries", counts.enobufs_retries as f64);
        t.set_zc(counts, Some(release));
    }
    if path == PathKind::UdpSink {
        t.set_extra("veth_mtu", ctx.args.veth_mtu as f64);
        t.set_extra(
            "frames_per_datagram",
            udp_frames(size as u64, ctx.args.veth_mtu as u64).0 as f64,
        );
    }
    t.set_extra("message_bytes", size as f64);
    t.set_extra("messages", msgs as f64);
    t.set_extra("pool_buffers", pool as f64);
    t.set_extra("pool_bytes", (pool * size) as f64);
    if let (Kind::Uring(_), true) = (kind, udp) {
        t.set_extra("inflight", ctx.args.inflight.min(ctx.args.pool) as f64);
    }
    t.set_extra("so_sndbuf", sndbuf as f64);
    if let Conn::Tcp(_) | Conn::Remote(_) = conn {
        t.set_extra("tcp_nodelay", ctx.args.nodelay as u8 as f64);
    }
    if kind == Kind::MsgZerocopy {
        t.set_extra("reap_every", reap as f64);
    }
    if let (Some(a), Some(b)) = (ks0.0, ks1.0) {
        t.set_extra("ksoftirqd_sender_cpu_ns", b.saturating_sub(a) as f64);
    }
    if let (Some(a), Some(b), false) = (ks0.1, ks1.1, path.remote()) {
        // A remote peer's CPU is on the other host: its ksoftirqd time is peer_ksoftirqd_ns.
        t.set_extra("ksoftirqd_peer_cpu_ns", b.saturating_sub(a) as f64);
    }
    Ok(())
}

/// Ends a TCP stream and collects the receiver's account, inside the measured part.
fn finish(conn: &mut Conn) -> Result<Option<Got>> {
    match conn {
        Conn::Tcp(l) => Ok(Some(Got::Local(l.finish().context("receiver failed")?))),
        Conn::Remote(r) => Ok(Some(Got::Remote(Box::new(
            r.finish().context("receiver failed")?,
        )))),
        Conn::Udp(_) | Conn::RemoteUdp(_) => Ok(None),
    }
}

fn send_classic(t: &mut Trial, conn: &mut Conn, job: &Job) -> Result<Sent> {
    let (size, msgs, step) = (job.size, job.msgs, job.step);
    let mut buf = vec![0u8; size];
    fill_pattern(&mut buf, 0);
    let mut received = None;
    t.measure(step, |rec: &mut Recorder| {
        {
            let fd = conn.fd();
            for seq in 0..msgs {
                stamp(&mut buf, seq);
                let t0 = rec.now();
                let mut off = 0;
                while off < size {
                    match errqueue::send(fd, &buf[off..], 0) {
                        Ok(n) => off += n,
                        Err(e) => intr(e)?,
                    }
                }
                rec.record_since(t0);
            }
        }
        received = finish(conn)?;
        Ok(Done {
            bytes: msgs * size as u64,
            ops: msgs,
        })
    })?;
    Ok(Sent { zc: None, received })
}

/// Waits for a notification when only notifications are outstanding: a bounded wait, since
/// a notification the kernel never posts must fail the trial, not hang it.
fn wait_notif(p: &mut SendPipeline) -> Result<()> {
    match p.wait_timeout(NOTIF_TIMEOUT) {
        Ok(true) => Ok(()),
        Ok(false) => bail!(
            "no completion within {NOTIF_TIMEOUT:?} while {} notification(s) were outstanding",
            p.notifs_pending()
        ),
        Err(e) => intr(e),
    }
}

fn send_msg_zerocopy(t: &mut Trial, conn: &mut Conn, job: &Job) -> Result<Sent> {
    let (size, msgs, pool_n, reap, step) = (job.size, job.msgs, job.pool, job.reap, job.step);
    let mut pool = ZcPool::new(pool_n, size, t.clock, t.cancel())?;
    for i in 0..pool_n {
        fill_pattern(pool.buffer_mut(i).expect("a new pool is free"), 0);
    }
    let mut received = None;
    t.measure(step, |rec: &mut Recorder| {
        {
            let fd = conn.fd();
            let mut since_reap = 0u64;
            for seq in 0..msgs {
                let b = loop {
                    if let Some(b) = pool.free_buffer() {
                        break b;
                    }
                    match pool.wait(fd, NOTIF_TIMEOUT) {
                        Ok(0) => bail!(
                            "no MSG_ZEROCOPY completion within {NOTIF_TIMEOUT:?} while all {} buffers were busy",
                            pool.len()
                        ),
                        Ok(_) => {}
                        Err(e) => intr(e)?,
                    }
                };
                stamp(pool.buffer_mut(b).expect("free buffer"), seq);
                let t0 = rec.now();
                let mut off = 0;
                while off < size {
                    match pool.send(fd, b, off, size - off, 0) {
                        Ok(n) => off += n,
                        Err(e) => intr(e)?,
                    }
                }
                rec.record_since(t0);
                since_reap += 1;
                if since_reap >= reap {
                    since_reap = 0;
                    pool.reap(fd)?;
                }
            }
            pool.drain(fd, NOTIF_TIMEOUT)?;
        }
        received = finish(conn)?;
        Ok(Done {
            bytes: msgs * size as u64,
            ops: msgs,
        })
    })?;
    if pool.other_errors > 0 {
        bail!(
            "{} unexpected non-zero-copy message(s) on the error queue",
            pool.other_errors
        );
    }
    let (counts, release) = pool.ledger().report();
    Ok(Sent {
        zc: Some((counts.into(), release)),
        received,
    })
}

fn send_uring(t: &mut Trial, conn: &mut Conn, op: SendOp, job: &Job) -> Result<Sent> {
    let (size, msgs, pool_n, inflight, step) =
        (job.size, job.msgs, job.pool, job.inflight, job.step);
    // Slots for sends not fully completed: up to one per buffer in flight, plus retried short
    // sends on TCP; each send posts at most two CQEs, and the CQ holds twice the SQ entries.
    let max_sends = pool_n * 2 + 2;
    let entries = (max_sends as u32).next_power_of_two().max(8);
    let mut ring = Ring::new(&RingConfig::tuned(entries)).map_err(harness::ring_err)?;
    ring.register_buffers(pool_n, size)
        .map_err(harness::ring_err)?;
    t.set_ring(ring.flags());
    let report = op.zero_copy() && t.caps.io_uring.send_zc_report_usage == Some(true);
    let mut p = SendPipeline::new(ring, op, max_sends, report, t.clock, t.cancel());
    for i in 0..pool_n {
        fill_pattern(p.buffer_mut(i).expect("a new pipeline is free"), 0);
    }
    let udp = conn.is_datagram();
    let sock = Fd::Raw(conn.fd().as_raw_fd());
    let clock = t.clock;
    let mut received = None;
    t.measure(step, |rec: &mut Recorder| {
        if udp {
            // Datagrams: keep every free buffer in flight, reap completions in batches.
            let (mut next, mut done) = (0u64, 0u64);
            let mut bad = None;
            while done < msgs {
                while next < msgs && p.can_push() && p.results_pending() < inflight {
                    let Some(b) = p.free_buffer() else { break };
                    stamp(p.buffer_mut(b).expect("free buffer"), next);
                    p.push(b, 0, size, sock, 0)?;
                    next += 1;
                }
                if p.results_pending() > 0 {
                    if let Err(e) = p.submit_and_wait(1) {
                        intr(e)?;
                    }
                } else {
                    wait_notif(&mut p)?;
                }
                p.reap(|d| {
                    if d.res != d.len as i32 && bad.is_none() {
                        bad = Some((d.res, d.len));
                    }
                    rec.record_ns(clock.ns_between(d.issued, d.reaped));
                    done += 1;
                });
                if let Some((res, len)) = bad {
                    bail!("a {len}-byte datagram send completed with {res}");
                }
            }
        } else {
            // A stream: one send in flight; notifications of earlier sends arrive meanwhile.
            for seq in 0..msgs {
                let b = loop {
                    if let Some(b) = p.free_buffer() {
                        break b;
                    }
                    wait_notif(&mut p)?;
                    p.reap(|_| {});
                };
                stamp(p.buffer_mut(b).expect("free buffer"), seq);
                let t0 = rec.now();
                let mut off = 0;
                while off < size {
                    while !p.can_push() {
                        wait_notif(&mut p)?;
                        p.reap(|_| {});
                    }
                    p.push(b, off, size - off, sock, libc::MSG_WAITALL)?;
                    let mut res = None;
                    while res.is_none() {
                        if let Err(e) = p.submit_and_wait(1) {
                            intr(e)?;
                        }
                        p.reap(|d| res = Some(d.res));
                    }
                    match res.expect("loop ends with a result") {
                        r if r > 0 => off += r as usize,
                        0 => bail!("send returned 0: the receiver closed"),
                        r => {
                            return Err(anyhow::Error::new(std::io::Error::from_raw_os_error(-r))
                                .context("io_uring send"));
                        }
                    }
                }
                rec.record_since(t0);
            }
        }
        p.drain(NOTIF_TIMEOUT, |_| {})?;
        received = finish(conn)?;
        Ok(Done {
            bytes: msgs * size as u64,
            ops: msgs,
        })
    })?;
    let zc = op.zero_copy().then(|| {
        let (counts, release) = p.ledger().report();
        (counts.into(), release)
    });
    Ok(Sent { zc, received })
}

/// Sender CPU of one variant at one size over the repeats: ns per MiB, and median GB/s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    med: f64,
    min: f64,
    max: f64,
    gbps: f64,
}

/// Per-size [`Stat`] of one variant on udp-sink.
type Curve = BTreeMap<u64, Stat>;

fn curve(rows: &[&Row]) -> Curve {
    let mut by: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in rows {
        let (Some(m), Some(s)) = (&r.metrics, r.params.get("size").and_then(Value::as_u64)) else {
            continue;
        };
        let e = by.entry(s).or_default();
        e.0.push(m.cpu_ns_per_mib);
        e.1.push(m.gbps);
    }
    by.into_iter()
        .map(|(s, (c, g))| {
            let min = c.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = c.iter().cloned().fold(0.0, f64::max);
            (
                s,
                Stat {
                    med: harness::median(c),
                    min,
                    max,
                    gbps: harness::median(g),
                },
            )
        })
        .collect()
}

/// Where one zero-copy curve drops below a baseline curve, over the sizes both measured.
#[derive(Debug, Clone, PartialEq)]
struct Cross {
    /// `crosses`, `below-at-every-size` or `never-below`.
    status: &'static str,
    /// The smallest size from which the zero-copy median is below the baseline's at every
    /// larger size too.
    at: Option<u64>,
    /// The sizes bracketing the crossing (last above, first below).
    between: Option<(u64, u64)>,
    /// Where the median ratio crosses 1, interpolated on log-log scale between them.
    interpolated: Option<f64>,
    /// Whether the min-max ranges of the repeats do not overlap at the sizes that decide the
    /// result (the one before the crossing and all after it); otherwise the result is within
    /// the spread of the repeats.
    conclusive: bool,
    pts: Vec<(u64, Stat, Stat)>,
}

fn cross(base: &Curve, zc: &Curve) -> Option<Cross> {
    let pts: Vec<(u64, Stat, Stat)> = zc
        .iter()
        .filter_map(|(s, z)| base.get(s).map(|b| (*s, *z, *b)))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let below: Vec<bool> = pts.iter().map(|(_, z, b)| z.med < b.med).collect();
    let separated = |i: usize| {
        let (_, z, b) = pts[i];
        z.max < b.min || z.min > b.max
    };
    let from = (0..pts.len()).find(|&i| below[i..].iter().all(|&x| x));
    let (status, at, between, interpolated, decide) = match from {
        None => ("never-below", None, None, None, pts.len() - 1),
        Some(0) => ("below-at-every-size", Some(pts[0].0), None, None, 0),
        Some(i) => {
            let (s0, z0, b0) = pts[i - 1];
            let (s1, z1, b1) = pts[i];
            let (r0, r1) = (z0.med / b0.med, z1.med / b1.med);
            let x = (r0 > 0.0 && r1 > 0.0 && r0 != r1).then(|| {
                let f = r0.ln() / (r0.ln() - r1.ln());
                ((s0 as f64).ln() + f * ((s1 as f64).ln() - (s0 as f64).ln())).exp()
            });
            ("crosses", Some(s1), Some((s0, s1)), x, i - 1)
        }
    };
    Some(Cross {
        status,
        at,
        between,
        interpolated,
        conclusive: (decide..pts.len()).all(separated),
        pts,
    })
}

impl Cross {
    fn verdict(&self, base: &str) -> String {
        let c = if self.conclusive {
            ""
        } else {
            " [inconclusive: repeats overlap]"
        };
        match (self.status, self.at, self.between) {
            ("crosses", Some(a), Some((s0, _))) => format!(
                "pays off from {} (between {} and {}{}){c}",
                units::fmt_size(a),
                units::fmt_size(s0),
                units::fmt_size(a),
                self.interpolated.map_or(String::new(), |x| format!(
                    ", ~{:.1} KiB interpolated",
                    x / 1024.0
                ))
            ),
            ("below-at-every-size", Some(a), _) => format!(
                "below {base} at every size measured (from {}){c}",
                units::fmt_size(a)
            ),
            _ => format!("never stays below {base} at the sizes measured{c}"),
        }
    }

    fn json(&self, base: &str) -> Value {
        json!({
            "baseline": base,
            "status": self.status,
            "crossover_bytes": self.at,
            "between_bytes": self.between.map(|(a, b)| [a, b]),
            "interpolated_bytes": self.interpolated,
            "conclusive": self.conclusive,
            "points": self.pts.iter().map(|(s, z, b)| json!({
                "size": s,
                "zc_cpu_ns_per_mib": {"median": z.med, "min": z.min, "max": z.max},
                "baseline_cpu_ns_per_mib": {"median": b.med, "min": b.min, "max": b.max},
                "ratio": z.med / b.med,
                "separated": z.max < b.min || z.min > b.max,
                "zc_gbps_median": z.gbps,
                "baseline_gbps_median": b.gbps,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Finds, for each zero-copy variant on udp-sink, the message size from which its sender CPU
/// per byte stays below classic-send's (and, for io_uring variants, below uring-send's);
/// prints it after the table and writes crossover.json.
fn crossover(lab: &Lab, ctx: &Ctx) -> Result<()> {
    // On udp-sink nothing receives locally; on remote-udp between two real hosts the NIC
    // sends the pages: the two paths where zero copy can happen.
    for (path, file) in [
        (PathKind::UdpSink, "crossover.json"),
        (PathKind::RemoteUdp, "crossover-remote-udp.json"),
    ] {
        if ctx.paths.contains(&path) {
            crossover_on(lab, ctx, path, file)?;
        }
    }
    Ok(())
}

/// [`crossover`] on one path, written to `file`.
fn crossover_on(lab: &Lab, ctx: &Ctx, path: PathKind, file_name: &str) -> Result<()> {
    let pname = path.name();
    let file = lab.dir.join("summary.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let rows = results::row::parse_jsonl(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let sink: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter(|r| r.params.get("path").and_then(Value::as_str) == Some(pname))
        .collect();
    let say = |s: &str| {
        if !ctx.args.common.quiet {
            println!("{s}");
        }
    };
    let of = |v: &str| -> Vec<&Row> { sink.iter().copied().filter(|r| r.variant == v).collect() };
    let zc_variants = [
        "classic-send-msg-zerocopy",
        "uring-send-zc",
        "uring-send-zc-fixed",
        "uring-sendmsg-zc",
    ];
    let base = curve(&of("classic-send"));
    let uring_base = curve(&of("uring-send"));
    if base.is_empty() || zc_variants.iter().all(|v| of(v).is_empty()) {
        say(&format!(
            "crossover: not computed (needs classic-send and a zero-copy variant measured on {pname})"
        ));
        return Ok(());
    }
    let mut out = Vec::new();
    say(&format!(
        "crossover on {pname}: message size from which sender CPU per byte (median of repeats) stays below classic-send's"
    ));
    for v in zc_variants {
        let mut reaps: Vec<Option<u64>> = Vec::new();
        for r in of(v) {
            let reap = (v == "classic-send-msg-zerocopy")
                .then(|| r.params.get("reap").and_then(Value::as_u64))
                .flatten();
            if !reaps.contains(&reap) {
                reaps.push(reap);
            }
        }
        for reap in reaps {
            let rs: Vec<&Row> = of(v)
                .into_iter()
                .filter(|r| reap.is_none() || r.params.get("reap").and_then(Value::as_u64) == reap)
                .collect();
            let zc = curve(&rs);
            let Some(c) = cross(&base, &zc) else { continue };
            let label = match reap {
                Some(r) => format!("{v} (reap={r})"),
                None => v.to_string(),
            };
            let ratios: Vec<String> = c
                .pts
                .iter()
                .map(|(s, z, b)| format!("{} {:.2}", units::fmt_size(*s), z.med / b.med))
                .collect();
            say(&format!(
                "  {label:<38} {}; CPU ratio zc/classic: {}",
                c.verdict("classic-send"),
                ratios.join(" | ")
            ));
            let vs_uring = v
                .starts_with("uring-")
                .then(|| cross(&uring_base, &zc))
                .flatten();
            if let Some(u) = &vs_uring {
                say(&format!(
                    "  {:<38} against uring-send: {}",
                    "",
                    u.verdict("uring-send")
                ));
            }
            let mut j = c.json("classic-send");
            j["variant"] = json!(v);
            j["reap_every"] = json!(reap);
            j["vs_uring_send"] = vs_uring.map_or(Value::Null, |u| u.json("uring-send"));
            out.push(j);
        }
    }
    let doc = json!({
        "experiment": NAME,
        "path": pname,
        "baseline": "classic-send (io_uring variants also against uring-send, in vs_uring_send)",
        "metric": "sender CPU (user + system) ns per MiB, median over repeats; 'separated' when the min-max ranges of the repeats do not overlap",
        "rule": "crossover_bytes: the smallest measured size from which the zero-copy variant's median is below the baseline's at every larger size too; conclusive when the deciding sizes are separated",
        "repeat": lab.args.repeat,
        "variants": out,
    });
    let p = lab.dir.join(file_name);
    results::atomic_write(&p, serde_json::to_string_pretty(&doc)?.as_bytes())
        .map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
    say(&format!("crossover: {}", p.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_counts() {
        assert_eq!(udp_frames(65507, 65535), (1, 65507 + 8 + 34));
        assert_eq!(udp_frames(1472, 1500), (1, 1514));
        // 1473 + 8 = 1481 bytes of UDP over 1480-byte fragments: two frames.
        assert_eq!(udp_frames(1473, 1500), (2, 1481 + 2 * 34));
        assert_eq!(udp_frames(65507, 1500).0, 45);
    }

    #[test]
    fn stamps_differ_per_message() {
        let mut a = vec![0u8; 64];
        stamp(&mut a, 1);
        let mut b = a.clone();
        stamp(&mut b, 2);
        assert_ne!(a, b);
        assert_ne!(expected_hash(64, 2), expected_hash(64, 3));
        let mut tiny = vec![0u8; 3];
        stamp(&mut tiny, 0x0102_0304);
        assert_eq!(tiny, [4, 3, 2]);
    }

    fn stat(med: f64) -> Stat {
        Stat {
            med,
            min: med * 0.95,
            max: med * 1.05,
            gbps: 1.0,
        }
    }

    #[test]
    fn crossover_rule() {
        let base: Curve = [(1024, 100.0), (4096, 100.0), (16384, 100.0), (65536, 100.0)]
            .into_iter()
            .map(|(s, m)| (s, stat(m)))
            .collect();
        let zc = |v: [f64; 4]| -> Curve {
            [1024u64, 4096, 16384, 65536]
                .into_iter()
                .zip(v)
                .map(|(s, m)| (s, stat(m)))
                .collect()
        };
        // Below at 4 KiB by chance, above at 16 KiB, below from 64 KiB on: 64 KiB counts.
        let c = cross(&base, &zc([150.0, 90.0, 120.0, 50.0])).unwrap();
        assert_eq!(
            (c.status, c.at, c.between),
            ("crosses", Some(65536), Some((16384, 65536)))
        );
        let x = c.interpolated.unwrap();
        assert!(x > 16384.0 && x < 65536.0, "{x}");
        assert!(c.conclusive);
        let c = cross(&base, &zc([80.0, 70.0, 60.0, 50.0])).unwrap();
        assert_eq!((c.status, c.at), ("below-at-every-size", Some(1024)));
        let c = cross(&base, &zc([150.0, 140.0, 130.0, 101.0])).unwrap();
        assert_eq!((c.status, c.at), ("never-below", None));
        assert!(!c.conclusive, "101 vs 100 is within the spread");
        assert!(cross(&base, &Curve::new()).is_none());
    }
}
