//! # rr: request/response transactions, classic servers against io_uring servers
//!
//! **Question.** A server answers requests of R bytes with responses of S bytes (an RPC, a
//! key-value GET, a memcached hit). How many transactions per second does each way of writing
//! the server sustain on one connection, what latency does a client see (p50 to p99.99), and
//! what does one transaction cost in CPU on the server and on the client? Does io_uring's
//! single system call per transaction (send and the next receive in one io_uring_enter),
//! multishot receive, registered buffers, SQPOLL or DEFER_TASKRUN pay off against recv/send
//! and epoll? And with a connection per transaction (CRR), what does the connection cost?
//!
//! **Set-up.** The measured side is the server: the main thread, pinned to the first CPU of
//! `--cpus`. The client is the lab's peer thread on the other CPU; its CPU time is measured in
//! its own thread and subtracted from the process's, so the server's CPU per transaction is the
//! server's alone (an SQPOLL thread's time is part of it, as getrusage counts it, and is shown
//! apart as `sqpoll_ns_per_tx`). Paths (`--paths`): `tcp-loopback`
//! (127.0.0.1) and `tcp-veth` (the client in namespace A, the server's listener in namespace B,
//! over the lab's veth pair, MTU `--veth-mtu`; needs root; the namespaces are removed at the end,
//! also on error and on SIGINT/SIGTERM), TCP_NODELAY on both ends; `udp-loopback` and `udp-veth`
//! (the same places, connected UDP sockets with 8 MiB receive buffers where permitted: one
//! datagram each way, at most 65507 B; the end of a run is a zero-length datagram, which the
//! servers' receives return as 0, as at a TCP end of stream; `zclab::loops::rr_udp`). A UDP
//! closed loop fails when a response is not back within a second; an open loop counts such
//! transactions as lost (`tx_lost`) and achieves less than its rate. With `--peer HOST[:PORT]` the path is
//! `remote-tcp`: the variant's server runs in `zclab serve` on that host (role rr-server) and
//! the client is the measured thread here; the server's CPU comes from the peer's report
//! (`zclab::loops::rr_trial::remote`), for both modes.
//!
//! **Loads** (`--loads`). `closed`: ping-pong, one transaction in flight; one latency sample is
//! one transaction timed in the client, from writing the request to reading the last byte of the
//! response. `open`: requests are due at a fixed `--rate` (per second) whatever is outstanding,
//! and latency is taken from each request's intended send time to its response, so a server that
//! falls behind shows in the tail rather than slowing the client (coordinated omission). A rate
//! the machine cannot sustain is reported as not achieved, with the rate achieved, in the rows
//! (`rate_achieved`, `rate_achieved_ok`), in `rates.json` and on the terminal: never lowered.
//!
//! **Modes** (`--modes`). `rr`: one connection (over UDP, one socket pair) for the whole trial. `crr`: the client connects,
//! sends one request, reads the response and closes with a reset (SO_LINGER 0, so no TIME_WAIT
//! sockets exhaust the ports); the server accepts (each variant with its own mechanism: accept(2),
//! epoll then accept(2), IORING_OP_ACCEPT), answers and closes. CRR runs closed-loop only, over TCP only.
//!
//! **Integrity.** Every request carries its sequence number and one of 16 pattern bodies; every
//! response carries the request's sequence number, the xxh3-64 of the body the server received,
//! and a fixed pattern; the client checks all three for every response, and the server's count
//! of requests answered must equal the client's (`zclab::loops::rr`).
//!
//! **Variants.** See `VARIANTS`. **Parameters.** `--sizes` (R = S), `--response-sizes` (S, a
//! sweep against every R), `--modes`, `--loads`, `--rate`, `--transactions` (per pass),
//! `--paths`, `--veth-mtu`. Figures per row: transactions/s (`ops_per_s`), the client's latency
//! histogram (`step`), `server_cpu_ns_per_tx`, `client_cpu_ns_per_tx`, `uring_enters_per_tx`.
//!
//! **Code.** Servers, client and wire format: `zclab::loops::rr`; the io_uring server:
//! `zclab::uring::rr`.
//!
//! **Minimum kernel.** classic: any; IORING_OP_RECV/SEND/ACCEPT 5.5-5.6; MSG_WAITALL on SEND
//! 5.18; provided-buffer rings 5.19; multishot receive 6.0; DEFER_TASKRUN 6.1.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use zclab::caps::Caps;
use zclab::catalog::{Entry, rr as names};
use zclab::harness::{
    self, Analysis, CommonArgs, Done, Env, Experiment, Plan, Point, Trial, Variant,
};
use zclab::loops::busy::{self, BUSY_POLL_US, BusyPoll};
use zclab::loops::rr::{self, ClientJob, Mode, Server, Shape};
use zclab::loops::rr_trial::{self, ServerSide};
use zclab::loops::{common, net_paths};
use zclab::loops::{rr_table, rr_udp};
use zclab::net::netns::{self, VethLab};
use zclab::net::remote;
use zclab::results::Row;
use zclab::ring::RingConfig;
use zclab::sys::busy_poll;
use zclab::units;
use zclab::uring::rr::RecvStyle;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<Rr>] = harness::variants![
    names::CLASSIC_BLOCKING => |ctx, t| serve(ctx, t, names::CLASSIC_BLOCKING), [], "recv(2) and send(2) on a blocking socket: one wake-up and two system calls per transaction";
    names::CLASSIC_EPOLL => |ctx, t| serve(ctx, t, names::CLASSIC_EPOLL), [], "non-blocking socket: epoll_wait(2), recv(2) until EAGAIN, send(2)";
    names::CLASSIC_BUSY_POLL => classic_busy_poll, [Root], "classic-blocking with SO_BUSY_POLL and SO_PREFER_BUSY_POLL (50 µs) on the server's sockets: it runs the NAPI poll itself before it sleeps (tcp-veth, with an XDP program on B's end for its NAPI context; loopback has none)";
    names::URING_ONESHOT => |ctx, t| serve(ctx, t, names::URING_ONESHOT), [op(Recv), op(Send), op(Accept)], "IORING_OP_RECV, then IORING_OP_SEND of the response and the next RECV in one io_uring_enter";
    names::URING_MULTISHOT => |ctx, t| serve(ctx, t, names::URING_MULTISHOT), [op(Recv), op(Send), op(Accept), op(ProvideBuffers)], "one multishot IORING_OP_RECV over a provided-buffer ring (64 buffers); IORING_OP_SEND per response";
    names::URING_FIXED => |ctx, t| serve(ctx, t, names::URING_FIXED), [op(ReadFixed), op(WriteFixed), op(Accept)], "IORING_OP_READ_FIXED and IORING_OP_WRITE_FIXED on the socket, from registered buffers";
    names::URING_SQPOLL => |ctx, t| serve(ctx, t, names::URING_SQPOLL), [op(Recv), op(Send), op(Accept), setup(SqPoll)], "as uring-oneshot on an SQPOLL ring (SQ thread on the server's CPU): no system call to submit";
    names::URING_DEFER_TASKRUN => |ctx, t| serve(ctx, t, names::URING_DEFER_TASKRUN), [op(Recv), op(Send), op(Accept), setup(DeferTaskrun)], "as uring-oneshot on a SINGLE_ISSUER | DEFER_TASKRUN ring: completions run when the server waits";
];

