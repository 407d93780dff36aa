//! # proxy: relaying between two TCP connections, copy against splice
//!
//! **Question.** A relay (an HTTP proxy, a message broker forwarding between peers) moves bytes
//! from one socket to another. Does splice(2) through a pipe — no copy to user space — beat a
//! read/write loop, and from which message size on? Published experience says splice loses on
//! small payloads (HAProxy: below ~4 kB) and is no better for an echo round trip (Cloudflare).
//!
//! **Set-up.** Three parties over loopback TCP: a client and a server, both threads pinned to
//! the peer CPU, and the relay between them, the measured thread, pinned to the first CPU.
//! The relay's CPU usage is the process's less the client's and the server's (each measured in
//! its own thread). Two modes:
//! - `stream`: the client streams `--stream-bytes` in writes of the message size, the relay
//!   forwards them, the server hashes what arrives; integrity is that hash. One latency sample
//!   is one relay step (one receive of up to a message and its forwarding).
//! - `echo`: the client sends one message, the server echoes it back through the relay, the
//!   client checks it and sends the next (`--requests` per trial). The latency the user wants
//!   is the round trip, which only the client can see: it is measured in the client thread and
//!   recorded as the step histogram (its description says so); the relay's own per-request
//!   time is kept beside it as the `relay` histogram. Integrity: every echo equals what was
//!   sent.
//!
//! **Two hosts.** With `--peer HOST[:PORT]` the server end runs in `zclab serve` on that host
//! (a hashing receiver in stream mode, an echo server in echo mode): the relay's second
//! connection crosses the link between the hosts, the client stays a local thread on the peer
//! CPU. The client's CPU time is subtracted from the process's as before; the server's is
//! measured on its host and recorded as `peer_user_ns`/`peer_sys_ns` (and `peer_*` extras),
//! the client's then as `client_user_ns`/`client_sys_ns`. Round trips are still timed in the
//! client thread: one clock, no cross-host timestamps.
//!
//! **Variants.** See `VARIANTS`. Both relays of a variant use the same mechanism. In echo mode
//! the relay knows the message size (as a proxy knows a request's length) and moves exactly
//! one message each way per request.
//!
//! **Output.** Besides the standard run directory, `crossover.json`: per mode, the message size
//! at which each splice variant overtakes its copy-based counterpart (stream: throughput;
//! echo: median round trip), with the figures per size.
//!
//! **Minimum kernel.** classic: any 2.6.17+; uring-recv-send 5.6 (IORING_OP_RECV/SEND; the
//! MSG_WAITALL retry 5.18); uring-splice 5.7.

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::fcntl::{SpliceFFlags, splice};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::net::peers::{
    EchoClient, EchoServer, FaultSpec, HashSink, PatternStream, PeerReport, Streamer, add_usage,
    tcp_pair,
};
use zclab::net::remote::{self, Peer, PeerAddr, RemoteTcp};
use zclab::results::{Integrity, Row, Status};
use zclab::ring::{Ring, RingConfig};
use zclab::sys::pipe::pipe_with_size;
use zclab::units;
use zclab::uring::Fd;
use zclab::uring::sock::{Mover, Put, Take, Via, move_exact};

const NAME: &str = "proxy";

#[derive(Parser, Debug)]
#[command(name = NAME, about = "Relay between two TCP connections: read/write against splice, classic and io_uring")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Message sizes, comma-separated: the client's write size and the relay's unit in stream
    /// mode, the request and reply size in echo mode.
    #[arg(long, default_value = "512,2KiB,4KiB,16KiB,64KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Modes, comma-separated: stream (throughput) and echo (round-trip latency).
    #[arg(long, default_value = "stream,echo", value_delimiter = ',', value_enum)]
    mode: Vec<Mode>,
    /// Bytes the client streams per trial in stream mode.
    #[arg(long, default_value = "32MiB", value_parser = harness::size_arg)]
    stream_bytes: u64,
    /// Round trips per parameter point in echo mode, shared by the repeats (each trial runs
    /// requests/repeat, rounded up; a warm-up at most 1000), so the point's merged histogram
    /// (`.hgrm`) holds at least this many: 10000 or more for it to reach p99.99.
    #[arg(long, default_value_t = 20000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    requests: u64,
    /// Pipe capacity for the splice variants; default twice the message size, at least 64 KiB.
    #[arg(long, value_parser = harness::size_arg)]
    pipe_size: Option<u64>,
    /// Run the server end on another host, in `zclab serve` there (HOST[:PORT], default port
    /// 7878); the relay (measured) and the client stay here.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<PeerAddr>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Stream,
    Echo,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Echo => "echo",
        }
    }
}