/// The network paths of this experiment.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum RrPath {
    /// TCP over 127.0.0.1.
    TcpLoopback,
    /// TCP from namespace A to the server in namespace B over the lab's veth pair.
    TcpVeth,
    /// UDP over 127.0.0.1: one datagram each way, connected sockets.
    UdpLoopback,
    /// UDP from namespace A to the server in namespace B over the lab's veth pair.
    UdpVeth,
    /// TCP to the server in `zclab serve` on another host (`--peer`).
    RemoteTcp,
}

impl RrPath {
    fn name(self) -> &'static str {
        match self {
            RrPath::TcpLoopback => "tcp-loopback",
            RrPath::TcpVeth => "tcp-veth",
            RrPath::UdpLoopback => "udp-loopback",
            RrPath::UdpVeth => "udp-veth",
            RrPath::RemoteTcp => "remote-tcp",
        }
    }

    fn from_name(s: &str) -> RrPath {
        match s {
            "tcp-veth" => RrPath::TcpVeth,
            "udp-loopback" => RrPath::UdpLoopback,
            "udp-veth" => RrPath::UdpVeth,
            "remote-tcp" => RrPath::RemoteTcp,
            _ => RrPath::TcpLoopback,
        }
    }

    fn udp(self) -> bool {
        matches!(self, RrPath::UdpLoopback | RrPath::UdpVeth)
    }

    fn veth(self) -> bool {
        matches!(self, RrPath::TcpVeth | RrPath::UdpVeth)
    }
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Paths, comma-separated (default: the four local ones; with --peer, remote-tcp): the
    /// veth paths need root; UDP runs the rr mode only, with requests and responses of at
    /// most 65507 B.
    #[arg(long, value_enum, value_delimiter = ',')]
    paths: Vec<RrPath>,
    /// Host running `zclab serve` (port 7878 unless given): each variant's server runs there,
    /// pinned to the second CPU of --cpus, and the client is measured here over the path
    /// remote-tcp.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<remote::PeerAddr>,
    /// Request sizes (and response sizes unless --response-sizes), comma-separated, at least
    /// 16 B (K/M are powers of 1024).
    #[arg(long, default_value = "64,4KiB,16KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Response sizes, comma-separated, each run against every request size.
    #[arg(long, value_delimiter = ',', value_parser = harness::size_arg)]
    response_sizes: Vec<u64>,
    /// Modes, comma-separated: rr (one connection), crr (connect per transaction).
    #[arg(long, default_value = "rr,crr", value_delimiter = ',', value_parser = ["rr", "crr"])]
    modes: Vec<String>,
    /// Loads, comma-separated: closed (ping-pong) and open (requests due at --rate).
    #[arg(long, default_value = "closed,open", value_delimiter = ',', value_parser = ["closed", "open"])]
    loads: Vec<String>,
    /// Open loop: transactions per second asked of the client (a rate the machine cannot
    /// sustain is reported as not achieved, never lowered).
    #[arg(long, default_value_t = 20000.0, value_parser = parse_rate)]
    rate: f64,
    /// Transactions per pass (a trial runs passes until --duration is reached).
    #[arg(long, default_value_t = 20000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    transactions: u64,
    /// MTU of the lab's veth pair.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    veth_mtu: u32,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && (1.0..=1e9).contains(&r) => Ok(r),
        _ => Err(format!(
            "'{s}': expected transactions per second from 1 to 1e9"
        )),
    }
}

struct Rr {
    args: Args,
    net: Option<VethLab>,
    net_reason: Option<String>,
    /// The server busy-polls this trial (classic-busy-poll).
    busy: Option<BusyPoll>,
}

/// The largest request or response.
const MAX_SIZE: u64 = zclab::net::remote::RR_SIZES.1;

impl Experiment for Rr {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(mut args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        args.paths = match (&args.peer, dedup(&args.paths)) {
            (Some(_), p) if p.iter().any(|p| *p != RrPath::RemoteTcp) => {
                return Err(harness::usage(
                    "with --peer the path is remote-tcp: the local paths build both ends on this host",
                ));
            }
            (Some(_), _) => vec![RrPath::RemoteTcp],
            (None, p) if p.contains(&RrPath::RemoteTcp) => {
                return Err(harness::usage(
                    "path remote-tcp needs --peer HOST[:PORT] (a host running `zclab serve`)",
                ));
            }
            (None, p) if p.is_empty() => vec![
                RrPath::TcpLoopback,
                RrPath::TcpVeth,
                RrPath::UdpLoopback,
                RrPath::UdpVeth,
            ],
            (None, p) => p,
        };
        let all: Vec<u64> = args
            .sizes
            .iter()
            .chain(&args.response_sizes)
            .copied()
            .collect();
        if let Some(&s) = all.iter().find(|&&s| s < rr::MIN_SIZE as u64) {
            return Err(harness::usage(format!(
                "size {s} B is below {} B (a request or response carries a sequence number and a checksum)",
                rr::MIN_SIZE
            )));
        }
        if let Some(&s) = all.iter().find(|&&s| s > MAX_SIZE) {
            return Err(harness::usage(format!(
                "size {} is over the {} this experiment allows",
                units::fmt_size(s),
                units::fmt_size(MAX_SIZE)
            )));
        }
        let (modes, loads) = (dedup(&args.modes), dedup(&args.loads));
        if modes == ["crr"] && loads == ["open"] {
            return Err(harness::usage(
                "--modes crr runs closed-loop only; add --loads closed or --modes rr",
            ));
        }
        let mut points = Vec::new();
        for p in dedup(&args.paths) {
            let conn_per_tx = !p.udp();
            for m in modes.iter().filter(|m| conn_per_tx || *m != "crr") {
                for l in loads.iter().filter(|l| !(m == "crr" && *l == "open")) {
                    for &req in &dedup(&args.sizes) {
                        let resps = if args.response_sizes.is_empty() {
                            vec![req]
                        } else {
                            dedup(&args.response_sizes)
                        };
                        for resp in resps {
                            points.push(
                                Point::new()
                                    .text("path", p.name())
                                    .text("mode", m)
                                    .text("load", l)
                                    .size("req", req)
                                    .size("resp", resp),
                            );
                        }
                    }
                }
            }
        }
        if points.is_empty() {
            return Err(harness::usage(
                "--modes crr runs on TCP paths only (UDP has no connections); add --modes rr or a tcp path",
            ));
        }
        let parameters = json!({
            "paths": args.paths, "sizes": args.sizes, "response_sizes": args.response_sizes,
            "modes": modes, "loads": loads, "rate": args.rate, "transactions_per_pass": args.transactions,
            "veth_mtu": args.veth_mtu,
            "crr": "closed-loop only; the client closes each connection with a reset (SO_LINGER 0)",
            "latency": "measured in the client: request written to response read (open loop: from the request's intended send time)",
            "rate_achieved_at": rr::ACHIEVED_SHARE,
            "multishot_buffers": rr::MULTISHOT_BUFFERS,
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "remote": args.peer.as_ref().map(|_| json!({
                "server": "zclab serve's rr-server runs the variant's server on the peer host, pinned to the second CPU of --cpus; its CPU time comes from its report (peer_user_ns/peer_sys_ns, server_cpu_ns_per_tx)",
                "client": "measured here on the first CPU of --cpus: its CPU time is the row's user_ns/sys_ns and client_cpu_ns_per_tx",
                "crr": "the rr-server accepts a connection per transaction with the variant's own accept (accept(2), epoll, IORING_OP_ACCEPT), and one getpeername(2) each to take only the client's",
            })),
            "receive_size": format!("{} requests", rr::MAX_BATCH),
            "netns": net_paths::netns_parameters(),
            "udp": format!("connected sockets, one datagram each way; mode rr only; a closed loop fails when a response is not back within {:?}, an open loop counts such transactions as lost (tx_lost)", rr_udp::LOSS_WAIT),
        });
        Ok(Plan {
            ctx: Rr {
                args,
                net: None,
                net_reason: None,
                busy: None,
            },
            points,
            parameters,
        })
    }