struct Ctx {
    args: Args,
    fault: Option<FaultSpec>,
    stream: Option<PatternStream>,
    /// Trials started per (variant, point): the harness runs the warm-ups first, so the first
    /// `--warmup` of each are warm-ups (echo warm-ups run fewer requests).
    started: std::collections::HashMap<(String, String), u32>,
    /// `zclab serve` on the --peer host.
    peer: Option<Peer>,
}

/// Round trips of an echo warm-up trial (at most).
const WARMUP_REQUESTS: u64 = 1000;

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-read-write",
        about: "read(2) from one socket into a buffer, write(2) it to the other",
        needs: &[],
        run: classic_read_write,
    },
    Variant {
        name: "classic-splice",
        about: "splice(2) socket -> pipe, splice(2) pipe -> other socket: no copy to user space",
        needs: &[],
        run: classic_splice,
    },
    Variant {
        name: "uring-recv-send",
        about: "IORING_OP_RECV into a buffer + IORING_OP_SEND (MSG_WAITALL) to the other socket",
        needs: &[Need::Op("RECV"), Need::Op("SEND")],
        run: uring_recv_send,
    },
    Variant {
        name: "uring-splice",
        about: "IORING_OP_SPLICE socket -> pipe + IORING_OP_SPLICE pipe -> other socket",
        needs: &[Need::Op("SPLICE")],
        run: uring_splice,
    },
];

/// The splice variant and its copy-based counterpart, compared at the end.
const PAIRS: &[(&str, &str)] = &[
    ("classic-splice", "classic-read-write"),
    ("uring-splice", "uring-recv-send"),
];