    fn prepare(&mut self, env: &Env) -> Result<()> {
        if !self.args.paths.iter().any(|p| p.veth()) {
            return Ok(());
        }
        let required = self.args.paths.iter().all(|p| p.veth());
        (self.net, self.net_reason) =
            net_paths::veth_or_reason(names::NAME, env.caps, self.args.veth_mtu, required)?;
        Ok(())
    }

    /// Per variant and point, medians of transactions/s, latency percentiles and CPU per
    /// transaction (`transactions.json`); for open-loop points, the rate asked and achieved,
    /// and which fell short (`rates.json`).
    fn analyse(&self, rows: &[Row], _common: &CommonArgs) -> Result<Vec<Analysis>> {
        let mut out = vec![transactions(rows)?];
        if let Some((v, text)) = rr_table::rates(rows) {
            out.push(Analysis::new("rates.json", &v, text)?);
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        net_paths::remove_veth_lab(self.net.as_mut())
    }

    fn peer_addr(&self) -> Option<&remote::PeerAddr> {
        self.args.peer.as_ref()
    }

    fn list_notes(caps: &Caps) -> Vec<String> {
        net_paths::tcp_path_notes(netns::unavailable_reason(caps))
    }
}

/// The transactions table ([`rr_table::transactions`]) as `transactions.json`.
fn transactions(rows: &[Row]) -> Result<Analysis> {
    let (v, text) = rr_table::transactions(rows);
    Analysis::new("transactions.json", &v, text)
}

fn main() -> ExitCode {
    harness::run::<Rr>()
}

/// classic-blocking, busy polling: SO_BUSY_POLL on the listener (accepted sockets inherit it)
/// and on the connection; on tcp-veth B's end gets the XDP program that gives it a NAPI
/// context for the trial ([`BusyPoll`]).
fn classic_busy_poll(ctx: &mut Rr, t: &mut Trial) -> Result<()> {
    if t.remote.is_some() {
        return serve(ctx, t, names::CLASSIC_BUSY_POLL);
    }
    if !RrPath::from_name(t.point.str("path")).veth() {
        return Err(busy::loopback_skip());
    }
    // Without the namespaces, the point is skipped in `run` with their reason.
    ctx.busy = ctx
        .net
        .as_ref()
        .map(|n| BusyPoll::start(Some(n)))
        .transpose()?;
    let r = run(ctx, t, |shape, _| Ok(Server::classic(shape, false)?));
    ctx.busy = None;
    r
}

/// One trial of server `variant`: on the peer host with --peer, here otherwise.
fn serve(ctx: &mut Rr, t: &mut Trial, variant: &str) -> Result<()> {
    if let Some(peer) = t.remote {
        let (shape, open) = (shape(t), t.point.str("load") == "open");
        let rate = open.then_some(ctx.args.rate);
        let mode = if t.point.str("mode") == "crr" {
            Mode::Crr
        } else {
            Mode::Rr
        };
        let n = ctx.args.transactions;
        return rr_trial::remote(t, peer, variant, (shape, mode), n, rate);
    }
    run(ctx, t, |shape, t| {
        match rr::uring_server(variant, Some(t.cpus.0 as u32)) {
            None => Ok(Server::classic(shape, variant == names::CLASSIC_EPOLL)?),
            Some((cfg, style)) => uring(t, shape, cfg, style),
        }
    })
}

/// The point's request and response sizes.
fn shape(t: &Trial) -> Shape {
    Shape {
        req: t.point.num("req") as usize,
        resp: t.point.num("resp") as usize,
    }
}

/// An io_uring server on a ring of `cfg` (flags recorded; a ring the kernel refuses skips the
/// variant), with the registered buffers `Fixed` reads and writes.
fn uring(t: &mut Trial, shape: Shape, cfg: RingConfig, style: RecvStyle) -> Result<Server> {
    let mut ring = common::ring(t, &cfg)?;
    if style == RecvStyle::Fixed {
        common::register_buffers(t, &mut ring, 2, rr::fixed_buffer_size(shape))?;
    }
    Server::uring(shape, ring, style).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            harness::skip_variant(format!("the kernel refused the provided-buffer ring ({e})"))
        }
        _ => anyhow::Error::new(e),
    })
}

fn dedup<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// The server's end of a trial: a TCP listener (and the client's namespace), or a UDP server
/// socket connected to the client's (returned beside it).
enum Endpoint {
    Tcp(TcpListener, Option<String>),
    Udp(UdpSocket, UdpSocket),
}

/// The server's end for `path`: on 127.0.0.1, or at the B end of the lab's veth pair (made
/// inside namespace B, the client's inside A). A TCP listener has TCP_NODELAY, which accepted
/// sockets inherit.
fn endpoint(ctx: &Rr, path: RrPath) -> Result<Endpoint> {
    let net = match (path.veth(), ctx.net.as_ref()) {
        (false, _) => None,
        (true, Some(n)) => Some(n),
        (true, None) => {
            return Err(harness::skip_point(ctx.net_reason.clone().unwrap_or_else(
                || "the lab's network namespaces are not available".into(),
            )));
        }
    };
    if path.udp() {
        let (s, c) = match net {
            None => rr_udp::pair((Ipv4Addr::LOCALHOST, None), (Ipv4Addr::LOCALHOST, None)),
            Some(n) => rr_udp::pair((n.tcp_b_addr, Some(&n.ns_b)), (n.tcp_a_addr, Some(&n.ns_a))),
        }
        .context("cannot make the UDP sockets")?;
        return Ok(Endpoint::Udp(s, c));
    }
    let (l, ns) = match net {
        None => (
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?,
            None,
        ),
        Some(n) => {
            let b = n.tcp_b_addr;
            let l = netns::in_netns(&n.ns_b, move || TcpListener::bind(SocketAddrV4::new(b, 0)))
                .context("cannot listen in namespace B")?;
            (l, Some(n.ns_a.clone()))
        }
    };
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::TcpNoDelay, &true)?;
    Ok(Endpoint::Tcp(l, ns))
}