fn main() -> ExitCode {
    harness::main(NAME, || {
        let args = Args::parse();
        if args.common.list {
            let caps = zclab::caps::probe(std::path::Path::new("."));
            print!("{}", harness::list_variants(NAME, VARIANTS, &caps));
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(&s) = args.sizes.iter().find(|&&s| s > (64 << 20)) {
            bail!(
                "message size {} is too large (at most 64 MiB)",
                units::fmt_size(s)
            );
        }
        if args.stream_bytes > (8 << 30) {
            bail!("--stream-bytes is held in memory: at most 8 GiB");
        }
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        let fault = FaultSpec::from_env_for(&names)?;
        let modes: Vec<&str> = args.mode.iter().map(|m| m.name()).collect();
        let params = json!({
            "sizes": args.sizes, "modes": modes, "stream_bytes": args.stream_bytes,
            "requests": args.requests, "pipe_size": args.pipe_size,
            "path": if args.peer.is_some() { "remote-tcp" } else { "tcp-loopback" },
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "links": if args.peer.is_some() {
                "client -> relay over loopback; relay -> server (zclab serve on the peer host) across the link"
            } else {
                "both over loopback"
            },
            "placement": "relay on the first CPU; client and server on the peer CPU",
            "tcp_nodelay": "all sockets in echo mode; relay sockets in both modes",
            "fault": fault.as_ref().map(|f| format!("{f:?}")),
        });
        let mut points = Vec::new();
        for m in &args.mode {
            for &s in &args.sizes {
                points.push(Point::new().text("mode", m.name()).size("msg", s));
            }
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
            args,
            fault,
            stream: None,
            started: Default::default(),
            peer,
        };
        let code = lab.run(VARIANTS, &points, &mut ctx)?;
        if let Some(p) = &ctx.peer {
            p.bye();
        }
        crossover(&lab)?;
        Ok(code)
    })
}

/// How the relay moves bytes, for both modes.
enum Relay {
    Copy(Vec<u8>),
    Splice {
        pr: OwnedFd,
        pw: OwnedFd,
        cap: usize,
    },
    UringCopy(Ring, Vec<u8>),
    UringSplice(Ring, OwnedFd, OwnedFd),
}

/// The relay's two connections and the peers at their far ends.
struct Sockets {
    /// Accepted from the client.
    a: TcpStream,
    /// Connected to the server.
    b: TcpStream,
}

/// The server end of the relay: a thread here, or `zclab serve` on the --peer host.
enum Server {
    Sink(HashSink),
    Echo(EchoServer),
    Remote(RemoteTcp),
}

impl Server {
    /// Waits for the server end to finish (the relay has ended its stream); its account, and
    /// the remote report when it ran on the peer host.
    fn join(self) -> Result<(PeerReport, Option<remote::Report>)> {
        match self {
            Server::Sink(h) => Ok((h.join()?, None)),
            Server::Echo(e) => Ok((e.join()?, None)),
            Server::Remote(mut r) => {
                let rep = r.finish()?;
                let hash = match rep.hash.as_deref() {
                    Some(h) => remote::parse_hex64(h)
                        .ok_or_else(|| anyhow::anyhow!("the peer's report has a bad hash {h:?}"))?,
                    None => 0,
                };
                let pr = PeerReport {
                    bytes: rep.bytes,
                    hash,
                    usage: rep.usage,
                };
                Ok((pr, Some(rep)))
            }
        }
    }
}

/// The relay's sockets, the client's end, and the server end: `echo` picks the server's role.
fn sockets(ctx: &Ctx, t: &Trial, msg: usize, echo: bool) -> Result<(Sockets, TcpStream, Server)> {
    let (client, a) = tcp_pair().context("cannot open the client connection")?;
    let (b, server) = match &ctx.peer {
        Some(p) => {
            let cpu = Some(t.cpus.1 as u32);
            let r = if echo {
                p.echo(cpu, msg as u64)?
            } else {
                p.tcp_sink(cpu, msg.max(64 << 10) as u64, true)?
            };
            (r.stream.try_clone()?, Server::Remote(r))
        }
        None => {
            let (b, server) = tcp_pair().context("cannot open the server connection")?;
            let s = if echo {
                Server::Echo(EchoServer::spawn(server, t.cpus.1, msg)?)
            } else {
                Server::Sink(HashSink::spawn(server, t.cpus.1, msg.max(64 << 10), None)?)
            };
            (b, s)
        }
    };
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((Sockets { a, b }, client, server))
}

/// Records the peers' CPU time: the local client's is subtracted from the process's; a remote
/// server's is recorded as the peer's (a local server's is subtracted with the client's).
fn record_peers(
    t: &mut Trial,
    client: PeerReport,
    server: PeerReport,
    rep: Option<remote::Report>,
) {
    match rep {
        None => t.set_peer(add_usage(client.usage, server.usage)),
        Some(r) => {
            t.set_peer(client.usage);
            t.set_remote_peer(r.usage);
            for (k, v) in r.peer_extras() {
                t.set_extra(k, v);
            }
            t.set_extra("client_user_ns", client.usage.user_ns as f64);
            t.set_extra("client_sys_ns", client.usage.sys_ns as f64);
        }
    }
}

fn run(ctx: &mut Ctx, t: &mut Trial, variant: &str, relay: Relay) -> Result<()> {
    let r = match t.point.str("mode") {
        "stream" => run_stream(ctx, t, variant, relay),
        "echo" => run_echo(ctx, t, variant, relay),
        m => bail!("unknown mode {m}"),
    };
    match (&ctx.peer, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

fn closed(what: &str, got: u64) -> anyhow::Error {
    anyhow::anyhow!("{what}: peer closed the connection after {got} bytes")
}

fn run_stream(ctx: &mut Ctx, t: &mut Trial, variant: &str, relay: Relay) -> Result<()> {
    let (msg, total) = (t.point.num("msg") as usize, ctx.args.stream_bytes);
    if ctx
        .stream
        .as_ref()
        .is_none_or(|s| s.data.len() as u64 != total)
    {
        ctx.stream = None;
        ctx.stream = Some(PatternStream::new(total as usize));
    }
    let (s, client, sink) = sockets(ctx, t, msg, false)?;
    let ps = ctx.stream.as_ref().expect("just set");
    let reset = FaultSpec::for_variant(&ctx.fault, variant);
    let streamer = Streamer::spawn(client, t.cpus.1, ps.data.clone(), msg, reset)?;
    let (expected, mut relay) = (ps.hash, relay);
    let step = match &relay {
        Relay::Copy(_) => {
            "one read(2) of up to a message from the client + write(2) of it to the server"
        }
        Relay::Splice { .. } => {
            "one splice(2) client -> pipe of up to a message + splice(2) pipe -> server"
        }
        Relay::UringCopy(..) => {
            "one io_uring_enter: SEND of the previous message to the server + RECV of the next from the client"
        }
        Relay::UringSplice(..) => {
            "one io_uring_enter: SPLICE pipe -> server of the previous message + SPLICE client -> pipe of the next"
        }
    };
    let take = relay_take(&relay);
    let res = t.measure(step, |rec| {
        let mut steps = 0u64;
        let mut moved = 0u64;
        let mut st = rec.now();
        match &mut relay {
            Relay::Copy(buf) => loop {
                let n = match (&s.a).read(&mut buf[..msg]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(e).context(format!("read from the client after {moved} bytes"));
                    }
                };
                (&s.b).write_all(&buf[..n]).context("write to the server")?;
                moved += n as u64;
                steps += 1;
                st = rec.record_since(st);
            },
            Relay::Splice { pr, pw, cap } => {
                let fl = SpliceFFlags::SPLICE_F_MOVE;
                loop {
                    let n = splice(s.a.as_fd(), None, &*pw, None, msg.min(*cap), fl)
                        .with_context(|| format!("splice from the client after {moved} bytes"))?;
                    if n == 0 {
                        break;
                    }
                    let mut out = 0;
                    while out < n {
                        match splice(&*pr, None, s.b.as_fd(), None, n - out, fl)
                            .context("splice to the server")?
                        {
                            0 => return Err(closed("splice to the server", moved)),
                            m => out += m,
                        }
                    }
                    moved += n as u64;
                    steps += 1;
                    st = rec.record_since(st);
                }
            }
            Relay::UringCopy(r, _) | Relay::UringSplice(r, ..) => {
                let take = take.expect("io_uring relays have a take mode");
                let mut m = Mover::new(
                    r,
                    Fd::Raw(s.a.as_raw_fd()),
                    Put::Socket(Fd::Raw(s.b.as_raw_fd())),
                    take,
                    msg,
                    None,
                )?;
                loop {
                    let n = m
                        .step(r)
                        .with_context(|| format!("relay after {} bytes", m.bytes_in))?;
                    st = rec.record_since(st);
                    if n == 0 {
                        break;
                    }
                }
                m.finish(r, false)?;
                moved = m.bytes_out;
                steps = m.enters;
            }
        }
        s.b.shutdown(Shutdown::Write)
            .context("shutdown toward the server")?;
        if moved != total {
            return Err(closed("the client", moved));
        }
        Ok(Done {
            bytes: moved,
            ops: steps,
        })
    });
    drop(s);
    let got = sink.join();
    let sent = streamer.join();
    res?;
    let (got, rep) = got.context("server failed")?;
    let sent = sent.context("client failed")?;
    let remote = rep.is_some();
    record_peers(t, sent, got, rep);
    t.set_integrity(Integrity {
        ok: got.bytes == total && got.hash == expected,
        method: if remote {
            "xxh3-64 of the stream the server received on the peer host".into()
        } else {
            "xxh3-64 of the stream the server received".into()
        },
        expected: format!("{expected:016x}"),
        got: format!("{:016x}", got.hash),
        bytes_expected: total,
        bytes_got: got.bytes,
    });
    Ok(())
}

/// The Mover's input mode for an io_uring relay.
fn relay_take(r: &Relay) -> Option<Take> {
    match r {
        Relay::UringCopy(..) => Some(Take::Recv),
        Relay::UringSplice(_, pr, pw) => Some(Take::Splice {
            pipe_r: pr.as_raw_fd(),
            pipe_w: pw.as_raw_fd(),
        }),
        _ => None,
    }
}

/// Moves exactly `len` bytes from `from` to `to` with the classic calls.
fn classic_exact(relay: &mut Relay, from: &TcpStream, to: &TcpStream, len: usize) -> Result<()> {
    match relay {
        Relay::Copy(buf) => {
            let mut done = 0;
            while done < len {
                let n = match (&*from).read(&mut buf[..len - done]) {
                    Ok(0) => {
                        bail!("peer closed the connection inside a message ({done} of {len} bytes)")
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                (&*to).write_all(&buf[..n])?;
                done += n;
            }
        }
        Relay::Splice { pr, pw, cap } => {
            let fl = SpliceFFlags::SPLICE_F_MOVE;
            let mut done = 0;
            while done < len {
                let n = splice(from.as_fd(), None, &*pw, None, (len - done).min(*cap), fl)?;
                if n == 0 {
                    bail!("peer closed the connection inside a message ({done} of {len} bytes)");
                }
                let mut out = 0;
                while out < n {
                    match splice(&*pr, None, to.as_fd(), None, n - out, fl)? {
                        0 => bail!("splice to a socket moved 0 bytes: peer closed"),
                        m => out += m,
                    }
                }
                done += n;
            }
        }
        _ => unreachable!("classic relays only"),
    }
    Ok(())
}

fn uring_exact(relay: &mut Relay, from: &TcpStream, to: &TcpStream, len: usize) -> Result<()> {
    let (f, t) = (Fd::Raw(from.as_raw_fd()), Fd::Raw(to.as_raw_fd()));
    match relay {
        Relay::UringCopy(r, buf) => move_exact(r, f, t, Via::Buffer(&mut buf[..len]), len)?,
        Relay::UringSplice(r, pr, pw) => move_exact(
            r,
            f,
            t,
            Via::Pipe {
                pipe_r: pr.as_raw_fd(),
                pipe_w: pw.as_raw_fd(),
            },
            len,
        )?,
        _ => unreachable!("io_uring relays only"),
    };
    Ok(())
}

fn run_echo(ctx: &mut Ctx, t: &mut Trial, variant: &str, mut relay: Relay) -> Result<()> {
    // --requests is per point: the repeats share it, so the point's merged histogram holds at
    // least that many round trips.
    let msg = t.point.num("msg") as usize;
    let n = ctx
        .started
        .entry((variant.to_string(), t.point.label()))
        .or_insert(0);
    *n += 1;
    let warmup = *n <= ctx.args.common.warmup;
    let mut requests = ctx.args.requests.div_ceil(ctx.args.common.repeat as u64);
    if warmup {
        requests = requests.min(WARMUP_REQUESTS);
    }
    let (s, client, srv) = sockets(ctx, t, msg, true)?;
    let reset = FaultSpec::for_variant(&ctx.fault, variant);
    let cl = EchoClient::spawn(client, t.cpus.1, msg, requests, t.clock, reset)?;
    let uring = matches!(relay, Relay::UringCopy(..) | Relay::UringSplice(..));
    let mut relay_hist = None;
    let res = t.measure(
        "one request relayed (client -> server, then the reply back), in the relay",
        |rec| {
            let mut st = rec.now();
            for i in 0..requests {
                let r = if uring {
                    uring_exact(&mut relay, &s.a, &s.b, msg)
                        .and_then(|_| uring_exact(&mut relay, &s.b, &s.a, msg))
                } else {
                    classic_exact(&mut relay, &s.a, &s.b, msg)
                        .and_then(|_| classic_exact(&mut relay, &s.b, &s.a, msg))
                };
                r.with_context(|| format!("request {i} of {requests}"))?;
                st = rec.record_since(st);
            }
            relay_hist = Some(rec.histogram().clone());
            Ok(Done {
                bytes: 2 * requests * msg as u64,
                ops: requests,
            })
        },
    );
    let _ = s.b.shutdown(Shutdown::Both);
    let _ = s.a.shutdown(Shutdown::Both);
    drop(s);
    let echoed = cl.join();
    let served = srv.join();
    res?;
    let echoed = echoed.context("client failed")?;
    let (served, rep) = served.context("server failed")?;
    let client = PeerReport {
        bytes: echoed.bytes,
        hash: 0,
        usage: echoed.usage,
    };
    record_peers(t, client, served, rep);
    t.set_histogram(
        "step",
        "one request's round trip client -> relay -> server -> relay -> client, measured in the client thread (the relay is the measured thread for CPU; its own per-request time is the `relay` histogram)",
        echoed.rtt,
    );
    if let Some(h) = relay_hist {
        t.set_histogram(
            "relay",
            "one request relayed (client -> server, then the reply back), in the relay thread",
            h,
        );
    }
    t.set_integrity(Integrity {
        ok: echoed.mismatches == 0 && echoed.requests == requests,
        method: "every echoed message compared with what the client sent".into(),
        expected: format!("{requests} requests, 0 mismatches"),
        got: format!(
            "{} requests, {} mismatches",
            echoed.requests, echoed.mismatches
        ),
        bytes_expected: requests * msg as u64,
        bytes_got: echoed.bytes,
    });
    Ok(())
}

fn pipe(ctx: &Ctx, t: &Trial) -> Result<(OwnedFd, OwnedFd, usize)> {
    let msg = t.point.num("msg") as usize;
    let want = ctx
        .args
        .pipe_size
        .map_or((2 * msg).max(64 << 10), |p| p as usize);
    let (pr, pw, cap) = pipe_with_size(want)?;
    if cap < msg {
        return Err(harness::skip_point(format!(
            "the pipe holds {cap} B, less than a message ({msg} B)"
        )));
    }
    Ok((pr, pw, cap))
}

fn ring(t: &mut Trial) -> Result<Ring> {
    let r = Ring::new(&RingConfig::tuned(8)).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

fn classic_read_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let buf = vec![0u8; t.point.num("msg") as usize];
    run(ctx, t, "classic-read-write", Relay::Copy(buf))
}

fn classic_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let (pr, pw, cap) = pipe(ctx, t)?;
    t.set_extra("pipe_bytes", cap as f64);
    run(ctx, t, "classic-splice", Relay::Splice { pr, pw, cap })
}

fn uring_recv_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let r = ring(t)?;
    let buf = vec![0u8; t.point.num("msg") as usize];
    run(ctx, t, "uring-recv-send", Relay::UringCopy(r, buf))
}

fn uring_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let r = ring(t)?;
    let (pr, pw, cap) = pipe(ctx, t)?;
    run(ctx, t, "uring-splice", Relay::UringSplice(r, pr, pw))?;
    t.set_extra("pipe_bytes", cap as f64);
    Ok(())
}

/// Reads one figure of a row.
type Figure = fn(&Row) -> Option<f64>;

/// Per size: the median, min and max over the ok repeats of a figure of `variant` in `mode`.
fn figures(
    rows: &[Row],
    mode: &str,
    variant: &str,
    f: fn(&Row) -> Option<f64>,
) -> Vec<(u64, f64, f64, f64)> {
    let mut sizes: Vec<u64> = rows
        .iter()
        .filter(|r| {
            r.variant == variant && r.params.get("mode").and_then(Value::as_str) == Some(mode)
        })
        .filter_map(|r| r.params.get("msg").and_then(Value::as_u64))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|s| {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    r.variant == variant
                        && r.status == Status::Ok
                        && r.params.get("mode").and_then(Value::as_str) == Some(mode)
                        && r.params.get("msg").and_then(Value::as_u64) == Some(s)
                })
                .filter_map(f)
                .collect();
            if v.is_empty() {
                return None;
            }
            let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            Some((s, harness::median(v), lo, hi))
        })
        .collect()
}