/// One trial: the server made by `make`, the client thread on the peer CPU, the measured
/// server loop, then the client's account: latency, CPU, integrity, rates.
fn run(
    ctx: &mut Rr,
    t: &mut Trial,
    make: impl FnOnce(Shape, &mut Trial) -> Result<Server>,
) -> Result<()> {
    let path = RrPath::from_name(t.point.str("path"));
    let mode = if t.point.str("mode") == "crr" {
        Mode::Crr
    } else {
        Mode::Rr
    };
    let open = t.point.str("load") == "open";
    let shape = shape(t);
    let n = ctx.args.transactions;
    if path.udp() && shape.req.max(shape.resp) as u64 > rr_udp::MAX_DATAGRAM {
        return Err(harness::skip_point(format!(
            "a UDP datagram carries at most {} B",
            rr_udp::MAX_DATAGRAM
        )));
    }
    // TCP: the listener (the connection comes from accept); UDP: the server's socket.
    let (listener, mut conn, addr, netns, udp) = match endpoint(ctx, path)? {
        Endpoint::Tcp(l, ns) => {
            let a = l.local_addr()?;
            (Some(l), None, a, ns, None)
        }
        Endpoint::Udp(s, c) => {
            let a: SocketAddr = s.local_addr()?;
            let rcvbuf = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::RcvBuf)?;
            t.set_extra("udp_rcvbuf", rcvbuf as f64);
            (None, Some(OwnedFd::from(s)), a, None, Some(Arc::new(c)))
        }
    };
    let mut server = make(shape, t)?;
    let job = ClientJob {
        shape,
        n,
        mode,
        rate: open.then_some(ctx.args.rate),
        addr,
        netns,
        clock: t.clock,
        udp,
        stream: None,
    };
    if ctx.busy.is_some() {
        match (&listener, &conn) {
            (Some(l), _) => busy_poll::enable(l, BUSY_POLL_US)?,
            (None, Some(c)) => busy_poll::enable(c, BUSY_POLL_US)?,
            (None, None) => {}
        }
    }
    let client = rr::spawn_client(job, t.cpus.1)?;
    if let (Some(l), Mode::Rr) = (&listener, mode) {
        conn = Some(l.accept()?.0.into());
    }
    if let (Some(c), true) = (&conn, ctx.busy.is_some()) {
        busy_poll::enable(c, BUSY_POLL_US)?;
    }
    let measured = t.measure(rr_trial::step(open), |_| {
        match &conn {
            Some(c) => server.serve(c)?,
            None => {
                let listener = listener.as_ref().expect("connect per transaction is TCP");
                for _ in 0..n {
                    let before = server.framer.served;
                    let c = server.accept(listener)?;
                    server.serve(&c)?;
                    if server.framer.served == before {
                        bail!("a connection ended without a request: the client stopped");
                    }
                }
            }
        }
        // No bytes: the headline figure (the table, `--repeat auto`) is transactions/s, of
        // the transactions served (over UDP, requests lost on the way are not).
        Ok(Done {
            bytes: 0,
            ops: server.framer.served,
        })
    });
    let napi = match (&conn, ctx.busy.is_some()) {
        (Some(c), true) => Some(busy_poll::napi_id(c)?),
        _ => None,
    };
    drop(conn); // ends the client's stream if the server failed
    drop(listener);
    let rep = client.join().context("rr client")?;
    measured?;
    t.set_peer(rep.usage);
    let m = t.metrics().expect("measured").clone();
    // getrusage(RUSAGE_SELF) already counts an SQPOLL thread: shown apart, not added.
    let srv = ServerSide {
        served: server.framer.served,
        cpu_ns: m.user_ns + m.sys_ns,
        enters: server.enters,
        sqpoll_ns: m.sqpoll_ns,
    };
    let client_cpu = rep.usage.user_ns + rep.usage.sys_ns;
    rr_trial::record(t, n, shape, &rep, client_cpu, &srv, path.udp());
    if let Some(b) = ctx.busy.take() {
        b.finish(t, napi)?;
    }
    Ok(())
}