/// The smallest size from which splice is better at that size and at every larger one, given
/// (size, splice better) in ascending size order.
fn crossover_size(better: &[(u64, bool)]) -> Option<u64> {
    let mut cross = None;
    for &(s, b) in better.iter().rev() {
        if !b {
            break;
        }
        cross = Some(s);
    }
    cross
}

/// Sizes below the crossover where splice is better all the same (the comparison is not
/// monotone in size).
fn stray_sizes(better: &[(u64, bool)], cross: Option<u64>) -> Vec<u64> {
    better
        .iter()
        .filter(|&&(s, b)| b && cross.is_none_or(|c| s < c))
        .map(|&(s, _)| s)
        .collect()
}

/// Compares each splice variant with its copy-based counterpart per mode, prints where the
/// splice variant overtakes, and writes `crossover.json`.
fn crossover(lab: &Lab) -> Result<()> {
    let path = lab.dir.join("summary.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Ok(()), // nothing ran
    };
    let rows = zclab::results::row::parse_jsonl(&text)
        .map_err(|e| anyhow::anyhow!("cannot read back {}: {e}", path.display()))?;
    let mut out = serde_json::Map::new();
    let mut lines = Vec::new();
    for mode in ["stream", "echo"] {
        let (metric, higher_better, f): (&str, bool, Figure) = if mode == "stream" {
            ("throughput GB/s (median of repeats)", true, |r| {
                r.metrics.as_ref().map(|m| m.gbps)
            })
        } else {
            ("round-trip p50 ns (median of repeats)", false, |r| {
                r.metrics.as_ref().map(|m| m.latency.p50_ns as f64)
            })
        };
        let mut per_mode = serde_json::Map::new();
        for &(sp, cp) in PAIRS {
            let a = figures(&rows, mode, sp, f);
            let b = figures(&rows, mode, cp, f);
            let by_size: Vec<(u64, f64, f64, bool, bool)> = b
                .iter()
                .filter_map(|&(s, cm, clo, chi)| {
                    a.iter().find(|x| x.0 == s).map(|&(_, sm, slo, shi)| {
                        let better = if higher_better { sm > cm } else { sm < cm };
                        let overlap = slo <= chi && clo <= shi;
                        (s, cm, sm, better, overlap)
                    })
                })
                .collect();
            if by_size.is_empty() {
                continue;
            }
            let better: Vec<(u64, bool)> = by_size.iter().map(|x| (x.0, x.3)).collect();
            let cross = crossover_size(&better);
            let largest = by_size.last().map_or(0, |x| x.0);
            let verdict = match cross {
                Some(s) if s == by_size[0].0 => {
                    format!(
                        "better at every size measured (from {})",
                        units::fmt_size(s)
                    )
                }
                Some(s) => format!("overtakes at {}", units::fmt_size(s)),
                None => format!("never overtakes (up to {})", units::fmt_size(largest)),
            };
            let stray: Vec<String> = stray_sizes(&better, cross)
                .into_iter()
                .map(units::fmt_size)
                .collect();
            let verdict = if stray.is_empty() {
                verdict
            } else {
                format!("{verdict}; but better at {}", stray.join(", "))
            };
            let key = format!("{sp} vs {cp}");
            let overlaps = by_size.iter().filter(|x| x.4).count();
            let note = if overlaps > 0 {
                format!(
                    " (repeat ranges overlap at {overlaps} of {} sizes)",
                    by_size.len()
                )
            } else {
                String::new()
            };
            lines.push(format!("  {mode:<6} {key:<40} {verdict}{note}"));
            per_mode.insert(
                key,
                json!({
                    "splice": sp, "copy": cp, "metric": metric,
                    "crossover_size": cross, "verdict": verdict,
                    "by_size": by_size.iter().map(|&(s, cm, sm, better, overlap)| json!({
                        "size": s, "copy_median": cm, "splice_median": sm,
                        "ratio_splice_to_copy": if cm > 0.0 { sm / cm } else { 0.0 },
                        "splice_better": better,
                        "repeat_ranges_overlap": overlap,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        if !per_mode.is_empty() {
            out.insert(mode.into(), Value::Object(per_mode));
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&Value::Object(out))?;
    zclab::results::atomic_write(&lab.dir.join("crossover.json"), text.as_bytes())
        .with_context(|| format!("cannot write crossover.json in {}", lab.dir.display()))?;
    if !lab.args.quiet {
        println!("splice against copy (stream: throughput; echo: median round trip):");
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossover_is_the_start_of_the_last_winning_run() {
        let b = [
            (512, false),
            (2048, true),
            (4096, false),
            (16384, true),
            (65536, true),
        ];
        assert_eq!(crossover_size(&b), Some(16384));
        assert_eq!(stray_sizes(&b, Some(16384)), vec![2048]);
        let never = [(512, true), (2048, true), (4096, false)];
        assert_eq!(crossover_size(&never), None);
        assert_eq!(stray_sizes(&never, None), vec![512, 2048]);
        let all = [(512, true), (2048, true)];
        assert_eq!(crossover_size(&all), Some(512));
        assert!(stray_sizes(&all, Some(512)).is_empty());
        assert_eq!(crossover_size(&[]), None);
    }
}
